"""The OAuth2 authorization-code flow, as Plexus runs it for every provider (R8).

- ``state``: 256 random bits, single-use (an atomic update spends it), valid for ten
  minutes, stored only as an HMAC, bound to the workspace, the user, the very session
  (web session or token family) that started it, and one provider.
- PKCE S256 with a fresh verifier per flow, and an OIDC ``nonce`` where the provider is
  OIDC; both are sealed in the flow row, never sent back to the browser.
- Mix-up defence: the callback's ``iss`` (RFC 9207), when present, must be the flow's
  provider's issuer; the code is only ever sent to the flow's own provider.
- One exact redirect URI for all providers (``/api/v1/connections/oauth/callback``).

A refused callback is audited and raises a security event; nothing is connected.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final

from sqlalchemy.exc import IntegrityError

from plexus.audit.events import AuditEventType, AuditResult, Target
from plexus.connections import repository
from plexus.connections.calls import client_secret_context, registered_client
from plexus.connections.factory import build_provider, redirect_uri
from plexus.db import unit_of_work
from plexus.errors import BadRequest, OAuthStateInvalid
from plexus.models.base import utcnow
from plexus.models.connections import OAuthClientRegistration, OAuthFlow
from plexus.providers.base import (
    AuthorizationRequest,
    AuthorizationStart,
    Connected,
    OAuthClient,
    Provider,
    ProviderUnavailable,
)
from plexus.security.events import SecurityEventKind, Severity
from plexus.security.service import raise_security_event
from plexus.vault_columns import OAUTH_FLOW

if TYPE_CHECKING:
    from collections.abc import Mapping

    from sqlalchemy.orm import Session

    from plexus.auth.principal import Principal
    from plexus.connections.service import ConnectRequest
    from plexus.runtime import Runtime

FLOW_LIFETIME: Final = timedelta(minutes=10)
STATE_PURPOSE: Final = "oauth-state"


def flow_context(flow_id: int) -> str:
    return OAUTH_FLOW.context(flow_id)


@dataclass(frozen=True, slots=True)
class Prepared:
    """What the flow needs before the platform is asked: fresh secrets and the client."""

    state: str = field(repr=False)
    code_verifier: str = field(repr=False)
    nonce: str | None = field(repr=False)
    redirect_uri: str
    client: OAuthClient | None
    oauth_client_id: int | None

    def request(self, params: Mapping[str, str]) -> AuthorizationRequest:
        return AuthorizationRequest(
            redirect_uri=self.redirect_uri,
            state=self.state,
            code_verifier=self.code_verifier,
            nonce=self.nonce,
            params=dict(params),
            client=self.client,
        )


def _client(
    rt: Runtime, provider: Provider, params: Mapping[str, str], redirect: str
) -> tuple[OAuthClient | None, int | None]:
    """The configured client, or this instance's registered one (registering it once)."""
    key = provider.client_registration_key(params)
    if key is None:
        return provider.oauth_client(params), None
    with unit_of_work(rt.sessions) as session:
        registration = repository.oauth_client(session, provider.name, key[:300], redirect)
        if registration is not None:
            return registered_client(session, rt, registration.id), registration.id
    client = provider.register_client(params, redirect)  # a platform call: no transaction
    with unit_of_work(rt.sessions) as session:
        # Two first connections to one instance may both have registered; keep the first.
        registration = repository.oauth_client(session, provider.name, key[:300], redirect)
        if registration is not None:
            return registered_client(session, rt, registration.id), registration.id
        try:
            with session.begin_nested():
                registration = repository.add_oauth_client(
                    session,
                    OAuthClientRegistration(
                        provider=provider.name,
                        registration_key=key[:300],
                        redirect_uri=redirect,
                        client_id=client.client_id,
                    ),
                )
        except IntegrityError:
            # Registered by a concurrent first connection a moment ago: use that one.
            registration = repository.oauth_client(session, provider.name, key[:300], redirect)
            if registration is None:
                raise
            return registered_client(session, rt, registration.id), registration.id
        if client.client_secret:
            registration.client_secret_sealed = rt.secretbox.seal(
                client.client_secret.encode(), client_secret_context(registration.id)
            )
        return client, registration.id


def begin(
    rt: Runtime, provider: Provider, request: ConnectRequest
) -> tuple[Prepared, AuthorizationStart]:
    """Prepare the flow's secrets and ask the provider for the authorization URL (which may
    call the platform: client registration, PAR, metadata). Runs no caller transaction.
    """
    redirect = redirect_uri(rt.settings)
    client, registration_id = _client(rt, provider, request.params, redirect)
    spec_oidc = False
    try:
        spec_oidc = provider.oauth_spec(request.params).oidc
    except ProviderUnavailable:
        spec_oidc = False
    prepared = Prepared(
        state=secrets.token_urlsafe(32),
        code_verifier=secrets.token_urlsafe(64),
        nonce=secrets.token_urlsafe(24) if spec_oidc else None,
        redirect_uri=redirect,
        client=client,
        oauth_client_id=registration_id,
    )
    start = provider.start_authorization(prepared.request(request.params))
    return prepared, start


