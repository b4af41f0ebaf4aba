"""The Bluesky provider against a real atproto PDS (npm ``@atproto/dev-env``) on loopback.

Every happy-path call goes to the real PDS; the contract's fault tests arm the recording
proxy in front of it (``PdsProxy``), which answers faults the way the PDS does.
"""

from __future__ import annotations

import json
import secrets
import struct
import zlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from plexus.kit.http import DestinationPolicy
from plexus.providers.base import (
    Account,
    AuthKind,
    AuthorizationRequest,
    Credentials,
    Link,
    MediaItem,
    Post,
    PostState,
    ProviderContext,
    ProviderNeedsReauth,
    ProviderRejected,
    ProviderRetryable,
    ProviderSettings,
    ProviderTokenExpired,
    SpanKind,
    TextCounting,
    TextSpan,
    text_length,
)
from plexus.providers.bluesky import BlueskyProvider, atproto_oauth, client_metadata, identity
from plexus.providers.testing import ProviderContract

from conftest import CI
from fake_helpers import running, serve_app
from pds_helpers import (  # noqa: F401 - pds_network_fixture is used by its name
    PdsAccount,
    PdsNetwork,
    PdsProxy,
    create_account,
    expired_copy,
    get_post,
    list_posts,
    pds_network_fixture,
    xrpc,
)

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("pds")]
LOOPBACK = DestinationPolicy.from_strings(["127.0.0.0/8"])


