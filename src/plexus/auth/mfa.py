"""Second factors (R5): TOTP and single-use recovery codes.

TOTP follows RFC 6238 as authenticator apps expect it (HMAC-SHA-1, 6 digits, 30-second
steps) over a 160-bit secret from the CSPRNG, sealed at rest by the runtime's secret box
under a context naming its row and column. A code is accepted for the current step or
one step either side, and never twice: the accepted step is written with one conditional
``UPDATE ... WHERE totp_last_step < step``, so of two requests racing with the same code
exactly one changes the row.

Recovery codes are 60 random bits each, written as three groups of four characters from
Crockford's base-32 alphabet (no I, L, O or U to misread); the database keeps only their
HMAC under the server's token key, and a code is burned by a conditional ``UPDATE`` too.

Nothing here commits: the request does, at its edge.
"""

from __future__ import annotations

import io
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import pyotp
import segno
from sqlalchemy.orm import object_session

from plexus.accounts.service import email_of
from plexus.audit.events import Actor, AuditEventType, AuditResult, Target
from plexus.auth.repository import AuthRepository
from plexus.errors import BadRequest, Conflict, Unauthorized
from plexus.models.identity import RecoveryCode, User
from plexus.security.events import SecurityEventKind, Severity
from plexus.security.service import raise_security_event
from plexus.vault_columns import TOTP_SECRET

if TYPE_CHECKING:
    from datetime import datetime

    from sqlalchemy.orm import Session

    from plexus.auth.principal import Principal
    from plexus.runtime import Runtime

ISSUER: Final = "Plexus"
#: 32 base-32 characters: 160 bits, the RFC 4226 recommendation (ASVS V6.5.2).
SECRET_CHARS: Final = 32
DIGITS: Final = 6
STEP_SECONDS: Final = 30
#: Steps either side of now still accepted, for clock drift between phone and server.
SKEW_STEPS: Final = 1
RECOVERY_CODE_COUNT: Final = 10
RECOVERY_ALPHABET: Final = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
RECOVERY_GROUPS: Final = 3
RECOVERY_GROUP_CHARS: Final = 4
RECOVERY_PURPOSE: Final = "recovery-code"
#: What a reader may type for a letter the alphabet leaves out.
_CROCKFORD_ALIASES: Final = str.maketrans({"I": "1", "L": "1", "O": "0"})
_RECOVERY_CHARS: Final = RECOVERY_GROUPS * RECOVERY_GROUP_CHARS


class InvalidMfaCode(BadRequest):
    code, title = "invalid-mfa-code", "The code is not valid"


class MfaAlreadyEnabled(Conflict):
    code, title = "mfa-already-enabled", "Two-factor authentication is already on"


class MfaNotEnabled(Conflict):
    code, title = "mfa-not-enabled", "Two-factor authentication is off"


class NoEnrolmentPending(Conflict):
    code, title = "mfa-enrolment-not-started", "No authenticator enrolment is in progress"


@dataclass(frozen=True, slots=True)
class TotpEnrolment:
    """What the user needs to add Plexus to an authenticator app; shown once."""

    secret: str
    otpauth_uri: str
    qr_svg: str


@dataclass(frozen=True, slots=True)
class MfaState:
    enabled: bool
    enrolment_pending: bool
    enabled_at: datetime | None
    recovery_codes_left: int


def user_has_totp(user: User) -> bool:
    """True when the user has a confirmed authenticator app."""
    return user.totp_secret is not None and user.totp_confirmed_at is not None


def second_factor_methods(user: User) -> list[str]:
    """The second factors the user can sign in with: "totp" and "recovery_code" for a
    confirmed authenticator app, "webauthn" for a registered security key or passkey.
    """
    methods = ["totp", "recovery_code"] if user_has_totp(user) else []
    session = object_session(user)
    if session is None:
        # Answering "none" here would skip the second factor; a detached user is a bug.
        msg = "second_factor_methods needs a user attached to a session"
        raise RuntimeError(msg)
    if AuthRepository(session).has_webauthn_credential(user.id):
        methods.append("webauthn")
    return methods


def user_has_mfa(user: User) -> bool:
    """True when the user has a second factor, so sign-in asks for one."""
    return bool(second_factor_methods(user))


def _secret_context(user_id: int) -> str:
    return TOTP_SECRET.context(user_id)


def _current_step() -> int:
    return int(time.time()) // STEP_SECONDS


def _totp(secret: str) -> pyotp.TOTP:
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS)


def _normalise_totp(code: str) -> str | None:
    digits = "".join(code.split())
    if len(digits) == DIGITS and digits.isascii() and digits.isdigit():
        return digits
    return None


