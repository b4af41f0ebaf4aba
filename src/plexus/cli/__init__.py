"""The ``plexus`` command: one Typer app, one sub-app per concern."""

from __future__ import annotations

import typer

from plexus.cli import admin, audit, doctor, ip, keys, serve, system, users

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
app.command("create-admin")(admin.create_admin)
app.add_typer(audit.app, name="audit")
app.add_typer(keys.app, name="keys")
app.add_typer(users.app, name="users")
app.add_typer(ip.app, name="ip")


def main() -> None:
    app()