def tiny_png(width: int = 2, height: int = 2, rgb: tuple[int, int, int] = (0, 133, 255)) -> bytes:
    """A valid PNG image, built here (no image library needed)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def build(proxy: PdsProxy, network: PdsNetwork, **context: object) -> BlueskyProvider:
    settings = ProviderSettings(
        {"service": proxy.base_url, "plc_url": network.plc_url, "web_url": "https://bsky.app"}
    )
    options: dict[str, object] = {
        "settings": settings,
        "destinations": LOOPBACK,
        "timeout": httpx.Timeout(2.0),
        **context,
    }
    return BlueskyProvider(ProviderContext(**options))  # type: ignore[arg-type]


def connect(provider: BlueskyProvider, account: PdsAccount, service: str) -> Link:
    connected = provider.connect_with_fields(
        {"identifier": account.handle, "app_password": account.app_password, "service": service}
    )
    return Link(
        credentials=connected.credentials,
        account=connected.account,
        params={"identifier": account.handle, "service": service},
    )


@pytest.fixture
def fake(pds_network):
    proxy = PdsProxy(pds_network)
    with running(proxy):
        yield proxy


@pytest.fixture
def account(pds_network, fake):
    created = create_account(pds_network)
    fake.repos.append(created.did)
    fake.secrets.extend([created.password, created.app_password, created.access_jwt])
    return created


@pytest.fixture
def provider(fake, pds_network):
    return build(fake, pds_network)


@pytest.fixture
def link(provider, account, fake):
    return connect(provider, account, fake.base_url)


class TestBlueskyContract(ProviderContract):
    """The shared contract, against the real PDS (faults through the proxy)."""


# --------------------------------------------------------------------------- connecting


def test_declarations():
    assert BlueskyProvider.auth_kind is AuthKind.OAUTH2
    fields = BlueskyProvider.connect_fields
    assert [f.name for f in fields] == ["identifier", "service", "app_password"]
    assert [f.name for f in fields if f.secret] == ["app_password"]
    assert not next(f for f in fields if f.secret).required
    caps = BlueskyProvider.capabilities
    assert caps.text.max_length == 300
    assert caps.text.counting is TextCounting.GRAPHEMES
    assert caps.media.max_items == 4
    assert caps.media.max_image_bytes == 1_000_000
    assert BlueskyProvider.rotates_refresh_tokens


def test_connect_stores_the_session_and_finds_the_pds(provider, account, fake):
    link = connect(provider, account, fake.base_url)
    assert link.account.external_id == account.did
    assert link.account.display_name == f"@{account.handle}"
    settings = link.account.settings
    # The PDS named by the DID document that createSession returned (here: the proxy).
    assert settings["pds_url"] == fake.base_url
    assert settings["did"] == account.did
    assert settings["handle"] == account.handle
    creds = link.credentials
    assert creds.access_token
    assert creds.refresh_token
    assert creds.secrets["app_password"] == account.app_password
    assert creds.scope == "com.atproto.appPass"
    assert creds.expires_at is not None
    assert creds.expires_at > datetime.now(UTC)
    assert creds.lifetime == timedelta(hours=2)  # the PDS's access JWT: iat → exp
    assert fake.calls("com.atproto.server.createSession") == 1


def test_connect_by_did_works(provider, account, fake):
    connected = provider.connect_with_fields(
        {"identifier": account.did, "app_password": account.app_password, "service": fake.base_url}
    )
    assert connected.account.settings["handle"] == account.handle


def test_connect_refuses_the_account_password(provider, account, fake):
    with pytest.raises(ProviderRejected, match="app password"):
        provider.connect_with_fields(
            {
                "identifier": account.handle,
                "app_password": account.password,
                "service": fake.base_url,
            }
        )
    # The session the password opened was ended at once.
    assert fake.calls("com.atproto.server.deleteSession") == 1


def test_connect_with_a_wrong_password_is_rejected(provider, account, fake):
    with pytest.raises(ProviderRejected) as caught:
        provider.connect_with_fields(
            {
                "identifier": account.handle,
                "app_password": "aaaa-bbbb-cccc-dddd",
                "service": fake.base_url,
            }
        )
    assert "aaaa-bbbb" not in str(caught.value)


def test_connect_refuses_plain_http_and_odd_services(provider, account):
    for service in (
        "http://bsky.example",
        "ftp://x.test",
        "https://user:pw@bsky.example",
        "https://x.test/path",
    ):
        with pytest.raises(ProviderRejected):
            provider.connect_with_fields(
                {
                    "identifier": account.handle,
                    "app_password": account.app_password,
                    "service": service,
                }
            )


def test_user_given_service_goes_through_the_ssrf_guard(fake, pds_network, account):
    guarded = build(fake, pds_network, destinations=DestinationPolicy())
    with pytest.raises(ProviderRetryable, match="could not be reached"):
        connect(guarded, account, fake.base_url)
    assert fake.calls("com.atproto.server.createSession") == 0


def test_pds_is_found_through_the_plc_directory_without_a_did_doc(pds_network, account):
    # createSession may answer without a DID document; the PLC directory has it.
    with httpx.Client(trust_env=False, timeout=10) as http:
        pds, doc = identity.find_pds(http, account.did, None, pds_network.plc_url)
    assert pds == pds_network.pds_url
    assert identity.handle_of(doc) == account.handle


def test_check_connection_reads_the_session(provider, link, account):
    seen = provider.check_connection(link)
    assert seen.external_id == account.did
    assert seen.settings["handle"] == account.handle


# --------------------------------------------------------------------------- sessions


def test_refresh_rotates_the_refresh_token(provider, link, fake):
    fresh = provider.refresh(link)
    assert fresh.refresh_token
    assert fresh.refresh_token != link.credentials.refresh_token
    assert fresh.secrets["app_password"] == link.credentials.secrets["app_password"]
    assert fresh.expires_at is not None
    # The stored (new) refresh token is the one that works from now on.
    again = provider.refresh(Link(fresh, link.account, link.params))
    assert again.refresh_token not in (fresh.refresh_token, link.credentials.refresh_token)
    assert fake.calls("com.atproto.server.refreshSession") == 2
    assert fake.calls("com.atproto.server.createSession") == 1  # only the connect


def test_expired_access_token_is_refreshed_then_works(provider, link, fake):
    assert link.credentials.access_token
    stale = Link(
        Credentials(
            access_token=expired_copy(link.credentials.access_token),
            refresh_token=link.credentials.refresh_token,
            expires_at=datetime(2020, 1, 1, tzinfo=UTC),
            secrets=link.credentials.secrets,
        ),
        link.account,
        link.params,
    )
    # The real PDS refuses it as ExpiredToken ...
    with pytest.raises(ProviderTokenExpired):
        provider.publish(stale, Post(text="with an expired token"))
    # ... the stored expiry says so before any call, and refreshSession heals it.
    assert stale.credentials.expires_within(timedelta(0))
    fresh = provider.refresh(stale)
    published = provider.publish(Link(fresh, link.account, link.params), Post(text="after refresh"))
    assert published.external_id
    assert fake.calls("com.atproto.server.createSession") == 1


def test_dead_refresh_token_falls_back_to_the_app_password(provider, link, fake):
    provider.revoke(link)  # deleteSession: the refresh JWT is dead at the PDS
    fresh = provider.refresh(link)
    assert fake.calls("com.atproto.server.createSession") == 2
    assert provider.check_connection(Link(fresh, link.account, link.params))


def test_revoked_app_password_needs_reauth(provider, link, account, pds_network):
    provider.revoke(link)
    revoked = xrpc(
        pds_network.pds_url,
        "com.atproto.server.revokeAppPassword",
        body={"name": "plexus"},
        token=account.access_jwt,
    )
    assert revoked.status_code == 200, revoked.text
    with pytest.raises(ProviderNeedsReauth):
        provider.refresh(link)


def test_revoke_ends_the_session_at_the_pds(provider, link, pds_network):
    assert provider.can_revoke(link)
    provider.revoke(link)
    refused = xrpc(
        pds_network.pds_url,
        "com.atproto.server.refreshSession",
        body=None,
        token=link.credentials.refresh_token,
    )
    assert refused.status_code == 400
    assert refused.json()["error"] == "ExpiredToken"


def test_twenty_publishes_create_no_session(provider, link, fake, pds_network, account):
    before = fake.calls("com.atproto.server.createSession")
    for n in range(20):
        provider.publish(link, Post(text=f"post number {n}"))
    assert fake.calls("com.atproto.server.createSession") == before == 1
    assert fake.calls("com.atproto.repo.createRecord") == 20
    assert len(list_posts(pds_network, account.did)) == 20


# --------------------------------------------------------------------------- posts


def test_facets_use_utf8_byte_offsets(provider, link, pds_network, fake):
    friend = create_account(pds_network, prefix="friend")
    text = (
        f"🦋🎉 Plexus ✨ https://example.com/päth?q=1. "
        f"Hi @{friend.handle}, not @nobody.test; #Launch2026 #1 mail x@y.test"
    )
    published = provider.publish(link, Post(text=text))
    record = get_post(pds_network, published.external_id)
    assert record["text"] == text
    raw = text.encode()
    seen = {
        raw[f["index"]["byteStart"] : f["index"]["byteEnd"]].decode(): f["features"][0]
        for f in record["facets"]
    }
    assert seen == {
        "https://example.com/päth?q=1": {
            "$type": "app.bsky.richtext.facet#link",
            "uri": "https://example.com/päth?q=1",
        },
        f"@{friend.handle}": {"$type": "app.bsky.richtext.facet#mention", "did": friend.did},
        "#Launch2026": {"$type": "app.bsky.richtext.facet#tag", "tag": "Launch2026"},
    }
    # Byte offsets, not character offsets: the emoji before the link are 4 bytes each.
    link_facet = next(f for f in record["facets"] if "uri" in f["features"][0])
    assert link_facet["index"]["byteStart"] == text.index("https") + 2 * 3 + 2
    assert fake.calls("com.atproto.identity.resolveHandle") == 2


def test_images_are_uploaded_and_embedded(provider, link, pds_network):
    first, second = tiny_png(), tiny_png(3, 1, (255, 0, 0))
    post = Post(
        text="two pictures",
        media=(
            MediaItem("a.png", "image/png", first, alt_text="a blue square"),
            MediaItem("b.png", "image/png", second),
        ),
    )
    published = provider.publish(link, post)
    record = get_post(pds_network, published.external_id)
    embed = record["embed"]
    assert embed["$type"] == "app.bsky.embed.images"
    assert [i["alt"] for i in embed["images"]] == ["a blue square", ""]
    for image, data in zip(embed["images"], (first, second), strict=True):
        blob = image["image"]
        assert blob["mimeType"] == "image/png"
        assert blob["size"] == len(data)
        stored = xrpc(
            pds_network.pds_url,
            "com.atproto.sync.getBlob",
            params={"did": link.account.external_id, "cid": blob["ref"]["$link"]},
        )
        assert stored.status_code == 200
        assert stored.content == data


@pytest.mark.parametrize(
    "item",
    [
        MediaItem("big.png", "image/png", tiny_png() + b"\x00" * 1_000_000),
        MediaItem("fake.png", "image/png", b"GIF89a not a png"),
        MediaItem("clip.mp4", "video/mp4", b"\x00\x00\x00\x18ftypmp42"),
        MediaItem("doc.pdf", "application/pdf", b"%PDF-1.7"),
    ],
)
def test_unacceptable_images_are_refused_before_upload(provider, link, fake, item):
    with pytest.raises(ProviderRejected):
        provider.publish(link, Post(text="bad media", media=(item,)))
    assert fake.calls("com.atproto.repo.uploadBlob") == 0
    assert fake.calls("com.atproto.repo.createRecord") == 0


def test_five_images_are_refused(provider, link, fake):
    items = tuple(MediaItem(f"{n}.png", "image/png", tiny_png()) for n in range(5))
    with pytest.raises(ProviderRejected, match="at most 4"):
        provider.publish(link, Post(text="too many", media=items))
    assert fake.calls("com.atproto.repo.uploadBlob") == 0


def test_300_graphemes_are_accepted_301_refused_locally(provider, link, fake, pds_network):
    # 👍🏽 is two code points and 8 bytes but one grapheme, as the PDS counts.
    text = "👍🏽" * 150 + "é" * 150
    assert text_length(text, TextCounting.GRAPHEMES) == 300
    published = provider.publish(link, Post(text=text))
    assert get_post(pds_network, published.external_id)["text"] == text
    with pytest.raises(ProviderRejected, match="301 graphemes"):
        provider.publish(link, Post(text=text + "x"))
    assert fake.calls("com.atproto.repo.createRecord") == 1


def test_link_and_languages(provider, link, pds_network):
    published = provider.publish(
        link, Post(text="Read this", link="https://example.com/a", options={"langs": "en, pt-BR"})
    )
    record = get_post(pds_network, published.external_id)
    assert record["text"] == "Read this\n\nhttps://example.com/a"
    assert record["langs"] == ["en", "pt-BR"]
    assert record["facets"][0]["features"][0]["uri"] == "https://example.com/a"
    assert published.url == (
        f"https://bsky.app/profile/{link.account.external_id}/post/"
        f"{published.external_id.rsplit('/', 1)[1]}"
    )


def test_span_links_become_facets_beside_the_detected_ones(provider, link, pds_network):
    text = "🦋 Read the notes, https://found.example and #Plexus"
    spans = (
        TextSpan(SpanKind.LINK, 7, 16, "https://notes.example/a"),
        TextSpan(SpanKind.BOLD, 2, 6),  # Bluesky has no bold: nothing is sent for it
    )
    published = provider.publish(link, Post(text=text, spans=spans))
    record = get_post(pds_network, published.external_id)
    raw = text.encode()
    seen = [
        (raw[f["index"]["byteStart"] : f["index"]["byteEnd"]].decode(), f["features"][0])
        for f in record["facets"]
    ]
    assert seen == [
        ("the notes", {"$type": "app.bsky.richtext.facet#link", "uri": "https://notes.example/a"}),
        (
            "https://found.example",
            {"$type": "app.bsky.richtext.facet#link", "uri": "https://found.example"},
        ),
        ("#Plexus", {"$type": "app.bsky.richtext.facet#tag", "tag": "Plexus"}),
    ]


def test_unknown_options_and_bad_languages_are_refused(provider, link, fake):
    for options in ({"reel": "yes"}, {"langs": "en,fr,de,it"}, {"langs": "no way"}):
        with pytest.raises(ProviderRejected):
            provider.publish(link, Post(text="options", options=options))
    assert fake.calls("com.atproto.repo.createRecord") == 0


def test_status_and_delete_refuse_other_repositories(provider, link):
    other = "at://did:plc:someoneelse/app.bsky.feed.post/3kabc"
    with pytest.raises(ProviderRejected):
        provider.fetch_status(link, other)
    with pytest.raises(ProviderRejected):
        provider.delete(link, other)


def test_deleted_post_reads_as_deleted(provider, link):
    published = provider.publish(link, Post(text="short-lived"))
    assert provider.fetch_status(link, published.external_id).state is PostState.PUBLISHED
    provider.delete(link, published.external_id)
    assert provider.fetch_status(link, published.external_id).state is PostState.DELETED


# --------------------------------------------------------------------------- atproto OAuth


def test_client_metadata_and_client_ids():
    meta = client_metadata("https://plexus.example", "https://plexus.example/cb")
    assert meta["client_id"] == "https://plexus.example/oauth/bluesky/client-metadata.json"
    assert meta["dpop_bound_access_tokens"] is True
    assert meta["token_endpoint_auth_method"] == "none"
    assert meta["redirect_uris"] == ["https://plexus.example/cb"]
    assert "atproto" in meta["scope"].split()
    loopback = atproto_oauth.client_id_for("http://127.0.0.1:8000", "http://127.0.0.1:8000/cb")
    assert loopback == (
        "http://localhost?redirect_uri=http%3A%2F%2F127.0.0.1%3A8000%2Fcb"
        "&scope=atproto+transition%3Ageneric"
    )


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _browser_or_skip():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        reason = "playwright is not installed"
    else:
        if Path(CHROMIUM).exists():
            return sync_playwright
        reason = f"{CHROMIUM} is not installed (apt-get install -y chromium)"
    if CI:
        pytest.fail(f"{reason} (CI=true: this must not be skipped)")
    pytest.skip(reason)
    return None


class _Callback:
    """The redirect URI: records the query the authorization server sends back."""

    def __init__(self) -> None:
        self.received: dict[str, str] = {}

    def app(self):
        async def callback(request):
            self.received = dict(request.query_params)
            return PlainTextResponse("connected")

        return Starlette(routes=[Route("/callback", callback)])


def sign_in_and_authorize(sync_playwright, url: str, password: str, redirect_uri: str) -> None:
    """What the user does on the PDS's authorization page (a JavaScript app)."""
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(url)
            page.get_by_role("textbox", name="Password").fill(password)
            page.get_by_role("button", name="Sign in").click()
            page.get_by_role("button", name="Authorize").click()
            page.wait_for_url(f"{redirect_uri}*", timeout=20_000)
        finally:
            browser.close()


