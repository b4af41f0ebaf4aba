"""The Imgur provider against the local Imgur API fake."""

from __future__ import annotations

import secrets
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from plexus.providers.base import (
    Account,
    AuthorizationRequest,
    Credentials,
    Link,
    MediaItem,
    OAuthClient,
    Post,
    PostState,
    ProviderContext,
    ProviderNeedsReauth,
    ProviderRejected,
    ProviderSettings,
)
from plexus.providers.imgur import ImgurProvider
from plexus.providers.testing import ProviderContract

from fake_helpers import running
from imgur_fake import ImgurFake

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
REDIRECT = "https://plexus.example/api/v1/connections/callback"


def png(name: str = "picture.png") -> MediaItem:
    return MediaItem(name, "image/png", PNG, alt_text="a test picture")


def build(fake: ImgurFake) -> ImgurProvider:
    settings = {
        "api_url": fake.base_url,
        "client_id": fake.client_id,
        "client_secret": fake.client_secret,
    }
    return ImgurProvider(
        ProviderContext(settings=ProviderSettings(settings), timeout=httpx.Timeout(1.0))
    )


def flow() -> AuthorizationRequest:
    return AuthorizationRequest(
        redirect_uri=REDIRECT,
        state=secrets.token_urlsafe(16),
        code_verifier=secrets.token_urlsafe(48),
        nonce=None,
        params={},
        client=OAuthClient(ImgurFake.client_id, ImgurFake.client_secret),
    )


@pytest.fixture
def fake():
    platform = ImgurFake()
    with running(platform):
        yield platform


@pytest.fixture
def provider(fake):
    return build(fake)


@pytest.fixture
def account_id(fake):
    return fake.add_user()


@pytest.fixture
def link(fake, account_id):
    access, refresh = fake.issue_tokens(account_id)
    return Link(
        credentials=Credentials(access_token=access, refresh_token=refresh),
        account=Account(external_id=str(account_id), display_name="plexus-test"),
        client=OAuthClient(fake.client_id, fake.client_secret),
    )


class TestImgurContract(ProviderContract):
    #: Imgur has no token revocation endpoint; users remove the app at imgur.com.
    supports_revocation = False

    def sample_post(self, text: str) -> Post:
        return Post(text=text, media=(png(),))

    def rejected_post(self) -> Post:
        """Bytes that claim to be a PNG but are not an image: Imgur refuses the upload."""
        return Post(text="not really a picture", media=(MediaItem("x.png", "image/png", b"no"),))


def test_authorization_url_has_state_and_no_pkce_or_scope(provider, fake):
    request = flow()
    parts = urlsplit(provider.start_authorization(request).url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{fake.base_url}/oauth2/authorize"
    assert query == {
        "response_type": "code",
        "client_id": fake.client_id,
        "redirect_uri": REDIRECT,
        "state": request.state,
    }


def test_default_endpoints_are_imgurs():
    spec = ImgurProvider(ProviderContext()).oauth_spec({})
    assert spec.authorize_url == "https://api.imgur.com/oauth2/authorize"
    assert spec.token_url == "https://api.imgur.com/oauth2/token"
    assert not spec.pkce


def test_code_exchange_finds_the_account(fake, provider, account_id):
    request = flow()
    code = fake.authorize(account_id)
    connected = provider.finish_authorization(request, {"code": code, "state": request.state}, {})
    assert connected.account.external_id == str(account_id)
    assert connected.account.display_name == "plexus-test"
    assert connected.account.url == "https://imgur.com/user/plexus-test"
    assert connected.credentials.refresh_token in fake.refresh_tokens
    exchange = fake.requests_to("/oauth2/token")[0]
    assert "code_verifier" not in parse_qs(exchange.body.decode())


def test_refresh_rotates_and_the_old_refresh_token_dies(fake, provider, link):
    assert type(provider).rotates_refresh_tokens
    renewed = provider.refresh(link)
    assert renewed.refresh_token != link.credentials.refresh_token
    assert renewed.access_token != link.credentials.access_token
    assert link.credentials.refresh_token in fake.dead_refresh_tokens
    with pytest.raises(ProviderNeedsReauth):
        provider.refresh(link)
    again = provider.refresh(Link(renewed, link.account, client=link.client))
    assert again.refresh_token != renewed.refresh_token


def test_refresh_without_a_refresh_token_needs_reauth(provider, link):
    bare = Link(Credentials(access_token=link.credentials.access_token), link.account)
    with pytest.raises(ProviderNeedsReauth):
        provider.refresh(bare)


def test_published_url_is_the_direct_image_link(fake, provider, link):
    post = Post(text="Sunset over the bay\nTaken on the pier.", media=(png(),))
    published = provider.publish(link, post)
    image = fake.images[published.external_id]
    assert published.url == image.link
    assert published.url.startswith("https://i.imgur.com/")
    assert image.title == "Sunset over the bay"
    assert image.description == "Sunset over the bay\nTaken on the pier."
    upload = fake.requests_to("/3/image")[0]
    assert link.credentials.access_token not in upload.query
    assert upload.headers["authorization"] == f"Bearer {link.credentials.access_token}"


def test_title_option_wins(fake, provider, link):
    published = provider.publish(link, Post(text="body", media=(png(),), options={"title": "T"}))
    assert fake.images[published.external_id].title == "T"


@pytest.mark.parametrize(
    "media",
    [
        (),
        (png("a.png"), png("b.png")),
        (MediaItem("clip.mp4", "video/mp4", b"\x00"),),
        (MediaItem("doc.pdf", "application/pdf", b"%PDF"),),
    ],
)
def test_a_post_is_exactly_one_image(fake, provider, link, media):
    with pytest.raises(ProviderRejected):
        provider.publish(link, Post(text="x", media=media))
    assert fake.requests == []


def test_deleted_image_reads_back_as_deleted(fake, provider, link):
    published = provider.publish(link, Post(text="short-lived", media=(png(),)))
    provider.delete(link, published.external_id)
    assert provider.fetch_status(link, published.external_id).state is PostState.DELETED
    provider.delete(link, published.external_id)  # already gone is fine
