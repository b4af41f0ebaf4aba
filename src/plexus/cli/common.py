"""What every command does first: load the settings (exit 2 on a bad one), wire up, and
check that the configured keys open this database's secrets (exit 2 when they do not).
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final

import typer

from plexus.config import ConfigError, Settings, load_settings
from plexus.db import unit_of_work
from plexus.kit.logging import configure_logging
from plexus.runtime import Runtime, init_runtime
from plexus.vault.service import KeyServiceError, MasterKeyMismatch, check_canary

if TYPE_CHECKING:
    from collections.abc import Iterator

EXIT_CONFIG: Final = 2
EXIT_FAILURE: Final = 1


def settings_or_exit(overrides: dict[str, Any] | None = None) -> Settings:
    """Load the settings; on any problem print one line each (never a value) and exit 2."""
    try:
        settings = load_settings(overrides=overrides)
    except ConfigError as exc:
        for problem in exc.problems:
            sys.stderr.write(f"plexus: configuration error: {problem}\n")
        raise typer.Exit(EXIT_CONFIG) from None
    configure_logging(settings.log_level)
    return settings


def vault_or_exit(rt: Runtime, *, adopt: bool = False) -> str:
    """Open the vault canary (sealing it on first start); exit 2 when the keys are wrong or
    the current key is not the one the canary is sealed under.

    ``adopt`` (only ``plexus keys rotate``) re-seals the canary under the current key
    instead. A database whose schema predates the vault passes: only ``plexus migrate``
    (which checks again afterwards) may work on it. Returns what ``check_canary`` did.
    """
    try:
        with unit_of_work(rt.sessions) as session:
            return check_canary(session, rt.secretbox, adopt=adopt)
    except MasterKeyMismatch as exc:
        sys.stderr.write(f"plexus: configuration error: {exc}\n")
        raise typer.Exit(EXIT_CONFIG) from None
    except KeyServiceError as exc:
        sys.stderr.write(f"plexus: configuration error: the key service failed: {exc}\n")
        raise typer.Exit(EXIT_CONFIG) from None


def runtime_or_exit(
    overrides: dict[str, Any] | None = None, *, check_vault: bool = True
) -> Runtime:
    """Settings, wiring and (unless ``check_vault`` is off) the vault canary, or exit 2."""
    settings = settings_or_exit(overrides)
    try:
        rt = init_runtime(settings)
    except ConfigError as exc:  # the vault the settings describe cannot be built
        for problem in exc.problems:
            sys.stderr.write(f"plexus: configuration error: {problem}\n")
        raise typer.Exit(EXIT_CONFIG) from None
    if check_vault:
        vault_or_exit(rt)
    return rt


def fail(message: str, code: int = EXIT_FAILURE) -> typer.Exit:
    sys.stderr.write(f"plexus: {message}\n")
    return typer.Exit(code)


@contextmanager
def migration_errors() -> Iterator[None]:
    """Turn what a migration converting sealed rows can raise into one line and an exit code.

    Keys that do not open the stored secrets, or a vault the settings cannot build, are
    configuration errors (exit 2); a key service failing meanwhile is a runtime failure
    (exit 1). The migration runs in one transaction, so nothing was changed.
    """
    try:
        yield
    except MasterKeyMismatch as exc:
        raise fail(f"configuration error: {exc}", code=EXIT_CONFIG) from None
    except ConfigError as exc:
        raise fail(f"configuration error: {exc}", code=EXIT_CONFIG) from None
    except KeyServiceError as exc:
        raise fail(
            f"the key service failed during the migration (nothing was changed): {exc}"
        ) from None
