"""Signing in (R1, R4, R6): passwords with lockout, the second-factor step, and refresh
with reuse detection; the signed-in account itself is ``account.py``. Never commits;
failures that must leave a record (a failed-login count, its audit event) are raised with
``keep_changes=True``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Final

from plexus.accounts.service import email_index, normalize_email
from plexus.audit.events import Actor, AuditEventType, AuditResult, Target
from plexus.auth import mfa
from plexus.auth.repository import AuthRepository
from plexus.auth.sessions import (
    REFRESH_PURPOSE,
    SESSION_PURPOSE,
    TokenPair,
    WebLogin,
    end_session,
    is_live,
    rotate_refresh_token,
    start_token_session,
    start_web_session,
)
from plexus.errors import InvalidCredentials, Unauthorized, ValidationFailed
from plexus.kit.tokens import random_token
from plexus.models.base import utcnow
from plexus.models.identity import LoginChallenge
from plexus.security.events import SecurityEventKind, Severity
from plexus.security.ipguard import FailureKind
from plexus.security.service import raise_security_event

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlalchemy.orm import Session

    from plexus.models.identity import AuthSession, User
    from plexus.runtime import Runtime

CHALLENGE_PURPOSE: Final = "mfa-challenge"
CHALLENGE_SECONDS: Final = 300
CHALLENGE_ATTEMPTS: Final = 5
_BAD_LOGIN: Final = "The e-mail address or password is incorrect."


@dataclass(frozen=True, slots=True)
class ClientInfo:
    ip: str | None
    user_agent: str | None


@dataclass(frozen=True, slots=True)
class LoginOutcome:
    """Exactly one of: a token pair, a browser session, or a second-factor challenge."""

    tokens: TokenPair | None = None
    web: WebLogin | None = None
    mfa_token: str | None = None
    mfa_expires_in: int = 0
    #: The second factors the challenge can be answered with.
    mfa_methods: tuple[str, ...] = ()


def normalise_email(email: str) -> str | None:
    """The stored form of ``email`` (see accounts), or None when it cannot be an address."""
    try:
        return normalize_email(email)
    except ValidationFailed:
        return None


def _fail_login(
    session: Session, runtime: Runtime, user: User | None, client: ClientInfo, reason: str
) -> InvalidCredentials:
    actor = Actor("user", str(user.id)) if user is not None else Actor.anonymous()
    runtime.audit.record(
        session,
        AuditEventType.AUTH_LOGIN_FAILED,
        actor,
        target=Target("user", str(user.id)) if user is not None else None,
        result=AuditResult.FAILURE,
        context={"reason": reason},
        ip=client.ip,
    )
    runtime.ip_guard.note_failure(session, client.ip, FailureKind.LOGIN)
    return InvalidCredentials(_BAD_LOGIN, keep_changes=True)


def _register_failure(session: Session, runtime: Runtime, user: User, client: ClientInfo) -> None:
    """Count a wrong password; lock the account, for longer each time, past the threshold."""
    settings = runtime.settings
    user.failed_logins += 1
    over = user.failed_logins - settings.lockout_threshold
    if over < 0:
        return
    seconds = min(settings.lockout_max_seconds, settings.lockout_base_seconds * 2 ** min(over, 20))
    user.locked_until = utcnow() + timedelta(seconds=seconds)
    runtime.audit.record(
        session,
        AuditEventType.AUTH_ACCOUNT_LOCKED,
        Actor.system("lockout"),
        target=Target("user", str(user.id)),
        result=AuditResult.DENIED,
        context={"failures": user.failed_logins, "seconds": seconds},
        ip=client.ip,
    )
    raise_security_event(
        session,
        SecurityEventKind.ACCOUNT_LOCKED,
        Severity.MEDIUM,
        user_id=user.id,
        ip=client.ip,
        details={"failures": user.failed_logins, "seconds": seconds},
    )


def check_password(
    session: Session, runtime: Runtime, user: User | None, password: str, client: ClientInfo
) -> User:
    """Verify a password with lockout; every failure costs the same and says the same."""
    passwords = runtime.passwords
    if user is None or not user.is_active:
        passwords.verify(password, None)
        raise _fail_login(session, runtime, user, client, "unknown")
    locked = user.locked_until is not None and user.locked_until > utcnow()
    if not passwords.verify(password, user.password_hash):
        if not locked:
            _register_failure(session, runtime, user, client)
        raise _fail_login(session, runtime, user, client, "locked" if locked else "password")
    if locked:
        raise _fail_login(session, runtime, user, client, "locked")
    # The failure count is cleared only when a sign-in completes (``_begin``): a correct
    # password followed by wrong second-factor codes keeps counting toward the lockout.
    if user.password_hash and passwords.needs_rehash(user.password_hash):
        user.password_hash = passwords.hash(password)
    return user


def _pick_workspace(
    session: Session, runtime: Runtime, user: User, workspace_id: int | None, client: ClientInfo
) -> int:
    memberships = AuthRepository(session).memberships(user.id)
    for membership, _workspace in memberships:
        if workspace_id is None or membership.workspace_id == workspace_id:
            return membership.workspace_id
    raise _fail_login(session, runtime, user, client, "no membership")


def _begin(  # noqa: PLR0913 - the parts of a completed sign-in
    session: Session,
    runtime: Runtime,
    user: User,
    workspace_id: int,
    methods: tuple[str, ...],
    *,
    use_cookie: bool,
    client: ClientInfo,
    previous: AuthSession | None = None,
) -> LoginOutcome:
    if previous is not None:
        # Session fixation: whatever session the browser held before signing in ends here.
        end_session(previous, "replaced")
    user.failed_logins = 0
    user.locked_until = None
    runtime.audit.record(
        session,
        AuditEventType.AUTH_LOGIN_SUCCEEDED,
        Actor("user", str(user.id)),
        target=Target("user", str(user.id)),
        workspace_id=workspace_id,
        context={"amr": list(methods), "mode": "cookie" if use_cookie else "token"},
        ip=client.ip,
    )
    if use_cookie:
        web = start_web_session(
            session,
            runtime,
            user,
            workspace_id,
            methods,
            ip=client.ip,
            user_agent=client.user_agent,
        )
        return LoginOutcome(web=web)
    tokens = start_token_session(
        session, runtime, user, workspace_id, methods, ip=client.ip, user_agent=client.user_agent
    )
    return LoginOutcome(tokens=tokens)


def login(  # noqa: PLR0913 - the fields of a login form
    session: Session,
    runtime: Runtime,
    *,
    email: str,
    password: str,
    workspace_id: int | None,
    use_cookie: bool,
    client: ClientInfo,
    previous: AuthSession | None = None,
) -> LoginOutcome:
    """Check the password; then either sign in or ask for the second factor."""
    normalised = normalise_email(email)
    repo = AuthRepository(session)
    user = repo.user_by_email_index(email_index(runtime, normalised)) if normalised else None
    if normalised:
        account = runtime.tokens.digest("rate-limit", normalised)
        runtime.limiter.check({}, "login_account", f"account:{account}")
    user = check_password(session, runtime, user, password, client)
    chosen = _pick_workspace(session, runtime, user, workspace_id, client)
    methods = mfa.second_factor_methods(user)
    if methods:
        raw = random_token(32)
        repo.add(
            LoginChallenge(
                token_hash=runtime.tokens.digest(CHALLENGE_PURPOSE, raw),
                user_id=user.id,
                workspace_id=chosen,
                mode="cookie" if use_cookie else "token",
                expires_at=utcnow() + timedelta(seconds=CHALLENGE_SECONDS),
            )
        )
        return LoginOutcome(
            mfa_token=raw, mfa_expires_in=CHALLENGE_SECONDS, mfa_methods=tuple(methods)
        )
    return _begin(
        session,
        runtime,
        user,
        chosen,
        ("pwd",),
        use_cookie=use_cookie,
        client=client,
        previous=previous,
    )


def _challenge_refused(*, keep_changes: bool = False) -> Unauthorized:
    return Unauthorized(
        "The sign-in step has expired or the code is wrong.", keep_changes=keep_changes
    )


def pending_challenge(
    session: Session, runtime: Runtime, mfa_token: str
) -> tuple[LoginChallenge, User]:
    """The live sign-in step ``mfa_token`` names and its user; 401 when there is none.

    Live means unspent, unexpired, under its attempt budget, of an active user.
    """
    repo = AuthRepository(session)
    challenge = repo.challenge(runtime.tokens.digest(CHALLENGE_PURPOSE, mfa_token))
    if (
        challenge is None
        or challenge.used_at is not None
        or challenge.expires_at <= utcnow()
        or challenge.attempts >= CHALLENGE_ATTEMPTS
    ):
        raise _challenge_refused()
    user = repo.user(challenge.user_id)
    if user is None or not user.is_active:
        raise _challenge_refused()
    if user.locked_until is not None and user.locked_until > utcnow():
        raise _challenge_refused()
    return challenge, user


def complete_second_factor(  # noqa: PLR0913 - keyword-only parts of the request
    session: Session,
    runtime: Runtime,
    *,
    mfa_token: str,
    verify: Callable[[LoginChallenge, User], str | None],
    client: ClientInfo,
    previous: AuthSession | None = None,
) -> LoginOutcome:
    """The second step of a login, whatever the factor: ``verify`` checks it and names the
    method for ``amr`` (``"otp"``, ``"rc"``, ``"hwk"``), or returns None to refuse it.

    A refusal counts against the challenge's attempts (a security event at the last one)
    and is audited; the challenge is spent by exactly one success.
    """
    challenge, user = pending_challenge(session, runtime, mfa_token)
    # Reserve the attempt in the database before checking, so parallel guesses on one
    # challenge cannot share an attempt.
    attempts = AuthRepository(session).take_challenge_attempt(challenge.id, CHALLENGE_ATTEMPTS)
    if attempts is None:
        raise _challenge_refused()
    method = verify(challenge, user)
    if method is None:
        # Wrong codes count toward the account lockout like wrong passwords, so knowing
        # the password does not buy unlimited guesses at the second factor.
        _register_failure(session, runtime, user, client)
        runtime.audit.record(
            session,
            AuditEventType.AUTH_MFA_FAILED,
            Actor("user", str(user.id)),
            target=Target("user", str(user.id)),
            result=AuditResult.FAILURE,
            ip=client.ip,
        )
        if attempts >= CHALLENGE_ATTEMPTS:
            raise_security_event(
                session,
                SecurityEventKind.MFA_FAILURES,
                Severity.MEDIUM,
                user_id=user.id,
                ip=client.ip,
                details={"attempts": attempts},
            )
        raise _challenge_refused(keep_changes=True)
    if not AuthRepository(session).spend_challenge(challenge.id, utcnow()):
        raise _challenge_refused()
    runtime.audit.record(
        session,
        AuditEventType.AUTH_MFA_SUCCEEDED,
        Actor("user", str(user.id)),
        target=Target("user", str(user.id)),
        context={"method": method},
        ip=client.ip,
    )
    return _begin(
        session,
        runtime,
        user,
        challenge.workspace_id,
        ("pwd", method),
        use_cookie=challenge.mode == "cookie",
        client=client,
        previous=previous,
    )


def complete_mfa(  # noqa: PLR0913 - keyword-only parts of the request
    session: Session,
    runtime: Runtime,
    *,
    mfa_token: str,
    code: str,
    client: ClientInfo,
    previous: AuthSession | None = None,
) -> LoginOutcome:
    """The second step of a login: the challenge from step one plus a TOTP or recovery code."""
    return complete_second_factor(
        session,
        runtime,
        mfa_token=mfa_token,
        verify=lambda _challenge, user: mfa.verify_second_factor(session, runtime, user, code),
        client=client,
        previous=previous,
    )


def _refresh_refused(*, keep_changes: bool = False) -> Unauthorized:
    return Unauthorized(
        "The refresh token is invalid, expired or revoked.", keep_changes=keep_changes
    )


def refresh(session: Session, runtime: Runtime, raw: str, client: ClientInfo) -> TokenPair:
    """Spend a refresh token for the next pair; a spent one revokes its whole family."""
    repo = AuthRepository(session)
    token = repo.refresh_token(runtime.tokens.digest(REFRESH_PURPOSE, raw))
    if token is None:
        raise _refresh_refused()
    auth_session = repo.auth_session(token.session_id)
    if auth_session is None or not is_live(runtime, auth_session):
        raise _refresh_refused()
    now = utcnow()
    if token.used_at is not None or not repo.spend_refresh_token(token.id, now):
        _reuse_detected(session, runtime, auth_session, client)
        raise _refresh_refused(keep_changes=True)
    user = repo.user(auth_session.user_id)
    if (
        token.expires_at <= now
        or user is None
        or not user.is_active
        or repo.membership(user.id, auth_session.workspace_id) is None
    ):
        raise _refresh_refused()
    runtime.audit.record(
        session,
        AuditEventType.AUTH_TOKEN_REFRESHED,
        Actor("user", str(user.id)),
        target=Target("session", auth_session.id),
        workspace_id=auth_session.workspace_id,
        ip=client.ip,
    )
    return rotate_refresh_token(session, runtime, user, auth_session)


def _reuse_detected(
    session: Session, runtime: Runtime, auth_session: AuthSession, client: ClientInfo
) -> None:
    end_session(auth_session, "reuse")
    runtime.audit.record(
        session,
        AuditEventType.AUTH_REFRESH_TOKEN_REUSED,
        Actor.anonymous(),
        target=Target("session", auth_session.id),
        result=AuditResult.DENIED,
        workspace_id=auth_session.workspace_id,
        context={"user_id": auth_session.user_id},
        ip=client.ip,
    )
    raise_security_event(
        session,
        SecurityEventKind.REFRESH_TOKEN_REUSED,
        Severity.HIGH,
        workspace_id=auth_session.workspace_id,
        user_id=auth_session.user_id,
        ip=client.ip,
        details={"session_id": auth_session.id},
    )
    runtime.ip_guard.note_failure(session, client.ip, FailureKind.TOKEN)


def session_from_cookie(
    session: Session, runtime: Runtime, cookie: str | None
) -> AuthSession | None:
    """The browser session a cookie names (live or not), to end it at the next login."""
    if not cookie:
        return None
    secret_hash = runtime.tokens.digest(SESSION_PURPOSE, cookie)
    return AuthRepository(session).auth_session_by_secret(secret_hash)
