"""What every command does first: load the settings (exit 2 on a bad one) and wire up."""

from __future__ import annotations

import sys
from typing import Any, Final

import typer

from plexus.config import ConfigError, Settings, load_settings
from plexus.kit.logging import configure_logging
from plexus.runtime import Runtime, init_runtime

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


def runtime_or_exit(overrides: dict[str, Any] | None = None) -> Runtime:
    return init_runtime(settings_or_exit(overrides))


def fail(message: str, code: int = 1) -> typer.Exit:
    sys.stderr.write(f"plexus: {message}\n")
    return typer.Exit(code)
