"""The worker's side of publishing: claim, send, record; back off, park, reconcile, recover.

Exactly once, and how:

1. **Claim** (one short transaction): the connection's row is taken first (so its limits
   are counted by one claim at a time), the throttle may defer the publication, and then
   a conditional UPDATE moves it from scheduled/queued to ``publishing`` under a fresh
   claim token and a lease. Two workers can never both claim it: the second UPDATE finds
   the state changed and does nothing.
2. **Send**, with no transaction open, through ``connections.calls.with_connection``
   (fresh tokens, single-flight refresh), with the publication's idempotency key.
3. **Record** (one short transaction) what happened:
   - the post: ``published`` with the platform's id and URL;
   - a temporary failure the platform cannot have acted on (no connection, 429, 5xx):
     back to ``queued`` after an exponential backoff with jitter, never sooner than
     ``Retry-After``; ``failed`` after the last attempt;
   - refused (``ProviderRejected``): ``failed`` at once with the platform's reason;
   - credentials dead (``ProviderNeedsReauth``): ``parked`` until the connection is fixed;
   - no answer after the request went out (read timeout, dropped connection, a crash in
     our own code after sending): ``unconfirmed``.
4. **Reconcile** an unconfirmed publication by asking the platform whether it holds the
   post (``Provider.find_published``: by idempotency key or recent posts). Found:
   ``published``. Certainly not there: back to the queue, to be sent (with the same key).
   The platform cannot tell: where it deduplicates by key (``idempotent_publish``) it is
   sent again with that key; otherwise it waits for a person (``retry`` or ``resolve``).
5. **Recover**: a worker killed mid-send leaves its publication ``publishing`` past its
   lease; the dispatcher moves it to ``unconfirmed``, so it is reconciled, not re-sent.
"""

from __future__ import annotations

import json
import random
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from plexus.audit.events import Actor, AuditEventType, AuditResult, Target
from plexus.connections import calls
from plexus.connections.factory import build_provider
from plexus.content import service as content_service
from plexus.db import unit_of_work
from plexus.errors import NotFound
from plexus.kit.logging import get_logger
from plexus.media import links
from plexus.media.lookup import workspace_media
from plexus.media.service import storage_for
from plexus.models.base import utcnow
from plexus.models.content import MAX_ERROR_CHARS, MAX_REMOTE_ID_CHARS, MAX_REMOTE_URL_CHARS
from plexus.notifications.service import notify_workspace_admins
from plexus.providers.base import (
    Account,
    Capabilities,
    Post,
    Provider,
    ProviderError,
    ProviderNeedsReauth,
    ProviderRejected,
    ProviderRetryable,
    ProviderTokenExpired,
    ProviderUnavailable,
    Published,
)
from plexus.publishing import repository, states, throttle
from plexus.publishing.compose import Composed, MediaRef, compose, post_of

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from plexus.models.connections import Connection
    from plexus.models.content import Publication
    from plexus.runtime import Runtime

log = get_logger("plexus.publishing")

ACTOR: Final = Actor.system("publishing")
NOTIFY_KIND: Final = "publication_needs_attention"
#: How far back a reconciliation looks for the post, before the claim.
LOOKBACK: Final = timedelta(minutes=10)
#: Publications one dispatcher run handles per kind of work.
BATCH: Final = 500


@dataclass(frozen=True, slots=True)
class Job:
    """A claimed publication: everything the send needs, read in the claim's transaction."""

    publication_id: int
    workspace_id: int
    content_id: int
    connection_id: int
    provider: str
    claim_token: str
    idempotency_key: str
    attempts: int
    claimed_at: datetime
    planned: Planned


@dataclass(frozen=True, slots=True)
class Deferred:
    until: datetime


# --------------------------------------------------------------------------- helpers


def _account(connection: Connection) -> Account:
    return Account(
        external_id=connection.external_id,
        display_name=connection.display_name,
        url=connection.account_url,
        settings=json.loads(connection.account_settings or "{}"),
    )


def capabilities_of(provider: Provider, connection: Connection) -> Capabilities:
    return provider.limits_for(_account(connection))


def backoff(settings_base: float, settings_max: float, attempt: int) -> float:
    """Seconds before attempt ``attempt + 1``: base doubled per attempt, capped, with
    ±50% jitter (so failed publications do not all come back at the same moment).
    """
    delay = min(settings_max, settings_base * float(2 ** max(0, attempt - 1)))
    return delay * (0.5 + random.random())  # noqa: S311 - jitter, not a secret


