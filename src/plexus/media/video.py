"""Videos: the container's structure, and the duration.

MP4 and QuickTime MOV go through a small, bounded ISO-BMFF reader: it walks the
top-level boxes (which must cover the file exactly: nothing appended), finds ``moov`` and
reads ``mvhd`` for the timescale and duration. Only box headers and the movie header are
read, whatever the file's size. WebM has its own EBML reader (``plexus.media.webm``).
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, BinaryIO, Final

from plexus.errors import PayloadTooLarge, UnsupportedMediaType
from plexus.media.webm import webm_seconds

if TYPE_CHECKING:
    from pathlib import Path

#: Top-level boxes an MP4 or MOV file may have (ISO/IEC 14496-12, QuickTime).
TOP_LEVEL: Final = frozenset(
    {b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"uuid", b"pdin", b"moof"}
    | {b"mfra", b"styp", b"sidx", b"meta", b"pnot"}
)
MAX_BOXES: Final = 10_000
WEBM: Final = "video/webm"
MAX_MVHD_BYTES: Final = 120
_UNKNOWN_DURATION: Final = {0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF}


def _refuse(reason: str) -> UnsupportedMediaType:
    return UnsupportedMediaType(f"The video cannot be checked: {reason}.")


def _boxes(stream: BinaryIO, start: int, end: int) -> list[tuple[bytes, int, int]]:
    """(type, payload offset, box end) of the boxes tiling ``[start, end)``; refuses gaps."""
    found: list[tuple[bytes, int, int]] = []
    offset = start
    while offset < end:
        if len(found) >= MAX_BOXES:
            raise _refuse("too many boxes")
        stream.seek(offset)
        header = stream.read(8)
        if len(header) < 8:  # noqa: PLR2004 - a box header is 8 bytes
            raise _refuse("a box is truncated")
        size, kind = struct.unpack(">I4s", header)
        payload = offset + 8
        if size == 1:
            large = stream.read(8)
            if len(large) < 8:  # noqa: PLR2004 - a 64-bit size
                raise _refuse("a box is truncated")
            (size,) = struct.unpack(">Q", large)
            payload += 8
        elif size == 0:
            size = end - offset
        box_end = offset + size
        if size < payload - offset or box_end > end:
            raise _refuse("a box runs past its container")
        found.append((kind, payload, box_end))
        offset = box_end
    return found


def _mvhd_seconds(stream: BinaryIO, payload: int, box_end: int) -> float:
    stream.seek(payload)
    data = stream.read(min(box_end - payload, MAX_MVHD_BYTES))
    if not data:
        raise _refuse("the movie header is empty")
    if data[0] == 0 and len(data) >= 20:  # noqa: PLR2004 - version 0 layout
        timescale, duration = struct.unpack(">II", data[12:20])
    elif data[0] == 1 and len(data) >= 32:  # noqa: PLR2004 - version 1 layout
        timescale, duration = struct.unpack(">IQ", data[20:32])
    else:
        raise _refuse("the movie header is unreadable")
    if timescale == 0 or duration in _UNKNOWN_DURATION:
        raise _refuse("the duration is unknown")
    return float(duration) / float(timescale)


def video_duration(path: Path, content_type: str, max_seconds: int) -> float:
    """The duration of the video at ``path`` (MP4, MOV or WebM, as ``content_type`` says);
    415 when its structure cannot be checked, 413 when it is longer than ``max_seconds``.
    """
    seconds = webm_seconds(path) if content_type == WEBM else _iso_seconds(path)
    if seconds > max_seconds:
        raise PayloadTooLarge(f"The video lasts {seconds:.0f} s; the limit is {max_seconds} s.")
    return seconds


def _iso_seconds(path: Path) -> float:
    """The duration of the MP4/MOV at ``path``; 415 when its structure cannot be checked."""
    with path.open("rb") as stream:
        stream.seek(0, 2)
        size = stream.tell()
        top = _boxes(stream, 0, size)
        if not top or top[0][0] != b"ftyp":
            raise _refuse("it does not start with a file type box")
        unknown = [kind for kind, _, _ in top if kind not in TOP_LEVEL]
        if unknown:
            raise _refuse("it has data that is not part of a video")
        movies = [(payload, end) for kind, payload, end in top if kind == b"moov"]
        if len(movies) != 1:
            raise _refuse("it needs exactly one movie box")
        headers = [
            (payload, end) for kind, payload, end in _boxes(stream, *movies[0]) if kind == b"mvhd"
        ]
        if len(headers) != 1:
            raise _refuse("it needs exactly one movie header")
        return _mvhd_seconds(stream, *headers[0])
