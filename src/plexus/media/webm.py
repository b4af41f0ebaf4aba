"""WebM videos: the EBML structure, the duration and the tracks.

A small, bounded reader of EBML (RFC 8794) for WebM, the Matroska profile (RFC 9559)
browsers and platforms play. It reads element headers and a few small values only, never
a frame, whatever the file's size:

- the file is exactly one EBML header (DocType ``webm``; Matroska's ``matroska`` is
  refused) and one Segment that runs to the end of the file (nothing appended);
- every element lies inside its parent; a size of "unknown" is allowed only where
  streaming muxers write it (the Segment, which then ends with the file, and a Cluster,
  which ends where the next Segment-level element starts);
- the Segment holds only the elements WebM defines at that level (no Attachments: they
  carry arbitrary files), with exactly one Info and one Tracks;
- Info's TimestampScale and Duration give the duration (a file without one is refused:
  its length cannot be checked without reading every frame);
- Tracks has at least one video track (TrackType 1) and every video track is VP8, VP9 or
  AV1, the codecs WebM allows.

The element count is bounded, so a file made of millions of tiny elements costs at most
``MAX_ELEMENTS`` header reads.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, Final

from plexus.errors import UnsupportedMediaType

if TYPE_CHECKING:
    from pathlib import Path

# Element IDs, marker bits included (RFC 8794 section 11.2; RFC 9559 section 5.1).
EBML: Final = 0x1A45DFA3
EBML_READ_VERSION: Final = 0x42F7
EBML_MAX_ID_LENGTH: Final = 0x42F2
EBML_MAX_SIZE_LENGTH: Final = 0x42F3
DOC_TYPE: Final = 0x4282
VOID: Final = 0xEC
CRC32: Final = 0xBF
SEGMENT: Final = 0x18538067
SEEK_HEAD: Final = 0x114D9B74
INFO: Final = 0x1549A966
TIMESTAMP_SCALE: Final = 0x2AD7B1
DURATION: Final = 0x4489
TRACKS: Final = 0x1654AE6B
TRACK_ENTRY: Final = 0xAE
TRACK_TYPE: Final = 0x83
CODEC_ID: Final = 0x86
CLUSTER: Final = 0x1F43B675
CUES: Final = 0x1C53BB6B
CHAPTERS: Final = 0x1043A770
TAGS: Final = 0x1254C367
ATTACHMENTS: Final = 0x1941A469

#: What a WebM Segment may hold (Void and CRC-32 are allowed at every level).
SEGMENT_CHILDREN: Final = frozenset(
    {SEEK_HEAD, INFO, TRACKS, CLUSTER, CUES, CHAPTERS, TAGS, VOID, CRC32}
)
#: IDs that end a Cluster of unknown size: any Segment-level element, or a new file.
_ENDS_CLUSTER: Final = frozenset(
    {SEEK_HEAD, INFO, TRACKS, CLUSTER, CUES, CHAPTERS, TAGS, ATTACHMENTS, EBML, SEGMENT}
)
#: Timestamp, SilentTracks, Position, PrevSize, SimpleBlock, BlockGroup, Void, CRC-32.
_CLUSTER_CHILDREN: Final = frozenset({0xE7, 0x5854, 0xA7, 0xAB, 0xA3, 0xA0, VOID, CRC32})
VIDEO_TRACK: Final = 1
VIDEO_CODECS: Final = frozenset({b"V_VP8", b"V_VP9", b"V_AV1"})
DEFAULT_TIMESTAMP_SCALE: Final = 1_000_000  # nanoseconds per tick
NANOSECONDS: Final = 1e9

MAX_ELEMENTS: Final = 200_000
#: The largest integer, float or string value read (DocType and CodecID are short).
MAX_VALUE_BYTES: Final = 64
_ID_WIDTH: Final = 4  # EBMLMaxIDLength for Matroska and WebM
_SIZE_WIDTH: Final = 8  # the widest data size EBML allows
_FLOAT_WIDTHS: Final = {4: ">f", 8: ">d"}


def _refuse(reason: str) -> UnsupportedMediaType:
    return UnsupportedMediaType(f"The video cannot be checked: {reason}.")


@dataclass(frozen=True, slots=True)
class _Element:
    id: int
    payload: int  # offset of the data
    end: int  # offset just past the data


class _Reader:
    """Element headers and small values of one file, within a budget of headers."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.budget = MAX_ELEMENTS

    def header(self, offset: int, end: int) -> tuple[int, int, int | None]:
        """(id, payload offset, size or None when unknown) of the element at ``offset``."""
        self.budget -= 1
        if self.budget < 0:
            raise _refuse("it has too many elements")
        self.stream.seek(offset)
        data = self.stream.read(min(_ID_WIDTH + _SIZE_WIDTH, end - offset))
        id_width = _width(data, 0, _ID_WIDTH)
        size_width = _width(data, id_width, _SIZE_WIDTH)
        element_id = int.from_bytes(data[:id_width], "big")
        raw = data[id_width : id_width + size_width]
        size = int.from_bytes(raw, "big") & ((1 << (7 * size_width)) - 1)
        unknown = size == (1 << (7 * size_width)) - 1
        return element_id, offset + id_width + size_width, None if unknown else size

    def element(self, offset: int, end: int) -> _Element:
        """The element at ``offset``, which must have a known size and end by ``end``."""
        return _known(*self.header(offset, end), end)

    def children(self, parent: _Element) -> list[_Element]:
        """The elements tiling ``parent``'s data."""
        found: list[_Element] = []
        offset = parent.payload
        while offset < parent.end:
            child = self.element(offset, parent.end)
            found.append(child)
            offset = child.end
        return found

    def value(self, element: _Element) -> bytes:
        size = element.end - element.payload
        if size > MAX_VALUE_BYTES:
            raise _refuse("a value is too large")
        self.stream.seek(element.payload)
        return self.stream.read(size)

    def unsigned(self, element: _Element) -> int:
        data = self.value(element)
        if len(data) > _SIZE_WIDTH:
            raise _refuse("an integer is too large")
        return int.from_bytes(data, "big")

    def floating(self, element: _Element) -> float:
        data = self.value(element)
        if not data:
            return 0.0
        if len(data) not in _FLOAT_WIDTHS:
            raise _refuse("a number is unreadable")
        (number,) = struct.unpack(_FLOAT_WIDTHS[len(data)], data)
        return float(number)

    def text(self, element: _Element) -> bytes:
        # EBML strings may be padded with NUL bytes.
        return self.value(element).rstrip(b"\x00")


