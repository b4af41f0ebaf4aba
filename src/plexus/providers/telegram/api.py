"""Calling the Telegram Bot API, and turning its answers into results or provider errors.

Every answer is ``{"ok": true, "result": ...}`` or ``{"ok": false, "error_code": N,
"description": "...", "parameters": {"retry_after": S, "migrate_to_chat_id": ID}}``.

The bot token sits in the URL path (``/bot<token>/<method>``) by Telegram's design. So no
message built here mentions a URL, transport errors are replaced by
``raise_for_transport``'s fixed wording (without their cause, which holds the request),
the token is scrubbed from any description before it is quoted, and ``BotApi`` never shows
it in a repr.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Final

import httpx

from plexus.providers.base import (
    ProviderError,
    ProviderNeedsReauth,
    ProviderRejected,
    ProviderRetryable,
    raise_for_transport,
    retry_after_seconds,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

#: A bot token as @BotFather issues it: the bot's numeric id, a colon, a 35-character secret.
BOT_TOKEN: Final = re.compile(r"[0-9]{5,20}:[A-Za-z0-9_-]{30,60}")
#: Method names are plain identifiers; nothing else is ever put in the path.
_METHOD: Final = re.compile(r"[A-Za-z]{3,40}")
#: How much of Telegram's description a reason quotes.
_MAX_DESCRIPTION: Final = 160

_HTTP_BAD_REQUEST: Final = 400
_HTTP_UNAUTHORIZED: Final = 401
_HTTP_FORBIDDEN: Final = 403
_HTTP_NOT_FOUND: Final = 404
_HTTP_TOO_MANY: Final = 429
_HTTP_SERVER: Final = 500

#: 403 descriptions after which the bot no longer reaches the chat: the user must add it
#: back (and then reconnect); any other 403 refuses this one request.
_GONE_FROM_CHAT: Final = ("kicked", "not a member", "blocked", "deactivated", "chat not found")
#: 400 descriptions that mean the connection, not the post, is broken.
_CONNECTION_BROKEN: Final = ("chat not found", "need administrator rights", "not enough rights")


class BotApi:
    """One bot's calls over one HTTP client; the token never leaves this object."""

    def __init__(self, http: httpx.Client, token: str) -> None:
        self._http = http
        self._token = token

    def __repr__(self) -> str:
        return "BotApi(token=<redacted>)"

    def call(
        self,
        method: str,
        *,
        json: Mapping[str, Any] | None = None,
        data: Mapping[str, str] | None = None,
        files: list[tuple[str, tuple[str, bytes, str]]] | None = None,
        tolerate: tuple[str, ...] = (),
    ) -> Any:
        """Call ``method`` and return its ``result``, or raise the matching provider error.

        ``tolerate``: fragments of 400 descriptions that are an answer, not a failure
        (a message to delete that is gone already); the call then returns None.
        """
        if not _METHOD.fullmatch(method):
            msg = "not a Bot API method name"
            raise ValueError(msg)
        kwargs: dict[str, Any] = {}
        if json is not None:
            kwargs["json"] = dict(json)
        if data is not None:
            kwargs["data"] = dict(data)
        if files is not None:
            kwargs["files"] = files
        try:
            response = self._http.post(f"/bot{self._token}/{method}", **kwargs)
        except httpx.HTTPError as exc:
            raise raise_for_transport(exc, "Telegram") from None
        return self._result(response, method, tolerate)

    def _result(self, response: httpx.Response, method: str, tolerate: tuple[str, ...]) -> Any:
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and body.get("ok") is True and response.is_success:
            return body.get("result")
        body = body if isinstance(body, dict) else {}
        description = str(body.get("description") or "").lower()
        if response.status_code == _HTTP_BAD_REQUEST and any(t in description for t in tolerate):
            return None
        raise self._error(response, body, method)

    def _error(self, response: httpx.Response, body: dict[str, Any], method: str) -> ProviderError:
        status = body.get("error_code")
        if not isinstance(status, int):
            status = response.status_code
        description = str(body.get("description") or f"HTTP {status}")
        description = description.replace(self._token, "[REDACTED]")[:_MAX_DESCRIPTION]
        lowered = description.lower()
        parameters = body.get("parameters")
        parameters = parameters if isinstance(parameters, dict) else {}
        retryable = _retryable(response, status, parameters, method)
        if retryable is not None:
            return retryable
        if status in (_HTTP_UNAUTHORIZED, _HTTP_NOT_FOUND):
            # 401 is a revoked or wrong token; 404 is a token Telegram cannot even parse.
            return ProviderNeedsReauth("Telegram refused the bot token; connect the bot again")
        if parameters.get("migrate_to_chat_id") is not None:
            return ProviderNeedsReauth(
                "the Telegram group became a supergroup; connect it again with its new id"
            )
        gone = status == _HTTP_FORBIDDEN and any(p in lowered for p in _GONE_FROM_CHAT)
        if gone or any(p in lowered for p in _CONNECTION_BROKEN):
            return ProviderNeedsReauth(f"the bot can no longer post there ({description})")
        return ProviderRejected(f"Telegram refused {method}: {description}")


def _retryable(
    response: httpx.Response, status: int, parameters: Mapping[str, Any], method: str
) -> ProviderRetryable | None:
    """Flood control (with Telegram's ``retry_after``) and server errors; else None."""
    if status == _HTTP_TOO_MANY:
        delay = parameters.get("retry_after")
        return ProviderRetryable(
            f"Telegram's flood control refused {method}",
            retry_after=float(delay)
            if isinstance(delay, int | float)
            else retry_after_seconds(response),
            rate_limited=True,
        )
    if status >= _HTTP_SERVER or response.status_code >= _HTTP_SERVER:
        return ProviderRetryable(
            f"Telegram answered {status} to {method}", retry_after=retry_after_seconds(response)
        )
    return None
