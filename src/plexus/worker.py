"""The task queue: Huey on SQLite (one machine) or Redis (many), jobs enqueued after commit.

Tasks take ids, open their own unit of work, reload the rows they need and tolerate them
being gone (a ``NotFound`` ends the task quietly). Services never call a task directly:
they call ``enqueue(session, task, *ids)``, which sends it only once the session's
transaction commits and drops it on rollback.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Concatenate, Final, ParamSpec

from huey import Huey, crontab
from huey.consumer import Consumer
from huey.storage import MemoryStorage, RedisStorage, SqliteStorage

from plexus.db import after_commit, unit_of_work
from plexus.errors import NotFound
from plexus.kit.logging import get_logger

if TYPE_CHECKING:
    from collections.abc import Callable

    from huey.api import TaskWrapper
    from sqlalchemy.orm import Session

    from plexus.config import Settings

QUEUE_NAME: Final = "plexus"
#: Every module that declares tasks (a worker imports them all at start).
TASK_MODULES: Final = (
    "plexus.audit.tasks",
    "plexus.connections.tasks",
    "plexus.publishing.tasks",
    "plexus.webhooks_out.tasks",
)
P = ParamSpec("P")

log = get_logger("plexus.worker")

#: The one queue. Its storage is chosen by ``configure_queue`` from the settings; until then
#: it holds tasks in memory, so importing task modules never touches a file or a server.
huey: Final = Huey(QUEUE_NAME, storage_class=MemoryStorage, utc=True, results=False)


def configure_queue(settings: Settings) -> None:
    """Point the queue at Redis when PLEXUS_REDIS_URL is set, else at the SQLite file."""
    if huey.storage is not None:
        huey.storage.close()
    if settings.redis_url is not None:
        huey.storage = RedisStorage(
            name=settings.queue_name,
            url=settings.redis_url.get_secret_value(),
            blocking=True,
            read_timeout=1,
        )
    else:
        path = settings.resolved_queue_file
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        huey.storage = SqliteStorage(name=settings.queue_name, filename=str(path), timeout=5)


def queue_ping() -> None:
    """Raise if the queue's storage cannot be reached."""
    storage = huey.storage
    if isinstance(storage, RedisStorage):
        storage.conn.ping()
    else:
        storage.queue_size()


def task(
    *, retries: int = 0, retry_delay: int = 0
) -> Callable[[Callable[Concatenate[Session, P], None]], TaskWrapper]:
    """Declare a background job ``fn(session, *ids)`` run in its own unit of work."""

    def decorator(fn: Callable[Concatenate[Session, P], None]) -> TaskWrapper:
        @functools.wraps(fn)
        def run(*args: P.args, **kwargs: P.kwargs) -> None:
            from plexus.runtime import runtime

            try:
                with unit_of_work(runtime().sessions) as session:
                    fn(session, *args, **kwargs)
            except NotFound:
                log.info("task_target_gone", task=fn.__qualname__)

        wrapper: TaskWrapper = huey.task(
            retries=retries, retry_delay=retry_delay, name=fn.__name__
        )(run)
        return wrapper

    return decorator


def periodic(
    schedule: Callable[[Any], bool],
) -> Callable[[Callable[[Session], None]], TaskWrapper]:
    """Declare a periodic job ``fn(session)``; Huey's scheduler runs it on ``schedule``."""

    def decorator(fn: Callable[[Session], None]) -> TaskWrapper:
        @functools.wraps(fn)
        def run() -> None:
            from plexus.runtime import runtime

            with unit_of_work(runtime().sessions) as session:
                fn(session)

        wrapper: TaskWrapper = huey.periodic_task(schedule, name=fn.__name__)(run)
        return wrapper

    return decorator


def enqueue(session: Session, job: TaskWrapper, *args: Any) -> None:
    """Send ``job(*args)`` once ``session`` commits; nothing is sent if it rolls back."""

    def send() -> None:
        try:
            job(*args)
        except Exception:
            # The transaction has committed; the periodic dispatchers pick up work whose job
            # was lost, so a queue outage delays it instead of losing it.
            log.exception("enqueue_failed", task=job.name)

    after_commit(session, send)


def enqueue_at(session: Session, job: TaskWrapper, when: datetime, *args: Any) -> None:
    """Send ``job(*args)`` to run at ``when`` (or now, if that has passed) once ``session``
    commits. The database stays the truth: the periodic dispatchers find work whose
    scheduled job was lost.
    """
    after_commit(session, lambda: send_at(job, when, *args))


def send_at(job: TaskWrapper, when: datetime, *args: Any) -> None:
    """``enqueue_at`` for code outside a transaction (nothing to wait for)."""
    try:
        if when <= datetime.now(UTC):
            job(*args)
        else:
            job.schedule(args=args, eta=when)
    except Exception:
        log.exception("enqueue_failed", task=job.name)


class EmbeddedConsumer(Consumer):  # type: ignore[misc]  # huey ships no type information
    """A consumer run inside another process (``plexus serve`` in development).

    The host process owns the signal handlers, so this one installs none.
    """

    def _set_signal_handlers(self) -> None:
        return None


def load_tasks() -> None:
    """Import every module that declares tasks, so a worker knows them all."""
    import importlib

    for module in TASK_MODULES:
        importlib.import_module(module)


def daily_at(hour: int, minute: int) -> Callable[[Any], bool]:
    schedule: Callable[[Any], bool] = crontab(minute=str(minute), hour=str(hour))
    return schedule
