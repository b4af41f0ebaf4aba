"""WebAuthn security keys and passkeys as a second factor (R5), with py_webauthn.

The relying party is this deployment's public address (``PLEXUS_PUBLIC_URL``, or the
listening address when it is unset): the RP id is its host name and the only origin
accepted is its scheme and authority. Attestation is not asked for ("none"): a key is
trusted for what the user registered it as, not for its make.

Every ceremony's challenge (32 bytes from the CSPRNG) is kept server-side in
``webauthn_challenges`` for five minutes, bound to the user and, at sign-in, to the
``LoginChallenge`` of the password step. A response spends it with one conditional
``DELETE``, whether the response verifies or not, so an assertion is never accepted
twice. Asking for new options replaces any pending challenge of the same ceremony.

The signature counter is checked after the signature: a counter that does not grow (when
either side is non-zero) means a cloned authenticator, and is refused with a security
event. Nothing here commits: the request does, at its edge.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import (
    options_to_json_dict,
    parse_authentication_credential_json,
    parse_registration_credential_json,
)
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AttestationConveyancePreference,
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from plexus.accounts.service import email_of
from plexus.audit.events import AuditEventType, Target
from plexus.auth import service
from plexus.auth.mfa import user_has_mfa
from plexus.auth.repository import AuthRepository
from plexus.auth.sessions import mark_mfa
from plexus.errors import BadRequest, Conflict, NotFound, Unauthorized
from plexus.models.base import utcnow
from plexus.models.webauthn import WebAuthnChallenge, WebAuthnCredential
from plexus.security.events import SecurityEventKind, Severity
from plexus.security.service import raise_security_event

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from plexus.auth.principal import Principal
    from plexus.config import Settings
    from plexus.models.identity import AuthSession, LoginChallenge, User
    from plexus.runtime import Runtime

RP_NAME: Final = "Plexus"
CHALLENGE_SECONDS: Final = 300
CHALLENGE_BYTES: Final = 32
#: Enough for a primary key, a backup and a few devices; bounds what one account stores.
MAX_CREDENTIALS: Final = 10
REGISTER: Final = "register"
LOGIN: Final = "login"
REAUTH: Final = "reauth"
#: The method name in ``amr`` (RFC 8176: proof of possession of a hardware-secured key).
METHOD: Final = "hwk"
USER_HANDLE_PURPOSE: Final = "webauthn-user-handle"
#: What a malformed or forged browser response can raise from parsing or verification.
_BAD_RESPONSE: Final = (WebAuthnException, ValueError, TypeError, KeyError, IndexError)


class InvalidWebAuthnResponse(BadRequest):
    code, title = "invalid-webauthn-response", "The security key's response is not valid"


class NoCeremonyPending(Conflict):
    code, title = "webauthn-ceremony-not-started", "No security key registration is in progress"


class CredentialAlreadyRegistered(Conflict):
    code, title = "webauthn-credential-exists", "This security key is already registered"


class TooManyCredentials(Conflict):
    code, title = "webauthn-credential-limit", "Too many security keys"


class NoWebAuthnCredential(Conflict):
    code, title = "webauthn-not-enabled", "No security key is registered"


@dataclass(frozen=True, slots=True)
class RelyingParty:
    id: str
    origin: str


def relying_party(settings: Settings) -> RelyingParty:
    """The RP id (host name) and the origin of this deployment's public address."""
    parts = urlsplit(settings.issuer)
    return RelyingParty(id=parts.hostname or "", origin=f"{parts.scheme}://{parts.netloc}")


def transports_of(credential: WebAuthnCredential) -> list[str]:
    value = json.loads(credential.transports)
    return [str(item) for item in value] if isinstance(value, list) else []


def _descriptor(credential: WebAuthnCredential) -> PublicKeyCredentialDescriptor:
    known = {t.value for t in AuthenticatorTransport}
    transports = [AuthenticatorTransport(t) for t in transports_of(credential) if t in known]
    return PublicKeyCredentialDescriptor(id=credential.credential_id, transports=transports)


def _credentials(session: Session, user_id: int) -> list[WebAuthnCredential]:
    return AuthRepository(session).webauthn_credentials(user_id)


def _user(session: Session, principal: Principal) -> User:
    user = AuthRepository(session).user(principal.user_id)
    if user is None or not user.is_active:
        raise Unauthorized("The account no longer exists.")
    return user


def _user_handle(runtime: Runtime, user_id: int) -> bytes:
    """A stable, opaque user handle: no e-mail or row id reaches the authenticator."""
    return bytes.fromhex(runtime.tokens.digest(USER_HANDLE_PURPOSE, str(user_id)))


def _new_challenge(
    session: Session, user_id: int, purpose: str, login_challenge_id: int | None = None
) -> bytes:
    """Store a fresh challenge for a ceremony, replacing the user's pending one of the
    same kind and clearing any of theirs that expired.
    """
    now = utcnow()
    AuthRepository(session).clear_webauthn_challenges(user_id, purpose, now)
    value = secrets.token_bytes(CHALLENGE_BYTES)
    session.add(
        WebAuthnChallenge(
            user_id=user_id,
            login_challenge_id=login_challenge_id,
            purpose=purpose,
            challenge=value,
            expires_at=now + timedelta(seconds=CHALLENGE_SECONDS),
        )
    )
    session.flush()
    return value


