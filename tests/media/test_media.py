"""``/api/v1/media`` (R12): what is refused (and that a refusal leaves nothing on disk or in
the database), what a stored file looks like (cleaned, content-addressed), and who may
see or change it."""

from __future__ import annotations

import asyncio
import io
import struct
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import ExifTags, Image
from sqlalchemy import func, select

from plexus.app import create_app
from plexus.authz.permissions import Role
from plexus.config import load_settings
from plexus.db import unit_of_work
from plexus.models.audit import AuditEvent
from plexus.models.media import Media
from plexus.runtime import init_runtime

from auth_helpers import sign_in

MEDIA = "/api/v1/media"
MAX_BYTES = 300_000
MAX_IMAGE_BYTES = 200_000
MAX_PIXELS = 1_000_000
#: An EBML header with DocType "webm".
WEBM_HEAD = b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\xf7\x81\x01\x42\x82\x84webm"
#: An EBML header with DocType "matroska".
MATROSKA_HEAD = b"\x1a\x45\xdf\xa3\x8f\x42\x86\x81\x01\x42\xf7\x81\x01\x42\x82\x88matroska"
FTYP = b"isom\x00\x00\x02\x00isommp42"


@pytest.fixture
def env_vars(env_vars: dict[str, str]) -> dict[str, str]:
    return {
        **env_vars,
        "PLEXUS_MEDIA_MAX_BYTES": str(MAX_BYTES),
        "PLEXUS_MEDIA_MAX_IMAGE_BYTES": str(MAX_IMAGE_BYTES),
        "PLEXUS_MEDIA_MAX_VIDEO_SECONDS": "60",
        "PLEXUS_MEDIA_MAX_IMAGE_PIXELS": str(MAX_PIXELS),
    }


@pytest.fixture
def owner(runtime, client):
    return sign_in(runtime, client, "owner@example.com")


# --- files made for the tests ----------------------------------------------------------


def _image(fmt: str, size: tuple[int, int] = (32, 24), mode: str = "RGB", **params) -> bytes:
    image = Image.new(mode, size, "red" if mode != "P" else 1)
    image.putpixel((0, 0), (0, 0, 255) if mode == "RGB" else 2)
    out = io.BytesIO()
    image.save(out, format=fmt, **params)
    return out.getvalue()


