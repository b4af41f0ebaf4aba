"""A thin Matrix client-server API client over Plexus's guarded httpx client.

It knows the homeserver's base URL and the access token, sends one request at a time and
turns Matrix's error answers (``{"errcode": ..., "error": ...}``) into the provider errors
of ``plexus.providers.base``. Nothing here knows about posts or rooms.
"""

from __future__ import annotations

import ipaddress
import unicodedata
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import SplitResult, quote, urlsplit, urlunsplit

import httpx

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

    from plexus.kit.http import DestinationPolicy

PLATFORM: Final = "the Matrix homeserver"
#: The longest homeserver address accepted (a server name is at most 255 characters).
MAX_HOMESERVER_LENGTH: Final = 512
CLIENT_API: Final = "/_matrix/client/v3"
#: Statuses Matrix uses for a refused token; the errcode says which case it is.
_TOKEN_ERRCODES: Final = frozenset({"M_UNKNOWN_TOKEN", "M_MISSING_TOKEN"})


def path_segment(value: str) -> str:
    """One URL path segment: room ids, aliases and event ids carry ``!``, ``#``, ``$``."""
    return quote(value, safe="")


def matrix_error(response: httpx.Response, *, can_refresh: bool) -> ProviderError:
    """The provider error for a Matrix error answer (any status >= 400).

    ``can_refresh`` tells whether the connection holds a refresh token: only then is a
    soft logout (an expired access token) worth a refresh instead of a new connection.
    """
    body: dict[str, Any] = {}
    try:
        parsed = response.json()
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        body = parsed
    errcode = str(body.get("errcode") or "")
    detail = str(body.get("error") or "")[:200]
    described = f"{errcode}: {detail}" if errcode else f"HTTP {response.status_code}"

    status = response.status_code
    if errcode == "M_LIMIT_EXCEEDED" or status == 429:  # noqa: PLR2004 - HTTP 429
        return _rate_limited(response, body, described)
    if errcode in _TOKEN_ERRCODES or status == 401:  # noqa: PLR2004 - HTTP 401
        if body.get("soft_logout") is True and can_refresh:
            return ProviderTokenExpired(f"{PLATFORM} says the access token expired")
        return ProviderNeedsReauth(f"{PLATFORM} no longer accepts the access token ({described})")
    if status >= 500:  # noqa: PLR2004 - the 5xx class
        return ProviderRetryable(f"{PLATFORM} failed ({described})")
    if errcode == "M_TOO_LARGE" or status == 413:  # noqa: PLR2004 - HTTP 413
        reason = "refused it as too large"
    elif errcode == "M_FORBIDDEN" or status == 403:  # noqa: PLR2004 - HTTP 403
        reason = "does not allow it"
    else:
        reason = "refused the request"
    return ProviderRejected(f"{PLATFORM} {reason} ({described})")


def _rate_limited(
    response: httpx.Response, body: Mapping[str, Any], described: str
) -> ProviderRetryable:
    # Servers since Matrix 1.10 send Retry-After; older ones only ``retry_after_ms``.
    delay = retry_after_seconds(response)
    if delay is None:
        millis = body.get("retry_after_ms")
        if isinstance(millis, int | float) and not isinstance(millis, bool) and millis >= 0:
            delay = float(millis) / 1000
    return ProviderRetryable(
        f"{PLATFORM} is rate limiting ({described})", retry_after=delay, rate_limited=True
    )


