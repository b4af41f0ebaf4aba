"""What an upload is, from its bytes alone, and whether something else hides in them.

The client's Content-Type and the file's extension are never consulted. ``filetype``
reads the magic bytes of the head; the allow-list below is all Plexus accepts. Then the
whole file is scanned for the signatures of formats that make an image or video a
*polyglot* (a file that is also a ZIP, a RAR, a PHP script or an HTML page).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import filetype  # type: ignore[import-untyped] # no type information ships with it

from plexus.errors import UnsupportedMediaType

if TYPE_CHECKING:
    from pathlib import Path

#: Bytes read to decide the type (``filetype`` needs at most 261).
HEAD_BYTES: Final = 8192
SCAN_CHUNK: Final = 1_048_576


@dataclass(frozen=True, slots=True)
class Kind:
    kind: str  # "image" or "video"
    content_type: str
    extension: str
    #: The Pillow format name (images) that re-encoding must produce.
    pil_format: str | None = None


ALLOWED: Final[dict[str, Kind]] = {
    "image/jpeg": Kind("image", "image/jpeg", "jpg", "JPEG"),
    "image/png": Kind("image", "image/png", "png", "PNG"),
    "image/gif": Kind("image", "image/gif", "gif", "GIF"),
    "image/webp": Kind("image", "image/webp", "webp", "WEBP"),
    "video/mp4": Kind("video", "video/mp4", "mp4"),
    "video/quicktime": Kind("video", "video/quicktime", "mov"),
    "video/webm": Kind("video", "video/webm", "webm"),
}

#: Signatures refused wherever they appear. Each is long enough (five bytes or more) that
#: it turns up in compressed image or video data by chance about once in a terabyte.
_ALWAYS_REFUSED: Final = (
    (b"rar!\x1a\x07", "a RAR archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"<?php", "a PHP script"),
    (b"<script", "a script"),
    (b"<html", "an HTML page"),
    (b"<!doctype", "an HTML page"),
    (b"<svg", "an SVG document"),
)
#: A usable ZIP needs both a local file header and its end-of-central-directory record;
#: four bytes each, so only the pair is refused (one alone occurs in large files by chance).
_ZIP_LOCAL: Final = b"PK\x03\x04"
_ZIP_END: Final = b"PK\x05\x06"
_OVERLAP: Final = max(len(s) for s, _ in _ALWAYS_REFUSED)


def identify(head: bytes) -> Kind:
    """The allowed kind the head's magic bytes show, or 415."""
    guess = filetype.guess(head)
    mime = str(guess.mime) if guess is not None else ""
    kind = ALLOWED.get(mime)
    if kind is None:
        raise UnsupportedMediaType(
            "Only JPEG, PNG, GIF and WebP images and MP4, MOV and WebM videos are accepted "
            "(the type is read from the file's content)."
        )
    return kind


def refuse_polyglots(path: Path) -> None:
    """415 when the file also carries an archive, a script or markup anywhere in it."""
    seen_local = seen_end = False
    tail = b""
    with path.open("rb") as stream:
        while chunk := stream.read(SCAN_CHUNK):
            window = tail + chunk
            seen_local = seen_local or _ZIP_LOCAL in window
            seen_end = seen_end or _ZIP_END in window
            lowered = window.lower()
            for signature, what in _ALWAYS_REFUSED:
                if signature in lowered:
                    raise UnsupportedMediaType(f"The file also contains {what}.")
            tail = window[-_OVERLAP:]
    if seen_local and seen_end:
        raise UnsupportedMediaType("The file also contains a ZIP archive.")
