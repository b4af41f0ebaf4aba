"""A local stand-in for the parts of Airtable's Web API and OAuth server Plexus uses.

Implemented as documented: ``/oauth2/v1/authorize`` (records the PKCE S256 challenge and
redirects with a code; the tests call it directly, standing in for the user's consent),
``/oauth2/v1/token`` (code exchange checking the verifier; refresh with rotation: each
refresh token works once, and presenting a spent one is refused with ``invalid_grant``
and ends the whole grant; HTTP Basic client authentication when the integration has a
secret), ``/v0/meta/whoami``, ``/v0/meta/bases`` (paginated), ``/v0/meta/bases/{id}/tables``,
and the records routes: list (``pageSize`` ≤ 100, ``offset``, ``fields[]``, a
``filterByFormula`` subset: ``{Field} = 'value'``), create / update (≤ 10 records),
delete by ``records[]`` (≤ 10), and one record's GET and DELETE.

Errors use Airtable's bodies (``{"error": {"type", "message"}}``, ``{"error": "NOT_FOUND"}``).
More than ``requests_per_second`` requests to one base within a second earn a 429 and a
``penalty_seconds`` pause for that base, as Airtable documents; an armed
``Fault.RATE_LIMITED`` adds ``Retry-After`` so the contract can check the delay is used.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import re
import secrets
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from plexus.providers.testing import Fault

from fake_helpers import FakePlatform

ACCESS_TOKEN_SECONDS = 3600
REFRESH_TOKEN_SECONDS = 60 * 24 * 3600
MAX_LONG_TEXT = 100_000
_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_FORMULA = re.compile(r"""\{([^}]+)\}\s*=\s*(?:'([^']*)'|"([^"]*)")""")
SCOPES = ("data.records:read", "data.records:write", "schema.bases:read")
TEXT_TYPES = {"singleLineText", "multilineText", "richText", "url", "email"}


def airtable_id(prefix: str) -> str:
    return prefix + "".join(secrets.choice(_ALNUM) for _ in range(14))


def error(status: int, kind: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"type": kind, "message": message}}, status_code=status)


def not_found() -> JSONResponse:
    return JSONResponse({"error": "NOT_FOUND"}, status_code=404)


