"""The queue's publishing jobs, and the dispatcher that makes the database the truth.

A publication's job is scheduled for its due time when it is created; whatever happens
to the queue (flushed, a worker down at that moment), the dispatcher finds due, stuck
and unconfirmed publications every minute and sends their jobs again. Running a job
twice is harmless: only one claim can succeed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from huey import crontab

from plexus.kit.logging import get_logger
from plexus.publishing import pipeline
from plexus.runtime import runtime
from plexus.worker import periodic, send_at, task

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

log = get_logger("plexus.publishing")


def _follow_up(outcome: pipeline.Outcome, publication_id: int) -> None:
    if outcome.next_run is not None:
        send_at(publish_publication, outcome.next_run, publication_id)
    if outcome.reconcile_at is not None:
        send_at(reconcile_publication, outcome.reconcile_at, publication_id)


@task()
def publish_publication(session: Session, publication_id: int) -> None:
    """Claim and send one publication (nothing happens if it is not due or not waiting)."""
    del session  # the pipeline runs its own short transactions around the platform call
    outcome = pipeline.run(runtime(), publication_id)
    log.info("publication_run", publication_id=publication_id, outcome=outcome.state)
    _follow_up(outcome, publication_id)


@task()
def reconcile_publication(session: Session, publication_id: int) -> None:
    """Ask the platform whether an unconfirmed publication went out."""
    del session
    outcome = pipeline.reconcile(runtime(), publication_id)
    log.info("publication_reconciled", publication_id=publication_id, outcome=outcome.state)
    _follow_up(outcome, publication_id)


def run_dispatcher() -> pipeline.Dispatch:
    """One dispatcher round: hand every due, recovered and unconfirmed publication to
    the queue. Returns what it found.
    """
    found = pipeline.dispatch(runtime())
    for publication_id in (*found.due, *found.unparked):
        publish_publication(publication_id)
    for publication_id in (*found.reconcile, *found.recovered):
        reconcile_publication(publication_id)
    if found.recovered:
        log.warning("publications_recovered", count=len(found.recovered))
    return found


@periodic(crontab(minute="*"))
def dispatch_publications(session: Session) -> None:
    """Every minute: the dispatcher round."""
    del session
    run_dispatcher()
