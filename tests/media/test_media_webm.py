"""WebM videos on ``/api/v1/media`` (R12): accepted when their EBML structure, duration and
tracks check out, stored byte for byte; refused (leaving nothing behind) when truncated,
too long, without a video track, with sizes that do not fit, or carrying something else.

No WebM encoder is available to the tests: the files are built element by element.
"""

from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path

import pytest
from sqlalchemy import func, select

from plexus.db import unit_of_work
from plexus.errors import UnsupportedMediaType
from plexus.media import webm
from plexus.models.media import Media

from auth_helpers import sign_in

MEDIA = "/api/v1/media"
MAX_BYTES = 300_000
MAX_SECONDS = 60


@pytest.fixture
def env_vars(env_vars: dict[str, str]) -> dict[str, str]:
    return {
        **env_vars,
        "PLEXUS_MEDIA_MAX_BYTES": str(MAX_BYTES),
        "PLEXUS_MEDIA_MAX_VIDEO_SECONDS": str(MAX_SECONDS),
    }


@pytest.fixture
def owner(runtime, client):
    return sign_in(runtime, client, "owner@example.com")


# --- WebM files, element by element (RFC 8794 / RFC 9559) -----------------------------

#: A data size of "unknown" (all value bits set), as streaming muxers write it.
UNKNOWN = b"\x01\xff\xff\xff\xff\xff\xff\xff"


def _size(n: int) -> bytes:
    """``n`` as the shortest EBML data size (all-ones values are reserved for unknown)."""
    width = 1
    while n >= (1 << (7 * width)) - 1:
        width += 1
    return ((1 << (7 * width)) | n).to_bytes(width, "big")


def _element(element_id: int, payload: bytes, size: bytes | None = None) -> bytes:
    head = element_id.to_bytes((element_id.bit_length() + 7) // 8, "big")
    return head + (_size(len(payload)) if size is None else size) + payload


def _uint(element_id: int, value: int) -> bytes:
    return _element(element_id, value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))


def _ebml_header(doc_type: bytes = b"webm", read_version: int = 1) -> bytes:
    fields = (
        _uint(0x4286, 1)  # EBMLVersion
        + _uint(webm.EBML_READ_VERSION, read_version)
        + _uint(webm.EBML_MAX_ID_LENGTH, 4)
        + _uint(webm.EBML_MAX_SIZE_LENGTH, 8)
        + _element(webm.DOC_TYPE, doc_type)
        + _uint(0x4287, 4)  # DocTypeVersion
        + _uint(0x4285, 2)  # DocTypeReadVersion
    )
    return _element(webm.EBML, fields)


def _info(
    duration: float | None = 5_000.0, scale: int | None = 1_000_000, *, extra: bytes = b""
) -> bytes:
    fields = b"" if scale is None else _uint(webm.TIMESTAMP_SCALE, scale)
    if duration is not None:
        fields += _element(webm.DURATION, struct.pack(">d", duration))
    fields += _element(0x4D80, b"plexus-tests") + _element(0x5741, b"plexus-tests")
    return _element(webm.INFO, fields + extra)


def _track(number: int = 1, kind: int = 1, codec: bytes = b"V_VP9") -> bytes:
    fields = _uint(0xD7, number) + _uint(0x73C5, number) + _uint(webm.TRACK_TYPE, kind)
    fields += _element(webm.CODEC_ID, codec)
    if kind == webm.VIDEO_TRACK:
        fields += _element(0xE0, _uint(0xB0, 320) + _uint(0xBA, 240))  # Video: 320 x 240
    return _element(webm.TRACK_ENTRY, fields)


def _cluster(timestamp: int, *, unknown: bool = False, frames: int = 3) -> bytes:
    # SimpleBlocks of track 1: track number, a relative timestamp, flags, "frame" bytes.
    blocks = b"".join(
        _element(0xA3, b"\x81" + struct.pack(">hB", 40 * i, 0x80) + bytes(range(48)))
        for i in range(frames)
    )
    return _element(webm.CLUSTER, _uint(0xE7, timestamp) + blocks, UNKNOWN if unknown else None)


