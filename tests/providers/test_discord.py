"""The Discord provider against the local Discord fake: the shared contract, once for a
pasted webhook and once for a webhook created through OAuth2, and Discord's specifics.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import replace
from email.parser import BytesParser
from email.policy import HTTP
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from plexus.content.render import render_rich
from plexus.providers.base import (
    AuthorizationRequest,
    Link,
    MediaItem,
    Post,
    PostState,
    ProviderContext,
    ProviderNeedsReauth,
    ProviderRejected,
    ProviderRetryable,
    ProviderSettings,
    ProviderUnavailable,
    SpanKind,
    TextSpan,
)
from plexus.providers.discord import DiscordProvider
from plexus.providers.testing import Fault, ProviderContract

from discord_fake import DiscordFake
from fake_helpers import running

REDIRECT_URI = "https://plexus.example/connections/callback"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
JPEG = b"\xff\xd8\xff\xe0" + b"\x01" * 64


@pytest.fixture
def fake():
    platform = DiscordFake()
    with running(platform):
        yield platform


def build_provider(fake: DiscordFake, **extra: str) -> DiscordProvider:
    values = {
        "api_url": f"{fake.base_url}/api/v10",
        "client_id": fake.client_id,
        "client_secret": fake.client_secret,
        **extra,
    }
    context = ProviderContext(settings=ProviderSettings(values), timeout=httpx.Timeout(1.0))
    return DiscordProvider(context)


def authorization_request(provider: DiscordProvider) -> AuthorizationRequest:
    return AuthorizationRequest(
        redirect_uri=REDIRECT_URI,
        state="state-" + "s" * 20,
        code_verifier="v" * 64,
        nonce=None,
        params={},
        client=provider.oauth_client({}),
    )


def connect_through_oauth(provider: DiscordProvider, fake: DiscordFake) -> Link:
    request = authorization_request(provider)
    start = provider.start_authorization(request)
    code = fake.approve(start.url)
    connected = provider.finish_authorization(
        request, {"code": code, "state": request.state}, start.flow_data
    )
    return Link(credentials=connected.credentials, account=connected.account, client=request.client)


def last_execute(fake: DiscordFake):
    return [r for r in fake.requests if r.method == "POST" and "/webhooks/" in r.path][-1]


def multipart_parts(recorded) -> dict[str, tuple[str | None, str, bytes]]:
    """name -> (filename, content type, bytes) of a recorded multipart request."""
    head = f"Content-Type: {recorded.headers['content-type']}\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + recorded.body)
    parts = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        parts[name] = (part.get_filename(), part.get_content_type(), part.get_payload(decode=True))
    return parts


class TestDiscordPastedWebhook(ProviderContract):
    # A pasted webhook is the user's own and may feed other tools: disconnecting forgets
    # it in Plexus but neither deletes it nor has any token to revoke at Discord.
    supports_revocation = False

    @pytest.fixture
    def provider(self, fake):
        return build_provider(fake)

    @pytest.fixture
    def link(self, provider, fake):
        connected = provider.connect_with_fields({"webhook_url": fake.webhook.discord_url})
        return Link(credentials=connected.credentials, account=connected.account)


class TestDiscordOAuthWebhook(ProviderContract):
    @pytest.fixture
    def provider(self, fake):
        return build_provider(fake)

    @pytest.fixture
    def link(self, provider, fake):
        return connect_through_oauth(provider, fake)


# ---- pasted webhook URLs


@pytest.mark.parametrize(
    "template",
    [
        "",
        "   ",
        "not a url",
        "http://discord.com/api/webhooks/{id}/{token}",
        "https://evil.example/api/webhooks/{id}/{token}",
        "https://discord.com.evil.example/api/webhooks/{id}/{token}",
        "https://evildiscord.com/api/webhooks/{id}/{token}",
        "https://user:pw@discord.com/api/webhooks/{id}/{token}",
        "https://discord.com@evil.example/api/webhooks/{id}/{token}",
        "https://discord.com:8443/api/webhooks/{id}/{token}",
        "https://discord.com/api/webhooks/{id}/{token}?wait=true",
        "https://discord.com/api/webhooks/{id}/{token}#x",
        "https://discord.com/api/webhooks/{id}/{token}/extra",
        "https://discord.com/api/webhooks/{id}",
        "https://discord.com/webhooks/{id}/{token}",
        "https://discord.com/api/webhooks/abc/{token}",
        "https://discord.com/api/webhooks/{id}/short",
        "https://discord.com/api/webhooks/{id}/{token}\nX-Injected: 1",
        "https://discord.com/api/webhooks/{id}/../../users/@me",
        "https://dіscord.com/api/webhooks/{id}/{token}",  # noqa: RUF001 - a Cyrillic letter on purpose
    ],
)
def test_connect_refuses_anything_but_a_discord_webhook_url(fake, template):
    provider = build_provider(fake)
    hook = fake.webhook
    raw = template.format(id=hook.id, token=hook.token)
    with pytest.raises(ProviderRejected) as caught:
        provider.connect_with_fields({"webhook_url": raw})
    assert hook.token not in str(caught.value)
    assert fake.requests == [], "a refused URL is never contacted"


def test_connect_without_the_field_is_refused(fake):
    with pytest.raises(ProviderRejected):
        build_provider(fake).connect_with_fields({})


@pytest.mark.parametrize(
    "host", ["discord.com", "discordapp.com", "ptb.discord.com", "canary.discord.com"]
)
def test_pasted_discord_hosts_are_accepted_but_never_contacted(fake, host):
    hook = fake.webhook
    provider = build_provider(fake)
    connected = provider.connect_with_fields(
        {"webhook_url": f"https://{host}/api/v10/webhooks/{hook.id}/{hook.token}"}
    )
    assert connected.account.external_id == hook.id
    assert connected.account.settings["origin"] == "pasted"
    assert connected.account.settings["channel_id"] == fake.channel_id
    # Whatever host was pasted, what is kept is the canonical discord.com URL, and the
    # request went to the operator's API base (the fake), not to the pasted host.
    assert connected.credentials.secrets["webhook_url"] == hook.discord_url
    assert [r.path for r in fake.requests] == [f"/api/v10/webhooks/{hook.id}/{hook.token}"]


def test_pasted_url_on_the_operators_test_host_is_accepted(fake):
    hook = fake.webhook
    provider = build_provider(fake)
    connected = provider.connect_with_fields(
        {"webhook_url": f"{fake.base_url}/api/webhooks/{hook.id}/{hook.token}"}
    )
    assert connected.account.external_id == hook.id


def test_pasted_url_on_another_local_host_is_refused(fake):
    hook = fake.webhook
    provider = build_provider(fake)
    other = fake.base_url.replace("127.0.0.1", "localhost")
    with pytest.raises(ProviderRejected):
        provider.connect_with_fields(
            {"webhook_url": f"{other}/api/webhooks/{hook.id}/{hook.token}"}
        )
    assert fake.requests == []


def test_without_an_api_url_setting_only_discord_hosts_are_accepted(fake):
    hook = fake.webhook
    provider = DiscordProvider(ProviderContext(timeout=httpx.Timeout(1.0)))
    with pytest.raises(ProviderRejected):
        provider.connect_with_fields(
            {"webhook_url": f"{fake.base_url}/api/webhooks/{hook.id}/{hook.token}"}
        )
    assert fake.requests == []


def test_unknown_or_wrong_token_webhook_is_refused_at_connect(fake):
    hook = fake.webhook
    provider = build_provider(fake)
    wrong_token = "x" * len(hook.token)
    for url in (
        f"https://discord.com/api/webhooks/{hook.id}/{wrong_token}",
        f"https://discord.com/api/webhooks/1234567890123456789/{hook.token}",
    ):
        with pytest.raises(ProviderRejected, match="does not know this webhook"):
            provider.connect_with_fields({"webhook_url": url})


# ---- posting


@pytest.fixture
def provider(fake):
    return build_provider(fake)


@pytest.fixture
def link(provider, fake):
    connected = provider.connect_with_fields({"webhook_url": fake.webhook.discord_url})
    return Link(credentials=connected.credentials, account=connected.account)


def test_publish_waits_for_the_message_and_links_to_it(provider, link, fake):
    published = provider.publish(link, Post(text="hello", link="https://plexus.example/a"))
    message = fake.messages[published.external_id]
    assert message.content == "hello\nhttps://plexus.example/a"
    assert published.url == (
        f"https://discord.com/channels/{fake.guild_id}/{fake.channel_id}/{published.external_id}"
    )
    assert parse_qs(last_execute(fake).query) == {"wait": ["true"]}


def test_allowed_mentions_parse_nothing(provider, link, fake):
    published = provider.publish(link, Post(text="@everyone @here <@&123> look"))
    sent = json.loads(last_execute(fake).body)
    assert sent["allowed_mentions"] == {"parse": []}
    assert fake.messages[published.external_id].mention_everyone is False


def test_spans_are_sent_as_discord_markdown_with_the_rest_escaped(provider, link, fake):
    assert provider.capabilities.rich_text is True
    rendered = render_rich(
        "**Launch** of *v2* ~~soon~~ `cfg_value` [notes](https://notes.example/a_b) "
        "<https://x.example>\n\nnot_markup *here* @everyone [x](javascript:alert(1))"
    )
    # The italic and link spans above are real; these characters only look like markup.
    text = rendered.text.replace("here", "*here*")
    spans = tuple(s for s in rendered.spans if s.start < text.index("not_markup"))
    published = provider.publish(link, Post(text=text, spans=spans, link="https://plexus.example"))
    sent = json.loads(last_execute(fake).body)
    assert sent["allowed_mentions"] == {"parse": []}
    assert sent["content"] == (
        "**Launch** of *v2* ~~soon~~ `cfg_value` [notes](<https://notes.example/a_b>) "
        "<https://x.example>\n\nnot\\_markup \\*here\\* @\u200beveryone x"
        "\nhttps://plexus.example"
    )
    message = fake.messages[published.external_id]
    assert message.content == sent["content"]
    assert message.mention_everyone is False


def test_a_post_without_spans_is_plain_text_its_markup_characters_escaped(provider, link, fake):
    published = provider.publish(link, Post(text="*as* _is_"))
    assert fake.messages[published.external_id].content == "\\*as\\* \\_is\\_"


def test_formatting_that_pushes_the_text_over_2000_is_refused_before_sending(provider, link, fake):
    text = "*" * 1500
    before = len(fake.requests)
    with pytest.raises(ProviderRejected, match="3004 characters; Discord allows 2000"):
        provider.publish(link, Post(text=text, spans=(TextSpan(SpanKind.BOLD, 0, 1),)))
    assert len(fake.requests) == before


def test_attachments_go_as_multipart_files_with_alt_text(provider, link, fake):
    post = Post(
        text="two pictures",
        media=(
            MediaItem("chart.png", "image/png", PNG, alt_text="A rising line"),
            MediaItem("../../etc/photo.jpg", "image/jpeg", JPEG),
        ),
    )
    published = provider.publish(link, post)
    recorded = last_execute(fake)
    assert recorded.headers["content-type"].startswith("multipart/form-data")
    parts = multipart_parts(recorded)
    assert parts["files[0]"] == ("chart.png", "image/png", PNG)
    assert parts["files[1]"] == ("photo.jpg", "image/jpeg", JPEG)
    payload = json.loads(parts["payload_json"][2])
    assert payload["allowed_mentions"] == {"parse": []}
    assert payload["attachments"] == [
        {"id": 0, "filename": "chart.png", "description": "A rising line"},
        {"id": 1, "filename": "photo.jpg"},
    ]
    message = fake.messages[published.external_id]
    assert [(a.filename, a.data, a.description) for a in message.attachments] == [
        ("chart.png", PNG, "A rising line"),
        ("photo.jpg", JPEG, None),
    ]


def test_media_only_post_is_accepted(provider, link, fake):
    published = provider.publish(link, Post(text="", media=(MediaItem("a.png", "image/png", PNG),)))
    assert fake.messages[published.external_id].attachments


def test_more_than_ten_files_are_refused_before_uploading(provider, link, fake):
    media = tuple(MediaItem(f"{i}.png", "image/png", PNG) for i in range(11))
    before = len(fake.requests)
    with pytest.raises(ProviderRejected, match="at most 10"):
        provider.publish(link, Post(text="too many", media=media))
    assert len(fake.requests) == before


def test_oversized_or_unsupported_files_are_refused_before_uploading(provider, link, fake):
    before = len(fake.requests)
    big = MediaItem("big.png", "image/png", b"\x00" * (10 * 1024 * 1024 + 1))
    with pytest.raises(ProviderRejected, match="10 MiB"):
        provider.publish(link, Post(text="big", media=(big,)))
    with pytest.raises(ProviderRejected):
        provider.publish(
            link, Post(text="exe", media=(MediaItem("a.exe", "application/x", b"MZ"),))
        )
    assert len(fake.requests) == before


def test_embed_and_username_options(provider, link, fake):
    options = {
        "username": "Plexus bot",
        "embed_title": "Release notes",
        "embed_description": "What changed",
        "embed_url": "https://plexus.example/notes",
        "embed_color": "#5865F2",
    }
    published = provider.publish(link, Post(text="new release", options=options))
    sent = json.loads(last_execute(fake).body)
    assert sent["username"] == "Plexus bot"
    assert sent["embeds"] == [
        {
            "title": "Release notes",
            "description": "What changed",
            "url": "https://plexus.example/notes",
            "color": 0x5865F2,
        }
    ]
    assert fake.messages[published.external_id].payload["embeds"][0]["title"] == "Release notes"


@pytest.mark.parametrize(
    "options",
    [{"color": "red"}, {"embed_url": "javascript:alert(1)"}, {"embed_color": "blue"}],
)
def test_unknown_or_invalid_options_are_refused(provider, link, fake, options):
    before = len(fake.requests)
    with pytest.raises(ProviderRejected):
        provider.publish(link, Post(text="x", options=options))
    assert len(fake.requests) == before


def test_discord_form_errors_become_a_short_reason(provider, link, fake):
    # Plexus refuses content over 2,000 characters itself; a title too long for an embed
    # is refused by Discord.
    with pytest.raises(ProviderRejected) as caught:
        provider.publish(link, Post(text="y", options={"embed_title": "t" * 257}))
    assert "Invalid Form Body" in caught.value.reason
    assert "embeds.0.title: Must be 256 or fewer in length." in caught.value.reason
    assert "50035" in caught.value.reason
    assert len(caught.value.reason) < 220


def test_text_at_the_limit_is_accepted(provider, link, fake):
    text = "é" * 1999 + "😀"  # 2000 code points
    provider.publish(link, Post(text=text))
    assert text in fake.published_texts()


def test_webhook_name_with_discord_in_it_is_rejected_by_discord(provider, link, fake):
    with pytest.raises(ProviderRejected, match="username"):
        provider.publish(link, Post(text="x", options={"username": "Discord Official"}))


def test_rate_limit_delay_comes_from_the_body_with_its_precision(provider, link, fake):
    fake.retry_after = 2.5
    fake.arm(Fault.RATE_LIMITED)
    with pytest.raises(ProviderRetryable) as caught:
        provider.publish(link, Post(text="slow down"))
    assert caught.value.rate_limited
    assert caught.value.retry_after == 2.5


def test_deleted_webhook_needs_reauth(provider, link, fake):
    fake.webhook.deleted = True
    with pytest.raises(ProviderNeedsReauth, match="deleted"):
        provider.publish(link, Post(text="into the void"))
    with pytest.raises(ProviderNeedsReauth):
        provider.check_connection(link)


def test_status_of_a_message_deleted_in_discord(provider, link, fake):
    published = provider.publish(link, Post(text="soon gone"))
    fake.messages[published.external_id].deleted = True
    assert provider.fetch_status(link, published.external_id).state is PostState.DELETED
    provider.delete(link, published.external_id)  # already gone: not an error


def test_foreign_message_ids_never_reach_the_path(provider, link, fake):
    before = len(fake.requests)
    for bad in ("../../", "1/../2", "abc", ""):
        with pytest.raises(ProviderRejected):
            provider.delete(link, bad)
    assert len(fake.requests) == before


def test_secrets_stay_out_of_reprs(provider, link, fake):
    assert fake.webhook.token not in repr(link)
    assert fake.webhook.token not in repr(provider)
    assert fake.client_secret not in repr(provider.context)


# ---- OAuth2


def test_authorization_url_has_exactly_the_webhook_scope_and_s256_pkce(fake):
    provider = build_provider(fake)
    request = authorization_request(provider)
    url = urlsplit(provider.start_authorization(request).url)
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert (url.scheme, url.netloc, url.path) == ("https", "discord.com", "/oauth2/authorize")
    assert query["scope"] == "webhook.incoming"
    assert query["response_type"] == "code"
    assert query["client_id"] == fake.client_id
    assert query["redirect_uri"] == REDIRECT_URI
    assert query["state"] == request.state
    assert query["code_challenge_method"] == "S256"
    digest = hashlib.sha256(request.code_verifier.encode()).digest()
    assert query["code_challenge"] == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def test_callback_exchange_creates_a_webhook_connection(fake):
    provider = build_provider(fake)
    link = connect_through_oauth(provider, fake)
    created = fake.webhooks[link.account.external_id]
    assert created.application_id == fake.client_id
    assert link.account.settings["origin"] == "oauth"
    assert link.account.settings["guild_id"] == fake.guild_id
    assert link.credentials.secrets["webhook_url"] == created.discord_url
    assert link.credentials.refresh_token in fake.tokens
    assert link.credentials.expires_at is None
    assert provider.can_refresh(link) is False
    exchange = fake.requests_to("/oauth2/token")[0]
    form = parse_qs(exchange.body.decode())
    assert form["grant_type"] == ["authorization_code"]
    assert form["code_verifier"] == ["v" * 64]
    assert form["redirect_uri"] == [REDIRECT_URI]
    published = provider.publish(link, Post(text="through the new webhook"))
    assert fake.messages[published.external_id].webhook_id == created.id


def test_callback_with_a_wrong_verifier_is_refused(fake):
    provider = build_provider(fake)
    request = authorization_request(provider)
    code = fake.approve(provider.start_authorization(request).url)
    tampered = AuthorizationRequest(
        redirect_uri=request.redirect_uri,
        state=request.state,
        code_verifier="w" * 64,
        nonce=None,
        params={},
        client=request.client,
    )
    with pytest.raises(ProviderNeedsReauth, match="invalid_grant"):
        provider.finish_authorization(tampered, {"code": code, "state": request.state}, {})
    assert len(fake.webhooks) == 1


def test_callback_for_another_state_or_a_denial_is_refused(fake):
    provider = build_provider(fake)
    request = authorization_request(provider)
    with pytest.raises(ProviderRejected, match="does not belong"):
        provider.finish_authorization(request, {"code": "c", "state": "other"}, {})
    with pytest.raises(ProviderRejected, match="access_denied"):
        provider.finish_authorization(request, {"error": "access_denied"}, {})
    assert fake.requests == []


def test_grant_without_a_webhook_is_refused_and_given_back(fake):
    provider = build_provider(fake)
    request = authorization_request(provider)
    code = fake.approve(provider.start_authorization(request).url)
    fake.grants[code].scope = "identify"  # the user's grant lacked webhook.incoming
    with pytest.raises(ProviderRejected, match=r"webhook\.incoming"):
        provider.finish_authorization(request, {"code": code, "state": request.state}, {})
    assert fake.revoked_tokens(), "the useless grant is revoked"


def test_revoking_an_oauth_webhook_deletes_it_and_revokes_the_grant(fake):
    provider = build_provider(fake)
    link = connect_through_oauth(provider, fake)
    assert link.account.settings["origin"] == "oauth"
    assert provider.can_revoke(link)
    provider.revoke(link)
    assert fake.webhooks[link.account.external_id].deleted
    assert fake.revoked_tokens() == [link.credentials.refresh_token]
    revoke = fake.requests_to("/oauth2/token/revoke")[0]
    assert parse_qs(revoke.body.decode())["token_type_hint"] == ["refresh_token"]
    provider.revoke(link)  # again: the webhook is gone already, which is fine


def test_revoking_a_pasted_webhook_leaves_it_alone(provider, link, fake):
    assert link.account.settings["origin"] == "pasted"
    assert not provider.can_revoke(link)
    before = len(fake.requests)
    provider.revoke(link)
    assert len(fake.requests) == before
    assert not fake.webhook.deleted


def test_oauth_needs_the_operators_client(fake):
    provider = DiscordProvider(ProviderContext(settings=ProviderSettings({})))
    assert provider.is_configured(), "pasting a webhook URL needs no Discord application"
    with pytest.raises(ProviderUnavailable, match="PLEXUS_PROVIDER_DISCORD_CLIENT_ID"):
        provider.oauth_client({})


def test_oauth_client_secret_is_sent_only_to_the_token_endpoint(fake):
    provider = build_provider(fake)
    connect_through_oauth(provider, fake)
    for recorded in fake.requests:
        carries = fake.client_secret.encode() in recorded.body
        assert carries == recorded.path.startswith("/api/v10/oauth2/"), recorded.path


def test_default_spec_is_discords(fake):
    spec = DiscordProvider(ProviderContext()).oauth_spec({})
    assert spec.token_url == "https://discord.com/api/oauth2/token"
    assert spec.revoke_url == "https://discord.com/api/oauth2/token/revoke"


def test_a_misconfigured_api_base_is_not_blamed_on_the_user(fake):
    # A 404 without Discord's error body (a wrong api_url, a proxy) is not a deleted
    # webhook: reconnecting would not help, so it must not ask the user to.
    connected = build_provider(fake).connect_with_fields({"webhook_url": fake.webhook.discord_url})
    link = Link(credentials=connected.credentials, account=connected.account)
    misconfigured = build_provider(fake, api_url=f"{fake.base_url}/wrong")
    with pytest.raises(ProviderRejected):
        misconfigured.publish(link, Post(text="lost"))


@pytest.mark.parametrize(
    ("headers", "body", "expected"),
    [
        # Cloudflare's ban page: HTML, only Retry-After.
        ({"retry-after": "30"}, "<html>banned</html>", 30.0),
        # A bucket answer without a body delay: X-RateLimit-Reset-After.
        ({"x-ratelimit-reset-after": "1.250", "retry-after": "2"}, "{}", 1.25),
        # The body's retry_after wins over both headers.
        ({"x-ratelimit-reset-after": "9", "retry-after": "9"}, '{"retry_after": 0.5}', 0.5),
    ],
)
def test_rate_limit_delay_sources(headers, body, expected):
    from plexus.providers.discord.errors import error_for

    error = error_for(httpx.Response(429, headers=headers, text=body), "posting the message")
    assert isinstance(error, ProviderRetryable)
    assert error.rate_limited
    assert error.retry_after == expected


def test_global_rate_limit_is_named():
    from plexus.providers.discord.errors import error_for

    response = httpx.Response(429, json={"retry_after": 1.0, "global": True})
    assert "global" in str(error_for(response, "posting the message"))


def test_a_link_without_an_origin_is_not_revocable_and_revoke_sends_nothing(provider, link, fake):
    settings = {k: v for k, v in link.account.settings.items() if k != "origin"}
    unknown = replace(link, account=replace(link.account, settings=settings))
    assert not provider.can_revoke(unknown)
    before = len(fake.requests)
    provider.revoke(unknown)
    assert len(fake.requests) == before