def test_oauth_flow_end_to_end_with_a_browser(pds_network, fake):
    sync_playwright = _browser_or_skip()
    account = create_account(pds_network, prefix="oauth")
    receiver = _Callback()
    with serve_app(receiver.app()) as base:
        redirect_uri = f"{base}/callback"
        provider = BlueskyProvider(
            ProviderContext(
                settings=ProviderSettings(
                    {"service": pds_network.pds_url, "plc_url": pds_network.plc_url}
                ),
                destinations=LOOPBACK,
                public_url=base,
                timeout=httpx.Timeout(10.0),
            )
        )
        request = AuthorizationRequest(
            redirect_uri=redirect_uri,
            state=secrets.token_urlsafe(16),
            code_verifier=secrets.token_urlsafe(48),
            nonce=None,
            params={"identifier": account.handle},
            client=provider.oauth_client({}),
        )
        start = provider.start_authorization(request)
        assert start.url.startswith(f"{pds_network.pds_url}/oauth/authorize?")
        assert "request_uri=" in start.url
        assert "code_challenge" not in start.url  # pushed (PAR), not in the browser's URL
        assert start.flow_data["issuer"] == pds_network.pds_url
        assert start.flow_data["did"] == account.did
        assert "PRIVATE KEY" in start.flow_data["dpop_key"]

        sign_in_and_authorize(sync_playwright, start.url, account.password, redirect_uri)

        callback = receiver.received
        assert callback["state"] == request.state
        assert callback["iss"] == pds_network.pds_url

        # Mix-up defence: a callback claiming another issuer is refused.
        with pytest.raises(ProviderRejected, match="another authorization server"):
            provider.finish_authorization(
                request, {**callback, "iss": "https://evil.example"}, start.flow_data
            )

        connected = provider.finish_authorization(request, callback, start.flow_data)
    creds = connected.credentials
    assert creds.token_type == "DPoP"
    assert "atproto" in (creds.scope or "")
    assert connected.account.external_id == account.did
    assert connected.account.settings["auth"] == "oauth"
    link = Link(connected.credentials, connected.account, {"identifier": account.handle})

    # DPoP-bound requests to the PDS: check, publish, read back, delete.
    assert provider.check_connection(link).external_id == account.did
    published = provider.publish(link, Post(text="posted over atproto OAuth #dpop"))
    record = get_post(pds_network, published.external_id)
    assert record["text"] == "posted over atproto OAuth #dpop"
    assert provider.fetch_status(link, published.external_id).state is PostState.PUBLISHED

    # A bearer use of the DPoP-bound token is refused: the binding is real.
    refused = xrpc(
        pds_network.pds_url, "com.atproto.server.getSession", params={}, token=creds.access_token
    )
    assert refused.status_code in (400, 401)

    # Refresh with DPoP rotates the refresh token; the new tokens work.
    fresh = provider.refresh(link)
    assert fresh.refresh_token != creds.refresh_token
    fresh_link = Link(fresh, link.account, link.params)
    provider.delete(fresh_link, published.external_id)
    assert provider.fetch_status(fresh_link, published.external_id).state is PostState.DELETED

    # Revocation at the authorization server ends the grant.
    provider.revoke(fresh_link)
    with pytest.raises(ProviderNeedsReauth):
        provider.refresh(fresh_link)


