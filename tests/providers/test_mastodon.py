from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import replace
from urllib.parse import parse_qs, parse_qsl, urlsplit

import httpx
import pytest

from plexus.kit.http import DestinationPolicy
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
    ProviderError,
    ProviderNeedsReauth,
    ProviderRejected,
    ProviderRetryable,
    ProviderSettings,
)
from plexus.providers.mastodon import MastodonProvider, normalise_instance, status_length
from plexus.providers.testing import ProviderContract

from fake_helpers import running
from mastodon_fake import MastodonFake

LOOPBACK = DestinationPolicy.from_strings(["127.0.0.0/8"])
REDIRECT_URI = "http://127.0.0.1:8000/connections/mastodon/callback"
SCOPE = "read:accounts read:statuses write:statuses write:media"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def make_provider(policy: DestinationPolicy = LOOPBACK) -> MastodonProvider:
    provider = MastodonProvider(
        ProviderContext(
            settings=ProviderSettings({"client_name": "Plexus test"}),
            destinations=policy,
            timeout=httpx.Timeout(1.0),
        )
    )
    provider.media_poll_interval = 0.02  # the fake processes media in a couple of polls
    return provider


def connect(provider: MastodonProvider, fake: MastodonFake, scopes: list[str] | None = None):
    app = fake.register(REDIRECT_URI)
    token = fake.issue_token(app, scopes)
    params = {"instance": fake.base_url}
    connected = provider.complete_connection(Credentials(access_token=token, scope=SCOPE), params)
    return Link(
        credentials=connected.credentials,
        account=connected.account,
        params=params,
        client=OAuthClient(app.client_id, app.client_secret),
    )


@pytest.fixture
def fake():
    platform = MastodonFake()
    with running(platform):
        yield platform


@pytest.fixture
def provider():
    return make_provider()


@pytest.fixture
def link(provider, fake):
    return connect(provider, fake)


class TestMastodonContract(ProviderContract):
    pass


# --------------------------------------------------------------------------- instance


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("Mastodon.Social", ("https", "mastodon.social")),
        ("https://mastodon.social/", ("https", "mastodon.social")),
        ("@someone@mastodon.social", ("https", "mastodon.social")),
        ("https://mastodon.social:443", ("https", "mastodon.social")),
        ("https://example.org:8443", ("https", "example.org:8443")),
        ("http://127.0.0.1:3000", ("http", "127.0.0.1:3000")),
        ("https://[::1]:8443", ("https", "[::1]:8443")),
        ("bücher.example", ("https", "xn--bcher-kva.example")),
    ],
)
def test_instance_is_normalised(typed, expected):
    assert normalise_instance(typed) == expected


@pytest.mark.parametrize(
    "typed",
    [
        "",
        "ftp://mastodon.social",
        "https://user:pw@mastodon.social",
        "https://mastodon.social/@someone",
        "https://mastodon.social/?next=/x",
        "exa mple.org",
        "https://mastodon.social:99999",
    ],
)
def test_bad_instances_are_refused(typed):
    with pytest.raises(ProviderRejected):
        normalise_instance(typed)


def test_registration_key_is_the_normalised_origin(provider, fake):
    port = urlsplit(fake.base_url).port
    keys = {
        provider.client_registration_key({"instance": value})
        for value in (fake.base_url, f"{fake.base_url}/", f"HTTP://127.0.0.1:{port}")
    }
    assert keys == {fake.base_url}


def test_app_is_registered_once_per_instance(provider, fake):
    # What the connection service does: cache registrations under the provider's key.
    cache: dict[str, OAuthClient] = {}
    for typed in (fake.base_url, f"{fake.base_url}/", fake.base_url.upper()):
        params = {"instance": typed}
        key = provider.client_registration_key(params)
        assert key is not None
        if key not in cache:
            cache[key] = provider.register_client(params, REDIRECT_URI)
    assert len(fake.requests_to("/api/v1/apps")) == 1
    (client,) = cache.values()
    app = fake.apps[client.client_id]
    assert app.client_secret == client.client_secret
    assert app.redirect_uris == [REDIRECT_URI]
    assert app.scopes == SCOPE.split()
    assert app.name == "Plexus test"


