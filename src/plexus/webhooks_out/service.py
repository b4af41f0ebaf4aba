"""Webhook endpoints of a workspace and the events queued for them. Never commits.

Endpoints are registered, changed, rotated and removed here (every look-up scoped to the
caller's workspace); ``on_audit_event`` turns an audit event into a webhook event and one
pending delivery per subscribed, enabled endpoint in the same transaction, and enqueues
the delivery jobs once it commits. Sending lives in ``plexus.webhooks_out.delivery``.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final

from plexus.audit.events import AuditEventType, Target
from plexus.errors import Conflict, NotFound, ValidationFailed
from plexus.kit.http import DestinationPolicy, DestinationRefused, check_url
from plexus.models.base import utcnow
from plexus.models.webhooks import WebhookDelivery, WebhookEndpoint, WebhookEvent
from plexus.vault_columns import WEBHOOK_PREVIOUS_SECRET, WEBHOOK_SECRET
from plexus.webhooks_out import events, signing
from plexus.webhooks_out.repository import WebhookRepository

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from sqlalchemy.orm import Session

    from plexus.auth.principal import Principal
    from plexus.config import Settings
    from plexus.models.audit import AuditEvent
    from plexus.runtime import Runtime

MAX_ENDPOINTS: Final = 20


def policy_for(settings: Settings) -> DestinationPolicy:
    return DestinationPolicy.from_strings(settings.outbound_allow_networks)


def check_destination(settings: Settings, url: str) -> str:
    """The URL, if a delivery may be sent there now (422 with the reason otherwise)."""
    try:
        return check_url(url, policy_for(settings), https_only=settings.is_production)
    except DestinationRefused as exc:
        raise ValidationFailed(f"The webhook URL is refused: {exc}.") from None


def _check_events(names: Sequence[str]) -> list[str]:
    unknown = sorted(set(names) - events.SUBSCRIBABLE)
    if unknown:
        raise ValidationFailed(f"Unknown webhook events: {', '.join(unknown)}.")
    return sorted(set(names))


def subscriptions(endpoint: WebhookEndpoint) -> list[str]:
    value = json.loads(endpoint.events)
    return [str(v) for v in value] if isinstance(value, list) else []


def _repo(session: Session, principal: Principal) -> WebhookRepository:
    return WebhookRepository(session, principal.workspace_id)


def _audit(
    rt: Runtime,
    session: Session,
    principal: Principal,
    event: AuditEventType,
    endpoint: WebhookEndpoint,
    **context: Any,
) -> None:
    rt.audit.record(
        session,
        event,
        principal.actor,
        target=Target("webhook_endpoint", str(endpoint.id)),
        context=context,
        workspace_id=principal.workspace_id,
    )


def _seal(rt: Runtime, endpoint: WebhookEndpoint, secret: str) -> bytes:
    return rt.secretbox.seal(secret.encode(), WEBHOOK_SECRET.context(endpoint.id))


def active_secrets(rt: Runtime, endpoint: WebhookEndpoint, now: datetime) -> list[str]:
    """The secrets that sign a delivery now: the current one, and the previous one while
    its overlap lasts.
    """
    found = [rt.secretbox.open(endpoint.secret_sealed, WEBHOOK_SECRET.context(endpoint.id))]
    if (
        endpoint.previous_secret_sealed is not None
        and endpoint.previous_expires_at is not None
        and endpoint.previous_expires_at > now
    ):
        context = WEBHOOK_PREVIOUS_SECRET.context(endpoint.id)
        found.append(rt.secretbox.open(endpoint.previous_secret_sealed, context))
    return [value.decode() for value in found]


def create_endpoint(  # noqa: PLR0913 - who, where, and the endpoint's three fields
    session: Session,
    rt: Runtime,
    principal: Principal,
    *,
    url: str,
    names: Sequence[str],
    description: str | None,
) -> tuple[WebhookEndpoint, str]:
    """Register an endpoint; returns it and its signing secret (shown once)."""
    repo = _repo(session, principal)
    if len(repo.endpoints(limit=MAX_ENDPOINTS, offset=0)) >= MAX_ENDPOINTS:
        raise Conflict(f"A workspace has at most {MAX_ENDPOINTS} webhook endpoints.")
    endpoint = WebhookEndpoint(
        workspace_id=principal.workspace_id,
        url=check_destination(rt.settings, url),
        description=description,
        events=json.dumps(_check_events(names)),
        enabled=True,
        secret_sealed=b"",
        created_by=principal.user_id,
    )
    repo.add(endpoint)
    secret = signing.new_secret()
    endpoint.secret_sealed = _seal(rt, endpoint, secret)
    _audit(rt, session, principal, AuditEventType.WEBHOOK_ENDPOINT_CREATED, endpoint, url=url)
    return endpoint, secret


def list_endpoints(
    session: Session, principal: Principal, *, limit: int, offset: int
) -> Sequence[WebhookEndpoint]:
    return _repo(session, principal).endpoints(limit=limit, offset=offset)


def get_endpoint(session: Session, principal: Principal, endpoint_id: int) -> WebhookEndpoint:
    endpoint = _repo(session, principal).endpoint(endpoint_id)
    if endpoint is None:
        raise NotFound("There is no such webhook endpoint.")
    return endpoint


def update_endpoint(  # noqa: PLR0913 - who, which, and the three fields that may change
    session: Session,
    rt: Runtime,
    principal: Principal,
    endpoint_id: int,
    *,
    url: str | None,
    names: Sequence[str] | None,
    enabled: bool | None,
) -> WebhookEndpoint:
    endpoint = get_endpoint(session, principal, endpoint_id)
    changed: list[str] = []
    if url is not None:
        endpoint.url = check_destination(rt.settings, url)
        changed.append("url")
    if names is not None:
        endpoint.events = json.dumps(_check_events(names))
        changed.append("events")
    if enabled is not None:
        if enabled and not endpoint.enabled:
            # Turned back on by a person: its failure streak starts again.
            endpoint.failing_since = None
            endpoint.disabled_reason = None
        endpoint.enabled = enabled
        changed.append("enabled")
    session.flush()
    _audit(
        rt, session, principal, AuditEventType.WEBHOOK_ENDPOINT_UPDATED, endpoint, changed=changed
    )
    return endpoint


def delete_endpoint(session: Session, rt: Runtime, principal: Principal, endpoint_id: int) -> None:
    """Remove the endpoint with its sealed secrets and its delivery log."""
    endpoint = get_endpoint(session, principal, endpoint_id)
    _audit(rt, session, principal, AuditEventType.WEBHOOK_ENDPOINT_DELETED, endpoint)
    _repo(session, principal).delete(endpoint)


def rotate_secret(
    session: Session, rt: Runtime, principal: Principal, endpoint_id: int
) -> tuple[WebhookEndpoint, str]:
    """A new secret (shown once); the old one keeps signing for the overlap."""
    endpoint = get_endpoint(session, principal, endpoint_id)
    old = rt.secretbox.open(endpoint.secret_sealed, WEBHOOK_SECRET.context(endpoint.id))
    endpoint.previous_secret_sealed = rt.secretbox.seal(
        old, WEBHOOK_PREVIOUS_SECRET.context(endpoint.id)
    )
    overlap = timedelta(seconds=rt.settings.webhook_secret_overlap_seconds)
    endpoint.previous_expires_at = utcnow() + overlap
    secret = signing.new_secret()
    endpoint.secret_sealed = _seal(rt, endpoint, secret)
    session.flush()
    _audit(rt, session, principal, AuditEventType.WEBHOOK_SECRET_ROTATED, endpoint)
    return endpoint, secret


def list_deliveries(
    session: Session, principal: Principal, endpoint_id: int, *, limit: int, offset: int
) -> Sequence[tuple[WebhookDelivery, WebhookEvent]]:
    get_endpoint(session, principal, endpoint_id)
    return _repo(session, principal).deliveries(endpoint_id, limit=limit, offset=offset)


# ---------------------------------------------------------------------------- queueing


def _payload(event_type: str, data: dict[str, Any]) -> str:
    body = {"type": event_type, "timestamp": utcnow().isoformat(), "data": data}
    return json.dumps(body, separators=(",", ":"), sort_keys=True, ensure_ascii=True)


def _queue(
    session: Session, endpoint: WebhookEndpoint, event: WebhookEvent, replay_of: int | None
) -> WebhookDelivery:
    from plexus.webhooks_out.tasks import deliver_webhook
    from plexus.worker import enqueue

    now = utcnow()
    delivery = WebhookDelivery(
        workspace_id=endpoint.workspace_id,
        endpoint_id=endpoint.id,
        event_id=event.id,
        attempt=1,
        state="pending",
        scheduled_at=now,
        chain_started_at=now,
        replay_of=replay_of,
    )
    WebhookRepository(session, endpoint.workspace_id).add(delivery)
    enqueue(session, deliver_webhook, delivery.id)
    return delivery


def _new_event(
    session: Session, workspace_id: int, event_type: str, data: dict[str, Any]
) -> WebhookEvent:
    event = WebhookEvent(
        workspace_id=workspace_id,
        message_id=signing.new_message_id(),
        type=event_type,
        payload=_payload(event_type, data),
    )
    WebhookRepository(session, workspace_id).add(event)
    return event


def _data(row: AuditEvent) -> dict[str, Any]:
    context = json.loads(row.context) if row.context else {}
    data: dict[str, Any] = {"workspace_id": row.workspace_id}
    if row.target_type is not None:
        data["object"] = row.target_type
        data["id"] = row.target_id
    if isinstance(context, dict):
        data.update({k: v for k, v in context.items() if k in events.PAYLOAD_FIELDS})
    return data


def on_audit_event(session: Session, row: AuditEvent) -> None:
    """The audit hook: queue a webhook event for every subscribed, enabled endpoint."""
    event_type = events.FROM_AUDIT.get(row.event)
    if event_type is None or row.workspace_id is None:
        return
    targets = [
        endpoint
        for endpoint in WebhookRepository(session, row.workspace_id).enabled_endpoints()
        if events.subscribed(subscriptions(endpoint), event_type)
    ]
    if not targets:
        return
    event = _new_event(session, row.workspace_id, event_type, _data(row))
    for endpoint in targets:
        _queue(session, endpoint, event, None)


def send_test(session: Session, principal: Principal, endpoint_id: int) -> WebhookDelivery:
    """Queue a ``webhook.test`` event to this endpoint only."""
    endpoint = get_endpoint(session, principal, endpoint_id)
    if not endpoint.enabled:
        raise Conflict("The webhook endpoint is disabled; enable it first.")
    data = {"workspace_id": principal.workspace_id, "endpoint_id": endpoint.id}
    event = _new_event(session, principal.workspace_id, events.TEST_EVENT, data)
    return _queue(session, endpoint, event, None)


def replay(
    session: Session, rt: Runtime, principal: Principal, endpoint_id: int, delivery_id: int
) -> WebhookDelivery:
    """Send a delivery's event again (same ``webhook-id``) as a new chain of attempts."""
    endpoint = get_endpoint(session, principal, endpoint_id)
    original = _repo(session, principal).delivery(endpoint_id, delivery_id)
    if original is None:
        raise NotFound("There is no such delivery.")
    if not endpoint.enabled:
        raise Conflict("The webhook endpoint is disabled; enable it first.")
    event = session.get(WebhookEvent, original.event_id)
    if event is None:
        raise NotFound("There is no such delivery.")
    delivery = _queue(session, endpoint, event, original.id)
    _audit(
        rt,
        session,
        principal,
        AuditEventType.WEBHOOK_DELIVERY_REPLAYED,
        endpoint,
        delivery_id=original.id,
    )
    return delivery
