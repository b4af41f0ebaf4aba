"""Public upload links: ``/api/v1/upload-links`` for editors (create, list, revoke, the
review queue) and ``/api/v1/public/uploads/{token}`` for anyone holding a link.

The public upload is the raw body, exactly like ``POST /api/v1/media``:
``POST /api/v1/public/uploads/<token>?filename=cat.jpg``. See docs/upload-links.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Final, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from plexus.auth.principal import Principal
from plexus.authz.permissions import Permission
from plexus.authz.policy import Allow, Public
from plexus.deps import RuntimeDep, SessionDep
from plexus.media import service as media_service
from plexus.upload_links import service
from plexus.upload_links.schemas import (
    ID_MAX,
    PublicUploadLink,
    PublicUploadReceipt,
    SubmissionList,
    SubmissionRead,
    UploadLinkCreate,
    UploadLinkCreated,
    UploadLinkList,
    UploadLinkRead,
)

if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import BinaryIO

DOWNLOAD_CHUNK: Final = 65_536

router = APIRouter(prefix="/upload-links", tags=["upload-links"])
public_router = APIRouter(prefix="/public/uploads", tags=["public-uploads"])

Reader = Annotated[Principal, Depends(Allow(Permission.CONTENT_READ))]
Editor = Annotated[Principal, Depends(Allow(Permission.CONTENT_PUBLISH))]
LinkId = Annotated[int, Path(ge=1, le=ID_MAX)]
SubmissionId = Annotated[int, Path(ge=1, le=ID_MAX)]
Limit = Annotated[int, Query(ge=1, le=200)]
Offset = Annotated[int, Query(ge=0, le=1_000_000)]
#: Any text: a token of the wrong shape gets the same 404 as an unknown one, not a 422.
Token = Annotated[str, Path()]


# The review queue (declared before /{link_id}, whose path would otherwise match) -----------


@router.get("/submissions", response_model=SubmissionList)
def list_submissions(
    principal: Editor,
    session: SessionDep,
    status: Literal["pending", "accepted", "rejected"] | None = "pending",
    link_id: Annotated[int | None, Query(ge=1, le=ID_MAX)] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> SubmissionList:
    """The review queue: pending submissions by default, oldest first."""
    views, total = service.list_submissions(
        session, principal, status=status, link_id=link_id, limit=limit, offset=offset
    )
    return SubmissionList(
        items=[SubmissionRead.of(v) for v in views], total=total, limit=limit, offset=offset
    )


@router.get("/submissions/{submission_id}", response_model=SubmissionRead)
def read_submission(
    submission_id: SubmissionId, principal: Editor, session: SessionDep
) -> SubmissionRead:
    return SubmissionRead.of(service.get_submission(session, principal, submission_id))


def _chunks(stream: BinaryIO) -> Iterator[bytes]:
    with stream:
        while chunk := stream.read(DOWNLOAD_CHUNK):
            yield chunk


@router.get("/submissions/{submission_id}/content", response_class=StreamingResponse)
def download_submission(
    submission_id: SubmissionId, principal: Editor, session: SessionDep, rt: RuntimeDep
) -> StreamingResponse:
    """The submitted file, for review: an attachment under a generated name, sandboxed."""
    media, stream = service.open_submission_content(session, rt, principal, submission_id)
    headers = {
        "Content-Length": str(media.byte_size),
        "Content-Disposition": f'attachment; filename="{media_service.download_name(media)}"',
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "sandbox",
    }
    return StreamingResponse(_chunks(stream), media_type=media.content_type, headers=headers)


@router.post("/submissions/{submission_id}/accept", response_model=SubmissionRead)
def accept_submission(
    submission_id: SubmissionId, principal: Editor, session: SessionDep, rt: RuntimeDep
) -> SubmissionRead:
    """Accept: the media becomes ready and joins the link's content item."""
    return SubmissionRead.of(service.accept(session, rt, principal, submission_id))


