"""Queries on webhook endpoints, events and deliveries.

``WebhookRepository`` is bound to one workspace: another workspace's endpoint or delivery
is not found. The module-level functions serve the delivery jobs, which carry ids we
enqueued ourselves, and the periodic sweep.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select, update

from plexus.models.webhooks import WebhookDelivery, WebhookEndpoint, WebhookEvent

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from sqlalchemy import Select
    from sqlalchemy.orm import Session


class WebhookRepository:
    def __init__(self, session: Session, workspace_id: int) -> None:
        self.session = session
        self.workspace_id = workspace_id

    def _endpoints(self) -> Select[WebhookEndpoint]:
        return select(WebhookEndpoint).where(WebhookEndpoint.workspace_id == self.workspace_id)

    def add(self, row: WebhookEndpoint | WebhookEvent | WebhookDelivery) -> None:
        if row.workspace_id != self.workspace_id:
            msg = "rows are added to the repository's own workspace only"
            raise ValueError(msg)
        self.session.add(row)
        self.session.flush()

    def endpoint(self, endpoint_id: int) -> WebhookEndpoint | None:
        statement = self._endpoints().where(WebhookEndpoint.id == endpoint_id)
        return self.session.scalars(statement).first()

    def endpoints(self, *, limit: int, offset: int) -> Sequence[WebhookEndpoint]:
        statement = self._endpoints().order_by(WebhookEndpoint.id).limit(limit).offset(offset)
        return self.session.scalars(statement).all()

    def enabled_endpoints(self) -> Sequence[WebhookEndpoint]:
        statement = self._endpoints().where(WebhookEndpoint.enabled.is_(True))
        return self.session.scalars(statement).all()

    def delete(self, endpoint: WebhookEndpoint) -> None:
        self.session.delete(endpoint)
        self.session.flush()

    def deliveries(
        self, endpoint_id: int, *, limit: int, offset: int
    ) -> Sequence[tuple[WebhookDelivery, WebhookEvent]]:
        statement = (
            select(WebhookDelivery, WebhookEvent)
            .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
            .where(
                WebhookDelivery.workspace_id == self.workspace_id,
                WebhookDelivery.endpoint_id == endpoint_id,
            )
            .order_by(WebhookDelivery.id.desc())
            .limit(limit)
            .offset(offset)
        )
        return [(d, e) for d, e in self.session.execute(statement).all()]

    def delivery(self, endpoint_id: int, delivery_id: int) -> WebhookDelivery | None:
        statement = select(WebhookDelivery).where(
            WebhookDelivery.workspace_id == self.workspace_id,
            WebhookDelivery.endpoint_id == endpoint_id,
            WebhookDelivery.id == delivery_id,
        )
        return self.session.scalars(statement).first()


def delivery_by_id(session: Session, delivery_id: int) -> WebhookDelivery | None:
    return session.get(WebhookDelivery, delivery_id, populate_existing=True)


def endpoint_by_id(session: Session, endpoint_id: int) -> WebhookEndpoint | None:
    return session.get(WebhookEndpoint, endpoint_id, populate_existing=True)


def event_by_id(session: Session, event_id: int) -> WebhookEvent | None:
    return session.get(WebhookEvent, event_id)


def claim(session: Session, delivery_id: int, now: datetime) -> bool:
    """Take a pending attempt for sending; False if another worker has it (or it is done)."""
    result = session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id, WebhookDelivery.state == "pending")
        .values(state="sending", claimed_at=now)
    )
    return bool(getattr(result, "rowcount", 0))


def due_ids(session: Session, before: datetime, limit: int) -> Sequence[int]:
    """Pending attempts due before ``before`` (on the (state, scheduled_at) index)."""
    statement = (
        select(WebhookDelivery.id)
        .where(WebhookDelivery.state == "pending", WebhookDelivery.scheduled_at <= before)
        .order_by(WebhookDelivery.scheduled_at)
        .limit(limit)
    )
    return session.scalars(statement).all()


def release_stale(session: Session, claimed_before: datetime) -> int:
    """Give attempts claimed by a worker that died back to the queue."""
    result = session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.state == "sending", WebhookDelivery.claimed_at < claimed_before)
        .values(state="pending", claimed_at=None)
    )
    return int(getattr(result, "rowcount", 0))


def pending_of(session: Session, endpoint_id: int) -> Sequence[WebhookDelivery]:
    statement = select(WebhookDelivery).where(
        WebhookDelivery.endpoint_id == endpoint_id, WebhookDelivery.state == "pending"
    )
    return session.scalars(statement).all()
