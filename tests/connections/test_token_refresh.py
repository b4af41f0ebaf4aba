"""Single-flight token refresh (R8): one refresh in flight per connection across threads,
processes and machines; rotated refresh tokens are never reused; a refused refresh token
marks the connection once and is not retried in a loop."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from huey.storage import RedisStorage
from sqlalchemy import func, select

from plexus.config import load_settings
from plexus.connections import calls
from plexus.connections.tasks import check_connection, refresh_connection, refresh_due_tokens
from plexus.db import unit_of_work
from plexus.models.audit import AuditEvent
from plexus.models.connections import Connection, Notification
from plexus.providers.base import Post, ProviderNeedsReauth, ProviderRetryable
from plexus.runtime import init_runtime
from plexus.worker import enqueue, huey

from auth_helpers import sign_in
from conftest import PLEXUS_CMD, subprocess_env
from connection_helpers import (
    connect_sandbox,
    expire_stored_token,
    sandbox_client_fixture,  # noqa: F401 - a fixture
    sandbox_env_fixture,  # noqa: F401 - a fixture
    sandbox_fixture,  # noqa: F401 - a fixture
    sandbox_runtime_fixture,  # noqa: F401 - a fixture
    stored_connection,
)

CONCURRENT = 50


@pytest.fixture
def connection_id(sandbox_client, sandbox_runtime) -> int:
    owner = sign_in(sandbox_runtime, sandbox_client, "owner@example.com")
    return int(connect_sandbox(sandbox_client, owner.headers)["id"])


def _refreshes(runtime) -> int:
    with unit_of_work(runtime.sessions) as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(AuditEvent)
                .where(AuditEvent.event == "connection:token:refreshed")
            )
            or 0
        )


def test_fifty_concurrent_publishes_with_an_expired_token_refresh_once(
    sandbox_runtime, sandbox, connection_id
):
    expire_stored_token(sandbox_runtime, connection_id)
    before = stored_connection(sandbox_runtime, connection_id).credentials_version
    barrier = threading.Barrier(CONCURRENT)
    errors: list[BaseException] = []

    def publish(n: int) -> None:
        barrier.wait()
        try:
            calls.with_connection(
                sandbox_runtime,
                connection_id,
                lambda provider, link: provider.publish(link, Post(text=f"concurrent {n}")),
            )
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=publish, args=(n,)) for n in range(CONCURRENT)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors[:3]
    assert sandbox.platform.count("/api/oauth/token") == 1
    assert sorted(sandbox.platform.texts()) == sorted(f"concurrent {n}" for n in range(CONCURRENT))
    assert stored_connection(sandbox_runtime, connection_id).credentials_version == before + 1
    assert _refreshes(sandbox_runtime) == 1


def test_a_thousand_rotations_never_reuse_a_refresh_token(sandbox_runtime, sandbox, connection_id):
    """The sandbox platform answers invalid_grant to any reused refresh token; one reuse
    would mark the connection needs_reauth and end the loop."""
    version = stored_connection(sandbox_runtime, connection_id).credentials_version
    for _ in range(1000):
        snapshot = calls.refresh(sandbox_runtime, connection_id, version, force=True)
        assert snapshot.version == version + 1
        version = snapshot.version
    assert sandbox.platform.count("/api/oauth/token") == 1000
    assert stored_connection(sandbox_runtime, connection_id).status == "active"
    # The latest tokens work at the platform.
    calls.check(sandbox_runtime, connection_id)


def test_a_stale_waiter_reuses_the_tokens_another_refresh_stored(
    sandbox_runtime, sandbox, connection_id
):
    seen = stored_connection(sandbox_runtime, connection_id).credentials_version
    first = calls.refresh(sandbox_runtime, connection_id, seen, force=True)
    # A caller that read version `seen` before the first refresh finished must not refresh.
    second = calls.refresh(sandbox_runtime, connection_id, seen, force=True)
    assert second.version == first.version
    assert second.link.credentials.refresh_token == first.link.credentials.refresh_token
    assert sandbox.platform.count("/api/oauth/token") == 1


def test_invalid_grant_marks_needs_reauth_and_notifies_once_without_a_loop(
    sandbox_runtime, sandbox, connection_id
):
    sandbox.platform.revoke_refresh_tokens()
    expire_stored_token(sandbox_runtime, connection_id)
    for _ in range(5):
        with pytest.raises(ProviderNeedsReauth):
            calls.with_connection(
                sandbox_runtime, connection_id, lambda p, link: p.check_connection(link)
            )
    refresh_connection.call_local(connection_id)
    assert sandbox.platform.count("/api/oauth/token") == 1
    assert stored_connection(sandbox_runtime, connection_id).status == "needs_reauth"
    with unit_of_work(sandbox_runtime.sessions) as session:
        notes = session.scalars(select(Notification)).all()
        assert len(notes) == 1
        assert notes[0].kind == "connection_needs_reauth"


def test_the_periodic_job_queues_refreshes_only_for_tokens_that_are_due(
    sandbox_runtime, sandbox, connection_id
):
    huey.flush()
    # Fresh token (an hour left, margin 15 minutes): nothing queued.
    refresh_due_tokens.call_local()
    assert huey.pending_count() == 0
    expire_stored_token(sandbox_runtime, connection_id)
    before = stored_connection(sandbox_runtime, connection_id).credentials_version
    refresh_due_tokens.call_local()
    assert huey.pending_count() == 1
    task = huey.dequeue()
    huey.execute(task)
    assert sandbox.platform.count("/api/oauth/token") == 1
    assert stored_connection(sandbox_runtime, connection_id).credentials_version == before + 1


# --- two worker processes sharing Redis (acceptance) ---------------------------------------


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.mark.redis
@pytest.mark.slow
def test_fifty_jobs_in_two_worker_processes_refresh_once(
    sandbox_env, redis_url, sandbox, tmp_path: Path, sandbox_client, sandbox_runtime
):
    """Two ``plexus worker`` processes (4 threads each) share one Redis queue and lock;
    50 jobs on a connection whose token expired cause exactly one refresh request."""
    owner = sign_in(sandbox_runtime, sandbox_client, "owner@example.com")
    connection_id = int(connect_sandbox(sandbox_client, owner.headers)["id"])
    environ = {**sandbox_env, "PLEXUS_REDIS_URL": redis_url}
    rt = init_runtime(load_settings(environ=environ))
    workers: list[subprocess.Popen[bytes]] = []
    try:
        assert isinstance(huey.storage, RedisStorage)
        huey.flush()
        expire_stored_token(rt, connection_id)
        sandbox.platform.expire_access_tokens()
        before = stored_connection(rt, connection_id).credentials_version
        with unit_of_work(rt.sessions) as session:
            for _ in range(CONCURRENT):
                enqueue(session, check_connection, connection_id)
        assert huey.pending_count() == CONCURRENT
        for n in range(2):
            with (tmp_path / f"worker-{n}.log").open("wb") as log:
                workers.append(
                    subprocess.Popen(
                        [*PLEXUS_CMD, "worker", "--threads", "4"],
                        env=subprocess_env(environ),
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and sandbox.platform.count("/api/me", "GET") < CONCURRENT:
            assert all(w.poll() is None for w in workers), _logs(tmp_path)
            time.sleep(0.2)
        assert sandbox.platform.count("/api/me", "GET") >= CONCURRENT, _logs(tmp_path)
    finally:
        for worker in workers:
            _stop(worker)
        huey.flush()
    assert sandbox.platform.count("/api/oauth/token") == 1, _logs(tmp_path)
    with unit_of_work(rt.sessions) as session:
        row = session.get(Connection, connection_id)
        assert row is not None
        assert row.status == "active"
        assert row.credentials_version == before + 1
    assert _refreshes(rt) == 1
    rt.dispose()


def _logs(folder: Path) -> str:
    return "\n".join(
        p.read_text(errors="replace")[-3000:] for p in sorted(folder.glob("worker-*.log"))
    )


#: One publishing process: 25 threads publish at once through the connection service.
_PUBLISHER = """
import sys, threading
from plexus.config import load_settings
from plexus.connections import calls
from plexus.providers.base import Post
from plexus.runtime import init_runtime

