"""A real atproto PLC + PDS (npm ``@atproto/dev-env``) for the bluesky provider tests, and
a recording, fault-injecting reverse proxy in front of it.

``scripts/peers/atproto-pds.sh`` installs dev-env under
``${XDG_CACHE_HOME:-~/.cache}/plexus/atproto``; the session fixture ``pds_network`` starts
``scripts/peers/atproto-pds.mjs`` from there (skipped with the reason when it is not
installed, failed under ``CI=true``) and stops it at the end.

``PdsProxy`` forwards every request to the real PDS and records it (so tests can count
``createSession`` calls), answers armed ``Fault``s the way the PDS does (XRPC error JSON
and its rate-limit headers), and serves the PDS under its own address: URLs of the PDS in
its answers (the DID document in ``createSession``) are rewritten to the proxy's, as for a
PDS deployed behind a reverse proxy under that name.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import httpx
import pytest
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from plexus.providers.testing import Fault

from conftest import CI, ROOT
from fake_helpers import FakePlatform

if TYPE_CHECKING:
    from collections.abc import Iterator

    from starlette.requests import Request

INSTALL_DIR = (
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "plexus" / "atproto"
)
NODE_SCRIPT = ROOT / "scripts" / "peers" / "atproto-pds.mjs"
INSTALL_SCRIPT = ROOT / "scripts" / "peers" / "atproto-pds.sh"
#: dev-env's fixed secrets (packages/dev-env/src/const.ts): the admin password, and the
#: HS256 secret its PDS signs session JWTs with (lets a test mint an expired token the
#: real PDS then refuses as expired).
ADMIN_PASSWORD = "admin-pass"
DEV_JWT_SECRET = b"jwt-secret"
START_TIMEOUT = 90.0
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "content-encoding",
    "host",
    "upgrade",
}


@dataclass(frozen=True)
class PdsNetwork:
    plc_url: str
    pds_url: str
    admin_password: str


def _unavailable(reason: str) -> None:
    message = f"{reason}; install it with scripts/peers/atproto-pds.sh"
    if CI:
        pytest.fail(f"{message} (CI=true: this must not be skipped)")
    pytest.skip(message)


@contextlib.contextmanager
def start_network() -> Iterator[PdsNetwork]:
    """Start PLC + PDS on loopback; stop them (and delete their data) afterwards."""
    node = shutil.which("node")
    if node is None:
        _unavailable("node is not installed")
    if not (INSTALL_DIR / "node_modules" / "@atproto" / "dev-env").is_dir():
        _unavailable(f"@atproto/dev-env is not installed in {INSTALL_DIR}")
    data_dir = Path(tempfile.mkdtemp(prefix="plexus-pds-"))
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    env.update({"TMPDIR": str(data_dir), "LOG_ENABLED": "false", "NODE_ENV": "development"})
    process = subprocess.Popen(
        [str(node), str(NODE_SCRIPT), str(INSTALL_DIR)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        ready = _read_ready_line(process)
        yield PdsNetwork(ready["plc"], ready["pds"], ready.get("admin_password", ADMIN_PASSWORD))
    finally:
        _stop(process)
        shutil.rmtree(data_dir, ignore_errors=True)


def _read_ready_line(process: subprocess.Popen[str]) -> dict[str, Any]:
    assert process.stdout is not None
    lines: list[str] = []
    found: dict[str, Any] = {}

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if line.startswith('{"ready"'):
                found.update(json.loads(line))
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(START_TIMEOUT)
    if not found:
        process.kill()
        _, err = process.communicate(timeout=10)
        msg = f"the atproto PDS did not start: {''.join(lines)[-2000:]} {err[-2000:]}"
        raise RuntimeError(msg)
    # Keep draining its output so the process never blocks on a full pipe.
    for stream in (process.stdout, process.stderr):
        threading.Thread(target=_drain, args=(stream,), daemon=True).start()
    return found


def _drain(stream: IO[str] | None) -> None:
    if stream is None:
        return
    with contextlib.suppress(ValueError, OSError):
        for _ in stream:
            pass


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        with contextlib.suppress(OSError):
            assert process.stdin is not None
            process.stdin.close()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
    for stream in (process.stdin, process.stdout, process.stderr):
        if stream is not None:
            with contextlib.suppress(OSError, ValueError):
                stream.close()


@pytest.fixture(scope="session", name="pds_network")
def pds_network_fixture() -> Iterator[PdsNetwork]:
    """One real PLC + PDS for the test session (per xdist worker)."""
    with start_network() as network:
        yield network


# --------------------------------------------------------------------------- accounts


@dataclass(frozen=True)
class PdsAccount:
    did: str
    handle: str
    password: str
    app_password: str
    access_jwt: str


def xrpc(
    base: str,
    nsid: str,
    *,
    body: dict[str, Any] | None = None,
    params: dict[str, str] | None = None,
    token: str | None = None,
) -> httpx.Response:
    """One XRPC call straight to the PDS (not through the proxy, not guarded)."""
    headers = {"authorization": f"Bearer {token}"} if token else {}
    url = f"{base}/xrpc/{nsid}"
    with httpx.Client(timeout=20, trust_env=False) as http:
        if body is None and params is not None:
            return http.get(url, params=params, headers=headers)
        return (
            http.post(url, json=body, headers=headers)
            if body is not None
            else http.post(url, headers=headers)
        )


def create_account(network: PdsNetwork, prefix: str = "t") -> PdsAccount:
    """A new account on the PDS (``createAccount``) with one app password."""
    handle = f"{prefix}{uuid.uuid4().hex[:10]}.test"
    password = "pw-" + secrets.token_urlsafe(16)
    created = xrpc(
        network.pds_url,
        "com.atproto.server.createAccount",
        body={"handle": handle, "email": f"{handle}@example.com", "password": password},
    )
    assert created.status_code == 200, created.text
    data = created.json()
    app = xrpc(
        network.pds_url,
        "com.atproto.server.createAppPassword",
        body={"name": "plexus"},
        token=data["accessJwt"],
    )
    assert app.status_code == 200, app.text
    return PdsAccount(
        did=data["did"],
        handle=handle,
        password=password,
        app_password=app.json()["password"],
        access_jwt=data["accessJwt"],
    )


def list_posts(network: PdsNetwork, did: str) -> list[dict[str, Any]]:
    """Every ``app.bsky.feed.post`` record in a repository, read from the PDS."""
    records: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params = {"repo": did, "collection": "app.bsky.feed.post", "limit": "100"}
        if cursor:
            params["cursor"] = cursor
        response = xrpc(network.pds_url, "com.atproto.repo.listRecords", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        records.extend(page.get("records", []))
        cursor = page.get("cursor")
        if not cursor or not page.get("records"):
            return records


def get_post(network: PdsNetwork, uri: str) -> dict[str, Any]:
    did, collection, rkey = uri.removeprefix("at://").split("/")
    response = xrpc(
        network.pds_url,
        "com.atproto.repo.getRecord",
        params={"repo": did, "collection": collection, "rkey": rkey},
    )
    assert response.status_code == 200, response.text
    value: dict[str, Any] = response.json()["value"]
    return value


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def expired_copy(access_jwt: str) -> str:
    """The same session JWT, re-signed by dev-env's secret with an ``exp`` in the past."""
    header_b64, payload_b64, _ = access_jwt.split(".")
    payload = json.loads(base64.urlsafe_b64decode(payload_b64 + "=" * (-len(payload_b64) % 4)))
    payload["iat"] = int(time.time()) - 7200
    payload["exp"] = int(time.time()) - 3600
    signing_input = f"{header_b64}.{_b64url(json.dumps(payload).encode())}"
    signature = hmac.new(DEV_JWT_SECRET, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64url(signature)}"