def _audit(
    rt: Runtime,
    session: Session,
    publication: Publication,
    event: AuditEventType,
    *,
    result: AuditResult = AuditResult.SUCCESS,
    **context: Any,
) -> None:
    rt.audit.record(
        session,
        event,
        ACTOR,
        target=Target("publication", str(publication.id)),
        result=result,
        context={
            "connection_id": publication.connection_id,
            "provider": publication.provider,
            "content_id": publication.content_id,
            "version": publication.version,
            **context,
        },
        workspace_id=publication.workspace_id,
    )


@dataclass(frozen=True, slots=True)
class Planned:
    """A post's text and the media it refers to, read in a transaction."""

    composed: Composed
    media: tuple[MediaRef, ...]

    def post(self, rt: Runtime, idempotency_key: str, *, with_bytes: bool = True) -> Post:
        """The post; the media bytes are read from the storage now (call it with no
        transaction open). Without bytes, for looking the post up.
        """
        storage = storage_for(rt.settings)
        media = []
        for ref in self.media:
            data = b""
            if with_bytes:
                with storage.open(ref.sha256) as stream:
                    data = stream.read()
            media.append((ref, data))
        return post_of(self.composed, media, idempotency_key)


def _plan(
    rt: Runtime, session: Session, publication: Publication, capabilities: Capabilities
) -> Planned:
    snapshot = content_service.version_snapshot(
        session, publication.workspace_id, publication.content_id, publication.version
    )
    if snapshot is None:
        raise NotFound("the content is gone")
    composed = compose(snapshot, publication.connection_id, capabilities)
    by_url = capabilities.media.requires_public_url
    refs = tuple(
        MediaRef.of(row, links.public_url(rt, row) if by_url else None)
        for row in workspace_media(session, publication.workspace_id, composed.media_ids)
    )
    return Planned(composed, refs)


# --------------------------------------------------------------------------- claim


def claim(  # noqa: PLR0911 - one answer per reason not to send now
    rt: Runtime, publication_id: int
) -> Job | Deferred | None:
    """Take the publication for this worker, or say when to come back (None: nothing to
    do: it is not waiting any more, or someone else took it).
    """
    with unit_of_work(rt.sessions) as session:
        publication = repository.by_id(session, publication_id)
        if publication is None or publication.state not in states.CLAIMABLE:
            return None
        now = utcnow()
        if publication.next_attempt_at > now:
            return Deferred(publication.next_attempt_at)
        if not repository.serialise_claims(session, publication.connection_id):
            return None
        connection = repository.connection_row(session, publication.connection_id)
        if connection is None:
            return None
        session.refresh(connection)
        if connection.status != calls.ACTIVE:
            _park(rt, session, publication, "the connection must be connected again")
            return None
        provider = build_provider(rt.settings, connection.provider)
        capabilities = capabilities_of(provider, connection)
        until, why = throttle.wait_until(session, rt.settings, connection, capabilities, now)
        if until is not None:
            repository.move(
                session,
                publication_id,
                expected=states.CLAIMABLE,
                next_attempt_at=until,
                last_error=(why or "")[:MAX_ERROR_CHARS],
            )
            return Deferred(until)
        token = secrets.token_hex(16)
        moved = repository.move(
            session,
            publication_id,
            expected=states.CLAIMABLE,
            state=states.PUBLISHING,
            claim_token=token,
            claimed_at=now,
            lease_until=now + timedelta(seconds=rt.settings.publish_lease_seconds),
            attempts=publication.attempts + 1,
        )
        if not moved:
            return None
        planned = _plan(rt, session, publication, capabilities)
        return Job(
            publication_id=publication.id,
            workspace_id=publication.workspace_id,
            content_id=publication.content_id,
            connection_id=publication.connection_id,
            provider=publication.provider,
            claim_token=token,
            idempotency_key=publication.idempotency_key,
            attempts=publication.attempts + 1,
            claimed_at=now,
            planned=planned,
        )


# --------------------------------------------------------------------------- outcomes


