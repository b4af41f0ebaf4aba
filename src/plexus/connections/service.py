"""Connections of a workspace: listing, connecting (OAuth2 or pasted credentials),
reconnecting, checking and disconnecting. Never commits.

Platform calls never happen inside the caller's transaction: the endpoints end theirs
first and the calls run through ``plexus.connections.calls`` (see its docstring). What is
left here is validation, authorisation (every look-up is scoped to the caller's
workspace) and storing the results.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final

from sqlalchemy.exc import IntegrityError

from plexus.audit.events import AuditEventType, AuditResult, Target
from plexus.connections import calls
from plexus.connections.factory import build_provider
from plexus.connections.repository import ConnectionRepository
from plexus.errors import BadRequest, Conflict, NotFound, PlatformRejected, ValidationFailed
from plexus.models.base import utcnow
from plexus.models.connections import Connection
from plexus.providers.base import AuthKind, Connected, Provider, ProviderUnavailable

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from sqlalchemy.orm import Session

    from plexus.auth.principal import Principal
    from plexus.runtime import Runtime

MAX_CONNECTIONS: Final = 200
MAX_EXTERNAL_ID: Final = 300
#: Status summary a dashboard shows for each connection.
HEALTHY: Final = "healthy"
EXPIRING: Final = "expiring"
RATE_LIMITED: Final = "rate_limited"
#: How long before a token that cannot be refreshed lapses the connection shows "expiring".
EXPIRY_WARNING: Final = timedelta(days=7)


def status_of(connection: Connection, now: datetime | None = None) -> str:
    """The dashboard's summary: needs_reauth, rate_limited, expiring (the token lapses
    within a week and cannot be refreshed: someone must reconnect) or healthy.
    """
    moment = now or utcnow()
    if connection.status == calls.NEEDS_REAUTH:
        return calls.NEEDS_REAUTH
    if connection.rate_limited_until is not None and connection.rate_limited_until > moment:
        return RATE_LIMITED
    if (
        connection.expires_at is not None
        and not connection.can_refresh
        and connection.expires_at <= moment + EXPIRY_WARNING
    ):
        return EXPIRING
    return HEALTHY


def _repo(session: Session, principal: Principal) -> ConnectionRepository:
    return ConnectionRepository(session, principal.workspace_id)


def list_connections(
    session: Session, principal: Principal, *, limit: int, offset: int
) -> Sequence[Connection]:
    return _repo(session, principal).page(limit=limit, offset=offset)


def get_connection(session: Session, principal: Principal, connection_id: int) -> Connection:
    connection = _repo(session, principal).get(connection_id)
    if connection is None:
        raise NotFound("There is no such connection.")
    return connection


# --------------------------------------------------------------------------- connect


@dataclass(frozen=True, slots=True)
class ConnectRequest:
    """A validated request to connect: which provider, the fields split into non-secret
    ``params`` and ``secrets``, and the connection to replace when reconnecting.
    """

    provider: str
    name: str
    params: dict[str, str]
    secrets: dict[str, str]
    reconnect_id: int | None

    @property
    def uses_oauth(self) -> bool:
        return not self.secrets


def prepare_connect(  # noqa: PLR0913 - the parts of a connect request
    session: Session,
    rt: Runtime,
    principal: Principal,
    *,
    provider: str,
    name: str,
    fields: Mapping[str, str],
    reconnect_id: int | None,
) -> tuple[ConnectRequest, Provider]:
    """Check a connect request against the provider's declared fields (422 on a field it
    does not know, a missing required one or an empty value) before any platform call.
    """
    instance = build_provider(rt.settings, provider)
    declared = {f.name: f for f in instance.connect_fields}
    unknown = sorted(set(fields) - set(declared))
    if unknown:
        raise ValidationFailed(
            f"{provider} does not take the field(s) {', '.join(unknown)}.",
            extra={"fields": unknown},
        )
    params = {k: v for k, v in fields.items() if not declared[k].secret}
    secrets = {k: v for k, v in fields.items() if declared[k].secret}
    oauth = instance.auth_kind is AuthKind.OAUTH2 and not secrets
    for field in declared.values():
        # An OAuth2 provider's secret fields are the alternative to OAuth (a pasted token).
        alternative = instance.auth_kind is AuthKind.OAUTH2 and field.secret
        if field.required and not alternative and not fields.get(field.name):
            raise ValidationFailed(f"{provider} needs the field {field.name!r}.")
    if oauth and not instance.is_configured():
        raise calls.translate(
            ProviderUnavailable(f"{provider} is not configured on this Plexus"), provider
        )
    if reconnect_id is not None:
        existing = get_connection(session, principal, reconnect_id)
        if existing.provider != provider:
            raise BadRequest("A connection is reconnected with its own provider only.")
    elif _repo(session, principal).count() >= MAX_CONNECTIONS:
        raise Conflict(f"A workspace has at most {MAX_CONNECTIONS} connections.")
    return ConnectRequest(provider, name, params, secrets, reconnect_id), instance


def store_connected(  # noqa: PLR0913 - who, what and how it was connected
    session: Session,
    rt: Runtime,
    principal: Principal,
    request: ConnectRequest,
    connected: Connected,
    *,
    oauth_client_id: int | None = None,
    via: str,
) -> Connection:
    """Create the connection (or replace a reconnected one's credentials) and audit it.

    The same platform account connected twice in one workspace is one connection: its
    credentials are replaced (a reconnect), never duplicated.
    """
    repo = _repo(session, principal)
    account = connected.account
    if len(account.external_id) > MAX_EXTERNAL_ID:
        raise PlatformRejected(f"{request.provider} named the account with an overlong id.")
    existing = None
    if request.reconnect_id is not None:
        existing = get_connection(session, principal, request.reconnect_id)
        if existing.external_id != account.external_id:
            raise BadRequest(
                "That is a different account than the one this connection belongs to; "
                "connect it as a new connection instead."
            )
    else:
        existing = repo.by_account(request.provider, account.external_id)
    connection = existing or Connection(
        workspace_id=principal.workspace_id,
        provider=request.provider,
        name=request.name,
        external_id=account.external_id,
        display_name=account.display_name[:300],
        credentials_sealed=b"",
        credentials_version=0,
        created_by=principal.user_id,
    )
    connection.display_name = account.display_name[:300]
    connection.account_url = calls.account_url(account)
    connection.account_settings = json.dumps(dict(account.settings), sort_keys=True)
    connection.params = json.dumps(request.params, sort_keys=True)
    connection.oauth_client_id = oauth_client_id
    connection.status = calls.ACTIVE
    connection.last_error = None
    connection.rate_limited_until = None
    connection.last_checked_at = utcnow()
    if existing is None:
        if repo.count() >= MAX_CONNECTIONS:
            raise Conflict(f"A workspace has at most {MAX_CONNECTIONS} connections.")
        try:
            with session.begin_nested():
                repo.add(connection)
        except IntegrityError:
            raise Conflict(
                "This account was connected by another request at the same moment; "
                "it is in the list now."
            ) from None
    calls.store_credentials(rt, connection, connected.credentials)
    session.flush()
    event = (
        AuditEventType.CONNECTION_CONNECTION_RECONNECTED
        if existing is not None
        else AuditEventType.CONNECTION_CONNECTION_CREATED
    )
    rt.audit.record(
        session,
        event,
        principal.actor,
        target=Target("connection", str(connection.id)),
        context={"provider": request.provider, "via": via},
        workspace_id=principal.workspace_id,
    )
    return connection


# --------------------------------------------------------------------------- disconnect


def record_disconnect(
    session: Session,
    rt: Runtime,
    principal: Principal,
    connection_id: int,
    *,
    revocation: str,
) -> None:
    """Delete the connection (its sealed credentials go with the row) and audit it with
    what happened at the platform: ``revoked``, ``not_offered``, ``already_invalid`` or
    ``failed`` (a forced disconnect while the platform could not be reached or refused).
    """
    connection = get_connection(session, principal, connection_id)
    if revocation == calls.REVOKED:
        rt.audit.record(
            session,
            AuditEventType.CONNECTION_TOKEN_REVOKED,
            principal.actor,
            target=Target("connection", str(connection.id)),
            context={"provider": connection.provider},
            workspace_id=principal.workspace_id,
        )
    rt.audit.record(
        session,
        AuditEventType.CONNECTION_CONNECTION_DISCONNECTED,
        principal.actor,
        target=Target("connection", str(connection.id)),
        context={
            "provider": connection.provider,
            "revoked_at_platform": revocation == calls.REVOKED,
            "revocation": revocation,
        },
        workspace_id=principal.workspace_id,
        result=AuditResult.SUCCESS if revocation != "failed" else AuditResult.FAILURE,
    )
    _repo(session, principal).delete(connection)


def reload(session: Session, principal: Principal, connection_id: int) -> Connection:
    """The connection as committed now (after a platform call ran its own transactions)."""
    connection = get_connection(session, principal, connection_id)
    session.refresh(connection)
    return connection
