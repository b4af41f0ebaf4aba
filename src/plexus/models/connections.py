"""Platform connections: connected accounts, OAuth flows in progress, per-instance OAuth
clients, and in-app notifications for the people who must act on one.

Every secret here is sealed by the vault (``*_sealed`` columns, associated data naming the
table, column and row); the plain columns hold only what may be shown.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from plexus.models.base import Base, UTCDateTime, utcnow

_ID = BigInteger().with_variant(Integer(), "sqlite")


class OAuthClientRegistration(Base):
    """An OAuth client Plexus registered at one instance of a platform (Mastodon apps)."""

    __tablename__ = "oauth_clients"
    __table_args__ = (
        UniqueConstraint("provider", "registration_key", "redirect_uri"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    provider: Mapped[str] = mapped_column(String(40))
    #: Which instance (its normalised origin), as the provider names it.
    registration_key: Mapped[str] = mapped_column(String(300))
    redirect_uri: Mapped[str] = mapped_column(String(500))
    client_id: Mapped[str] = mapped_column(String(300))
    client_secret_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Connection(Base):
    """One connected platform account of a workspace."""

    __tablename__ = "connections"
    __table_args__ = (
        UniqueConstraint("workspace_id", "provider", "external_id"),
        Index("ix_connections_refresh_due", "status", "refresh_due_at"),
        # Ids are never reused (SQLite would reuse a deleted row's): a job or a refresh in
        # flight for a deleted connection must never find another connection under its id.
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    workspace_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    provider: Mapped[str] = mapped_column(String(40))
    name: Mapped[str] = mapped_column(String(100))
    #: "active" or "needs_reauth".
    status: Mapped[str] = mapped_column(String(16), default="active")
    external_id: Mapped[str] = mapped_column(String(300))
    display_name: Mapped[str] = mapped_column(String(300))
    account_url: Mapped[str | None] = mapped_column(String(1000))
    #: JSON: non-secret facts the provider keeps (ids, instance URL, limits read from it).
    account_settings: Mapped[str] = mapped_column(Text, default="{}")
    #: JSON: the non-secret values the user connected with (instance, channel, room).
    params: Mapped[str] = mapped_column(Text, default="{}")
    #: Sealed JSON of the provider's Credentials (tokens, keys, webhook URL).
    credentials_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    #: Bumped every time new credentials are stored (refresh, reconnect).
    credentials_version: Mapped[int] = mapped_column(Integer, default=1)
    oauth_client_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("oauth_clients.id", ondelete="SET NULL")
    )
    #: When the access token expires (not secret; lets the refresh job find due tokens).
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    can_refresh: Mapped[bool] = mapped_column(default=False)
    #: When the background job should refresh the token (expiry less the provider's lead);
    #: None for tokens that cannot be refreshed or live too briefly (refreshed when used).
    refresh_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_refreshed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    rate_limited_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Bumped by every publication claim: the write that serialises claims on this
    #: connection, so its rate limits and daily cap are counted by one claim at a time.
    publish_claims: Mapped[int] = mapped_column(Integer, default=0)
    #: A short, secret-free reason for the last failure (shown to the workspace).
    last_error: Mapped[str | None] = mapped_column(String(300))
    created_by: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class OAuthFlow(Base):
    """An authorization flow in progress: single-use, short-lived, bound to the session
    that started it and to one provider. Only an HMAC of its ``state`` is stored.
    """

    __tablename__ = "oauth_flows"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    state_hash: Mapped[str] = mapped_column(String(64), unique=True)
    provider: Mapped[str] = mapped_column(String(40))
    workspace_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[int] = mapped_column(BigInteger)
    #: The auth session (web session or token family) that started the flow.
    session_id: Mapped[str] = mapped_column(String(64))
    #: Set when the flow reconnects an existing connection.
    connection_id: Mapped[int | None] = mapped_column(BigInteger)
    name: Mapped[str] = mapped_column(String(100))
    params: Mapped[str] = mapped_column(Text, default="{}")
    redirect_uri: Mapped[str] = mapped_column(String(500))
    oauth_client_id: Mapped[int | None] = mapped_column(BigInteger)
    #: Sealed JSON: the PKCE verifier, the nonce and the provider's own flow data.
    flow_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Notification(Base):
    """Something a member should see in Plexus (a connection that needs reconnecting)."""

    __tablename__ = "notifications"
    __table_args__ = (
        Index("ix_notifications_user_unread", "user_id", "read_at"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    workspace_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(String(1000))
    #: What the notification is about, e.g. "connection:12".
    subject: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
