"""The OAuth2 connect flow through the API (R8; ASVS V10.1.1, V10.1.2, V10.2.1-3), against
the Airtable and Mastodon fakes: the authorization URL (S256 PKCE, exactly the configured
scopes, the exact redirect URI), the callback, and every way a ``state`` can be wrong:
missing, forged, replayed, expired, another session's, or another provider's (mix-up).
Also: per-instance client registration happens once, and tokens are only ever stored
sealed."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, parse_qsl, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text, update

from plexus.app import create_app
from plexus.config import load_settings
from plexus.db import unit_of_work
from plexus.models.connections import Connection, OAuthClientRegistration, OAuthFlow
from plexus.models.identity import SecurityEvent
from plexus.runtime import Runtime, init_runtime

from airtable_fake import AirtableFake
from auth_helpers import SignedIn, sign_in
from conftest import BACKEND
from fake_helpers import running
from mastodon_fake import MastodonFake

CONNECTIONS = "/api/v1/connections"
CALLBACK = f"{CONNECTIONS}/oauth/callback"
SECRET = "airtable-app-secret-" + "q" * 24
SCOPES = ["data.records:read", "data.records:write", "schema.bases:read"]


@pytest.fixture
def airtable() -> Iterator[AirtableFake]:
    platform = AirtableFake(client_secret=SECRET)
    with running(platform):
        yield platform


@pytest.fixture
def mastodon() -> Iterator[MastodonFake]:
    platform = MastodonFake()
    with running(platform):
        yield platform


@pytest.fixture
def rt(env_vars, airtable) -> Iterator[Runtime]:
    environ = {
        **env_vars,
        "PLEXUS_PUBLIC_URL": "https://plexus.example.test",
        "PLEXUS_OUTBOUND_ALLOW_NETWORKS": "127.0.0.0/8",
        "PLEXUS_PROVIDER_AIRTABLE_CLIENT_ID": airtable.client_id,
        "PLEXUS_PROVIDER_AIRTABLE_CLIENT_SECRET": SECRET,
        "PLEXUS_PROVIDER_AIRTABLE_API_URL": airtable.base_url,
        "PLEXUS_PROVIDER_AIRTABLE_OAUTH_URL": airtable.base_url,
        "PLEXUS_RATE_LIMITS": "login=1000/5minutes;login_account=1000/5minutes",
    }
    runtime = init_runtime(load_settings(environ=environ))
    yield runtime
    runtime.dispose()


@pytest.fixture
def client(rt) -> Iterator[TestClient]:
    with TestClient(create_app(rt.settings, rt), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def owner(rt, client) -> SignedIn:
    return sign_in(rt, client, "owner@example.com")


def _fields(airtable: AirtableFake) -> dict[str, str]:
    return {"base_id": airtable.base.id, "table": "Posts", "text_field": "Text"}


def start(client: TestClient, person: SignedIn, airtable: AirtableFake) -> dict[str, list[str]]:
    response = client.post(
        CONNECTIONS,
        json={"provider": "airtable", "name": "Calendar", "fields": _fields(airtable)},
        headers=person.headers,
    )
    assert response.status_code == 202, response.text
    url = response.json()["authorization_url"]
    assert url.startswith(f"{airtable.base_url}/oauth2/v1/authorize?")
    return parse_qs(urlsplit(url).query)


def consent(query: dict[str, list[str]], airtable: AirtableFake) -> dict[str, str]:
    """The user's browser: open the authorize URL, come back with ``code`` and ``state``."""
    flat = {k: v[0] for k, v in query.items()}
    answer = httpx.get(f"{airtable.base_url}/oauth2/v1/authorize", params=flat)
    assert answer.status_code == 302, answer.text
    location = answer.headers["location"]
    assert location.startswith("https://plexus.example.test" + CALLBACK)
    return dict(parse_qsl(urlsplit(location).query))


def _security_events(rt: Runtime) -> list[SecurityEvent]:
    with unit_of_work(rt.sessions) as session:
        rows = list(
            session.scalars(
                select(SecurityEvent).where(SecurityEvent.kind == "oauth_state_invalid")
            )
        )
        session.expunge_all()
        return rows


def _connections(rt: Runtime) -> int:
    with unit_of_work(rt.sessions) as session:
        return int(session.scalar(select(func.count()).select_from(Connection)) or 0)


def test_authorization_url_has_s256_pkce_exact_scopes_and_redirect(client, owner, airtable):
    """V10.2.1 / V10.2.3: PKCE S256; the configured scopes exactly; one exact redirect URI."""
    query = start(client, owner, airtable)
    assert query["response_type"] == ["code"]
    assert query["client_id"] == [airtable.client_id]
    assert query["code_challenge_method"] == ["S256"]
    assert len(query["code_challenge"][0]) == 43
    assert query["scope"][0].split(" ") == SCOPES
    assert query["redirect_uri"] == ["https://plexus.example.test" + CALLBACK]
    assert len(query["state"][0]) >= 43
    assert "code_verifier" not in query


