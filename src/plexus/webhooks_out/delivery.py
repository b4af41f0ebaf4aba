"""Sending one delivery attempt, and what follows from its outcome.

``deliver`` runs three steps so no transaction is open while the receiver answers: claim
the pending attempt and gather what to send (short transaction), POST it with the guarded
client (connect-time SSRF check, no redirects, a 3xx is a failure, at most 64 KiB of the
answer read, a total deadline), then record the outcome (short transaction): a 2xx is
delivered; anything else schedules the next attempt as a new row, with exponential
back-off and jitter, until the retry window after the chain's first attempt has passed.
An endpoint whose every attempt has failed for the disable period is disabled and its
admins are notified once.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final

import httpx

from plexus.audit.events import Actor, AuditEventType, AuditResult, Target
from plexus.db import unit_of_work
from plexus.kit.http import outbound_client
from plexus.kit.logging import get_logger
from plexus.models.base import utcnow
from plexus.models.webhooks import WebhookDelivery
from plexus.notifications.service import notify_workspace_admins
from plexus.webhooks_out import repository, service, signing

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from plexus.config import Settings
    from plexus.runtime import Runtime

log = get_logger("plexus.webhooks_out")

MAX_RESPONSE_BYTES: Final = 64 * 1024
#: An attempt claimed longer ago than this belongs to a worker that died.
STALE_CLAIM: Final = timedelta(minutes=10)
#: The sweep leaves an attempt this long to its own job before sending it again.
SWEEP_GRACE: Final = timedelta(seconds=60)
SWEEP_BATCH: Final = 500
ACTOR: Final = Actor.system("webhooks")
_HTTP_OK_MIN: Final = 200
_HTTP_OK_MAX: Final = 299
_HTTP_REDIRECT_MIN: Final = 300
_HTTP_REDIRECT_MAX: Final = 399


@dataclass(frozen=True, slots=True)
class _Prepared:
    url: str
    body: bytes
    headers: dict[str, str]


@dataclass(frozen=True, slots=True)
class Outcome:
    ok: bool
    status_code: int | None
    duration_ms: int
    error: str | None


def backoff(settings: Settings, attempt: int) -> timedelta:
    """Delay after failed attempt ``attempt``: base doubled each time, capped, with up to
    25% jitter either way (receivers recovering from an outage are not hit in step).
    """
    base = settings.webhook_retry_base_seconds * 2 ** min(attempt - 1, 30)
    capped = min(base, settings.webhook_retry_max_seconds)
    jitter = 0.75 + secrets.randbelow(501) / 1000
    return timedelta(seconds=capped * jitter)


def _prepare(rt: Runtime, delivery_id: int) -> _Prepared | None:
    with unit_of_work(rt.sessions) as session:
        now = utcnow()
        if not repository.claim(session, delivery_id, now):
            return None
        delivery = repository.delivery_by_id(session, delivery_id)
        if delivery is None:
            return None
        endpoint = repository.endpoint_by_id(session, delivery.endpoint_id)
        event = repository.event_by_id(session, delivery.event_id)
        if endpoint is None or event is None:
            return None
        if not endpoint.enabled:
            delivery.state, delivery.error = "cancelled", "the endpoint is disabled"
            return None
        body = event.payload.encode()
        timestamp = int(now.timestamp())
        active = service.active_secrets(rt, endpoint, now)
        headers = signing.headers(active, event.message_id, timestamp, body)
        headers["content-type"] = "application/json"
        return _Prepared(endpoint.url, body, headers)


def _post(rt: Runtime, prepared: _Prepared) -> Outcome:
    settings = rt.settings
    total = settings.webhook_timeout_seconds
    timeout = httpx.Timeout(total, connect=min(5.0, total))
    started = time.monotonic()
    try:
        # The URL was checked when saved; the guarded client checks the address it
        # connects to again (DNS answers change), and never follows a redirect.
        service.check_destination(settings, prepared.url)
        with (
            outbound_client(
                guarded=True, policy=service.policy_for(settings), timeout=timeout
            ) as client,
            client.stream(
                "POST", prepared.url, content=prepared.body, headers=prepared.headers
            ) as response,
        ):
            read = 0
            for chunk in response.iter_bytes():
                read += len(chunk)
                if read >= MAX_RESPONSE_BYTES or time.monotonic() - started > total:
                    break
            status = response.status_code
    except httpx.HTTPError as exc:
        return Outcome(ok=False, status_code=None, duration_ms=_elapsed(started), error=_name(exc))
    except Exception as exc:  # noqa: BLE001 - any failure is this attempt's failure
        detail = getattr(exc, "detail", None) or type(exc).__name__
        return Outcome(
            ok=False, status_code=None, duration_ms=_elapsed(started), error=str(detail)[:300]
        )
    ok = _HTTP_OK_MIN <= status <= _HTTP_OK_MAX
    error = None
    if not ok:
        redirect = _HTTP_REDIRECT_MIN <= status <= _HTTP_REDIRECT_MAX
        error = "redirects are not followed" if redirect else f"HTTP {status}"
    return Outcome(ok, status, _elapsed(started), error)


def _name(exc: Exception) -> str:
    return type(exc).__name__


def _elapsed(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def deliver(rt: Runtime, delivery_id: int) -> Outcome | None:
    """Make one attempt; returns its outcome (None when there was nothing to send)."""
    prepared = _prepare(rt, delivery_id)
    if prepared is None:
        return None
    outcome = _post(rt, prepared)
    with unit_of_work(rt.sessions) as session:
        _record(session, rt, delivery_id, outcome)
    return outcome


def _record(session: Session, rt: Runtime, delivery_id: int, outcome: Outcome) -> None:
    from plexus.webhooks_out.tasks import deliver_webhook
    from plexus.worker import enqueue_at

    delivery = repository.delivery_by_id(session, delivery_id)
    if delivery is None:
        return
    endpoint = repository.endpoint_by_id(session, delivery.endpoint_id)
    now = utcnow()
    delivery.attempted_at = now
    delivery.status_code = outcome.status_code
    delivery.duration_ms = outcome.duration_ms
    delivery.error = outcome.error
    if outcome.ok:
        delivery.state = "succeeded"
        if endpoint is not None:
            endpoint.failing_since = None
        return
    delivery.state = "failed"
    window = timedelta(seconds=rt.settings.webhook_retry_window_seconds)
    when = now + backoff(rt.settings, delivery.attempt)
    if endpoint is None:
        return
    if endpoint.enabled and when <= delivery.chain_started_at + window:
        delivery.next_retry_at = when
        retry = WebhookDelivery(
            workspace_id=delivery.workspace_id,
            endpoint_id=delivery.endpoint_id,
            event_id=delivery.event_id,
            attempt=delivery.attempt + 1,
            state="pending",
            scheduled_at=when,
            chain_started_at=delivery.chain_started_at,
            replay_of=delivery.replay_of,
        )
        session.add(retry)
        session.flush()
        enqueue_at(session, deliver_webhook, when, retry.id)
    if endpoint.failing_since is None:
        endpoint.failing_since = now
    _disable_if_failing(session, rt, endpoint.id, now)


def _disable_if_failing(session: Session, rt: Runtime, endpoint_id: int, now: datetime) -> None:
    endpoint = repository.endpoint_by_id(session, endpoint_id)
    if endpoint is None or not endpoint.enabled or endpoint.failing_since is None:
        return
    limit = timedelta(seconds=rt.settings.webhook_disable_after_seconds)
    if now - endpoint.failing_since < limit:
        return
    endpoint.enabled = False
    days = rt.settings.webhook_disable_after_seconds // 86_400
    endpoint.disabled_reason = f"every delivery failed for {days} days"
    for pending in repository.pending_of(session, endpoint.id):
        pending.state, pending.error = "cancelled", "the endpoint was disabled"
    rt.audit.record(
        session,
        AuditEventType.WEBHOOK_ENDPOINT_DISABLED,
        ACTOR,
        target=Target("webhook_endpoint", str(endpoint.id)),
        result=AuditResult.FAILURE,
        context={"failing_since": endpoint.failing_since.isoformat()},
        workspace_id=endpoint.workspace_id,
    )
    notify_workspace_admins(
        session,
        endpoint.workspace_id,
        kind="webhook_disabled",
        subject=f"webhook_endpoint:{endpoint.id}",
        title="A webhook endpoint was disabled",
        body=(
            f"Every delivery to {endpoint.url} failed for {days} days, so Plexus stopped "
            "sending to it. Fix the receiver, then enable the endpoint again."
        ),
    )
    log.warning("webhook_endpoint_disabled", endpoint_id=endpoint.id)


def sweep(rt: Runtime, grace: timedelta = SWEEP_GRACE) -> list[int]:
    """Attempts due for ``grace`` whose job was lost (the database is the truth); returns
    their ids. Attempts claimed by a worker that died are released first.
    """
    with unit_of_work(rt.sessions) as session:
        now = utcnow()
        repository.release_stale(session, now - STALE_CLAIM)
        return list(repository.due_ids(session, now - grace, SWEEP_BATCH))
