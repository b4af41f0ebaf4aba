"""Helpers for the connection tests: a served sandbox platform that records what it was
asked, the app wired to it, and reading what the database holds."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from starlette.responses import JSONResponse

from plexus.app import create_app
from plexus.config import load_settings
from plexus.db import unit_of_work
from plexus.models.connections import Connection
from plexus.providers.sandbox import SandboxPlatform
from plexus.providers.testing import FAKE_RETRY_AFTER
from plexus.runtime import Runtime, init_runtime

from fake_helpers import Recorded, serve_app

API = "/api/v1"
CONNECTIONS = f"{API}/connections"


class RecordingSandbox(SandboxPlatform):
    """The sandbox platform with every request recorded (method, path)."""

    def __init__(self, database: Path) -> None:
        super().__init__(database, timeout_seconds=3.0, fault_retry_after=FAKE_RETRY_AFTER)
        self.requests: list[Recorded] = []
        self.down = False
        #: Seconds the token endpoint waits before answering (a slow refresh).
        self.token_delay = 0.0
        #: Set while a token request is being held back.
        self.token_request_waiting = threading.Event()

    def app(self) -> Any:
        inner = super().app()
        outer = self

        async def recorder(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                outer.requests.append(Recorded(scope["method"], scope["path"], "", {}, b""))
                if outer.down:
                    await JSONResponse({"error": "unavailable"}, 503)(scope, receive, send)
                    return
                if scope["path"] == "/api/oauth/token" and outer.token_delay:
                    outer.token_request_waiting.set()
                    await asyncio.sleep(outer.token_delay)
            await inner(scope, receive, send)

        return recorder

    def count(self, path: str, method: str = "POST") -> int:
        return sum(1 for r in self.requests if r.path == path and r.method == method)

    def texts(self) -> list[str]:
        with closing(sqlite3.connect(self.database)) as db:
            return [row[0] for row in db.execute("SELECT text FROM posts WHERE deleted = 0")]

    def revoked_count(self) -> int:
        with closing(sqlite3.connect(self.database)) as db:
            return int(db.execute("SELECT count(*) FROM tokens WHERE revoked = 1").fetchone()[0])

    def expire_access_tokens(self) -> None:
        with closing(sqlite3.connect(self.database)) as db:
            db.execute("UPDATE tokens SET expires = 1 WHERE kind = 'access'")
            db.commit()

    def revoke_everything(self) -> None:
        with closing(sqlite3.connect(self.database)) as db:
            db.execute("UPDATE tokens SET revoked = 1")
            db.commit()

    def revoke_refresh_tokens(self) -> None:
        with closing(sqlite3.connect(self.database)) as db:
            db.execute("UPDATE tokens SET revoked = 1 WHERE kind = 'refresh'")
            db.commit()


@dataclass
class Sandbox:
    platform: RecordingSandbox
    url: str

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"

    @contextlib.contextmanager
    def platform_down(self) -> Iterator[None]:
        """Every request answers 503 until the block ends."""
        self.platform.down = True
        try:
            yield
        finally:
            self.platform.down = False


@pytest.fixture(name="sandbox")
def sandbox_fixture(tmp_path: Path) -> Iterator[Sandbox]:
    platform = RecordingSandbox(tmp_path / "sandbox-platform.db")
    with serve_app(platform.app()) as url:
        yield Sandbox(platform, url)


@pytest.fixture(name="sandbox_env")
def sandbox_env_fixture(env_vars: dict[str, str], sandbox: Sandbox) -> dict[str, str]:
    return {**env_vars, "PLEXUS_PROVIDER_SANDBOX_API_URL": sandbox.api_url}


@pytest.fixture(name="sandbox_runtime")
def sandbox_runtime_fixture(sandbox_env: dict[str, str]) -> Iterator[Runtime]:
    rt = init_runtime(load_settings(environ=sandbox_env))
    yield rt
    rt.dispose()


@pytest.fixture(name="sandbox_client")
def sandbox_client_fixture(sandbox_runtime: Runtime) -> Iterator[TestClient]:
    app = create_app(sandbox_runtime.settings, sandbox_runtime)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def connect_sandbox(client: TestClient, headers: dict[str, str], name: str = "Practice") -> dict:
    response = client.post(
        CONNECTIONS,
        json={"provider": "sandbox", "name": name, "fields": {"account_name": name}},
        headers=headers,
    )
    assert response.status_code == 201, response.text
    body: dict = response.json()
    return body


def stored_connection(runtime: Runtime, connection_id: int) -> Connection:
    with unit_of_work(runtime.sessions) as session:
        row = session.scalars(select(Connection).where(Connection.id == connection_id)).one()
        session.expunge(row)
        return row


def expire_stored_token(runtime: Runtime, connection_id: int) -> None:
    """Make Plexus's copy of the access token look expired (the platform's stays valid)."""
    from dataclasses import replace
    from datetime import UTC, datetime, timedelta

    from plexus.connections.calls import open_credentials, store_credentials

    with unit_of_work(runtime.sessions) as session:
        row = session.get(Connection, connection_id)
        assert row is not None
        credentials = open_credentials(runtime, row)
        past = datetime.now(UTC) - timedelta(minutes=1)
        issued = past - timedelta(hours=1)
        store_credentials(runtime, row, replace(credentials, expires_at=past, issued_at=issued))
