"""The task queue: jobs leave only after commit, tolerate vanished targets, and run in a
separate ``plexus worker`` process; ``/readyz`` reports whether the queue can be reached.
"""

from __future__ import annotations

import signal
import subprocess
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING

import pytest
from fastapi.testclient import TestClient
from huey.storage import RedisStorage, SqliteStorage
from sqlalchemy import func, select

from plexus.app import create_app
from plexus.audit.events import Actor, AuditEventType
from plexus.audit.tasks import verify_audit_chain
from plexus.config import load_settings
from plexus.db import unit_of_work
from plexus.errors import NotFound
from plexus.models.audit import AuditEvent
from plexus.runtime import init_runtime
from plexus.worker import enqueue, huey, task

from conftest import PLEXUS_CMD, subprocess_env

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from sqlalchemy.orm import Session

    from plexus.runtime import Runtime

WORKER_DEADLINE_SECONDS = 30
WORKER_STOP_SECONDS = 15


@task()
def plexus_test_worker_probe(session: Session, outcome: str) -> None:
    """Record an audit event, then end as ``outcome`` says: "ok", "gone" or "boom"."""
    from plexus.runtime import runtime

    runtime().audit.record(
        session, AuditEventType.SYSTEM_SERVICE_STARTED, Actor.system(f"probe-{outcome}")
    )
    if outcome == "gone":
        raise NotFound("the row this job was about has been deleted")
    if outcome == "boom":
        msg = "an ordinary failure"
        raise RuntimeError(msg)


def _probe_rows(rt: Runtime, outcome: str) -> int:
    with unit_of_work(rt.sessions) as session:
        statement = (
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.actor_id == f"probe-{outcome}")
        )
        return int(session.scalar(statement) or 0)


# --- enqueue: after commit only ----------------------------------------------------------


def test_queue_is_the_sqlite_file_without_redis(runtime):
    assert isinstance(huey.storage, SqliteStorage)
    assert huey.storage.name == runtime.settings.queue_name
    assert runtime.settings.resolved_queue_file.is_file()
    assert huey.pending_count() == 0


class _Abandon(Exception):
    pass


def _enqueue_then_fail(rt: Runtime, *, touch_database: bool) -> None:
    with unit_of_work(rt.sessions) as session:
        if touch_database:
            rt.audit.record(session, AuditEventType.SYSTEM_SERVICE_STARTED, Actor.system("x"))
        enqueue(session, plexus_test_worker_probe, "ok")
        assert huey.pending_count() == 0
        raise _Abandon


@pytest.mark.parametrize("touch_database", [False, True], ids=["enqueue-only", "with-writes"])
def test_enqueue_sends_nothing_when_the_transaction_rolls_back(runtime, touch_database):
    with pytest.raises(_Abandon):
        _enqueue_then_fail(runtime, touch_database=touch_database)

    assert huey.pending_count() == 0
    with unit_of_work(runtime.sessions) as session:
        assert session.scalar(select(func.count()).select_from(AuditEvent)) == 0


def test_enqueue_rolled_back_before_any_query_is_not_sent_by_a_later_commit(runtime):
    session = runtime.sessions()
    try:
        enqueue(session, plexus_test_worker_probe, "ok")
        session.rollback()
        session.commit()
    finally:
        session.close()
    assert huey.pending_count() == 0


def test_a_released_savepoint_does_not_send_jobs_early(runtime):
    """SQLAlchemy fires after_commit for a SAVEPOINT too; only the real commit sends."""
    session = runtime.sessions()
    try:
        enqueue(session, plexus_test_worker_probe, "ok")
        # The first audit event of a chain creates its head inside a savepoint.
        runtime.audit.record(session, AuditEventType.SYSTEM_SERVICE_STARTED, Actor.system("x"))
        with session.begin_nested():
            pass
        assert huey.pending_count() == 0, "sent when a savepoint was released"
        session.rollback()
    finally:
        session.close()
    assert huey.pending_count() == 0


def test_enqueue_sends_exactly_once_after_commit(runtime):
    with unit_of_work(runtime.sessions) as session:
        enqueue(session, plexus_test_worker_probe, "ok")
        session.flush()
        assert huey.pending_count() == 0, "sent before the transaction committed"

    assert huey.pending_count() == 1
    [pending] = huey.pending()
    assert pending.name == plexus_test_worker_probe.name
    assert pending.args == ("ok",)

    # A later commit does not send it again.
    with unit_of_work(runtime.sessions) as session:
        runtime.audit.record(session, AuditEventType.SYSTEM_SERVICE_STARTED, Actor.system("x"))
    assert huey.pending_count() == 1


# --- running tasks -----------------------------------------------------------------------


def _enqueue_and_dequeue(rt: Runtime, outcome: str):
    with unit_of_work(rt.sessions) as session:
        enqueue(session, plexus_test_worker_probe, outcome)
    queued = huey.dequeue()
    assert queued is not None
    assert huey.pending_count() == 0
    return queued


