"""Images for ``app.bsky.embed.images``: what the lexicon accepts, checked before upload."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from plexus.providers.base import ProviderRejected

if TYPE_CHECKING:
    from plexus.providers.base import MediaItem

#: ``app.bsky.embed.images#image``: ``image`` is a blob of at most 1,000,000 bytes.
MAX_IMAGE_BYTES: Final = 1_000_000
#: ``app.bsky.embed.images``: ``images`` holds at most four.
MAX_IMAGES: Final = 4
IMAGE_TYPES: Final = frozenset({"image/jpeg", "image/png", "image/webp", "image/gif"})


def sniffed_type(data: bytes) -> str | None:
    """The image type the bytes themselves say, from their signature."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:6] in {b"GIF87a", b"GIF89a"}:
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def check_images(media: tuple[MediaItem, ...]) -> None:
    """Refuse, before anything is uploaded, what the PDS or the lexicon would refuse."""
    if len(media) > MAX_IMAGES:
        raise ProviderRejected(f"a Bluesky post holds at most {MAX_IMAGES} images")
    for item in media:
        if item.is_video:
            raise ProviderRejected("Bluesky videos are not supported; attach images")
        if item.content_type not in IMAGE_TYPES:
            raise ProviderRejected(f"Bluesky does not take {item.content_type} images")
        if sniffed_type(item.data) != item.content_type:
            raise ProviderRejected(f"{item.filename} is not a {item.content_type} file")
        if len(item.data) > MAX_IMAGE_BYTES:
            raise ProviderRejected(
                f"{item.filename} is larger than Bluesky's {MAX_IMAGE_BYTES:,} bytes per image"
            )
