"""Content items: create, edit (each save a new version), the approval step, archive,
delete. Never commits.

The approval step: a contributor writes and submits (draft → in_review); an editor or
above approves (→ approved) or returns it (→ draft). Any edit makes a new version and
sends the item back to draft, so what was approved is exactly what gets published. A
workspace may turn approval off (``require_approval``): editors then publish drafts.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Final

from plexus.audit.events import AuditEventType, Target
from plexus.authz.permissions import Permission
from plexus.content.repository import ContentRepository
from plexus.content.types import FieldsInvalid, validate_fields
from plexus.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from plexus.models.content import ContentItem, ContentVersion

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy.orm import Session

    from plexus.auth.principal import Principal
    from plexus.content.schemas import ContentCreate, ContentUpdate
    from plexus.runtime import Runtime

DRAFT: Final = "draft"
IN_REVIEW: Final = "in_review"
APPROVED: Final = "approved"
SCHEDULED: Final = "scheduled"
PUBLISHED: Final = "published"
ARCHIVED: Final = "archived"
#: The most media one item holds (as ``ContentCreate`` allows).
MAX_MEDIA_PER_ITEM: Final = 20
#: The fields a version keeps (and an update may change).
EDITABLE: Final = (
    "title",
    "body",
    "excerpt",
    "author",
    "tags",
    "hashtags",
    "media_ids",
    "fields",
    "overrides",
)
_JSON_FIELDS: Final = frozenset({"tags", "hashtags", "media_ids", "fields", "overrides"})
#: What a JSON field becomes when an update sets it to null.
_EMPTY: Final[dict[str, Any]] = {
    "tags": [],
    "hashtags": [],
    "media_ids": [],
    "fields": {},
    "overrides": {},
}


def _repo(session: Session, principal: Principal) -> ContentRepository:
    return ContentRepository(session, principal.workspace_id)


def get_item(
    session: Session, principal: Principal, content_id: int, *, lock: bool = False
) -> ContentItem:
    """The workspace's item ``content_id``; NotFound for any other."""
    item = _repo(session, principal).get(content_id, lock=lock)
    if item is None:
        raise NotFound("There is no such content.")
    return item


def list_items(  # noqa: PLR0913 - who, and the page and its filters
    session: Session,
    principal: Principal,
    *,
    limit: int,
    offset: int,
    status: str | None = None,
    content_type: str | None = None,
    tag: str | None = None,
) -> tuple[Sequence[ContentItem], int]:
    return _repo(session, principal).page(
        limit=limit, offset=offset, status=status, content_type=content_type, tag=tag
    )


def snapshot(item: ContentItem) -> dict[str, Any]:
    """The item's editable state, JSON-ready (what a version holds)."""
    state: dict[str, Any] = {"content_type": item.content_type}
    for name in EDITABLE:
        value = getattr(item, name)
        state[name] = json.loads(value) if name in _JSON_FIELDS else value
    return state


# --------------------------------------------------------------------------- checks


def _check_references(
    session: Session, principal: Principal, media_ids: list[int], overrides: dict[str, Any]
) -> None:
    """Every media id is the workspace's (ready) media and every override's key one of its
    connections: refused with every bad reference listed, before anything is stored.
    """
    from plexus.connections.service import get_connection
    from plexus.media.service import get_media

    errors: list[dict[str, str]] = []

    def media_ok(media_id: int, where: str) -> None:
        try:
            get_media(session, principal, media_id)
        except NotFound:
            errors.append({"field": where, "message": f"there is no media {media_id}"})

    for index, media_id in enumerate(media_ids):
        media_ok(media_id, f"media_ids[{index}]")
    for key, override in overrides.items():
        try:
            get_connection(session, principal, int(key))
        except NotFound:
            errors.append({"field": f"overrides.{key}", "message": f"there is no connection {key}"})
        for index, media_id in enumerate(override.get("media_ids") or []):
            media_ok(media_id, f"overrides.{key}.media_ids[{index}]")
    if errors:
        raise ValidationFailed("Some references do not exist.", extra={"errors": errors})


def _clean_fields(content_type: str, fields: dict[str, Any]) -> dict[str, Any]:
    try:
        return validate_fields(content_type, fields)
    except FieldsInvalid as invalid:
        raise ValidationFailed(
            "The fields do not fit the content type.", extra={"errors": invalid.errors}
        ) from None


def _record_version(session: Session, principal: Principal, item: ContentItem) -> None:
    _repo(session, principal).add_version(
        ContentVersion(
            content_id=item.id,
            version=item.version,
            snapshot=json.dumps(snapshot(item), sort_keys=True, separators=(",", ":")),
            created_by=principal.user_id,
        )
    )