def test_the_flow_connects_and_stores_tokens_sealed(client, owner, airtable, rt):
    query = start(client, owner, airtable)
    callback = consent(query, airtable)
    response = client.get(CALLBACK, params=callback, headers=owner.headers)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["provider"] == "airtable"
    assert body["refreshable"] is True
    # The platform checked the verifier against the challenge (it refuses a wrong one).
    token_requests = airtable.requests_to("/oauth2/v1/token")
    assert len(token_requests) == 1
    sent = dict(parse_qsl(token_requests[0].body.decode()))
    digest = hashlib.sha256(sent["code_verifier"].encode()).digest()
    assert base64.urlsafe_b64encode(digest).rstrip(b"=").decode() == query["code_challenge"][0]
    # No token in any answer, nor in plain text anywhere in the database.
    issued = airtable.secrets_in_use()
    assert issued
    listing = client.get(CONNECTIONS, headers=owner.headers).text
    for secret in issued:
        assert secret not in response.text
        assert secret not in listing
    dump = _database_text(rt)
    for secret in [*issued, SECRET, sent["code_verifier"]]:
        assert secret not in dump


def test_a_replayed_state_is_refused(client, owner, airtable, rt):
    callback = consent(start(client, owner, airtable), airtable)
    assert client.get(CALLBACK, params=callback, headers=owner.headers).status_code == 201
    again = client.get(CALLBACK, params=callback, headers=owner.headers)
    assert again.status_code == 400
    assert again.json()["type"].endswith("oauth-state-invalid")
    assert [json_reason(e) for e in _security_events(rt)] == ["replayed"]


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"code": "abc"}, "missing"),
        ({"code": "abc", "state": ""}, "missing"),
        ({"code": "abc", "state": "forged-" + "x" * 40}, "unknown"),
    ],
)
def test_missing_and_forged_states_are_refused(client, owner, airtable, rt, params, reason):
    start(client, owner, airtable)
    response = client.get(CALLBACK, params=params, headers=owner.headers)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert [json_reason(e) for e in _security_events(rt)] == [reason]
    assert _connections(rt) == 0
    assert airtable.requests_to("/oauth2/v1/token") == []


def test_another_sessions_state_is_refused(client, owner, airtable, rt):
    """The state is bound to the session that started the flow: the same user signed in
    elsewhere, and another member, both get 400."""
    callback = consent(start(client, owner, airtable), airtable)
    other = sign_in(rt, client, "admin@example.com", workspace_id=owner.workspace_id)
    assert client.get(CALLBACK, params=callback, headers=other.headers).status_code == 400
    owner_again = SignedIn(owner.email, owner.user_id, owner.workspace_id, {})
    owner_again.relogin(client)
    assert client.get(CALLBACK, params=callback, headers=owner_again.headers).status_code == 400
    assert [json_reason(e) for e in _security_events(rt)] == ["foreign_session"] * 2
    # The rightful session can still finish: a refused attempt does not spend the flow.
    assert client.get(CALLBACK, params=callback, headers=owner.headers).status_code == 201


