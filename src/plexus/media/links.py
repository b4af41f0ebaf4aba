"""Signed, expiring links to one media file, for platforms that fetch media from a URL
instead of taking an upload (Instagram's ``image_url``/``video_url``).

A link names the media, its expiry and an HMAC (the server's token key, purpose
``media-link``) over the media id, its content hash and the expiry: it cannot be made
for another file, extended, or kept working after the file changes. A wrong, expired or
unknown link answers the same 404. The link is only useful when Plexus is reachable at
``PLEXUS_ISSUER`` from the platform.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Final

from plexus.errors import NotFound
from plexus.media.repository import ready_by_id

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from plexus.models.media import Media
    from plexus.runtime import Runtime

PURPOSE: Final = "media-link"
#: How long a link works: a platform fetches the file within minutes of being told.
LIFETIME: Final = timedelta(hours=24)
PATH: Final = "/api/v1/public/media"
_GONE: Final = "There is no such file."


def _message(media_id: int, sha256: str, expires: int) -> str:
    return f"{media_id}:{sha256}:{expires}"


def public_url(rt: Runtime, media: Media, now: datetime | None = None) -> str:
    """An absolute link to ``media`` that works for ``LIFETIME``."""
    moment = now or datetime.now(UTC)
    expires = int((moment + LIFETIME).timestamp())
    signature = rt.tokens.digest(PURPOSE, _message(media.id, media.sha256, expires))
    base = rt.settings.issuer.rstrip("/")
    return f"{base}{PATH}/{media.id}/{expires}/{signature}"


def open_link(session: Session, rt: Runtime, media_id: int, expires: int, signature: str) -> Media:
    """The media a link names, if the link is genuine and unexpired; NotFound otherwise."""
    now = datetime.now(UTC).timestamp()
    if expires < now or expires > now + LIFETIME.total_seconds() + 60:
        raise NotFound(_GONE)
    media = ready_by_id(session, media_id)
    if media is None:
        raise NotFound(_GONE)
    if not rt.tokens.matches(PURPOSE, _message(media.id, media.sha256, expires), signature):
        raise NotFound(_GONE)
    return media
