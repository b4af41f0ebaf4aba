"""Queries on the audit tables. The only module that touches them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from plexus.models.audit import AuditChainHead, AuditEvent

if TYPE_CHECKING:
    from collections.abc import Iterator

    from sqlalchemy.orm import Session


class AuditRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def lock_head(self, chain: str) -> AuditChainHead | None:
        """The chain's head row, locked until the transaction ends.

        PostgreSQL takes a row lock (FOR UPDATE); SQLite transactions are already
        serialised by BEGIN IMMEDIATE.
        """
        statement = select(AuditChainHead).where(AuditChainHead.chain == chain).with_for_update()
        return self.session.scalars(statement).one_or_none()

    def create_head(self, head: AuditChainHead) -> bool:
        """Insert a new chain head; False when another transaction created it first."""
        try:
            with self.session.begin_nested():
                self.session.add(head)
        except IntegrityError:
            return False
        return True

    def add(self, event: AuditEvent) -> None:
        self.session.add(event)
        self.session.flush()

    def chains(self) -> list[str]:
        found = set(self.session.scalars(select(AuditEvent.chain).distinct()))
        found.update(self.session.scalars(select(AuditChainHead.chain)))
        return sorted(found)

    def head(self, chain: str) -> AuditChainHead | None:
        return self.session.get(AuditChainHead, chain)

    def iter_chain(self, chain: str, batch: int = 1000) -> Iterator[AuditEvent]:
        """Every event of a chain in sequence order, read in batches."""
        last_seq = -1
        while True:
            statement = (
                select(AuditEvent)
                .where(AuditEvent.chain == chain, AuditEvent.seq > last_seq)
                .order_by(AuditEvent.seq, AuditEvent.id)
                .limit(batch)
            )
            rows = list(self.session.scalars(statement))
            if not rows:
                return
            yield from rows
            last_seq = rows[-1].seq
            self.session.expunge_all()