# --------------------------------------------------------------------------- a scripted PDS
#
# Below, the provider talks to an httpx MockTransport standing in for the PDS, so a test can
# choose what the platform answers and see every request that reached it.


def _jwt(**claims: object) -> str:
    import jwt

    now = int(datetime.now(UTC).timestamp())
    body = {"iat": now, "exp": now + 7200, "scope": "com.atproto.appPass", **claims}
    return jwt.encode(body, "not-the-pds-secret-" + "k" * 32, algorithm="HS256")


SCRIPTED_PDS = "https://pds.example"
SCRIPTED_DID = "did:plc:abcdefghijklmnopqrstuvwx"


class ScriptedPds:
    def __init__(self, did: str = SCRIPTED_DID, handle: str = "alice.example.com") -> None:
        self.did = did
        self.handle = handle
        self.requests: list[httpx.Request] = []

    def nsids(self) -> list[str]:
        return [r.url.path.removeprefix("/xrpc/") for r in self.requests]

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        nsid = request.url.path.removeprefix("/xrpc/")
        if nsid == "com.atproto.server.createSession":
            doc = {
                "id": self.did,
                "alsoKnownAs": [f"at://{self.handle}"],
                "service": [
                    {
                        "id": "#atproto_pds",
                        "type": "AtprotoPersonalDataServer",
                        "serviceEndpoint": SCRIPTED_PDS,
                    }
                ],
            }
            return httpx.Response(
                200,
                json={
                    "did": self.did,
                    "handle": self.handle,
                    "accessJwt": _jwt(sub=self.did),
                    "refreshJwt": _jwt(sub=self.did, scope="com.atproto.refresh"),
                    "didDoc": doc,
                },
            )
        if nsid == "com.atproto.server.deleteSession":
            return httpx.Response(200)
        return httpx.Response(400, json={"error": "InvalidRequest", "message": "no"})


