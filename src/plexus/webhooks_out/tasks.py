"""Background jobs of outbound webhooks: one attempt per job, and a sweep every minute
that re-sends due attempts whose job was lost (a queue outage delays, never loses, them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from huey import crontab

from plexus.runtime import runtime
from plexus.webhooks_out import delivery
from plexus.worker import periodic, send_at, task

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


@task()
def deliver_webhook(session: Session, delivery_id: int) -> None:
    """Make one delivery attempt (its own short transactions: none spans the request)."""
    del session
    delivery.deliver(runtime(), delivery_id)


@periodic(crontab(minute="*"))
def resend_lost_webhook_deliveries(session: Session) -> None:
    """Every minute: send again the attempts that are due but were never picked up."""
    del session
    from plexus.models.base import utcnow

    now = utcnow()
    for delivery_id in delivery.sweep(runtime()):
        send_at(deliver_webhook, now, delivery_id)
