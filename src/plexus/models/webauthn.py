"""WebAuthn (R5): registered security keys and passkeys, and the ceremonies' challenges."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from plexus.models.base import Base, UTCDateTime, utcnow

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
_ID = BigInteger().with_variant(Integer(), "sqlite")


class WebAuthnCredential(Base):
    """One authenticator a user registered as a second factor.

    ``public_key`` is the COSE key from the attestation: public, so stored as is.
    """

    __tablename__ = "webauthn_credentials"

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    credential_id: Mapped[bytes] = mapped_column(LargeBinary, unique=True)
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    sign_count: Mapped[int] = mapped_column(BigInteger, default=0)
    #: A JSON list of the transports the browser reported ("usb", "nfc", "internal", ...).
    transports: Mapped[str] = mapped_column(Text, default="[]")
    name: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WebAuthnChallenge(Base):
    """A challenge handed to the browser, waiting for the one response that spends it.

    ``purpose`` is ``"register"`` (bound to the user) or ``"login"`` (bound to the user and
    to the sign-in's ``LoginChallenge`` as well). The row is deleted when a response
    arrives, whether the response verifies or not.
    """

    __tablename__ = "webauthn_challenges"

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    login_challenge_id: Mapped[int | None] = mapped_column(
        ForeignKey("login_challenges.id", ondelete="CASCADE"), index=True
    )
    purpose: Mapped[str] = mapped_column(String(16))
    challenge: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
