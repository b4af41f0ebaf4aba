"""``plexus audit verify``: walk the audit chain and name the first broken row."""

from __future__ import annotations

import typer

from plexus.audit.tasks import verify_and_record
from plexus.cli.common import runtime_or_exit
from plexus.db import unit_of_work

app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)


@app.command("verify")
def verify() -> None:
    """Verify every audit chain. Exit code 0 only when every chain is intact.

    The outcome is itself appended to the instance chain (``audit:chain:verified`` or
    ``audit:chain:broken``).
    """
    rt = runtime_or_exit()
    with unit_of_work(rt.sessions) as session:
        report = verify_and_record(session, "cli")
    for problem in report.problems:
        typer.echo(f"BROKEN {problem.describe()}")
    if not report.intact:
        raise typer.Exit(1)
    typer.echo(f"audit chain intact: {report.chains} chain(s), {report.rows} event(s)")