def _normalise_recovery(code: str) -> str | None:
    """Upper case, no separators, Crockford's aliases resolved; None if it cannot be one."""
    compact = "".join(code.split()).replace("-", "").upper().translate(_CROCKFORD_ALIASES)
    if len(compact) == _RECOVERY_CHARS and all(c in RECOVERY_ALPHABET for c in compact):
        return compact
    return None


def _matching_steps(secret: str, code: str) -> list[int]:
    """The steps within the skew window whose code is ``code``, oldest first."""
    totp = _totp(secret)
    now = _current_step()
    return [
        step
        for step in range(now - SKEW_STEPS, now + SKEW_STEPS + 1)
        if secrets.compare_digest(totp.at(step * STEP_SECONDS), code)
    ]


def _claim_step(
    session: Session, user: User, sealed: bytes, step: int, *, confirming: bool
) -> bool:
    """Record ``step`` as the last accepted one, in one statement; True if this call did.

    Refused when that step (or a later one) already is, or when the secret is no longer
    ``sealed``, the one the code was checked against. ``confirming`` also turns that
    pending secret on.
    """
    claimed = AuthRepository(session).claim_totp_step(user.id, sealed, step, confirming=confirming)
    if claimed:
        session.expire(user, ["totp_last_step", "totp_confirmed_at"])
    return claimed


def _accept_totp(
    session: Session, runtime: Runtime, user: User, code: str, *, confirming: bool
) -> bool:
    sealed = user.totp_secret
    if sealed is None:
        return False
    secret = runtime.secretbox.open(sealed, _secret_context(user.id)).decode("ascii")
    return any(
        _claim_step(session, user, sealed, step, confirming=confirming)
        for step in _matching_steps(secret, code)
    )


def _burn_recovery_code(session: Session, runtime: Runtime, user: User, code: str) -> bool:
    digest = runtime.tokens.digest(RECOVERY_PURPOSE, code)
    return AuthRepository(session).burn_recovery_code(user.id, digest)


def _recovery_codes_left(session: Session, user_id: int) -> int:
    return AuthRepository(session).recovery_codes_left(user_id)


def verify_second_factor(session: Session, runtime: Runtime, user: User, code: str) -> str | None:
    """Check a code against the user's authenticator app: ``"otp"``, ``"rc"`` or ``None``.

    (Security keys are checked by ``plexus.auth.webauthn``; a user with only those has no
    code to give, so gets None here.)

    ``"otp"`` is a TOTP code accepted now, ``"rc"`` an unused recovery code (burned now),
    ``None`` anything else.

    A TOTP code is accepted once: replaying it, or using a code of an earlier step than
    the last accepted one, gives None, as does the loser of two parallel uses. Login-level
    results are the caller's to audit; a burned recovery code is audited here.
    """
    if not user_has_totp(user):
        return None
    totp = _normalise_totp(code)
    if totp is not None:
        return "otp" if _accept_totp(session, runtime, user, totp, confirming=False) else None
    recovery = _normalise_recovery(code)
    if recovery is None or not _burn_recovery_code(session, runtime, user, recovery):
        return None
    runtime.audit.record(
        session,
        AuditEventType.AUTH_RECOVERY_CODE_USED,
        Actor("user", str(user.id)),
        target=Target("user", str(user.id)),
        context={"left": _recovery_codes_left(session, user.id)},
    )
    return "rc"


def _format_recovery_code(raw: str) -> str:
    size = RECOVERY_GROUP_CHARS
    return "-".join(raw[i : i + size] for i in range(0, len(raw), size))


def _new_recovery_codes(session: Session, runtime: Runtime, user_id: int) -> list[str]:
    """Replace every recovery code of the user with fresh ones; returns them for display."""
    AuthRepository(session).delete_recovery_codes(user_id)
    raws = [
        "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(_RECOVERY_CHARS))
        for _ in range(RECOVERY_CODE_COUNT)
    ]
    session.add_all(
        RecoveryCode(user_id=user_id, code_hash=runtime.tokens.digest(RECOVERY_PURPOSE, raw))
        for raw in raws
    )
    session.flush()
    return [_format_recovery_code(raw) for raw in raws]


def _user(session: Session, principal: Principal) -> User:
    user = AuthRepository(session).user(principal.user_id)
    if user is None or not user.is_active:
        raise Unauthorized("The account no longer exists.")
    return user


def _qr_svg(uri: str) -> str:
    buffer = io.BytesIO()
    segno.make_qr(uri, error="m").save(
        buffer, kind="svg", xmldecl=False, scale=4, border=4, title="Plexus authenticator setup"
    )
    return buffer.getvalue().decode("utf-8")


