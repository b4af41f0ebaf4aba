"""``plexus keys``: rotating the instance's own keys, and the vault's status."""

from __future__ import annotations

from typing import Annotated

import typer

from plexus import schema
from plexus.audit.events import Actor, AuditEventType, Target
from plexus.cli.common import fail, runtime_or_exit, vault_or_exit
from plexus.db import unit_of_work
from plexus.kit.keyproviders import generate_master_key
from plexus.runtime import Runtime
from plexus.vault import service as vault

app = typer.Typer(help="The instance's signing keys and the vault's keys.", no_args_is_help=True)


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


@app.command("generate-master")
def generate_master() -> None:
    """Print a new master key (32 random bytes, base64) for PLEXUS_MASTER_KEY.

    Nothing is stored: put it in your secret store. To rotate, make the old key
    PLEXUS_MASTER_KEY_PREVIOUS, this one PLEXUS_MASTER_KEY, restart, run `plexus keys rotate`.
    """
    typer.echo(generate_master_key())


def _current_schema(rt: Runtime) -> None:
    if not schema.is_current(rt.engine):
        raise fail("the database schema is not at the latest migration: run `plexus migrate`")


@app.command("rotate")
def rotate(
    batch_size: Annotated[
        int, typer.Option(min=1, max=10_000, help="Rows re-wrapped per transaction.")
    ] = vault.DEFAULT_BATCH,
    new_key: Annotated[  # noqa: FBT002 - Typer makes it --new-key/--no-new-key
        bool,
        typer.Option(
            help="With PLEXUS_KEY_PROVIDER=vault-transit: first make a new transit key "
            "version (--no-new-key only re-wraps, e.g. to finish an interrupted run)."
        ),
    ] = True,
) -> None:
    """Adopt the current key and re-wrap every sealed secret's data key under it, while
    Plexus runs.

    The vault canary is re-sealed under the current key first: from then on services start
    with it (and any other new key is refused). Secrets themselves are not decrypted (values
    sealed before the vault are sealed anew). Each batch is read and written in two short
    transactions, each row written only if it still holds what was read (a row changed
    meanwhile is read again and retried), so secrets written meanwhile are never
    overwritten; running it again is safe. A last pass counts what is not under the current
    key: exit code 0 when nothing is, 1 otherwise (or when the key service fails).
    """
    rt = runtime_or_exit(check_vault=False)
    _current_schema(rt)
    adopted = vault_or_exit(rt, adopt=True) == "adopted"
    if adopted:
        typer.echo(f"the vault canary is now sealed under {rt.secretbox.current_key_id()}")
    try:
        _rotate(rt, batch_size=batch_size, new_key=new_key, adopted=adopted)
    except vault.KeyServiceError as exc:
        raise fail(
            f"the key service failed: {exc}; nothing was overwritten, run "
            "`plexus keys rotate --no-new-key` again once it answers"
        ) from None


def _rotate(rt: Runtime, *, batch_size: int, new_key: bool, adopted: bool) -> None:
    made = vault.rotate_key_service(rt.secretbox) if new_key else None
    if made is not None:
        typer.echo(f"the key service made a new key version: {made}")
        adopted = False  # the canary is re-wrapped to the new version below, and counted there
    current = rt.secretbox.current_key_id()
    with unit_of_work(rt.sessions) as session:
        columns = vault.present_columns(session)
        total = vault.sealed_count(session)
    typer.echo(f"re-wrapping {total} sealed value(s) under {current}")
    rewrapped = 1 if adopted else 0  # the canary, re-sealed first
    changed = 0
    failed: list[str] = []
    unsettled: list[str] = []
    with typer.progressbar(length=total, label="re-wrapping", file=None) as progress:
        for sealed in columns:
            after: object | None = None
            while True:
                result = vault.rotate_batch(
                    lambda: unit_of_work(rt.sessions),
                    rt.secretbox,
                    sealed,
                    after=after,
                    limit=batch_size,
                    current=current,
                )
                progress.update(result.examined)
                rewrapped += result.rewrapped
                changed += result.changed_meanwhile
                failed.extend(result.failed)
                unsettled.extend(result.unsettled)
                if result.done:
                    break
                after = result.last
    with unit_of_work(rt.sessions) as session:
        report = vault.vault_status(session, rt.secretbox)
        rt.audit.record(
            session,
            AuditEventType.SYSTEM_VAULT_KEY_ROTATED,
            Actor.system("cli"),
            target=Target("vault_key", current),
            context={
                "rewrapped": rewrapped,
                "changed_meanwhile": changed,
                "failed": len(failed),
                "not_current": report.not_current,
            },
        )
    typer.echo(
        f"re-wrapped {rewrapped} value(s) under {current}; "
        f"{changed} changed meanwhile (read again and retried)"
    )
    _report_leftovers(report, current, failed, unsettled)


def _report_leftovers(
    report: vault.VaultStatus, current: str, failed: list[str], unsettled: list[str]
) -> None:
    """Exit 1, saying what to do, when the last pass finds values not under ``current``."""
    for line in failed:
        typer.echo(f"plexus: could not re-wrap {line}", err=True)
    for line in unsettled:
        typer.echo(f"plexus: {line} kept changing while it was re-wrapped", err=True)
    if report.not_current == 0 and not failed:
        return
    if report.unreadable:
        typer.echo(
            f"plexus: {report.unreadable} sealed value(s) cannot be read with the configured "
            "keys (see above); they are not under the current key",
            err=True,
        )
    stale = report.not_current - report.unreadable
    if stale:
        typer.echo(
            f"plexus: {stale} sealed value(s) are still not under {current}: a process still "
            "runs with the old key: restart it with the new configuration and run "
            "`plexus keys rotate` again",
            err=True,
        )
    raise typer.Exit(1)


@app.command("status")
def status() -> None:
    """Which key wraps how many sealed secrets, and how many legacy values remain."""
    rt = runtime_or_exit()
    _current_schema(rt)
    with unit_of_work(rt.sessions) as session:
        report = vault.vault_status(session, rt.secretbox)
    typer.echo(f"current key: {report.current_key}")
    typer.echo("keys configured:")
    for line in report.keys:
        typer.echo(f"  {line}")
    typer.echo("sealed values by column:")
    for column in report.columns:
        parts = [f"{key}={count}" for key, count in sorted(column.by_key.items())]
        if column.unreadable:
            parts.append(f"unreadable={column.unreadable}")
        typer.echo(f"  {column.name}: {column.total} ({', '.join(parts) or 'none'})")
    typer.echo("sealed values by key:")
    for key, count in sorted(report.by_key.items()):
        marker = " (current)" if key == report.current_key else ""
        typer.echo(f"  {key}{marker}: {count}")
    typer.echo(f"legacy values remaining: {report.legacy}")
    typer.echo(f"not under the current key: {report.not_current}")
    if report.not_current:
        typer.echo("run `plexus keys rotate` to move them to the current key")
