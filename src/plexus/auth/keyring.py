"""The JWT signing key ring (R1): Ed25519 keys, one active, retired ones verifying a while.

The newest key that is not retired signs. A retired key still verifies tokens until the
longest an access token can live (plus the clock-skew allowance) has passed since it was
retired; after that it is out of the ring, and so out of ``/.well-known/jwks.json``.
Private keys are sealed at rest. Each process caches the ring briefly and reloads it
early when it meets a ``kid`` it does not know (at most every few seconds, so a flood of
made-up ``kid`` values cannot turn into a flood of queries).
"""

from __future__ import annotations

import base64
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from plexus.auth.repository import AuthRepository
from plexus.kit.tokens import random_base62
from plexus.models.base import utcnow
from plexus.models.identity import SigningKey
from plexus.vault_columns import SIGNING_KEY

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from plexus.config import Settings
    from plexus.kit.secretbox import SecretBox

#: Tokens are accepted this long past ``exp`` / before ``nbf`` (clocks differ a little).
CLOCK_SKEW_SECONDS: Final = 30
_CACHE_SECONDS: Final = 30.0
_MISS_RELOAD_SECONDS: Final = 5.0


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _context(kid: str) -> str:
    return SIGNING_KEY.context(kid)


@dataclass(slots=True)
class _Ring:
    active_kid: str | None = None
    private: dict[str, Ed25519PrivateKey] = field(default_factory=dict)
    public: dict[str, Ed25519PublicKey] = field(default_factory=dict)
    public_x: dict[str, str] = field(default_factory=dict)
    loaded_at: float = 0.0


class KeyRing:
    def __init__(self, box: SecretBox, settings: Settings) -> None:
        self._box = box
        self._grace = timedelta(seconds=settings.access_token_ttl_seconds + CLOCK_SKEW_SECONDS)
        self._ring: _Ring | None = None
        self._last_miss_reload = 0.0
        self._lock = threading.Lock()

    def _load(self, session: Session) -> _Ring:
        now = utcnow()
        ring = _Ring(loaded_at=time.monotonic())
        rows = AuthRepository(session).signing_keys()
        for row in rows:
            if row.retired_at is not None and row.retired_at + self._grace <= now:
                continue
            raw = self._box.open(row.private_key, _context(row.kid))
            private = serialization.load_der_private_key(raw, password=None)
            if not isinstance(private, Ed25519PrivateKey):
                continue
            ring.private[row.kid] = private
            ring.public[row.kid] = private.public_key()
            ring.public_x[row.kid] = row.public_x
            if row.retired_at is None and ring.active_kid is None:
                ring.active_kid = row.kid
        with self._lock:
            self._ring = ring
        return ring

    def _current(self, session: Session) -> _Ring:
        ring = self._ring
        if ring is None or time.monotonic() - ring.loaded_at > _CACHE_SECONDS:
            ring = self._load(session)
        return ring

    def signing_key(self, session: Session) -> tuple[str, Ed25519PrivateKey]:
        """The active key (made on first use when the ring is empty)."""
        ring = self._current(session)
        if ring.active_kid is None:
            self.rotate(session)
            ring = self._load(session)
        kid = ring.active_kid
        if kid is None:
            msg = "the signing key ring has no active key"
            raise RuntimeError(msg)
        return kid, ring.private[kid]

    def verification_key(self, session: Session, kid: str) -> Ed25519PublicKey | None:
        """The public key for ``kid`` if it is in the ring, else None."""
        ring = self._current(session)
        key = ring.public.get(kid)
        if key is None and time.monotonic() - self._last_miss_reload > _MISS_RELOAD_SECONDS:
            self._last_miss_reload = time.monotonic()
            key = self._load(session).public.get(kid)
        return key

    def jwks(self, session: Session) -> dict[str, Any]:
        """The public half of every key in the ring, as a JWK Set."""
        ring = self._current(session)
        if ring.active_kid is None:
            self.signing_key(session)
            ring = self._current(session)
        keys = [
            {"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": kid, "x": x}
            for kid, x in ring.public_x.items()
        ]
        return {"keys": keys}

    def rotate(self, session: Session) -> str:
        """Retire the active key(s) and make a new one; returns the new ``kid``."""
        now = utcnow()
        for row in AuthRepository(session).unretired_signing_keys():
            row.retired_at = now
        private = Ed25519PrivateKey.generate()
        kid = random_base62(22)
        der = private.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        public_raw = private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        session.add(
            SigningKey(
                kid=kid,
                private_key=self._box.seal(der, _context(kid)),
                public_x=_b64url(public_raw),
                created_at=now,
            )
        )
        session.flush()
        with self._lock:
            self._ring = None
        return kid

    def forget(self) -> None:
        """Drop the cached ring (after a rotation made by another process, in tests)."""
        with self._lock:
            self._ring = None
