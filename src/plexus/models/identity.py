"""Identity and access: users, workspaces, memberships, invitations, sessions and tokens,
API keys, JWT signing keys, the vault canary, IP rules and security events.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
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

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
_ID = BigInteger().with_variant(Integer(), "sqlite")


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    #: The normalised address, sealed by the vault (context ``users:email:<id>``).
    email_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    #: Keyed blind index of the normalised address (``plexus.kit.blindindex``): what
    #: look-ups match and what keeps an address to one account.
    email_index: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(120))
    #: bcrypt over HMAC-SHA256(pepper, password); None for an account without a password.
    password_hash: Mapped[str | None] = mapped_column(String(100))
    password_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    #: Holds instance-wide powers (IP blocks, signing keys) beyond any workspace role.
    is_instance_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    #: Bumped to kill every access token of the user at once.
    token_epoch: Mapped[int] = mapped_column(Integer, default=0)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Sealed TOTP secret (see plexus.kit.secretbox); set at enrolment, live once confirmed.
    totp_secret: Mapped[bytes | None] = mapped_column(LargeBinary)
    totp_confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: The last TOTP time step accepted, so a code is never accepted twice.
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Workspace(Base):
    __tablename__ = "workspaces"

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(120))
    #: "none", "admins" (owners and admins need MFA) or "all".
    mfa_policy: Mapped[str] = mapped_column(String(16), default="none")
    #: Content must be approved by an editor before it is published (a contributor's work
    #: always is); off, editors publish their own drafts directly.
    require_approval: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Membership(Base):
    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("workspace_id", "user_id"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    workspace_id: Mapped[int] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Invitation(Base):
    __tablename__ = "invitations"

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    workspace_id: Mapped[int] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    #: The invited (normalised) address, sealed (context ``invitations:email:<id>``).
    email_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    #: Keyed blind index of the address, for "already invited?" look-ups.
    email_index: Mapped[str] = mapped_column(String(64), index=True)
    role: Mapped[str] = mapped_column(String(16))
    #: HMAC of the token; the token itself is shown once to the inviter.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    invited_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    accepted_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class RecoveryCode(Base):
    __tablename__ = "recovery_codes"

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class LoginChallenge(Base):
    """The step between a correct password and the second factor (``mfa_token``)."""

    __tablename__ = "login_challenges"

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    #: "token" (JWT + refresh token) or "cookie" (a browser session).
    mode: Mapped[str] = mapped_column(String(8))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AuthSession(Base):
    """One login: a browser session (``kind="web"``) or a refresh-token family
    (``kind="token"``). Access tokens name it in ``sid``, so ending it ends them too.
    """

    __tablename__ = "auth_sessions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    workspace_id: Mapped[int] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    #: HMAC of the cookie value (web sessions only); rotated at privilege changes.
    secret_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    #: Comma-separated authentication methods: "pwd", "pwd,otp", "pwd,rc".
    amr: Mapped[str] = mapped_column(String(32))
    #: Last time the user proved who they are (login or re-authentication).
    auth_time: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ip: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(256))
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_reason: Mapped[str | None] = mapped_column(String(32))


class RefreshToken(Base):
    __tablename__ = "refresh_tokens"

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(
        ForeignKey("auth_sessions.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    workspace_id: Mapped[int] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    created_by: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(120))
    env: Mapped[str] = mapped_column(String(8))
    #: The first characters of the key, safe to show ("plx_live_3fA9…").
    display_prefix: Mapped[str] = mapped_column(String(24))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    #: JSON list of permission names.
    scopes: Mapped[str] = mapped_column(Text)
    #: JSON list of CIDRs; empty means any address.
    allowed_networks: Mapped[str] = mapped_column(Text, default="[]")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    rotated_to_id: Mapped[int | None] = mapped_column(BigInteger)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_ip: Mapped[str | None] = mapped_column(String(45))
    #: JSON list of networks (/24 or /48) the key has been used from.
    seen_networks: Mapped[str] = mapped_column(Text, default="[]")
    #: Usage counting for burst detection: the current minute, its count, and the key's
    #: running baseline of requests per active minute.
    usage_minute: Mapped[int] = mapped_column(BigInteger, default=0)
    usage_count: Mapped[int] = mapped_column(Integer, default=0)
    usage_baseline: Mapped[float] = mapped_column(default=0.0)
    burst_flagged_minute: Mapped[int] = mapped_column(BigInteger, default=0)
    #: Scope-denial counting for probing detection.
    denials_window: Mapped[int] = mapped_column(BigInteger, default=0)
    denials_count: Mapped[int] = mapped_column(Integer, default=0)


class SigningKey(Base):
    """An Ed25519 key of the JWT key ring."""

    __tablename__ = "signing_keys"

    kid: Mapped[str] = mapped_column(String(32), primary_key=True)
    #: Sealed PKCS#8 private key.
    private_key: Mapped[bytes] = mapped_column(LargeBinary)
    #: Raw 32-byte public key, base64url (the JWK ``x``).
    public_x: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: When it stopped signing; it still verifies until every token it signed has expired.
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class VaultCanary(Base):
    """A known value sealed at first start: if it does not open, the master key is wrong.

    One row (id 1). Starting with a replaced or mistyped master key would otherwise only
    show up later, as secrets failing to open one by one.
    """

    __tablename__ = "vault_canary"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class IpRule(Base):
    """A block or allow entry for an address or network."""

    __tablename__ = "ip_rules"
    __table_args__ = (Index("ix_ip_rules_active", "kind", "lifted_at", "expires_at"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    network: Mapped[str] = mapped_column(String(49), index=True)
    #: "block" or "allow".
    kind: Mapped[str] = mapped_column(String(8))
    #: "manual" or "auto".
    source: Mapped[str] = mapped_column(String(8))
    reason: Mapped[str] = mapped_column(String(200))
    #: How many automatic blocks this network had before this one (escalation).
    level: Mapped[int] = mapped_column(Integer, default=0)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lifted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lifted_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    blocked_requests: Mapped[int] = mapped_column(BigInteger, default=0)


class SecurityEvent(Base):
    """A signal for the security team (lockouts, token reuse, blocks, key anomalies).

    Alert rules and notifiers read these (R26); the audit chain records the same facts.
    """

    __tablename__ = "security_events"

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(64), index=True)
    severity: Mapped[str] = mapped_column(String(8))
    workspace_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    user_id: Mapped[int | None] = mapped_column(BigInteger)
    ip: Mapped[str | None] = mapped_column(String(45))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: JSON details (redacted).
    details: Mapped[str] = mapped_column(Text, default="{}")
