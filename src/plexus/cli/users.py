"""``plexus users``: account operations for whoever runs the server."""

from __future__ import annotations

from typing import Annotated

import typer

from plexus.audit.events import Actor
from plexus.auth.account import unlock_account
from plexus.cli.common import fail, runtime_or_exit
from plexus.db import unit_of_work

app = typer.Typer(help="User accounts.", no_args_is_help=True)


@app.command("unlock")
def unlock(email: Annotated[str, typer.Argument(help="The account's e-mail address.")]) -> None:
    """Lift a sign-in lockout now instead of waiting for it to end."""
    rt = runtime_or_exit()
    with unit_of_work(rt.sessions) as session:
        found = unlock_account(session, rt, email, Actor.system("cli"))
    if not found:
        raise fail("no account has that e-mail address")
    typer.echo("account unlocked")