def _take_challenge(
    session: Session, user_id: int, purpose: str, login_challenge_id: int | None = None
) -> bytes | None:
    """Spend the pending challenge of a ceremony: its value, or None when there is none,
    it expired, or a parallel request spent it first.
    """
    repo = AuthRepository(session)
    pending = repo.pending_webauthn_challenge(user_id, purpose, login_challenge_id)
    if pending is None:
        return None
    value, expires_at = pending.challenge, pending.expires_at
    if not repo.spend_webauthn_challenge(pending) or expires_at <= utcnow():
        return None
    return value


def registration_options(
    session: Session, runtime: Runtime, principal: Principal
) -> dict[str, Any]:
    """Start registering a security key: the options for ``navigator.credentials.create``."""
    user = _user(session, principal)
    existing = _credentials(session, user.id)
    if len(existing) >= MAX_CREDENTIALS:
        raise TooManyCredentials(f"An account holds at most {MAX_CREDENTIALS} security keys.")
    rp = relying_party(runtime.settings)
    options = generate_registration_options(
        rp_id=rp.id,
        rp_name=RP_NAME,
        user_name=email_of(runtime, user),
        user_id=_user_handle(runtime, user.id),
        user_display_name=user.display_name,
        challenge=_new_challenge(session, user.id, REGISTER),
        timeout=CHALLENGE_SECONDS * 1000,
        attestation=AttestationConveyancePreference.NONE,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.DISCOURAGED,
            user_verification=UserVerificationRequirement.PREFERRED,
        ),
        exclude_credentials=[_descriptor(c) for c in existing],
    )
    return options_to_json_dict(options)


def register(
    session: Session,
    runtime: Runtime,
    principal: Principal,
    credential: dict[str, Any],
    name: str,
) -> WebAuthnCredential:
    """Finish registering: verify the authenticator's response to the pending challenge
    and store its credential. The session that registered counts as MFA from then on.
    """
    user = _user(session, principal)
    expected = _take_challenge(session, user.id, REGISTER)
    if expected is None:
        raise NoCeremonyPending(
            "Start (again) at POST /api/v1/me/mfa/webauthn/register/options.", keep_changes=True
        )
    rp = relying_party(runtime.settings)
    try:
        parsed = parse_registration_credential_json(credential)
        verified = verify_registration_response(
            credential=parsed,
            expected_challenge=expected,
            expected_rp_id=rp.id,
            expected_origin=rp.origin,
        )
    except _BAD_RESPONSE:
        # keep_changes: the spent challenge stays spent.
        raise InvalidWebAuthnResponse(
            "The security key's response did not verify; start again.", keep_changes=True
        ) from None
    if AuthRepository(session).webauthn_credential_registered(verified.credential_id):
        raise CredentialAlreadyRegistered(keep_changes=True)
    if len(_credentials(session, user.id)) >= MAX_CREDENTIALS:
        raise TooManyCredentials(keep_changes=True)
    stored = WebAuthnCredential(
        user_id=user.id,
        credential_id=verified.credential_id,
        public_key=verified.credential_public_key,
        sign_count=verified.sign_count,
        transports=json.dumps([t.value for t in parsed.response.transports or []]),
        name=name.strip(),
    )
    session.add(stored)
    session.flush()
    runtime.audit.record(
        session,
        AuditEventType.AUTH_WEBAUTHN_REGISTERED,
        principal.actor,
        target=Target("user", str(user.id)),
        workspace_id=principal.workspace_id,
        context={"credential": stored.id, "user_verified": verified.user_verified},
    )
    if principal.session_id is not None:
        mark_mfa(session, principal.session_id, METHOD)
    return stored


def list_credentials(session: Session, principal: Principal) -> list[WebAuthnCredential]:
    return _credentials(session, _user(session, principal).id)


def remove(session: Session, runtime: Runtime, principal: Principal, credential_id: int) -> None:
    """Delete one of the caller's security keys; anyone else's is a 404.

    Raises a security event, as turning TOTP off does: losing a second factor is what an
    attacker holding a stolen session would want.
    """
    user = _user(session, principal)
    found = AuthRepository(session).webauthn_credential(credential_id)
    if found is None or found.user_id != user.id:
        raise NotFound("No such security key.")
    session.delete(found)
    session.flush()
    left = user_has_mfa(user)
    runtime.audit.record(
        session,
        AuditEventType.AUTH_WEBAUTHN_REMOVED,
        principal.actor,
        target=Target("user", str(user.id)),
        workspace_id=principal.workspace_id,
        context={"credential": credential_id},
    )
    raise_security_event(
        session,
        SecurityEventKind.MFA_DISABLED,
        Severity.LOW if left else Severity.MEDIUM,
        workspace_id=principal.workspace_id,
        user_id=user.id,
        details={"type": "webauthn", "second_factor_left": left},
    )