def test_task_runs_in_its_own_unit_of_work(runtime):
    queued = _enqueue_and_dequeue(runtime, "ok")

    queued.execute()

    assert _probe_rows(runtime, "ok") == 1


def test_task_whose_target_is_gone_ends_quietly(runtime):
    queued = _enqueue_and_dequeue(runtime, "gone")

    assert queued.execute() is None  # NotFound does not escape the task

    # ...and its unit of work was rolled back, not committed half-done.
    assert _probe_rows(runtime, "gone") == 0
    plexus_test_worker_probe.call_local("gone")
    assert _probe_rows(runtime, "gone") == 0


def test_task_failing_otherwise_still_raises(runtime):
    """The NotFound tolerance is narrow: any other error reaches Huey (to log and retry)."""
    queued = _enqueue_and_dequeue(runtime, "boom")

    with pytest.raises(RuntimeError, match="ordinary failure"):
        queued.execute()
    with pytest.raises(RuntimeError, match="ordinary failure"):
        plexus_test_worker_probe.call_local("boom")

    assert _probe_rows(runtime, "boom") == 0


# --- a separate worker process over Redis (acceptance) ------------------------------------


def _redis_environ(env_vars: dict[str, str], redis_url: str) -> dict[str, str]:
    return {**env_vars, "PLEXUS_REDIS_URL": redis_url}


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=WORKER_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=WORKER_STOP_SECONDS)


def _worker_verified_event(rt: Runtime) -> AuditEvent | None:
    with unit_of_work(rt.sessions) as session:
        statement = select(AuditEvent).where(
            AuditEvent.event == str(AuditEventType.AUDIT_CHAIN_VERIFIED),
            AuditEvent.actor_id == "worker",
        )
        return session.scalars(statement).first()


@pytest.mark.redis
def test_worker_process_runs_a_job_enqueued_by_another_process(env_vars, redis_url, tmp_path: Path):
    environ = _redis_environ(env_vars, redis_url)
    # init_runtime points the module-level queue at Redis (other tests point it elsewhere).
    rt = init_runtime(load_settings(environ=environ))
    log_path = tmp_path / "worker.log"
    try:
        assert isinstance(huey.storage, RedisStorage)
        assert huey.storage.name == env_vars["PLEXUS_QUEUE_NAME"]
        huey.flush()
        with unit_of_work(rt.sessions) as session:
            rt.audit.record(session, AuditEventType.SYSTEM_SERVICE_STARTED, Actor.system("test"))
            enqueue(session, verify_audit_chain)
        assert huey.pending_count() == 1

        with log_path.open("wb") as log:
            worker = subprocess.Popen(
                [*PLEXUS_CMD, "worker", "--threads", "1"],
                env=subprocess_env(environ),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            try:
                found = None
                deadline = time.monotonic() + WORKER_DEADLINE_SECONDS
                while found is None and time.monotonic() < deadline and worker.poll() is None:
                    time.sleep(0.25)
                    found = _worker_verified_event(rt)
            finally:
                _stop(worker)
        output = log_path.read_text(encoding="utf-8", errors="replace")

        assert found is not None, f"the worker did not run the job; its output:\n{output}"
        assert worker.returncode == 0, f"the worker did not stop cleanly:\n{output}"
        assert (found.actor_type, found.chain, found.result) == ("system", "instance", "success")
        assert found.context == '{"chains":1,"problems":[],"rows":1}'
        assert huey.pending_count() == 0
        with unit_of_work(rt.sessions) as session:
            runs = session.scalar(
                select(func.count())
                .select_from(AuditEvent)
                .where(AuditEvent.event == found.event, AuditEvent.actor_id == "worker")
            )
        assert runs == 1
    finally:
        huey.flush()
        rt.dispose()


# --- /readyz reports the queue ------------------------------------------------------------


@contextmanager
def _client(environ: dict[str, str]) -> Iterator[TestClient]:
    settings = load_settings(environ=environ)
    rt = init_runtime(settings)
    with TestClient(create_app(settings, rt), raise_server_exceptions=False) as client:
        yield client


def test_readyz_fails_when_redis_cannot_be_reached(env_vars):
    environ = _redis_environ(env_vars, "redis://127.0.0.1:1/0")
    with _client(environ) as client:
        response = client.get("/readyz")

    # 503, not the probe deadline's 504: a down queue is reported, not waited out.
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == 503
    assert set(body["failed"]) == {"queue", "redis"}
    assert "redis" in body["detail"]


@pytest.mark.redis
def test_readyz_is_ready_with_redis(env_vars, redis_url):
    with _client(_redis_environ(env_vars, redis_url)) as client:
        response = client.get("/readyz")

    assert response.status_code == 200, response.text
    assert response.json() == {
        "status": "ready",
        "checks": {"database": "ok", "queue": "ok", "redis": "ok"},
    }


def test_readyz_is_ready_with_the_sqlite_queue(env_vars):
    with _client(env_vars) as client:
        response = client.get("/readyz")

    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ready", "checks": {"database": "ok", "queue": "ok"}}