@router.post("/submissions/{submission_id}/reject", response_model=SubmissionRead)
def reject_submission(
    submission_id: SubmissionId, principal: Editor, session: SessionDep, rt: RuntimeDep
) -> SubmissionRead:
    """Reject: the media is removed (unless the workspace holds it in its own right)."""
    return SubmissionRead.of(service.reject(session, rt, principal, submission_id))


# Links ---------------------------------------------------------------------------------------


@router.post("", response_model=UploadLinkCreated, status_code=201)
def create_link(
    body: UploadLinkCreate, principal: Editor, session: SessionDep, rt: RuntimeDep
) -> UploadLinkCreated:
    """Create a link for one content item. The token is in this response only."""
    link, token = service.create_link(
        session,
        rt,
        principal,
        content_id=body.content_id,
        label=body.label,
        expires_in_hours=body.expires_in_hours,
        expires_at=body.expires_at,
        max_uses=body.max_uses,
        kinds=body.allowed_kinds,
    )
    read = UploadLinkRead.of(link)
    return UploadLinkCreated(**read.model_dump(), token=token, url=service.public_url(rt, token))


@router.get("", response_model=UploadLinkList)
def list_links(
    principal: Reader,
    session: SessionDep,
    content_id: Annotated[int | None, Query(ge=1, le=ID_MAX)] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> UploadLinkList:
    """The workspace's links, newest first (never their tokens)."""
    rows, total = service.list_links(
        session, principal, content_id=content_id, limit=limit, offset=offset
    )
    return UploadLinkList(
        items=[UploadLinkRead.of(r) for r in rows], total=total, limit=limit, offset=offset
    )


@router.get("/{link_id}", response_model=UploadLinkRead)
def read_link(link_id: LinkId, principal: Reader, session: SessionDep) -> UploadLinkRead:
    return UploadLinkRead.of(service.get_link(session, principal, link_id))


@router.post("/{link_id}/revoke", response_model=UploadLinkRead)
def revoke_link(
    link_id: LinkId, principal: Editor, session: SessionDep, rt: RuntimeDep
) -> UploadLinkRead:
    """Revoke the link at once; what it already received stays in the review queue."""
    return UploadLinkRead.of(service.revoke_link(session, rt, principal, link_id))


# The public side -----------------------------------------------------------------------------


@public_router.get("/{token}", response_model=PublicUploadLink, dependencies=[Depends(Public())])
def describe_public_link(token: Token, session: SessionDep, rt: RuntimeDep) -> PublicUploadLink:
    """What the link takes, and until when; 404 for a token that cannot be used."""
    link = service.open_link(session, rt, token, for_upload=False)
    return PublicUploadLink(
        label=link.label,
        allowed_kinds=list(link.kinds),
        expires_at=link.expires_at,
        uses_left=link.uses_left,
    )


@public_router.post(
    "/{token}",
    response_model=PublicUploadReceipt,
    status_code=202,
    dependencies=[Depends(Public(rate="upload_link_ip"))],
)
async def public_upload(
    token: Token,
    request: Request,
    session: SessionDep,
    rt: RuntimeDep,
    filename: Annotated[str | None, Query(max_length=media_service.MAX_FILENAME_INPUT)] = None,
    submitter_name: Annotated[str | None, Query(max_length=service.MAX_SUBMITTER_CHARS * 4)] = None,
    content_disposition: Annotated[str | None, Header()] = None,
    content_length: Annotated[str | None, Header()] = None,
) -> PublicUploadReceipt:
    """Upload one file (the raw body) through the link, for an editor's review.

    ``submitter_name`` is how the uploader would like to be credited (optional).
    """
    link = await run_in_threadpool(
        service.open_link, session, rt, token, for_upload=True, scope=request.scope
    )
    # End the transaction the token check opened: none may stay open (on SQLite, holding
    # the write lock) for as long as a slow client takes to send its body.
    await run_in_threadpool(session.commit)
    receipt = await service.submit(
        session,
        rt,
        link,
        request.stream(),
        declared_length=media_service.declared_length(content_length),
        filename=media_service.filename_from(filename, content_disposition),
        submitter_name=service.clean_submitter_name(submitter_name),
    )
    return PublicUploadReceipt(status="received", uses_left=receipt.uses_left)
