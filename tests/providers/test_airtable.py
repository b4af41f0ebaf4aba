from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, parse_qsl, urlsplit

import httpx
import pytest

from plexus.kit.http import DestinationPolicy
from plexus.providers.airtable import AirtableProvider
from plexus.providers.base import (
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
from plexus.providers.oauth import credentials_from
from plexus.providers.testing import ProviderContract

from airtable_fake import AirtableFake
from fake_helpers import running

REDIRECT_URI = "http://127.0.0.1:8000/connections/airtable/callback"
SECRET = "airtable-client-secret-" + "s" * 20


def make_provider(fake: AirtableFake, *, with_secret: bool = True) -> AirtableProvider:
    values = {"client_id": fake.client_id, "api_url": fake.base_url, "oauth_url": fake.base_url}
    if with_secret:
        values["client_secret"] = SECRET
    return AirtableProvider(
        ProviderContext(
            settings=ProviderSettings(values),
            destinations=DestinationPolicy.from_strings(["127.0.0.0/8"]),
            timeout=httpx.Timeout(1.0),
        )
    )


def params_for(fake: AirtableFake, **extra: str) -> dict[str, str]:
    return {"base_id": fake.base.id, "table": "Posts", "text_field": "Text", **extra}


def connect(provider: AirtableProvider, fake: AirtableFake, **extra: str) -> Link:
    params = params_for(fake, **extra)
    connected = provider.complete_connection(credentials_from(fake.issue_tokens()), params)
    return Link(
        credentials=connected.credentials,
        account=connected.account,
        params=params,
        client=OAuthClient(fake.client_id, SECRET),
    )


@pytest.fixture
def fake():
    platform = AirtableFake(client_secret=SECRET)
    with running(platform):
        yield platform


@pytest.fixture
def provider(fake):
    return make_provider(fake)


@pytest.fixture
def link(provider, fake):
    return connect(provider, fake)


class TestAirtableContract(ProviderContract):
    # Airtable documents no OAuth revocation endpoint: a disconnect deletes the tokens.
    supports_revocation = False

    def rejected_post(self) -> Post:
        return Post(text="x" * 100_001)


# --------------------------------------------------------------------------- OAuth


def s256(verifier: str) -> str:
    return (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )


def authorization(provider: AirtableProvider, fake: AirtableFake) -> AuthorizationRequest:
    params = params_for(fake)
    return AuthorizationRequest(
        redirect_uri=REDIRECT_URI,
        state=secrets.token_urlsafe(16),
        code_verifier=secrets.token_urlsafe(48),
        nonce=None,
        params=params,
        client=provider.oauth_client(params),
    )


def consent(url: str) -> dict[str, str]:
    """What the user's browser does: open the authorize URL, come back with a code."""
    answer = httpx.get(url, follow_redirects=False)
    assert answer.status_code == 302
    return dict(parse_qsl(urlsplit(answer.headers["location"]).query))


def test_oauth_flow_with_pkce(provider, fake):
    request = authorization(provider, fake)
    start = provider.start_authorization(request)

    url = urlsplit(start.url)
    assert f"{url.scheme}://{url.netloc}{url.path}" == f"{fake.base_url}/oauth2/v1/authorize"
    query = parse_qs(url.query)
    assert query["scope"] == ["data.records:read data.records:write schema.bases:read"]
    assert query["code_challenge_method"] == ["S256"]
    assert query["code_challenge"] == [s256(request.code_verifier)]
    assert query["state"] == [request.state]
    assert query["client_id"] == [fake.client_id]
    assert query["redirect_uri"] == [REDIRECT_URI]

    callback = consent(start.url)
    assert callback["state"] == request.state
    connected = provider.finish_authorization(request, callback, start.flow_data)

    assert connected.credentials.refresh_token
    assert connected.credentials.expires_at is not None
    lifetime = connected.credentials.expires_at - datetime.now(UTC)
    assert timedelta(minutes=55) < lifetime <= timedelta(minutes=60)
    assert connected.account.settings["table_id"] == fake.table.id
    assert connected.account.external_id == f"{fake.user_id}/{fake.base.id}/{fake.table.id}"
    (token_call,) = fake.requests_to("/oauth2/v1/token")
    expected = base64.b64encode(f"{fake.client_id}:{SECRET}".encode()).decode()
    assert token_call.headers["authorization"] == f"Basic {expected}"
    assert request.code_verifier in token_call.body.decode()


def test_public_integration_sends_client_id_without_secret(fake):
    fake.client_secret = None
    provider = make_provider(fake, with_secret=False)
    request = authorization(provider, fake)
    start = provider.start_authorization(request)
    connected = provider.finish_authorization(request, consent(start.url), start.flow_data)
    assert connected.credentials.access_token
    (token_call,) = fake.requests_to("/oauth2/v1/token")
    assert "authorization" not in token_call.headers
    assert f"client_id={fake.client_id}" in token_call.body.decode()


def test_wrong_verifier_is_refused_by_the_platform(provider, fake):
    request = authorization(provider, fake)
    start = provider.start_authorization(request)
    callback = consent(start.url)
    forged = replace(request, code_verifier=secrets.token_urlsafe(48))
    with pytest.raises((ProviderNeedsReauth, ProviderRejected)):
        provider.finish_authorization(forged, callback, start.flow_data)
    assert fake.access_tokens == {}


def test_oauth_needs_a_client_id():
    provider = AirtableProvider(ProviderContext())
    assert provider.is_configured()  # personal access tokens need no operator setting
    with pytest.raises(ProviderUnavailable, match="PLEXUS_PROVIDER_AIRTABLE_CLIENT_ID"):
        provider.oauth_client({})


# --------------------------------------------------------------------------- refresh


def test_refresh_rotates_tokens_and_never_reuses_one(provider, fake, link):
    assert type(provider).rotates_refresh_tokens
    seen_refresh = {link.credentials.refresh_token}
    seen_access = {link.credentials.access_token}
    current = link
    for _ in range(8):
        previous = current
        credentials = provider.refresh(current)
        assert credentials.refresh_token not in seen_refresh
        assert credentials.access_token not in seen_access
        seen_refresh.add(credentials.refresh_token)
        seen_access.add(credentials.access_token)
        current = replace(current, credentials=credentials)
        # The rotated-out access token is dead; the new one works.
        with pytest.raises(ProviderNeedsReauth):
            provider.check_connection(replace(previous, credentials=previous.credentials))
        assert provider.check_connection(current).external_id == link.account.external_id
    sent = [
        dict(parse_qsl(r.body.decode()))["refresh_token"]
        for r in fake.requests_to("/oauth2/v1/token")
    ]
    assert len(sent) == len(set(sent)) == 8


def test_reused_refresh_token_is_invalid_grant_and_ends_the_grant(provider, fake, link):
    fresh = provider.refresh(link)
    with pytest.raises(ProviderNeedsReauth, match="invalid_grant"):
        provider.refresh(link)  # the spent token again
    # Airtable treats reuse as theft: the tokens issued after it stop working too.
    with pytest.raises(ProviderNeedsReauth):
        provider.check_connection(replace(link, credentials=fresh))


def test_expired_access_token_asks_for_a_refresh(provider, fake, link):
    fake.expire(link.credentials.access_token)
    expired = replace(link.credentials, expires_at=datetime.now(UTC) - timedelta(minutes=1))
    with pytest.raises(ProviderTokenExpired):
        provider.publish(replace(link, credentials=expired), Post(text="after expiry"))
    refreshed = provider.refresh(replace(link, credentials=expired))
    published = provider.publish(replace(link, credentials=refreshed), Post(text="after refresh"))
    assert published.external_id.startswith("rec")
    assert fake.published_texts() == ["after refresh"]


# --------------------------------------------------------------------------- PATs


def test_personal_access_token_connects_and_publishes(provider, fake):
    token = fake.issue_pat()
    connected = provider.connect_with_fields(
        {"personal_access_token": token, **params_for(fake, link_field="Link")}
    )
    assert connected.credentials.access_token == token
    assert connected.credentials.refresh_token is None
    assert connected.credentials.expires_at is None
    link = Link(
        connected.credentials, connected.account, params=params_for(fake, link_field="Link")
    )
    assert not provider.can_refresh(link)
    provider.publish(link, Post(text="via PAT", link="https://example.org/post"))
    (record,) = fake.table.records.values()
    assert record["fields"] == {"Text": "via PAT", "Link": "https://example.org/post"}
    assert fake.requests_to("/v0/")[-1].headers["authorization"] == f"Bearer {token}"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"table": "Nope"}, "no table"),
        ({"text_field": "Nope"}, "no text field"),
        ({"text_field": "Count"}, "no text field"),
        ({"link_field": "Count"}, "no text or URL field"),
    ],
)
def test_connect_checks_the_table_and_fields(provider, fake, change, message):
    fields = {"personal_access_token": fake.issue_pat(), **params_for(fake), **change}
    with pytest.raises(ProviderRejected, match=message):
        provider.connect_with_fields(fields)


