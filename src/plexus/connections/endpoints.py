"""``/api/v1/connections`` (list, connect, OAuth callback, check, disconnect) and
``/api/v1/providers`` (what each provider can do and what it needs to connect).

Before any call to a platform these handlers end the request's transaction, so no
database lock is held while a platform answers (see ``plexus.connections.calls``); what
the call produced is stored in a fresh transaction afterwards.
"""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import JSONResponse

from plexus.auth.principal import Principal
from plexus.authz.permissions import Permission
from plexus.authz.policy import Allow, Public
from plexus.connections import calls, oauth_flow, service
from plexus.connections.factory import all_providers, public_base, redirect_uri
from plexus.connections.schemas import (
    AuthorizationRequired,
    ConnectionCreate,
    ConnectionList,
    ConnectionRead,
    ProviderList,
    ProviderRead,
)
from plexus.deps import RuntimeDep, SessionDep
from plexus.errors import BadRequest
from plexus.models.connections import Connection
from plexus.providers.base import AuthKind, ProviderError
from plexus.providers.bluesky import METADATA_PATH as BLUESKY_METADATA_PATH
from plexus.providers.bluesky import client_metadata as bluesky_metadata

MAX_ID: Final = 2**63 - 1
#: Callback query parameters read (others are ignored); each is bounded.
CALLBACK_PARAMS: Final = ("code", "state", "iss", "error", "error_description")
MAX_CALLBACK_VALUE: Final = 4096

router = APIRouter(prefix="/connections", tags=["connections"])
providers_router = APIRouter(prefix="/providers", tags=["connections"])
#: Served at the site root: documents platforms fetch about Plexus as an OAuth client.
client_metadata_router = APIRouter(tags=["connections"])

Reader = Annotated[Principal, Depends(Allow(Permission.CONNECTION_READ))]
Manager = Annotated[Principal, Depends(Allow(Permission.CONNECTION_MANAGE))]
ConnectionId = Annotated[int, Path(ge=1, le=MAX_ID)]


def _read(connection: Connection) -> ConnectionRead:
    return ConnectionRead.of(connection, service.status_of(connection))


@client_metadata_router.get(
    BLUESKY_METADATA_PATH, dependencies=[Depends(Public())], include_in_schema=False
)
def bluesky_client_metadata(rt: RuntimeDep) -> JSONResponse:
    """The atproto OAuth client metadata: the authorization server fetches it by the
    ``client_id`` URL (production; development uses atproto's loopback client).
    """
    document = bluesky_metadata(public_base(rt.settings), redirect_uri(rt.settings))
    return JSONResponse(document)


@providers_router.get("", response_model=ProviderList)
def list_providers(principal: Reader, rt: RuntimeDep) -> ProviderList:
    """Every provider this Plexus offers: auth kind, scopes, fields, limits."""
    del principal
    return ProviderList(items=[ProviderRead.of(p) for p in all_providers(rt.settings)])


