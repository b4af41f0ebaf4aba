"""``plexus ip block|unblock|allow|unallow|list``: the IP block and allow lists (R16).

The same service as ``/api/v1/security/ip-blocks``; every change is audited with the
``system:cli`` actor. A running server picks a change up within a few seconds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Final, TypeVar

import typer

from plexus.audit.events import Actor
from plexus.cli.common import fail, runtime_or_exit
from plexus.db import unit_of_work
from plexus.errors import NotFound, PlexusError
from plexus.security.ipguard import MAX_BLOCK_MINUTES, RuleKind

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlalchemy.orm import Session

    from plexus.models.identity import IpRule
    from plexus.runtime import Runtime

#: Exit code for input the service refused (bad network, conflict).
EXIT_REFUSED: Final = 2
CLI_ACTOR: Final = Actor.system("cli")

T = TypeVar("T")

app = typer.Typer(help="Block and allow client addresses.", no_args_is_help=True)

Network = Annotated[str, typer.Argument(help="An IPv4/IPv6 address or CIDR network.")]
Reason = Annotated[str, typer.Option("--reason", help="Why (kept in the audit log).")]
Target = Annotated[str, typer.Argument(help="A rule id, or the exact network it covers.")]


def _run(work: Callable[[Session, Runtime], T]) -> T:
    """Run ``work`` in one transaction; print a refusal as one line and exit non-zero."""
    rt = runtime_or_exit()
    try:
        with unit_of_work(rt.sessions) as session:
            return work(session, rt)
    except NotFound as exc:
        raise fail(exc.detail) from None
    except PlexusError as exc:
        raise fail(exc.detail, EXIT_REFUSED) from None
    finally:
        rt.dispose()


def _line(rule: IpRule) -> str:
    until = rule.expires_at.isoformat(timespec="seconds") if rule.expires_at else "until lifted"
    return (
        f"{rule.id}\t{rule.kind}\t{rule.network}\t{rule.source}\tlevel={rule.level}\t"
        f"until={until}\tblocked_requests={rule.blocked_requests}\t{rule.reason}"
    )


@app.command("block")
def block(
    network: Network,
    reason: Reason,
    minutes: Annotated[
        int | None,
        typer.Option(
            "--minutes", min=1, max=MAX_BLOCK_MINUTES, help="Length; default: until lifted."
        ),
    ] = None,
) -> None:
    """Block an address or network."""
    rule = _run(
        lambda s, rt: rt.ip_guard.block(
            s, network=network, reason=reason, minutes=minutes, actor=CLI_ACTOR
        )
    )
    typer.echo(f"blocked {_line(rule)}")


@app.command("unblock")
def unblock(target: Target) -> None:
    """Lift a block, by its id or by the network it covers."""
    rules = _run(lambda s, rt: _lift(s, rt, target, RuleKind.BLOCK))
    for rule in rules:
        typer.echo(f"lifted {rule.id}\t{rule.network}")


@app.command("allow")
def allow(network: Network, reason: Reason) -> None:
    """Allow-list an address or network: it is never blocked (blocks inside it are lifted)."""
    rule = _run(lambda s, rt: rt.ip_guard.allow(s, network=network, reason=reason, actor=CLI_ACTOR))
    typer.echo(f"allowed {_line(rule)}")


@app.command("unallow")
def unallow(target: Target) -> None:
    """Remove an allow entry, by its id or by the network it covers."""
    rules = _run(lambda s, rt: _lift(s, rt, target, RuleKind.ALLOW))
    for rule in rules:
        typer.echo(f"removed {rule.id}\t{rule.network}")


@app.command("list")
def list_rules() -> None:
    """Blocks and allow entries in force, one tab-separated line each.

    Columns: id, kind, network, source, level, end, refused requests, reason.
    """
    rules = _run(
        lambda s, rt: [
            *rt.ip_guard.active_rules(s, RuleKind.BLOCK),
            *rt.ip_guard.active_rules(s, RuleKind.ALLOW),
        ]
    )
    for rule in rules:
        typer.echo(_line(rule))
    if not rules:
        typer.echo("no blocks or allow entries in force")


def _lift(session: Session, rt: Runtime, target: str, kind: RuleKind) -> list[IpRule]:
    if target.isdigit():
        return [rt.ip_guard.lift(session, int(target), kind, actor=CLI_ACTOR)]
    return rt.ip_guard.lift_network(session, target, kind, actor=CLI_ACTOR)
