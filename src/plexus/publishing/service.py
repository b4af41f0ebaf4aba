"""Publications for the API: preflight, publish (create and schedule), list, cancel,
reschedule, retry, settle by hand, and delete the post at the platform. Never commits.

Times arrive either with an offset or as a local wall-clock time with an IANA zone; they
are stored in UTC, and shown back in the zone they were given in. A local time that does
not exist (skipped by a clock change) or exists twice (repeated by one) is refused with a
clear message rather than guessed.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from plexus.audit.events import AuditEventType, Target
from plexus.authz.permissions import Permission
from plexus.connections import calls
from plexus.connections.factory import build_provider
from plexus.connections.service import get_connection
from plexus.content import service as content_service
from plexus.content.preflight import MediaFacts, Problem, check_target
from plexus.content.preflight import Target as PreflightTarget
from plexus.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from plexus.media.lookup import workspace_media
from plexus.models.base import utcnow
from plexus.models.content import Publication
from plexus.providers.base import Provider, ProviderError
from plexus.publishing import repository, states
from plexus.publishing.compose import compose
from plexus.publishing.pipeline import capabilities_of
from plexus.publishing.repository import PublicationRepository
from plexus.workspaces.service import get_workspace

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy.orm import Session

    from plexus.auth.principal import Principal
    from plexus.runtime import Runtime

#: A time this far in the past still means "now" (the request took a moment to arrive).
PAST_TOLERANCE: Final = timedelta(minutes=5)
#: The furthest ahead a publication may be scheduled.
MAX_AHEAD: Final = timedelta(days=730)


def _repo(session: Session, principal: Principal) -> PublicationRepository:
    return PublicationRepository(session, principal.workspace_id)


# --------------------------------------------------------------------------- time


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationFailed(
            f"{name!r} is not a time zone; use an IANA name such as Europe/Berlin.",
            extra={"errors": [{"field": "timezone", "message": "unknown time zone"}]},
        ) from None


def to_utc(when: datetime, timezone: str) -> datetime:
    """``when`` as a UTC instant: an aware time as it is; a naive one read as wall-clock
    time in ``timezone``, refused when that zone skips or repeats it.
    """
    if when.tzinfo is not None:
        return when.astimezone(UTC)
    tz = zone(timezone)
    first = when.replace(tzinfo=tz, fold=0)
    second = when.replace(tzinfo=tz, fold=1)
    if first.utcoffset() != second.utcoffset():
        # fold only matters where the wall-clock time is skipped or repeated.
        round_trip = first.astimezone(UTC).astimezone(tz).replace(tzinfo=None)
        if round_trip != when:
            msg = f"{when:%Y-%m-%d %H:%M} does not exist in {timezone} (the clocks skip it)."
        else:
            msg = (
                f"{when:%Y-%m-%d %H:%M} happens twice in {timezone} (the clocks go back); "
                "give the time with its UTC offset to say which."
            )
        raise ValidationFailed(msg, extra={"errors": [{"field": "scheduled_at", "message": msg}]})
    return first.astimezone(UTC)


def in_zone(when: datetime, timezone: str) -> datetime:
    try:
        return when.astimezone(ZoneInfo(timezone))
    except (ZoneInfoNotFoundError, ValueError):
        return when.astimezone(UTC)


def _due_time(scheduled_at: datetime | None, timezone: str) -> datetime:
    now = utcnow()
    if scheduled_at is None:
        return now
    due = to_utc(scheduled_at, timezone)
    if due < now - PAST_TOLERANCE:
        raise ValidationFailed(
            "That time has passed.",
            extra={"errors": [{"field": "scheduled_at", "message": "in the past"}]},
        )
    if due > now + MAX_AHEAD:
        raise ValidationFailed(
            "Publications are scheduled at most two years ahead.",
            extra={"errors": [{"field": "scheduled_at", "message": "too far ahead"}]},
        )
    return max(due, now)


# --------------------------------------------------------------------------- preflight


@dataclass(frozen=True, slots=True)
class Prepared:
    """What preflight and publishing need, read in one transaction."""

    content_id: int
    version: int
    targets: tuple[PreflightTarget, ...]
    #: Connections whose provider reports a remaining daily quota (asked after commit).
    quota_connections: tuple[int, ...]
    problems: tuple[Problem, ...]


def _reports_quota(provider: Provider) -> bool:
    return type(provider).publishing_quota is not Provider.publishing_quota


def prepare(
    session: Session,
    rt: Runtime,
    principal: Principal,
    content_id: int,
    connection_ids: Sequence[int],
) -> Prepared:
    """Compose the item's current version for each connection and gather what preflight
    checks; connections of another workspace are not found.
    """
    item = content_service.get_item(session, principal, content_id)
    snapshot = content_service.snapshot(item)
    targets = []
    quota = []
    problems = []
    for connection_id in dict.fromkeys(connection_ids):
        try:
            connection = get_connection(session, principal, connection_id)
        except NotFound:
            problems.append(
                Problem(connection_id, "connection", "There is no such connection.", "not_found")
            )
            continue
        provider = build_provider(rt.settings, connection.provider)
        capabilities = capabilities_of(provider, connection)
        composed = compose(snapshot, connection.id, capabilities)
        media = tuple(
            MediaFacts(
                media_id=row.id,
                kind=row.kind,
                content_type=row.content_type,
                byte_size=row.byte_size,
                width=row.width,
                height=row.height,
                duration_seconds=row.duration_seconds,
                alt_text=row.alt_text,
            )
            for row in workspace_media(session, principal.workspace_id, composed.media_ids)
        )
        targets.append(
            PreflightTarget(
                connection_id=connection.id,
                provider=connection.provider,
                capabilities=capabilities,
                text=composed.text,
                media=media,
                hashtags=composed.hashtags,
                connection_status=connection.status,
            )
        )
        if _reports_quota(provider) and connection.status == calls.ACTIVE:
            quota.append(connection.id)
    return Prepared(item.id, item.version, tuple(targets), tuple(quota), tuple(problems))


def remaining_quotas(rt: Runtime, prepared: Prepared) -> dict[int, int | None]:
    """Ask the platforms that report one how many posts they still accept today. Runs
    outside any transaction; a platform that does not answer is simply not counted.
    """
    found: dict[int, int | None] = {}
    for connection_id in prepared.quota_connections:
        try:
            found[connection_id] = calls.with_connection(
                rt, connection_id, lambda provider, link: provider.publishing_quota(link)
            )
        except ProviderError:
            found[connection_id] = None
    return found


def check(prepared: Prepared, quotas: dict[int, int | None]) -> list[Problem]:
    """Every problem of every target, at once."""
    problems = list(prepared.problems)
    for target in prepared.targets:
        remaining = quotas.get(target.connection_id)
        if remaining is not None:
            target = PreflightTarget(  # noqa: PLW2901 - the same target, with its quota
                connection_id=target.connection_id,
                provider=target.provider,
                capabilities=target.capabilities,
                text=target.text,
                media=target.media,
                hashtags=target.hashtags,
                quota_remaining=remaining,
                connection_status=target.connection_status,
            )
        problems.extend(check_target(target))
    return problems


# --------------------------------------------------------------------------- publish


def _check_publishable(
    session: Session, principal: Principal, content_id: int, version: int
) -> None:
    if not principal.has(Permission.CONTENT_PUBLISH):
        raise PermissionDenied("Only an editor or above publishes content.")
    item = content_service.get_item(session, principal, content_id, lock=True)
    if item.version != version:
        raise Conflict("The content changed while it was being checked; check it again.")
    if item.status == content_service.ARCHIVED:
        raise Conflict("Archived content is not published; restore it first.")
    workspace = get_workspace(session, principal, principal.workspace_id)
    if workspace.require_approval and item.approved_version != item.version:
        raise Conflict(
            "This workspace publishes approved content only: approve this version first."
        )


def publish(  # noqa: PLR0913 - who, what, where, when, and in which zone
    session: Session,
    rt: Runtime,
    principal: Principal,
    prepared: Prepared,
    connection_ids: Sequence[int],
    *,
    scheduled_at: datetime | None,
    timezone: str,
) -> list[Publication]:
    """One publication per connection for the prepared version, due at ``scheduled_at``
    (now when None); their jobs are queued once the transaction commits.
    """
    from plexus.publishing.tasks import publish_publication
    from plexus.worker import enqueue_at

    zone(timezone)
    due = _due_time(scheduled_at, timezone)
    _check_publishable(session, principal, prepared.content_id, prepared.version)
    repo = _repo(session, principal)
    busy = repo.active_for(prepared.content_id, connection_ids)
    if busy:
        raise Conflict(
            "This content is already on its way to some of these connections.",
            extra={"connection_ids": sorted(busy)},
        )
    state = states.SCHEDULED if due > utcnow() + timedelta(seconds=5) else states.QUEUED
    created = []
    for connection_id in dict.fromkeys(connection_ids):
        connection = get_connection(session, principal, connection_id)
        publication = repo.add(
            Publication(
                workspace_id=principal.workspace_id,
                content_id=prepared.content_id,
                version=prepared.version,
                connection_id=connection.id,
                provider=connection.provider,
                idempotency_key=secrets.token_hex(16),
                state=state,
                scheduled_at=due,
                timezone=timezone,
                next_attempt_at=due,
                created_by=principal.user_id,
            )
        )
        rt.audit.record(
            session,
            AuditEventType.PUBLISHING_PUBLICATION_CREATED,
            principal.actor,
            target=Target("publication", str(publication.id)),
            context={
                "content_id": prepared.content_id,
                "version": prepared.version,
                "connection_id": connection.id,
                "provider": connection.provider,
                "scheduled_at": due.isoformat(),
            },
            workspace_id=principal.workspace_id,
        )
        enqueue_at(session, publish_publication, due, publication.id)
        created.append(publication)
    content_service.note_publication(
        session, principal.workspace_id, prepared.content_id, states.SCHEDULED
    )
    return created


# --------------------------------------------------------------------------- reading


def get_publication(
    session: Session, principal: Principal, publication_id: int, *, lock: bool = False
) -> Publication:
    publication = _repo(session, principal).get(publication_id, lock=lock)
    if publication is None:
        raise NotFound("There is no such publication.")
    return publication


def list_publications(  # noqa: PLR0913 - the page and its filters
    session: Session,
    principal: Principal,
    *,
    limit: int,
    offset: int,
    state: str | None = None,
    connection_id: int | None = None,
    content_id: int | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> tuple[Sequence[Publication], int]:
    if start is not None and end is not None and end <= start:
        raise ValidationFailed("The range ends before it starts.")
    return _repo(session, principal).page(
        limit=limit,
        offset=offset,
        state=state,
        connection_id=connection_id,
        content_id=content_id,
        start=start.astimezone(UTC) if start else None,
        end=end.astimezone(UTC) if end else None,
    )


# --------------------------------------------------------------------------- changing


def _change(  # noqa: PLR0913 - who, which, from where, to where, what is recorded
    session: Session,
    rt: Runtime,
    principal: Principal,
    publication_id: int,
    *,
    allowed: frozenset[str],
    event: AuditEventType,
    **values: object,
) -> Publication:
    publication = get_publication(session, principal, publication_id, lock=True)
    before = publication.state
    changes: dict[str, Any] = dict(values)
    if before not in allowed or not repository.move(
        session, publication.id, expected=(before,), **changes
    ):
        raise Conflict(
            f"A publication that is {before} cannot be changed that way.",
            extra={"state": before},
        )
    session.refresh(publication)
    rt.audit.record(
        session,
        event,
        principal.actor,
        target=Target("publication", str(publication.id)),
        context={"state": [before, publication.state], "connection_id": publication.connection_id},
        workspace_id=principal.workspace_id,
    )
    return publication


def cancel(session: Session, rt: Runtime, principal: Principal, publication_id: int) -> Publication:
    """Stop a publication that has not been sent (one being sent cannot be stopped)."""
    return _change(
        session,
        rt,
        principal,
        publication_id,
        allowed=frozenset({states.SCHEDULED, states.QUEUED, states.PARKED, states.FAILED}),
        event=AuditEventType.PUBLISHING_PUBLICATION_CANCELLED,
        state=states.CANCELLED,
    )


def reschedule(  # noqa: PLR0913 - who, which, when, in which zone
    session: Session,
    rt: Runtime,
    principal: Principal,
    publication_id: int,
    *,
    scheduled_at: datetime,
    timezone: str,
) -> Publication:
    from plexus.publishing.tasks import publish_publication
    from plexus.worker import enqueue_at

    zone(timezone)
    due = _due_time(scheduled_at, timezone)
    publication = _change(
        session,
        rt,
        principal,
        publication_id,
        allowed=frozenset({states.SCHEDULED, states.QUEUED, states.PARKED}),
        event=AuditEventType.PUBLISHING_PUBLICATION_RESCHEDULED,
        state=states.SCHEDULED,
        scheduled_at=due,
        next_attempt_at=due,
        timezone=timezone,
    )
    enqueue_at(session, publish_publication, due, publication.id)
    return publication


def retry(
    session: Session, rt: Runtime, principal: Principal, publication_id: int, *, force: bool
) -> Publication:
    """Send a failed publication again; an unconfirmed one only with ``force`` (the
    person has checked the platform and knows the post is not there).
    """
    from plexus.publishing.tasks import publish_publication
    from plexus.worker import enqueue_at

    allowed = {states.FAILED}
    if force:
        allowed.add(states.UNCONFIRMED)
    now = utcnow()
    publication = _change(
        session,
        rt,
        principal,
        publication_id,
        allowed=frozenset(allowed),
        event=AuditEventType.PUBLISHING_PUBLICATION_RETRIED,
        state=states.QUEUED,
        attempts=0,
        reconcile_attempts=0,
        next_attempt_at=now,
        claim_token=None,
    )
    enqueue_at(session, publish_publication, now, publication.id)
    return publication


def resolve(  # noqa: PLR0913 - who, which, and what the person found
    session: Session,
    rt: Runtime,
    principal: Principal,
    publication_id: int,
    *,
    published: bool,
    remote_url: str | None,
) -> Publication:
    """Settle an unconfirmed publication by hand: the person looked at the account."""
    values: dict[str, object] = {"state": states.PUBLISHED if published else states.FAILED}
    if published:
        values |= {"published_at": utcnow(), "remote_url": remote_url}
    else:
        values["last_error"] = "marked as not published by a person"
    publication = _change(
        session,
        rt,
        principal,
        publication_id,
        allowed=frozenset({states.UNCONFIRMED}),
        event=AuditEventType.PUBLISHING_PUBLICATION_RECONCILED,
        **values,
    )
    if published:
        content_service.note_publication(
            session, principal.workspace_id, publication.content_id, states.PUBLISHED
        )
    return publication


@dataclass(frozen=True, slots=True)
class RemotePost:
    publication_id: int
    connection_id: int
    remote_id: str


def remote_post(session: Session, principal: Principal, publication_id: int) -> RemotePost:
    publication = get_publication(session, principal, publication_id)
    if publication.state != states.PUBLISHED or not publication.remote_id:
        raise Conflict("Only a published post with a platform id can be deleted there.")
    return RemotePost(publication.id, publication.connection_id, publication.remote_id)


def delete_remote(rt: Runtime, post: RemotePost) -> None:
    """Delete the post at the platform (no transaction open); raises the problem a client
    sees when the platform refuses or cannot be reached.
    """
    snapshot = calls.load(rt, post.connection_id)
    try:
        calls.with_connection(
            rt, post.connection_id, lambda provider, link: provider.delete(link, post.remote_id)
        )
    except ProviderError as error:
        raise calls.translate(error, snapshot.provider) from None


def mark_deleted(
    session: Session, rt: Runtime, principal: Principal, publication_id: int
) -> Publication:
    return _change(
        session,
        rt,
        principal,
        publication_id,
        allowed=frozenset({states.PUBLISHED}),
        event=AuditEventType.PUBLISHING_PUBLICATION_DELETED,
        state=states.DELETED,
        deleted_at=utcnow(),
    )


def problems_json(problems: Sequence[Problem]) -> list[dict[str, object]]:
    return [
        {"connection_id": p.connection_id, "field": p.field, "message": p.message, "code": p.code}
        for p in problems
    ]
