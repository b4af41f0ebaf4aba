"""``/api/v1/media``: upload (the raw request body), list, read, describe, download, delete.

Uploads are the raw body, not a multipart form: ``POST /api/v1/media?filename=cat.jpg``
(or the name in ``Content-Disposition``). The Content-Type a client sends is ignored.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Final

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from plexus.auth.principal import Principal
from plexus.authz.permissions import Permission
from plexus.authz.policy import Allow, Public
from plexus.deps import RuntimeDep, SessionDep
from plexus.media import links, service
from plexus.media.schemas import MediaList, MediaRead, MediaUpdate

if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import BinaryIO

    from plexus.models.media import Media
    from plexus.runtime import Runtime

MAX_ID: Final = 2**63 - 1
DOWNLOAD_CHUNK: Final = 65_536

router = APIRouter(prefix="/media", tags=["media"])
public_router = APIRouter(prefix="/public/media", tags=["media"])

Reader = Annotated[Principal, Depends(Allow(Permission.MEDIA_READ))]
Writer = Annotated[Principal, Depends(Allow(Permission.MEDIA_WRITE))]
Uploader = Annotated[Principal, Depends(Allow(Permission.MEDIA_WRITE, rate="upload"))]
MediaId = Annotated[int, Path(ge=1, le=MAX_ID)]


@router.post("", response_model=MediaRead, status_code=201, responses={200: {"model": MediaRead}})
async def upload(
    request: Request,
    principal: Uploader,
    session: SessionDep,
    rt: RuntimeDep,
    response: Response,
    filename: Annotated[str | None, Query(max_length=service.MAX_FILENAME_INPUT)] = None,
    content_disposition: Annotated[str | None, Header()] = None,
    content_length: Annotated[str | None, Header()] = None,
) -> MediaRead:
    """Upload one image (JPEG, PNG, GIF, WebP) or video (MP4, MOV, WebM) as the raw body.

    201 with the new media; 200 with the existing one when the workspace already has the
    same (cleaned) file.
    """
    # End the transaction the access check opened: none may stay open (on SQLite, holding
    # the write lock) for as long as a slow client takes to send its body.
    await run_in_threadpool(session.commit)
    media, created = await service.upload(
        session,
        rt,
        principal,
        request.stream(),
        declared_length=service.declared_length(content_length),
        filename=service.filename_from(filename, content_disposition),
    )
    if not created:
        response.status_code = 200
    return MediaRead.of(media)


@router.get("", response_model=MediaList)
def list_media(
    principal: Reader,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> MediaList:
    """The workspace's media, newest first."""
    rows = service.list_media(session, principal, limit=limit, offset=offset)
    return MediaList(items=[MediaRead.of(m) for m in rows])


@router.get("/{media_id}", response_model=MediaRead)
def get_media(media_id: MediaId, principal: Reader, session: SessionDep) -> MediaRead:
    return MediaRead.of(service.get_media(session, principal, media_id))


@router.patch("/{media_id}", response_model=MediaRead)
def update_media(
    media_id: MediaId, body: MediaUpdate, principal: Writer, session: SessionDep
) -> MediaRead:
    """Set (or, with null, remove) the alt text."""
    return MediaRead.of(service.set_alt_text(session, principal, media_id, body.alt_text))


def _chunks(stream: BinaryIO) -> Iterator[bytes]:
    with stream:
        while chunk := stream.read(DOWNLOAD_CHUNK):
            yield chunk


@router.get("/{media_id}/content", response_class=StreamingResponse)
def download(
    media_id: MediaId, principal: Reader, session: SessionDep, rt: RuntimeDep
) -> StreamingResponse:
    """The stored bytes, always as an attachment under a generated name, sandboxed."""
    return file_response(rt, service.get_media(session, principal, media_id))


def file_response(rt: Runtime, media: Media) -> StreamingResponse:
    """Stored bytes as an attachment under a generated name, never sniffed, sandboxed."""
    stream = service.open_content(rt, media)
    headers = {
        "Content-Length": str(media.byte_size),
        "Content-Disposition": f'attachment; filename="{service.download_name(media)}"',
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "sandbox",
    }
    return StreamingResponse(_chunks(stream), media_type=media.content_type, headers=headers)


@public_router.get(
    "/{media_id}/{expires}/{signature}",
    response_class=StreamingResponse,
    dependencies=[Depends(Public())],
)
def signed_file(
    media_id: MediaId,
    expires: Annotated[int, Path(ge=0, le=2**40)],
    signature: Annotated[str, Path(pattern=r"^[0-9a-f]{64}$")],
    session: SessionDep,
    rt: RuntimeDep,
) -> StreamingResponse:
    """A file through a signed, expiring link (platforms that fetch media by URL)."""
    return file_response(rt, links.open_link(session, rt, media_id, expires, signature))


@router.delete("/{media_id}", status_code=204, response_class=Response)
def delete_media(
    media_id: MediaId, principal: Writer, session: SessionDep, rt: RuntimeDep
) -> Response:
    """Delete the media; its bytes go too when no other media uses them."""
    sha = service.delete_media(session, rt, principal, media_id)
    # Runs after the response, so after the deletion was committed.
    return Response(
        status_code=204, background=BackgroundTask(service.forget_unreferenced, rt, sha)
    )
