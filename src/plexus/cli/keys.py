"""``plexus keys``: rotating the instance's own keys."""

from __future__ import annotations

import typer

from plexus.audit.events import Actor, AuditEventType, Target
from plexus.cli.common import runtime_or_exit
from plexus.db import unit_of_work

app = typer.Typer(help="The instance's signing keys.", no_args_is_help=True)


@app.command("rotate-jwt")
def rotate_jwt() -> None:
    """Make a new JWT signing key and retire the current one.

    Tokens signed by the retired key stay valid until they expire (at most the access-token
    lifetime); running processes pick the new key up within half a minute.
    """
    rt = runtime_or_exit()
    with unit_of_work(rt.sessions) as session:
        kid = rt.keyring.rotate(session)
        rt.audit.record(
            session,
            AuditEventType.AUTH_SIGNING_KEY_ROTATED,
            Actor.system("cli"),
            target=Target("signing_key", kid),
        )
    typer.echo(f"new signing key {kid} is active; the previous key now only verifies")