def _known(element_id: int, payload: int, size: int | None, end: int) -> _Element:
    if size is None:
        raise _refuse("an element has an unknown size")
    if payload + size > end:
        raise _refuse("an element runs past its container (or the file is truncated)")
    return _Element(element_id, payload, payload + size)


def _width(data: bytes, offset: int, widest: int) -> int:
    """The length of the variable-size integer at ``offset`` (RFC 8794 section 4)."""
    if offset >= len(data):
        raise _refuse("the file is truncated")
    first = data[offset]
    width = 9 - first.bit_length()  # leading zero bits + 1; 9 for a zero byte
    if width > widest:
        raise _refuse("an element header is invalid")
    if offset + width > len(data):
        raise _refuse("the file is truncated")
    return width


def _only(elements: list[_Element], element_id: int, what: str) -> _Element | None:
    """The single element of this ID, None when absent; refuses duplicates."""
    matching = [e for e in elements if e.id == element_id]
    if len(matching) > 1:
        raise _refuse(f"it has more than one {what}")
    return matching[0] if matching else None


def _check_header(reader: _Reader, header: _Element) -> None:
    children = reader.children(header)
    doc_type = _only(children, DOC_TYPE, "document type")
    name = reader.text(doc_type) if doc_type is not None else b""
    if name == b"matroska":
        raise UnsupportedMediaType("Matroska videos are not accepted; WebM videos are.")
    if name != b"webm":
        raise _refuse("it is not a WebM file")
    for element_id, most in ((EBML_READ_VERSION, 1), (EBML_MAX_ID_LENGTH, _ID_WIDTH)):
        element = _only(children, element_id, "EBML header field")
        if element is not None and reader.unsigned(element) > most:
            raise _refuse("it needs a newer EBML reader")
    size_length = _only(children, EBML_MAX_SIZE_LENGTH, "EBML header field")
    if size_length is not None and not 1 <= reader.unsigned(size_length) <= _SIZE_WIDTH:
        raise _refuse("it needs a newer EBML reader")