def record_flow(  # noqa: PLR0913, PLR0917 - the parts of a flow
    session: Session,
    rt: Runtime,
    principal: Principal,
    request: ConnectRequest,
    prepared: Prepared,
    start: AuthorizationStart,
) -> datetime:
    """Store the flow (the state as an HMAC, its secrets sealed); returns its expiry."""
    if principal.session_id is None:
        raise BadRequest("Connecting through OAuth needs a signed-in person, not an API key.")
    expires = utcnow() + FLOW_LIFETIME
    flow = repository.add_flow(
        session,
        OAuthFlow(
            state_hash=rt.tokens.digest(STATE_PURPOSE, prepared.state),
            provider=request.provider,
            workspace_id=principal.workspace_id,
            user_id=principal.user_id,
            session_id=principal.session_id,
            connection_id=request.reconnect_id,
            name=request.name,
            params=json.dumps(request.params, sort_keys=True),
            redirect_uri=prepared.redirect_uri,
            oauth_client_id=prepared.oauth_client_id,
            flow_sealed=b"",
            expires_at=expires,
        ),
    )
    secret_part = {
        "code_verifier": prepared.code_verifier,
        "nonce": prepared.nonce,
        "flow_data": dict(start.flow_data),
    }
    flow.flow_sealed = rt.secretbox.seal(json.dumps(secret_part).encode(), flow_context(flow.id))
    rt.audit.record(
        session,
        AuditEventType.CONNECTION_OAUTH_STARTED,
        principal.actor,
        target=Target("oauth_flow", str(flow.id)),
        context={"provider": request.provider},
        workspace_id=principal.workspace_id,
    )
    return expires


# --------------------------------------------------------------------------- callback


@dataclass(frozen=True, slots=True)
class Ticket:
    """A spent flow, ready for the code exchange."""

    flow_id: int
    provider: str
    name: str
    params: dict[str, str]
    reconnect_id: int | None
    oauth_client_id: int | None
    prepared: Prepared
    flow_data: dict[str, str] = field(repr=False)


def _refuse(
    session: Session,
    rt: Runtime,
    principal: Principal,
    reason: str,
    *,
    provider: str | None = None,
) -> OAuthStateInvalid:
    rt.audit.record(
        session,
        AuditEventType.CONNECTION_OAUTH_REFUSED,
        principal.actor,
        result=AuditResult.DENIED,
        context={"reason": reason, "provider": provider},
        workspace_id=principal.workspace_id,
    )
    raise_security_event(
        session,
        SecurityEventKind.OAUTH_STATE_INVALID,
        Severity.MEDIUM,
        workspace_id=principal.workspace_id,
        user_id=principal.user_id,
        details={"reason": reason, "provider": provider},
    )
    return OAuthStateInvalid(
        "This authorization cannot be completed: start connecting again from Plexus.",
        keep_changes=True,
        extra={"reason": reason},
    )


def spend(  # noqa: C901 - one check, and one refusal, per way a state can be wrong
    session: Session,
    rt: Runtime,
    principal: Principal,
    callback: Mapping[str, str],
) -> Ticket:
    """Check the callback's ``state`` and spend the flow; raise OAuthStateInvalid (audited,
    with a security event) for a missing, unknown, spent, expired, foreign or mixed-up one.
    """
    state = callback.get("state") or ""
    if not state:
        raise _refuse(session, rt, principal, "missing")
    flow = repository.flow_by_state_hash(session, rt.tokens.digest(STATE_PURPOSE, state))
    if flow is None:
        raise _refuse(session, rt, principal, "unknown")
    now = utcnow()
    if flow.used_at is not None:
        raise _refuse(session, rt, principal, "replayed", provider=flow.provider)
    if flow.expires_at <= now:
        raise _refuse(session, rt, principal, "expired", provider=flow.provider)
    if (
        flow.user_id != principal.user_id
        or flow.workspace_id != principal.workspace_id
        or flow.session_id != principal.session_id
    ):
        raise _refuse(session, rt, principal, "foreign_session", provider=flow.provider)
    params: dict[str, str] = json.loads(flow.params or "{}")
    issuer = callback.get("iss")
    if issuer:
        provider = build_provider(rt.settings, flow.provider)
        try:
            expected = provider.oauth_spec(params).expected_issuer
        except ProviderUnavailable:
            expected = None
        if expected is not None and issuer.rstrip("/") != expected:
            raise _refuse(session, rt, principal, "issuer_mismatch", provider=flow.provider)
    if not repository.spend_flow(session, flow.id, now):
        raise _refuse(session, rt, principal, "replayed", provider=flow.provider)
    sealed = json.loads(rt.secretbox.open(flow.flow_sealed, flow_context(flow.id)))
    # The verifier and the provider's flow data (a DPoP key) are needed once: keep no copy.
    flow.flow_sealed = rt.secretbox.seal(b"{}", flow_context(flow.id))
    client: OAuthClient | None = None
    if flow.oauth_client_id is not None:
        client = registered_client(session, rt, flow.oauth_client_id)
    else:
        try:
            client = build_provider(rt.settings, flow.provider).oauth_client(params)
        except ProviderUnavailable:
            client = None
    return Ticket(
        flow_id=flow.id,
        provider=flow.provider,
        name=flow.name,
        params=params,
        reconnect_id=flow.connection_id,
        oauth_client_id=flow.oauth_client_id,
        prepared=Prepared(
            state=state,
            code_verifier=sealed["code_verifier"],
            nonce=sealed.get("nonce"),
            redirect_uri=flow.redirect_uri,
            client=client,
            oauth_client_id=flow.oauth_client_id,
        ),
        flow_data=dict(sealed.get("flow_data") or {}),
    )


def finish(rt: Runtime, ticket: Ticket, callback: Mapping[str, str]) -> Connected:
    """Exchange the code at the flow's own provider (a platform call: no transaction)."""
    provider = build_provider(rt.settings, ticket.provider)
    return provider.finish_authorization(
        ticket.prepared.request(ticket.params), dict(callback), ticket.flow_data
    )
