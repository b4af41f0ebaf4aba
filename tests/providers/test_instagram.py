"""The Instagram provider against the local Graph API fake."""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import replace
from datetime import UTC, datetime, timedelta
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
    ProviderRetryable,
    ProviderSettings,
    ProviderTokenExpired,
    ProviderUnavailable,
)
from plexus.providers.instagram import InstagramProvider
from plexus.providers.testing import Fault, ProviderContract

from fake_helpers import running
from instagram_fake import LONG_LIVED, VERSION, InstagramFake

JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 64 + b"\xff\xd9"
MP4 = b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64
REDIRECT = "https://plexus.example/api/v1/connections/callback"


def photo(n: int = 1) -> MediaItem:
    return MediaItem(
        f"photo-{n}.jpg", "image/jpeg", JPEG, public_url=f"https://i.imgur.com/p{n}.jpg"
    )


def video() -> MediaItem:
    return MediaItem("clip.mp4", "video/mp4", MP4, public_url="https://cdn.example/clip.mp4")


def build(fake: InstagramFake, **extra: str) -> InstagramProvider:
    settings = {
        "graph_url": fake.base_url,
        "client_id": fake.client_id,
        "client_secret": fake.client_secret,
        "poll_interval_seconds": "0.01",
        "publish_deadline_seconds": "2",
        **extra,
    }
    return InstagramProvider(
        ProviderContext(settings=ProviderSettings(settings), timeout=httpx.Timeout(1.0))
    )


def flow(params: dict[str, str] | None = None) -> AuthorizationRequest:
    return AuthorizationRequest(
        redirect_uri=REDIRECT,
        state=secrets.token_urlsafe(16),
        code_verifier=secrets.token_urlsafe(48),
        nonce=None,
        params=params or {},
        client=OAuthClient(InstagramFake.client_id, InstagramFake.client_secret),
    )


def challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@pytest.fixture
def fake():
    platform = InstagramFake()
    with running(platform):
        yield platform


@pytest.fixture
def provider(fake):
    return build(fake)


@pytest.fixture
def user(fake):
    return fake.add_user()


@pytest.fixture
def link(fake, user):
    account = fake.ig_accounts_of(user)[0]
    return Link(
        credentials=Credentials(
            access_token=fake.issue_token(user),
            expires_at=datetime.now(UTC) + timedelta(days=59),
        ),
        account=Account(
            external_id=account.id,
            display_name=f"@{account.username}",
            settings={"ig_user_id": account.id, "page_id": account.page_id},
        ),
        client=OAuthClient(fake.client_id, fake.client_secret),
    )


class TestInstagramContract(ProviderContract):
    def sample_post(self, text: str) -> Post:
        return Post(text=text, media=(photo(),))


# ---- connecting


def test_authorization_url_carries_the_scopes_pkce_and_state(provider):
    request = flow()
    url = provider.start_authorization(request).url
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == (
        f"https://www.facebook.com/{VERSION}/dialog/oauth"
    )
    assert query["scope"].split(",") == [
        "instagram_basic",
        "instagram_content_publish",
        "pages_show_list",
        "pages_read_engagement",
    ]
    assert query["state"] == request.state
    assert query["code_challenge_method"] == "S256"
    assert query["code_challenge"] == challenge(request.code_verifier)
    assert query["response_type"] == "code"
    assert query["client_id"] == InstagramFake.client_id
    assert query["redirect_uri"] == REDIRECT
    assert "config_id" not in query


def test_login_configuration_is_passed_when_set(fake):
    url = build(fake, login_config_id="987").start_authorization(flow()).url
    assert parse_qs(urlsplit(url).query)["config_id"] == ["987"]


def test_code_exchange_then_long_lived_token_then_account(fake, provider, user):
    request = flow()
    code = fake.authorize(user, REDIRECT, challenge(request.code_verifier))
    connected = provider.finish_authorization(request, {"code": code, "state": request.state}, {})
    account = fake.ig_accounts_of(user)[0]
    assert connected.account.external_id == account.id
    assert connected.account.display_name == "@plexus_test"
    assert connected.account.url == "https://www.instagram.com/plexus_test/"
    assert connected.account.settings["page_id"] == account.page_id
    token = connected.credentials.access_token
    assert token is not None
    assert fake.tokens[token].long_lived
    assert connected.credentials.refresh_token is None
    expires_at = connected.credentials.expires_at
    assert expires_at is not None
    assert expires_at - datetime.now(UTC) > timedelta(days=59)
    exchanges = [r for r in fake.requests_to("/oauth/access_token") if r.method == "POST"]
    assert len(exchanges) == 2
    second = parse_qs(exchanges[1].body.decode())
    assert second["grant_type"] == ["fb_exchange_token"]
    # The app secret travels in the body, never in a URL.
    assert all(fake.client_secret not in r.query for r in fake.requests)


