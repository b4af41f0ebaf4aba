"""Crash safety (acceptance): a worker killed with SIGKILL in the middle of 500
publications to a slow platform, then restarted, leaves every publication published
exactly once at the platform: none lost, none sent twice.

On SQLite one worker process runs (its queue is the SQLite file); on PostgreSQL two share
Redis, one is killed and the other keeps running. The platform (``SlowSandbox``) counts
what it was sent per idempotency key, and holds the posts it created in its own database.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from typing import TYPE_CHECKING

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from plexus.app import create_app
from plexus.audit.events import AuditEventType
from plexus.config import load_settings
from plexus.db import unit_of_work
from plexus.models.audit import AuditEvent
from plexus.models.content import Publication
from plexus.publishing import states
from plexus.runtime import Runtime, init_runtime
from plexus.worker import huey

from auth_helpers import sign_in
from conftest import BACKEND, PLEXUS_CMD, subprocess_env
from connection_helpers import connect_sandbox
from fake_helpers import serve_app
from slow_sandbox import SlowSandbox

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

CONNECTIONS = 50
CONTENT_ITEMS = 10
TOTAL = CONNECTIONS * CONTENT_ITEMS
WORKERS = 2 if BACKEND == "postgres" else 1
THREADS = 4
LEASE_SECONDS = 5
#: The kill comes once this many are published, while publishes are at the platform.
KILL_AFTER = 150
KILL_DEADLINE_SECONDS = 60
FINISH_DEADLINE_SECONDS = 180
STOP_SECONDS = 15

pytestmark = [
    pytest.mark.slow,
    pytest.mark.xdist_group("crash"),
    *([pytest.mark.postgres, pytest.mark.redis] if BACKEND == "postgres" else []),
]


@pytest.fixture(name="slow_platform")
def slow_platform_fixture(tmp_path: Path) -> Iterator[tuple[SlowSandbox, str]]:
    platform = SlowSandbox(tmp_path / "sandbox-platform.db")
    with serve_app(platform.app()) as url:
        yield platform, url


@pytest.fixture(name="crash_env")
def crash_env_fixture(
    request: pytest.FixtureRequest, env_vars: dict[str, str], slow_platform: tuple[SlowSandbox, str]
) -> dict[str, str]:
    environ = {
        **env_vars,
        "PLEXUS_PROVIDER_SANDBOX_API_URL": f"{slow_platform[1]}/api",
        "PLEXUS_PUBLISH_LEASE_SECONDS": str(LEASE_SECONDS),
        "PLEXUS_PUBLISH_RECONCILE_DELAY_SECONDS": "1",
    }
    if BACKEND == "postgres":
        environ["PLEXUS_REDIS_URL"] = request.getfixturevalue("redis_url")
    return environ


@pytest.fixture(name="crash_runtime")
def crash_runtime_fixture(crash_env: dict[str, str]) -> Iterator[Runtime]:
    rt = init_runtime(load_settings(environ=crash_env))
    huey.flush()
    try:
        yield rt
    finally:
        huey.flush()
        rt.dispose()


@pytest.fixture(name="crash_client")
def crash_client_fixture(crash_runtime: Runtime) -> Iterator[TestClient]:
    app = create_app(crash_runtime.settings, crash_runtime)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


# --------------------------------------------------------------------------- workers


class Workers:
    """``plexus worker`` processes of this test, each logging to its own file."""

    def __init__(self, environ: dict[str, str], logs: Path) -> None:
        self.environ = environ
        self.logs = logs
        self.processes: list[subprocess.Popen[bytes]] = []
        self.log_files: list[Path] = []

    def start(self, name: str) -> subprocess.Popen[bytes]:
        path = self.logs / f"{name}.log"
        with path.open("wb") as log:
            process = subprocess.Popen(
                [*PLEXUS_CMD, "worker", "--threads", str(THREADS)],
                env=subprocess_env(self.environ),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.processes.append(process)
        self.log_files.append(path)
        return process

    def check_alive(self, processes: list[subprocess.Popen[bytes]]) -> None:
        for process in processes:
            if process.poll() is not None:
                pytest.fail(f"worker {process.pid} exited with {process.returncode}")

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=STOP_SECONDS)

    def output(self) -> str:
        parts = []
        for path in self.log_files:
            text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
            lines = text.splitlines()
            parts.append(f"----- {path.name} (last 60 of {len(lines)} lines)")
            parts.extend(lines[-60:])
        return "\n".join(parts)


# --------------------------------------------------------------------------- reading


def _states(rt: Runtime) -> Counter[str]:
    with unit_of_work(rt.sessions) as session:
        rows = session.execute(
            select(Publication.state, func.count()).group_by(Publication.state)
        ).all()
    return Counter({state: int(count) for state, count in rows})


def _publications(rt: Runtime) -> list[tuple[int, str, str, str | None]]:
    with unit_of_work(rt.sessions) as session:
        rows = session.execute(
            select(
                Publication.id,
                Publication.idempotency_key,
                Publication.state,
                Publication.remote_id,
            ).order_by(Publication.id)
        ).all()
    return [(int(i), str(key), str(state), remote) for i, key, state, remote in rows]


def _outcomes(rt: Runtime) -> dict[int, list[str]]:
    """The published / reconciled audit events recorded for each publication."""
    events = (
        AuditEventType.PUBLISHING_PUBLICATION_PUBLISHED,
        AuditEventType.PUBLISHING_PUBLICATION_RECONCILED,
    )
    found: dict[int, list[str]] = {}
    with unit_of_work(rt.sessions) as session:
        rows = session.execute(
            select(AuditEvent.target_id, AuditEvent.event).where(
                AuditEvent.target_type == "publication",
                AuditEvent.event.in_([str(e) for e in events]),
            )
        )
        for target_id, event in rows:
            found.setdefault(int(target_id), []).append(str(event))
    return found


def _wait(what: str, deadline: float, done, workers: Workers, alive) -> None:
    end = time.monotonic() + deadline
    while not done():
        workers.check_alive(alive)
        if time.monotonic() > end:
            pytest.fail(f"timed out after {deadline} s waiting until {what}")
        time.sleep(0.1)


# --------------------------------------------------------------------------- setup


def _prepare(rt: Runtime, client: TestClient) -> tuple[dict[str, str], list[int], list[int]]:
    """The owner's headers, 50 sandbox connections and 10 approved content items."""
    owner = sign_in(rt, client, "owner@example.com")
    connection_ids = [
        int(connect_sandbox(client, owner.headers, f"Account {n}")["id"])
        for n in range(CONNECTIONS)
    ]
    content_ids = []
    for n in range(CONTENT_ITEMS):
        created = client.post(
            "/api/v1/content",
            json={"title": f"Crash test {n}", "body": f"Post {n} of the crash test."},
            headers=owner.headers,
        )
        assert created.status_code == 201, created.text
        content_id = int(created.json()["id"])
        approved = client.post(f"/api/v1/content/{content_id}/approve", headers=owner.headers)
        assert approved.status_code == 200, approved.text
        content_ids.append(content_id)
    return owner.headers, connection_ids, content_ids