def test_an_expired_state_is_refused(client, owner, airtable, rt):
    callback = consent(start(client, owner, airtable), airtable)
    with unit_of_work(rt.sessions) as session:
        session.execute(
            update(OAuthFlow).values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    response = client.get(CALLBACK, params=callback, headers=owner.headers)
    assert response.status_code == 400
    assert [json_reason(e) for e in _security_events(rt)] == ["expired"]


def test_a_cross_provider_callback_is_refused(client, owner, airtable, mastodon, rt):
    """V10.2.2 mix-up defence: the callback names another authorization server (RFC 9207 ``iss``)
    than the flow's provider; the code is never sent anywhere."""
    callback = consent(start(client, owner, airtable), airtable)
    response = client.get(
        CALLBACK, params={**callback, "iss": mastodon.base_url}, headers=owner.headers
    )
    assert response.status_code == 400
    assert [json_reason(e) for e in _security_events(rt)] == ["issuer_mismatch"]
    assert airtable.requests_to("/oauth2/v1/token") == []
    assert mastodon.requests_to("/oauth/token") == []
    # The right issuer is accepted.
    ok = client.get(CALLBACK, params={**callback, "iss": airtable.base_url}, headers=owner.headers)
    assert ok.status_code == 201, ok.text


def test_a_declined_authorization_connects_nothing(client, owner, airtable, rt):
    state = start(client, owner, airtable)["state"][0]
    response = client.get(
        CALLBACK, params={"state": state, "error": "access_denied"}, headers=owner.headers
    )
    assert response.status_code == 400
    assert _connections(rt) == 0
    with unit_of_work(rt.sessions) as session:
        assert session.scalars(select(OAuthFlow.used_at)).one() is not None


def test_an_api_key_cannot_start_an_oauth_flow(client, owner, airtable):
    key = client.post(
        "/api/v1/auth/reauth",
        json={"password": "correct horse battery staple 9"},
        headers=owner.headers,
    )
    assert key.status_code == 200, key.text
    created = client.post(
        "/api/v1/api-keys",
        json={"name": "svc", "scopes": ["connection:manage", "connection:read"]},
        headers=owner.headers,
    )
    assert created.status_code == 201, created.text
    headers = {"authorization": f"Bearer {created.json()['key']}"}
    response = client.post(
        CONNECTIONS,
        json={"provider": "airtable", "name": "x", "fields": _fields(airtable)},
        headers=headers,
    )
    assert response.status_code == 400, response.text


def test_a_personal_access_token_connects_without_oauth(client, owner, airtable, rt):
    pat = airtable.issue_pat()
    response = client.post(
        CONNECTIONS,
        json={
            "provider": "airtable",
            "name": "With a PAT",
            "fields": {**_fields(airtable), "personal_access_token": pat},
        },
        headers=owner.headers,
    )
    assert response.status_code == 201, response.text
    assert pat not in response.text
    assert pat not in _database_text(rt)


def test_mastodon_registers_one_client_per_instance(client, owner, mastodon, rt):
    for _ in range(2):
        response = client.post(
            CONNECTIONS,
            json={
                "provider": "mastodon",
                "name": "Toots",
                "fields": {"instance": mastodon.base_url},
            },
            headers=owner.headers,
        )
        assert response.status_code == 202, response.text
        query = parse_qs(urlsplit(response.json()["authorization_url"]).query)
        assert query["code_challenge_method"] == ["S256"]
    assert len(mastodon.requests_to("/api/v1/apps")) == 1
    with unit_of_work(rt.sessions) as session:
        registrations = session.scalars(select(OAuthClientRegistration)).all()
        assert len(registrations) == 1
        assert registrations[0].client_secret_sealed
    app_secret = next(iter(mastodon.apps.values())).client_secret
    assert app_secret not in _database_text(rt)
    # Finish one flow: the token exchange uses the registered client.
    flat = {k: v[0] for k, v in query.items()}
    answer = httpx.get(f"{mastodon.base_url}/oauth/authorize", params=flat)
    assert answer.status_code == 302, answer.text
    callback = dict(parse_qsl(urlsplit(answer.headers["location"]).query))
    done = client.get(CALLBACK, params=callback, headers=owner.headers)
    assert done.status_code == 201, done.text
    # Disconnect revokes at the instance (RFC 7009).
    removed = client.delete(f"{CONNECTIONS}/{done.json()['id']}", headers=owner.headers)
    assert removed.status_code == 204
    assert mastodon.revoked_tokens()


def json_reason(event: SecurityEvent) -> str:
    import json

    return str(json.loads(event.details)["reason"])


def _database_text(rt: Runtime) -> str:
    """Every value in every table, as text: what someone with the database would read."""
    with unit_of_work(rt.sessions) as session:
        if BACKEND == "postgres":
            tables = session.scalars(
                text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            ).all()
        else:
            tables = session.scalars(
                text("SELECT name FROM sqlite_master WHERE type = 'table'")
            ).all()
        chunks: list[str] = []
        for table in tables:
            for row in session.execute(text(f'SELECT * FROM "{table}"')):  # noqa: S608 - names from the catalogue
                for value in row:
                    if isinstance(value, bytes | memoryview):
                        chunks.append(bytes(value).decode("latin-1"))
                    elif value is not None:
                        chunks.append(str(value))
        return "\n".join(chunks)


def test_a_spent_flow_keeps_no_secret_and_old_flows_are_purged(client, owner, airtable, rt):
    """The PKCE verifier and provider flow data (a DPoP key, for Bluesky) are needed once:
    the spent flow keeps none of it; the nightly job deletes spent and expired flows."""
    from plexus.connections import repository
    from plexus.connections.oauth_flow import flow_context

    callback = consent(start(client, owner, airtable), airtable)
    assert client.get(CALLBACK, params=callback, headers=owner.headers).status_code == 201
    with unit_of_work(rt.sessions) as session:
        flow = session.scalars(select(OAuthFlow)).one()
        assert rt.secretbox.open(flow.flow_sealed, flow_context(flow.id)) == b"{}"
        assert repository.purge_flows(session, datetime.now(UTC) - timedelta(days=1)) == 0
        assert repository.purge_flows(session, datetime.now(UTC) + timedelta(seconds=1)) == 1
        assert session.scalars(select(OAuthFlow)).all() == []
