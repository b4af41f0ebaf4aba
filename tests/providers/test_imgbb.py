"""The ImgBB provider against the local ImgBB API fake."""

from __future__ import annotations

import logging

import httpx
import pytest

from plexus.providers.base import (
    Credentials,
    Link,
    MediaItem,
    Post,
    ProviderContext,
    ProviderError,
    ProviderNeedsReauth,
    ProviderRejected,
    ProviderSettings,
)
from plexus.providers.imgbb import ImgbbProvider
from plexus.providers.imgbb.provider import key_fingerprint
from plexus.providers.testing import Fault, ProviderContract

from fake_helpers import running
from imgbb_fake import ImgbbFake

JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 64 + b"\xff\xd9"


def jpeg() -> MediaItem:
    return MediaItem("photo.jpg", "image/jpeg", JPEG)


@pytest.fixture
def fake():
    platform = ImgbbFake()
    with running(platform):
        yield platform


@pytest.fixture
def provider(fake):
    settings = ProviderSettings({"api_url": fake.base_url})
    return ImgbbProvider(ProviderContext(settings=settings, timeout=httpx.Timeout(1.0)))


@pytest.fixture
def key(fake):
    return fake.new_key()


@pytest.fixture
def link(provider, key):
    connected = provider.connect_with_fields({"api_key": key})
    return Link(credentials=connected.credentials, account=connected.account)


class TestImgbbContract(ProviderContract):
    #: An ImgBB API key is revoked by its owner at imgbb.com; the API has no call for it.
    supports_revocation = False

    def sample_post(self, text: str) -> Post:
        return Post(text=text, media=(jpeg(),))


def test_connecting_checks_the_key_with_a_short_lived_upload(fake, provider, key):
    connected = provider.connect_with_fields({"api_key": f"  {key} "})
    assert connected.credentials.secrets == {"api_key": key}
    assert connected.account.external_id == key_fingerprint(key)
    assert key not in connected.account.display_name
    assert key not in repr(connected)
    (probe,) = fake.uploads.values()
    assert probe.expiration == 60
    assert probe.key == key


def test_a_wrong_key_needs_reauth_and_is_never_echoed(fake, provider):
    fake.echo_key_in_errors = True
    wrong = "0123456789abcdef0123456789abcdef"
    with pytest.raises(ProviderNeedsReauth) as caught:
        provider.connect_with_fields({"api_key": wrong})
    assert wrong not in str(caught.value)
    assert wrong not in repr(caught.value.args)
    assert fake.uploads == {}


def test_an_empty_key_is_refused_locally(fake, provider):
    with pytest.raises(ProviderRejected):
        provider.connect_with_fields({"api_key": "  "})
    assert fake.requests == []


@pytest.mark.parametrize("fault", list(Fault))
def test_the_key_never_travels_in_a_url_or_reaches_logs(fake, provider, link, fault, caplog):
    # httpx is held at WARNING by Plexus's logging set-up; the check needs its DEBUG lines.
    caplog.set_level(logging.DEBUG, logger="httpx")
    key = link.credentials.secrets["api_key"]
    fake.echo_key_in_errors = True
    fake.arm(fault)
    with pytest.raises(ProviderError) as caught:
        provider.publish(link, Post(text="where is the key", media=(jpeg(),)))
    assert key not in str(caught.value)
    provider.publish(link, Post(text="after the fault", media=(jpeg(),)))
    assert fake.requests
    for recorded in fake.requests:
        assert key not in recorded.query
        assert key not in recorded.path
        assert key not in "".join(recorded.headers.values())
    assert set(fake.key_sources) == {"body"}
    requests_logged = [r for r in caplog.records if r.name == "httpx"]
    assert requests_logged, "httpx logs each request's URL; the check must see them"
    assert all(key not in record.getMessage() for record in caplog.records)


def test_published_url_is_the_direct_image(fake, provider, link):
    published = provider.publish(
        link, Post(text="a cat", media=(jpeg(),), options={"expiration": "3600"})
    )
    upload = fake.uploads[published.external_id]
    assert published.url == upload.url
    assert published.url.startswith("https://i.ibb.co/")
    assert upload.title == "a cat"
    assert upload.expiration == 3600


@pytest.mark.parametrize(
    "post",
    [
        Post(text="none"),
        Post(text="two", media=(jpeg(), jpeg())),
        Post(text="video", media=(MediaItem("a.mp4", "video/mp4", b"\x00"),)),
        Post(text="odd", media=(MediaItem("a.svg", "image/svg+xml", b"<svg/>"),)),
        Post(text="short", media=(jpeg(),), options={"expiration": "59"}),
        Post(text="forever", media=(jpeg(),), options={"expiration": "15552001"}),
        Post(text="x" * 101, media=(jpeg(),)),
    ],
)
def test_local_checks_refuse_before_any_call(fake, provider, link, post):
    before = len(fake.requests)
    with pytest.raises(ProviderRejected):
        provider.publish(link, post)
    assert len(fake.requests) == before


def test_a_connection_without_a_key_needs_reauth(provider, link):
    with pytest.raises(ProviderNeedsReauth):
        provider.check_connection(Link(Credentials(), link.account))
