"""Serving an ASGI app (a fake HashiCorp Vault) on 127.0.0.1 from a thread, for one test;
and the environment of a Plexus process that uses it."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import TYPE_CHECKING, Any

import uvicorn

if TYPE_CHECKING:
    from collections.abc import Iterator


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serve_app(app: Any, timeout: float = 10.0) -> Iterator[str]:
    """Run ``app`` with uvicorn in a background thread; yield its base URL; stop it."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=_free_port(), log_config=None, access_log=False, lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="fake-vault", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            msg = "the fake server did not start"
            raise RuntimeError(msg)
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout)


def transit_env(env: dict[str, str], address: str, token: str, **extra: str) -> dict[str, str]:
    """``env`` switched to the vault-transit key provider at ``address``."""
    return {
        **env,
        "PLEXUS_KEY_PROVIDER": "vault-transit",
        "PLEXUS_VAULT_ADDR": address,
        "PLEXUS_VAULT_TOKEN": token,
        "PLEXUS_VAULT_TRANSIT_KEY": "plexus",
        **extra,
    }


# Signing in with a second factor, over HTTP ---------------------------------------------

MFA_TOTP = "/api/v1/me/mfa/totp"


def access_headers(response: Any) -> dict[str, str]:
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def enrol_totp(client: Any, headers: dict[str, str]) -> str:
    """Turn TOTP on for the signed-in user; returns the secret."""
    import pyotp

    started = client.post(MFA_TOTP, headers=headers)
    assert started.status_code == 200, started.text
    secret = str(started.json()["secret"])
    code = pyotp.TOTP(secret).now()
    confirmed = client.post(f"{MFA_TOTP}/confirm", json={"code": code}, headers=headers)
    assert confirmed.status_code == 200, confirmed.text
    return secret


def login_with_totp(client: Any, email: str, password: str, secret: str) -> Any:
    """Password, then the current TOTP code; the final response."""
    import pyotp

    first = client.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert first.status_code == 200, first.text
    assert first.json().get("mfa_required") is True, first.text
    return client.post(
        "/api/v1/auth/mfa",
        json={"mfa_token": first.json()["mfa_token"], "code": pyotp.TOTP(secret).now()},
    )


# Reading the database as an attacker with a copy of it would --------------------------


def database_blobs(engine: Any, database_url: str) -> list[bytes]:
    """Everything the database holds, as bytes: the SQLite files (database, WAL and
    journal) byte for byte, or on PostgreSQL every value of every table over SQL."""
    from pathlib import Path

    from sqlalchemy import MetaData, select

    if database_url.startswith("sqlite"):
        path = Path(database_url.removeprefix("sqlite:///"))
        files = [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-journal")]
        return [f.read_bytes() for f in files if f.exists()]
    metadata = MetaData()
    metadata.reflect(engine)
    blobs: list[bytes] = []
    with engine.connect() as connection:
        for table in metadata.sorted_tables:
            for row in connection.execute(select(table)):
                for value in row:
                    if isinstance(value, (bytes, memoryview)):
                        blobs.append(bytes(value))
                    elif value is not None:
                        blobs.append(str(value).encode())
    return blobs
