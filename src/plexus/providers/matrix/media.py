"""Images for ``m.image`` events: which types Plexus sends, and their pixel size.

Matrix clients lay out an image before they download it from the ``info.w``/``info.h`` of
the event, so Plexus reads the dimensions from the file's header. The readers below only
look at the few header bytes each format defines; they decode no pixels.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Callable

IMAGE_TYPES: Final = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})

_PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"
#: JPEG start-of-frame markers (baseline, progressive, lossless...), not DHT/JPG/DAC.
_JPEG_SOF: Final = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_STANDALONE: Final = frozenset({0x01, *range(0xD0, 0xD8)})


def image_size(data: bytes, content_type: str) -> tuple[int, int] | None:
    """``(width, height)`` from the image's header, or None when it cannot be read."""
    try:
        if content_type == "image/png":
            return _png(data)
        if content_type == "image/gif":
            return _gif(data)
        if content_type == "image/jpeg":
            return _jpeg(data)
        if content_type == "image/webp":
            return _webp(data)
    except (struct.error, IndexError):
        return None
    return None


def _positive(width: int, height: int) -> tuple[int, int] | None:
    return (width, height) if width > 0 and height > 0 else None


def _png(data: bytes) -> tuple[int, int] | None:
    # The IHDR chunk comes first: length, b"IHDR", then width and height (big-endian).
    if not data.startswith(_PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", data[16:24])
    return _positive(width, height)


def _gif(data: bytes) -> tuple[int, int] | None:
    if data[:6] not in {b"GIF87a", b"GIF89a"}:
        return None
    width, height = struct.unpack("<HH", data[6:10])
    return _positive(width, height)


def _jpeg(data: bytes) -> tuple[int, int] | None:
    if not data.startswith(b"\xff\xd8"):
        return None
    at = 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:  # noqa: PLR2004 - the marker prefix byte
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # noqa: PLR2004 - fill bytes before a marker
            at += 1
            continue
        if marker in _JPEG_STANDALONE:
            at += 2
            continue
        (length,) = struct.unpack(">H", data[at + 2 : at + 4])
        if marker in _JPEG_SOF:
            height, width = struct.unpack(">HH", data[at + 5 : at + 9])
            return _positive(width, height)
        if length < 2:  # noqa: PLR2004 - a segment length counts its own two bytes
            return None
        at += 2 + length
    return None


def _webp(data: bytes) -> tuple[int, int] | None:
    # Every chunk kind below keeps its dimensions within the first 30 bytes.
    if len(data) < 30 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":  # noqa: PLR2004
        return None
    reader = _WEBP_CHUNKS.get(data[12:16])
    return reader(data) if reader else None


def _webp_extended(data: bytes) -> tuple[int, int] | None:
    # 24-bit little-endian canvas width and height, each stored minus one.
    width = int.from_bytes(data[24:27], "little") + 1
    height = int.from_bytes(data[27:30], "little") + 1
    return _positive(width, height)


def _webp_lossless(data: bytes) -> tuple[int, int] | None:
    if data[20] != 0x2F:  # noqa: PLR2004 - the lossless signature byte
        return None
    bits = int.from_bytes(data[21:25], "little")
    return _positive((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)


def _webp_lossy(data: bytes) -> tuple[int, int] | None:
    if data[23:26] != b"\x9d\x01\x2a":  # the key frame's start code
        return None
    width, height = struct.unpack("<HH", data[26:30])
    return _positive(width & 0x3FFF, height & 0x3FFF)


_WEBP_CHUNKS: Final[dict[bytes, Callable[[bytes], tuple[int, int] | None]]] = {
    b"VP8X": _webp_extended,
    b"VP8L": _webp_lossless,
    b"VP8 ": _webp_lossy,
}
