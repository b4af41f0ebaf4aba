"""Media of a workspace: upload (stream, identify, check, clean, store), list, read,
describe, delete. Never commits.

An upload is streamed to a temporary file under the size cap, identified from its magic
bytes, scanned for hidden archives and scripts, and then cleaned (images: decoded under a
pixel limit and re-encoded without metadata) or checked (videos: container structure and
duration). The cleaned bytes are stored under their SHA-256. Every refusal leaves nothing
behind: the temporary files are removed in ``finally`` and no row is written.

Uploads through a public upload link (``upload_for_review``) go through the very same
checks and the same quota, for a workspace rather than a principal, and are stored
``pending_review``: invisible to the media API until an editor accepts them
(``publish_reviewed``) or rejects them (``discard_reviewed``). A workspace holds one row
per distinct file, so bytes the workspace already has are never stored twice:

- a public upload of bytes the workspace already holds (ready or pending) returns that
  row, unchanged: no new row, no quota spent, nothing a reviewer's rejection could take
  from the library;
- a member's upload of bytes that wait for review as a public upload makes that row
  ready and the member's (the member vouches for the bytes), and answers exactly as a new
  upload would, so the member learns nothing of the review queue.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import unicodedata
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Final
from urllib.parse import unquote

from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool

from plexus.audit.events import Actor, AuditEventType, Target
from plexus.db import after_commit, after_rollback, unit_of_work
from plexus.errors import NotFound, PayloadTooLarge, UnsupportedMediaType
from plexus.media import sniff
from plexus.media.images import clean_image
from plexus.media.repository import (
    PENDING_REVIEW,
    READY,
    MediaRepository,
    hash_in_use,
    lock_hash,
)
from plexus.media.storage import LocalStorage, MediaStorage
from plexus.media.video import video_duration
from plexus.models.base import utcnow
from plexus.models.media import MAX_FILENAME_CHARS, Media

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Collection, Sequence

    from sqlalchemy.orm import Session

    from plexus.auth.principal import Principal
    from plexus.config import Settings
    from plexus.runtime import Runtime

#: Longest filename text read from a query or header before it is sanitised.
MAX_FILENAME_INPUT: Final = 1000
_DISPOSITION_STAR: Final = re.compile(r"filename\*\s*=\s*(?:UTF-8|utf-8)''([^;\s]+)")
_DISPOSITION_PLAIN: Final = re.compile(r'filename\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]+))')
COPY_CHUNK: Final = 1_048_576
#: Every kind of media an upload may be.
ALL_KINDS: Final = frozenset({"image", "video"})


class QuotaExceeded(PayloadTooLarge):
    """The workspace's media quota would be exceeded (a 413 like any other size refusal)."""


@dataclass(frozen=True, slots=True)
class _Owner:
    """Whose upload it is: a member's (ready at once) or a public link's (pending review)."""

    workspace_id: int
    actor: Actor
    created_by: int | None
    status: str

    @classmethod
    def of(cls, principal: Principal) -> _Owner:
        return cls(principal.workspace_id, principal.actor, principal.user_id, READY)


def storage_for(settings: Settings) -> MediaStorage:
    """The storage ``PLEXUS_MEDIA_STORAGE`` chooses: the local folder, or the S3 bucket
    (through one client per set of S3 settings).
    """
    if settings.media_storage == "s3":
        # Imported here: boto3 takes about half a second to load, and only S3 needs it.
        from plexus.media.s3 import S3Storage

        return S3Storage.for_settings(settings)
    return LocalStorage.for_settings(settings)


def _repo(session: Session, principal: Principal) -> MediaRepository:
    return MediaRepository(session, principal.workspace_id)


# --- the client's filename: kept for display only --------------------------------------


def filename_from(query_value: str | None, disposition: str | None) -> str | None:
    """The client's name for the file, from ``?filename=`` or ``Content-Disposition``."""
    raw = query_value
    if raw is None and disposition:
        disposition = disposition[:MAX_FILENAME_INPUT]
        if star := _DISPOSITION_STAR.search(disposition):
            raw = unquote(star.group(1), errors="replace")
        elif plain := _DISPOSITION_PLAIN.search(disposition):
            raw = plain.group(1) if plain.group(1) is not None else plain.group(2)
    return sanitise_filename(raw[:MAX_FILENAME_INPUT]) if raw else None


def sanitise_filename(raw: str) -> str | None:
    """A display name: the last path part, no control or format characters, no leading
    dots, at most MAX_FILENAME_CHARS characters; None when nothing is left.
    """
    name = unicodedata.normalize("NFC", raw).replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(
        ch if unicodedata.category(ch)[0] not in {"C", "Z"} or ch == " " else "_" for ch in name
    )
    name = name.strip(" .")[:MAX_FILENAME_CHARS].strip(" .")
    return name or None