def test_a_wrong_code_verifier_is_refused(fake, provider, user):
    request = flow()
    code = fake.authorize(user, REDIRECT, challenge("another verifier entirely"))
    with pytest.raises(ProviderRejected):
        provider.finish_authorization(request, {"code": code}, {})


def test_several_accounts_need_a_choice(fake, provider):
    user = fake.add_user(usernames=("first_shop", "second_shop"))
    token = fake.issue_token(user, long_lived=False)
    with pytest.raises(ProviderRejected, match="@first_shop, @second_shop"):
        provider.complete_connection(Credentials(access_token=token), {})
    connected = provider.complete_connection(
        Credentials(access_token=token), {"instagram_account": "@Second_Shop"}
    )
    assert connected.account.display_name == "@second_shop"


def test_pages_without_instagram_are_refused(fake, provider):
    user = fake.add_user(usernames=())
    token = fake.issue_token(user, long_lived=False)
    with pytest.raises(ProviderRejected, match="Instagram professional account"):
        provider.complete_connection(Credentials(access_token=token), {})


# ---- tokens


def test_refresh_re_exchanges_the_long_lived_token(fake, provider, link):
    link = Link(
        credentials=Credentials(
            access_token=link.credentials.access_token,
            expires_at=datetime.now(UTC) + timedelta(days=3),
        ),
        account=link.account,
        client=link.client,
    )
    assert provider.can_refresh(link)
    renewed = provider.refresh(link)
    assert renewed.access_token != link.credentials.access_token
    assert renewed.expires_at is not None
    assert renewed.expires_at - datetime.now(UTC) > timedelta(days=59)
    assert provider.check_connection(Link(renewed, link.account)).external_id == (
        link.account.external_id
    )


def test_a_token_facebook_does_not_extend_needs_reauth_near_its_end(fake, provider, user):
    fake.extend_long_lived = False
    token = fake.issue_token(user)
    fake.tokens[token].expires_at -= LONG_LIVED - 120  # two minutes left
    link = Link(
        credentials=Credentials(
            access_token=token, expires_at=datetime.now(UTC) + timedelta(seconds=120)
        ),
        account=Account(external_id=fake.ig_accounts_of(user)[0].id, display_name="@x"),
    )
    with pytest.raises(ProviderNeedsReauth, match="did not extend"):
        provider.refresh(link)


def test_an_expired_token_cannot_be_refreshed(fake, provider, link):
    expired = Link(
        credentials=Credentials(
            access_token=link.credentials.access_token,
            expires_at=datetime.now(UTC) - timedelta(minutes=1),
        ),
        account=link.account,
    )
    assert not provider.can_refresh(expired)
    before = len(fake.requests)
    with pytest.raises(ProviderNeedsReauth):
        provider.refresh(expired)
    assert len(fake.requests) == before


def test_facebook_refusing_the_exchange_needs_reauth(fake, provider, link):
    fake.expire(link.credentials.access_token)
    with pytest.raises(ProviderNeedsReauth):
        provider.refresh(link)


def test_expired_token_is_reported_as_expired(fake, provider, link):
    fake.expire(link.credentials.access_token)
    with pytest.raises(ProviderTokenExpired):
        provider.publish(link, Post(text="hello", media=(photo(),)))


def test_revoke_ends_the_token(fake, provider, link):
    assert provider.can_revoke(link)
    provider.revoke(link)
    assert link.credentials.access_token in fake.revoked_tokens()
    with pytest.raises(ProviderNeedsReauth):
        provider.check_connection(link)
    provider.revoke(link)  # a second disconnect finds nothing to revoke and is fine


