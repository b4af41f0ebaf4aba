"""The matrix provider's parts that need no homeserver: image headers and post ids."""

from __future__ import annotations

import struct

import pytest

from plexus.providers.base import Account, Credentials, Link, ProviderContext, ProviderRejected
from plexus.providers.matrix import MatrixProvider
from plexus.providers.matrix.media import image_size


def test_gif_size():
    assert image_size(b"GIF89a" + struct.pack("<HH", 640, 480) + b"\x00" * 8, "image/gif") == (
        640,
        480,
    )


def test_jpeg_size_skips_segments_before_the_frame():
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00" + b"\x00" * 9
    sof2 = b"\xff\xc2" + struct.pack(">HBHHB", 11, 8, 300, 400, 3) + b"\x00" * 3
    data = b"\xff\xd8" + app0 + sof2 + b"\xff\xd9"
    assert image_size(data, "image/jpeg") == (400, 300)


def test_webp_sizes():
    def riff(chunk: bytes, payload: bytes) -> bytes:
        body = b"WEBP" + chunk + struct.pack("<I", len(payload)) + payload
        return b"RIFF" + struct.pack("<I", len(body)) + body

    extended = riff(b"VP8X", b"\x00" * 4 + (99).to_bytes(3, "little") + (49).to_bytes(3, "little"))
    assert image_size(extended, "image/webp") == (100, 50)
    bits = (20 - 1) | ((10 - 1) << 14)
    lossless = riff(b"VP8L", b"\x2f" + bits.to_bytes(4, "little") + b"\x00" * 8)
    assert image_size(lossless, "image/webp") == (20, 10)
    lossy = riff(b"VP8 ", b"\x00" * 3 + b"\x9d\x01\x2a" + struct.pack("<HH", 32, 16))
    assert image_size(lossy, "image/webp") == (32, 16)


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        (b"", "image/png"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 4, "image/png"),
        (b"\xff\xd8\xff", "image/jpeg"),
        (b"\xff\xd8\x00\x00\x00\x00", "image/jpeg"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8X", "image/webp"),
        (b"GIF89a\x00\x00\x00\x00", "image/gif"),
        (b"anything", "image/svg+xml"),
    ],
)
def test_unreadable_headers_give_no_size(data, content_type):
    assert image_size(data, content_type) is None


@pytest.mark.parametrize("external_id", ["", "$event", "!room:hs", "!room:hs/", "!room:hs/$"])
def test_foreign_post_ids_are_refused_before_any_request(external_id):
    provider = MatrixProvider(ProviderContext())
    account = Account(
        "@a:hs", "a", settings={"base_url": "https://hs.example", "room_id": "!room:hs"}
    )
    link = Link(Credentials(access_token="t"), account)
    with pytest.raises(ProviderRejected):
        provider.fetch_status(link, external_id)
    with pytest.raises(ProviderRejected):
        provider.delete(link, external_id)