def test_instance_limits_are_read_into_the_account(provider, fake, link):
    settings = link.account.settings
    assert settings["instance"] == fake.base_url
    assert settings["max_characters"] == 1000
    assert settings["max_media_attachments"] == 6
    assert settings["image_size_limit"] == 2_000_000
    caps = provider.limits_for(link.account)
    assert caps.text.max_length == 1000
    assert caps.media.max_items == 6
    assert caps.media.image_types == {"image/jpeg", "image/png", "image/gif"}
    assert caps.media.video_types == {"video/mp4"}
    assert caps.media.max_video_bytes == 8_000_000
    # Without a configuration read, Mastodon's defaults apply.
    fallback = provider.limits_for(Account(external_id="1@x", display_name="@x"))
    assert fallback.text.max_length == 500
    assert fallback.media.max_items == 4


def test_limit_changes_are_picked_up_by_check_connection(provider, fake, link):
    fake.config.max_characters = 5000
    account = provider.check_connection(link)
    assert account.external_id == link.account.external_id
    assert provider.limits_for(account).text.max_length == 5000


# --------------------------------------------------------------------------- OAuth


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def authorization(provider: MastodonProvider, fake: MastodonFake) -> AuthorizationRequest:
    params = {"instance": fake.base_url}
    return AuthorizationRequest(
        redirect_uri=REDIRECT_URI,
        state=secrets.token_urlsafe(16),
        code_verifier=secrets.token_urlsafe(48),
        nonce=None,
        params=params,
        client=provider.register_client(params, REDIRECT_URI),
    )


def consent(url: str) -> dict[str, str]:
    answer = httpx.get(url, follow_redirects=False)
    assert answer.status_code == 302, answer.text
    return dict(parse_qsl(urlsplit(answer.headers["location"]).query))


def test_oauth_flow_with_pkce(provider, fake):
    request = authorization(provider, fake)
    start = provider.start_authorization(request)

    url = urlsplit(start.url)
    assert f"{url.scheme}://{url.netloc}{url.path}" == f"{fake.base_url}/oauth/authorize"
    query = parse_qs(url.query)
    assert query["scope"] == [SCOPE]
    assert query["code_challenge_method"] == ["S256"]
    assert query["code_challenge"] == [s256(request.code_verifier)]
    assert query["state"] == [request.state]
    assert query["client_id"] == [request.client.client_id]

    callback = consent(start.url)
    assert callback["state"] == request.state
    connected = provider.finish_authorization(request, callback, start.flow_data)

    port = urlsplit(fake.base_url).port
    assert connected.account.external_id == f"109348@127.0.0.1:{port}"
    assert connected.account.display_name == f"@plexus@127.0.0.1:{port}"
    assert connected.account.settings["max_characters"] == 1000
    assert connected.credentials.access_token in fake.tokens
    (token_call,) = fake.requests_to("/oauth/token")
    form = dict(parse_qsl(token_call.body.decode()))
    assert form["code_verifier"] == request.code_verifier
    assert form["client_secret"] == request.client.client_secret


def test_wrong_verifier_is_refused(provider, fake):
    request = authorization(provider, fake)
    start = provider.start_authorization(request)
    callback = consent(start.url)
    forged = replace(request, code_verifier=secrets.token_urlsafe(48))
    with pytest.raises((ProviderNeedsReauth, ProviderRejected)):
        provider.finish_authorization(forged, callback, start.flow_data)
    assert fake.tokens == {}


def test_servers_without_pkce_metadata_get_the_plain_code_flow(provider, fake):
    fake.pkce_supported = False
    request = authorization(provider, fake)
    start = provider.start_authorization(request)
    assert "code_challenge" not in parse_qs(urlsplit(start.url).query)
    connected = provider.finish_authorization(request, consent(start.url), start.flow_data)
    assert connected.account.external_id.startswith("109348@")
    (token_call,) = fake.requests_to("/oauth/token")
    assert "code_verifier" not in dict(parse_qsl(token_call.body.decode()))