def _publish(
    client: TestClient, headers: dict[str, str], connection_ids: list[int], content_id: int
) -> None:
    published = client.post(
        f"/api/v1/content/{content_id}/publish",
        json={"connection_ids": connection_ids},
        headers=headers,
    )
    assert published.status_code == 201, published.text
    assert len(published.json()["publications"]) == len(connection_ids)


# --------------------------------------------------------------------------- the test


def _assert_published_exactly_once(
    publications: list[tuple[int, str, str, str | None]], sandbox: SlowSandbox
) -> None:
    keys = {key for _, key, _, _ in publications}
    created = sandbox.posts_created()
    post_ids = sandbox.post_ids()
    received = sandbox.posts_received()

    # Every publication published, once, at the platform: none lost, none doubled.
    assert len(publications) == TOTAL
    assert {state for _, _, state, _ in publications} == {states.PUBLISHED}
    assert set(created) == keys, "the platform holds posts for other keys, or lacks some"
    doubled = {key: count for key, count in created.items() if count != 1}
    assert not doubled, f"keys with more than one post: {doubled}"
    for publication_id, key, _, remote_id in publications:
        assert [remote_id] == post_ids[key], publication_id

    # ...and never by a blind re-send that the platform's deduplication absorbed: every
    # key reached the platform once, and created its post then.
    assert not sandbox.answered_from_key(), "publishes answered from an existing key"
    assert not sandbox.refused(), sandbox.refused()
    resent = {key: count for key, count in received.items() if count != 1}
    assert not resent, f"keys sent to the platform more than once: {resent}"
    assert set(received) == keys