def normalise_homeserver(value: str, policy: DestinationPolicy) -> str:
    """The homeserver URL a user typed, as an absolute base URL without a trailing slash.

    A bare server name (``example.org``) means ``https://example.org``. Plain ``http`` is
    refused, since the access token would travel in clear, except to an IP address inside
    a network the operator explicitly allowed (a homeserver on the same host or LAN).
    """
    parts = _split_homeserver(value)
    hostname = str(parts.hostname)
    address = _ip_literal(hostname)
    if address is not None and not policy.permits(address):
        # The guarded client would refuse it too, after resolving; say why up front.
        raise ProviderRejected("the homeserver address is not a public address")
    allowed = address is not None and any(address in n for n in policy.allowed_networks)
    if parts.scheme == "http" and not allowed:
        raise ProviderRejected("the homeserver address must use https://")
    normalised = urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))
    try:
        httpx.URL(normalised + CLIENT_API)
    except (httpx.InvalidURL, ValueError):
        raise ProviderRejected("the homeserver address is not a valid URL") from None
    return normalised


def _split_homeserver(value: str) -> SplitResult:
    """The parts of a homeserver address, or ProviderRejected with a short reason."""
    text = value.strip()
    if not text:
        raise ProviderRejected("give the homeserver's address")
    if len(text) > MAX_HOMESERVER_LENGTH:
        raise ProviderRejected("the homeserver address is too long")
    if has_control_or_space(text):
        raise ProviderRejected("the homeserver address must not hold spaces or control characters")
    if "://" not in text:
        text = f"https://{text}"
    try:
        parts = urlsplit(text)
        port = parts.port  # raises ValueError for a port out of range
        hostname = parts.hostname
    except ValueError:
        raise ProviderRejected("the homeserver address is not a valid URL") from None
    if parts.scheme not in {"https", "http"} or not hostname:
        raise ProviderRejected("the homeserver address must be an https:// URL")
    if port == 0:
        raise ProviderRejected("the homeserver address is not a valid URL")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ProviderRejected("the homeserver address must be a plain https:// URL")
    return parts


def has_control_or_space(value: str) -> bool:
    """Whether ``value`` holds whitespace or a control, format or unassigned character."""
    return any(c.isspace() or unicodedata.category(c).startswith("C") for c in value)


def origin_of(base_url: str) -> str:
    """``scheme://host[:port]`` of a base URL: where ``/.well-known`` documents live."""
    parts = urlsplit(base_url)
    return urlunsplit((parts.scheme, parts.netloc, "", "", ""))


def _ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


class MatrixClient:
    """Requests to one homeserver, as one access token (or none, for login and refresh)."""

    def __init__(
        self,
        http: httpx.Client,
        base_url: str,
        *,
        access_token: str | None = None,
        can_refresh: bool = False,
    ) -> None:
        self._http = http
        self.base_url = base_url
        self._access_token = access_token
        self._can_refresh = can_refresh

    def request(  # noqa: PLR0913 - the keywords of httpx's own request()
        self,
        method: str,
        path: str,
        *,
        json: Mapping[str, Any] | None = None,
        content: bytes | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        authenticated: bool = True,
    ) -> dict[str, Any]:
        """Send one request; the decoded JSON object of a 2xx answer, or a provider error.

        ``path`` starting with ``/_matrix`` or ``/.well-known`` is taken as is; anything else
        is relative to the client API (``/_matrix/client/v3``).
        """
        if not path.startswith(("/_matrix/", "/.well-known/")):
            path = CLIENT_API + path
        sent_headers = dict(headers or {})
        if authenticated:
            if not self._access_token:
                raise ProviderNeedsReauth("the connection has no access token; connect it again")
            sent_headers["authorization"] = f"Bearer {self._access_token}"
        try:
            response = self._http.request(
                method,
                self.base_url + path,
                json=json,
                content=content,
                params=params,
                headers=sent_headers,
            )
        except httpx.InvalidURL:
            raise ProviderRejected(f"{PLATFORM} address is not a valid URL") from None
        except httpx.HTTPError as exc:
            raise raise_for_transport(exc, PLATFORM) from None
        if response.status_code >= 400:  # noqa: PLR2004 - the error classes
            raise matrix_error(response, can_refresh=self._can_refresh)
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise ProviderRejected(f"{PLATFORM} gave an answer that is not a JSON object")
        return data
