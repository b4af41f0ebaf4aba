"""Public upload links (ASVS V7.2.3, V6.4.1, V2.3.4, V2.4.1, V5.2): an editor hands out a
link for one content item; anyone holding it uploads media, without an account, into the
workspace's review queue; an editor accepts (the media joins the item) or rejects (the
media goes). Never commits.

A token carries 256 random bits and is shown once, to its creator; the database keeps
only its HMAC under the server's token key (``runtime.tokens.digest("upload-link", t)``),
so a database dump holds nothing that can be presented back. An unknown, expired, revoked
or used-up token gets one and the same 404, and counts as a bad token for the IP guard.

A use is spent by one conditional UPDATE (``uses < max_uses``, not revoked, not expired)
in the transaction that stores the upload, after the file passed every check: however
many uploads race, at most ``max_uses`` are kept, and a refused upload (wrong kind, too
large, over the quota, not an allowed file) spends nothing. Uploads are rate-limited per
link (class ``upload_link``) and per client address (``upload_link_ip``, on the route).
See docs/upload-links.md.
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, BinaryIO, Final, Literal

from starlette.concurrency import run_in_threadpool

from plexus.audit.events import Actor, AuditEventType, AuditResult, Target
from plexus.content import service as content_service
from plexus.errors import Conflict, NotFound, PayloadTooLarge, ValidationFailed
from plexus.kit.context import current_client_ip
from plexus.kit.tokens import random_token
from plexus.media import service as media_service
from plexus.models.base import utcnow
from plexus.models.content import UploadLink, UploadSubmission
from plexus.security.ipguard import FailureKind
from plexus.upload_links import repository
from plexus.upload_links.repository import UploadLinkRepository

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Collection, MutableMapping, Sequence

    from sqlalchemy.orm import Session

    from plexus.auth.principal import Principal
    from plexus.models.media import Media
    from plexus.runtime import Runtime

LINK_PURPOSE: Final = "upload-link"
#: 32 bytes = 256 bits from the OS CSPRNG (ASVS asks for at least 128).
TOKEN_BYTES: Final = 32
#: Tokens are 43 characters; anything far longer is not one and is not even hashed.
MAX_TOKEN_CHARS: Final = 128
MAX_TTL_HOURS: Final = 720
MAX_USES: Final = 1000
MAX_LABEL_CHARS: Final = 200
MAX_SUBMITTER_CHARS: Final = 200
#: Where a link's token is presented (under the deployment's public address).
PUBLIC_PATH: Final = "/api/v1/public/uploads/"
#: The rate-limit class spent per link (the per-address class is on the route).
LINK_RATE_CLASS: Final = "upload_link"

MediaKind = Literal["image", "video"]
SubmissionStatus = Literal["pending", "accepted", "rejected"]
KINDS: Final[tuple[MediaKind, ...]] = ("image", "video")
_STATUSES: Final[dict[str, SubmissionStatus]] = {
    "pending": "pending",
    "accepted": "accepted",
    "rejected": "rejected",
}
_INVALID: Final = "This upload link is not valid: it may have expired, been used up or revoked."


class LinkState(StrEnum):
    ACTIVE = "active"
    EXPIRED = "expired"
    REVOKED = "revoked"
    USED_UP = "used_up"


def link_kinds(link: UploadLink) -> list[MediaKind]:
    """The kinds of media the link accepts, in a fixed order."""
    stored = json.loads(link.allowed_kinds)
    return [kind for kind in KINDS if kind in stored]


def uses_left(link: UploadLink) -> int:
    return max(0, link.max_uses - link.uses)


def link_state(link: UploadLink, now: datetime | None = None) -> LinkState:
    if link.revoked_at is not None:
        return LinkState.REVOKED
    if link.expires_at <= (now or utcnow()):
        return LinkState.EXPIRED
    if link.uses >= link.max_uses:
        return LinkState.USED_UP
    return LinkState.ACTIVE


def public_url(rt: Runtime, token: str) -> str:
    """The address to hand out: the deployment's public address, never the Host header."""
    return f"{rt.settings.issuer.rstrip('/')}{PUBLIC_PATH}{token}"


def _repo(session: Session, principal: Principal) -> UploadLinkRepository:
    return UploadLinkRepository(session, principal.workspace_id)


# Links (editors) ---------------------------------------------------------------------------