def test_connect_refuses_malformed_values_before_any_request(provider, fake):
    with pytest.raises(ProviderRejected):
        provider.connect_with_fields({"personal_access_token": "", **params_for(fake)})
    with pytest.raises(ProviderRejected, match="base id"):
        provider.connect_with_fields(
            {**params_for(fake), "personal_access_token": fake.issue_pat(), "base_id": "../x"}
        )
    assert fake.requests == []


def test_unknown_pat_needs_reauth(provider, fake):
    with pytest.raises(ProviderNeedsReauth):
        provider.connect_with_fields({"personal_access_token": "patUnknown.0", **params_for(fake)})


# --------------------------------------------------------------------------- publishing


def test_publish_sets_extra_fields_and_appends_link_without_link_field(provider, fake, link):
    post = Post(text="Hello", link="https://example.org/x", options={"field:Status": "Draft"})
    published = provider.publish(link, post)
    record = fake.table.records[published.external_id]
    assert record["fields"] == {"Text": "Hello\n\nhttps://example.org/x", "Status": "Draft"}
    assert (
        published.url
        == f"https://airtable.com/{fake.base.id}/{fake.table.id}/{published.external_id}"
    )


def test_publish_refuses_unknown_options_and_media(provider, fake, link):
    with pytest.raises(ProviderRejected, match="option"):
        provider.publish(link, Post(text="x", options={"visibility": "public"}))
    with pytest.raises(ProviderRejected, match="already receives"):
        provider.publish(link, Post(text="x", options={"field:Text": "other"}))
    image = MediaItem("a.png", "image/png", b"\x89PNG")
    with pytest.raises(ProviderRejected, match="media"):
        provider.publish(link, Post(text="x", media=(image,)))
    assert fake.requests_to(f"/v0/{fake.base.id}/") == []