def test_tokens_never_travel_in_urls_and_calls_are_signed(fake, provider, link):
    provider.publish(link, Post(text="signed", media=(photo(),)))
    token = link.credentials.access_token
    assert token is not None
    api = [r for r in fake.requests if "/oauth/" not in r.path]
    assert api
    for recorded in api:
        assert token not in recorded.query
        assert token not in recorded.path
        assert recorded.headers["authorization"] == f"Bearer {token}"
        assert "appsecret_proof" in recorded.query or b"appsecret_proof" in recorded.body


# ---- publishing


def test_single_image_is_published_with_its_caption(fake, provider, link):
    described = MediaItem(
        "cat.jpg", "image/jpeg", JPEG, alt_text="a cat", public_url="https://i.imgur.com/c.jpg"
    )
    published = provider.publish(link, Post(text="A photo #plexus", media=(described,)))
    create = next(r for r in fake.requests if r.path.endswith("/media"))
    assert parse_qs(create.body.decode())["alt_text"] == ["a cat"]
    media = fake.media[published.external_id]
    assert media.caption == "A photo #plexus"
    assert media.media_type == "IMAGE"
    assert published.url == media.permalink
    status = provider.fetch_status(link, published.external_id)
    assert status.state is PostState.PUBLISHED
    assert status.url == media.permalink


def test_carousel_of_three(fake, provider, link):
    post = Post(text="Three in a row", media=(photo(1), photo(2), photo(3)))
    published = provider.publish(link, post)
    media = fake.media[published.external_id]
    assert media.media_type == "CAROUSEL"
    assert len(media.children) == 3
    children = [fake.containers[c] for c in media.children]
    assert all(c.carousel_item for c in children)
    assert [c.url for c in children] == [f"https://i.imgur.com/p{n}.jpg" for n in (1, 2, 3)]
    assert all(c.caption == "" for c in children)
    assert media.caption == "Three in a row"


def test_carousel_mixes_images_and_videos(fake, provider, link):
    published = provider.publish(link, Post(text="Mixed", media=(photo(), video())))
    children = [fake.containers[c] for c in fake.media[published.external_id].children]
    assert [c.media_type for c in children] == ["IMAGE", "VIDEO"]


def test_carousel_of_eleven_is_refused_before_any_call(fake, provider, link):
    post = Post(text="Too many", media=tuple(photo(n) for n in range(11)))
    with pytest.raises(ProviderRejected, match="at most 10"):
        provider.publish(link, post)
    assert fake.requests == []


def test_reel_is_polled_until_finished(fake, provider, link):
    fake.polls_until_finished = 3
    published = provider.publish(link, Post(text="A reel", media=(video(),)))
    media = fake.media[published.external_id]
    assert media.media_type == "REELS"
    container_id = next(c.id for c in fake.containers.values() if c.media_type == "REELS")
    polls = fake.requests_to(f"/{container_id}")
    assert len([p for p in polls if p.method == "GET"]) == 4
    assert "status_code" in polls[0].query
    create = next(r for r in fake.requests_to("/media") if r.path.endswith("/media"))
    assert parse_qs(create.body.decode())["video_url"] == ["https://cdn.example/clip.mp4"]


def test_still_processing_at_the_deadline_is_retryable(fake, link):
    fake.polls_until_finished = 1000
    provider = build(fake, publish_deadline_seconds="0.1", poll_interval_seconds="0.03")
    with pytest.raises(ProviderRetryable) as caught:
        provider.publish(link, Post(text="A slow reel", media=(video(),)))
    assert caught.value.retry_after
    assert fake.requests_to("/media_publish") == []
    assert fake.published_texts() == []


def test_container_error_is_rejected(fake, provider, link):
    fake.container_outcome = "ERROR"
    with pytest.raises(ProviderRejected, match="could not process"):
        provider.publish(link, Post(text="Broken", media=(photo(),)))
    assert fake.requests_to("/media_publish") == []


def test_used_up_quota_is_retryable_without_a_container(fake, provider, link, user):
    fake.ig_accounts_of(user)[0].quota_usage = 50
    with pytest.raises(ProviderRetryable) as caught:
        provider.publish(link, Post(text="One too many", media=(photo(),)))
    assert caught.value.rate_limited
    assert [r for r in fake.requests if r.path.endswith("/media")] == []


