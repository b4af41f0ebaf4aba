"""``plexus serve``, ``plexus migrate`` and ``plexus version``, run as real processes.

Each test starts its own server on a free loopback port and stops it (SIGINT, then kill)
whatever the outcome, so a failing assertion never leaves a listener behind.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import uuid
import warnings
from typing import TYPE_CHECKING

import httpx
import pytest
from sqlalchemy import create_engine, text

from conftest import BACKEND, PG_ADMIN_URL, TEST_AUDIT_KEY, run_cli
from server_helpers import Server, free_port, free_ports, serving
from tls_helpers import TLSFiles, make_self_signed

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

HSTS = "max-age=31536000; includeSubDomains"


@pytest.fixture
def tls_files(tmp_path: Path) -> TLSFiles:
    return make_self_signed(tmp_path / "tls")


@pytest.fixture
def production_env(env_vars: dict[str, str]) -> dict[str, str]:
    return {**env_vars, "PLEXUS_ENV": "production", "PLEXUS_BCRYPT_ROUNDS": "10"}


class TLSServer:
    def __init__(self, server: Server, tls: TLSFiles, port: int, redirect_port: int) -> None:
        self.server = server
        self.tls = tls
        self.port = port
        self.redirect_port = redirect_port

    @property
    def origin(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def handshake(self, context: ssl.SSLContext) -> tuple[str, str]:
        """Open a TLS connection; return the negotiated (protocol version, cipher name)."""
        with (
            socket.create_connection(("127.0.0.1", self.port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            version = tls.version()
            cipher = tls.cipher()
            assert version is not None
            assert cipher is not None
            return version, cipher[0]


@pytest.fixture
def tls_server(production_env: dict[str, str], tls_files: TLSFiles, tmp_path: Path):
    """Production, TLS on one port and the plain-HTTP redirect listener on another."""
    port, redirect_port = free_ports(2)
    args = [
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--tls-cert",
        str(tls_files.cert),
        "--tls-key",
        str(tls_files.key),
        "--redirect-http",
        str(redirect_port),
    ]
    with serving(args, production_env, tmp_path) as server:
        server.wait_until_answering(
            f"https://127.0.0.1:{port}/healthz", verify=tls_files.client_context()
        )
        server.wait_until_answering(f"http://127.0.0.1:{redirect_port}/healthz")
        yield TLSServer(server, tls_files, port, redirect_port)


# --- development: the one command a newcomer runs ----------------------------------------


def test_development_serve_runs_with_generated_secrets_and_reuses_them(tmp_path: Path):
    """`plexus serve --port P` in development: no configuration, probes answer, secrets kept."""
    workdir = tmp_path / "work"
    workdir.mkdir()
    data_dir = workdir / "var"
    env = {"PLEXUS_DATA_DIR": str(data_dir)}  # no PLEXUS_ENV: development is the default
    secrets_file = data_dir / "dev-secrets.env"

    port = free_port()
    with serving(["--port", str(port)], env, workdir) as server:
        server.wait_until_answering(f"http://127.0.0.1:{port}/healthz")
        live = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        assert live.status_code == 200
        assert live.json() == {"status": "ok"}
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
        assert ready.status_code == 200, ready.text
        assert ready.json()["status"] == "ready"

    assert secrets_file.is_file()
    assert secrets_file.stat().st_mode & 0o777 == 0o600
    first = secrets_file.read_text()
    assert "PLEXUS_AUDIT_KEY=" in first
    assert (data_dir / "plexus.db").is_file()

    port = free_port()
    with serving(["--port", str(port)], env, workdir) as server:
        server.wait_until_answering(f"http://127.0.0.1:{port}/healthz")
        assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200
    assert secrets_file.read_text() == first
    assert secrets_file.stat().st_mode & 0o777 == 0o600


# --- production over TLS ------------------------------------------------------------------


def test_tls_healthz_sends_hsts_and_no_server_header(tls_server: TLSServer):
    """V3.4.1: HSTS for a year with subdomains over HTTPS. V13.4.6: no Server header."""
    response = httpx.get(
        f"{tls_server.origin}/healthz", verify=tls_server.tls.client_context(), timeout=5
    )
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response.headers.get("strict-transport-security") == HSTS
    assert "server" not in response.headers


def _tls11_client(tls: TLSFiles) -> ssl.SSLContext:
    """A client that offers at most TLS 1.1, with every old protocol and cipher allowed."""
    context = tls.client_context()
    with warnings.catch_warnings():
        # Python deprecates TLS 1.0/1.1 (the very thing this client is built to try).
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    with contextlib.suppress(ssl.SSLError):
        context.set_ciphers("ALL:@SECLEVEL=0")
    return context


def test_tls_refuses_tls11_and_accepts_tls12_and_tls13(tls_server: TLSServer):
    """V12.1.1: TLS 1.2 and 1.3 are accepted; a client limited to TLS 1.1 cannot connect.

    Where the local OpenSSL will not even offer TLS 1.1, the handshake still fails (on the
    client side); the accepted versions are checked either way.
    """
    with pytest.raises(ssl.SSLError) as refused:
        tls_server.handshake(_tls11_client(tls_server.tls))
    # A refused protocol, not a certificate the client happened to distrust.
    assert not isinstance(refused.value, ssl.SSLCertVerificationError)

    tls12 = tls_server.tls.client_context(
        minimum=ssl.TLSVersion.TLSv1_2, maximum=ssl.TLSVersion.TLSv1_2
    )
    assert tls_server.handshake(tls12)[0] == "TLSv1.2"
    tls13 = tls_server.tls.client_context(
        minimum=ssl.TLSVersion.TLSv1_3, maximum=ssl.TLSVersion.TLSv1_3
    )
    assert tls_server.handshake(tls13)[0] == "TLSv1.3"


def test_tls12_negotiates_an_aead_suite_and_refuses_cbc(tls_server: TLSServer):
    """V12.1.2: TLS 1.2 gets an AEAD suite with forward secrecy; CBC-only clients are refused."""
    tls12 = tls_server.tls.client_context(
        minimum=ssl.TLSVersion.TLSv1_2, maximum=ssl.TLSVersion.TLSv1_2
    )
    version, cipher = tls_server.handshake(tls12)
    assert version == "TLSv1.2"
    assert "GCM" in cipher or "CHACHA20" in cipher, cipher
    assert cipher.startswith("ECDHE-"), cipher

    cbc_only = tls_server.tls.client_context(
        minimum=ssl.TLSVersion.TLSv1_2, maximum=ssl.TLSVersion.TLSv1_2
    )
    cbc_only.set_ciphers(
        "ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA384:"
        "ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA"
    )
    with pytest.raises(ssl.SSLError) as refused:
        tls_server.handshake(cbc_only)
    assert not isinstance(refused.value, ssl.SSLCertVerificationError)


def test_redirect_listener_sends_ui_paths_to_https(tls_server: TLSServer):
    """V4.1.2: a plain-HTTP UI request is redirected (308, path and query kept) to HTTPS."""
    base = f"http://127.0.0.1:{tls_server.redirect_port}"
    response = httpx.get(f"{base}/some/page?x=1", follow_redirects=False, timeout=5)
    assert response.status_code == 308
    assert response.headers["location"] == f"https://127.0.0.1:{tls_server.port}/some/page?x=1"
    # HSTS is only meaningful (and only honoured) over HTTPS, never on the plain listener.
    assert "strict-transport-security" not in response.headers
    assert "server" not in response.headers

    by_name = httpx.get(
        f"{base}/", headers={"Host": f"localhost:{tls_server.redirect_port}"}, timeout=5
    )
    assert by_name.status_code == 308
    assert by_name.headers["location"] == f"https://localhost:{tls_server.port}/"

    # The redirect target really is the TLS listener, and it answers there.
    followed = httpx.get(
        response.headers["location"].replace("/some/page?x=1", "/healthz"),
        verify=tls_server.tls.client_context(),
        timeout=5,
    )
    assert followed.status_code == 200


def test_redirect_listener_refuses_api_paths_without_redirect(tls_server: TLSServer):
    """V4.1.2: only UI paths redirect; an API call over plain HTTP gets a problem, no Location.

    The credential such a call carried has already crossed the network in the clear; a
    silent redirect would hide that from the client's developer.
    """
    for path in ("/api/v1/", "/api", "/api/v1/things?token=x"):
        response = httpx.get(
            f"http://127.0.0.1:{tls_server.redirect_port}{path}",
            headers={"Authorization": "Bearer not-a-real-token"},
            follow_redirects=False,
            timeout=5,
        )
        assert 400 <= response.status_code < 500, path
        assert response.headers["content-type"].startswith("application/problem+json"), path
        assert "location" not in response.headers, path
        body = response.json()
        assert body["status"] == response.status_code
        assert "https" in body["detail"].lower()


def test_redirect_http_needs_tls(env_vars: dict[str, str], tmp_path: Path):
    port, redirect_port = free_ports(2)
    result = run_cli(
        ["serve", "--port", str(port), "--redirect-http", str(redirect_port)],
        env_vars,
        tmp_path,
    )
    assert result.returncode == 2
    assert "--redirect-http needs --tls-cert and --tls-key" in result.stderr


# --- production over plain HTTP -----------------------------------------------------------


def test_production_refuses_plain_http_without_proxy(production_env: dict[str, str], tmp_path):
    """V12.2.1: production will not serve plain HTTP; it says what to set instead."""
    result = run_cli(
        ["serve", "--host", "127.0.0.1", "--port", str(free_port())], production_env, tmp_path
    )
    assert result.returncode == 2, result.stderr
    assert "PLEXUS_TLS_CERT_FILE" in result.stderr
    assert "plain HTTP" in result.stderr
    assert "Traceback" not in result.stderr
    assert TEST_AUDIT_KEY not in result.stderr + result.stdout


def test_production_behind_trusted_proxy_sends_hsts_only_for_forwarded_https(
    production_env: dict[str, str], tmp_path: Path
):
    """V3.4.1: behind a trusted TLS-terminating proxy, HSTS follows X-Forwarded-Proto."""
    env = {**production_env, "PLEXUS_TRUSTED_PROXIES": "127.0.0.1/32"}
    port = free_port()
    with serving(["--host", "127.0.0.1", "--port", str(port)], env, tmp_path) as server:
        url = f"http://127.0.0.1:{port}/healthz"
        server.wait_until_answering(url)
        forwarded = httpx.get(url, headers={"X-Forwarded-Proto": "https"}, timeout=5)
        assert forwarded.status_code == 200
        assert forwarded.headers.get("strict-transport-security") == HSTS
        plain = httpx.get(url, timeout=5)
        assert plain.status_code == 200
        assert "strict-transport-security" not in plain.headers
        forwarded_http = httpx.get(url, headers={"X-Forwarded-Proto": "http"}, timeout=5)
        assert "strict-transport-security" not in forwarded_http.headers


def test_production_ignores_forwarded_proto_from_untrusted_peer(
    production_env: dict[str, str], tmp_path: Path
):
    """V3.4.1: a peer outside PLEXUS_TRUSTED_PROXIES cannot claim HTTPS with a header."""
    env = {**production_env, "PLEXUS_TRUSTED_PROXIES": "10.0.0.0/8"}
    port = free_port()
    with serving(["--host", "127.0.0.1", "--port", str(port)], env, tmp_path) as server:
        url = f"http://127.0.0.1:{port}/healthz"
        server.wait_until_answering(url)
        spoofed = httpx.get(url, headers={"X-Forwarded-Proto": "https"}, timeout=5)
        assert spoofed.status_code == 200
        assert "strict-transport-security" not in spoofed.headers


# --- production against a database that is not migrated -----------------------------------


@pytest.fixture
def empty_database_url(tmp_path: Path) -> Iterator[str]:
    """A database with no tables at all, on the backend under test."""
    if BACKEND == "postgres":
        from conftest import require_service

        require_service("PostgreSQL", "127.0.0.1", 5432)
        name = f"plexus_empty_{uuid.uuid4().hex[:16]}"
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        finally:
            admin.dispose()
        return
    yield f"sqlite:///{tmp_path / 'fresh' / 'plexus.db'}"


def test_production_refuses_unmigrated_database_until_migrate(
    production_env: dict[str, str],
    empty_database_url: str,
    tls_files: TLSFiles,
    tmp_path: Path,
):
    env = {
        **production_env,
        "PLEXUS_DATABASE_URL": empty_database_url,
        "PLEXUS_TLS_CERT_FILE": str(tls_files.cert),
        "PLEXUS_TLS_KEY_FILE": str(tls_files.key),
    }
    port = free_port()
    refused = run_cli(["serve", "--host", "127.0.0.1", "--port", str(port)], env, tmp_path)
    assert refused.returncode != 0
    assert "plexus migrate" in refused.stderr
    assert "Traceback" not in refused.stderr

    migrated = run_cli(["migrate"], env, tmp_path)
    assert migrated.returncode == 0, migrated.stderr
    assert "database schema at" in migrated.stdout
    assert "(was empty)" in migrated.stdout

    doctor_after = run_cli(["doctor"], env, tmp_path)
    assert doctor_after.returncode == 0, doctor_after.stdout + doctor_after.stderr
    assert "schema up to date" in doctor_after.stdout

    with serving(["--host", "127.0.0.1", "--port", str(port)], env, tmp_path) as server:
        context = tls_files.client_context()
        server.wait_until_answering(f"https://127.0.0.1:{port}/healthz", verify=context)
        ready = httpx.get(f"https://127.0.0.1:{port}/readyz", verify=context, timeout=5)
        assert ready.status_code == 200, ready.text


# --- version -------------------------------------------------------------------------------


def test_version(tmp_path: Path):
    result = run_cli(["version"], {}, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("plexus ")


def test_client_trickling_its_headers_is_disconnected(env_vars: dict[str, str], tmp_path: Path):
    """V15.2.2 (slowloris), R18: a client that does not finish its headers in time is cut
    off, while a normal request on the same server is answered."""
    port = free_port()
    env = dict(env_vars, PLEXUS_HEADER_TIMEOUT_SECONDS="1")
    with serving(["--host", "127.0.0.1", "--port", str(port)], env, tmp_path) as server:
        server.wait_until_answering(f"http://127.0.0.1:{port}/healthz")
        with socket.create_connection(("127.0.0.1", port), timeout=15) as slow:
            slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            # The server closes the connection (recv returns b"") well before our 15 s
            # timeout would fire; no response was ever sent for the unfinished request.
            assert slow.recv(1024) == b""
        with socket.create_connection(("127.0.0.1", port), timeout=15) as normal:
            normal.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            assert normal.recv(64).startswith(b"HTTP/1.1 200")