def _published(rt: Runtime, publication_id: int, result: Published, *, reconciled: bool) -> None:
    with unit_of_work(rt.sessions) as session:
        now = utcnow()
        url = result.url if result.url and len(result.url) <= MAX_REMOTE_URL_CHARS else None
        moved = repository.move(
            session,
            publication_id,
            expected=(states.PUBLISHING, states.UNCONFIRMED),
            state=states.PUBLISHED,
            remote_id=result.external_id[:MAX_REMOTE_ID_CHARS],
            remote_url=url,
            published_at=now,
            last_error=None,
            lease_until=None,
        )
        publication = repository.by_id(session, publication_id)
        if not moved or publication is None:
            log.warning("publication_result_unrecorded", publication_id=publication_id)
            return
        content_service.note_publication(
            session, publication.workspace_id, publication.content_id, states.PUBLISHED
        )
        event = (
            AuditEventType.PUBLISHING_PUBLICATION_RECONCILED
            if reconciled
            else AuditEventType.PUBLISHING_PUBLICATION_PUBLISHED
        )
        _audit(rt, session, publication, event, remote_id=publication.remote_id)


def _fail(rt: Runtime, session: Session, publication: Publication, reason: str) -> None:
    moved = repository.move(
        session,
        publication.id,
        expected=(states.PUBLISHING, states.UNCONFIRMED, *states.CLAIMABLE),
        state=states.FAILED,
        last_error=reason[:MAX_ERROR_CHARS],
        lease_until=None,
    )
    if moved:
        _audit(
            rt,
            session,
            publication,
            AuditEventType.PUBLISHING_PUBLICATION_FAILED,
            result=AuditResult.FAILURE,
            reason=reason[:MAX_ERROR_CHARS],
        )


def _park(rt: Runtime, session: Session, publication: Publication, reason: str) -> None:
    del rt
    repository.move(
        session,
        publication.id,
        expected=(states.PUBLISHING, states.UNCONFIRMED, *states.CLAIMABLE),
        state=states.PARKED,
        last_error=reason[:MAX_ERROR_CHARS],
        lease_until=None,
    )


def _outcome(rt: Runtime, job: Job, change: str, reason: str, **values: Any) -> None:
    """Record a failed send's outcome ``change`` (failed, parked, queued, unconfirmed)."""
    with unit_of_work(rt.sessions) as session:
        publication = repository.by_id(session, job.publication_id)
        if publication is None or publication.claim_token != job.claim_token:
            return
        if change == states.FAILED:
            _fail(rt, session, publication, reason)
        elif change == states.PARKED:
            _park(rt, session, publication, reason)
        else:
            moved = repository.move(
                session,
                job.publication_id,
                expected=(states.PUBLISHING,),
                held_by=job.claim_token,
                state=change,
                last_error=reason[:MAX_ERROR_CHARS],
                lease_until=None,
                **values,
            )
            if moved and change == states.UNCONFIRMED:
                _audit(
                    rt,
                    session,
                    publication,
                    AuditEventType.PUBLISHING_PUBLICATION_UNCONFIRMED,
                    result=AuditResult.FAILURE,
                    reason=reason[:MAX_ERROR_CHARS],
                )