connection_id, tag, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
rt = init_runtime(load_settings())
barrier = threading.Barrier(count)
failures = []

def publish(n):
    barrier.wait()
    try:
        calls.with_connection(
            rt, connection_id, lambda p, link: p.publish(link, Post(text=f"{tag} {n}"))
        )
    except Exception as exc:
        failures.append(repr(exc))

threads = [threading.Thread(target=publish, args=(n,)) for n in range(count)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("failures:", failures)
sys.exit(1 if failures else 0)
"""


@pytest.mark.redis
@pytest.mark.slow
def test_fifty_publishes_from_two_processes_sharing_redis_refresh_once(
    sandbox_env, redis_url, sandbox, sandbox_client, sandbox_runtime
):
    """Two processes (25 concurrent publishes each) with an expired token: exactly one
    refresh reaches the platform, and all 50 posts are published with the new token."""
    owner = sign_in(sandbox_runtime, sandbox_client, "owner@example.com")
    connection_id = int(connect_sandbox(sandbox_client, owner.headers)["id"])
    environ = {**sandbox_env, "PLEXUS_REDIS_URL": redis_url}
    expire_stored_token(sandbox_runtime, connection_id)
    sandbox.platform.expire_access_tokens()
    before = stored_connection(sandbox_runtime, connection_id).credentials_version
    processes = [
        subprocess.Popen(
            [*PLEXUS_CMD[:1], "-c", _PUBLISHER, str(connection_id), f"p{n}", "25"],
            env=subprocess_env(environ),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for n in range(2)
    ]
    outputs = [p.communicate(timeout=120)[0].decode(errors="replace") for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    assert sandbox.platform.count("/api/oauth/token") == 1, outputs
    texts = sorted(sandbox.platform.texts())
    assert texts == sorted(f"p{n} {i}" for n in range(2) for i in range(25))
    assert stored_connection(sandbox_runtime, connection_id).credentials_version == before + 1
    assert _refreshes(sandbox_runtime) == 1


def _refresh_in_background(runtime, connection_id: int, version: int):
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["snapshot"] = calls.refresh(runtime, connection_id, version, force=True)
        except Exception as exc:  # noqa: BLE001 - asserted by the caller
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def test_no_transaction_or_row_lock_is_held_while_the_platform_refreshes(
    sandbox_runtime, sandbox, connection_id
):
    """While the platform takes its time over a refresh, the connection's row can be
    written at once (on SQLite: any write; on PostgreSQL: no row lock on it)."""
    sandbox.platform.token_delay = 2.0
    version = stored_connection(sandbox_runtime, connection_id).credentials_version
    thread, outcome = _refresh_in_background(sandbox_runtime, connection_id, version)
    assert sandbox.platform.token_request_waiting.wait(10)
    started = time.monotonic()
    with unit_of_work(sandbox_runtime.sessions) as session:
        row = session.get(Connection, connection_id)
        assert row is not None
        row.name = "renamed while refreshing"
    assert time.monotonic() - started < 1.5
    thread.join(20)
    assert "snapshot" in outcome, outcome
    assert stored_connection(sandbox_runtime, connection_id).name == "renamed while refreshing"


def test_tokens_refreshed_for_a_replaced_grant_are_dropped(sandbox_runtime, sandbox, connection_id):
    """A reconnect that stores new credentials while a refresh is in flight wins; the
    refresh's tokens are not written over them."""
    from dataclasses import replace

    sandbox.platform.token_delay = 1.5
    version = stored_connection(sandbox_runtime, connection_id).credentials_version
    thread, outcome = _refresh_in_background(sandbox_runtime, connection_id, version)
    assert sandbox.platform.token_request_waiting.wait(10)
    with unit_of_work(sandbox_runtime.sessions) as session:
        row = session.get(Connection, connection_id)
        assert row is not None
        reconnected = replace(calls.open_credentials(sandbox_runtime, row), access_token="new")
        calls.store_credentials(sandbox_runtime, row, reconnected)
    thread.join(20)
    assert isinstance(outcome.get("error"), ProviderRetryable), outcome
    row = stored_connection(sandbox_runtime, connection_id)
    assert row.status == "active"
    assert calls.open_credentials(sandbox_runtime, row).access_token == "new"


def test_a_deleted_connections_id_is_never_given_to_another(
    sandbox_client, sandbox_runtime, connection_id
):
    """A job or refresh still carrying a deleted connection's id can never reach another
    workspace's connection through it."""
    owner = sign_in(sandbox_runtime, sandbox_client, "other@example.com")
    removed = sandbox_client.delete(
        f"/api/v1/connections/{connection_id}?force=true",
        headers=sign_in(sandbox_runtime, sandbox_client, "x@example.com").headers,
    )
    assert removed.status_code == 404  # not this user's workspace
    with unit_of_work(sandbox_runtime.sessions) as session:
        session.delete(session.get(Connection, connection_id))
    again = connect_sandbox(sandbox_client, owner.headers)
    assert again["id"] > connection_id