def _webm(
    *,
    header: bytes | None = None,
    info: bytes | None = None,
    tracks: list[bytes] | None = None,
    clusters: list[bytes] | None = None,
    extra: bytes = b"",
    segment_size: bytes | None = None,
) -> bytes:
    """A WebM file: its EBML header, then one Segment of Info, Tracks and Clusters."""
    tracks = [_track()] if tracks is None else tracks
    clusters = [_cluster(0), _cluster(2_000)] if clusters is None else clusters
    body = (
        (_info() if info is None else info)
        + _element(webm.TRACKS, b"".join(tracks))
        + b"".join(clusters)
        + extra
    )
    head = _ebml_header() if header is None else header
    return head + _element(webm.SEGMENT, body, segment_size)


def _zip() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("shell.php", b"<?= system($_GET['c']) ?>")
    return out.getvalue()


# --- looking at what is left -----------------------------------------------------------


def _files(runtime) -> list[Path]:
    root = runtime.settings.data_dir / "media"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def _rows(runtime) -> int:
    with unit_of_work(runtime.sessions) as session:
        return int(session.scalar(select(func.count()).select_from(Media)) or 0)


def _upload(client, owner, body: bytes, name: str = "clip.webm"):
    # The client calls it an MP4: the type is read from the bytes.
    headers = {**owner.headers, "Content-Type": "video/mp4"}
    return client.post(MEDIA, params={"filename": name}, content=body, headers=headers)


# --- accepted ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "video", "seconds"),
    [
        ("sizes known", _webm(), 5.0),
        (
            "streamed: segment and clusters of unknown size",
            _webm(
                clusters=[_cluster(0, unknown=True), _cluster(2_000, unknown=True)],
                segment_size=UNKNOWN,
            ),
            5.0,
        ),
        ("microsecond ticks", _webm(info=_info(12_500_000.0, scale=1_000)), 12.5),
        ("default timestamp scale", _webm(info=_info(7_250.0, scale=None)), 7.25),
        (
            "video and audio, VP8, padding and a checksum",
            _webm(
                tracks=[_track(1, 1, b"V_VP8"), _track(2, 2, b"A_OPUS")],
                extra=_element(webm.VOID, b"\x00" * 16) + _element(webm.CRC32, b"\x00" * 4),
            ),
            5.0,
        ),
        (
            "AV1, at the limit",
            _webm(info=_info(MAX_SECONDS * 1000.0), tracks=[_track(codec=b"V_AV1")]),
            float(MAX_SECONDS),
        ),
    ],
)
def test_webm_is_accepted_and_stored_as_checked(client, runtime, owner, case, video, seconds):
    del case
    response = _upload(client, owner, video)
    assert response.status_code == 201, response.text
    stored = response.json()
    assert stored["kind"] == "video"
    assert stored["content_type"] == "video/webm"
    assert stored["duration_seconds"] == pytest.approx(seconds)
    assert stored["byte_size"] == len(video)
    content = client.get(f"{MEDIA}/{stored['id']}/content", headers=owner.headers)
    assert content.status_code == 200
    assert content.headers["content-type"] == "video/webm"
    assert content.headers["content-disposition"] == (
        f'attachment; filename="media-{stored["id"]}.webm"'
    )
    assert content.content == video  # byte for byte, as for every video
    key = stored["sha256"]
    assert _files(runtime) == [runtime.settings.data_dir / "media" / key[:2] / key]


# --- refused -----------------------------------------------------------------------------


TRUNCATED = "truncated"
PAST = "runs past its container"
INVALID_HEADER = "an element header is invalid"
UNREADABLE = "the duration is unreadable"
AFTER = "data after the segment"
NOT_VIDEO = "not part of a video"
NO_VIDEO = "no video track"
UNKNOWN_SIZE = "an element has an unknown size"
ONLY = "Only JPEG, PNG, GIF and WebP images and MP4, MOV and WebM videos"