def test_business_use_case_delay_is_read_in_minutes(fake, provider, link):
    fake.regain_minutes = 2
    fake.arm(Fault.RATE_LIMITED)
    with pytest.raises(ProviderRetryable) as caught:
        provider.publish(link, Post(text="Throttled", media=(photo(),)))
    assert caught.value.rate_limited
    assert caught.value.retry_after == 120


@pytest.mark.parametrize(
    ("post", "reason"),
    [
        (Post(text="no media"), "at least one"),
        (Post(text="x", media=(MediaItem("a.png", "image/png", b"\x89PNG"),)), "JPEG"),
        (Post(text="x", media=(MediaItem("a.jpg", "image/jpeg", JPEG),)), "public https URL"),
        (
            Post(
                text="x",
                media=(MediaItem("a.jpg", "image/jpeg", JPEG, public_url="http://i.example/a"),),
            ),
            "public https URL",
        ),
        (Post(text=" ".join(f"#tag{n}" for n in range(31)), media=(photo(),)), "30 hashtags"),
        (Post(text=" ".join(f"@user{n}" for n in range(21)), media=(photo(),)), "20 @mentions"),
        (Post(text="x" * 2201, media=(photo(),)), "2200"),
        (Post(text="x", media=(photo(),), options={"share_to_feed": "maybe"}), "share_to_feed"),
    ],
)
def test_local_checks_refuse_before_any_call(fake, provider, link, post, reason):
    with pytest.raises(ProviderRejected, match=reason):
        provider.publish(link, post)
    assert fake.requests == []


def test_thirty_hashtags_and_twenty_mentions_pass(fake, provider, link):
    text = " ".join(f"#tag{n}" for n in range(30)) + " " + " ".join(f"@u{n}" for n in range(20))
    text += " write to me@example.com"
    published = provider.publish(link, Post(text=text, media=(photo(),)))
    assert fake.media[published.external_id].caption == text


def test_status_of_media_gone_from_instagram(provider, link):
    status = provider.fetch_status(link, "17999999999999999")
    assert status.state is PostState.DELETED


def test_a_wrong_app_secret_is_an_operator_problem(fake, link):
    provider = build(fake, client_secret="not-the-app-secret")
    with pytest.raises(ProviderUnavailable, match="CLIENT_SECRET"):
        provider.refresh(link)


def test_a_link_without_a_token_is_not_revocable_and_revoke_sends_nothing(fake, provider, link):
    tokenless = replace(link, credentials=replace(link.credentials, access_token=None))
    assert not provider.can_revoke(tokenless)
    before = len(fake.requests)
    provider.revoke(tokenless)
    assert len(fake.requests) == before


# ---- limits and the publishing quota


def test_capabilities_carry_instagrams_documented_limits(provider):
    caps = provider.limits_for(Account(external_id="1", display_name="@x"))
    assert caps.text.max_length == 2200
    assert caps.text.max_hashtags == 30
    assert caps.media.image_types == frozenset({"image/jpeg"})
    assert caps.media.max_image_bytes == 8 * 1024 * 1024
    assert caps.media.min_aspect_ratio == 0.8
    assert caps.media.max_aspect_ratio == 1.91
    assert caps.media.max_video_seconds == 900
    assert caps.media.max_items == 10
    assert caps.daily_post_cap == 50


def test_publishing_quota_is_what_is_left_of_the_24_hours(fake, provider, link, user):
    fake.ig_accounts_of(user)[0].quota_usage = 47
    assert provider.publishing_quota(link) == 3
    asked = fake.requests_to("/content_publishing_limit")[-1]
    assert set(parse_qs(asked.query)["fields"][0].split(",")) == {"quota_usage", "config"}


def test_publishing_quota_counts_down_with_each_post(fake, provider, link):
    assert provider.publishing_quota(link) == 50
    provider.publish(link, Post(text="One", media=(photo(),)))
    assert provider.publishing_quota(link) == 49


def test_a_used_up_quota_is_zero_never_negative(fake, provider, link, user):
    account = fake.ig_accounts_of(user)[0]
    account.quota_total = 25
    account.quota_usage = 30
    assert provider.publishing_quota(link) == 0


def test_publishing_quota_needs_a_valid_token(fake, provider, link):
    fake.expire(link.credentials.access_token)
    with pytest.raises(ProviderTokenExpired):
        provider.publishing_quota(link)