def _assertion_options(
    runtime: Runtime, credentials: list[WebAuthnCredential], challenge: bytes
) -> dict[str, Any]:
    options = generate_authentication_options(
        rp_id=relying_party(runtime.settings).id,
        challenge=challenge,
        timeout=CHALLENGE_SECONDS * 1000,
        allow_credentials=[_descriptor(c) for c in credentials],
        user_verification=UserVerificationRequirement.PREFERRED,
    )
    return options_to_json_dict(options)


def login_options(session: Session, runtime: Runtime, mfa_token: str) -> dict[str, Any]:
    """The options for ``navigator.credentials.get`` at the second step of a sign-in."""
    challenge, user = service.pending_challenge(session, runtime, mfa_token)
    credentials = _credentials(session, user.id)
    if not credentials:
        raise NoWebAuthnCredential("Finish signing in with a code at POST /api/v1/auth/mfa.")
    return _assertion_options(
        runtime, credentials, _new_challenge(session, user.id, LOGIN, challenge.id)
    )


def reauth_options(session: Session, runtime: Runtime, principal: Principal) -> dict[str, Any]:
    """The options for ``navigator.credentials.get`` to re-authenticate with one of the
    caller's own keys; the challenge is bound to the caller.
    """
    user = _user(session, principal)
    credentials = _credentials(session, user.id)
    if not credentials:
        raise NoWebAuthnCredential("Re-authenticate with a code at POST /api/v1/auth/reauth.")
    return _assertion_options(runtime, credentials, _new_challenge(session, user.id, REAUTH))


def take_reauth_challenge(session: Session, user_id: int) -> bytes | None:
    """Spend the user's pending re-authentication challenge (None: there is none, or it
    expired). Done before anything else is checked, so a response is never accepted twice.
    """
    return _take_challenge(session, user_id, REAUTH)


def _cloned(
    session: Session, stored: WebAuthnCredential, new_count: int, client: service.ClientInfo
) -> bool:
    """True (and a security event) when the counter did not grow: two authenticators
    hold this credential's key, so the one presented now, or the one used before, is a copy.
    """
    if new_count == 0 and stored.sign_count == 0:
        return False  # an authenticator without a counter (many passkeys) always says 0
    if new_count > stored.sign_count:
        return False
    raise_security_event(
        session,
        SecurityEventKind.WEBAUTHN_SIGN_COUNT_REGRESSED,
        Severity.HIGH,
        user_id=stored.user_id,
        ip=client.ip,
        details={
            "credential": stored.id,
            "stored_count": stored.sign_count,
            "presented_count": new_count,
        },
    )
    return True


def verify_assertion(  # noqa: PLR0913 - the parts of one assertion check
    session: Session,
    runtime: Runtime,
    user: User,
    credential: dict[str, Any],
    expected: bytes | None,
    *,
    client: service.ClientInfo,
) -> str | None:
    """Check an assertion by one of ``user``'s keys against the challenge ``expected``
    (already spent): origin, RP id, signature, then the counter. Returns ``"hwk"``, or
    None when anything is wrong (a missing challenge included).
    """
    if expected is None:
        return None
    rp = relying_party(runtime.settings)
    try:
        parsed = parse_authentication_credential_json(credential)
    except _BAD_RESPONSE:
        return None
    stored = AuthRepository(session).user_webauthn_credential(user.id, parsed.raw_id)
    if stored is None:
        return None
    try:
        # The counter is checked below, after the signature, so a regression seen there
        # comes from a holder of the key and not from a forged response.
        verified = verify_authentication_response(
            credential=parsed,
            expected_challenge=expected,
            expected_rp_id=rp.id,
            expected_origin=rp.origin,
            credential_public_key=stored.public_key,
            credential_current_sign_count=0,
        )
    except _BAD_RESPONSE:
        return None
    if _cloned(session, stored, verified.new_sign_count, client):
        return None
    recorded = AuthRepository(session).record_webauthn_use(
        stored.id, stored.sign_count, verified.new_sign_count
    )
    return METHOD if recorded else None


def _verify_login_assertion(  # noqa: PLR0913 - the parts of one assertion check
    session: Session,
    runtime: Runtime,
    challenge: LoginChallenge,
    user: User,
    credential: dict[str, Any],
    *,
    client: service.ClientInfo,
) -> str | None:
    expected = _take_challenge(session, user.id, LOGIN, challenge.id)
    return verify_assertion(session, runtime, user, credential, expected, client=client)


def complete_login(  # noqa: PLR0913 - keyword-only parts of the request
    session: Session,
    runtime: Runtime,
    *,
    mfa_token: str,
    credential: dict[str, Any],
    client: service.ClientInfo,
    previous: AuthSession | None = None,
) -> service.LoginOutcome:
    """The second step of a sign-in with a security key: exactly as ``/auth/mfa`` with a
    code, the challenge's attempt budget and audit included; ``amr`` gets ``"hwk"``.
    """
    return service.complete_second_factor(
        session,
        runtime,
        mfa_token=mfa_token,
        verify=lambda challenge, user: _verify_login_assertion(
            session, runtime, challenge, user, credential, client=client
        ),
        client=client,
        previous=previous,
    )
