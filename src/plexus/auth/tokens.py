"""Access tokens (R1): short-lived EdDSA JWTs, validated strictly.

Validation refuses, before any signature check, a header that is not exactly
``{"alg": "EdDSA", "typ": "at+jwt", "kid": <a kid of our ring>}``: no ``none``, no HMAC
(so a public key can never be used as an HMAC secret), no ``jwk``/``jku``/``x5u``/``x5c``
pointing at a key of the sender's choosing, no ``kid`` outside the ring. The signature is
then checked with the ring's key, and every registered claim is required and checked
(``iss``, ``aud``, ``exp``, ``nbf``, ``iat``, ``jti``) along with our own (``typ``, ``sid``,
``wid``, ``ep``, ``amr``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final

import jwt

from plexus.auth.keyring import CLOCK_SKEW_SECONDS
from plexus.errors import Unauthorized
from plexus.kit.logging import get_logger
from plexus.kit.tokens import random_token
from plexus.models.base import utcnow

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from plexus.auth.keyring import KeyRing
    from plexus.config import Settings

AUDIENCE: Final = "plexus-api"
ALGORITHM: Final = "EdDSA"
HEADER_TYP: Final = "at+jwt"
ACCESS_TYP: Final = "access"
_KID_SHAPE: Final = re.compile(r"[0-9A-Za-z]{8,32}")
_ALLOWED_HEADER_KEYS: Final = frozenset({"alg", "typ", "kid"})
log = get_logger("plexus.auth")
_REQUIRED_CLAIMS: Final = ("iss", "aud", "sub", "exp", "nbf", "iat", "jti", "typ", "sid", "wid")


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: int
    workspace_id: int
    session_id: str
    epoch: int
    amr: tuple[str, ...]
    jti: str


def issue_access_token(  # noqa: PLR0913 - the claims of a token
    keyring: KeyRing,
    session: Session,
    settings: Settings,
    *,
    user_id: int,
    workspace_id: int,
    session_id: str,
    epoch: int,
    amr: tuple[str, ...],
) -> tuple[str, int]:
    """Sign an access token; returns it with its lifetime in seconds."""
    kid, key = keyring.signing_key(session)
    now = utcnow()
    ttl = settings.access_token_ttl_seconds
    claims: dict[str, Any] = {
        "iss": settings.issuer,
        "aud": AUDIENCE,
        "sub": str(user_id),
        "iat": now,
        "nbf": now,
        "exp": now + timedelta(seconds=ttl),
        "jti": random_token(16),
        "typ": ACCESS_TYP,
        "sid": session_id,
        "wid": workspace_id,
        "ep": epoch,
        "amr": list(amr),
    }
    token = jwt.encode(claims, key, algorithm=ALGORITHM, headers={"kid": kid, "typ": HEADER_TYP})
    return token, ttl


def _refuse(reason: str) -> Unauthorized:
    # One message for every failure: the reason goes to the log, not to the caller.
    log.info("access_token_refused", reason=reason)
    return Unauthorized(
        "The access token is invalid or expired.", headers={"WWW-Authenticate": "Bearer"}
    )


def decode_access_token(
    keyring: KeyRing, session: Session, settings: Settings, token: str
) -> AccessClaims:
    """Validate ``token`` and return its claims; raise Unauthorized on any fault."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise _refuse("malformed") from None
    if set(header) - _ALLOWED_HEADER_KEYS:
        raise _refuse("header carries keys or URLs")
    if header.get("alg") != ALGORITHM or header.get("typ") != HEADER_TYP:
        raise _refuse("algorithm or type")
    kid = header.get("kid")
    if not isinstance(kid, str) or not _KID_SHAPE.fullmatch(kid):
        raise _refuse("kid shape")
    key = keyring.verification_key(session, kid)
    if key is None:
        raise _refuse("kid not in ring")
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            issuer=settings.issuer,
            leeway=CLOCK_SKEW_SECONDS,
            options={"require": list(_REQUIRED_CLAIMS), "strict_aud": True},
        )
    except jwt.PyJWTError:
        raise _refuse("signature or claims") from None
    return _claims(claims)


def _claims(claims: dict[str, Any]) -> AccessClaims:
    if claims.get("typ") != ACCESS_TYP:
        raise _refuse("not an access token")
    sub, wid, sid, epoch = claims["sub"], claims["wid"], claims["sid"], claims.get("ep")
    amr = claims.get("amr")
    if (
        not isinstance(sub, str)
        or not sub.isdigit()
        or not isinstance(wid, int)
        or not isinstance(sid, str)
        or not isinstance(epoch, int)
        or not isinstance(amr, list)
        or not all(isinstance(m, str) for m in amr)
    ):
        raise _refuse("claim types")
    return AccessClaims(
        user_id=int(sub),
        workspace_id=wid,
        session_id=sid,
        epoch=epoch,
        amr=tuple(amr),
        jti=str(claims["jti"]),
    )
