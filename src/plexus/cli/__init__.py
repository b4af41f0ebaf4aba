"""The ``plexus`` command: one Typer app, one sub-app per concern."""

from __future__ import annotations

import typer

from plexus.cli import audit, doctor, serve, system

app = typer.Typer(
    name="plexus",
    help="Plexus: self-hosted, security-first integration hub.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("serve")(serve.serve)
app.command("worker")(serve.worker)
app.command("migrate")(system.migrate)
app.command("version")(system.version)
app.command("doctor")(doctor.doctor)
app.add_typer(audit.app, name="audit")


def main() -> None:
    app()
