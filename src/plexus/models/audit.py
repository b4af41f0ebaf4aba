"""The audit chain: append-only events, hash-chained per workspace, and each chain's head."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from plexus.models.base import Base, UTCDateTime

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
_ID = BigInteger().with_variant(Integer(), "sqlite")


class AuditEvent(Base):
    """One audited action. Never updated or deleted (a trigger refuses both)."""

    __tablename__ = "audit_events"
    __table_args__ = (UniqueConstraint("chain", "seq"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    #: "instance" for events outside any workspace, otherwise "workspace:<id>".
    chain: Mapped[str] = mapped_column(String(64), index=True)
    workspace_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    event: Mapped[str] = mapped_column(String(96), index=True)
    actor_type: Mapped[str] = mapped_column(String(32))
    actor_id: Mapped[str | None] = mapped_column(String(64))
    target_type: Mapped[str | None] = mapped_column(String(64))
    target_id: Mapped[str | None] = mapped_column(String(64))
    result: Mapped[str] = mapped_column(String(16))
    ip: Mapped[str | None] = mapped_column(String(45))
    request_id: Mapped[str | None] = mapped_column(String(64))
    #: Canonical JSON of extra context (already redacted).
    context: Mapped[str] = mapped_column(Text)
    key_id: Mapped[str] = mapped_column(String(16))
    prev_mac: Mapped[str] = mapped_column(String(64))
    mac: Mapped[str] = mapped_column(String(64))


class AuditChainHead(Base):
    """The latest (seq, mac) of each chain, so a deleted tail is detected too."""

    __tablename__ = "audit_chain_heads"

    chain: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    mac: Mapped[str] = mapped_column(String(64))
    #: MAC over (chain, seq, mac) so the head cannot be rewound to hide a truncation
    #: without the audit key.
    head_mac: Mapped[str] = mapped_column(String(64))