def scripted(
    monkeypatch: pytest.MonkeyPatch, pds: ScriptedPds, web_url: str = "https://bsky.app"
) -> BlueskyProvider:
    settings = ProviderSettings({"service": SCRIPTED_PDS, "web_url": web_url})
    provider = BlueskyProvider(ProviderContext(settings=settings))
    transport = httpx.MockTransport(pds.handler)
    monkeypatch.setattr(provider, "_http", lambda: httpx.Client(transport=transport))
    return provider


APP_PASSWORD_FIELDS = {"identifier": "alice.example.com", "app_password": "aaaa-bbbb-cccc-dddd"}


def test_scripted_pds_connects(monkeypatch):
    pds = ScriptedPds()
    connected = scripted(monkeypatch, pds).connect_with_fields(APP_PASSWORD_FIELDS)
    assert connected.account.external_id == SCRIPTED_DID
    assert connected.account.display_name == "@alice.example.com"
    assert connected.account.url == "https://bsky.app/profile/alice.example.com"


# ---- bad input is refused before anything is sent

BAD_SERVICES = [
    "https://[::1",
    "https://[::1]:99999",
    "https://h:99999",
    "https://h:-1",
    "https://h:0",
    "https://exa mple.org",
    "https://ex\x00ample.org",
    "https://example.org\x1b",
    "https://exam\u200bple.org",
    "https://" + "a" * 600 + ".org",
    "ftp://example.org",
    "javascript:alert(1)",
    "file:///etc/passwd",
    "http://example.org",
    "https://user:pw@example.org",
    "https://example.org/path",
    "https://example.org?q",
]