def _jpeg_with_gps() -> bytes:
    """A 64 x 48 JPEG, EXIF orientation 6 (rotate 90°), a camera model and GPS position."""
    exif = Image.Exif()
    exif[ExifTags.Base.Model] = "SecretCam 3000"
    exif[ExifTags.Base.Orientation] = 6
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (51.0, 30.0, 12.5)
    gps[ExifTags.GPS.GPSLongitudeRef] = "W"
    gps[ExifTags.GPS.GPSLongitude] = (0.0, 7.0, 39.0)
    return _image("JPEG", (64, 48), exif=exif.tobytes(), comment=b"private note")


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _pixel_bomb_png(width: int = 50_000, height: int = 50_000) -> bytes:
    """A PNG header declaring width x height pixels, a tiny IDAT, IEND: ~100 bytes."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + _png_chunk(b"IEND", b"")
    )


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def _mvhd(timescale: int, duration: int) -> bytes:
    payload = struct.pack(">B3xIIII", 0, 0, 0, timescale, duration)
    payload += struct.pack(">IH10x", 0x00010000, 0x0100) + b"\x00" * 36 + b"\x00" * 24
    return _box(b"mvhd", payload + struct.pack(">I", 2))


def _mp4(timescale: int = 1000, duration: int = 5_000, brand: bytes = b"isom") -> bytes:
    compatible = brand + (b"mp42" if brand == b"isom" else b"")
    ftyp = _box(b"ftyp", brand + struct.pack(">I", 0x200) + compatible)
    moov = _box(b"moov", _mvhd(timescale, duration))
    return ftyp + moov + _box(b"mdat", b"\x00\x01\x02\x03" * 64)


def _zip(entries: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return out.getvalue()


# --- looking at what is left -----------------------------------------------------------


def _files(runtime) -> list[Path]:
    """Every file in the media folder, its temporary area included."""
    root = runtime.settings.data_dir / "media"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def _rows(runtime) -> int:
    with unit_of_work(runtime.sessions) as session:
        return int(session.scalar(select(func.count()).select_from(Media)) or 0)


def _audit(runtime, event: str) -> list[AuditEvent]:
    with unit_of_work(runtime.sessions) as session:
        rows = list(session.scalars(select(AuditEvent).where(AuditEvent.event == event)))
        session.expunge_all()
        return rows


def _upload(client: TestClient, headers: dict[str, str], body, name: str = "file.jpg", **kw):
    return client.post(MEDIA, params={"filename": name}, content=body, headers=headers, **kw)


def _assert_refused(response, status: int, runtime) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == status
    assert _files(runtime) == []
    assert _rows(runtime) == 0


# --- refusals --------------------------------------------------------------------------


def _refusal_cases() -> dict[str, tuple[bytes, str, int]]:
    jpeg = _image("JPEG")
    return {
        "php renamed .jpg": (b"<?php system($_GET['c']); ?>\n", "shell.jpg", 415),
        "jpeg with php inside": (jpeg[:-2] + b"<?php eval($_POST[1]);" + jpeg[-2:], "a.jpg", 415),
        "jpeg/zip polyglot": (jpeg + _zip({"shell.php": b"<?= 1 ?>"}), "cat.jpg", 415),
        "png with zip appended": (_image("PNG") + _zip({"x.txt": b"x" * 100}), "a.png", 415),
        "gif with html": (_image("GIF", mode="P") + b"<html><body>hi", "a.gif", 415),
        "zip bomb": (_zip({"bomb.bin": b"\x00" * 5_000_000}), "bomb.jpg", 415),
        "svg with script": (
            b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
            "logo.png",
            415,
        ),
        "html": (b"<!DOCTYPE html><html><script>alert(1)</script></html>", "a.webp", 415),
        "pdf": (b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\ntrailer\n<<>>\n%%EOF\n", "a.png", 415),
        "rar": (b"Rar!\x1a\x07\x01\x00" + b"\x00" * 64, "a.gif", 415),
        "truncated png": (_image("PNG")[:40], "a.png", 415),
        "animated png": (
            _image("PNG", save_all=True, append_images=[Image.new("RGB", (32, 24), "blue")]),
            "a.png",
            415,
        ),
        "pixel bomb png": (_pixel_bomb_png(), "bomb.png", 413),
        "png over the pixel limit": (_pixel_bomb_png(2_000, 501), "wide.png", 413),
        "webm that is only a header": (WEBM_HEAD + b"\x00" * 64, "v.webm", 415),
        "matroska": (MATROSKA_HEAD + b"\x18\x53\x80\x67\x80", "v.mkv", 415),
        "mp4 too long": (_mp4(timescale=1000, duration=61_000), "v.mp4", 413),
        "mp4 without mvhd": (
            _box(b"ftyp", FTYP) + _box(b"moov", b"") + _box(b"mdat", b"x"),
            "v.mp4",
            415,
        ),
        "mp4 with unknown duration": (_mp4(duration=0xFFFFFFFF), "v.mp4", 415),
        "mp4 with data appended": (_mp4() + b"\x00\x00", "v.mp4", 415),
        "mp4 with a zip appended": (_mp4() + _zip({"a": b"b"}), "v.mp4", 415),
    }


@pytest.mark.parametrize("case", sorted(_refusal_cases()))
def test_refused_uploads_leave_nothing_behind(client, runtime, owner, case):
    body, name, status = _refusal_cases()[case]
    # The client claims every one is a JPEG; the claim is never believed.
    headers = {**owner.headers, "Content-Type": "image/jpeg"}
    _assert_refused(_upload(client, headers, body, name), status, runtime)


def test_a_lying_content_type_is_ignored(client, runtime, owner):
    headers = {**owner.headers, "Content-Type": "image/jpeg"}
    response = _upload(client, headers, _image("PNG"), "photo.jpg")
    assert response.status_code == 201, response.text
    assert response.json()["content_type"] == "image/png"
    html = b"<html><script>alert(1)</script></html>"
    headers = {**owner.headers, "Content-Type": "image/png"}
    assert _upload(client, headers, html, "a.png").status_code == 415
    assert _rows(runtime) == 1


def test_a_body_one_byte_over_the_cap_is_refused_before_reading(client, runtime, owner):
    body = b"\x00" * (MAX_BYTES + 1)
    _assert_refused(_upload(client, owner.headers, body, "big.mp4"), 413, runtime)


def test_a_chunked_body_over_the_cap_is_refused(client, runtime, owner):
    def chunks():
        head = _mp4()
        yield head
        for _ in range(MAX_BYTES // 10_000 + 2):
            yield b"\x00" * 10_000

    response = _upload(client, owner.headers, chunks(), "big.mp4")
    assert "content-length" not in {k.lower() for k in response.request.headers}
    _assert_refused(response, 413, runtime)


def _upload_scope(headers: dict[str, str]) -> dict:
    """The ASGI scope of ``POST /api/v1/media?filename=a.png`` with ``headers``."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": MEDIA,
        "raw_path": MEDIA.encode(),
        "root_path": "",
        "query_string": b"filename=a.png",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }


