"""Mastodon's REST API as the provider talks to it: one request helper over the guarded
client, and the mapping of Mastodon's answers to provider errors.

Mastodon answers errors as ``{"error": "...", "error_description": "..."}`` (a 500 may
be an HTML page). A 429 carries ``X-RateLimit-Limit``, ``X-RateLimit-Remaining`` and
``X-RateLimit-Reset``; the reset is an ISO 8601 timestamp, from which the retry delay is
computed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

import httpx

from plexus.providers.base import (
    Credentials,
    ProviderNeedsReauth,
    ProviderRejected,
    ProviderRetryable,
    ProviderTokenExpired,
    raise_for_transport,
    retry_after_seconds,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

PLATFORM: Final = "Mastodon"


def error_text(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return ""
    if not isinstance(data, dict):
        return ""
    parts = [str(data[k]) for k in ("error", "error_description") if data.get(k)]
    return ": ".join(parts)


def rate_limit_reset(response: httpx.Response, now: datetime | None = None) -> float | None:
    """Seconds until ``X-RateLimit-Reset`` (ISO 8601), else ``Retry-After``, else None."""
    value = response.headers.get("x-ratelimit-reset")
    if value:
        try:
            when = datetime.fromisoformat(value)
        except ValueError:
            when = None
        if when is not None:
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
    return retry_after_seconds(response)


def raise_for_status(response: httpx.Response, credentials: Credentials | None) -> None:
    """Raise the provider error for Mastodon's answer; return for a success."""
    status = response.status_code
    if status < 400:  # noqa: PLR2004
        return
    detail = error_text(response)
    if credentials is not None:
        for secret in (credentials.access_token, credentials.refresh_token):
            if secret:
                detail = detail.replace(secret, "[redacted]")
    reason = f"{PLATFORM} answered {status}" + (f" ({detail})" if detail else "")
    if status == 401:  # noqa: PLR2004
        # Mastodon tokens do not expire by default; a 401 means revoked or unknown, unless
        # the token carried an expiry that has passed.
        if (
            credentials is not None
            and credentials.refresh_token
            and credentials.expires_within(timedelta(0))
        ):
            raise ProviderTokenExpired(reason)
        raise ProviderNeedsReauth(reason)
    if status == 403 and "scope" in detail.lower():  # noqa: PLR2004
        # "This action is outside the authorized scopes": only a new authorization helps.
        raise ProviderNeedsReauth(reason)
    if status == 429:  # noqa: PLR2004
        raise ProviderRetryable(reason, retry_after=rate_limit_reset(response), rate_limited=True)
    if status >= 500:  # noqa: PLR2004
        raise ProviderRetryable(reason, retry_after=retry_after_seconds(response))
    # 400, 403, 404, 410, 413, 422 (validation): the same request would fail again.
    raise ProviderRejected(reason)


def call(  # noqa: PLR0913 - the parts of one HTTP request, keyword-only
    http: httpx.Client,
    method: str,
    url: str,
    *,
    credentials: Credentials | None = None,
    data: Mapping[str, Any] | None = None,
    files: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> httpx.Response:
    """Send one request (with the bearer token if ``credentials``); transport failures
    become ``ProviderRetryable``. The caller checks the status.
    """
    sent = {"accept": "application/json", **(headers or {})}
    if credentials is not None:
        if not credentials.access_token:
            raise ProviderNeedsReauth("the Mastodon connection has no access token")
        sent["authorization"] = f"Bearer {credentials.access_token}"
    try:
        return http.request(method, url, data=data, files=files, headers=sent)
    except httpx.HTTPError as exc:
        raise raise_for_transport(exc, PLATFORM) from None


def json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise ProviderRetryable(f"{PLATFORM} answered {response.status_code} without JSON")
    return data