@pytest.mark.parametrize("service", BAD_SERVICES)
def test_bad_service_is_rejected_before_any_request(monkeypatch, service):
    pds = ScriptedPds()
    provider = scripted(monkeypatch, pds)
    with pytest.raises(ProviderRejected):
        provider.connect_with_fields({**APP_PASSWORD_FIELDS, "service": service})
    request = AuthorizationRequest(
        redirect_uri="http://127.0.0.1:8000/cb",
        state="s",
        code_verifier="v" * 43,
        nonce=None,
        params={"identifier": "alice.example.com", "service": service},
        client=None,
    )
    with pytest.raises(ProviderRejected):
        provider.start_authorization(request)
    assert pds.requests == []


BAD_IDENTIFIERS = [
    "",
    "alice",
    "alice .example.com",
    "alice.example.com\x00",
    "ali\x00ce.example.com",
    "alice.exam\nple.com",
    "a" * 300 + ".example.com",
    "did:plc:",
    "did:plc:abc def",
    "did:plc:abc\x00",
    "did:plc:" + "a" * 400,  # a valid DID, too long to be stored as the account id
    "did:web:127.0.0.1%3A99999",
    "did:web:%5B::1",
    "did:web:exa%00mple.org",
    "did:web:host:path",
    "did:key:zabc",
]