@router.get("", response_model=ConnectionList)
def list_connections(
    principal: Reader,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> ConnectionList:
    rows = service.list_connections(session, principal, limit=limit, offset=offset)
    return ConnectionList(items=[_read(c) for c in rows])


@router.get("/{connection_id}", response_model=ConnectionRead)
def get_connection(
    connection_id: ConnectionId, principal: Reader, session: SessionDep
) -> ConnectionRead:
    return _read(service.get_connection(session, principal, connection_id))


@router.post(
    "",
    response_model=ConnectionRead | AuthorizationRequired,
    status_code=201,
    responses={202: {"model": AuthorizationRequired}},
)
def connect(
    body: ConnectionCreate,
    principal: Manager,
    session: SessionDep,
    rt: RuntimeDep,
    response: Response,
) -> ConnectionRead | AuthorizationRequired:
    """Connect an account. Providers connected with pasted credentials (or none: the
    sandbox) answer 201 with the connection; OAuth2 providers answer 202 with the URL the
    user must visit, after which the platform redirects to the callback.
    """
    request, provider = service.prepare_connect(
        session,
        rt,
        principal,
        provider=body.provider,
        name=body.name,
        fields=body.fields,
        reconnect_id=body.reconnect_id,
    )
    oauth = request.uses_oauth and provider.auth_kind is AuthKind.OAUTH2
    if oauth and principal.session_id is None:
        raise BadRequest("Connecting through OAuth needs a signed-in person, not an API key.")
    session.commit()  # no transaction across the platform call below
    try:
        if oauth:
            prepared, start = oauth_flow.begin(rt, provider, request)
            expires = oauth_flow.record_flow(session, rt, principal, request, prepared, start)
            response.status_code = 202
            return AuthorizationRequired(authorization_url=start.url, expires_at=expires)
        connected = provider.connect_with_fields({**request.params, **request.secrets})
    except ProviderError as error:
        raise calls.translate(error, provider.name) from None
    connection = service.store_connected(
        session, rt, principal, request, connected, via=provider.auth_kind.value
    )
    return _read(connection)


@router.get("/oauth/callback", response_model=ConnectionRead, status_code=201)
def oauth_callback(
    request: Request, principal: Manager, session: SessionDep, rt: RuntimeDep
) -> ConnectionRead:
    """Where every platform sends the user back. The ``state`` names the flow."""
    callback = {
        key: value[:MAX_CALLBACK_VALUE]
        for key in CALLBACK_PARAMS
        if (value := request.query_params.get(key)) is not None
    }
    ticket = oauth_flow.spend(session, rt, principal, callback)
    if "error" in callback:
        raise BadRequest(
            "The platform did not grant access (the authorization was declined or failed).",
            keep_changes=True,
        )
    session.commit()  # the flow is spent for good, whatever the exchange does
    try:
        connected = oauth_flow.finish(rt, ticket, callback)
    except ProviderError as error:
        raise calls.translate(error, ticket.provider) from None
    connect_request = service.ConnectRequest(
        provider=ticket.provider,
        name=ticket.name,
        params=ticket.params,
        secrets={},
        reconnect_id=ticket.reconnect_id,
    )
    connection = service.store_connected(
        session,
        rt,
        principal,
        connect_request,
        connected,
        oauth_client_id=ticket.oauth_client_id,
        via="oauth2",
    )
    return _read(connection)


@router.post("/{connection_id}/check", response_model=ConnectionRead)
def check_connection(
    connection_id: ConnectionId, principal: Manager, session: SessionDep, rt: RuntimeDep
) -> ConnectionRead:
    """Ask the platform now whether the connection works (refreshing its token if due)."""
    service.get_connection(session, principal, connection_id)
    session.commit()  # no transaction across the platform call below
    try:
        calls.check(rt, connection_id)
    except ProviderError as error:
        provider = service.get_connection(session, principal, connection_id).provider
        raise calls.translate(error, provider) from None
    return _read(service.reload(session, principal, connection_id))


@router.delete("/{connection_id}", status_code=204, response_class=Response)
def disconnect(
    connection_id: ConnectionId,
    principal: Manager,
    session: SessionDep,
    rt: RuntimeDep,
    *,
    force: Annotated[bool, Query()] = False,
) -> Response:
    """Revoke the credentials at the platform, then delete the connection. When the
    platform cannot be reached the connection stays (503); ``force=true`` deletes it
    anyway, and the audit log records that revocation was skipped.
    """
    connection = service.get_connection(session, principal, connection_id)
    provider_name = connection.provider
    session.commit()  # no transaction across the platform call below
    try:
        outcome = calls.revoke(rt, connection_id)
    except ProviderError as error:
        if not force:
            raise calls.translate(error, provider_name) from None
        outcome = "failed"
    service.record_disconnect(session, rt, principal, connection_id, revocation=outcome)
    return Response(status_code=204)
