"""``plexus migrate`` and ``plexus version``."""

from __future__ import annotations

import platform

import typer

from plexus import __version__, schema
from plexus.audit.events import Actor, AuditEventType
from plexus.cli.common import migration_errors, runtime_or_exit, vault_or_exit
from plexus.db import unit_of_work


def migrate() -> None:
    """Bring the database schema up to the latest migration.

    Converting existing rows (sealing e-mail addresses) uses the configured keys; a key
    that does not open the secrets already stored stops the migration (exit 2), and so does
    a current key the vault canary is not sealed under (`plexus keys rotate` adopts it).
    """
    rt = runtime_or_exit()
    before = schema.current_revision(rt.engine)
    with migration_errors():
        schema.upgrade(rt.engine, settings=rt.settings)
    after = schema.current_revision(rt.engine)
    vault_or_exit(rt)
    if before != after:
        with unit_of_work(rt.sessions) as session:
            rt.audit.record(
                session,
                AuditEventType.SYSTEM_SCHEMA_MIGRATED,
                Actor.system("cli"),
                context={"from": before, "to": after},
            )
    typer.echo(f"database schema at {after} (was {before or 'empty'})")


def version() -> None:
    """Print the Plexus version."""
    typer.echo(f"plexus {__version__} (Python {platform.python_version()})")