@pytest.mark.parametrize("identifier", BAD_IDENTIFIERS)
def test_bad_identifier_is_rejected_before_any_request(monkeypatch, identifier):
    pds = ScriptedPds()
    provider = scripted(monkeypatch, pds)
    if not identifier.startswith("did:web:") and not identifier.startswith("did:key:"):
        with pytest.raises(ProviderRejected):
            provider.connect_with_fields({**APP_PASSWORD_FIELDS, "identifier": identifier})
    request = AuthorizationRequest(
        redirect_uri="http://127.0.0.1:8000/cb",
        state="s",
        code_verifier="v" * 43,
        nonce=None,
        params={"identifier": identifier},
        client=None,
    )
    with pytest.raises(ProviderRejected):
        provider.start_authorization(request)
    assert pds.requests == []


@pytest.mark.parametrize(
    "endpoint", ["https://[::1", "https://pds.example:99999", "https://pds.ex ample", "ftp://x"]
)
def test_bad_pds_endpoint_in_a_did_document_is_rejected(monkeypatch, endpoint):
    doc = {
        "id": SCRIPTED_DID,
        "service": [
            {"id": "#atproto_pds", "type": "AtprotoPersonalDataServer", "serviceEndpoint": endpoint}
        ],
    }
    with pytest.raises(ProviderRejected):
        identity.pds_endpoint(doc, SCRIPTED_DID)


# ---- what the PDS chooses fits the account columns


def test_overlong_did_from_the_pds_is_refused_and_its_session_ended(monkeypatch):
    pds = ScriptedPds(did="did:plc:" + "a" * 400)
    with pytest.raises(ProviderRejected, match="longer than 300"):
        scripted(monkeypatch, pds).connect_with_fields(APP_PASSWORD_FIELDS)
    assert pds.nsids() == ["com.atproto.server.createSession", "com.atproto.server.deleteSession"]


def test_did_with_a_trailing_newline_is_refused(monkeypatch):
    pds = ScriptedPds(did=SCRIPTED_DID + "\n")
    with pytest.raises(ProviderRejected, match="valid DID"):
        scripted(monkeypatch, pds).connect_with_fields(APP_PASSWORD_FIELDS)


def test_invalid_handle_from_the_pds_is_shown_as_the_did(monkeypatch):
    pds = ScriptedPds(handle="h" * 2000)
    account = scripted(monkeypatch, pds).connect_with_fields(APP_PASSWORD_FIELDS).account
    assert account.display_name == SCRIPTED_DID
    assert account.url == f"https://bsky.app/profile/{SCRIPTED_DID}"
    assert account.settings["handle"] == SCRIPTED_DID


def test_overlong_profile_url_is_dropped_not_truncated(monkeypatch):
    pds = ScriptedPds()
    web_url = "https://bsky.example/" + "w" * 990
    account = (
        scripted(monkeypatch, pds, web_url=web_url).connect_with_fields(APP_PASSWORD_FIELDS).account
    )
    assert account.url is None
    assert account.external_id == SCRIPTED_DID


# ---- can_revoke: exactly when revoke reaches the platform


def _bluesky_link(auth: str, *, refresh: str | None, **settings: str) -> Link:
    secrets = {"dpop_key": "unused"} if auth == "oauth" else {"app_password": "pw"}
    return Link(
        Credentials(access_token="access", refresh_token=refresh, secrets=secrets),
        Account(SCRIPTED_DID, "@alice", settings={"auth": auth, "did": SCRIPTED_DID, **settings}),
    )