# --------------------------------------------------------------------------- send


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a run did, and when (if ever) the queue should come back to it."""

    state: str
    next_run: datetime | None = None
    reconcile_at: datetime | None = None


def run(rt: Runtime, publication_id: int) -> Outcome:
    """Claim and send one publication; record what happened."""
    try:
        claimed = claim(rt, publication_id)
    except NotFound:
        with unit_of_work(rt.sessions) as session:
            publication = repository.by_id(session, publication_id)
            if publication is not None:
                _fail(rt, session, publication, "the content or its version is gone")
        return Outcome(states.FAILED)
    if claimed is None:
        return Outcome("skipped")
    if isinstance(claimed, Deferred):
        return Outcome(states.QUEUED, next_run=claimed.until)
    post = _with_media(rt, claimed)
    if isinstance(post, Outcome):
        return post
    return _send(rt, claimed, post)


def _with_media(rt: Runtime, job: Job) -> Post | Outcome:
    """The post with its media bytes, or (the storage failing; nothing was sent) the
    publication back in the queue for a later attempt.
    """
    try:
        return job.planned.post(rt, job.idempotency_key)
    except OSError as error:
        log.warning("publish_media_unreadable", publication_id=job.publication_id)
        when = utcnow() + timedelta(seconds=rt.settings.publish_backoff_base_seconds)
        reason = f"its media could not be read ({type(error).__name__})"
        _outcome(rt, job, states.QUEUED, reason, next_attempt_at=when)
        return Outcome(states.QUEUED, next_run=when)


def _send(rt: Runtime, job: Job, post: Post) -> Outcome:  # noqa: PLR0911 - one per kind of error
    settings = rt.settings
    try:
        result = calls.with_connection(
            rt, job.connection_id, lambda provider, link: provider.publish(link, post)
        )
    except ProviderRetryable as error:
        if error.maybe_delivered:
            return _unconfirmed(rt, job, error.message)
        if job.attempts >= settings.publish_max_attempts:
            _outcome(
                rt, job, states.FAILED, f"gave up after {job.attempts} attempts: {error.message}"
            )
            return Outcome(states.FAILED)
        if error.retry_after is not None:
            # The platform said when: that long, plus a little jitter so that workers
            # told the same moment do not all come back at once.
            delay = error.retry_after + random.uniform(0.0, 1.0)  # noqa: S311 - jitter
        else:
            delay = backoff(
                settings.publish_backoff_base_seconds,
                settings.publish_backoff_max_seconds,
                job.attempts,
            )
        when = utcnow() + timedelta(seconds=delay)
        _outcome(rt, job, states.QUEUED, error.message, next_attempt_at=when)
        return Outcome(states.QUEUED, next_run=when)
    except (ProviderNeedsReauth, ProviderTokenExpired) as error:
        _outcome(rt, job, states.PARKED, error.message)
        return Outcome(states.PARKED)
    except ProviderRejected as error:
        _outcome(rt, job, states.FAILED, error.reason)
        return Outcome(states.FAILED)
    except ProviderUnavailable as error:
        _outcome(rt, job, states.FAILED, error.message)
        return Outcome(states.FAILED)
    except NotFound:
        _outcome(rt, job, states.FAILED, "the connection is gone")
        return Outcome(states.FAILED)
    except Exception as error:  # after sending, any failure may hide a post
        log.exception("publish_failed_unexpectedly", publication_id=job.publication_id)
        return _unconfirmed(rt, job, f"an unexpected error after sending ({type(error).__name__})")
    _published(rt, job.publication_id, result, reconciled=False)
    return Outcome(states.PUBLISHED)


def _unconfirmed(rt: Runtime, job: Job, reason: str) -> Outcome:
    when = utcnow() + timedelta(seconds=rt.settings.publish_reconcile_delay_seconds)
    _outcome(rt, job, states.UNCONFIRMED, reason, next_attempt_at=when)
    return Outcome(states.UNCONFIRMED, reconcile_at=when)


# --------------------------------------------------------------------------- reconcile


@dataclass(frozen=True, slots=True)
class _Lookup:
    publication_id: int
    connection_id: int
    post: Post
    since: datetime
    idempotent: bool
    attempts: int


def _lookup_of(rt: Runtime, publication_id: int) -> _Lookup | None:
    with unit_of_work(rt.sessions) as session:
        publication = repository.by_id(session, publication_id)
        if publication is None or publication.state != states.UNCONFIRMED:
            return None
        if publication.next_attempt_at > utcnow():
            return None
        connection = repository.connection_row(session, publication.connection_id)
        if connection is None:
            return None
        provider = build_provider(rt.settings, connection.provider)
        capabilities = capabilities_of(provider, connection)
        try:
            planned = _plan(rt, session, publication, capabilities)
        except NotFound:
            _fail(rt, session, publication, "the content or its version is gone")
            return None
        since = (publication.claimed_at or publication.created_at) - LOOKBACK
        return _Lookup(
            publication_id=publication.id,
            connection_id=publication.connection_id,
            post=planned.post(rt, publication.idempotency_key, with_bytes=False),
            since=since,
            idempotent=capabilities.idempotent_publish,
            attempts=publication.reconcile_attempts + 1,
        )


def reconcile(rt: Runtime, publication_id: int) -> Outcome:  # noqa: PLR0911 - per answer
    """Settle an unconfirmed publication by asking the platform what it holds."""
    lookup = _lookup_of(rt, publication_id)
    if lookup is None:
        return Outcome("skipped")
    try:
        found = calls.with_connection(
            rt,
            lookup.connection_id,
            lambda provider, link: provider.find_published(link, lookup.post, lookup.since),
        )
    except ProviderUnavailable:
        if lookup.idempotent:
            # The platform cannot be asked, but it deduplicates by key: sending again
            # with the same key returns the post if the first request created it.
            return _requeue(rt, lookup, "sent again with its idempotency key")
        return _needs_person(rt, lookup, "the platform cannot say whether it holds the post")
    except ProviderError as error:
        if lookup.attempts >= rt.settings.publish_max_reconcile_attempts:
            return _needs_person(rt, lookup, f"could not ask the platform: {error.message}")
        delay = backoff(
            rt.settings.publish_backoff_base_seconds,
            rt.settings.publish_backoff_max_seconds,
            lookup.attempts,
        )
        when = utcnow() + timedelta(seconds=delay)
        _note_lookup(rt, lookup, next_attempt_at=when, last_error=error.message)
        return Outcome(states.UNCONFIRMED, reconcile_at=when)
    if found is not None:
        _published(rt, lookup.publication_id, found, reconciled=True)
        return Outcome(states.PUBLISHED)
    return _requeue(rt, lookup, "the platform does not hold it: sending it again")


def _note_lookup(rt: Runtime, lookup: _Lookup, **values: Any) -> bool:
    with unit_of_work(rt.sessions) as session:
        if "last_error" in values:
            values["last_error"] = str(values["last_error"])[:MAX_ERROR_CHARS]
        return repository.move(
            session,
            lookup.publication_id,
            expected=(states.UNCONFIRMED,),
            reconcile_attempts=lookup.attempts,
            **values,
        )


def _requeue(rt: Runtime, lookup: _Lookup, reason: str) -> Outcome:
    now = utcnow()
    moved = _note_lookup(
        rt, lookup, state=states.QUEUED, next_attempt_at=now, last_error=reason, claim_token=None
    )
    return Outcome(states.QUEUED, next_run=now) if moved else Outcome("skipped")


def _needs_person(rt: Runtime, lookup: _Lookup, reason: str) -> Outcome:
    """Leave it unconfirmed with no further look-up; tell the workspace's admins once."""
    far = utcnow() + timedelta(days=3650)
    with unit_of_work(rt.sessions) as session:
        moved = repository.move(
            session,
            lookup.publication_id,
            expected=(states.UNCONFIRMED,),
            reconcile_attempts=lookup.attempts,
            next_attempt_at=far,
            last_error=f"needs a person: {reason}"[:MAX_ERROR_CHARS],
        )
        publication = repository.by_id(session, lookup.publication_id)
        if moved and publication is not None:
            notify_workspace_admins(
                session,
                publication.workspace_id,
                kind=NOTIFY_KIND,
                subject=f"publication:{publication.id}",
                title="A post may or may not have gone out",
                body=(
                    f"Plexus sent publication {publication.id} to {publication.provider} but "
                    f"got no answer, and {reason}. Check the account, then retry it or mark "
                    "it published."
                ),
            )
    return Outcome(states.UNCONFIRMED)


