"""Discord's error answers, turned into provider errors.

Discord answers a failed request with a JSON body ``{"code": <int>, "message": <str>}``
and, for form validation (code 50035), an ``errors`` tree whose leaves are
``{"_errors": [{"code": ..., "message": ...}]}``. A 429 carries ``retry_after`` (seconds,
a float) and ``global`` in the body and ``X-RateLimit-*`` headers. Reasons are kept short
and never include the request URL, which holds the webhook token.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from plexus.providers.base import (
    ProviderError,
    ProviderNeedsReauth,
    ProviderRejected,
    ProviderRetryable,
    retry_after_seconds,
)

if TYPE_CHECKING:
    import httpx

#: JSON error codes the provider acts on.
UNKNOWN_WEBHOOK: Final = 10015
UNKNOWN_MESSAGE: Final = 10008
INVALID_WEBHOOK_TOKEN: Final = 50027
#: How many characters of Discord's own wording a reason keeps.
_MAX_DETAIL: Final = 160
_HTTP_UNAUTHORIZED: Final = 401
_HTTP_TOO_MANY: Final = 429
_HTTP_SERVER: Final = 500


def error_body(response: httpx.Response) -> dict[str, Any]:
    """The JSON error object, or an empty one (Cloudflare and proxies answer in HTML)."""
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def error_code(response: httpx.Response) -> int | None:
    code = error_body(response).get("code")
    return code if isinstance(code, int) else None


def _first_field_error(tree: Any, path: tuple[str, ...] = ()) -> str | None:
    """``"content: Must be 2000 or fewer in length."`` from an ``errors`` tree."""
    if not isinstance(tree, dict):
        return None
    leaves = tree.get("_errors")
    if isinstance(leaves, list) and leaves and isinstance(leaves[0], dict):
        where = ".".join(path) or "body"
        return f"{where}: {leaves[0].get('message') or leaves[0].get('code') or 'invalid'}"
    for key, subtree in tree.items():
        found = _first_field_error(subtree, (*path, str(key)))
        if found:
            return found
    return None


def _reason(response: httpx.Response, body: dict[str, Any]) -> str:
    message = str(body.get("message") or f"HTTP {response.status_code}")
    detail = _first_field_error(body.get("errors"))
    text = f"{message} ({detail})" if detail else message
    code = body.get("code")
    suffix = f" [code {code}]" if isinstance(code, int) and code else ""
    return text[:_MAX_DETAIL] + suffix


def _float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, number)


def rate_limit_delay(response: httpx.Response, body: dict[str, Any]) -> float | None:
    """Seconds to wait: the body's ``retry_after`` (the most precise), else the bucket's
    ``X-RateLimit-Reset-After``, else ``Retry-After`` (all a Cloudflare ban sends).
    """
    for candidate in (body.get("retry_after"), response.headers.get("x-ratelimit-reset-after")):
        delay = _float(candidate)
        if delay is not None:
            return delay
    return retry_after_seconds(response)


def error_for(response: httpx.Response, action: str) -> ProviderError:
    """The provider error for a failed Discord answer to ``action`` ("posting the message")."""
    status = response.status_code
    body = error_body(response)
    if status == _HTTP_TOO_MANY:
        is_global = bool(body.get("global")) or response.headers.get("x-ratelimit-global") in (
            "true",
            "True",
        )
        scope = "global rate limit" if is_global else "rate limit"
        return ProviderRetryable(
            f"Discord's {scope} was hit while {action}",
            retry_after=rate_limit_delay(response, body),
            rate_limited=True,
        )
    if status >= _HTTP_SERVER:
        return ProviderRetryable(
            f"Discord answered {status} while {action}", retry_after=retry_after_seconds(response)
        )
    code = body.get("code")
    if status == _HTTP_UNAUTHORIZED or code == INVALID_WEBHOOK_TOKEN:
        return ProviderNeedsReauth("Discord refused the webhook token; connect the channel again")
    if code == UNKNOWN_WEBHOOK:
        return ProviderNeedsReauth("the Discord webhook was deleted; connect the channel again")
    return ProviderRejected(f"Discord refused {action}: {_reason(response, body)}")