def test_revoke_ends_the_token(provider, fake, link):
    provider.revoke(link)
    assert fake.revoked_tokens() == [link.credentials.access_token]
    with pytest.raises(ProviderNeedsReauth, match="revoked"):
        provider.check_connection(link)


def test_tokens_do_not_refresh(provider, link):
    assert not provider.can_refresh(link)
    with pytest.raises(ProviderNeedsReauth):
        provider.refresh(link)


# --------------------------------------------------------------------------- SSRF


def test_loopback_instance_is_refused_without_the_operators_permission(fake):
    provider = make_provider(DestinationPolicy())
    params = {"instance": fake.base_url}
    with pytest.raises(ProviderRejected):
        provider.client_registration_key(params)
    with pytest.raises(ProviderRejected):
        provider.register_client(params, REDIRECT_URI)
    with pytest.raises(ProviderRejected):
        provider.complete_connection(Credentials(access_token="t"), params)
    port = urlsplit(fake.base_url).port
    with pytest.raises(ProviderRejected, match="not a public address"):
        provider.register_client({"instance": f"https://127.0.0.1:{port}"}, REDIRECT_URI)
    assert fake.requests == []


def test_the_guarded_client_refuses_what_a_check_let_through(fake, monkeypatch):
    # As if DNS had answered with a public address for the check and a loopback one for
    # the connection (rebinding): the guard on the connection itself still refuses.
    monkeypatch.setattr(
        "plexus.providers.mastodon.provider.checked_origin", lambda *_: fake.base_url
    )
    provider = make_provider(DestinationPolicy())
    with pytest.raises(ProviderError):
        provider.register_client({"instance": fake.base_url}, REDIRECT_URI)
    assert fake.requests == []


# --------------------------------------------------------------------------- text


def test_status_length_counts_urls_as_reserved_characters():
    url = "https://example.org/" + "p" * 200
    assert status_length(f"see {url}") == 4 + 23
    assert status_length(f"see {url}.", characters_reserved_per_url=30) == 4 + 30 + 1
    assert status_length(f"({url})") == 1 + 23 + 1
    assert status_length("hi @someone@example.social!") == len("hi @someone!")
    assert status_length("👩‍👩‍👧 e\u0301") == 3  # graphemes
    assert status_length("not a url: example.org/" + "x" * 10) == 33


def test_instance_limit_is_enforced_locally(provider, fake, link):
    provider.publish(link, Post(text="a" * 1000))
    before = len(fake.requests_to("/api/v1/statuses"))
    with pytest.raises(ProviderRejected, match="1001 characters"):
        provider.publish(link, Post(text="a" * 1001))
    assert len(fake.requests_to("/api/v1/statuses")) == before
    assert fake.published_texts() == ["a" * 1000]


def test_urls_count_as_23_when_publishing(provider, fake, link):
    url = "https://example.org/" + "p" * 300
    text = "a" * 976 + " " + url  # 976 + 1 + 23 = 1000 as Mastodon counts it
    assert len(text) > 1000
    provider.publish(link, Post(text=text))
    assert fake.published_texts() == [text]
    with pytest.raises(ProviderRejected):
        provider.publish(link, Post(text="a" + text))


def test_content_warning_counts_toward_the_limit(provider, fake, link):
    with pytest.raises(ProviderRejected):
        provider.publish(link, Post(text="a" * 995, options={"spoiler_text": "spoiler"}))
    post = Post(text="a" * 990, options={"spoiler_text": "CW", "visibility": "unlisted"})
    published = provider.publish(link, post)
    status = fake.statuses[published.external_id]
    assert (status.spoiler_text, status.visibility) == ("CW", "unlisted")


@pytest.mark.parametrize(
    "options",
    [{"visibility": "everyone"}, {"language": "English"}, {"sensitive": "yes"}, {"poll": "x"}],
)
def test_bad_options_are_refused(provider, fake, link, options):
    with pytest.raises(ProviderRejected):
        provider.publish(link, Post(text="x", options=options))
    assert fake.requests_to("/api/v1/statuses") == []


def test_link_is_appended(provider, fake, link):
    provider.publish(link, Post(text="Read this", link="https://example.org/a"))
    assert fake.published_texts() == ["Read this\n\nhttps://example.org/a"]


