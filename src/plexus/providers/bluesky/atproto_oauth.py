"""atproto OAuth (https://atproto.com/specs/oauth): PAR + PKCE S256 + DPoP, public client.

The flow, as this module runs it:

1. identity: the handle resolves to a DID, whose document names the PDS (and must claim
   the handle back);
2. discovery: the PDS's ``/.well-known/oauth-protected-resource`` names its authorization
   server; that server's ``/.well-known/oauth-authorization-server`` must state the same
   issuer and gives the PAR, authorization, token and revocation endpoints;
3. PAR: the authorization parameters (PKCE challenge, state, ``login_hint``, scope) are
   pushed server to server with a DPoP proof; the user is sent to the authorization
   endpoint with only ``client_id`` and the returned ``request_uri``;
4. callback: ``iss`` must be the issuer we started with (mix-up defence), the code is
   exchanged with the PKCE verifier and a DPoP proof, and the token response's ``sub``
   must be the DID we resolved (else the server speaks for another account).

The client is public (``token_endpoint_auth_method: none``). In development (a loopback
``public_url``) it is the loopback client ``http://localhost?redirect_uri=…&scope=…``; in
production its ``client_id`` is the URL of the metadata document ``client_metadata()``
returns, which Plexus serves at ``{public_url}/oauth/bluesky/client-metadata.json``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlencode, urlsplit

import httpx
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from plexus.providers.base import (
    Credentials,
    ProviderNeedsReauth,
    ProviderRejected,
    ProviderRetryable,
    raise_for_transport,
)
from plexus.providers.bluesky import identity
from plexus.providers.bluesky.dpop import DpopKey, asks_for_nonce
from plexus.providers.oauth import parse_token_response

if TYPE_CHECKING:
    from collections.abc import Mapping

SCOPE: Final = "atproto transition:generic"
METADATA_PATH: Final = "/oauth/bluesky/client-metadata.json"
PLATFORM: Final = "Bluesky"
#: The longest endpoint URL taken from an authorization server's metadata.
MAX_ENDPOINT_LENGTH: Final = 1000
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})


def is_loopback(url: str) -> bool:
    return (urlsplit(url).hostname or "") in _LOOPBACK_HOSTS


def client_id_for(public_url: str, redirect_uri: str) -> str:
    """The client_id: the loopback client in development, else the metadata URL."""
    if is_loopback(public_url):
        query = urlencode({"redirect_uri": redirect_uri, "scope": SCOPE})
        return f"http://localhost?{query}"
    return f"{public_url.rstrip('/')}{METADATA_PATH}"


def client_metadata(public_url: str, redirect_uri: str) -> dict[str, Any]:
    """The client metadata document Plexus serves at ``{public_url}`` + ``METADATA_PATH``."""
    base = public_url.rstrip("/")
    return {
        "client_id": f"{base}{METADATA_PATH}",
        "client_name": "Plexus",
        "client_uri": base,
        "redirect_uris": [redirect_uri],
        "scope": SCOPE,
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        "application_type": "web",
        "dpop_bound_access_tokens": True,
    }


def _json(http: httpx.Client, url: str, what: str) -> dict[str, Any]:
    try:
        response = http.get(url, headers={"accept": "application/json"})
    except httpx.InvalidURL:
        raise ProviderRejected(f"the address of {what} is not valid") from None
    except httpx.HTTPError as exc:
        raise raise_for_transport(exc, what) from None
    if response.status_code >= 500:  # noqa: PLR2004
        raise ProviderRetryable(f"{what} answered {response.status_code}")
    if not response.is_success:
        raise ProviderRejected(f"{what} is not available ({response.status_code})")
    try:
        data = response.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise ProviderRejected(f"{what} is not a JSON object")
    return data


def _endpoint(meta: Mapping[str, Any], key: str, required: bool = True) -> str | None:  # noqa: FBT001, FBT002
    value = meta.get(key)
    if isinstance(value, str) and value and len(value) <= MAX_ENDPOINT_LENGTH:
        try:
            parts = urlsplit(value)
            loopback = parts.hostname in {"localhost", "127.0.0.1"}
            _ = parts.port, httpx.URL(value)  # a bad port or host raises here, not later
        except (ValueError, httpx.InvalidURL):
            parts, loopback = None, False
        if parts is not None and (parts.scheme == "https" or (parts.scheme == "http" and loopback)):
            return value
    if required:
        raise ProviderRejected(f"the Bluesky authorization server gives no usable {key}")
    return None


def discover(http: httpx.Client, pds_url: str) -> dict[str, str]:
    """The authorization server of a PDS and its endpoints (RFC 9728, RFC 8414)."""
    resource = _json(http, f"{pds_url}/.well-known/oauth-protected-resource", "the PDS")
    servers = resource.get("authorization_servers")
    if not isinstance(servers, list) or not servers or not isinstance(servers[0], str):
        raise ProviderRejected("the PDS names no authorization server")
    issuer = identity.service_url(servers[0], "authorization server")
    meta = _json(
        http, f"{issuer}/.well-known/oauth-authorization-server", "the authorization server"
    )
    if meta.get("issuer") != issuer:
        raise ProviderRejected("the authorization server's metadata names another issuer")
    algs = meta.get("dpop_signing_alg_values_supported")
    if isinstance(algs, list) and "ES256" not in algs:
        raise ProviderRejected("the authorization server does not accept ES256 DPoP proofs")
    found = {
        "issuer": issuer,
        "par_endpoint": _endpoint(meta, "pushed_authorization_request_endpoint"),
        "authorization_endpoint": _endpoint(meta, "authorization_endpoint"),
        "token_endpoint": _endpoint(meta, "token_endpoint"),
        "revocation_endpoint": _endpoint(meta, "revocation_endpoint", required=False),
    }
    return {k: v for k, v in found.items() if v}


def post_form(
    http: httpx.Client, key: DpopKey, url: str, form: Mapping[str, str]
) -> httpx.Response:
    """POST a form with a DPoP proof; once more with the nonce if the server demands one."""
    response: httpx.Response | None = None
    for _ in range(2):
        headers = {
            "dpop": key.proof("POST", url),
            "content-type": "application/x-www-form-urlencoded",
            "accept": "application/json",
        }
        try:
            response = http.post(url, content=urlencode(dict(form)), headers=headers)
        except httpx.InvalidURL:
            raise ProviderRejected(
                "the Bluesky authorization server address is not valid"
            ) from None
        except httpx.HTTPError as exc:
            raise raise_for_transport(exc, "the Bluesky authorization server") from None
        learned = key.learn_nonce(response)
        if not (learned and asks_for_nonce(response)):
            return response
    assert response is not None  # noqa: S101 - the loop ran at least once
    return response


def push_authorization(
    http: httpx.Client, key: DpopKey, endpoints: Mapping[str, str], params: Mapping[str, str]
) -> str:
    """PAR (RFC 9126): returns the ``request_uri`` to send the user with."""
    response = post_form(http, key, endpoints["par_endpoint"], params)
    if response.status_code >= 500:  # noqa: PLR2004
        raise ProviderRetryable(f"the Bluesky PAR endpoint answered {response.status_code}")
    try:
        data = response.json()
    except ValueError:
        data = {}
    request_uri = data.get("request_uri") if isinstance(data, dict) else None
    if not response.is_success or not isinstance(request_uri, str):
        error = data.get("error") if isinstance(data, dict) else None
        raise ProviderRejected(
            f"Bluesky refused the authorization request ({error or response.status_code})"
        )
    return request_uri


def pkce_challenge(verifier: str) -> str:
    return str(create_s256_code_challenge(verifier))


def token_credentials(
    data: Mapping[str, Any], key_pem: str, expected_did: str, previous: Credentials | None = None
) -> Credentials:
    """Credentials from an atproto token response, after checking whose tokens they are."""
    if data.get("sub") != expected_did:
        raise ProviderNeedsReauth("the Bluesky tokens belong to another account than requested")
    if str(data.get("token_type", "")).lower() != "dpop":
        raise ProviderRejected("Bluesky issued tokens that are not DPoP-bound")
    scopes = str(data.get("scope") or "").split()
    if "atproto" not in scopes:
        raise ProviderRejected("Bluesky granted tokens without the atproto scope")
    expires_in = data.get("expires_in")
    issued_at = datetime.now(UTC)
    expires_at = None
    if isinstance(expires_in, int | float):
        expires_at = issued_at + timedelta(seconds=float(expires_in))
    refresh = data.get("refresh_token")
    return Credentials(
        access_token=str(data["access_token"]),
        refresh_token=str(refresh) if refresh else (previous.refresh_token if previous else None),
        expires_at=expires_at,
        issued_at=issued_at,
        token_type="DPoP",  # noqa: S106 - the RFC 9449 scheme name
        scope=" ".join(scopes),
        secrets={"dpop_key": key_pem},
    )


def token_request(
    http: httpx.Client, key: DpopKey, token_endpoint: str, form: Mapping[str, str]
) -> dict[str, Any]:
    response = post_form(http, key, token_endpoint, form)
    return parse_token_response(response, PLATFORM)


def revoke(
    http: httpx.Client, key: DpopKey, revocation_endpoint: str, client_id: str, token: str
) -> None:
    """RFC 7009 revocation of the refresh token (which ends its access tokens)."""
    response = post_form(
        http,
        key,
        revocation_endpoint,
        {"token": token, "token_type_hint": "refresh_token", "client_id": client_id},
    )
    if response.status_code == 429 or response.status_code >= 500:  # noqa: PLR2004
        raise ProviderRetryable(f"Bluesky revocation answered {response.status_code}")