def test_platform_validation_is_final(provider, fake, link):
    with pytest.raises(ProviderRejected, match="UNKNOWN_FIELD_NAME"):
        provider.publish(link, Post(text="x", options={"field:Missing": "y"}))
    with pytest.raises(ProviderRejected, match="INVALID_VALUE_FOR_COLUMN"):
        provider.publish(link, Post(text="x", options={"field:Count": "not a number"}))


def test_delete_twice_is_fine_and_status_reads_deleted(provider, fake, link):
    published = provider.publish(link, Post(text="to delete"))
    provider.delete(link, published.external_id)
    provider.delete(link, published.external_id)
    assert provider.fetch_status(link, published.external_id).state is PostState.DELETED


# --------------------------------------------------------------------------- records API


def test_records_pagination(provider, fake, link):
    base_id = fake.base.id
    for start in range(0, 23, 10):
        rows = [{"Text": f"row {i:02}"} for i in range(start, min(start + 10, 23))]
        provider.create_records(link, base_id, "Posts", rows)
    assert len(fake.table.records) == 23

    pages = []
    offset = None
    while True:
        page = provider.list_records(link, base_id, "Posts", offset=offset, page_size=10)
        pages.append([r.fields["Text"] for r in page.records])
        if page.offset is None:
            break
        offset = page.offset
    assert [len(p) for p in pages] == [10, 10, 3]
    assert [t for p in pages for t in p] == [f"row {i:02}" for i in range(23)]

    streamed = list(provider.iter_records(link, base_id, fake.table.id, page_size=7))
    assert [r.fields["Text"] for r in streamed] == [f"row {i:02}" for i in range(23)]
    assert all(r.id.startswith("rec") and r.created_time for r in streamed)