# --------------------------------------------------------------------------- media


def test_media_is_polled_until_processed(provider, fake, link):
    fake.media_polls = 2
    image = MediaItem("cat.png", "image/png", PNG, alt_text="A cat")
    published = provider.publish(link, Post(text="with media", media=(image,)))

    (upload,) = fake.requests_to("/api/v2/media")
    assert b'name="file"; filename="cat.png"' in upload.body
    (media_id,) = fake.media
    polls = fake.requests_to(f"/api/v1/media/{media_id}")
    assert len(polls) == 2
    status = fake.statuses[published.external_id]
    assert status.media_ids == [media_id]
    assert fake.media[media_id].description == "A cat"
    (post_call,) = fake.requests_to("/api/v1/statuses")
    assert post_call.at > polls[-1].at


def test_media_still_processing_is_retryable(provider, fake, link):
    fake.media_polls = 10_000
    provider.media_poll_timeout = 0.2
    image = MediaItem("cat.png", "image/png", PNG)
    with pytest.raises(ProviderRetryable, match="processing"):
        provider.publish(link, Post(text="slow", media=(image,)))
    assert fake.published_texts() == []


@pytest.mark.parametrize(
    ("media", "message"),
    [
        ((MediaItem("a.png", "image/png", PNG),) * 7, "at most 6"),
        ((MediaItem("a.webp", "image/webp", PNG),), "does not take"),
        ((MediaItem("big.png", "image/png", b"x" * 2_000_001),), "larger"),
        ((MediaItem("v.mp4", "video/mp4", b"v"), MediaItem("a.png", "image/png", PNG)), "video"),
        ((MediaItem("a.png", "image/png", PNG, alt_text="x" * 1501),), "alt text"),
    ],
)
def test_media_outside_the_instance_limits_is_refused_locally(provider, fake, link, media, message):
    with pytest.raises(ProviderRejected, match=message):
        provider.publish(link, Post(text="x", media=media))
    assert fake.requests_to("/api/v2/media") == []


# --------------------------------------------------------------------------- statuses


def test_idempotency_key_prevents_a_second_status(provider, fake, link):
    post = Post(text="only once", idempotency_key="publication-42")
    first = provider.publish(link, post)
    second = provider.publish(link, post)
    assert first.external_id == second.external_id
    assert fake.published_texts() == ["only once"]
    keys = [r.headers.get("idempotency-key") for r in fake.requests_to("/api/v1/statuses")]
    assert keys == ["publication-42", "publication-42"]


def test_delete_twice_and_status_after_delete(provider, fake, link):
    published = provider.publish(link, Post(text="to delete"))
    assert published.url == f"{fake.base_url}/@plexus/{published.external_id}"
    assert provider.fetch_status(link, published.external_id).state is PostState.PUBLISHED
    provider.delete(link, published.external_id)
    provider.delete(link, published.external_id)
    assert provider.fetch_status(link, published.external_id).state is PostState.DELETED
    with pytest.raises(ProviderRejected):
        provider.fetch_status(link, "../../apps")


# --------------------------------------------------------------------------- errors


def test_rate_limit_delay_comes_from_the_reset_header(provider, fake, link):
    fake.rate_limit = 2  # connecting used one call (verify_credentials)
    fake.rate_window = 120
    provider.publish(link, Post(text="first"))
    with pytest.raises(ProviderRetryable) as caught:
        provider.publish(link, Post(text="second"))
    assert caught.value.rate_limited
    assert caught.value.retry_after is not None
    assert 110 < caught.value.retry_after <= 120


def test_missing_scope_needs_reauth(provider, fake):
    link = connect(provider, fake, scopes=["read:accounts"])
    with pytest.raises(ProviderNeedsReauth, match="scopes"):
        provider.publish(link, Post(text="no write scope"))


def test_server_validation_is_rejected(provider, fake, link):
    fake.config.max_characters = 10  # the server tightened its limit after we read it
    with pytest.raises(ProviderRejected, match="character limit of 10"):
        provider.publish(link, Post(text="eleven chars"))
