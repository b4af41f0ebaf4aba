"""RFC 7009 revocation as every OAuth2 provider does it (``providers/oauth.py``): only a
2xx is a revocation; ``invalid_token`` means the token was already dead; any other refusal
is an error, so a disconnect never records a revocation that did not happen (V10.7.3)."""

from __future__ import annotations

from dataclasses import replace
from urllib.parse import parse_qsl

import httpx
import pytest

from plexus.providers.base import (
    Credentials,
    OAuthClient,
    OAuthSpec,
    ProviderNeedsReauth,
    ProviderRejected,
    ProviderRetryable,
    TokenAuthMethod,
)
from plexus.providers.oauth import revoke_token

SPEC = OAuthSpec(
    authorize_url="https://platform.test/authorize",
    token_url="https://platform.test/token",
    revoke_url="https://platform.test/revoke",
    scopes=("post",),
)
CREDENTIALS = Credentials(access_token="at-1", refresh_token="rt-1")


def _revoke(status: int, body: object, *, client: OAuthClient, spec: OAuthSpec = SPEC):
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, json=body)

    with httpx.Client(transport=httpx.MockTransport(answer)) as http:
        revoke_token(http, spec, client, CREDENTIALS, "Platform")
    return seen


def test_a_2xx_revokes_the_refresh_token_with_client_authentication():
    seen = _revoke(200, {}, client=OAuthClient("cid", "secret"))
    form = dict(parse_qsl(seen[0].content.decode()))
    assert form["token"] == "rt-1"
    assert form["token_type_hint"] == "refresh_token"
    assert form["client_id"] == "cid"
    assert form["client_secret"] == "secret"


def test_a_public_client_sends_only_its_id():
    basic = replace(SPEC, token_auth_method=TokenAuthMethod.CLIENT_SECRET_BASIC)
    seen = _revoke(200, {}, client=OAuthClient("cid"), spec=basic)
    form = dict(parse_qsl(seen[0].content.decode()))
    assert form["client_id"] == "cid"
    assert "client_secret" not in form
    assert "authorization" not in seen[0].headers


def test_invalid_token_means_already_dead():
    with pytest.raises(ProviderNeedsReauth):
        _revoke(400, {"error": "invalid_token"}, client=OAuthClient("cid", "secret"))


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (401, {"error": "invalid_client"}),
        (400, {"error": "unsupported_token_type"}),
        (403, {"error": "access_denied"}),
        (404, {}),
    ],
)
def test_other_refusals_are_not_a_revocation(status, body):
    with pytest.raises(ProviderRejected):
        _revoke(status, body, client=OAuthClient("cid", "secret"))


@pytest.mark.parametrize("status", [429, 500, 503])
def test_throttling_and_outages_are_retryable(status):
    with pytest.raises(ProviderRetryable):
        _revoke(status, {}, client=OAuthClient("cid", "secret"))
