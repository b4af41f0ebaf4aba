"""The Facebook Graph API as Instagram publishing uses it: one request helper and the
mapping of Graph's error objects and usage headers onto provider errors.

Every call carries the user token in the ``Authorization`` header (the Graph API accepts
``Bearer``), never in the URL, and is signed with ``appsecret_proof`` (HMAC-SHA256 of the
token under the app secret) so that a token lifted from elsewhere is useless without the
secret when the app requires proofs. POST parameters travel in the form body.

Graph errors look like ``{"error": {"message", "type", "code", "error_subcode",
"is_transient", "fbtrace_id"}}``. Throttling is reported by codes 4, 17, 32, 613 and
80002 (Instagram's business-use-case limit), with ``X-App-Usage`` and
``X-Business-Use-Case-Usage`` headers; the latter's ``estimated_time_to_regain_access``
is in minutes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import httpx

from plexus.providers.base import (
    ProviderError,
    ProviderNeedsReauth,
    ProviderRejected,
    ProviderRetryable,
    ProviderTokenExpired,
    ProviderUnavailable,
    raise_for_transport,
    retry_after_seconds,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

PLATFORM: Final = "Instagram"

#: OAuthException: the token is expired, revoked or invalid; subcode 463 is "expired".
TOKEN_CODE: Final = 190
EXPIRED_SUBCODE: Final = 463
#: "API Session": the login session is gone.
SESSION_CODE: Final = 102
#: Application, user, page and Instagram business-use-case throttling.
RATE_LIMIT_CODES: Final = frozenset({4, 17, 32, 613, 80002})
#: "API Unknown" and "API Service": temporary trouble at Facebook.
TRANSIENT_CODES: Final = frozenset({1, 2})
#: At the token endpoint: "Error validating client secret" / "Invalid application ID".
APP_CREDENTIAL_CODES: Final = frozenset({1, 101})
#: Temporarily blocked for policy reasons: the documented answer is to wait.
TEMPORARILY_BLOCKED: Final = 368
#: Code 9 with this subcode: the account's 24-hour publishing limit is reached.
PUBLISH_LIMIT: Final = (9, 2207042)
#: A permission the call needs was not granted (or was removed).
PERMISSION_DENIED: Final = 10
PERMISSION_RANGE: Final = range(200, 300)
#: Code 100 with subcode 33: the object does not exist (or cannot be seen).
MISSING_OBJECT: Final = (100, 33)

_FULL_USAGE: Final = 100


def scrub(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with every non-empty secret replaced, for messages built from replies."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return text


def appsecret_proof(token: str, app_secret: str) -> str:
    return hmac.new(app_secret.encode(), token.encode(), hashlib.sha256).hexdigest()


def _minutes_to_regain_access(headers: httpx.Headers) -> float | None:
    """The longest ``estimated_time_to_regain_access`` in the BUC header, in seconds."""
    raw = headers.get("x-business-use-case-usage")
    if not raw:
        return None
    try:
        usage = json.loads(raw)
    except ValueError:
        return None
    waits: list[float] = []
    if isinstance(usage, dict):
        for entries in usage.values():
            for entry in entries if isinstance(entries, list) else ():
                if not isinstance(entry, dict):
                    continue
                value = entry.get("estimated_time_to_regain_access")
                if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
                    waits.append(float(value) * 60)
    return max(waits) if waits else None


def _app_usage_full(headers: httpx.Headers) -> bool:
    """Whether ``X-App-Usage`` says one of the app's budgets is used up (100 %)."""
    raw = headers.get("x-app-usage")
    if not raw:
        return False
    try:
        usage = json.loads(raw)
    except ValueError:
        return False
    if not isinstance(usage, dict):
        return False
    return any(
        isinstance(v, int | float) and not isinstance(v, bool) and v >= _FULL_USAGE
        for v in usage.values()
    )


def throttle_delay(response: httpx.Response) -> float | None:
    """How long to wait after a throttled answer, from the headers Graph sends."""
    return _minutes_to_regain_access(response.headers) or retry_after_seconds(response)


@dataclass(frozen=True, slots=True)
class GraphError:
    status: int
    code: int | None
    subcode: int | None
    message: str
    transient: bool

    @classmethod
    def from_response(cls, response: httpx.Response) -> GraphError | None:
        try:
            body = response.json()
        except ValueError:
            return None
        error = body.get("error") if isinstance(body, dict) else None
        if not isinstance(error, dict):
            return None
        code, subcode = error.get("code"), error.get("error_subcode")
        return cls(
            status=response.status_code,
            code=code if isinstance(code, int) else None,
            subcode=subcode if isinstance(subcode, int) else None,
            message=str(error.get("message") or "no message"),
            transient=error.get("is_transient") is True,
        )

    def describe(self) -> str:
        codes = f"code {self.code}" + (f"/{self.subcode}" if self.subcode else "")
        return f"{self.message} ({codes})"


class MissingObject(ProviderRejected):
    """Code 100/33: the object does not exist, or this token cannot see it."""