def _refusals() -> dict[str, tuple[bytes, int, str]]:
    """Each case: the file, the answer, and words of the reason it gives."""
    whole = _webm()
    cluster_at = whole.index(webm.CLUSTER.to_bytes(4, "big"))
    streamed = _webm(clusters=[_cluster(0, unknown=True)], segment_size=UNKNOWN)
    info_fields = _info()[5:]  # the Info payload: its header is 4 ID bytes and 1 size byte
    return {
        "truncated in a cluster": (whole[: cluster_at + 20], 415, TRUNCATED),
        "truncated in the header": (whole[:30], 415, PAST),
        "truncated while streamed": (streamed[:-10], 415, PAST),
        "longer than the limit": (_webm(info=_info(61_000.0)), 413, "the limit is 60 s"),
        "long through its timestamp scale": (
            _webm(info=_info(61.0, scale=1_000_000_000)),
            413,
            "lasts 61 s",
        ),
        "no duration": (_webm(info=_info(None)), 415, "the duration is unknown"),
        "a zero duration": (_webm(info=_info(0.0)), 415, UNREADABLE),
        "an infinite duration": (_webm(info=_info(float("inf"))), 415, UNREADABLE),
        "a zero timestamp scale": (_webm(info=_info(scale=0)), 415, UNREADABLE),
        "two durations": (
            _webm(info=_info(extra=_element(webm.DURATION, struct.pack(">d", 1.0)))),
            415,
            "more than one duration",
        ),
        "no video track": (_webm(tracks=[_track(1, 2, b"A_OPUS")]), 415, NO_VIDEO),
        "no tracks at all": (_webm(tracks=[]), 415, NO_VIDEO),
        "a video codec WebM does not carry": (
            _webm(tracks=[_track(codec=b"V_MPEG4/ISO/AVC")]),
            415,
            "not VP8, VP9 or AV1",
        ),
        "no segment information": (_webm(info=b""), 415, "needs segment information"),
        "two segment informations": (_webm(extra=_info()), 415, "more than one segment"),
        "a segment declaring 2**50 bytes": (_webm(segment_size=_size(2**50)), 415, TRUNCATED),
        "a cluster declaring 2**40 bytes": (
            _webm(clusters=[_element(webm.CLUSTER, b"\xe7\x81\x00", _size(2**40))]),
            415,
            PAST,
        ),
        "a size wider than 8 bytes": (
            _webm(extra=_element(webm.VOID, b"", b"\x00\x80" + b"\x00" * 7)),
            415,
            INVALID_HEADER,
        ),
        "an element id wider than 4 bytes": (
            _webm(extra=b"\x08\x00\x00\x00\x01\x80"),
            415,
            INVALID_HEADER,
        ),
        "segment information of unknown size": (
            _webm(info=_element(webm.INFO, info_fields, UNKNOWN)),
            415,
            UNKNOWN_SIZE,
        ),
        "an unknown size inside a cluster of unknown size": (
            _webm(
                clusters=[
                    _element(webm.CLUSTER, _uint(0xE7, 0) + _element(0xA0, b"", UNKNOWN), UNKNOWN)
                ],
                segment_size=UNKNOWN,
            ),
            415,
            UNKNOWN_SIZE,
        ),
        "a cluster of unknown size holding something else": (
            _webm(
                clusters=[_element(webm.CLUSTER, _uint(0xE7, 0) + _uint(0x4D80, 7), UNKNOWN)],
                segment_size=UNKNOWN,
            ),
            415,
            NOT_VIDEO,
        ),
        "data after the segment": (_webm() + b"\x00" * 8, 415, AFTER),
        "a second segment": (_webm() + _element(webm.SEGMENT, _info()), 415, AFTER),
        "a second EBML header": (_webm() + _ebml_header(), 415, AFTER),
        "attached files": (
            _webm(extra=_element(webm.ATTACHMENTS, _element(0x61A7, b"hidden file"))),
            415,
            "attached files",
        ),
        "an unknown segment-level element": (
            _webm(extra=_element(0x1A45DFA4, b"x")),
            415,
            NOT_VIDEO,
        ),
        "Matroska": (_webm(header=_ebml_header(b"matroska")), 415, ONLY),
        "another EBML document type": (_webm(header=_ebml_header(b"notwebm")), 415, ONLY),
        "a newer EBML reader needed": (
            _webm(header=_ebml_header(read_version=2)),
            415,
            "a newer EBML reader",
        ),
        "a ZIP in a void element": (
            _webm(extra=_element(webm.VOID, _zip())),
            415,
            "a ZIP archive",
        ),
        "a ZIP appended": (_webm() + _zip(), 415, "a ZIP archive"),
        "a script in a tag": (
            _webm(extra=_element(webm.TAGS, _element(0x7373, b"<script>alert(1)</script>"))),
            415,
            "a script",
        ),
    }


