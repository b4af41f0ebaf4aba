"""Background jobs of the audit domain."""

from __future__ import annotations

from typing import TYPE_CHECKING

from plexus.audit.events import Actor, AuditEventType, AuditResult
from plexus.kit.logging import get_logger
from plexus.runtime import runtime
from plexus.worker import daily_at, periodic, task

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from plexus.audit.service import VerifyReport

log = get_logger("plexus.audit")


def verify_and_record(session: Session, component: str) -> VerifyReport:
    """Verify every chain and append the outcome to the instance chain."""
    service = runtime().audit
    report = service.verify(session)
    if report.intact:
        event, result = AuditEventType.AUDIT_CHAIN_VERIFIED, AuditResult.SUCCESS
    else:
        event, result = AuditEventType.AUDIT_CHAIN_BROKEN, AuditResult.FAILURE
        for problem in report.problems:
            log.error("audit_chain_broken", detail=problem.describe())
    service.record(
        session,
        event,
        Actor.system(component),
        result=result,
        context={
            "chains": report.chains,
            "rows": report.rows,
            "problems": [p.describe() for p in report.problems],
        },
    )
    return report


@task()
def verify_audit_chain(session: Session) -> None:
    """Verify the audit chain on demand (enqueued by an operator or another service)."""
    verify_and_record(session, "worker")


@periodic(daily_at(3, 17))
def verify_audit_chain_daily(session: Session) -> None:
    """Verify the audit chain every night, so tampering is noticed without anyone asking."""
    verify_and_record(session, "scheduler")