def _stream_upload(app, headers: dict[str, str], chunks: list[bytes]) -> tuple[int, int]:
    """POST ``chunks`` as a streamed body straight to the ASGI app (TestClient would read
    the whole body first); returns the status and how many chunks the app asked for."""
    pending = iter(chunks)
    asked = 0
    status = 0

    async def receive():
        nonlocal asked
        chunk = next(pending, None)
        if chunk is None:
            return {"type": "http.request", "body": b"", "more_body": False}
        asked += 1
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(message):
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    asyncio.run(app(_upload_scope(headers), receive, send))
    return status, asked


def test_an_image_is_refused_as_soon_as_it_passes_the_image_cap(app, runtime, owner):
    body = _image("PNG") + b"\x00" * (MAX_BYTES - 20_000)  # under the general cap
    chunks = [body[start : start + 16_384] for start in range(0, len(body), 16_384)]
    status, asked = _stream_upload(app, owner.headers, chunks)
    assert status == 413
    # Reading stopped at the image cap, well before the end of the body.
    assert asked == MAX_IMAGE_BYTES // 16_384 + 1 < len(chunks)
    assert _files(runtime) == []
    assert _rows(runtime) == 0


def test_a_streamed_body_is_refused_as_soon_as_it_passes_the_cap(app, runtime, owner):
    chunks = [_mp4()] + [b"\x00" * 16_384] * (2 * MAX_BYTES // 16_384)
    status, asked = _stream_upload(app, owner.headers, chunks)
    assert status == 413
    assert asked < MAX_BYTES // 16_384 + 3 < len(chunks)
    assert _files(runtime) == []
    assert _rows(runtime) == 0


def test_a_pixel_bomb_is_refused_from_its_header_in_bounded_memory(
    client, runtime, owner, monkeypatch
):
    from PIL import ImageFile

    def no_decoding(self):
        raise AssertionError("a pixel bomb must be refused before any pixel is decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    bomb = _pixel_bomb_png()
    assert len(bomb) < 200
    tracemalloc.start()
    try:
        response = _upload(client, owner.headers, bomb, "bomb.png")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    _assert_refused(response, 413, runtime)
    assert "pixels" in response.json()["detail"]
    assert peak < 20 * 1_048_576, peak


def test_viewer_cannot_upload_or_change(client, runtime, owner):
    viewer = sign_in(
        runtime, client, "viewer@example.com", role=Role.VIEWER, workspace_id=owner.workspace_id
    )
    _assert_refused(_upload(client, viewer.headers, _image("PNG")), 403, runtime)
    stored = _upload(client, owner.headers, _image("PNG")).json()
    assert client.get(f"{MEDIA}/{stored['id']}", headers=viewer.headers).status_code == 200
    path = f"{MEDIA}/{stored['id']}"
    assert client.patch(path, json={"alt_text": "x"}, headers=viewer.headers).status_code == 403
    assert client.delete(path, headers=viewer.headers).status_code == 403


def test_quota_is_enforced(env_vars, owner, client, runtime):
    del owner, client
    settings = load_settings(environ={**env_vars, "PLEXUS_MEDIA_WORKSPACE_QUOTA_BYTES": "1500"})
    rt = init_runtime(settings)
    try:
        with TestClient(create_app(settings, rt), raise_server_exceptions=False) as small:
            member = sign_in(rt, small, "quota@example.com")
            first = _upload(small, member.headers, _image("PNG", (20, 20)), "a.png")
            assert first.status_code == 201, first.text
            assert first.json()["byte_size"] < 1500
            noise = Image.effect_noise((40, 40), 80).convert("RGB")
            out = io.BytesIO()
            noise.save(out, format="PNG")
            refused = _upload(small, member.headers, out.getvalue(), "b.png")
            assert refused.status_code == 413, refused.text
            assert "quota" in refused.json()["detail"]
            assert len(_files(rt)) == 1
            assert _rows(rt) == 1
    finally:
        rt.dispose()


# --- what is stored ----------------------------------------------------------------------


def test_exif_and_gps_are_stripped_and_orientation_applied(client, runtime, owner):
    original = _jpeg_with_gps()
    assert b"SecretCam" in original
    response = _upload(client, owner.headers, original, "../../etc/passwd\x00.jpg")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["content_type"] == "image/jpeg"
    assert (body["width"], body["height"]) == (48, 64)  # rotated upright
    assert body["original_filename"] == "passwd_.jpg"
    content = client.get(f"{MEDIA}/{body['id']}/content", headers=owner.headers)
    assert content.status_code == 200
    assert b"SecretCam" not in content.content
    assert b"private note" not in content.content
    assert b"Exif" not in content.content
    with Image.open(io.BytesIO(content.content)) as stored:
        assert stored.format == "JPEG"
        assert not stored.getexif()
        assert "exif" not in stored.info
        assert "icc_profile" not in stored.info
        assert stored.size == (48, 64)
    assert len(_audit(runtime, "media:media:uploaded")) == 1


@pytest.mark.parametrize(
    ("name", "body", "content_type", "size"),
    [
        ("a.png", _image("PNG", mode="RGBA", pnginfo=None), "image/png", (32, 24)),
        ("a.gif", _image("GIF", mode="P", comment=b"hidden"), "image/gif", (32, 24)),
        ("a.webp", _image("WEBP"), "image/webp", (32, 24)),
        ("a.jpg", _image("JPEG", mode="L"), "image/jpeg", (32, 24)),
    ],
)
def test_image_round_trip(client, runtime, owner, name, body, content_type, size):
    response = _upload(client, owner.headers, body, name)
    assert response.status_code == 201, response.text
    stored = response.json()
    assert stored["content_type"] == content_type
    assert (stored["width"], stored["height"]) == size
    content = client.get(f"{MEDIA}/{stored['id']}/content", headers=owner.headers)
    assert content.headers["content-type"] == content_type
    assert b"hidden" not in content.content
    with Image.open(io.BytesIO(content.content)) as image:
        assert image.size == size
    key = stored["sha256"]
    assert _files(runtime) == [runtime.settings.data_dir / "media" / key[:2] / key]


@pytest.mark.parametrize(
    ("brand", "content_type"), [(b"isom", "video/mp4"), (b"qt  ", "video/quicktime")]
)
def test_video_round_trip(client, runtime, owner, brand, content_type):
    video = _mp4(timescale=600, duration=600 * 12 + 300, brand=brand)
    response = _upload(client, owner.headers, video, "clip.mov")
    assert response.status_code == 201, response.text
    stored = response.json()
    assert stored["kind"] == "video"
    assert stored["content_type"] == content_type
    assert stored["duration_seconds"] == pytest.approx(12.5)
    assert stored["width"] is None
    content = client.get(f"{MEDIA}/{stored['id']}/content", headers=owner.headers)
    assert content.content == video  # videos are stored as checked, byte for byte


def test_download_headers(client, runtime, owner):
    stored = _upload(client, owner.headers, _image("PNG"), 'evil"; filename=x.html').json()
    response = client.get(f"{MEDIA}/{stored['id']}/content", headers=owner.headers)
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.headers["content-disposition"] == (
        f'attachment; filename="media-{stored["id"]}.png"'
    )
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["content-security-policy"] == "sandbox"
    assert response.headers["content-length"] == str(stored["byte_size"])


def test_filename_from_content_disposition(client, runtime, owner):
    headers = {**owner.headers, "Content-Disposition": "attachment; filename*=UTF-8''caf%C3%A9.png"}
    response = client.post(MEDIA, content=_image("PNG"), headers=headers)
    assert response.status_code == 201, response.text
    assert response.json()["original_filename"] == "café.png"
    long_name = "x" * 400 + ".png"
    response = _upload(client, owner.headers, _image("GIF", mode="P"), long_name)
    assert len(response.json()["original_filename"]) == 200


def test_content_addressing_dedupes_per_workspace(client, runtime, owner):
    png = _image("PNG")
    first = _upload(client, owner.headers, png, "a.png")
    again = _upload(client, owner.headers, png, "b.png")
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    assert _rows(runtime) == 1
    other = sign_in(runtime, client, "other@example.com")
    theirs = _upload(client, other.headers, png, "c.png")
    assert theirs.status_code == 201
    assert theirs.json()["sha256"] == first.json()["sha256"]
    assert _rows(runtime) == 2
    assert len(_files(runtime)) == 1  # one stored copy for both workspaces
    # Deleting one workspace's media keeps the bytes the other still uses.
    path = f"{MEDIA}/{first.json()['id']}"
    assert client.delete(path, headers=owner.headers).status_code == 204
    assert len(_files(runtime)) == 1
    assert client.get(f"{MEDIA}/{theirs.json()['id']}/content", headers=other.headers).content
    assert client.delete(f"{MEDIA}/{theirs.json()['id']}", headers=other.headers).status_code == 204
    assert _files(runtime) == []
    assert _rows(runtime) == 0
    assert len(_audit(runtime, "media:media:deleted")) == 2


def test_another_workspace_sees_404(client, runtime, owner):
    stored = _upload(client, owner.headers, _image("PNG")).json()
    stranger = sign_in(runtime, client, "stranger@example.com")
    path = f"{MEDIA}/{stored['id']}"
    for response in (
        client.get(path, headers=stranger.headers),
        client.get(f"{path}/content", headers=stranger.headers),
        client.patch(path, json={"alt_text": "mine"}, headers=stranger.headers),
        client.delete(path, headers=stranger.headers),
    ):
        assert response.status_code == 404, response.text
    assert client.get(MEDIA, headers=stranger.headers).json()["items"] == []
    assert _rows(runtime) == 1
    assert client.get(path, headers=owner.headers).json()["alt_text"] is None


def test_list_newest_first_and_alt_text(client, runtime, owner):
    ids = [
        _upload(client, owner.headers, body).json()["id"]
        for body in (_image("PNG"), _image("GIF", mode="P"), _image("WEBP"))
    ]
    listed = client.get(MEDIA, headers=owner.headers).json()["items"]
    assert [m["id"] for m in listed] == list(reversed(ids))
    page = client.get(MEDIA, params={"limit": 1, "offset": 1}, headers=owner.headers).json()
    assert [m["id"] for m in page["items"]] == [ids[1]]
    path = f"{MEDIA}/{ids[0]}"
    patched = client.patch(path, json={"alt_text": "A red square"}, headers=owner.headers)
    assert patched.status_code == 200, patched.text
    assert client.get(path, headers=owner.headers).json()["alt_text"] == "A red square"
    too_long = client.patch(path, json={"alt_text": "x" * 1501}, headers=owner.headers)
    assert too_long.status_code == 422
    cleared = client.patch(path, json={"alt_text": None}, headers=owner.headers)
    assert cleared.json()["alt_text"] is None


def _open_transactions(runtime) -> int:
    """Transactions other connections hold open on this test's database right now (SQLite:
    whether the write lock is taken; PostgreSQL: sessions idle in a transaction)."""
    import sqlite3

    from sqlalchemy import text

    from conftest import BACKEND

    if BACKEND == "postgres":
        with runtime.engine.connect() as connection:
            return int(
                connection.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                        " AND state = 'idle in transaction' AND pid <> pg_backend_pid()"
                    )
                ).scalar_one()
            )
    path = runtime.settings.resolved_database_url.removeprefix("sqlite:///")
    probe = sqlite3.connect(path, timeout=0.2, isolation_level=None)
    try:
        probe.execute("BEGIN IMMEDIATE")
        probe.execute("ROLLBACK")
    except sqlite3.OperationalError:
        return 1
    finally:
        probe.close()
    return 0


def test_no_transaction_is_held_while_the_body_arrives(app, runtime, owner):
    """A slow client sending its upload holds no database transaction (on SQLite that
    would be the write lock for every other request)."""
    seen: list[int] = []
    body = _image("PNG")
    chunks = [body[:64], body[64:]]
    pending = iter(chunks)
    status = 0

    async def receive():
        chunk = next(pending, None)
        if chunk is None:
            return {"type": "http.request", "body": b"", "more_body": False}
        if chunk is chunks[1]:
            seen.append(_open_transactions(runtime))  # mid-body: the request is waiting
        return {"type": "http.request", "body": chunk, "more_body": chunk is not chunks[1]}

    async def send(message):
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    asyncio.run(app(_upload_scope(owner.headers), receive, send))
    assert status == 201
    assert seen == [0]