# --------------------------------------------------------------------------- the proxy


class PdsProxy(FakePlatform):
    """The real PDS behind a recording, fault-injecting reverse proxy."""

    def __init__(self, network: PdsNetwork) -> None:
        super().__init__()
        self.network = network
        self.repos: list[str] = []
        self.secrets: list[str] = []
        self._revoked: list[str] = []

    # ---- controls

    def published_texts(self) -> list[str]:
        return [
            str(record["value"].get("text", ""))
            for did in self.repos
            for record in list_posts(self.network, did)
        ]

    def revoked_tokens(self) -> list[str]:
        return list(self._revoked)

    def secrets_in_use(self) -> list[str]:
        return list(self.secrets)

    def calls(self, nsid: str) -> int:
        return len([r for r in self.requests if r.path == f"/xrpc/{nsid}"])

    # ---- faults, as the PDS renders them

    def fault_response(self, fault: Fault, request: Request) -> Response:
        del request
        if fault is Fault.RATE_LIMITED:
            return JSONResponse(
                {"error": "RateLimitExceeded", "message": "Rate Limit Exceeded"},
                status_code=429,
                headers={
                    "ratelimit-limit": "3000",
                    "ratelimit-remaining": "0",
                    "ratelimit-reset": str(int(time.time()) + self.retry_after),
                    "ratelimit-policy": "3000;w=300",
                    "retry-after": str(self.retry_after),
                },
            )
        if fault is Fault.SERVER_ERROR:
            return JSONResponse(
                {"error": "InternalServerError", "message": "Internal Server Error"},
                status_code=500,
            )
        if fault is Fault.UNAUTHORIZED:
            # What this PDS answers for a session token it does not accept.
            return JSONResponse(
                {"error": "InvalidToken", "message": "Token could not be verified"},
                status_code=400,
            )
        return JSONResponse(
            {
                "error": "InvalidRequest",
                "message": "Invalid app.bsky.feed.post record: Record/text is not acceptable",
            },
            status_code=400,
        )

    # ---- forwarding

    def routes(self) -> list[Route]:
        return [Route("/{path:path}", self._forward, methods=["GET", "POST", "HEAD"])]

    async def _forward(self, request: Request) -> Response:
        if request.url.path.startswith("/xrpc/"):
            fault = await self.take_fault(request)
            if fault is not None:
                return fault
        body = await request.body()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        upstream = self.network.pds_url
        async with httpx.AsyncClient(timeout=30, trust_env=False) as http:
            answer = await http.request(
                request.method,
                f"{upstream}{request.url.path}",
                params=request.url.query or None,
                content=body,
                headers=headers,
            )
        content = answer.content
        if answer.headers.get("content-type", "").startswith("application/json"):
            content = content.replace(upstream.encode(), self.base_url.encode())
        if answer.status_code == 200:
            self._note_tokens(request, content)
        out_headers = {k: v for k, v in answer.headers.items() if k.lower() not in _HOP_BY_HOP}
        return Response(content, status_code=answer.status_code, headers=out_headers)

    def _note_tokens(self, request: Request, content: bytes) -> None:
        path = request.url.path
        if path.endswith(("createSession", "refreshSession")):
            data = json.loads(content)
            self.secrets.extend([data["accessJwt"], data["refreshJwt"]])
        if path.endswith("deleteSession"):
            auth = request.headers.get("authorization", "")
            self._revoked.append(auth.removeprefix("Bearer "))
