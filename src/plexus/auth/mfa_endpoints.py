"""The caller's own second factors, under ``/api/v1/me/mfa``.

Enrol, confirm, turn off, and replace recovery codes. Every change needs a recent
re-authentication; enrolment stays open to a member whose workspace demands MFA they do
not have yet.
"""

# No ``from __future__ import annotations``: FastAPI reads these signatures at run time.

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, status
from pydantic import BaseModel, ConfigDict, Field

from plexus.auth import mfa
from plexus.auth.principal import Principal
from plexus.authz.policy import Authenticated
from plexus.deps import RuntimeDep, SessionDep

router = APIRouter(prefix="/me/mfa", tags=["mfa"])

#: Reading one's own state, needed to enrol; no second factor required yet.
Viewer = Annotated[Principal, Depends(Authenticated(mfa_exempt=True))]
#: Starting and finishing enrolment: a fresh proof of identity, no second factor yet.
Enroller = Annotated[Principal, Depends(Authenticated(reauth=True, mfa_exempt=True))]
#: Confirming takes a code, so it draws on the strict budget for code guesses.
Confirmer = Annotated[Principal, Depends(Authenticated(rate="mfa", reauth=True, mfa_exempt=True))]
#: Changes to a live second factor: a fresh proof of identity.
Owner = Annotated[Principal, Depends(Authenticated(reauth=True))]
Disabler = Annotated[Principal, Depends(Authenticated(rate="mfa", reauth=True))]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class CodeRequest(_Strict):
    #: A six-digit authenticator code, or (to turn MFA off) a recovery code.
    code: str = Field(min_length=6, max_length=32)


class MfaStatus(_Strict):
    enabled: bool
    enrolment_pending: bool
    enabled_at: datetime | None
    recovery_codes_left: int


class TotpEnrolmentStarted(_Strict):
    #: Base-32, for typing into an authenticator app by hand.
    secret: str
    otpauth_uri: str
    qr_svg: str


class RecoveryCodes(_Strict):
    """Shown once: the server keeps only their keyed hashes."""

    recovery_codes: list[str]


@router.get("")
def mfa_status(principal: Viewer, session: SessionDep) -> MfaStatus:
    """Whether an authenticator is on, and how many recovery codes are left."""
    state = mfa.mfa_state(session, principal)
    return MfaStatus(
        enabled=state.enabled,
        enrolment_pending=state.enrolment_pending,
        enabled_at=state.enabled_at,
        recovery_codes_left=state.recovery_codes_left,
    )


@router.post("/totp")
def begin_totp(principal: Enroller, session: SessionDep, rt: RuntimeDep) -> TotpEnrolmentStarted:
    """Start adding an authenticator app: a new secret, its ``otpauth://`` URI and QR code.

    Nothing changes at sign-in until the app's first code confirms it.
    """
    enrolment = mfa.begin_totp_enrolment(session, rt, principal)
    return TotpEnrolmentStarted(
        secret=enrolment.secret, otpauth_uri=enrolment.otpauth_uri, qr_svg=enrolment.qr_svg
    )


@router.post("/totp/confirm")
def confirm_totp(
    body: CodeRequest, principal: Confirmer, session: SessionDep, rt: RuntimeDep
) -> RecoveryCodes:
    """Turn the authenticator on with a code it shows; returns ten single-use recovery codes."""
    codes = mfa.confirm_totp_enrolment(session, rt, principal, body.code)
    return RecoveryCodes(recovery_codes=codes)


@router.delete("/totp", status_code=status.HTTP_204_NO_CONTENT)
def disable_totp(
    body: CodeRequest, principal: Disabler, session: SessionDep, rt: RuntimeDep
) -> None:
    """Turn the authenticator off: a recent re-authentication plus a current code."""
    mfa.disable_totp(session, rt, principal, body.code)


@router.post("/recovery-codes")
def regenerate_recovery_codes(
    principal: Owner, session: SessionDep, rt: RuntimeDep
) -> RecoveryCodes:
    """Replace every recovery code with ten new ones; the old ones stop working."""
    return RecoveryCodes(recovery_codes=mfa.regenerate_recovery_codes(session, rt, principal))