def _expiry(now: datetime, expires_in_hours: int | None, expires_at: datetime | None) -> datetime:
    latest = now + timedelta(hours=MAX_TTL_HOURS)
    if expires_in_hours is not None:
        if not 1 <= expires_in_hours <= MAX_TTL_HOURS:
            raise ValidationFailed(f"A link lasts between 1 and {MAX_TTL_HOURS} hours.")
        return now + timedelta(hours=expires_in_hours)
    if expires_at is None or expires_at.tzinfo is None:
        raise ValidationFailed("Give expires_in_hours or expires_at (with a time zone).")
    if not now < expires_at <= latest:
        raise ValidationFailed(f"expires_at must be in the next {MAX_TTL_HOURS} hours.")
    return expires_at


def create_link(  # noqa: PLR0913 - who, and the link's parts
    session: Session,
    rt: Runtime,
    principal: Principal,
    *,
    content_id: int,
    label: str | None,
    expires_in_hours: int | None,
    expires_at: datetime | None,
    max_uses: int,
    kinds: Collection[str],
) -> tuple[UploadLink, str]:
    """Create a link for the workspace's content item ``content_id`` (404 for any other).

    Returns the link and its token, which is never available again.
    """
    content_service.get_item(session, principal, content_id)
    if not 1 <= max_uses <= MAX_USES:
        raise ValidationFailed(f"A link takes between 1 and {MAX_USES} uploads.")
    chosen = [kind for kind in KINDS if kind in kinds]
    if not chosen or len(chosen) != len(set(kinds)):
        raise ValidationFailed("allowed_kinds lists one or both of image, video.")
    now = utcnow()
    token = random_token(TOKEN_BYTES)
    link = _repo(session, principal).add_link(
        UploadLink(
            workspace_id=principal.workspace_id,
            content_id=content_id,
            token_hash=rt.tokens.digest(LINK_PURPOSE, token),
            label=label,
            allowed_kinds=json.dumps(chosen),
            max_uses=max_uses,
            uses=0,
            expires_at=_expiry(now, expires_in_hours, expires_at),
            created_by=principal.user_id,
            created_at=now,
        )
    )
    rt.audit.record(
        session,
        AuditEventType.UPLOAD_LINK_CREATED,
        principal.actor,
        target=Target("upload_link", str(link.id)),
        workspace_id=principal.workspace_id,
        context={
            "content_id": content_id,
            "max_uses": max_uses,
            "allowed_kinds": chosen,
            "expires_at": link.expires_at.isoformat(),
        },
    )
    return link, token


def list_links(
    session: Session, principal: Principal, *, content_id: int | None, limit: int, offset: int
) -> tuple[Sequence[UploadLink], int]:
    """The workspace's links (of one content item when given), newest first, and the total."""
    return _repo(session, principal).links(content_id=content_id, limit=limit, offset=offset)


def get_link(session: Session, principal: Principal, link_id: int) -> UploadLink:
    link = _repo(session, principal).link(link_id)
    if link is None:
        raise NotFound("No such upload link.")
    return link


def revoke_link(session: Session, rt: Runtime, principal: Principal, link_id: int) -> UploadLink:
    """Revoke a link of the workspace (404 for any other; 409 when it already was).

    Its submissions stay in the review queue.
    """
    link = get_link(session, principal, link_id)
    if not _repo(session, principal).revoke(link.id, utcnow()):
        raise Conflict("This upload link was already revoked.")
    rt.audit.record(
        session,
        AuditEventType.UPLOAD_LINK_REVOKED,
        principal.actor,
        target=Target("upload_link", str(link.id)),
        workspace_id=principal.workspace_id,
        context={"content_id": link.content_id, "uses": link.uses},
    )
    return link


# The public side ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OpenLink:
    """A link found usable by its token: what the public side may know and use of it."""

    id: int
    workspace_id: int
    label: str | None
    kinds: tuple[MediaKind, ...]
    expires_at: datetime
    uses_left: int


def _refuse(
    session: Session, rt: Runtime, link: UploadLink | None, reason: str, *, audit: bool
) -> NotFound:
    """The one answer for a token that cannot be used, whatever the reason.

    The presented token counts towards the address's bad-token threshold; a refused
    upload through a known link is audited in its workspace. Both are kept although the
    request fails.
    """
    rt.ip_guard.note_failure(session, current_client_ip(), FailureKind.TOKEN)
    if audit and link is not None:
        rt.audit.record(
            session,
            AuditEventType.UPLOAD_SUBMISSION_RECEIVED,
            Actor.anonymous(),
            target=Target("upload_link", str(link.id)),
            result=AuditResult.DENIED,
            workspace_id=link.workspace_id,
            context={"reason": reason},
        )
    return NotFound(_INVALID, keep_changes=True)


