"""One error tree, rendered once as RFC 9457 ``application/problem+json``.

Every error a client can see is a PlexusError subclass (or is translated into one here).
The rendered body carries ``type``, ``title``, ``status``, ``detail`` and ``request_id``
and never a stack trace, SQL, a file path or a library's name: in every environment.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, ClassVar, Final

from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from plexus.kit.context import current_request_id

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from fastapi import FastAPI, Request

PROBLEM_CONTENT_TYPE: Final = "application/problem+json"
PROBLEM_TYPE_BASE: Final = "urn:plexus:problem:"


class PlexusError(Exception):
    """Base of every error Plexus reports. Subclasses set status, code and title."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal-error"
    title: ClassVar[str] = "Internal error"

    def __init__(
        self,
        detail: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
        keep_changes: bool = False,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})
        #: Commit the request's unit of work even though the request fails: set by
        #: failures whose own record must survive (a failed-login count, its audit event).
        self.keep_changes = keep_changes


class BadRequest(PlexusError):
    status, code, title = 400, "bad-request", "Bad request"


class MalformedBody(BadRequest):
    code, title = "malformed-body", "Malformed request body"


class Unauthorized(PlexusError):
    status, code, title = 401, "unauthorized", "Authentication required"


class InvalidCredentials(Unauthorized):
    """One answer for an unknown account, a wrong password and a locked account."""

    code, title = "invalid-credentials", "Invalid credentials"


class PermissionDenied(PlexusError):
    status, code, title = 403, "permission-denied", "Permission denied"


class MfaRequired(PermissionDenied):
    code, title = "mfa-required", "Multi-factor authentication required"


class ReauthenticationRequired(PermissionDenied):
    code, title = "reauthentication-required", "Recent authentication required"


class CsrfFailed(PermissionDenied):
    code, title = "csrf-failed", "Cross-site request refused"


class AddressBlocked(PermissionDenied):
    code, title = "address-blocked", "Requests from this address are blocked"


class HTTPSRequired(PermissionDenied):
    code, title = "https-required", "HTTPS required"


class NotFound(PlexusError):
    status, code, title = 404, "not-found", "Not found"


class MethodNotAllowed(PlexusError):
    status, code, title = 405, "method-not-allowed", "Method not allowed"


class Conflict(PlexusError):
    status, code, title = 409, "conflict", "Conflict"


class PayloadTooLarge(PlexusError):
    status, code, title = 413, "payload-too-large", "Request body too large"


class UnsupportedMediaType(PlexusError):
    status, code, title = 415, "unsupported-media-type", "Unsupported media type"


class ValidationFailed(PlexusError):
    status, code, title = 422, "validation-failed", "Validation failed"


class RateLimited(PlexusError):
    status, code, title = 429, "rate-limited", "Too many requests"

    def __init__(
        self,
        retry_after: int,
        detail: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        keep_changes: bool = False,
    ) -> None:
        super().__init__(
            detail,
            headers={**(headers or {}), "Retry-After": str(max(1, retry_after))},
            keep_changes=keep_changes,
        )
        self.retry_after = retry_after


class InternalError(PlexusError):
    """An unexpected fault. The detail is always generic; the cause goes to the log."""


class ServiceUnavailable(PlexusError):
    status, code, title = 503, "service-unavailable", "Service unavailable"


class OAuthStateInvalid(BadRequest):
    """A callback whose ``state`` is missing, unknown, spent, expired, another session's or
    another provider's: the flow is refused and nothing is connected.
    """

    code, title = "oauth-state-invalid", "Invalid authorization state"


class PlatformRejected(BadRequest):
    """The platform refused the request (bad credentials given to connect, bad content)."""

    code, title = "platform-rejected", "The platform refused the request"


class ConnectionNeedsReauth(Conflict):
    code, title = "connection-needs-reauth", "The connection must be connected again"


class ProviderNotAvailable(Conflict):
    code, title = "provider-unavailable", "This provider is not available here"


class PlatformUnavailable(ServiceUnavailable):
    """The platform timed out, failed or throttled us; ``Retry-After`` says when to retry."""

    code, title = "platform-unavailable", "The platform is unavailable"


class DeadlineExceeded(PlexusError):
    status, code, title = 504, "deadline-exceeded", "Request took too long"


_BY_STATUS: Final[dict[int, type[PlexusError]]] = {
    400: BadRequest,
    401: Unauthorized,
    403: PermissionDenied,
    404: NotFound,
    405: MethodNotAllowed,
    409: Conflict,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    422: ValidationFailed,
    429: RateLimited,
    503: ServiceUnavailable,
    504: DeadlineExceeded,
}


def problem_body(error: PlexusError) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": f"{PROBLEM_TYPE_BASE}{error.code}",
        "title": error.title,
        "status": error.status,
        "detail": error.detail,
        "request_id": current_request_id(),
    }
    body.update(error.extra)
    return body


def problem_bytes(error: PlexusError) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """The body and raw headers of a problem; the one place a problem is serialised."""
    payload = json.dumps(problem_body(error), separators=(",", ":"), ensure_ascii=False)
    body = payload.encode()
    headers = [
        (b"content-type", PROBLEM_CONTENT_TYPE.encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    headers.extend((k.lower().encode(), v.encode()) for k, v in error.headers.items())
    return body, headers


def problem_response(error: PlexusError) -> Response:
    """Render an error as a problem+json response (for exception handlers)."""
    body, _ = problem_bytes(error)
    return Response(
        content=body,
        status_code=error.status,
        media_type=PROBLEM_CONTENT_TYPE,
        headers=error.headers,
    )


def _validation_errors(errors: Sequence[Any]) -> list[dict[str, str]]:
    """Field errors without the offending input, library URLs or internal context."""
    cleaned = []
    for error in errors:
        loc = [str(p) for p in error.get("loc", ())]
        cleaned.append({"field": ".".join(loc), "message": str(error.get("msg", "invalid"))})
    return cleaned


async def _handle_plexus_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PlexusError)  # noqa: S101 - registered for PlexusError only
    return problem_response(exc)


async def _handle_http_exception(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)  # noqa: S101 - registered for it only
    server_fault = exc.status_code >= 500  # noqa: PLR2004 - the 5xx class
    cls = _BY_STATUS.get(exc.status_code, InternalError if server_fault else BadRequest)
    headers = dict(exc.headers or {})
    if cls is MethodNotAllowed and "Allow" in headers:
        return problem_response(MethodNotAllowed(headers={"Allow": headers["Allow"]}))
    return problem_response(cls())


async def _handle_validation_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)  # noqa: S101 - registered for it only
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return problem_response(MalformedBody("The request body is not valid JSON."))
    return problem_response(
        ValidationFailed(
            "The request did not pass validation.",
            extra={"errors": _validation_errors(errors)},
        )
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(PlexusError, _handle_plexus_error)
    app.add_exception_handler(StarletteHTTPException, _handle_http_exception)
    app.add_exception_handler(RequestValidationError, _handle_validation_error)
