"""Airtable's Web API as the provider talks to it: one request helper that paces calls per
base, maps Airtable's error bodies to provider errors, and the typed values the records
and metadata endpoints return.

Airtable answers errors as ``{"error": {"type": "...", "message": "..."}}`` or, for a
missing object, ``{"error": "NOT_FOUND"}``. It allows 5 requests per second per base and,
after a 429, asks clients to wait 30 seconds; the pacer below keeps one process under the
per-base rate so a sync does not walk into that penalty.
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote

import httpx

from plexus.providers.base import (
    REFRESH_MARGIN,
    Credentials,
    ProviderNeedsReauth,
    ProviderRejected,
    ProviderRetryable,
    ProviderTokenExpired,
    raise_for_transport,
    retry_after_seconds,
)

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

API_URL: Final = "https://api.airtable.com"
OAUTH_URL: Final = "https://airtable.com"
#: Where a record, table or base opens in Airtable's own UI.
WEB_URL: Final = "https://airtable.com"
PLATFORM: Final = "Airtable"

#: Airtable's documented limit, per base, for every kind of token.
REQUESTS_PER_SECOND_PER_BASE: Final = 5
#: How long Airtable asks a client to pause after a 429 (it sends no Retry-After).
RATE_LIMIT_WAIT: Final = 30.0
#: Create, update and delete take at most this many records per request.
MAX_RECORDS_PER_REQUEST: Final = 10
#: List records returns at most this many records per page.
MAX_PAGE_SIZE: Final = 100
#: A long text field holds at most this many characters.
MAX_LONG_TEXT: Final = 100_000
#: Bounds ``list_bases``: 1,000 bases per page is Airtable's page size, so this is plenty.
MAX_BASE_PAGES: Final = 50

BASE_ID_RE: Final = re.compile(r"app[A-Za-z0-9]{14}")
TABLE_ID_RE: Final = re.compile(r"tbl[A-Za-z0-9]{14}")
RECORD_ID_RE: Final = re.compile(r"rec[A-Za-z0-9]{14}")


# --------------------------------------------------------------------------- values


@dataclass(frozen=True, slots=True)
class AirtableRecord:
    """One record: its id (``rec…``), its cell values by field name, and when it was made."""

    id: str
    fields: Mapping[str, Any]
    created_time: str | None = None


@dataclass(frozen=True, slots=True)
class RecordPage:
    """One page of ``list_records``; pass ``offset`` back to get the next, None at the end."""

    records: tuple[AirtableRecord, ...]
    offset: str | None


@dataclass(frozen=True, slots=True)
class AirtableField:
    id: str
    name: str
    type: str


@dataclass(frozen=True, slots=True)
class AirtableTable:
    """A table of a base as the metadata API describes it."""

    id: str
    name: str
    primary_field_id: str | None
    fields: tuple[AirtableField, ...] = field(default_factory=tuple)

    def field(self, name_or_id: str) -> AirtableField | None:
        """The field called ``name_or_id`` (Airtable accepts either) or None."""
        for candidate in self.fields:
            if name_or_id in {candidate.id, candidate.name}:
                return candidate
        return None


@dataclass(frozen=True, slots=True)
class AirtableBase:
    id: str
    name: str
    permission_level: str


# --------------------------------------------------------------------------- validation


def checked_base_id(value: str) -> str:
    """A base id (``app`` + 14 characters); anything else is refused before a request."""
    value = value.strip()
    if not BASE_ID_RE.fullmatch(value):
        raise ProviderRejected("an Airtable base id starts with 'app' followed by 14 characters")
    return value


def checked_record_id(value: str) -> str:
    if not RECORD_ID_RE.fullmatch(value):
        raise ProviderRejected("an Airtable record id starts with 'rec' followed by 14 characters")
    return value


def checked_table(value: str) -> str:
    """A table id or name; names may hold any character, so they are path-encoded later."""
    value = value.strip()
    if not value or len(value) > 255:  # noqa: PLR2004 - a generous bound on a table name
        raise ProviderRejected("give the Airtable table's name or id")
    return value


def records_path(base_id: str, table: str) -> str:
    return f"/v0/{checked_base_id(base_id)}/{quote(checked_table(table), safe='')}"


def record_from(data: object) -> AirtableRecord:
    if not isinstance(data, dict) or not isinstance(data.get("id"), str):
        raise ProviderRetryable(f"{PLATFORM} answered with a record it did not describe")
    fields = data.get("fields")
    return AirtableRecord(
        id=data["id"],
        fields=dict(fields) if isinstance(fields, dict) else {},
        created_time=data.get("createdTime") if isinstance(data.get("createdTime"), str) else None,
    )


def table_from(data: object) -> AirtableTable:
    if not isinstance(data, dict):
        raise ProviderRetryable(f"{PLATFORM} answered with a table it did not describe")
    fields = tuple(
        AirtableField(id=str(f.get("id", "")), name=str(f.get("name", "")), type=str(f.get("type")))
        for f in data.get("fields") or ()
        if isinstance(f, dict)
    )
    primary = data.get("primaryFieldId")
    return AirtableTable(
        id=str(data.get("id", "")),
        name=str(data.get("name", "")),
        primary_field_id=primary if isinstance(primary, str) else None,
        fields=fields,
    )


# --------------------------------------------------------------------------- errors


def _error_of(response: httpx.Response) -> tuple[str, str]:
    """Airtable's error type and message, from any of the shapes it uses."""
    try:
        data = response.json()
    except ValueError:
        return "", ""
    if not isinstance(data, dict):
        return "", ""
    error = data.get("error")
    if isinstance(error, str):
        return error, str(data.get("message") or "")
    if isinstance(error, dict):
        return str(error.get("type") or ""), str(error.get("message") or "")
    errors = data.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        first = errors[0]
        return str(first.get("error") or first.get("type") or ""), str(first.get("message") or "")
    return "", ""