@pytest.mark.parametrize("case", sorted(_refusals()))
def test_broken_or_smuggling_webm_is_refused_and_leaves_nothing(client, runtime, owner, case):
    body, status, reason = _refusals()[case]
    response = _upload(client, owner, body)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert reason in response.json()["detail"]
    assert _files(runtime) == []
    assert _rows(runtime) == 0


def test_a_webm_of_countless_elements_is_refused_within_the_budget(
    client, runtime, owner, monkeypatch
):
    """Every element header read counts against a budget: a file of tiny elements is
    refused once it is spent, whatever its size."""
    monkeypatch.setattr(webm, "MAX_ELEMENTS", 100)
    assert _upload(client, owner, _webm()).status_code == 201
    padded = _webm(extra=_element(webm.VOID, b"") * 100)
    response = _upload(client, owner, padded)
    assert response.status_code == 415, response.text
    assert "too many elements" in response.json()["detail"]
    assert _rows(runtime) == 1


def test_webm_parser_reads_headers_not_frames(tmp_path, monkeypatch):
    """A 200 KB cluster is skipped by its size: only element headers and small values are
    read, never the frames."""
    video = _webm(
        clusters=[
            _element(
                webm.CLUSTER,
                _uint(0xE7, 0)
                + b"\xa3"
                + _size(200_000)
                + b"\x81\x00\x00\x80"
                + b"\x00" * (200_000 - 4),
            )
        ]
    )
    path = tmp_path / "big.webm"
    path.write_bytes(video)
    reads: list[int] = []
    real_open = Path.open

    class Counting:
        def __init__(self, stream) -> None:
            self.stream = stream

        def __enter__(self):
            return self

        def __exit__(self, *exc_info) -> None:
            self.stream.close()

        def seek(self, *args):
            return self.stream.seek(*args)

        def tell(self):
            return self.stream.tell()

        def read(self, size=-1):
            data = self.stream.read(size)
            reads.append(len(data))
            return data

    monkeypatch.setattr(Path, "open", lambda self, *a, **kw: Counting(real_open(self, *a, **kw)))
    seconds = webm.webm_seconds(path)
    monkeypatch.undo()
    assert seconds == pytest.approx(5.0)
    assert sum(reads) < 2_000, reads


def test_the_parser_refuses_matroska_and_other_document_types(tmp_path):
    """The sniffer already turns Matroska away; the parser does not rely on it."""
    path = tmp_path / "v.mkv"
    for header, reason in (
        (_ebml_header(b"matroska"), "Matroska videos are not accepted"),
        (_ebml_header(b"notwebm"), "not a WebM file"),
        (_ebml_header(b"webm\x00\x00"), None),  # NUL padding is allowed in EBML strings
    ):
        path.write_bytes(_webm(header=header))
        if reason is None:
            assert webm.webm_seconds(path) == pytest.approx(5.0)
            continue
        with pytest.raises(UnsupportedMediaType, match=reason):
            webm.webm_seconds(path)
