"""How fast the publishing pipeline claims, sends and records publications.

Sets up a throw-away Plexus (SQLite in a temporary folder), serves the sandbox platform
on a local port, connects 10 sandbox accounts, queues 300 publications (30 items to each
account: the sandbox allows 60 posts a minute per account) and runs the pipeline over
them, once with one thread and once with four. Prints one JSON object: publications per
second and the median and 95th-percentile time of one publication (claim, send, record).
Run: ``uv run python benchmarks/publish.py``.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import socket
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import uvicorn
from fastapi.testclient import TestClient

from plexus import schema
from plexus.accounts.service import set_email
from plexus.app import create_app
from plexus.config import load_settings
from plexus.db import unit_of_work
from plexus.kit.logging import configure_logging
from plexus.models.identity import Membership, User, Workspace
from plexus.providers.sandbox import SandboxPlatform
from plexus.publishing import pipeline
from plexus.runtime import Runtime, init_runtime

ACCOUNTS = 10
ITEMS = 30
PASSWORD = secrets.token_urlsafe(24)  # a throw-away account in a throw-away database
API = "/api/v1"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _serve(app: Any) -> tuple[str, uvicorn.Server]:
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.01)
    return f"http://127.0.0.1:{port}", server


def _environment(folder: Path, sandbox_url: str) -> dict[str, str]:
    return {
        "PLEXUS_ENV": "test",
        "PLEXUS_DATA_DIR": str(folder / "var"),
        "PLEXUS_DATABASE_URL": f"sqlite:///{folder / 'plexus.db'}",
        "PLEXUS_AUDIT_KEY": secrets.token_urlsafe(48),
        "PLEXUS_PASSWORD_PEPPER": secrets.token_urlsafe(48),
        "PLEXUS_TOKEN_KEY": secrets.token_urlsafe(48),
        "PLEXUS_INDEX_KEY": secrets.token_urlsafe(48),
        "PLEXUS_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
        "PLEXUS_BCRYPT_ROUNDS": "4",
        "PLEXUS_PROVIDER_SANDBOX_API_URL": f"{sandbox_url}/api",
    }


def _owner(rt: Runtime) -> None:
    with unit_of_work(rt.sessions) as session:
        workspace = Workspace(name="Benchmark", require_approval=False)
        session.add(workspace)
        session.flush()
        user = User(display_name="bench", password_hash=rt.passwords.hash(PASSWORD))
        set_email(session, rt, user, "bench@example.org")
        session.add(Membership(workspace_id=workspace.id, user_id=user.id, role="owner"))


def _queue(rt: Runtime) -> int:
    """Connect the accounts and queue the publications through the API; how many."""
    with TestClient(create_app(rt.settings, rt)) as client:
        login = client.post(
            f"{API}/auth/login", json={"email": "bench@example.org", "password": PASSWORD}
        )
        headers = {"authorization": f"Bearer {login.json()['access_token']}"}
        connections = [
            client.post(
                f"{API}/connections",
                json={"provider": "sandbox", "name": f"Account {n}", "fields": {}},
                headers=headers,
            ).json()["id"]
            for n in range(ACCOUNTS)
        ]
        queued = 0
        for number in range(ITEMS):
            item = client.post(
                f"{API}/content",
                json={"title": f"Post {number}", "body": f"**Post** number {number}"},
                headers=headers,
            ).json()
            published = client.post(
                f"{API}/content/{item['id']}/publish",
                json={"connection_ids": connections},
                headers=headers,
            )
            queued += len(published.json()["publications"])
    return queued


def _run(rt: Runtime, threads: int) -> dict[str, float]:
    due = list(pipeline.dispatch(rt).due)
    durations: list[float] = []

    def one(publication_id: int) -> None:
        start = time.perf_counter()
        outcome = pipeline.run(rt, publication_id)
        durations.append(time.perf_counter() - start)
        if outcome.state != "published":
            msg = f"publication {publication_id} ended {outcome.state}"
            raise RuntimeError(msg)

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(one, due))
    elapsed = time.perf_counter() - start
    ordered = sorted(durations)
    return {
        "threads": threads,
        "publications": len(due),
        "seconds": round(elapsed, 3),
        "per_second": round(len(due) / elapsed, 1),
        "median_ms": round(statistics.median(ordered) * 1000, 1),
        "p95_ms": round(ordered[int(len(ordered) * 0.95) - 1] * 1000, 1),
    }


def main() -> None:
    # Only the JSON goes to standard output.
    configure_logging("WARNING", stream=sys.stderr)
    results = []
    for threads in (1, 4):
        with tempfile.TemporaryDirectory() as name:
            folder = Path(name)
            platform = SandboxPlatform(folder / "sandbox.db")
            url, server = _serve(platform.app())
            rt = init_runtime(load_settings(environ=_environment(folder, url)))
            try:
                schema.upgrade(rt.engine, settings=rt.settings)
                _owner(rt)
                _queue(rt)
                results.append(_run(rt, threads))
            finally:
                rt.dispose()
                server.should_exit = True
    json.dump({"benchmark": "publish", "database": "sqlite", "results": results}, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
