"""Content, its versions, publications, and public upload links.

A content item is what a team writes once: a post, a team member's profile, a quote (its
``content_type`` says which fields it has). Every save keeps a numbered version; a
publication sends one version through one connection, exactly once.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from plexus.models.base import Base, UTCDateTime, utcnow

_ID = BigInteger().with_variant(Integer(), "sqlite")

MAX_TITLE_CHARS = 300
MAX_BODY_CHARS = 100_000
MAX_EXCERPT_CHARS = 1_000
MAX_AUTHOR_CHARS = 200
MAX_REMOTE_ID_CHARS = 500
MAX_REMOTE_URL_CHARS = 1_000
MAX_ERROR_CHARS = 300


class ContentItem(Base):
    """The current state of one piece of content (the latest version, editable)."""

    __tablename__ = "content_items"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    workspace_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    #: "post", "team_member" or "quote" (``plexus.content.types``).
    content_type: Mapped[str] = mapped_column(String(32), default="post")
    title: Mapped[str] = mapped_column(String(MAX_TITLE_CHARS))
    #: Markdown source; rendered (and sanitised) on the way out, never stored as HTML.
    body: Mapped[str] = mapped_column(Text, default="")
    excerpt: Mapped[str | None] = mapped_column(String(MAX_EXCERPT_CHARS))
    author: Mapped[str | None] = mapped_column(String(MAX_AUTHOR_CHARS))
    #: JSON lists / objects, validated by the service before they are stored.
    tags: Mapped[str] = mapped_column(Text, default="[]")
    hashtags: Mapped[str] = mapped_column(Text, default="[]")
    media_ids: Mapped[str] = mapped_column(Text, default="[]")
    fields: Mapped[str] = mapped_column(Text, default="{}")
    #: ``{"<connection id>": {"text": ..., "media_ids": [...]}}``.
    overrides: Mapped[str] = mapped_column(Text, default="{}")
    #: draft, in_review, approved, scheduled, published, archived.
    status: Mapped[str] = mapped_column(String(16), default="draft", index=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    #: The version that was approved (publishing sends that one), if any.
    approved_version: Mapped[int | None] = mapped_column(Integer)
    approved_by: Mapped[int | None] = mapped_column(BigInteger)
    created_by: Mapped[int | None] = mapped_column(BigInteger)
    updated_by: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class ContentVersion(Base):
    """One saved state of a content item, kept for ever (publications point at one)."""

    __tablename__ = "content_versions"
    __table_args__ = (UniqueConstraint("content_id", "version"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    content_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("content_items.id", ondelete="CASCADE"), index=True
    )
    version: Mapped[int] = mapped_column(Integer)
    #: The item's editable fields as JSON, exactly as they were saved.
    snapshot: Mapped[str] = mapped_column(Text)
    created_by: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Publication(Base):
    """One version of one content item sent through one connection.

    States: scheduled → queued → publishing → published | failed | unconfirmed; an
    unconfirmed one becomes published or failed after reconciliation; cancelled by a user.
    ``parked`` waits for its connection to be connected again.
    """

    __tablename__ = "publications"
    __table_args__ = (
        Index("ix_publications_due", "state", "next_attempt_at"),
        Index("ix_publications_connection_claimed", "connection_id", "claimed_at"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    workspace_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    content_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("content_items.id", ondelete="CASCADE"), index=True
    )
    version: Mapped[int] = mapped_column(Integer)
    connection_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("connections.id", ondelete="CASCADE")
    )
    provider: Mapped[str] = mapped_column(String(40))
    #: Sent to platforms that deduplicate; unique, never reused.
    idempotency_key: Mapped[str] = mapped_column(String(64), unique=True)
    state: Mapped[str] = mapped_column(String(16))
    #: When it is due (UTC), and the zone the user gave it in (for showing it back).
    scheduled_at: Mapped[datetime] = mapped_column(UTCDateTime)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    #: The earliest moment the next attempt may start (backoff, Retry-After, caps).
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: Set by the claim: who holds it and until when (past it, the dispatcher recovers it).
    claim_token: Mapped[str | None] = mapped_column(String(32))
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reconcile_attempts: Mapped[int] = mapped_column(Integer, default=0)
    remote_id: Mapped[str | None] = mapped_column(String(MAX_REMOTE_ID_CHARS))
    remote_url: Mapped[str | None] = mapped_column(String(MAX_REMOTE_URL_CHARS))
    last_error: Mapped[str | None] = mapped_column(String(MAX_ERROR_CHARS))
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_by: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class UploadLink(Base):
    """A link anyone can upload media through, for one content item, until it runs out."""

    __tablename__ = "upload_links"

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    workspace_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    content_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("content_items.id", ondelete="CASCADE"), index=True
    )
    #: SHA-256 of the token; the token is shown once, to whoever created the link.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str | None] = mapped_column(String(200))
    #: JSON list of "image" / "video".
    allowed_kinds: Mapped[str] = mapped_column(String(40), default='["image"]')
    max_uses: Mapped[int] = mapped_column(Integer)
    uses: Mapped[int] = mapped_column(Integer, default=0)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_by: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class UploadSubmission(Base):
    """Media that arrived through an upload link, waiting for (or after) an editor's review."""

    __tablename__ = "upload_submissions"

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    workspace_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    link_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("upload_links.id", ondelete="CASCADE"), index=True
    )
    media_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("media.id", ondelete="CASCADE"), index=True
    )
    #: pending, accepted, rejected.
    status: Mapped[str] = mapped_column(String(16), default="pending")
    submitter_name: Mapped[str | None] = mapped_column(String(200))
    reviewed_by: Mapped[int | None] = mapped_column(BigInteger)
    reviewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