def open_link(
    session: Session,
    rt: Runtime,
    token: str,
    *,
    for_upload: bool,
    scope: MutableMapping[str, Any] | None = None,
) -> OpenLink:
    """The usable link ``token`` names; the same NotFound for any token that is not one.

    ``for_upload`` spends one unit of the link's rate budget (``upload_link``); ``scope``
    is the request's, for the ``RateLimit-*`` headers.
    """
    if not token or len(token) > MAX_TOKEN_CHARS:
        raise _refuse(session, rt, None, "malformed", audit=False)
    link = repository.link_by_token_hash(session, rt.tokens.digest(LINK_PURPOSE, token))
    if link is None:
        raise _refuse(session, rt, None, "unknown", audit=False)
    state = link_state(link)
    if state is not LinkState.ACTIVE:
        raise _refuse(session, rt, link, str(state), audit=for_upload)
    if for_upload:
        rt.limiter.check(scope if scope is not None else {}, LINK_RATE_CLASS, f"link:{link.id}")
    return OpenLink(
        id=link.id,
        workspace_id=link.workspace_id,
        label=link.label,
        kinds=tuple(link_kinds(link)),
        expires_at=link.expires_at,
        uses_left=uses_left(link),
    )


def clean_submitter_name(raw: str | None) -> str | None:
    """The name an uploader gave: one line of printable text, at most 200 characters."""
    if raw is None:
        return None
    name = unicodedata.normalize("NFC", raw[: MAX_SUBMITTER_CHARS * 4])
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C" and ch.isprintable())
    name = " ".join(name.split())[:MAX_SUBMITTER_CHARS].strip()
    return name or None


@dataclass(frozen=True, slots=True)
class Receipt:
    """What the uploader is told: that it arrived, and how many uploads the link has left."""

    uses_left: int


def _claim(session: Session, rt: Runtime, link: OpenLink, spent: list[int]) -> None:
    """Spend one use, or refuse the upload as if the token were invalid (it now is)."""
    left = repository.claim_use(session, link.id, utcnow())
    if left is None:
        # Revoked, expired or used up by a parallel upload since the token was checked.
        row = repository.link_by_id(session, link.id)
        raise _refuse(session, rt, row, "no_longer_usable", audit=True)
    spent.append(left)


def _record(  # noqa: PLR0913 - the link, what was stored, and who said they sent it
    session: Session,
    rt: Runtime,
    link: OpenLink,
    media: Media,
    *,
    created: bool,
    submitter_name: str | None,
) -> UploadSubmission:
    submission = UploadLinkRepository(session, link.workspace_id).add_submission(
        UploadSubmission(
            workspace_id=link.workspace_id,
            link_id=link.id,
            media_id=media.id,
            status="pending",
            submitter_name=submitter_name,
            created_at=utcnow(),
        )
    )
    rt.audit.record(
        session,
        AuditEventType.UPLOAD_SUBMISSION_RECEIVED,
        Actor.anonymous(),
        target=Target("upload_submission", str(submission.id)),
        workspace_id=link.workspace_id,
        context={
            "link_id": link.id,
            "media_id": media.id,
            "kind": media.kind,
            "bytes": media.byte_size,
            "new_media": created,
        },
    )
    return submission


async def submit(  # noqa: PLR0913 - the link, the body, and what the client said of it
    session: Session,
    rt: Runtime,
    link: OpenLink,
    chunks: AsyncIterator[bytes],
    *,
    declared_length: int | None,
    filename: str | None,
    submitter_name: str | None,
) -> Receipt:
    """Receive one upload through ``link`` into the review queue.

    The body goes through every check of a member's upload (``media.service``), and 415
    when it is not of a kind the link allows. Only then is a use spent, in the transaction
    that stores it; bytes the workspace already holds are not stored again (the submission
    points at the existing media). Nothing of this shows in the receipt.
    """
    spent: list[int] = []
    try:
        media, created = await media_service.upload_for_review(
            session,
            rt,
            link.workspace_id,
            chunks,
            declared_length=declared_length,
            filename=filename,
            kinds=link.kinds,
            before_store=lambda: _claim(session, rt, link, spent),
        )
    except media_service.QuotaExceeded:
        # The workspace's quota is none of the uploader's business.
        raise PayloadTooLarge("This link cannot take this file.") from None
    await run_in_threadpool(
        _record, session, rt, link, media, created=created, submitter_name=submitter_name
    )
    return Receipt(uses_left=spent[0])