def _audit(
    session: Session,
    rt: Runtime,
    principal: Principal,
    event: AuditEventType,
    item: ContentItem,
    **context: Any,
) -> None:
    rt.audit.record(
        session,
        event,
        principal.actor,
        target=Target("content", str(item.id)),
        context={"version": item.version, **context},
        workspace_id=principal.workspace_id,
    )


# --------------------------------------------------------------------------- writing


def create_item(
    session: Session, rt: Runtime, principal: Principal, data: ContentCreate
) -> ContentItem:
    fields = _clean_fields(data.content_type, data.fields)
    overrides = {k: v.model_dump(exclude_none=True) for k, v in data.overrides.items()}
    _check_references(session, principal, data.media_ids, overrides)
    item = _repo(session, principal).add(
        ContentItem(
            workspace_id=principal.workspace_id,
            content_type=data.content_type,
            title=data.title,
            body=data.body,
            excerpt=data.excerpt,
            author=data.author,
            tags=json.dumps(list(dict.fromkeys(data.tags))),
            hashtags=json.dumps(list(dict.fromkeys(data.hashtags))),
            media_ids=json.dumps(list(dict.fromkeys(data.media_ids))),
            fields=json.dumps(fields, sort_keys=True),
            overrides=json.dumps(overrides, sort_keys=True),
            status=DRAFT,
            version=1,
            created_by=principal.user_id,
            updated_by=principal.user_id,
        )
    )
    _record_version(session, principal, item)
    _audit(
        session, rt, principal, AuditEventType.CONTENT_ITEM_CREATED, item, type=item.content_type
    )
    return item


def _given(item: ContentItem, data: ContentUpdate) -> dict[str, Any]:
    """The fields an update sets, cleaned (null clears a list or object)."""
    given = data.model_dump(exclude_unset=True, exclude={"expected_version"})
    if given.get("title", "") is None:
        raise ValidationFailed("The title cannot be removed.")
    for name, empty in _EMPTY.items():
        if name in given and given[name] is None:
            given[name] = empty
    if data.overrides is not None:
        given["overrides"] = {k: v.model_dump(exclude_none=True) for k, v in data.overrides.items()}
    if "fields" in given:
        given["fields"] = _clean_fields(item.content_type, given["fields"])
    for name in ("tags", "hashtags", "media_ids"):
        if name in given:
            given[name] = list(dict.fromkeys(given[name]))
    return given


def update_item(
    session: Session, rt: Runtime, principal: Principal, content_id: int, data: ContentUpdate
) -> ContentItem:
    """Apply the given fields as a new version; the item becomes a draft again (what was
    approved or sent is not what it holds now). Publications keep the version they send.
    """
    item = get_item(session, principal, content_id, lock=True)
    if item.status == ARCHIVED:
        raise Conflict("Archived content cannot be edited; restore it first.")
    if data.expected_version is not None and data.expected_version != item.version:
        raise Conflict(
            f"The content changed meanwhile (version {item.version}); reload it and edit again.",
            extra={"version": item.version},
        )
    given = _given(item, data)
    before = snapshot(item)
    after = {**before, **given}
    _check_references(session, principal, after["media_ids"], after["overrides"])
    changed = [name for name in EDITABLE if after[name] != before[name]]
    for name in changed:
        value = after[name]
        setattr(item, name, json.dumps(value, sort_keys=True) if name in _JSON_FIELDS else value)
    if not changed:
        return item
    item.version += 1
    item.updated_by = principal.user_id
    previous = item.status
    # What was approved (or sent) is not what is there now: a new draft.
    item.status = DRAFT
    session.flush()
    _record_version(session, principal, item)
    _audit(
        session,
        rt,
        principal,
        AuditEventType.CONTENT_ITEM_UPDATED,
        item,
        changed=changed,
        status=[previous, item.status],
    )
    return item


def attach_media(session: Session, principal: Principal, content_id: int, media_id: int) -> None:
    """Add ``media_id`` to the item's media: a new version, and a draft again (what was
    approved did not have it). 409 when the item already holds its maximum.
    """
    item = get_item(session, principal, content_id, lock=True)
    media_ids = json.loads(item.media_ids)
    if media_id in media_ids:
        return
    if len(media_ids) >= MAX_MEDIA_PER_ITEM:
        raise Conflict(
            f"The content already has {MAX_MEDIA_PER_ITEM} media; remove one to add another."
        )
    media_ids.append(media_id)
    item.media_ids = json.dumps(media_ids)
    item.version += 1
    item.updated_by = principal.user_id
    if item.status != ARCHIVED:
        item.status = DRAFT
    session.flush()
    _record_version(session, principal, item)


# --------------------------------------------------------------------------- the approval step