def looks_expired(credentials: Credentials) -> bool:
    """A refreshable token at (or near) its expiry: a 401 then means "refresh", not "revoked"."""
    return credentials.refresh_token is not None and credentials.expires_within(REFRESH_MARGIN)


def raise_for_status(response: httpx.Response, credentials: Credentials) -> None:
    """Raise the provider error that fits Airtable's answer; return for a success."""
    status = response.status_code
    if status < 400:  # noqa: PLR2004
        return
    kind, message = _error_of(response)
    for secret in (credentials.access_token, credentials.refresh_token):
        if secret:
            message = message.replace(secret, "[redacted]")
    detail = ": ".join(part for part in (kind, message) if part) or f"HTTP {status}"
    reason = f"{PLATFORM} answered {status} ({detail})"
    if status == 401:  # noqa: PLR2004
        if looks_expired(credentials):
            raise ProviderTokenExpired(reason)
        raise ProviderNeedsReauth(reason)
    if status == 429:  # noqa: PLR2004
        wait = retry_after_seconds(response)
        raise ProviderRetryable(
            reason, retry_after=RATE_LIMIT_WAIT if wait is None else wait, rate_limited=True
        )
    if status >= 500:  # noqa: PLR2004
        raise ProviderRetryable(reason, retry_after=retry_after_seconds(response))
    # 400, 403 INVALID_PERMISSIONS, 404 NOT_FOUND, 413, 422 INVALID_REQUEST_UNKNOWN /
    # INVALID_VALUE_FOR_COLUMN / UNKNOWN_FIELD_NAME: repeating the request cannot help.
    raise ProviderRejected(reason)


# --------------------------------------------------------------------------- pacing


class BasePacer:
    """Keeps this process under a per-base request rate: at most ``per_second - 1``
    requests in any one-second window, measured on the moments requests are sent.

    One request of headroom absorbs network and scheduling jitter, which could otherwise
    squeeze one request too many into Airtable's window and cost a 30-second pause.
    Thread-safe: a caller that finds the window full sleeps until its oldest entry ages out.
    """

    def __init__(self, per_second: int) -> None:
        self._allowed = max(1, per_second - 1)
        self._lock = threading.Lock()
        self._sent: dict[str, deque[float]] = {}

    def wait(self, key: str) -> None:
        while True:
            with self._lock:
                now = time.monotonic()
                if len(self._sent) > 1024:  # noqa: PLR2004 - forget bases gone quiet
                    self._sent = {k: v for k, v in self._sent.items() if v and v[-1] > now - 1}
                sent = self._sent.setdefault(key, deque())
                while sent and sent[0] <= now - 1.0:
                    sent.popleft()
                if len(sent) < self._allowed:
                    sent.append(now)
                    return
                delay = sent[0] + 1.0 - now
            time.sleep(delay)


PACER: Final = BasePacer(REQUESTS_PER_SECOND_PER_BASE)


# --------------------------------------------------------------------------- the client


class AirtableApi:
    """Authenticated calls for one set of credentials over one httpx client."""

    def __init__(self, http: httpx.Client, credentials: Credentials) -> None:
        self.http = http
        self.credentials = credentials

    def request(  # noqa: PLR0913 - keyword-only options of one request
        self,
        method: str,
        path: str,
        *,
        base_id: str | None = None,
        params: list[tuple[str, str]] | None = None,
        json: Mapping[str, Any] | None = None,
        missing_ok: bool = False,
    ) -> dict[str, Any] | None:
        """The JSON answer; None for a 404 when ``missing_ok``."""
        token = self.credentials.access_token
        if not token:
            raise ProviderNeedsReauth("the Airtable connection has no access token")
        if base_id is not None:
            PACER.wait(f"{self.http.base_url}|{base_id}")
        try:
            response = self.http.request(
                method,
                path,
                params=tuple(params) if params else None,
                json=json,
                headers={"authorization": f"Bearer {token}", "accept": "application/json"},
            )
        except httpx.HTTPError as exc:
            raise raise_for_transport(exc, PLATFORM) from None
        if missing_ok and response.status_code == 404:  # noqa: PLR2004
            return None
        raise_for_status(response, self.credentials)
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise ProviderRetryable(f"{PLATFORM} answered {response.status_code} without JSON")
        return data

    def must(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        data = self.request(method, path, **kwargs)
        if data is None:  # pragma: no cover - only missing_ok requests return None
            raise ProviderRejected(f"{PLATFORM} has no such object")
        return data

    def whoami(self) -> dict[str, Any]:
        return self.must("GET", "/v0/meta/whoami")

    def tables(self, base_id: str) -> list[AirtableTable]:
        path = f"/v0/meta/bases/{checked_base_id(base_id)}/tables"
        data = self.must("GET", path, base_id=base_id)
        return [table_from(t) for t in data.get("tables") or ()]

    def bases(self) -> Iterator[AirtableBase]:
        offset: str | None = None
        for _ in range(MAX_BASE_PAGES):
            data = self.must(
                "GET", "/v0/meta/bases", params=[("offset", offset)] if offset else None
            )
            for base in data.get("bases") or ():
                if isinstance(base, dict):
                    yield AirtableBase(
                        id=str(base.get("id", "")),
                        name=str(base.get("name", "")),
                        permission_level=str(base.get("permissionLevel", "")),
                    )
            offset = data.get("offset") if isinstance(data.get("offset"), str) else None
            if offset is None:
                return
