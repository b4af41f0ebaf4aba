"""Animated GIF and WebP uploads (R12): every frame is kept, with its duration, and the loop
count, while metadata goes; animations past the frame limit, or whose frames together
have more pixels than one image may, are refused before they are decoded past the limit,
and leave nothing behind.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pytest
from PIL import ExifTags, GifImagePlugin, Image, ImageSequence, WebPImagePlugin
from sqlalchemy import func, select

from plexus.db import unit_of_work
from plexus.media.images import MAX_FRAMES
from plexus.models.media import Media

from auth_helpers import sign_in

MEDIA = "/api/v1/media"
MAX_PIXELS = 1_000_000
MAX_IMAGE_BYTES = 200_000
SECRET = b"SecretCam-9000"


@pytest.fixture
def env_vars(env_vars: dict[str, str]) -> dict[str, str]:
    return {
        **env_vars,
        "PLEXUS_MEDIA_MAX_BYTES": "300000",
        "PLEXUS_MEDIA_MAX_IMAGE_BYTES": str(MAX_IMAGE_BYTES),
        "PLEXUS_MEDIA_MAX_IMAGE_PIXELS": str(MAX_PIXELS),
    }


@pytest.fixture
def owner(runtime, client):
    return sign_in(runtime, client, "owner@example.com")


# --- animations made for the tests -----------------------------------------------------

PALETTE = [0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (252 * 3)


def _gif_frames(count: int, size: tuple[int, int] = (32, 24)) -> list[Image.Image]:
    """``count`` palette frames, each unlike the one before (identical frames would be
    merged by the encoder)."""
    frames = []
    for index in range(count):
        frame = Image.new("P", size, 0)
        frame.putpalette(PALETTE)
        column = index % size[0]
        for y in range(size[1]):
            frame.putpixel((column, y), 1 + index % 3)
        frames.append(frame)
    return frames


def _gif(frames: list[Image.Image], durations: list[int], **params) -> bytes:
    out = io.BytesIO()
    frames[0].save(
        out, format="GIF", save_all=True, append_images=frames[1:], duration=durations, **params
    )
    return out.getvalue()


def _with_xmp(gif: bytes) -> bytes:
    """``gif`` with an XMP application extension right after its global colour table."""
    flags = gif[10]
    table = 3 << ((flags & 7) + 1) if flags & 0x80 else 0
    at = 13 + table
    packet = b"<x:xmpmeta>" + SECRET + b"</x:xmpmeta>"
    blocks = b"".join(
        bytes([len(c)]) + c for c in (packet[i : i + 255] for i in range(0, len(packet), 255))
    )
    extension = b"\x21\xff\x0bXMP DataXMP" + blocks + b"\x00"
    return gif[:at] + extension + gif[at:]


def _exif() -> bytes:
    exif = Image.Exif()
    exif[ExifTags.Base.Model] = SECRET.decode()
    return exif.tobytes()


def _webp(count: int, size: tuple[int, int] = (32, 24), **params) -> bytes:
    colours = ["red", "green", "blue", "white", "black"]
    frames = [Image.new("RGB", size, colours[i % len(colours)]) for i in range(count)]
    out = io.BytesIO()
    frames[0].save(out, format="WEBP", save_all=True, append_images=frames[1:], **params)
    return out.getvalue()


def _decoded(data: bytes) -> tuple[list[bytes], list[int], int | None, dict]:
    """Every frame's RGBA pixels, every frame's duration, the loop count, the info."""
    with Image.open(io.BytesIO(data)) as image:
        info = dict(image.info)
        pixels, durations = [], []
        for frame in ImageSequence.Iterator(image):
            frame.load()
            durations.append(frame.info.get("duration"))
            pixels.append(frame.convert("RGBA").tobytes())
        return pixels, durations, info.get("loop"), info


# --- looking at what is left -----------------------------------------------------------


def _files(runtime) -> list[Path]:
    root = runtime.settings.data_dir / "media"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def _rows(runtime) -> int:
    with unit_of_work(runtime.sessions) as session:
        return int(session.scalar(select(func.count()).select_from(Media)) or 0)


def _upload(client, owner, body: bytes, name: str = "a.gif"):
    return client.post(MEDIA, params={"filename": name}, content=body, headers=owner.headers)


def _stored(client, owner, response) -> bytes:
    assert response.status_code == 201, response.text
    content = client.get(f"{MEDIA}/{response.json()['id']}/content", headers=owner.headers)
    assert content.status_code == 200
    return content.content


def _assert_refused(response, status: int, runtime) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert _files(runtime) == []
    assert _rows(runtime) == 0


# --- kept --------------------------------------------------------------------------------


@pytest.mark.parametrize("transparency", [None, 0])
def test_an_animated_gif_keeps_its_frames_durations_and_loop(client, owner, transparency):
    params = {"loop": 2, "comment": b"private " + SECRET}
    if transparency is not None:
        params["transparency"] = transparency
    original = _with_xmp(_gif(_gif_frames(3), [100, 200, 300], **params))
    assert original.count(SECRET) == 2  # in the comment and the XMP packet

    response = _upload(client, owner, original)
    stored = _stored(client, owner, response)
    body = response.json()
    assert (body["content_type"], body["width"], body["height"]) == ("image/gif", 32, 24)

    pixels, durations, loop, info = _decoded(stored)
    assert len(pixels) == 3
    assert durations == [100, 200, 300]
    assert loop == 2
    assert pixels == _decoded(original)[0]  # the same pictures, transparency included
    assert SECRET not in stored
    assert b"XMP" not in stored
    assert "comment" not in info


def test_an_animated_gif_that_plays_once_still_plays_once(client, owner):
    original = _gif(_gif_frames(2), [50, 70])
    assert _decoded(original)[2] is None  # no loop extension: played once
    pixels, durations, loop, _ = _decoded(_stored(client, owner, _upload(client, owner, original)))
    assert (len(pixels), durations, loop) == (2, [50, 70], None)


def test_an_animated_webp_keeps_its_frames_durations_and_loop(client, owner):
    original = _webp(
        3,
        duration=[120, 240, 360],
        loop=3,
        lossless=True,
        exif=_exif(),
        xmp=b"<x:xmpmeta>" + SECRET + b"</x:xmpmeta>",
    )
    assert original.count(SECRET) == 2

    response = _upload(client, owner, original, "a.webp")
    stored = _stored(client, owner, response)
    assert response.json()["content_type"] == "image/webp"
    pixels, durations, loop, info = _decoded(stored)
    assert len(pixels) == 3
    assert durations == [120, 240, 360]
    assert loop == 3
    assert SECRET not in stored
    assert "exif" not in info
    assert "xmp" not in info
    # Re-encoded lossy, as still WebP images are: each frame is still its colour.
    for frame, colour in zip(pixels, [(255, 0, 0), (0, 128, 0), (0, 0, 255)], strict=True):
        red, green, blue, _ = Image.frombytes("RGBA", (32, 24), frame).getpixel((16, 12))
        assert max(abs(red - colour[0]), abs(green - colour[1]), abs(blue - colour[2])) < 16


def test_a_still_gif_stays_a_still_gif(client, owner):
    still = io.BytesIO()
    _gif_frames(1)[0].save(still, format="GIF", comment=b"hidden")
    pixels, _, _, info = _decoded(_stored(client, owner, _upload(client, owner, still.getvalue())))
    assert len(pixels) == 1
    assert "comment" not in info


def test_an_animation_at_the_frame_limit_is_kept(client, owner):
    original = _gif(_gif_frames(MAX_FRAMES, (8, 8)), [20] * MAX_FRAMES)
    assert len(original) < MAX_IMAGE_BYTES
    pixels, _, _, _ = _decoded(_stored(client, owner, _upload(client, owner, original)))
    assert len(pixels) == MAX_FRAMES


# --- refused -----------------------------------------------------------------------------


def test_a_gif_over_the_frame_limit_is_refused_without_decoding_past_it(
    client, runtime, owner, monkeypatch
):
    original = _gif(_gif_frames(MAX_FRAMES + 1, (8, 8)), [20] * (MAX_FRAMES + 1))
    loads = []
    real_load = GifImagePlugin.GifImageFile.load

    def counting_load(self):
        loads.append(self.tell())
        return real_load(self)

    monkeypatch.setattr(GifImagePlugin.GifImageFile, "load", counting_load)
    response = _upload(client, owner, original)
    _assert_refused(response, 413, runtime)
    assert f"more than {MAX_FRAMES} frames" in response.json()["detail"]
    assert max(loads) < MAX_FRAMES  # frame 501 (index 500) was never decoded


def test_a_gif_whose_frames_together_pass_the_pixel_limit_is_refused(client, runtime, owner):
    # 26 frames of 200 x 200: each far under the limit, 1,040,000 pixels together.
    original = _gif(_gif_frames(26, (200, 200)), [40] * 26)
    assert len(original) < MAX_IMAGE_BYTES
    response = _upload(client, owner, original)
    _assert_refused(response, 413, runtime)
    assert f"more than {MAX_PIXELS} pixels together" in response.json()["detail"]


def test_a_gif_frame_that_enlarges_the_canvas_past_the_limit_is_refused(client, runtime, owner):
    """A GIF frame may be larger than the screen it declares (Pillow enlarges the canvas):
    each frame is measured before it is decoded."""
    original = bytearray(_gif(_gif_frames(2, (10, 10)), [40, 40]))
    control = original.index(b"\x21\xf9\x04")
    second = original.index(b"\x21\xf9\x04", control + 1) + 8  # its image descriptor
    assert original[second] == 0x2C
    original[second + 1 : second + 9] = struct.pack("<HHHH", 0, 0, 1100, 1000)
    response = _upload(client, owner, bytes(original))
    _assert_refused(response, 413, runtime)


def test_an_animated_webp_over_the_limits_is_refused_from_its_header(
    client, runtime, owner, monkeypatch
):
    def no_decoding(self):
        raise AssertionError("refused from the header: no frame is decoded")

    monkeypatch.setattr(WebPImagePlugin.WebPImageFile, "load", no_decoding)
    too_many = _webp(MAX_FRAMES + 1, (4, 4), duration=10)
    _assert_refused(_upload(client, owner, too_many, "a.webp"), 413, runtime)
    too_large = _webp(5, (500, 500), duration=10)  # 1,250,000 pixels together
    response = _upload(client, owner, too_large, "a.webp")
    _assert_refused(response, 413, runtime)
    assert "pixels together" in response.json()["detail"]


def test_animated_png_is_still_refused(client, runtime, owner):
    out = io.BytesIO()
    frames = [Image.new("RGB", (8, 8), colour) for colour in ("red", "blue")]
    frames[0].save(out, format="PNG", save_all=True, append_images=frames[1:])
    _assert_refused(_upload(client, owner, out.getvalue(), "a.png"), 415, runtime)


def test_a_multi_picture_jpeg_is_refused(client, runtime, owner):
    """An MPO file starts like a JPEG; its second picture is not kept, so it is refused."""
    out = io.BytesIO()
    frames = [Image.new("RGB", (8, 8), colour) for colour in ("red", "blue")]
    frames[0].save(out, format="MPO", save_all=True, append_images=frames[1:])
    response = _upload(client, owner, out.getvalue(), "a.jpg")
    _assert_refused(response, 415, runtime)
    assert "Only GIF and WebP animations" in response.json()["detail"]
