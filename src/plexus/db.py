"""Engine, sessions and the single commit point.

SQLite (WAL, foreign keys, busy timeout) is the embedded default; PostgreSQL through
psycopg 3 is the production database. Services never commit: a request or a task commits
once, at its edge, through ``unit_of_work``; callbacks registered with ``after_commit``
(jobs to enqueue, webhooks to send) run only once that commit has succeeded, and are
dropped on rollback. Callbacks registered with ``after_rollback`` (undoing what cannot
be part of the transaction, such as a stored file) run only when it does not commit.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

from plexus.kit.logging import get_logger

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from plexus.config import Settings

log = get_logger("plexus.db")

_AFTER_COMMIT: Final = "plexus_after_commit"
_AFTER_ROLLBACK: Final = "plexus_after_rollback"
SQLITE_BUSY_TIMEOUT_MS: Final = 5_000


def build_engine(settings: Settings, url: str | None = None) -> Engine:
    """Create the engine for the configured database with Plexus's connection settings."""
    target = make_url(url or settings.resolved_database_url)
    if target.get_backend_name() == "sqlite":
        database = target.database
        if database and database != ":memory:":
            from pathlib import Path

            Path(database).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        engine = create_engine(
            target,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
        )
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
        return engine
    if target.get_backend_name() == "postgresql":
        if target.drivername in ("postgresql", "postgres"):
            target = target.set(drivername="postgresql+psycopg")
        timeout = settings.database_statement_timeout_ms
        return create_engine(
            target,
            pool_pre_ping=True,
            connect_args={"options": f"-c statement_timeout={timeout}", "connect_timeout": 5},
        )
    msg = f"unsupported database backend {target.get_backend_name()!r}"
    raise ValueError(msg)


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # pysqlite's own transaction handling is off so that SQLAlchemy's BEGIN is the real one.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    # Overwrite deleted content: a ciphertext replaced by a key rotation, or a disconnected
    # platform's sealed tokens, do not linger in free pages of the file.
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()


def _sqlite_on_begin(connection: Any) -> None:
    # IMMEDIATE takes the write lock up front, so two writers queue on busy_timeout
    # instead of failing with "database is locked" when a reader upgrades to a writer.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False, autoflush=True)


def after_commit(session: Session, callback: Callable[[], None]) -> None:
    """Run ``callback`` once the session's current transaction commits; drop it on rollback."""
    # Bind the callback to a transaction even if nothing has been queried yet, so that a
    # rollback (or close) of that transaction discards it.
    if not session.in_transaction():
        session.begin()
    session.info.setdefault(_AFTER_COMMIT, []).append(callback)


def after_rollback(session: Session, callback: Callable[[], None]) -> None:
    """Run ``callback`` once the session's current transaction ends without committing
    (rolled back, closed, or its commit failed); drop it when it commits.

    The callback runs after the database has rolled back, outside any transaction; what
    it raises is logged, never raised, so it cannot hide the error behind the rollback.
    """
    if not session.in_transaction():
        session.begin()
    session.info.setdefault(_AFTER_ROLLBACK, []).append(callback)


@event.listens_for(Session, "after_commit")
def _run_after_commit(session: Session) -> None:
    # SQLAlchemy also fires after_commit when a SAVEPOINT is released; only the outermost
    # commit makes the work durable.
    if session.in_nested_transaction():
        return
    session.info.pop(_AFTER_ROLLBACK, None)
    callbacks: list[Callable[[], None]] = session.info.pop(_AFTER_COMMIT, [])
    for callback in callbacks:
        callback()


@event.listens_for(Session, "after_transaction_end")
def _drop_after_commit(session: Session, transaction: SessionTransaction) -> None:
    # Fires after after_commit for a committed transaction (its callbacks already ran and
    # were popped) and for every rolled-back or closed one, whose after-commit callbacks
    # must not run and whose after-rollback callbacks now must.
    if transaction.parent is not None:
        return
    session.info.pop(_AFTER_COMMIT, None)
    callbacks: list[Callable[[], None]] = session.info.pop(_AFTER_ROLLBACK, [])
    for callback in callbacks:
        try:
            callback()
        except Exception:
            log.exception("after_rollback_failed")


@contextmanager
def unit_of_work(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One transaction: commit when the block succeeds, roll back when it raises."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