# The review queue (editors) ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SubmissionView:
    submission: UploadSubmission
    content_id: int
    media: Media | None

    @property
    def status(self) -> SubmissionStatus:
        return _STATUSES.get(self.submission.status, "pending")


def list_submissions(  # noqa: PLR0913 - who, and the filters of the queue
    session: Session,
    principal: Principal,
    *,
    status: str | None,
    link_id: int | None,
    limit: int,
    offset: int,
) -> tuple[list[SubmissionView], int]:
    """The workspace's submissions (oldest first: the queue's head), and the total."""
    rows, total = _repo(session, principal).submissions(
        status=status, link_id=link_id, limit=limit, offset=offset
    )
    media = media_service.media_for_review(session, principal, {s.media_id for s, _ in rows})
    views = [SubmissionView(s, link.content_id, media.get(s.media_id)) for s, link in rows]
    return views, total


def _submission(
    session: Session, principal: Principal, submission_id: int
) -> tuple[UploadSubmission, UploadLink]:
    found = _repo(session, principal).submission(submission_id)
    if found is None:
        raise NotFound("No such submission.")
    return found


def get_submission(session: Session, principal: Principal, submission_id: int) -> SubmissionView:
    submission, link = _submission(session, principal, submission_id)
    media = media_service.get_for_review(session, principal, submission.media_id)
    return SubmissionView(submission, link.content_id, media)


def open_submission_content(
    session: Session, rt: Runtime, principal: Principal, submission_id: int
) -> tuple[Media, BinaryIO]:
    """The submitted file, for the reviewer to look at (served like any media download)."""
    view = get_submission(session, principal, submission_id)
    assert view.media is not None  # noqa: S101 - get_submission found it or raised
    return view.media, media_service.open_content(rt, view.media)


def _decide(
    session: Session, principal: Principal, submission: UploadSubmission, status: str
) -> None:
    if not _repo(session, principal).decide(submission.id, status, principal.user_id, utcnow()):
        raise Conflict("This submission was already reviewed.")


def accept(
    session: Session, rt: Runtime, principal: Principal, submission_id: int
) -> SubmissionView:
    """Accept a pending submission: its media becomes ready (the media API shows it) and
    joins the link's content item.
    """
    submission, link = _submission(session, principal, submission_id)
    _decide(session, principal, submission, "accepted")
    media = media_service.publish_reviewed(session, principal, submission.media_id)
    content_service.attach_media(session, principal, link.content_id, media.id)
    rt.audit.record(
        session,
        AuditEventType.UPLOAD_SUBMISSION_ACCEPTED,
        principal.actor,
        target=Target("upload_submission", str(submission.id)),
        workspace_id=principal.workspace_id,
        context={"link_id": link.id, "media_id": media.id, "content_id": link.content_id},
    )
    return SubmissionView(submission, link.content_id, media)


def reject(
    session: Session, rt: Runtime, principal: Principal, submission_id: int
) -> SubmissionView:
    """Reject a pending submission. Its media is deleted (and its bytes, once committed,
    when nothing else uses them) unless the workspace holds it in its own right (ready
    media) or another pending submission is of the same file. The submission row goes with
    its media; the audit trail keeps the decision.
    """
    submission, link = _submission(session, principal, submission_id)
    _decide(session, principal, submission, "rejected")
    repo = _repo(session, principal)
    media = media_service.get_for_review(session, principal, submission.media_id)
    remove = media_service.awaits_review(media) and not repo.others_pending_for(
        media.id, submission.id
    )
    rt.audit.record(
        session,
        AuditEventType.UPLOAD_SUBMISSION_REJECTED,
        principal.actor,
        target=Target("upload_submission", str(submission.id)),
        workspace_id=principal.workspace_id,
        context={"link_id": link.id, "media_id": media.id, "media_removed": remove},
    )
    if not remove:
        return SubmissionView(submission, link.content_id, media)
    repo.delete_submission(submission)
    media_service.discard_reviewed(session, rt, principal, media.id)
    return SubmissionView(submission, link.content_id, None)
