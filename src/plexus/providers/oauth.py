"""The OAuth2 client side, shared by every OAuth2 provider: the authorization URL
(authorization code + PKCE S256 + state + OIDC nonce), the code exchange, refresh
(RFC 6749 §6) and revocation (RFC 7009).

Authlib supplies the protocol pieces (URI and token-request encoding, the S256 challenge,
client authentication); the requests go through Plexus's own outbound client, so every
token request has the same timeouts, redirect refusal and SSRF guard as the rest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx
from authlib.oauth2.auth import ClientAuth
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri, prepare_token_request
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from plexus.providers.base import (
    AuthorizationRequest,
    Credentials,
    OAuthClient,
    OAuthSpec,
    ProviderNeedsReauth,
    ProviderRejected,
    ProviderRetryable,
    TokenAuthMethod,
    raise_for_transport,
    retry_after_seconds,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

#: Token-endpoint error codes after which only the user can help (RFC 6749 §5.2).
REAUTH_ERRORS = frozenset({"invalid_grant", "invalid_client", "unauthorized_client"})


def authorization_url(spec: OAuthSpec, request: AuthorizationRequest) -> str:
    """The URL to send the user to; carries exactly the spec's scopes."""
    if request.client is None:
        raise ProviderRejected("no OAuth client for this flow")
    params: dict[str, Any] = {
        "redirect_uri": request.redirect_uri,
        "scope": spec.scope_separator.join(spec.scopes),
    }
    if spec.pkce:
        params["code_challenge"] = create_s256_code_challenge(request.code_verifier)
        params["code_challenge_method"] = "S256"
    if spec.oidc and request.nonce:
        params["nonce"] = request.nonce
    params.update(dict(spec.extra_authorize_params))
    return str(
        prepare_grant_uri(
            spec.authorize_url,
            client_id=request.client.client_id,
            response_type="code",
            state=request.state,
            **params,
        )
    )


def _client_auth(
    client: OAuthClient, method: TokenAuthMethod, url: str, body: str
) -> tuple[dict[str, str], str]:
    """Headers and body with the client's authentication applied (Authlib's encoders)."""
    auth = ClientAuth(client.client_id, client.client_secret or "", method.value)
    _, headers, new_body = auth.prepare(
        "POST", url, {"content-type": "application/x-www-form-urlencoded"}, body
    )
    return dict(headers), new_body


def token_request(
    http: httpx.Client,
    spec: OAuthSpec,
    client: OAuthClient,
    body: str,
    platform: str,
) -> dict[str, Any]:
    """POST a token request; return the token response or raise the right provider error."""
    method = spec.token_auth_method
    if client.client_secret is None:
        method = TokenAuthMethod.NONE
    headers, encoded = _client_auth(client, method, spec.token_url, body)
    headers["accept"] = "application/json"
    try:
        response = http.post(spec.token_url, content=encoded, headers=headers)
    except httpx.HTTPError as exc:
        raise raise_for_transport(exc, platform) from None
    return parse_token_response(response, platform)


def parse_token_response(response: httpx.Response, platform: str) -> dict[str, Any]:
    if response.status_code == 429 or response.status_code >= 500:  # noqa: PLR2004
        raise ProviderRetryable(
            f"{platform} token endpoint answered {response.status_code}",
            retry_after=retry_after_seconds(response),
            rate_limited=response.status_code == 429,  # noqa: PLR2004
        )
    try:
        data = response.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise ProviderRetryable(f"{platform} token endpoint answered {response.status_code}")
    error = data.get("error")
    if error or response.status_code >= 400:  # noqa: PLR2004
        code = str(error or response.status_code)
        if code in REAUTH_ERRORS:
            raise ProviderNeedsReauth(f"{platform} refused the grant ({code})")
        raise ProviderRejected(f"{platform} token endpoint refused the request ({code})")
    if not data.get("access_token"):
        raise ProviderRejected(f"{platform} token response has no access_token")
    return data


def credentials_from(data: Mapping[str, Any], previous: Credentials | None = None) -> Credentials:
    """Credentials from a token response (a missing refresh token keeps the previous one)."""
    base = previous or Credentials()
    expires_in = data.get("expires_in")
    return base.refreshed(
        access_token=str(data["access_token"]),
        expires_in=float(expires_in) if expires_in not in (None, "") else None,
        refresh_token=data.get("refresh_token"),
        scope=data.get("scope"),
    )


def exchange_code(
    http: httpx.Client,
    spec: OAuthSpec,
    request: AuthorizationRequest,
    callback: Mapping[str, str],
    platform: str,
) -> Credentials:
    """Trade the callback's ``code`` (with the PKCE verifier) for tokens."""
    code = callback.get("code")
    if not code:
        raise ProviderRejected("the callback carries no authorization code")
    if request.client is None:
        raise ProviderRejected("no OAuth client for this flow")
    extra: dict[str, str] = {}
    if spec.pkce:
        extra["code_verifier"] = request.code_verifier
    body = prepare_token_request(
        "authorization_code", "", redirect_uri=request.redirect_uri, code=code, **extra
    )
    data = token_request(http, spec, request.client, body, platform)
    return credentials_from(data)


def refresh_tokens(
    http: httpx.Client,
    spec: OAuthSpec,
    client: OAuthClient,
    credentials: Credentials,
    platform: str,
) -> Credentials:
    """The refresh-token grant; keeps the old refresh token when none comes back."""
    if not credentials.refresh_token:
        raise ProviderNeedsReauth(f"the {platform} connection has no refresh token")
    body = prepare_token_request("refresh_token", "", refresh_token=credentials.refresh_token)
    data = token_request(http, spec, client, body, platform)
    return credentials_from(data, credentials)


def revoke_token(
    http: httpx.Client,
    spec: OAuthSpec,
    client: OAuthClient,
    credentials: Credentials,
    platform: str,
) -> None:
    """RFC 7009: revoke the refresh token (which ends its access tokens), else the access
    token. A 200 (even for an unknown token) or a 400 ``invalid_token`` both mean gone.
    """
    if spec.revoke_url is None:
        return
    token, hint = credentials.refresh_token, "refresh_token"
    if not token:
        token, hint = credentials.access_token, "access_token"
    if not token:
        return
    body = httpx.QueryParams({"token": token, "token_type_hint": hint})
    method = spec.token_auth_method if client.client_secret else TokenAuthMethod.NONE
    headers, encoded = _client_auth(client, method, spec.revoke_url, str(body))
    try:
        response = http.post(spec.revoke_url, content=encoded, headers=headers)
    except httpx.HTTPError as exc:
        raise raise_for_transport(exc, platform) from None
    status = response.status_code
    if status in (429, 503) or status >= 500:  # noqa: PLR2004
        raise ProviderRetryable(
            f"{platform} revocation answered {status}",
            retry_after=retry_after_seconds(response),
            rate_limited=status == 429,  # noqa: PLR2004
        )
    if 200 <= status < 300:  # noqa: PLR2004
        return
    try:
        error = str(response.json().get("error", status))
    except (ValueError, AttributeError):
        error = str(status)
    if status == 400 and error == "invalid_token":  # noqa: PLR2004
        raise ProviderNeedsReauth(f"{platform} no longer knows the token (invalid_token)")
    raise ProviderRejected(f"{platform} refused the revocation ({error})")