def _auth_error(graph: GraphError, detail: str) -> ProviderError | None:
    """Errors that concern the token or its grants, not the request."""
    if graph.code == TOKEN_CODE and graph.subcode == EXPIRED_SUBCODE:
        return ProviderTokenExpired(f"{PLATFORM} says the access token expired")
    if graph.code in (TOKEN_CODE, SESSION_CODE):
        return ProviderNeedsReauth(f"{PLATFORM} no longer accepts the access token: {detail}")
    if graph.code == PERMISSION_DENIED or graph.code in PERMISSION_RANGE:
        return ProviderNeedsReauth(f"{PLATFORM} needs a permission that is not granted: {detail}")
    return None


def _unstructured_error(response: httpx.Response) -> ProviderError:
    if response.status_code == 429 or response.status_code >= 500:  # noqa: PLR2004
        return ProviderRetryable(
            f"{PLATFORM} answered {response.status_code}",
            retry_after=throttle_delay(response),
            rate_limited=response.status_code == 429,  # noqa: PLR2004
        )
    return ProviderRejected(f"{PLATFORM} answered {response.status_code}")


def error_for(response: httpx.Response, secrets: Iterable[str | None]) -> ProviderError:
    """The provider error for a failed Graph answer."""
    graph = GraphError.from_response(response)
    if graph is None:
        return _unstructured_error(response)
    detail = scrub(graph.describe(), tuple(secrets))
    auth = _auth_error(graph, detail)
    if auth is not None:
        return auth
    if (
        graph.code in RATE_LIMIT_CODES
        or (graph.code, graph.subcode) == PUBLISH_LIMIT
        or _app_usage_full(response.headers)
    ):
        return ProviderRetryable(
            f"{PLATFORM} is throttling requests: {detail}",
            retry_after=throttle_delay(response),
            rate_limited=True,
        )
    if (
        graph.transient
        or graph.code in TRANSIENT_CODES
        or graph.code == TEMPORARILY_BLOCKED
        or response.status_code >= 500  # noqa: PLR2004
    ):
        return ProviderRetryable(f"{PLATFORM} had a temporary problem: {detail}")
    if (graph.code, graph.subcode) == MISSING_OBJECT:
        return MissingObject(f"{PLATFORM} has no such object: {detail}")
    return ProviderRejected(f"{PLATFORM} refused the request: {detail}")


class Graph:
    """Calls on behalf of one user token, against one Graph API version."""

    def __init__(
        self, http: httpx.Client, *, token: str, app_secret: str | None, version: str
    ) -> None:
        self._http = http
        self._token = token
        self._app_secret = app_secret
        self._version = version

    def get(self, path: str, params: Mapping[str, str] | None = None) -> dict[str, Any]:
        return self._call("GET", path, params=params)

    def post(self, path: str, data: Mapping[str, str]) -> dict[str, Any]:
        return self._call("POST", path, data=data)

    def delete(self, path: str) -> dict[str, Any]:
        return self._call("DELETE", path)

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        data: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        signed: dict[str, str] = {}
        if self._app_secret:
            signed["appsecret_proof"] = appsecret_proof(self._token, self._app_secret)
        query = dict(params or {})
        form = dict(data or {}) if method == "POST" else None
        if form is not None:
            form.update(signed)
        else:
            query.update(signed)
        try:
            response = self._http.request(
                method,
                f"/{self._version}/{path.lstrip('/')}",
                params=query or None,
                data=form,
                headers={"authorization": f"Bearer {self._token}"},
            )
        except httpx.HTTPError as exc:
            raise raise_for_transport(exc, PLATFORM) from None
        return parse(response, (self._token, self._app_secret))


def parse(response: httpx.Response, secrets: Iterable[str | None]) -> dict[str, Any]:
    """The JSON object of a successful answer, or the provider error for a failed one."""
    if not response.is_success:
        raise error_for(response, secrets)
    try:
        body = response.json()
    except ValueError:
        raise ProviderRetryable(f"{PLATFORM} answered with something that is not JSON") from None
    if not isinstance(body, dict):
        raise ProviderRetryable(f"{PLATFORM} answered with an unexpected shape")
    return body


def token_call(
    http: httpx.Client, version: str, fields: Mapping[str, str], secrets: Iterable[str | None]
) -> dict[str, Any]:
    """POST to ``oauth/access_token`` (code exchange and long-lived exchange): the client
    secret goes in the body, never the URL. A refused token here means reconnecting.
    """
    try:
        response = http.post(f"/{version}/oauth/access_token", data=dict(fields))
    except httpx.HTTPError as exc:
        raise raise_for_transport(exc, PLATFORM) from None
    refused = GraphError.from_response(response) if response.status_code == 400 else None  # noqa: PLR2004
    if refused is not None and refused.code in APP_CREDENTIAL_CODES:
        # Codes 1 and 101 are transient elsewhere; here they mean the app id or secret
        # is wrong, which only the operator can fix.
        raise ProviderUnavailable(
            "Facebook refused the app id or secret: check "
            "PLEXUS_PROVIDER_INSTAGRAM_CLIENT_ID and PLEXUS_PROVIDER_INSTAGRAM_CLIENT_SECRET"
        )
    try:
        data = parse(response, secrets)
    except ProviderTokenExpired:
        raise ProviderNeedsReauth(
            f"{PLATFORM} cannot exchange an expired token; connect the account again"
        ) from None
    if not data.get("access_token"):
        raise ProviderRejected(f"{PLATFORM} token response has no access_token")
    return data