# --------------------------------------------------------------------------- dispatch


@dataclass(frozen=True, slots=True)
class Dispatch:
    """What one dispatcher run found to do (ids to hand to the queue)."""

    due: tuple[int, ...]
    reconcile: tuple[int, ...]
    recovered: tuple[int, ...]
    unparked: tuple[int, ...]


def dispatch(rt: Runtime) -> Dispatch:
    """Find due publications, recover those stuck past their lease (as unconfirmed: the
    dead worker may have sent them), and release parked ones whose connection works again.
    """
    now = utcnow()
    with unit_of_work(rt.sessions) as session:
        recovered = [
            publication_id
            for publication_id in repository.stuck(session, now, limit=BATCH)
            if repository.move(
                session,
                publication_id,
                expected=(states.PUBLISHING,),
                state=states.UNCONFIRMED,
                next_attempt_at=now,
                last_error="the worker sending it stopped before it answered",
                lease_until=None,
            )
        ]
        unparked = [
            publication_id
            for publication_id in repository.parked_on_active_connections(session, limit=BATCH)
            if repository.move(
                session,
                publication_id,
                expected=(states.PARKED,),
                state=states.QUEUED,
                next_attempt_at=now,
                last_error=None,
            )
        ]
        due = repository.due(session, now, limit=BATCH)
        reconcile_ids = repository.to_reconcile(session, now, limit=BATCH)
    return Dispatch(
        due=tuple(due),
        reconcile=tuple(reconcile_ids),
        recovered=tuple(recovered),
        unparked=tuple(unparked),
    )
