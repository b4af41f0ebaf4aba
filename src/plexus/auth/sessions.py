"""Auth sessions: browser sessions (R6) and refresh-token families (R1), one table for both.

A login creates one ``AuthSession``. For API clients it is a refresh-token family: every
refresh token belongs to it, and every access token names it in ``sid``. For browsers it
is a cookie session: the cookie carries a random secret whose HMAC is stored; the
synchronizer CSRF token is another HMAC of that secret. Ending the session (logout, reuse
detection, password change, removal from the workspace) therefore ends the cookie, the
refresh tokens and the access tokens together.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Final

from plexus.auth.repository import AuthRepository
from plexus.auth.tokens import issue_access_token
from plexus.kit.tokens import random_base62, random_token
from plexus.models.base import utcnow
from plexus.models.identity import AuthSession, RefreshToken

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from plexus.models.identity import User
    from plexus.runtime import Runtime

SESSION_COOKIE: Final = "__Host-plexus"
SESSION_PURPOSE: Final = "web-session"
CSRF_PURPOSE: Final = "csrf"
REFRESH_PURPOSE: Final = "refresh-token"
#: last_seen_at is written at most this often per session (it is what idle timeout reads).
_SEEN_RESOLUTION: Final = timedelta(seconds=30)


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    session_id: str


@dataclass(frozen=True, slots=True)
class WebLogin:
    cookie_value: str
    csrf_token: str
    session_id: str
    max_age: int


def _amr(methods: tuple[str, ...]) -> str:
    return ",".join(dict.fromkeys(methods))


def amr_of(auth_session: AuthSession) -> tuple[str, ...]:
    return tuple(m for m in auth_session.amr.split(",") if m)


def has_second_factor(methods: tuple[str, ...]) -> bool:
    return any(m in ("otp", "rc", "hwk") for m in methods)


def _new_session(  # noqa: PLR0913, PLR0917 - a session's parts
    kind: str,
    user: User,
    workspace_id: int,
    amr: tuple[str, ...],
    lifetime: int,
    ip: str | None,
    user_agent: str | None,
) -> AuthSession:
    now = utcnow()
    return AuthSession(
        id=random_base62(24),
        kind=kind,
        user_id=user.id,
        workspace_id=workspace_id,
        amr=_amr(amr),
        auth_time=now,
        created_at=now,
        last_seen_at=now,
        expires_at=now + timedelta(seconds=lifetime),
        ip=ip,
        user_agent=(user_agent or "")[:256] or None,
    )


def access_token_for(
    session: Session, runtime: Runtime, user: User, auth_session: AuthSession
) -> tuple[str, int]:
    return issue_access_token(
        runtime.keyring,
        session,
        runtime.settings,
        user_id=user.id,
        workspace_id=auth_session.workspace_id,
        session_id=auth_session.id,
        epoch=user.token_epoch,
        amr=amr_of(auth_session),
    )


def _new_refresh_token(
    session: Session, runtime: Runtime, auth_session: AuthSession
) -> tuple[str, RefreshToken]:
    raw = random_token(32)
    idle = timedelta(seconds=runtime.settings.refresh_token_idle_seconds)
    row = RefreshToken(
        session_id=auth_session.id,
        token_hash=runtime.tokens.digest(REFRESH_PURPOSE, raw),
        issued_at=utcnow(),
        expires_at=min(utcnow() + idle, auth_session.expires_at),
    )
    AuthRepository(session).add(row)
    return raw, row


def start_token_session(  # noqa: PLR0913 - a login's parts
    session: Session,
    runtime: Runtime,
    user: User,
    workspace_id: int,
    amr: tuple[str, ...],
    *,
    ip: str | None,
    user_agent: str | None,
) -> TokenPair:
    """Begin a refresh-token family and return its first token pair."""
    lifetime = runtime.settings.refresh_family_lifetime_seconds
    auth_session = _new_session("token", user, workspace_id, amr, lifetime, ip, user_agent)
    AuthRepository(session).add(auth_session)
    refresh, _ = _new_refresh_token(session, runtime, auth_session)
    access, expires_in = access_token_for(session, runtime, user, auth_session)
    return TokenPair(access, refresh, expires_in, auth_session.id)


def rotate_refresh_token(
    session: Session, runtime: Runtime, user: User, auth_session: AuthSession
) -> TokenPair:
    """The next pair of a family whose current refresh token was just spent."""
    auth_session.last_seen_at = utcnow()
    refresh, _ = _new_refresh_token(session, runtime, auth_session)
    access, expires_in = access_token_for(session, runtime, user, auth_session)
    return TokenPair(access, refresh, expires_in, auth_session.id)


def start_web_session(  # noqa: PLR0913 - a login's parts
    session: Session,
    runtime: Runtime,
    user: User,
    workspace_id: int,
    amr: tuple[str, ...],
    *,
    ip: str | None,
    user_agent: str | None,
) -> WebLogin:
    """Begin a browser session; the caller sets the cookie from the returned value."""
    lifetime = runtime.settings.web_session_absolute_seconds
    auth_session = _new_session("web", user, workspace_id, amr, lifetime, ip, user_agent)
    login = _fresh_secrets(runtime, auth_session)
    AuthRepository(session).add(auth_session)
    return login


def csrf_token_for(runtime: Runtime, cookie: str) -> str:
    """The session's synchronizer token: an HMAC of its cookie secret under a purpose of
    its own. Pages embed it; it changes whenever the cookie does, and one session's token
    never validates for another.
    """
    return runtime.tokens.digest(CSRF_PURPOSE, cookie)


def _fresh_secrets(runtime: Runtime, auth_session: AuthSession) -> WebLogin:
    cookie = random_token(32)
    csrf = csrf_token_for(runtime, cookie)
    auth_session.secret_hash = runtime.tokens.digest(SESSION_PURPOSE, cookie)
    max_age = int((auth_session.expires_at - utcnow()).total_seconds())
    return WebLogin(cookie, csrf, auth_session.id, max(max_age, 0))


def rotate_web_session(session: Session, runtime: Runtime, auth_session: AuthSession) -> WebLogin:
    """New cookie secret and CSRF token for the same session (privilege change): the old
    cookie stops working at once.
    """
    login = _fresh_secrets(runtime, auth_session)
    session.flush()
    return login


def touch(auth_session: AuthSession) -> None:
    now = utcnow()
    if now - auth_session.last_seen_at >= _SEEN_RESOLUTION:
        auth_session.last_seen_at = now


def is_live(runtime: Runtime, auth_session: AuthSession) -> bool:
    """Not revoked, not past its absolute end, and (browser sessions) not idle too long."""
    now = utcnow()
    if auth_session.revoked_at is not None or auth_session.expires_at <= now:
        return False
    if auth_session.kind == "web":
        idle = timedelta(seconds=runtime.settings.web_session_idle_seconds)
        return auth_session.last_seen_at + idle > now
    return True


def end_session(auth_session: AuthSession, reason: str) -> None:
    if auth_session.revoked_at is None:
        auth_session.revoked_at = utcnow()
        auth_session.revoked_reason = reason


def end_user_sessions(
    session: Session,
    user_id: int,
    *,
    reason: str,
    workspace_id: int | None = None,
    except_session_id: str | None = None,
) -> int:
    """End the user's browser sessions and refresh families (and so their access tokens)."""
    return AuthRepository(session).revoke_sessions(
        user_id, reason=reason, workspace_id=workspace_id, except_session_id=except_session_id
    )


def bump_token_epoch(session: Session, user: User) -> None:
    """Kill every access token the user holds, in every workspace, at once."""
    user.token_epoch += 1
    session.flush()


def mark_mfa(session: Session, session_id: str, method: str = "otp") -> None:
    """Record that the session's user has now proved a second factor."""
    auth_session = AuthRepository(session).auth_session(session_id)
    if auth_session is not None:
        auth_session.amr = _amr((*amr_of(auth_session), method))
        auth_session.auth_time = utcnow()
        session.flush()


def mark_reauthenticated(auth_session: AuthSession, methods: tuple[str, ...]) -> None:
    auth_session.auth_time = utcnow()
    auth_session.amr = _amr((*amr_of(auth_session), *methods))