def _audit(  # noqa: PLR0913 - an audit record's parts
    session: Session,
    runtime: Runtime,
    principal: Principal,
    event: AuditEventType,
    *,
    result: AuditResult = AuditResult.SUCCESS,
    context: dict[str, object] | None = None,
) -> None:
    runtime.audit.record(
        session,
        event,
        principal.actor,
        target=Target("user", str(principal.user_id)),
        result=result,
        context=context,
        workspace_id=principal.workspace_id,
    )


def _refuse_code(
    session: Session, runtime: Runtime, principal: Principal, purpose: str
) -> InvalidMfaCode:
    # keep_changes: the failed attempt's audit record must outlive the failed request.
    _audit(
        session,
        runtime,
        principal,
        AuditEventType.AUTH_MFA_FAILED,
        result=AuditResult.FAILURE,
        context={"purpose": purpose},
    )
    return InvalidMfaCode(
        "The code is wrong, already used, or too old. Enter the current code.",
        keep_changes=True,
    )


def mfa_state(session: Session, principal: Principal) -> MfaState:
    user = _user(session, principal)
    enabled = user_has_totp(user)
    return MfaState(
        enabled=enabled,
        enrolment_pending=user.totp_secret is not None and not enabled,
        enabled_at=user.totp_confirmed_at if enabled else None,
        recovery_codes_left=_recovery_codes_left(session, user.id) if enabled else 0,
    )


def begin_totp_enrolment(session: Session, runtime: Runtime, principal: Principal) -> TotpEnrolment:
    """Make a new secret, stored sealed but not yet live; starting again replaces it."""
    user = _user(session, principal)
    if user_has_totp(user):
        raise MfaAlreadyEnabled("Turn the current authenticator off before adding another.")
    secret = pyotp.random_base32(length=SECRET_CHARS)
    user.totp_secret = runtime.secretbox.seal(secret.encode("ascii"), _secret_context(user.id))
    user.totp_confirmed_at = None
    # The old secret's steps mean nothing for the new one.
    user.totp_last_step = None
    session.flush()
    uri = _totp(secret).provisioning_uri(name=email_of(runtime, user), issuer_name=ISSUER)
    return TotpEnrolment(secret=secret, otpauth_uri=uri, qr_svg=_qr_svg(uri))


def confirm_totp_enrolment(
    session: Session, runtime: Runtime, principal: Principal, code: str
) -> list[str]:
    """Turn the pending authenticator on with a code it shows; returns new recovery codes.

    The session that confirmed counts as having used a second factor from now on.
    """
    from plexus.auth.sessions import mark_mfa

    user = _user(session, principal)
    if user_has_totp(user):
        raise MfaAlreadyEnabled
    if user.totp_secret is None:
        raise NoEnrolmentPending("Start at POST /api/v1/me/mfa/totp.")
    totp = _normalise_totp(code)
    if totp is None or not _accept_totp(session, runtime, user, totp, confirming=True):
        raise _refuse_code(session, runtime, principal, "confirm")
    codes = _new_recovery_codes(session, runtime, user.id)
    _audit(session, runtime, principal, AuditEventType.AUTH_MFA_ENABLED, context={"type": "totp"})
    if principal.session_id is not None:
        mark_mfa(session, principal.session_id)
    return codes


def disable_totp(session: Session, runtime: Runtime, principal: Principal, code: str) -> None:
    """Turn the authenticator off, given a current code (or an unused recovery code).

    Removes the secret and every recovery code, and raises a security event: losing the
    second factor is what an attacker with a stolen session would want.
    """
    user = _user(session, principal)
    if not user_has_totp(user):
        raise MfaNotEnabled
    if verify_second_factor(session, runtime, user, code) is None:
        raise _refuse_code(session, runtime, principal, "disable")
    user.totp_secret = None
    user.totp_confirmed_at = None
    user.totp_last_step = None
    AuthRepository(session).delete_recovery_codes(user.id)
    session.flush()
    _audit(session, runtime, principal, AuditEventType.AUTH_MFA_DISABLED, context={"type": "totp"})
    raise_security_event(
        session,
        SecurityEventKind.MFA_DISABLED,
        Severity.MEDIUM,
        workspace_id=principal.workspace_id,
        user_id=user.id,
    )


def regenerate_recovery_codes(
    session: Session, runtime: Runtime, principal: Principal
) -> list[str]:
    """Replace every recovery code (used or not) with ten new ones."""
    user = _user(session, principal)
    if not user_has_totp(user):
        raise MfaNotEnabled("Recovery codes come with an authenticator; add one first.")
    codes = _new_recovery_codes(session, runtime, user.id)
    _audit(session, runtime, principal, AuditEventType.AUTH_RECOVERY_CODES_REGENERATED)
    return codes