def declared_length(value: str | None) -> int | None:
    """The body length a ``Content-Length`` header declares; 413 when it is not a number."""
    if value is None:
        return None
    if not value.isdigit():
        raise PayloadTooLarge("Invalid Content-Length.")
    return int(value)


# --- streaming the upload --------------------------------------------------------------


@dataclass(slots=True)
class _Upload:
    path: Path
    head: bytes
    size: int


def _identify(head: bytes, kinds: Collection[str]) -> sniff.Kind:
    """The head's kind; 415 when it is not allowed at all, or not one of ``kinds``."""
    kind = sniff.identify(head)
    if kind.kind not in kinds:
        allowed = " and ".join(f"{k}s" for k in sorted(kinds))
        raise UnsupportedMediaType(f"Only {allowed} are accepted here.")
    return kind


async def _copy(
    chunks: AsyncIterator[bytes], out: BinaryIO, settings: Settings, kinds: Collection[str]
) -> tuple[bytes, int]:
    """Copy the body to ``out``; 413 the moment it passes its cap (the general cap, or the
    image cap once the head shows an image), 415 as soon as the head is not allowed (or
    not one of ``kinds``).
    """
    cap = settings.media_max_bytes
    head = b""
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if len(head) < sniff.HEAD_BYTES:
            head += chunk[: sniff.HEAD_BYTES - len(head)]
            if len(head) >= sniff.HEAD_BYTES and _identify(head, kinds).kind == "image":
                cap = min(cap, settings.media_max_image_bytes)
        if size > cap:
            raise PayloadTooLarge(f"The limit is {cap} bytes.")
        await run_in_threadpool(out.write, chunk)
    return head, size


def _new_temp(temp_dir: Path, prefix: str) -> tuple[BinaryIO, Path]:
    handle, name = tempfile.mkstemp(dir=temp_dir, prefix=prefix)
    return os.fdopen(handle, "wb"), Path(name)


def _remove(*paths: Path | None) -> None:
    for path in paths:
        if path is not None:
            path.unlink(missing_ok=True)


async def _receive(
    chunks: AsyncIterator[bytes],
    temp_dir: Path,
    settings: Settings,
    declared: int | None,
    kinds: Collection[str],
) -> _Upload:
    """Write the body to a new file in ``temp_dir`` under the caps (see ``_copy``)."""
    if declared is not None and declared > settings.media_max_bytes:
        raise PayloadTooLarge(f"The limit is {settings.media_max_bytes} bytes.")
    out, path = await run_in_threadpool(_new_temp, temp_dir, "upload-")
    try:
        with out:
            head, size = await _copy(chunks, out, settings, kinds)
    except BaseException:
        await run_in_threadpool(_remove, path)
        raise
    return _Upload(path, head, size)


