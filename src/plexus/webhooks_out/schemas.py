"""Request and response bodies of ``/api/v1/webhooks``.

A signing secret appears in exactly two responses, once each: creating an endpoint and
rotating its secret. No list or read ever carries one.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from plexus.models.webhooks import WebhookDelivery, WebhookEndpoint, WebhookEvent

Url = Annotated[str, StringConstraints(min_length=1, max_length=2000)]
EventName = Annotated[str, StringConstraints(pattern=r"^[a-z_]{1,30}\.(?:\*|[a-z_]{1,40})$")]
Events = Annotated[list[EventName], Field(min_length=1, max_length=50)]


class EndpointCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    url: Url
    events: Events
    description: Annotated[str, StringConstraints(max_length=300)] | None = None


class EndpointUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    url: Url | None = None
    events: Events | None = None
    enabled: bool | None = None


class EndpointRead(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: int
    url: str
    description: str | None
    events: list[str]
    enabled: bool
    disabled_reason: str | None
    failing_since: datetime | None
    previous_secret_expires_at: datetime | None
    created_at: datetime

    @classmethod
    def of(cls, endpoint: WebhookEndpoint) -> EndpointRead:
        return cls(
            id=endpoint.id,
            url=endpoint.url,
            description=endpoint.description,
            events=[str(e) for e in json.loads(endpoint.events)],
            enabled=endpoint.enabled,
            disabled_reason=endpoint.disabled_reason,
            failing_since=endpoint.failing_since,
            previous_secret_expires_at=endpoint.previous_expires_at,
            created_at=endpoint.created_at,
        )


class EndpointWithSecret(EndpointRead):
    #: Shown once: store it in the receiver now (``whsec_…``, Standard Webhooks).
    secret: str


class EndpointList(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[EndpointRead]


class DeliveryRead(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: int
    event_id: str
    event_type: str
    attempt: int
    state: Literal["pending", "sending", "succeeded", "failed", "cancelled"]
    scheduled_at: datetime
    attempted_at: datetime | None
    status_code: int | None
    duration_ms: int | None
    error: str | None
    next_retry_at: datetime | None
    replay_of: int | None

    @classmethod
    def of(cls, delivery: WebhookDelivery, event: WebhookEvent) -> DeliveryRead:
        return cls(
            id=delivery.id,
            event_id=event.message_id,
            event_type=event.type,
            attempt=delivery.attempt,
            state=delivery.state,
            scheduled_at=delivery.scheduled_at,
            attempted_at=delivery.attempted_at,
            status_code=delivery.status_code,
            duration_ms=delivery.duration_ms,
            error=delivery.error,
            next_retry_at=delivery.next_retry_at,
            replay_of=delivery.replay_of,
        )


class DeliveryList(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[DeliveryRead]


class Queued(BaseModel):
    model_config = ConfigDict(extra="forbid")
    delivery_id: int
    state: str
