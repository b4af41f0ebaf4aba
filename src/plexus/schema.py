"""Running the Alembic migrations, and checking the database is at the latest one."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from plexus.kit.logging import get_logger

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine

    from plexus.config import Settings

log = get_logger("plexus.schema")


def migrations_dir() -> Path:
    """The migrations shipped inside the wheel, or those of the source tree."""
    packaged = Path(__file__).parent / "_migrations"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "migrations"


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    return config


def upgrade(engine: Engine, revision: str = "head", *, settings: Settings | None = None) -> None:
    """Run the migrations up to ``revision`` in one transaction.

    ``settings`` are the running process's: a migration that converts existing rows (0004
    seals e-mail addresses) takes its keys from them. Without them such a migration reads
    the settings from the environment, which only a bare Alembic invocation should rely on.
    """
    config = _config()
    if settings is not None:
        config.attributes["settings"] = settings
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # SQLite changes a column by rebuilding its table (Alembic's batch mode), and
            # dropping the old table while foreign keys are enforced would run their ON
            # DELETE actions on every row that refers to it. The pragma only takes effect
            # outside a transaction, so it is set before the migration's one begins.
            _sqlite_pragma(connection, "PRAGMA foreign_keys=OFF")
        try:
            with connection.begin():
                config.attributes["connection"] = connection
                command.upgrade(config, revision)
                if sqlite and connection.exec_driver_sql("PRAGMA foreign_key_check").first():
                    msg = "the migration left rows whose foreign keys point nowhere"
                    raise RuntimeError(msg)
        finally:
            if sqlite:
                _sqlite_pragma(connection, "PRAGMA foreign_keys=ON")
        if sqlite:
            _checkpoint(connection)


def _checkpoint(connection: Connection) -> None:
    """Move the write-ahead log into the database file, and empty it.

    A migration that drops plaintext (0004) has SQLite zero the pages it frees, but in WAL
    mode those zeroed pages sit in the ``-wal`` file while the main file still holds the
    old ones until a checkpoint, which SQLite skips while another connection has the
    database open. ``TRUNCATE`` waits for readers (busy timeout), copies every page back and
    truncates the log; when a reader kept it from finishing, say so.
    """
    driver = connection.connection.driver_connection
    if driver is None:  # pragma: no cover - a pooled connection always has one
        return
    row = driver.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    busy, frames, checkpointed = (int(v) for v in row) if row is not None else (1, -1, -1)
    if busy != 0:
        log.warning(
            "wal_checkpoint_incomplete",
            frames=frames,
            checkpointed=checkpointed,
            detail="another connection kept the write-ahead log from being copied into the "
            "database file; pages freed by the migration may linger in the old file until "
            "every Plexus process has stopped once",
        )


def _sqlite_pragma(connection: Connection, pragma: str) -> None:
    driver = connection.connection.driver_connection
    if driver is not None:
        driver.execute(pragma)


def head_revision() -> str | None:
    return ScriptDirectory.from_config(_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def is_current(engine: Engine) -> bool:
    return current_revision(engine) == head_revision()
