"""``/api/v1/webhooks``: register, list, change and remove endpoints, rotate their
secret, read their delivery log, replay a delivery and send a test event.
"""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import APIRouter, Depends, Path, Query, Response

from plexus.auth.principal import Principal
from plexus.authz.permissions import Permission
from plexus.authz.policy import Allow
from plexus.deps import RuntimeDep, SessionDep
from plexus.webhooks_out import service
from plexus.webhooks_out.schemas import (
    DeliveryList,
    DeliveryRead,
    EndpointCreate,
    EndpointList,
    EndpointRead,
    EndpointUpdate,
    EndpointWithSecret,
    Queued,
)

MAX_ID: Final = 2**63 - 1

router = APIRouter(prefix="/webhooks", tags=["webhooks"])

Reader = Annotated[Principal, Depends(Allow(Permission.WEBHOOK_READ))]
Manager = Annotated[Principal, Depends(Allow(Permission.WEBHOOK_MANAGE))]
EndpointId = Annotated[int, Path(ge=1, le=MAX_ID)]
DeliveryId = Annotated[int, Path(ge=1, le=MAX_ID)]
Limit = Annotated[int, Query(ge=1, le=200)]
Offset = Annotated[int, Query(ge=0, le=1_000_000)]


@router.post("", response_model=EndpointWithSecret, status_code=201)
def create_endpoint(
    body: EndpointCreate, principal: Manager, session: SessionDep, rt: RuntimeDep
) -> EndpointWithSecret:
    """Register an endpoint. The signing secret is in this response only."""
    endpoint, secret = service.create_endpoint(
        session, rt, principal, url=body.url, names=body.events, description=body.description
    )
    return EndpointWithSecret(**EndpointRead.of(endpoint).model_dump(), secret=secret)


@router.get("", response_model=EndpointList)
def list_endpoints(
    principal: Reader, session: SessionDep, limit: Limit = 100, offset: Offset = 0
) -> EndpointList:
    rows = service.list_endpoints(session, principal, limit=limit, offset=offset)
    return EndpointList(items=[EndpointRead.of(e) for e in rows])


@router.get("/{endpoint_id}", response_model=EndpointRead)
def get_endpoint(endpoint_id: EndpointId, principal: Reader, session: SessionDep) -> EndpointRead:
    return EndpointRead.of(service.get_endpoint(session, principal, endpoint_id))


@router.patch("/{endpoint_id}", response_model=EndpointRead)
def update_endpoint(
    endpoint_id: EndpointId,
    body: EndpointUpdate,
    principal: Manager,
    session: SessionDep,
    rt: RuntimeDep,
) -> EndpointRead:
    endpoint = service.update_endpoint(
        session, rt, principal, endpoint_id, url=body.url, names=body.events, enabled=body.enabled
    )
    return EndpointRead.of(endpoint)


@router.delete("/{endpoint_id}", status_code=204)
def delete_endpoint(
    endpoint_id: EndpointId, principal: Manager, session: SessionDep, rt: RuntimeDep
) -> Response:
    service.delete_endpoint(session, rt, principal, endpoint_id)
    return Response(status_code=204)


@router.post("/{endpoint_id}/rotate-secret", response_model=EndpointWithSecret)
def rotate_secret(
    endpoint_id: EndpointId, principal: Manager, session: SessionDep, rt: RuntimeDep
) -> EndpointWithSecret:
    """A new secret, shown once; the previous one keeps signing during the overlap."""
    endpoint, secret = service.rotate_secret(session, rt, principal, endpoint_id)
    return EndpointWithSecret(**EndpointRead.of(endpoint).model_dump(), secret=secret)


@router.get("/{endpoint_id}/deliveries", response_model=DeliveryList)
def list_deliveries(
    endpoint_id: EndpointId,
    principal: Reader,
    session: SessionDep,
    limit: Limit = 100,
    offset: Offset = 0,
) -> DeliveryList:
    """Every attempt, newest first."""
    rows = service.list_deliveries(session, principal, endpoint_id, limit=limit, offset=offset)
    return DeliveryList(items=[DeliveryRead.of(d, e) for d, e in rows])


@router.post(
    "/{endpoint_id}/deliveries/{delivery_id}/replay", response_model=Queued, status_code=202
)
def replay_delivery(
    endpoint_id: EndpointId,
    delivery_id: DeliveryId,
    principal: Manager,
    session: SessionDep,
    rt: RuntimeDep,
) -> Queued:
    delivery = service.replay(session, rt, principal, endpoint_id, delivery_id)
    return Queued(delivery_id=delivery.id, state=delivery.state)


@router.post("/{endpoint_id}/test", response_model=Queued, status_code=202)
def send_test(endpoint_id: EndpointId, principal: Manager, session: SessionDep) -> Queued:
    """Queue a ``webhook.test`` event to this endpoint."""
    delivery = service.send_test(session, principal, endpoint_id)
    return Queued(delivery_id=delivery.id, state=delivery.state)