def oauth_error(code: str, description: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": code, "error_description": description}, status_code=status)


@dataclass
class Table:
    id: str
    name: str
    fields: list[dict[str, str]]
    records: OrderedDict[str, dict[str, Any]] = field(default_factory=OrderedDict)

    def field_named(self, name: str) -> dict[str, str] | None:
        return next((f for f in self.fields if name in {f["name"], f["id"]}), None)


@dataclass
class Base:
    id: str
    name: str
    tables: list[Table]

    def table(self, name_or_id: str) -> Table | None:
        return next((t for t in self.tables if name_or_id in {t.id, t.name}), None)


@dataclass
class Grant:
    """One user's consent; all tokens issued under it die together on refresh-token reuse."""

    user_id: str
    scopes: list[str]
    alive: bool = True


@dataclass
class AccessToken:
    grant: Grant | None  # None for a personal access token
    user_id: str
    scopes: list[str]
    expires_at: float | None


@dataclass
class Code:
    grant: Grant
    redirect_uri: str
    challenge: str
    used: bool = False


class AirtableFake(FakePlatform):
    """Airtable's OAuth server and Web API, in memory."""

    def __init__(self, *, client_id: str = "airtable-client", client_secret: str | None = None):
        super().__init__()
        self.client_id = client_id
        self.client_secret = client_secret
        self.user_id = airtable_id("usr")
        self.email = "someone@example.org"
        self.requests_per_second = 5
        self.penalty_seconds = 30.0
        self.bases: list[Base] = []
        self.access_tokens: dict[str, AccessToken] = {}
        self.refresh_tokens: dict[str, Grant] = {}
        self.spent_refresh_tokens: set[str] = set()
        self.codes: dict[str, Code] = {}
        self.pats: set[str] = set()
        self._issued: list[str] = []
        self._recent: dict[str, deque[float]] = {}
        self._locked_until: dict[str, float] = {}
        self._state = threading.Lock()
        self._offsets = itertools.count(1)
        self.base = self.add_base("Content calendar")

    # ---- seeding

    def add_base(self, name: str) -> Base:
        fields = [
            {"id": airtable_id("fld"), "name": "Text", "type": "multilineText"},
            {"id": airtable_id("fld"), "name": "Link", "type": "url"},
            {"id": airtable_id("fld"), "name": "Status", "type": "singleLineText"},
            {"id": airtable_id("fld"), "name": "Count", "type": "number"},
        ]
        base = Base(airtable_id("app"), name, [Table(airtable_id("tbl"), "Posts", fields)])
        self.bases.append(base)
        return base

    @property
    def table(self) -> Table:
        return self.base.tables[0]

    def issue_pat(self) -> str:
        token = f"pat{airtable_id('')}.{secrets.token_hex(32)}"
        self.pats.add(token)
        self._issued.append(token)
        return token

    def issue_tokens(self, *, expires_in: float = ACCESS_TOKEN_SECONDS) -> dict[str, Any]:
        """Tokens as if a user had just consented (for tests that need a connection)."""
        grant = Grant(self.user_id, list(SCOPES))
        return self._token_response(grant, expires_in=expires_in)

    def _token_response(self, grant: Grant, *, expires_in: float) -> dict[str, Any]:
        access = f"{self.user_id}.v1.{secrets.token_urlsafe(24)}"
        refresh = f"{self.user_id}.rt.{secrets.token_urlsafe(24)}"
        self.access_tokens[access] = AccessToken(
            grant, grant.user_id, grant.scopes, time.time() + expires_in
        )
        self.refresh_tokens[refresh] = grant
        self._issued.extend([access, refresh])
        return {
            "access_token": access,
            "refresh_token": refresh,
            "token_type": "Bearer",
            "scope": " ".join(grant.scopes),
            "expires_in": int(expires_in),
            "refresh_expires_in": REFRESH_TOKEN_SECONDS,
        }

    def expire(self, access_token: str) -> None:
        self.access_tokens[access_token].expires_at = time.time() - 1

    # ---- PlatformControls

    def published_texts(self) -> list[str]:
        return [
            str(record["fields"].get("Text", ""))
            for base in self.bases
            for table in base.tables
            for record in table.records.values()
        ]

    def secrets_in_use(self) -> list[str]:
        return [*self._issued, *([self.client_secret] if self.client_secret else [])]

    def fault_response(self, fault: Fault, request: Request) -> Response:
        del request
        if fault is Fault.RATE_LIMITED:
            response = error(429, "RATE_LIMIT_REACHED", "Rate limit exceeded. Please try later")
            response.headers["retry-after"] = str(self.retry_after)
            return response
        if fault is Fault.SERVER_ERROR:
            return error(503, "SERVICE_UNAVAILABLE", "Airtable is temporarily unavailable")
        if fault is Fault.UNAUTHORIZED:
            return error(401, "AUTHENTICATION_REQUIRED", "Authentication required")
        return error(422, "INVALID_VALUE_FOR_COLUMN", "Field 'Text' cannot accept this value")

    # ---- routes

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/oauth2/v1/authorize", self.authorize, methods=["GET"]),
            Route("/oauth2/v1/token", self.token, methods=["POST"]),
            Route("/v0/meta/whoami", self.whoami, methods=["GET"]),
            Route("/v0/meta/bases", self.list_bases, methods=["GET"]),
            Route("/v0/meta/bases/{base_id}/tables", self.tables, methods=["GET"]),
            Route(
                "/v0/{base_id}/{table}", self.records, methods=["GET", "POST", "PATCH", "DELETE"]
            ),
            Route("/v0/{base_id}/{table}/{record_id}", self.record, methods=["GET", "DELETE"]),
        ]

    # ---- OAuth

    async def authorize(self, request: Request) -> Response:
        q = request.query_params
        if q.get("client_id") != self.client_id:
            return JSONResponse({"error": "invalid_client"}, status_code=400)
        if q.get("response_type") != "code" or q.get("code_challenge_method") != "S256":
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        if not q.get("code_challenge") or not q.get("state") or not q.get("scope"):
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        code = secrets.token_urlsafe(24)
        grant = Grant(self.user_id, q["scope"].split(" "))
        self.codes[code] = Code(grant, q.get("redirect_uri", ""), q["code_challenge"])
        self._issued.append(code)
        target = f"{q.get('redirect_uri')}?{urlencode({'code': code, 'state': q['state']})}"
        return RedirectResponse(target, status_code=302)

    def _client_ok(self, request: Request, form: dict[str, str]) -> bool:
        header = request.headers.get("authorization", "")
        if self.client_secret is None:
            return form.get("client_id") == self.client_id and not header
        if not header.lower().startswith("basic "):
            return False
        try:
            decoded = base64.b64decode(header[6:]).decode()
        except ValueError:
            return False
        return decoded == f"{self.client_id}:{self.client_secret}"

    async def token(self, request: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        if not self._client_ok(request, form):
            return oauth_error("invalid_client", "client authentication failed", 401)
        with self._state:
            if form.get("grant_type") == "authorization_code":
                return self._exchange(form)
            if form.get("grant_type") == "refresh_token":
                return self._refresh(form)
        return oauth_error("unsupported_grant_type", "unsupported grant_type")

    def _exchange(self, form: dict[str, str]) -> Response:
        code = self.codes.get(form.get("code", ""))
        if code is None or code.used:
            return oauth_error("invalid_grant", "the code is invalid or was used")
        code.used = True
        if form.get("redirect_uri") != code.redirect_uri:
            return oauth_error("invalid_grant", "redirect_uri does not match")
        verifier = form.get("code_verifier", "")
        digest = hashlib.sha256(verifier.encode()).digest()
        if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != code.challenge:
            return oauth_error("invalid_grant", "code_verifier does not match the challenge")
        return JSONResponse(self._token_response(code.grant, expires_in=ACCESS_TOKEN_SECONDS))

    def _refresh(self, form: dict[str, str]) -> Response:
        presented = form.get("refresh_token", "")
        if presented in self.spent_refresh_tokens:
            # Reuse of a rotated token: Airtable treats it as theft and ends the grant.
            for grant in {id(g): g for g in self.refresh_tokens.values()}.values():
                if grant.user_id == self.user_id:
                    grant.alive = False
            return oauth_error("invalid_grant", "the refresh token was already used")
        grant = self.refresh_tokens.pop(presented, None)
        if grant is None or not grant.alive:
            return oauth_error("invalid_grant", "the refresh token is invalid")
        self.spent_refresh_tokens.add(presented)
        for token in [t for t, a in self.access_tokens.items() if a.grant is grant]:
            del self.access_tokens[token]
        return JSONResponse(self._token_response(grant, expires_in=ACCESS_TOKEN_SECONDS))

    # ---- API plumbing

    def _authenticate(self, request: Request) -> AccessToken | Response:
        header = request.headers.get("authorization", "")
        token = header[7:] if header.lower().startswith("bearer ") else ""
        if token in self.pats:
            return AccessToken(None, self.user_id, list(SCOPES), None)
        access = self.access_tokens.get(token)
        if access is None or (access.grant is not None and not access.grant.alive):
            return error(401, "AUTHENTICATION_REQUIRED", "Authentication required")
        if access.expires_at is not None and access.expires_at < time.time():
            return error(401, "AUTHENTICATION_REQUIRED", "The access token has expired")
        return access

    def _throttled(self, base_id: str) -> Response | None:
        with self._state:
            now = time.monotonic()
            if self._locked_until.get(base_id, 0.0) > now:
                return error(429, "RATE_LIMIT_REACHED", "Rate limit exceeded. Please try later")
            recent = self._recent.setdefault(base_id, deque())
            while recent and recent[0] <= now - 1.0:
                recent.popleft()
            recent.append(now)
            if len(recent) > self.requests_per_second:
                self._locked_until[base_id] = now + self.penalty_seconds
                return error(429, "RATE_LIMIT_REACHED", "Rate limit exceeded. Please try later")
        return None

    async def _api(
        self, request: Request, scope: str | None, base_id: str | None = None
    ) -> AccessToken | Response:
        fault = await self.take_fault(request)
        if fault is not None:
            return fault
        access = self._authenticate(request)
        if isinstance(access, Response):
            return access
        if base_id is not None:
            throttled = self._throttled(base_id)
            if throttled is not None:
                return throttled
        if scope is not None and scope not in access.scopes:
            return error(403, "INVALID_PERMISSIONS", f"the token lacks the {scope} scope")
        return access

    def _base(self, base_id: str) -> Base | None:
        return next((b for b in self.bases if b.id == base_id), None)

    # ---- metadata

    async def whoami(self, request: Request) -> Response:
        access = await self._api(request, None)
        if isinstance(access, Response):
            return access
        body: dict[str, Any] = {"id": access.user_id, "scopes": access.scopes}
        if "user.email:read" in access.scopes:
            body["email"] = self.email
        return JSONResponse(body)

    async def list_bases(self, request: Request) -> Response:
        access = await self._api(request, "schema.bases:read")
        if isinstance(access, Response):
            return access
        start = int(request.query_params.get("offset", "0") or 0)
        page = self.bases[start : start + 2]
        body: dict[str, Any] = {
            "bases": [{"id": b.id, "name": b.name, "permissionLevel": "create"} for b in page]
        }
        if start + 2 < len(self.bases):
            body["offset"] = str(start + 2)
        return JSONResponse(body)

    async def tables(self, request: Request) -> Response:
        base_id = request.path_params["base_id"]
        access = await self._api(request, "schema.bases:read", base_id)
        if isinstance(access, Response):
            return access
        base = self._base(base_id)
        if base is None:
            return error(403, "INVALID_PERMISSIONS_OR_MODEL_NOT_FOUND", "no such base")
        return JSONResponse(
            {
                "tables": [
                    {
                        "id": t.id,
                        "name": t.name,
                        "primaryFieldId": t.fields[0]["id"],
                        "fields": t.fields,
                        "views": [],
                    }
                    for t in base.tables
                ]
            }
        )

    # ---- records

    def _table(self, request: Request) -> Table | Response:
        base = self._base(request.path_params["base_id"])
        if base is None:
            return not_found()
        table = base.table(request.path_params["table"])
        if table is None:
            return error(404, "TABLE_NOT_FOUND", "Could not find table in this base")
        return table

    def _validate(self, table: Table, cells: Any) -> Response | dict[str, Any]:
        if not isinstance(cells, dict):
            return error(422, "INVALID_REQUEST_UNKNOWN", "fields must be an object")
        clean: dict[str, Any] = {}
        for name, value in cells.items():
            column = table.field_named(name)
            if column is None:
                return error(422, "UNKNOWN_FIELD_NAME", f'Unknown field name: "{name}"')
            if column["type"] in TEXT_TYPES and (
                not isinstance(value, str) or len(value) > MAX_LONG_TEXT
            ):
                return error(
                    422, "INVALID_VALUE_FOR_COLUMN", f'Field "{name}" cannot accept the value'
                )
            if column["type"] == "number" and not isinstance(value, int | float):
                return error(
                    422, "INVALID_VALUE_FOR_COLUMN", f'Field "{name}" cannot accept the value'
                )
            clean[column["name"]] = value
        return clean

    @staticmethod
    def _render(record_id: str, record: dict[str, Any], only: list[str] | None = None) -> dict:
        cells = record["fields"]
        if only:
            cells = {k: v for k, v in cells.items() if k in only}
        return {"id": record_id, "createdTime": record["createdTime"], "fields": cells}

    async def records(self, request: Request) -> Response:
        scope = "data.records:read" if request.method == "GET" else "data.records:write"
        access = await self._api(request, scope, request.path_params["base_id"])
        if isinstance(access, Response):
            return access
        table = self._table(request)
        if isinstance(table, Response):
            return table
        if request.method == "GET":
            return self._list(request, table)
        if request.method == "DELETE":
            return self._delete_many(request, table)
        records = await self._records_of(request)
        if isinstance(records, Response):
            return records
        write = self._create if request.method == "POST" else self._update
        return write(table, records)

    @staticmethod
    async def _records_of(request: Request) -> list[Any] | Response:
        try:
            body = await request.json()
        except ValueError:
            return error(400, "INVALID_REQUEST_BODY", "the body is not JSON")
        records = body.get("records") if isinstance(body, dict) else None
        if not isinstance(records, list) or not records:
            return error(422, "INVALID_RECORDS", "records must be a non-empty array")
        if len(records) > 10:
            return error(422, "INVALID_RECORDS", "at most 10 records per request")
        return records

    def _list(self, request: Request, table: Table) -> Response:
        q = request.query_params
        try:
            page_size = int(q.get("pageSize", "100"))
        except ValueError:
            page_size = 0
        if not 1 <= page_size <= 100:
            return error(422, "INVALID_PAGE_SIZE", "pageSize must be between 1 and 100")
        rows = list(table.records.items())
        formula = q.get("filterByFormula")
        if formula:
            match = _FORMULA.fullmatch(formula.strip())
            if match is None:
                return error(422, "INVALID_FILTER_BY_FORMULA", "The formula is invalid")
            wanted = match.group(2) if match.group(2) is not None else match.group(3)
            rows = [(i, r) for i, r in rows if str(r["fields"].get(match.group(1), "")) == wanted]
        start = 0
        offset = q.get("offset")
        if offset:
            ids = [i for i, _ in rows]
            anchor = offset.rsplit("/", 1)[-1]
            if not offset.startswith("itr") or anchor not in ids:
                return error(422, "LIST_RECORDS_ITERATOR_NOT_AVAILABLE", "offset is invalid")
            start = ids.index(anchor)
        page = rows[start : start + page_size]
        only = q.getlist("fields[]") or None
        body: dict[str, Any] = {"records": [self._render(i, r, only) for i, r in page]}
        if start + page_size < len(rows):
            body["offset"] = f"itr{next(self._offsets)}/{rows[start + page_size][0]}"
        return JSONResponse(body)

    def _create(self, table: Table, records: list[Any]) -> Response:
        created: list[tuple[str, dict[str, Any]]] = []
        for item in records:
            cells = self._validate(table, item.get("fields") if isinstance(item, dict) else None)
            if isinstance(cells, Response):
                return cells
            created.append(
                (
                    airtable_id("rec"),
                    {"fields": cells, "createdTime": time.strftime("%Y-%m-%dT%H:%M:%S.000Z")},
                )
            )
        for record_id, record in created:
            table.records[record_id] = record
        return JSONResponse({"records": [self._render(i, r) for i, r in created]})

    def _update(self, table: Table, records: list[Any]) -> Response:
        changes: list[tuple[str, dict[str, Any]]] = []
        for item in records:
            record_id = item.get("id") if isinstance(item, dict) else None
            if record_id not in table.records:
                return not_found()
            cells = self._validate(table, item.get("fields"))
            if isinstance(cells, Response):
                return cells
            changes.append((record_id, cells))
        for record_id, cells in changes:
            table.records[record_id]["fields"].update(cells)
        return JSONResponse({"records": [self._render(i, table.records[i]) for i, _ in changes]})

    def _delete_many(self, request: Request, table: Table) -> Response:
        ids = request.query_params.getlist("records[]")
        if not ids or len(ids) > 10:
            return error(422, "INVALID_RECORDS", "give 1 to 10 records[] to delete")
        if any(i not in table.records for i in ids):
            return not_found()
        for record_id in ids:
            del table.records[record_id]
        return JSONResponse({"records": [{"id": i, "deleted": True} for i in ids]})

    async def record(self, request: Request) -> Response:
        scope = "data.records:read" if request.method == "GET" else "data.records:write"
        access = await self._api(request, scope, request.path_params["base_id"])
        if isinstance(access, Response):
            return access
        table = self._table(request)
        if isinstance(table, Response):
            return table
        record_id = request.path_params["record_id"]
        record = table.records.get(record_id)
        if record is None:
            return not_found()
        if request.method == "DELETE":
            del table.records[record_id]
            return JSONResponse({"id": record_id, "deleted": True})
        return JSONResponse(self._render(record_id, record))
