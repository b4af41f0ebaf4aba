"""What every command does first: load the settings (exit 2 on a bad one), wire up, and
check that the configured keys open this database's secrets (exit 2 when they do not).
"""

from __future__ import annotations

import sys
from typing import Any, Final

import typer

from plexus.config import ConfigError, Settings, load_settings
from plexus.db import unit_of_work
from plexus.kit.logging import configure_logging
from plexus.runtime import Runtime, init_runtime
from plexus.vault.service import KeyServiceError, MasterKeyMismatch, check_canary

EXIT_CONFIG: Final = 2


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


def vault_or_exit(rt: Runtime) -> None:
    """Open the vault canary (sealing it on first start); exit 2 when the keys are wrong.

    A database whose schema predates the vault passes: only ``plexus migrate`` (which
    checks again afterwards) may work on it.
    """
    try:
        with unit_of_work(rt.sessions) as session:
            check_canary(session, rt.secretbox)
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
    rt = init_runtime(settings_or_exit(overrides))
    if check_vault:
        vault_or_exit(rt)
    return rt


def fail(message: str, code: int = 1) -> typer.Exit:
    sys.stderr.write(f"plexus: {message}\n")
    return typer.Exit(code)
