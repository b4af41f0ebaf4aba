"""The sandbox platform: a small social platform served by Plexus itself under
``/sandbox`` outside production, so the whole path (connect, token refresh, publish,
delete, throttling, failures) can be tried with no account anywhere.

It keeps its own SQLite file (``<data dir>/sandbox.db``), separate from Plexus's database,
as a real platform would. It speaks a JSON API under ``/sandbox/api`` that behaves like
the real ones: bearer access tokens that expire after an hour, rotating refresh tokens
whose reuse is refused (``invalid_grant``), RFC 7009 revocation, a per-account rate limit
with ``Retry-After`` and ``RateLimit-*`` headers, content validation, idempotency keys,
and faults an account can ask for (``POST /sandbox/api/faults``: rate limit, server
error, timeout, rejection, revoked token). ``GET /sandbox/api/posts?idempotency_key=``
finds what a key created. ``GET /sandbox`` shows the posts.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import html
import json
import secrets
import sqlite3
import threading
import time
from contextlib import closing
from typing import TYPE_CHECKING, Any, Final

from starlette.applications import Starlette
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

if TYPE_CHECKING:
    from pathlib import Path

    from starlette.requests import Request

TEXT_LIMIT: Final = 500
MAX_MEDIA: Final = 4
MAX_MEDIA_BYTES: Final = 5 * 1024 * 1024
IMAGE_TYPES: Final = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
ACCESS_TOKEN_SECONDS: Final = 3600
RATE_LIMIT: Final = 60
RATE_WINDOW: Final = 60
TIMEOUT_SECONDS: Final = 30.0
FAULTS: Final = frozenset({"rate_limited", "server_error", "timeout", "rejected", "unauthorized"})

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS accounts (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    hash TEXT PRIMARY KEY, account_id TEXT NOT NULL, kind TEXT NOT NULL,
    expires REAL, used INTEGER NOT NULL DEFAULT 0, revoked INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS posts (
    id TEXT PRIMARY KEY, account_id TEXT NOT NULL, text TEXT NOT NULL, media TEXT NOT NULL,
    idempotency_key TEXT, created REAL NOT NULL, deleted INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS faults (account_id TEXT NOT NULL, fault TEXT NOT NULL, seq INTEGER
    PRIMARY KEY AUTOINCREMENT);
"""


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _error(
    status: int, error: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    return JSONResponse({"error": error, "message": message}, status_code=status, headers=headers)


class SandboxPlatform:
    """The platform's state and its ASGI app."""

    def __init__(
        self,
        database: Path,
        *,
        timeout_seconds: float = TIMEOUT_SECONDS,
        fault_retry_after: int = 30,
    ) -> None:
        self.database = database
        self.timeout_seconds = timeout_seconds
        self.fault_retry_after = fault_retry_after
        self._lock = threading.Lock()
        self._hits: dict[str, list[float]] = {}
        database.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with closing(self._connect()) as db:
            db.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.database, timeout=10, isolation_level=None)
        db.row_factory = sqlite3.Row
        return db

    # ---- tokens

    def _issue(self, db: sqlite3.Connection, account_id: str) -> dict[str, Any]:
        access, refresh = (
            "sbx_at_" + secrets.token_urlsafe(24),
            "sbx_rt_" + secrets.token_urlsafe(24),
        )
        now = time.time()
        db.execute(
            "INSERT INTO tokens (hash, account_id, kind, expires) VALUES (?, ?, 'access', ?)",
            (_hash(access), account_id, now + ACCESS_TOKEN_SECONDS),
        )
        db.execute(
            "INSERT INTO tokens (hash, account_id, kind, expires) VALUES (?, ?, 'refresh', NULL)",
            (_hash(refresh), account_id),
        )
        return {
            "access_token": access,
            "refresh_token": refresh,
            "token_type": "Bearer",
            "expires_in": ACCESS_TOKEN_SECONDS,
            "account_id": account_id,
        }

    def _account_of(self, db: sqlite3.Connection, request: Request) -> str | Response:
        header = request.headers.get("authorization", "")
        if not header.lower().startswith("bearer "):
            return _error(401, "unauthorized", "a bearer token is required")
        row = db.execute(
            "SELECT account_id, expires, revoked FROM tokens WHERE hash = ? AND kind = 'access'",
            (_hash(header[7:].strip()),),
        ).fetchone()
        if row is None or row["revoked"]:
            return _error(401, "invalid_token", "the access token is not valid")
        if row["expires"] is not None and row["expires"] < time.time():
            return _error(401, "token_expired", "the access token has expired")
        return str(row["account_id"])

    def _throttled(self, account_id: str) -> Response | None:
        now = time.monotonic()
        with self._lock:
            hits = [t for t in self._hits.get(account_id, []) if now - t < RATE_WINDOW]
            hits.append(now)
            self._hits[account_id] = hits
        remaining = max(0, RATE_LIMIT - len(hits))
        if len(hits) > RATE_LIMIT:
            wait = int(RATE_WINDOW - (now - hits[0])) + 1
            return _error(
                429,
                "rate_limited",
                "too many requests",
                {
                    "retry-after": str(wait),
                    "ratelimit-limit": str(RATE_LIMIT),
                    "ratelimit-remaining": "0",
                    "ratelimit-reset": str(wait),
                },
            )
        del remaining
        return None

    async def _fault(self, db: sqlite3.Connection, account_id: str) -> Response | None:
        row = db.execute(
            "SELECT seq, fault FROM faults WHERE account_id = ? ORDER BY seq LIMIT 1",
            (account_id,),
        ).fetchone()
        if row is None:
            return None
        db.execute("DELETE FROM faults WHERE seq = ?", (row["seq"],))
        fault = row["fault"]
        if fault == "timeout":
            await asyncio.sleep(self.timeout_seconds)
            return _error(504, "timeout", "the sandbox took too long")
        if fault == "rate_limited":
            return _error(
                429,
                "rate_limited",
                "too many requests",
                {"retry-after": str(self.fault_retry_after)},
            )
        if fault == "server_error":
            return _error(503, "unavailable", "the sandbox is having a bad day")
        if fault == "unauthorized":
            return _error(401, "invalid_token", "the access token was revoked")
        return _error(422, "rejected", "the sandbox refuses this post")

    # ---- routes

    async def create_account(self, request: Request) -> Response:
        body = await _json(request)
        name = str(body.get("name") or "sandbox account")[:100]
        account_id = "acct_" + secrets.token_hex(6)
        with closing(self._connect()) as db:
            db.execute(
                "INSERT INTO accounts (id, name, created) VALUES (?, ?, ?)",
                (account_id, name, time.time()),
            )
            issued = self._issue(db, account_id)
        issued["name"] = name
        return JSONResponse(issued, status_code=201)

    async def token(self, request: Request) -> Response:
        form = await request.form()
        if form.get("grant_type") != "refresh_token":
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        refresh = str(form.get("refresh_token") or "")
        with closing(self._connect()) as db:
            db.execute("BEGIN IMMEDIATE")
            row = db.execute(
                "SELECT account_id, used, revoked FROM tokens WHERE hash = ? AND kind = 'refresh'",
                (_hash(refresh),),
            ).fetchone()
            if row is None or row["used"] or row["revoked"]:
                db.execute("COMMIT")
                return JSONResponse(
                    {"error": "invalid_grant", "error_description": "refresh token not valid"},
                    status_code=400,
                )
            db.execute("UPDATE tokens SET used = 1 WHERE hash = ?", (_hash(refresh),))
            issued = self._issue(db, row["account_id"])
            db.execute("COMMIT")
        issued.pop("account_id")
        return JSONResponse(issued)

    async def revoke(self, request: Request) -> Response:
        form = await request.form()
        token = str(form.get("token") or "")
        with closing(self._connect()) as db:
            row = db.execute(
                "SELECT account_id FROM tokens WHERE hash = ?", (_hash(token),)
            ).fetchone()
            if row is not None:
                # Revoking a refresh token ends every token of the grant (RFC 7009 §2.1).
                db.execute("UPDATE tokens SET revoked = 1 WHERE account_id = ?", (row[0],))
        return Response(status_code=200)

    async def me(self, request: Request) -> Response:
        with closing(self._connect()) as db:
            account = self._account_of(db, request)
            if isinstance(account, Response):
                return account
            row = db.execute("SELECT id, name FROM accounts WHERE id = ?", (account,)).fetchone()
        return JSONResponse({"id": row["id"], "name": row["name"]})

    async def faults(self, request: Request) -> Response:
        body = await _json(request)
        fault, times = body.get("fault"), body.get("times", 1)
        if fault not in FAULTS or not isinstance(times, int) or not 1 <= times <= 100:  # noqa: PLR2004
            return _error(400, "invalid_request", f"fault is one of {sorted(FAULTS)}, times 1-100")
        with closing(self._connect()) as db:
            account = self._account_of(db, request)
            if isinstance(account, Response):
                return account
            for _ in range(times):
                db.execute("INSERT INTO faults (account_id, fault) VALUES (?, ?)", (account, fault))
        return JSONResponse({"armed": fault, "times": times})

    async def create_post(self, request: Request) -> Response:  # noqa: PLR0911 - one answer per refusal
        body = await _json(request)
        with closing(self._connect()) as db:
            account = self._account_of(db, request)
            if isinstance(account, Response):
                return account
            throttled = self._throttled(account)
            if throttled is not None:
                return throttled
            fault = await self._fault(db, account)
            if fault is not None:
                return fault
            text = body.get("text")
            if not isinstance(text, str) or not text.strip():
                return _error(422, "invalid_text", "text is required")
            if len(text) > TEXT_LIMIT:
                return _error(422, "text_too_long", f"text is limited to {TEXT_LIMIT} characters")
            media = body.get("media") or []
            problem = _check_media(media)
            if problem:
                return _error(422, "invalid_media", problem)
            key = request.headers.get("idempotency-key")
            if key:
                existing = db.execute(
                    "SELECT id FROM posts WHERE account_id = ? AND idempotency_key = ?",
                    (account, key),
                ).fetchone()
                if existing is not None:
                    return JSONResponse(self._post_json(request, existing["id"]), status_code=200)
            post_id = "post_" + secrets.token_hex(8)
            stored = [
                {
                    "filename": m["filename"],
                    "content_type": m["content_type"],
                    "alt": m.get("alt"),
                    "bytes": len(base64.b64decode(m["data"])),
                }
                for m in media
            ]
            db.execute(
                "INSERT INTO posts (id, account_id, text, media, idempotency_key, created) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (post_id, account, text, json.dumps(stored), key, time.time()),
            )
        return JSONResponse(self._post_json(request, post_id), status_code=201)

    def _post_json(self, request: Request, post_id: str) -> dict[str, Any]:
        base = str(request.base_url).rstrip("/")
        return {"id": post_id, "url": f"{base}/sandbox/posts/{post_id}"}

    async def find_posts(self, request: Request) -> Response:
        """The account's posts made with one idempotency key (a client settling a publish
        whose answer it lost), newest first.
        """
        key = request.query_params.get("idempotency_key", "")
        if not key or len(key) > 200:  # noqa: PLR2004 - the longest key the platform keeps
            return _error(422, "invalid_query", "idempotency_key is required")
        with closing(self._connect()) as db:
            account = self._account_of(db, request)
            if isinstance(account, Response):
                return account
            rows = db.execute(
                "SELECT id, deleted FROM posts WHERE account_id = ? AND idempotency_key = ? "
                "ORDER BY created DESC",
                (account, key),
            ).fetchall()
        return JSONResponse(
            {
                "posts": [
                    {**self._post_json(request, row["id"]), "deleted": bool(row["deleted"])}
                    for row in rows
                ]
            }
        )

    async def post(self, request: Request) -> Response:
        post_id = request.path_params["post_id"]
        with closing(self._connect()) as db:
            account = self._account_of(db, request)
            if isinstance(account, Response):
                return account
            row = db.execute(
                "SELECT id, text, media, deleted, created FROM posts "
                "WHERE id = ? AND account_id = ?",
                (post_id, account),
            ).fetchone()
            if row is None:
                return _error(404, "not_found", "no such post")
            if request.method == "DELETE":
                if row["deleted"]:
                    return _error(404, "not_found", "no such post")
                db.execute("UPDATE posts SET deleted = 1 WHERE id = ?", (post_id,))
                return Response(status_code=204)
        return JSONResponse(
            {
                **self._post_json(request, post_id),
                "text": row["text"],
                "media": json.loads(row["media"]),
                "deleted": bool(row["deleted"]),
                "created": row["created"],
            }
        )

    async def page(self, request: Request) -> Response:
        del request
        with closing(self._connect()) as db:
            rows = db.execute(
                "SELECT p.id, p.text, p.media, p.created, a.name FROM posts p "
                "JOIN accounts a ON a.id = p.account_id WHERE p.deleted = 0 "
                "ORDER BY p.created DESC LIMIT 200"
            ).fetchall()
        items = "".join(
            f'<article id="{html.escape(r["id"])}"><h2>{html.escape(r["name"])}</h2>'
            f"<p>{html.escape(r['text'])}</p>"
            f"<p><small>{len(json.loads(r['media']))} media · "
            f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(r['created']))}</small></p>"
            "</article>"
            for r in rows
        )
        body = (
            "<!doctype html><html lang=en><head><meta charset=utf-8>"
            "<title>Plexus sandbox</title></head><body><h1>Plexus sandbox</h1>"
            "<p>Posts published to the sandbox platform appear here.</p>"
            f"{items or '<p>No posts yet.</p>'}</body></html>"
        )
        return HTMLResponse(body)

    async def single(self, request: Request) -> Response:
        post_id = request.path_params["post_id"]
        with closing(self._connect()) as db:
            row = db.execute(
                "SELECT text FROM posts WHERE id = ? AND deleted = 0", (post_id,)
            ).fetchone()
        if row is None:
            return HTMLResponse("<!doctype html><title>Not found</title><p>No such post.", 404)
        return HTMLResponse(
            "<!doctype html><html lang=en><head><meta charset=utf-8><title>Sandbox post"
            f"</title></head><body><article><p>{html.escape(row['text'])}</p></article>"
            "</body></html>"
        )

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/", self.page),
                Route("/posts/{post_id}", self.single),
                Route("/api/accounts", self.create_account, methods=["POST"]),
                Route("/api/oauth/token", self.token, methods=["POST"]),
                Route("/api/oauth/revoke", self.revoke, methods=["POST"]),
                Route("/api/me", self.me),
                Route("/api/faults", self.faults, methods=["POST"]),
                Route("/api/posts", self.create_post, methods=["POST"]),
                Route("/api/posts", self.find_posts, methods=["GET"]),
                Route("/api/posts/{post_id}", self.post, methods=["GET", "DELETE"]),
            ]
        )


async def _json(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _check_media(media: Any) -> str | None:
    if not isinstance(media, list) or len(media) > MAX_MEDIA:
        return f"at most {MAX_MEDIA} media items"
    for item in media:
        if not isinstance(item, dict) or item.get("content_type") not in IMAGE_TYPES:
            return "media must be JPEG, PNG, GIF or WebP images"
        try:
            size = len(base64.b64decode(str(item.get("data", "")), validate=True))
        except ValueError:
            return "media data must be base64"
        if size == 0 or size > MAX_MEDIA_BYTES:
            return f"each image is 1 byte to {MAX_MEDIA_BYTES} bytes"
        if not isinstance(item.get("filename"), str):
            return "each media item needs a filename"
    return None