def _move(  # noqa: PLR0913 - who, what, from where to where, and what is said of it
    session: Session,
    rt: Runtime,
    principal: Principal,
    content_id: int,
    *,
    allowed_from: frozenset[str],
    to: str,
    event: AuditEventType,
    **context: Any,
) -> ContentItem:
    item = get_item(session, principal, content_id, lock=True)
    if item.status not in allowed_from:
        raise Conflict(
            f"Content that is {item.status.replace('_', ' ')} cannot be moved to "
            f"{to.replace('_', ' ')}."
        )
    previous = item.status
    item.status = to
    if to == APPROVED:
        item.approved_version = item.version
        item.approved_by = principal.user_id
    elif to == DRAFT:
        # Returned or restored: it needs approving (again) before it is published.
        item.approved_version = None
        item.approved_by = None
    session.flush()
    _audit(session, rt, principal, event, item, status=[previous, to], **context)
    return item


def submit(session: Session, rt: Runtime, principal: Principal, content_id: int) -> ContentItem:
    """Ask an editor to review the item."""
    return _move(
        session,
        rt,
        principal,
        content_id,
        allowed_from=frozenset({DRAFT}),
        to=IN_REVIEW,
        event=AuditEventType.CONTENT_ITEM_SUBMITTED,
    )


def approve(session: Session, rt: Runtime, principal: Principal, content_id: int) -> ContentItem:
    """Approve the current version for publishing (editors and above)."""
    if not principal.has(Permission.CONTENT_PUBLISH):
        raise PermissionDenied("Only an editor or above approves content.")
    return _move(
        session,
        rt,
        principal,
        content_id,
        allowed_from=frozenset({DRAFT, IN_REVIEW}),
        to=APPROVED,
        event=AuditEventType.CONTENT_ITEM_APPROVED,
    )


def return_to_draft(
    session: Session, rt: Runtime, principal: Principal, content_id: int, comment: str | None
) -> ContentItem:
    """Send the item back to its author with an optional comment (editors and above)."""
    return _move(
        session,
        rt,
        principal,
        content_id,
        allowed_from=frozenset({IN_REVIEW, APPROVED}),
        to=DRAFT,
        event=AuditEventType.CONTENT_ITEM_RETURNED,
        comment=(comment or "")[:1000],
    )


def archive(session: Session, rt: Runtime, principal: Principal, content_id: int) -> ContentItem:
    return _move(
        session,
        rt,
        principal,
        content_id,
        allowed_from=frozenset({DRAFT, IN_REVIEW, APPROVED, SCHEDULED, PUBLISHED}),
        to=ARCHIVED,
        event=AuditEventType.CONTENT_ITEM_ARCHIVED,
    )


def restore(session: Session, rt: Runtime, principal: Principal, content_id: int) -> ContentItem:
    """Bring an archived item back as a draft."""
    return _move(
        session,
        rt,
        principal,
        content_id,
        allowed_from=frozenset({ARCHIVED}),
        to=DRAFT,
        event=AuditEventType.CONTENT_ITEM_UPDATED,
    )


def delete_item(session: Session, rt: Runtime, principal: Principal, content_id: int) -> None:
    """Delete the item, its versions and its publications' records (not the posts at the
    platforms: delete those first through the publications API).
    """
    item = get_item(session, principal, content_id, lock=True)
    if _repo(session, principal).has_unfinished_publications(content_id):
        raise Conflict(
            "This content is still being published somewhere; cancel or settle its "
            "publications first."
        )
    _audit(session, rt, principal, AuditEventType.CONTENT_ITEM_DELETED, item, title=item.title)
    _repo(session, principal).delete(item)


def versions(
    session: Session, principal: Principal, content_id: int, *, limit: int, offset: int
) -> Sequence[ContentVersion]:
    get_item(session, principal, content_id)
    return _repo(session, principal).versions(content_id, limit=limit, offset=offset)


def version(session: Session, principal: Principal, content_id: int, number: int) -> ContentVersion:
    row = _repo(session, principal).version(content_id, number)
    if row is None:
        raise NotFound("There is no such version.")
    return row


# --------------------------------------------------------------------------- for publishing


def version_snapshot(
    session: Session, workspace_id: int, content_id: int, number: int
) -> dict[str, Any] | None:
    """What version ``number`` of the item held (None when the item is gone): for the
    publishing pipeline, which works for a workspace without a signed-in principal.
    """
    row = ContentRepository(session, workspace_id).version(content_id, number)
    return json.loads(row.snapshot) if row is not None else None


def note_publication(session: Session, workspace_id: int, content_id: int, state: str) -> None:
    """Reflect a publication's progress on the item: ``scheduled`` when one is queued,
    ``published`` once one went out (an item edited since stays the draft it became).
    """
    item = ContentRepository(session, workspace_id).get(content_id)
    if item is None:
        return
    if state == PUBLISHED and item.status in {APPROVED, SCHEDULED}:
        item.status = PUBLISHED
    elif state == SCHEDULED and item.status in {DRAFT, IN_REVIEW, APPROVED}:
        item.status = SCHEDULED
