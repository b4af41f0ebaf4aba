"""XRPC over Plexus's outbound client: one request helper and one error mapping.

XRPC (https://atproto.com/specs/xrpc) is plain HTTP: queries are ``GET /xrpc/<nsid>``
with the parameters in the query string, procedures are ``POST /xrpc/<nsid>`` with a JSON
(or raw blob) body. Errors are a JSON body ``{"error": "Name", "message": "..."}``; a PDS
adds the draft rate-limit headers (``ratelimit-limit``, ``ratelimit-remaining``,
``ratelimit-reset`` in unix seconds) to its 429 answers.

How a request is authorised is left to an ``Authorizer``: a bearer JWT for app-password
sessions, a DPoP-bound token with a fresh proof per request for OAuth sessions.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any, Final, Protocol

import httpx
import jwt

from plexus.providers.base import (
    ProviderError,
    ProviderNeedsReauth,
    ProviderRejected,
    ProviderRetryable,
    ProviderTokenExpired,
    raise_for_transport,
    retry_after_seconds,
)

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime

PLATFORM: Final = "Bluesky"

#: Errors that mean "this access token is not (or no longer) good; refresh and retry".
#: ``InvalidToken`` is included because a PDS that rotated its signing secret answers it
#: for every old token: a refresh (or a new session from the app password) heals that.
TOKEN_ERRORS: Final = frozenset({"ExpiredToken", "InvalidToken", "invalid_token"})
#: Errors only the account's owner can fix.
REAUTH_ERRORS: Final = frozenset(
    {"AuthenticationRequired", "AccountTakedown", "AccountDeactivated", "AuthMissing"}
)


class Authorizer(Protocol):
    """Adds credentials to one XRPC request and may ask for one retry."""

    def headers(self, method: str, url: str) -> dict[str, str]:
        """The headers that authorise ``method url``."""

    def wants_retry(self, response: httpx.Response) -> bool:
        """Whether ``response`` asks for the request again with new headers (a DPoP nonce)."""


class BearerAuth:
    """A session JWT as an RFC 6750 bearer token (app-password sessions)."""

    def __init__(self, token: str) -> None:
        self._token = token

    def headers(self, method: str, url: str) -> dict[str, str]:
        del method, url
        return {"authorization": f"Bearer {self._token}"}

    def wants_retry(self, response: httpx.Response) -> bool:
        del response
        return False


def _body(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except (ValueError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def rate_limit_delay(response: httpx.Response) -> float | None:
    """Seconds until a throttled request may be retried: ``Retry-After``, else the time
    left until ``ratelimit-reset`` (unix seconds).
    """
    delay = retry_after_seconds(response)
    if delay is not None:
        return delay
    reset = response.headers.get("ratelimit-reset")
    if reset is None:
        return None
    try:
        return max(0.0, float(reset) - time.time())
    except ValueError:
        return None


def error_for(response: httpx.Response, what: str) -> ProviderError:
    """The provider error for a failed XRPC answer; ``what`` names the call for messages."""
    status = response.status_code
    if status == 429:  # noqa: PLR2004 - Too Many Requests
        return ProviderRetryable(
            f"{PLATFORM} is rate limiting {what}",
            retry_after=rate_limit_delay(response),
            rate_limited=True,
        )
    if status >= 500:  # noqa: PLR2004
        return ProviderRetryable(
            f"{PLATFORM} answered {status} to {what}", retry_after=retry_after_seconds(response)
        )
    data = _body(response)
    error = str(data.get("error") or "")
    message = str(data.get("message") or "")
    if error == "RateLimitExceeded":
        return ProviderRetryable(
            f"{PLATFORM} is rate limiting {what}",
            retry_after=rate_limit_delay(response),
            rate_limited=True,
        )
    # An OAuth resource server says it in the challenge: WWW-Authenticate: DPoP
    # error="invalid_token" (expired or revoked; the refresh tells which).
    challenge = response.headers.get("www-authenticate", "")
    if error in TOKEN_ERRORS or 'error="invalid_token"' in challenge:
        return ProviderTokenExpired(f"{PLATFORM} refused the session token ({error})")
    if error in REAUTH_ERRORS or status == 401:  # noqa: PLR2004 - Unauthorized
        return ProviderNeedsReauth(f"{PLATFORM} refused the credentials ({error or status})")
    detail = f"{error}: {message}" if error and message else error or message or str(status)
    return ProviderRejected(f"{PLATFORM} refused {what} ({detail})")


class Xrpc:
    """XRPC calls to one service (an entryway, a PDS) through ``http``."""

    def __init__(self, http: httpx.Client, service: str, auth: Authorizer | None = None) -> None:
        self._http = http
        self._service = service.rstrip("/")
        self._auth = auth

    def url(self, nsid: str) -> str:
        return f"{self._service}/xrpc/{nsid}"

    def query(self, nsid: str, params: Mapping[str, str] | None = None) -> dict[str, Any]:
        return self._call("GET", nsid, params=dict(params or {}))

    def procedure(
        self,
        nsid: str,
        body: Mapping[str, Any] | None = None,
        *,
        data: bytes | None = None,
        content_type: str | None = None,
    ) -> dict[str, Any]:
        if data is not None:
            return self._call("POST", nsid, content=data, content_type=content_type)
        if body is None:
            return self._call("POST", nsid)
        return self._call(
            "POST", nsid, content=json.dumps(body).encode(), content_type="application/json"
        )

    def _call(
        self,
        method: str,
        nsid: str,
        *,
        params: dict[str, str] | None = None,
        content: bytes | None = None,
        content_type: str | None = None,
    ) -> dict[str, Any]:
        url = self.url(nsid)
        for attempt in range(2):
            headers = {"accept": "application/json"}
            if content_type:
                headers["content-type"] = content_type
            if self._auth is not None:
                headers.update(self._auth.headers(method, url))
            try:
                response = self._http.request(
                    method, url, params=params, content=content, headers=headers
                )
            except httpx.InvalidURL:
                raise ProviderRejected(f"the {PLATFORM} service address is not valid") from None
            except httpx.HTTPError as exc:
                raise raise_for_transport(exc, PLATFORM) from None
            if response.is_success:
                return _body(response)
            if attempt == 0 and self._auth is not None and self._auth.wants_retry(response):
                continue
            raise error_for(response, nsid)
        msg = "unreachable: the loop returns or raises"
        raise AssertionError(msg)  # pragma: no cover


def jwt_claims(token: str) -> dict[str, Any]:
    """The payload of a JWT the PDS issued, read without verifying it: it is the PDS's own
    token (signed with its secret), so only the PDS can check it; we only read ``exp``,
    ``scope`` and ``sub`` to plan refreshes.
    """
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return {}
    return claims if isinstance(claims, dict) else {}


def jwt_time(token: str, claim: str = "exp") -> datetime | None:
    """A time claim (``exp``, ``iat``) of a PDS-issued JWT, unverified (see above)."""
    from datetime import UTC, datetime

    value = jwt_claims(token).get(claim)
    if not isinstance(value, int | float):
        return None
    return datetime.fromtimestamp(value, UTC)


def jwt_expiry(token: str) -> datetime | None:
    return jwt_time(token, "exp")
