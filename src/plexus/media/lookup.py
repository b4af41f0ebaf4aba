"""Media read on behalf of a workspace by background work (which has no signed-in
principal): the publishing pipeline reads what a content version refers to.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from plexus.media.repository import MediaRepository

if TYPE_CHECKING:
    from collections.abc import Iterable

    from sqlalchemy.orm import Session

    from plexus.models.media import Media


def workspace_media(session: Session, workspace_id: int, media_ids: Iterable[int]) -> list[Media]:
    """The workspace's (ready) media with these ids, in the order given; missing ones are
    left out (deleted since the content was written).
    """
    repo = MediaRepository(session, workspace_id)
    found = []
    for media_id in media_ids:
        media = repo.get(media_id)
        if media is not None:
            found.append(media)
    return found