# --- checking, cleaning, storing -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Checked:
    kind: sniff.Kind
    path: Path
    sha256: str
    size: int
    width: int | None = None
    height: int | None = None
    duration: float | None = None


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(COPY_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _check(upload: _Upload, settings: Settings, temp_dir: Path, kinds: Collection[str]) -> _Checked:
    """Identify, scan and clean the upload; the result's ``path`` is a temporary file
    (the upload's own for videos, a new one for re-encoded images).
    """
    kind = _identify(upload.head, kinds)
    if kind.kind == "image" and upload.size > settings.media_max_image_bytes:
        raise PayloadTooLarge(f"The limit for images is {settings.media_max_image_bytes} bytes.")
    sniff.refuse_polyglots(upload.path)
    if kind.kind == "video":
        seconds = video_duration(upload.path, kind.content_type, settings.media_max_video_seconds)
        return _Checked(kind, upload.path, _sha256_of(upload.path), upload.size, duration=seconds)
    assert kind.pil_format is not None  # noqa: S101 - every allowed image kind names one
    clean = clean_image(upload.path, kind.pil_format, settings.media_max_image_pixels)
    out, path = _new_temp(temp_dir, "clean-")
    with out:
        out.write(clean.data)
    sha = hashlib.sha256(clean.data).hexdigest()
    return _Checked(kind, path, sha, len(clean.data), clean.width, clean.height)


def _reuse(
    session: Session, rt: Runtime, owner: _Owner, media: Media, filename: str | None
) -> tuple[Media, bool]:
    """The workspace already holds these bytes as ``media`` (see the module docstring)."""
    if owner.status != READY or media.status == READY:
        return media, False
    # A member uploads what waits for review: from now on it is the member's upload, as
    # if it were new (the anonymous uploader's name for it and its time are not shown).
    media.status = READY
    media.created_by = owner.created_by
    media.original_filename = filename
    media.created_at = utcnow()
    session.flush()
    _audit_uploaded(session, rt, owner, media)
    return media, True


def _audit_uploaded(session: Session, rt: Runtime, owner: _Owner, media: Media) -> None:
    rt.audit.record(
        session,
        AuditEventType.MEDIA_MEDIA_UPLOADED,
        owner.actor,
        target=Target("media", str(media.id)),
        context={
            "kind": media.kind,
            "content_type": media.content_type,
            "bytes": media.byte_size,
            "status": media.status,
        },
        workspace_id=owner.workspace_id,
    )


def _store(
    session: Session, rt: Runtime, owner: _Owner, checked: _Checked, filename: str | None
) -> tuple[Media, bool]:
    repo = MediaRepository(session, owner.workspace_id)
    # Held until the commit: no clean-up of these bytes between storing them and
    # committing their row (see ``forget_unreferenced``).
    lock_hash(session, checked.sha256)
    existing = repo.by_hash(checked.sha256)
    if existing is not None:
        return _reuse(session, rt, owner, existing, filename)
    quota = rt.settings.media_workspace_quota_bytes
    if repo.bytes_used() + checked.size > quota:
        raise QuotaExceeded(f"The workspace's media quota of {quota} bytes would be exceeded.")
    storage = storage_for(rt.settings)
    media = Media(
        workspace_id=owner.workspace_id,
        sha256=checked.sha256,
        kind=checked.kind.kind,
        content_type=checked.kind.content_type,
        byte_size=checked.size,
        width=checked.width,
        height=checked.height,
        duration_seconds=checked.duration,
        original_filename=filename,
        status=owner.status,
        created_by=owner.created_by,
    )
    try:
        with session.begin_nested():
            repo.add(media)
    except IntegrityError:
        # The same file, uploaded at the same moment by another request of the workspace.
        raced = repo.by_hash(checked.sha256)
        if raced is None:
            raise
        return _reuse(session, rt, owner, raced, filename)
    # A transaction that does not commit (its commit failing included) leaves no row for
    # the bytes: they go again, unless another workspace's row uses them.
    after_rollback(session, lambda: forget_unreferenced(rt, checked.sha256))
    storage.put(checked.sha256, checked.path)
    _audit_uploaded(session, rt, owner, media)
    return media, True


def _check_and_store(  # noqa: PLR0913 - the upload, whose it is, and what runs before storing
    session: Session,
    rt: Runtime,
    owner: _Owner,
    upload: _Upload,
    filename: str | None,
    *,
    kinds: Collection[str],
    before_store: Callable[[], None] | None,
) -> tuple[Media, bool]:
    temp_dir = storage_for(rt.settings).temp_dir
    checked: _Checked | None = None
    try:
        checked = _check(upload, rt.settings, temp_dir, kinds)
        if before_store is not None:
            before_store()
        return _store(session, rt, owner, checked, filename)
    finally:
        # Stored files were moved away; whatever is still here is a leftover.
        _remove(upload.path, checked.path if checked is not None else None)


async def _upload(  # noqa: PLR0913 - whose, the body, what the client said, the extra rules
    session: Session,
    rt: Runtime,
    owner: _Owner,
    chunks: AsyncIterator[bytes],
    *,
    declared_length: int | None,
    filename: str | None,
    kinds: Collection[str] = ALL_KINDS,
    before_store: Callable[[], None] | None = None,
) -> tuple[Media, bool]:
    temp_dir = await run_in_threadpool(lambda: storage_for(rt.settings).temp_dir)
    received = await _receive(chunks, temp_dir, rt.settings, declared_length, kinds)
    try:
        return await run_in_threadpool(
            _check_and_store,
            session,
            rt,
            owner,
            received,
            filename,
            kinds=kinds,
            before_store=before_store,
        )
    finally:
        await run_in_threadpool(_remove, received.path)


async def upload(  # noqa: PLR0913 - who, where, the body and what the client said of it
    session: Session,
    rt: Runtime,
    principal: Principal,
    chunks: AsyncIterator[bytes],
    *,
    declared_length: int | None,
    filename: str | None,
) -> tuple[Media, bool]:
    """Receive, check and store one upload. Returns the media and whether it is new (the
    same cleaned bytes uploaded again to the workspace return the first upload's row).
    """
    return await _upload(
        session,
        rt,
        _Owner.of(principal),
        chunks,
        declared_length=declared_length,
        filename=filename,
    )


async def upload_for_review(  # noqa: PLR0913 - where, the body, what the client said, the rules
    session: Session,
    rt: Runtime,
    workspace_id: int,
    chunks: AsyncIterator[bytes],
    *,
    declared_length: int | None,
    filename: str | None,
    kinds: Collection[str],
    before_store: Callable[[], None],
) -> tuple[Media, bool]:
    """Receive, check and store an anonymous upload for ``workspace_id``, pending review.

    The same caps, checks, cleaning and quota as ``upload``; 415 as soon as the file is
    not one of ``kinds``. ``before_store`` runs in the caller's transaction once the file
    passed every check and before anything is stored; whatever it raises refuses the
    upload (and leaves nothing behind). Returns the media and whether it is a new row:
    bytes the workspace already holds give its existing row, unchanged.
    """
    owner = _Owner(workspace_id, Actor.anonymous(), None, PENDING_REVIEW)
    return await _upload(
        session,
        rt,
        owner,
        chunks,
        declared_length=declared_length,
        filename=filename,
        kinds=kinds,
        before_store=before_store,
    )


# --- reading, describing, deleting -----------------------------------------------------


def list_media(
    session: Session, principal: Principal, *, limit: int, offset: int
) -> Sequence[Media]:
    return _repo(session, principal).page(limit=limit, offset=offset)


def get_media(session: Session, principal: Principal, media_id: int) -> Media:
    media = _repo(session, principal).get(media_id)
    if media is None:
        raise NotFound("No such media.")
    return media


def set_alt_text(
    session: Session, principal: Principal, media_id: int, alt_text: str | None
) -> Media:
    media = get_media(session, principal, media_id)
    media.alt_text = alt_text.strip() or None if alt_text is not None else None
    session.flush()
    return media


def open_content(rt: Runtime, media: Media) -> BinaryIO:
    """The stored bytes of ``media``; 404 when they are missing from the storage."""
    try:
        return storage_for(rt.settings).open(media.sha256)
    except FileNotFoundError:
        raise NotFound("The media's content is missing.") from None


def download_name(media: Media) -> str:
    """The generated name a download is offered under (never the client's name)."""
    extension = sniff.ALLOWED[media.content_type].extension
    return f"media-{media.id}.{extension}"


def delete_media(session: Session, rt: Runtime, principal: Principal, media_id: int) -> str:
    """Delete the row and audit it; returns the hash whose bytes may now be unreferenced
    (remove them with ``forget_unreferenced`` once the deletion is committed).
    """
    media = get_media(session, principal, media_id)
    sha = media.sha256
    rt.audit.record(
        session,
        AuditEventType.MEDIA_MEDIA_DELETED,
        principal.actor,
        target=Target("media", str(media.id)),
        context={"kind": media.kind, "bytes": media.byte_size},
        workspace_id=principal.workspace_id,
    )
    _repo(session, principal).delete(media)
    return sha


def forget_unreferenced(rt: Runtime, sha256: str) -> None:
    """Remove the stored bytes of ``sha256`` when no workspace's media uses them any more.

    Runs in its own transaction, after a deletion is committed or an upload's transaction
    did not commit. The check and the removal happen under the hash's lock, which an
    upload holds from storing the bytes until its row is committed: bytes another upload
    has just stored for its row are never removed under it.
    """
    with unit_of_work(rt.sessions) as session:
        lock_hash(session, sha256)
        if hash_in_use(session, sha256):
            return
        with suppress(FileNotFoundError):
            storage_for(rt.settings).delete(sha256)


# --- the review of public uploads --------------------------------------------------------


def media_for_review(
    session: Session, principal: Principal, media_ids: Collection[int]
) -> dict[int, Media]:
    """The workspace's media (ready or pending review) with these ids, by id."""
    return {m.id: m for m in _repo(session, principal).many_any(media_ids)}


def get_for_review(session: Session, principal: Principal, media_id: int) -> Media:
    """The workspace's media ``media_id``, ready or pending review; NotFound otherwise."""
    media = _repo(session, principal).get_any(media_id)
    if media is None:
        raise NotFound("No such media.")
    return media


def awaits_review(media: Media) -> bool:
    """Whether ``media`` arrived through a public upload link and was not accepted yet."""
    return media.status == PENDING_REVIEW


def publish_reviewed(session: Session, principal: Principal, media_id: int) -> Media:
    """Make reviewed media ready: from now on the media API shows it like any other."""
    media = get_for_review(session, principal, media_id)
    media.status = READY
    session.flush()
    return media


def discard_reviewed(session: Session, rt: Runtime, principal: Principal, media_id: int) -> bool:
    """Delete rejected media if it is still pending review (ready media, which the
    workspace holds in its own right, is kept); True when it was deleted.

    Its bytes are removed once the deletion is committed, if no workspace uses them.
    """
    media = get_for_review(session, principal, media_id)
    if not awaits_review(media):
        return False
    sha = media.sha256
    rt.audit.record(
        session,
        AuditEventType.MEDIA_MEDIA_DELETED,
        principal.actor,
        target=Target("media", str(media.id)),
        context={"kind": media.kind, "bytes": media.byte_size, "status": media.status},
        workspace_id=principal.workspace_id,
    )
    _repo(session, principal).delete(media)
    after_commit(session, lambda: forget_unreferenced(rt, sha))
    return True