def test_list_records_fields_and_formula(provider, fake, link):
    base_id = fake.base.id
    provider.create_records(
        link, base_id, "Posts", [{"Text": "a", "Status": "Draft"}, {"Text": "b", "Status": "Done"}]
    )
    page = provider.list_records(
        link, base_id, "Posts", fields=["Text"], filter_formula="{Status} = 'Done'"
    )
    assert [r.fields for r in page.records] == [{"Text": "b"}]
    query = parse_qs(fake.requests_to(f"/v0/{base_id}/Posts")[-1].query)
    assert query["fields[]"] == ["Text"]
    assert query["filterByFormula"] == ["{Status} = 'Done'"]


def test_update_and_delete_records(provider, fake, link):
    base_id = fake.base.id
    created = provider.create_records(link, base_id, "Posts", [{"Text": "a"}, {"Text": "b"}])
    updated = provider.update_records(
        link, base_id, "Posts", {created[0].id: {"Status": "Done"}}, typecast=True
    )
    assert updated[0].fields == {"Text": "a", "Status": "Done"}
    patch = fake.requests_to(f"/v0/{base_id}/Posts")[-1]
    assert patch.method == "PATCH"
    assert b'"typecast":true' in patch.body.replace(b" ", b"")
    deleted = provider.delete_records(link, base_id, "Posts", [r.id for r in created])
    assert deleted == [r.id for r in created]
    assert fake.table.records == {}


def test_batches_over_ten_are_refused_locally(provider, fake, link):
    before = len(fake.requests)
    with pytest.raises(ProviderRejected, match="at most 10"):
        provider.create_records(link, fake.base.id, "Posts", [{"Text": str(i)} for i in range(11)])
    with pytest.raises(ProviderRejected, match="at most 10"):
        provider.delete_records(link, fake.base.id, "Posts", ["rec" + "a" * 14] * 11)
    with pytest.raises(ProviderRejected, match="record id"):
        provider.delete_records(link, fake.base.id, "Posts", ["../../meta"])
    assert len(fake.requests) == before


def test_meta_api(provider, fake, link):
    fake.add_base("Second")
    fake.add_base("Third")
    bases = provider.list_bases(link)
    assert [b.name for b in bases] == ["Content calendar", "Second", "Third"]
    assert {b.permission_level for b in bases} == {"create"}
    assert len([r for r in fake.requests if r.path == "/v0/meta/bases"]) == 2  # two pages
    (table,) = provider.get_base_schema(link, fake.base.id)
    assert table.id == fake.table.id
    assert table.primary_field_id == table.fields[0].id
    assert [f.name for f in table.fields] == ["Text", "Link", "Status", "Count"]


def test_requests_to_one_base_are_paced_under_its_rate_limit(provider, fake, link):
    for _ in range(8):
        provider.list_records(link, fake.base.id, "Posts")  # the fake allows 5 per second
    sent = [r.at for r in fake.requests if r.path.startswith(f"/v0/{fake.base.id}/")]
    assert len(sent) == 8
    # Airtable's rule, as the platform saw the requests: never six within one second.
    assert all(later - earlier > 1.0 for earlier, later in zip(sent, sent[5:], strict=False))


def test_per_base_rate_limit_waits_thirty_seconds(provider, fake, link):
    fake.requests_per_second = 2  # stricter than the pacer, so the platform's limit bites
    refused: list[ProviderRetryable] = []
    for _ in range(4):
        try:
            provider.list_records(link, fake.base.id, "Posts")
        except ProviderRetryable as exc:
            refused.append(exc)
            break
    assert refused, "three requests within a second must exceed a limit of two"
    assert refused[0].rate_limited
    assert refused[0].retry_after == 30
    # Airtable's penalty: the base stays closed for a while, even to a slow caller.
    with pytest.raises(ProviderRetryable):
        provider.list_records(link, fake.base.id, "Posts")


def test_errors_never_carry_tokens(provider, fake, link):
    stale = Credentials(access_token="stale-token-value")
    with pytest.raises(ProviderNeedsReauth) as caught:
        provider.check_connection(replace(link, credentials=stale))
    assert "stale-token-value" not in str(caught.value)