def _kill_mid_send(
    rt: Runtime, sandbox: SlowSandbox, workers: Workers, running: list[subprocess.Popen[bytes]]
) -> tuple[Counter[str], float, set[str]]:
    """SIGKILL the first worker once ``KILL_AFTER`` are published, while the platform holds
    more publishes than the other workers have threads: so at least one is the killed
    worker's, and the platform makes that post after its sender is dead.

    Returns the states at the kill, its moment (monotonic clock), and the keys the
    platform held then (the killed worker's, and perhaps some of the others').
    """
    _wait(
        f"{KILL_AFTER} are published",
        KILL_DEADLINE_SECONDS,
        lambda: _states(rt)[states.PUBLISHED] >= KILL_AFTER,
        workers,
        running,
    )
    others = THREADS * (len(running) - 1)
    sandbox.hold()
    try:
        _wait(
            f"the platform holds more than {others} publishes",
            KILL_DEADLINE_SECONDS,
            lambda: sum(sandbox.held().values()) > others,
            workers,
            running,
        )
        os.kill(running[0].pid, signal.SIGKILL)
        killed = time.monotonic()
        running[0].wait(timeout=STOP_SECONDS)
        at_kill = _states(rt)
        held = set(sandbox.held())
    finally:
        sandbox.release()
    return at_kill, killed, held


def test_a_worker_killed_mid_run_leaves_every_publication_published_exactly_once(
    crash_runtime, crash_client, crash_env, slow_platform, tmp_path
):
    sandbox, _ = slow_platform
    rt = crash_runtime
    workers = Workers(crash_env, tmp_path)
    passed = False
    try:
        headers, connection_ids, content_ids = _prepare(rt, crash_client)
        started = time.monotonic()
        running = [workers.start(f"worker-{n}") for n in range(WORKERS)]
        for content_id in content_ids:
            _publish(crash_client, headers, connection_ids, content_id)

        at_kill, killed, held = _kill_mid_send(rt, sandbox, workers, running)
        others = THREADS * (WORKERS - 1)
        survivors = running[1:]

        # Restart past the lease: the new worker's first dispatcher round recovers what
        # the dead one held (on PostgreSQL the survivor carries on meanwhile).
        time.sleep(max(0.0, killed + LEASE_SECONDS + 1 - time.monotonic()))
        running = [*survivors, workers.start("worker-0-restarted")]

        def finished() -> bool:
            counts = _states(rt)
            if counts[states.FAILED]:
                pytest.fail(f"publications failed: {dict(counts)}")
            return counts[states.PUBLISHED] == TOTAL

        _wait("every publication is published", FINISH_DEADLINE_SECONDS, finished, workers, running)
        elapsed = time.monotonic() - started

        # The kill hit mid-run, and mid-send.
        assert sum(at_kill.values()) == TOTAL, at_kill
        assert at_kill[states.PUBLISHED] < TOTAL, at_kill
        assert len(held) > others, held

        publications = _publications(rt)
        _assert_published_exactly_once(publications, sandbox)

        # Each was recorded once. The killed worker's publishes that the platform held
        # (at least all but ``others`` of those held) never got their answer: they were
        # settled by asking the platform, which found the post.
        outcomes = _outcomes(rt)
        recorded = {pid: events for pid, events in outcomes.items() if len(events) != 1}
        assert not recorded, f"publications recorded more than once: {recorded}"
        assert set(outcomes) == {pid for pid, _, _, _ in publications}
        reconciled = {
            key
            for pid, key, _, _ in publications
            if outcomes[pid] == [str(AuditEventType.PUBLISHING_PUBLICATION_RECONCILED)]
        }
        assert len(held & reconciled) >= len(held) - others, (held, reconciled)
        sys.stderr.write(
            f"crash safety ({BACKEND}, {WORKERS} worker(s)): {TOTAL} published in "
            f"{elapsed:.1f} s; at the kill {dict(at_kill)}, {len(held)} publishes held at "
            f"the platform, {len(held & reconciled)} of them reconciled; "
            f"{len(reconciled)} reconciled in all; "
            f"{sandbox.incomplete} publishes cut off before the platform had them\n"
        )
        passed = True
    finally:
        workers.stop_all()
        if not passed:
            sys.stderr.write(
                f"platform: {len(sandbox.answers())} publishes answered, "
                f"{len(sandbox.posts_created())} keys with posts, "
                f"{sandbox.incomplete} cut off\n{workers.output()}\n"
            )