def _cluster_end(reader: _Reader, start: int, end: int) -> int:
    """Where a Cluster of unknown size whose data starts at ``start`` ends."""
    offset = start
    while offset < end:
        element_id, payload, size = reader.header(offset, end)
        if element_id in _ENDS_CLUSTER:
            break
        if element_id not in _CLUSTER_CHILDREN:
            raise _refuse("a cluster holds data that is not part of a video")
        offset = _known(element_id, payload, size, end).end
    return offset


def _segment_children(reader: _Reader, payload: int, end: int) -> list[_Element]:
    found: list[_Element] = []
    offset = payload
    while offset < end:
        element_id, child_payload, size = reader.header(offset, end)
        if element_id == ATTACHMENTS:
            raise _refuse("it carries attached files")
        if element_id not in SEGMENT_CHILDREN:
            raise _refuse("it has data that is not part of a video")
        if size is None and element_id == CLUSTER:
            child = _Element(element_id, child_payload, _cluster_end(reader, child_payload, end))
        else:
            child = _known(element_id, child_payload, size, end)
        found.append(child)
        offset = child.end
    return found


def _seconds(reader: _Reader, info: _Element) -> float:
    children = reader.children(info)
    scale_element = _only(children, TIMESTAMP_SCALE, "timestamp scale")
    scale = reader.unsigned(scale_element) if scale_element else DEFAULT_TIMESTAMP_SCALE
    duration_element = _only(children, DURATION, "duration")
    if duration_element is None:
        raise _refuse("the duration is unknown")
    duration = reader.floating(duration_element)
    if scale == 0 or not math.isfinite(duration) or duration <= 0:
        raise _refuse("the duration is unreadable")
    return duration * scale / NANOSECONDS


def _check_tracks(reader: _Reader, tracks: _Element) -> None:
    videos = 0
    for entry in reader.children(tracks):
        if entry.id != TRACK_ENTRY:
            continue
        fields = reader.children(entry)
        kind = _only(fields, TRACK_TYPE, "track type")
        if kind is None or reader.unsigned(kind) != VIDEO_TRACK:
            continue
        codec = _only(fields, CODEC_ID, "codec")
        if codec is None or reader.text(codec) not in VIDEO_CODECS:
            raise _refuse("a video track is not VP8, VP9 or AV1")
        videos += 1
    if videos == 0:
        raise _refuse("it has no video track")


def webm_seconds(path: Path) -> float:
    """The declared duration of the WebM file at ``path``, in seconds; 415 when its
    structure cannot be checked (see the module docstring).
    """
    with path.open("rb") as stream:
        stream.seek(0, 2)
        file_end = stream.tell()
        reader = _Reader(stream)
        header = reader.element(0, file_end)
        if header.id != EBML:
            raise _refuse("it does not start with an EBML header")
        _check_header(reader, header)
        if header.end >= file_end:
            raise _refuse("it has no segment")
        segment_id, payload, size = reader.header(header.end, file_end)
        if segment_id != SEGMENT:
            raise _refuse("the EBML header is not followed by a segment")
        segment_end = file_end if size is None else payload + size
        if segment_end > file_end:
            raise _refuse("the file is truncated")
        if segment_end < file_end:
            raise _refuse("it has data after the segment")
        children = _segment_children(reader, payload, segment_end)
        info = _only(children, INFO, "segment information")
        tracks = _only(children, TRACKS, "track list")
        if info is None or tracks is None:
            raise _refuse("it needs segment information and a track list")
        seconds = _seconds(reader, info)
        _check_tracks(reader, tracks)
    return seconds