@pytest.mark.parametrize(
    "link",
    [
        _bluesky_link("app_password", refresh=None, pds_url=SCRIPTED_PDS),
        _bluesky_link("app_password", refresh="r"),
        _bluesky_link("oauth", refresh="r", revocation_endpoint=""),
        _bluesky_link("oauth", refresh="r"),
    ],
)
def test_cannot_revoke_what_revoke_would_not_reach(monkeypatch, link):
    pds = ScriptedPds()
    provider = scripted(monkeypatch, pds)
    assert not provider.can_revoke(link)
    provider.revoke(link)
    assert pds.requests == []


def test_can_revoke_app_password_sessions(monkeypatch):
    pds = ScriptedPds()
    provider = scripted(monkeypatch, pds)
    link = _bluesky_link("app_password", refresh="refresh-jwt", pds_url=SCRIPTED_PDS)
    assert provider.can_revoke(link)
    provider.revoke(link)
    assert pds.nsids() == ["com.atproto.server.deleteSession"]
    assert pds.requests[0].headers["authorization"] == "Bearer refresh-jwt"


def test_can_revoke_oauth_tokens_at_the_revocation_endpoint(monkeypatch):
    from plexus.providers.bluesky.dpop import new_key_pem

    pds = ScriptedPds()
    provider = scripted(monkeypatch, pds)
    base = _bluesky_link(
        "oauth",
        refresh="refresh-token",
        revocation_endpoint=f"{SCRIPTED_PDS}/oauth/revoke",
        client_id="https://plexus.example/client-metadata.json",
    )
    link = replace(base, credentials=replace(base.credentials, secrets={"dpop_key": new_key_pem()}))
    assert provider.can_revoke(link)
    provider.revoke(link)
    assert [r.url.path for r in pds.requests] == ["/oauth/revoke"]
    assert b"token=refresh-token" in pds.requests[0].content


# ---- what createRecord receives for a post with spans


class RecordingPds(ScriptedPds):
    """Also answers createRecord, keeping each record it was sent."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[dict] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/xrpc/com.atproto.repo.createRecord":
            self.requests.append(request)
            self.records.append(json.loads(request.content)["record"])
            rkey = f"3l{len(self.records):011d}"
            return httpx.Response(
                200,
                json={
                    "uri": f"at://{self.did}/app.bsky.feed.post/{rkey}",
                    "cid": "bafyrei" + "a" * 52,
                },
            )
        return super().handler(request)


def test_span_links_win_over_overlapping_detected_facets(monkeypatch):
    pds = RecordingPds()
    provider = scripted(monkeypatch, pds)
    connected = provider.connect_with_fields(APP_PASSWORD_FIELDS)
    link = Link(credentials=connected.credentials, account=connected.account)
    # "e" + combining acute: NFC makes it one code point, and the spans move with it.
    text = "Cafe\u0301 😀 see https://shown.example/x and https://plain.example #tag"
    start = text.index("https://shown")
    spans = (
        TextSpan(
            SpanKind.LINK, start, start + len("https://shown.example/x"), "https://real.example/y"
        ),
        TextSpan(SpanKind.LINK, 0, 5, "https://cafe.example"),
        TextSpan(SpanKind.ITALIC, 0, 5),
        TextSpan(SpanKind.LINK, 6, 7, "javascript:alert(1)"),
    )
    provider.publish(link, Post(text=text, spans=spans))
    [record] = pds.records
    normalised = "Café 😀 see https://shown.example/x and https://plain.example #tag"
    assert record["text"] == normalised
    raw = normalised.encode()
    seen = [
        (raw[f["index"]["byteStart"] : f["index"]["byteEnd"]].decode(), f["features"])
        for f in record["facets"]
    ]
    assert seen == [
        ("Café", [{"$type": "app.bsky.richtext.facet#link", "uri": "https://cafe.example"}]),
        (
            "https://shown.example/x",
            [{"$type": "app.bsky.richtext.facet#link", "uri": "https://real.example/y"}],
        ),
        (
            "https://plain.example",
            [{"$type": "app.bsky.richtext.facet#link", "uri": "https://plain.example"}],
        ),
        ("#tag", [{"$type": "app.bsky.richtext.facet#tag", "tag": "tag"}]),
    ]
    starts = [f["index"]["byteStart"] for f in record["facets"]]
    assert starts == sorted(starts)
