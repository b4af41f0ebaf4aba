"""Outbound webhooks: the endpoints a workspace registered, the events sent to them and
one delivery row per attempt.

The signing secrets are sealed by the vault (``*_sealed`` columns, see
``plexus.vault_columns``); an event's ``payload`` is the exact JSON body that is signed
and sent, and holds ids and non-secret fields only.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from plexus.models.base import Base, UTCDateTime, utcnow

_ID = BigInteger().with_variant(Integer(), "sqlite")


class WebhookEndpoint(Base):
    """A URL of a workspace that receives the events it subscribed to."""

    __tablename__ = "webhook_endpoints"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    workspace_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    url: Mapped[str] = mapped_column(String(2000))
    description: Mapped[str | None] = mapped_column(String(300))
    #: JSON list of subscribed event names (``publication.published``, ``security.*``).
    events: Mapped[str] = mapped_column(Text, default="[]")
    enabled: Mapped[bool] = mapped_column(default=True)
    #: Sealed ``whsec_…`` secret that signs every delivery.
    secret_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    #: The secret before the last rotation: it also signs until ``previous_expires_at``.
    previous_secret_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    previous_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Since when every attempt has failed (None after any success).
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Why the endpoint was disabled by Plexus (None when a person disabled it).
    disabled_reason: Mapped[str | None] = mapped_column(String(300))
    created_by: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class WebhookEvent(Base):
    """One event as sent: its Standard Webhooks message id and the signed body."""

    __tablename__ = "webhook_events"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    workspace_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    #: ``webhook-id``: the same on every attempt and replay, so receivers can deduplicate.
    message_id: Mapped[str] = mapped_column(String(40), unique=True)
    type: Mapped[str] = mapped_column(String(60))
    payload: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WebhookDelivery(Base):
    """One attempt to deliver one event to one endpoint (pending until it is made)."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        # The periodic sweep looks for due pending attempts whose job was lost.
        Index("ix_webhook_deliveries_due", "state", "scheduled_at"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    workspace_id: Mapped[int] = mapped_column(BigInteger, index=True)
    endpoint_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), index=True
    )
    event_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("webhook_events.id", ondelete="CASCADE"), index=True
    )
    #: 1 for the first attempt of a chain (a replay starts a new chain).
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    #: "pending", "sending", "succeeded", "failed" or "cancelled".
    state: Mapped[str] = mapped_column(String(16), default="pending")
    scheduled_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: When the chain's first attempt was due: retries stop a window after it.
    chain_started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status_code: Mapped[int | None] = mapped_column(Integer)
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    #: A short, secret-free reason for a failure.
    error: Mapped[str | None] = mapped_column(String(300))
    #: When the next attempt (a new row) is due; None when none follows.
    next_retry_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Set when a person asked for this chain (a replay or a test event).
    replay_of: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
