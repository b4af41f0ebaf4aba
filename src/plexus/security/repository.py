"""Queries on IP rules. The only module that touches the ``ip_rules`` table.

IP rules are instance-wide (no workspace owns an address), so nothing here is scoped to
a workspace; only instance administrators and the IP guard itself reach these queries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import func, or_, select, update

from plexus.models.identity import IpRule

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from datetime import datetime

    from sqlalchemy import ColumnElement, CursorResult
    from sqlalchemy.orm import Session


def _live(now: datetime) -> ColumnElement[bool]:
    """Neither lifted nor past its expiry."""
    return (IpRule.lifted_at.is_(None)) & (
        or_(IpRule.expires_at.is_(None), IpRule.expires_at > now)
    )


class IpRuleRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, rule: IpRule) -> IpRule:
        self.session.add(rule)
        self.session.flush()
        return rule

    def get(self, rule_id: int, kind: str, *, lock: bool = False) -> IpRule | None:
        """The rule ``rule_id`` of ``kind``; ``lock`` holds its row until commit."""
        statement = select(IpRule).where(IpRule.id == rule_id, IpRule.kind == kind)
        if lock:
            statement = statement.with_for_update()
        return self.session.scalars(statement).one_or_none()

    def active(self, kind: str, now: datetime) -> Sequence[IpRule]:
        """Rules of ``kind`` in force at ``now``, newest first."""
        statement = (
            select(IpRule)
            .where(IpRule.kind == kind, _live(now))
            .order_by(IpRule.created_at.desc(), IpRule.id.desc())
        )
        return self.session.scalars(statement).all()

    def active_for_network(self, kind: str, network: str, now: datetime) -> Sequence[IpRule]:
        """Rules of ``kind`` in force for exactly ``network`` (its normalised text)."""
        statement = (
            select(IpRule)
            .where(IpRule.kind == kind, IpRule.network == network, _live(now))
            .order_by(IpRule.id)
            .with_for_update()
        )
        return self.session.scalars(statement).all()

    def auto_blocks_of(self, network: str) -> int:
        """How many automatic blocks ``network`` has had, lifted or not (escalation)."""
        statement = (
            select(func.count())
            .select_from(IpRule)
            .where(IpRule.network == network, IpRule.kind == "block", IpRule.source == "auto")
        )
        return int(self.session.scalar(statement) or 0)

    def expired_unlifted(self, now: datetime) -> list[tuple[int, str, datetime]]:
        """(id, network, expires_at) of blocks whose time ran out but are not marked lifted."""
        statement = (
            select(IpRule.id, IpRule.network, IpRule.expires_at)
            .where(
                IpRule.kind == "block",
                IpRule.lifted_at.is_(None),
                IpRule.expires_at.is_not(None),
                IpRule.expires_at <= now,
            )
            .order_by(IpRule.id)
        )
        rows = self.session.execute(statement).all()
        return [(int(i), str(n), e) for i, n, e in rows if e is not None]

    def mark_lifted(self, rule_id: int, at: datetime, by: int | None) -> bool:
        """Lift ``rule_id`` unless already lifted; True only for the caller that lifted it.

        Two processes sweeping the same expired block so audit its end once.
        """
        result = self.session.execute(
            update(IpRule)
            .where(IpRule.id == rule_id, IpRule.lifted_at.is_(None))
            .values(lifted_at=at, lifted_by=by)
            .execution_options(synchronize_session=False)
        )
        return int(cast("CursorResult[Any]", result).rowcount) == 1

    def add_blocked_requests(self, counts: Mapping[int, int]) -> None:
        """Add the refused requests counted in memory to each rule's total."""
        for rule_id, count in sorted(counts.items()):
            self.session.execute(
                update(IpRule)
                .where(IpRule.id == rule_id)
                .values(blocked_requests=IpRule.blocked_requests + count)
                .execution_options(synchronize_session=False)
            )
