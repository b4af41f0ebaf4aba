"""A local stand-in for the parts of the Facebook Graph API that Instagram publishing uses.

Implemented as documented: ``oauth/access_token`` (code exchange with PKCE S256, the
long-lived ``fb_exchange_token`` exchange), ``/me/accounts`` with
``instagram_business_account``, ``/me/permissions`` (DELETE), IG users, media containers
(``/{ig-user-id}/media``: images, reels, carousel children and carousels) whose
``status_code`` goes IN_PROGRESS -> FINISHED (or ERROR) after a configurable number of
polls, ``/{ig-user-id}/media_publish`` (refuses unfinished containers and a spent quota),
``/{ig-user-id}/content_publishing_limit`` (``quota_usage``, and ``config`` when asked
for; each account's ``quota_usage`` and ``quota_total`` are settable), and IG media
with a permalink.

Tokens are accepted only in the ``Authorization: Bearer`` header and every call must
carry a valid ``appsecret_proof``. Errors use Graph's ``{"error": {...}}`` body. Media
URLs are only checked to be https URLs: nothing is fetched.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from plexus.providers.testing import Fault

from fake_helpers import FakePlatform

VERSION = "v25.0"
SHORT_LIVED = 3600
LONG_LIVED = 5_183_944
MAX_CAPTION = 2200
_HASHTAG = re.compile(r"(?<![\w&#])#\w+")


@dataclass
class Token:
    user_id: str
    expires_at: float
    long_lived: bool


@dataclass
class Grant:
    user_id: str
    redirect_uri: str
    challenge: str | None


@dataclass
class IgAccount:
    id: str
    username: str
    name: str
    page_id: str
    quota_usage: int = 0
    quota_total: int = 50


@dataclass
class Container:
    id: str
    owner: str
    media_type: str
    caption: str
    url: str | None
    carousel_item: bool
    children: list[str] = field(default_factory=list)
    polls_left: int = 0
    outcome: str = "FINISHED"
    published: bool = False

    @property
    def status(self) -> str:
        if self.published:
            return "PUBLISHED"
        return "IN_PROGRESS" if self.polls_left > 0 else self.outcome


@dataclass
class Media:
    id: str
    owner: str
    caption: str
    media_type: str
    permalink: str
    children: list[str]


def graph_error(status: int, code: int, message: str, **extra: Any) -> JSONResponse:
    """Graph's error body; ``extra`` may hold ``subcode``, ``kind`` (the error type),
    ``transient`` and ``headers``.
    """
    error: dict[str, Any] = {
        "message": message,
        "type": extra.get("kind", "OAuthException"),
        "code": code,
        "fbtrace_id": secrets.token_urlsafe(8),
    }
    if extra.get("subcode") is not None:
        error["error_subcode"] = extra["subcode"]
    if extra.get("transient"):
        error["is_transient"] = True
    return JSONResponse({"error": error}, status_code=status, headers=extra.get("headers"))


class InstagramFake(FakePlatform):
    """Facebook Graph for one app; tests add users, Pages and Instagram accounts."""

    client_id = "1234567890"
    client_secret = "fb-app-secret-" + "s" * 24

    def __init__(self) -> None:
        super().__init__()
        self.tokens: dict[str, Token] = {}
        self.grants: dict[str, Grant] = {}
        self.pages: dict[str, list[IgAccount | tuple[str, str]]] = {}
        self.accounts: dict[str, IgAccount] = {}
        self.containers: dict[str, Container] = {}
        self.media: dict[str, Media] = {}
        self.revoked: list[str] = []
        self.issued: list[str] = []
        #: How many status reads answer IN_PROGRESS before a container is processed.
        self.polls_until_finished = 1
        #: What a processed container becomes: FINISHED, or ERROR.
        self.container_outcome = "FINISHED"
        #: The BUC header's ``estimated_time_to_regain_access`` for RATE_LIMITED, in
        #: minutes; by default the fake's retry delay (a fraction of a minute).
        self.regain_minutes: float | None = None
        #: Whether exchanging a long-lived token gives a fresh 60 days; when False the
        #: same token comes back with the time it had left.
        self.extend_long_lived = True
        self._ids = itertools.count(17_841_400_000_000_000)

    # ---- test set-up

    def _id(self) -> str:
        return str(next(self._ids))

    def add_user(self, *, usernames: tuple[str, ...] = ("plexus_test",)) -> str:
        """A Facebook user managing one Page per username (each with an IG account),
        plus a Page without one. Returns the user id.
        """
        user_id = self._id()
        pages: list[IgAccount | tuple[str, str]] = [(self._id(), "A Page without Instagram")]
        for username in usernames:
            account = IgAccount(self._id(), username, username.title(), page_id=self._id())
            self.accounts[account.id] = account
            pages.append(account)
        self.pages[user_id] = pages
        return user_id

    def ig_accounts_of(self, user_id: str) -> list[IgAccount]:
        return [p for p in self.pages[user_id] if isinstance(p, IgAccount)]

    def issue_token(self, user_id: str, *, long_lived: bool = True) -> str:
        token = ("EAAL" if long_lived else "EAAS") + secrets.token_urlsafe(24)
        lifetime = LONG_LIVED if long_lived else SHORT_LIVED
        self.tokens[token] = Token(user_id, time.time() + lifetime, long_lived)
        self.issued.append(token)
        return token

    def authorize(self, user_id: str, redirect_uri: str, code_challenge: str | None) -> str:
        """What the login dialog does once the user agrees: a single-use code."""
        code = "AQ" + secrets.token_urlsafe(24)
        self.grants[code] = Grant(user_id, redirect_uri, code_challenge)
        self.issued.append(code)
        return code

    def expire(self, token: str) -> None:
        self.tokens[token].expires_at = time.time() - 1

    # ---- controls

    def published_texts(self) -> list[str]:
        return [m.caption for m in self.media.values()]

    def revoked_tokens(self) -> list[str]:
        return list(self.revoked)

    def secrets_in_use(self) -> list[str]:
        return [self.client_secret, *self.issued]

    # ---- faults

    def fault_response(self, fault: Fault, request: Request) -> Response:
        del request
        if fault is Fault.RATE_LIMITED:
            minutes = self.regain_minutes
            if minutes is None:
                minutes = round(self.retry_after / 60, 4)
            usage = {
                account_id: [
                    {
                        "type": "instagram",
                        "call_count": 100,
                        "total_cputime": 12,
                        "total_time": 20,
                        "estimated_time_to_regain_access": minutes,
                    }
                ]
                for account_id in self.accounts
            }
            return graph_error(
                400,
                80002,
                "There have been too many calls to this Instagram account. Wait a bit.",
                transient=True,
                headers={"x-business-use-case-usage": json.dumps(usage)},
            )
        if fault is Fault.SERVER_ERROR:
            return graph_error(500, 2, "Service temporarily unavailable", transient=True)
        if fault is Fault.UNAUTHORIZED:
            return graph_error(
                400,
                190,
                "Error validating access token: The session has been invalidated because "
                "the user changed their password.",
                subcode=460,
                headers={"www-authenticate": 'OAuth "Facebook Platform" "invalid_token"'},
            )
        return graph_error(400, 100, "Invalid parameter", kind="OAuthException")

    # ---- helpers for routes

    async def _params(self, request: Request) -> dict[str, str]:
        params = dict(request.query_params)
        if request.method == "POST":
            async with request.form() as form:
                params.update({k: str(v) for k, v in form.items()})
        return params

    def _authenticate(self, request: Request, params: dict[str, str]) -> Token | Response:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return graph_error(400, 2500, "An active access token must be used.")
        info = self.tokens.get(token)
        if info is None or token in self.revoked:
            return graph_error(400, 190, "Invalid OAuth access token - Cannot parse access token")
        if info.expires_at < time.time():
            return graph_error(
                400, 190, "Error validating access token: Session has expired.", subcode=463
            )
        proof = params.get("appsecret_proof")
        expected = hmac.new(self.client_secret.encode(), token.encode(), hashlib.sha256)
        if not proof:
            return graph_error(
                400, 100, "API calls from the server require an appsecret_proof argument"
            )
        if not hmac.compare_digest(proof, expected.hexdigest()):
            return graph_error(400, 100, "Invalid appsecret_proof provided in the API argument")
        return info

    def _owned(self, info: Token, ig_id: str) -> IgAccount | None:
        return next((a for a in self.ig_accounts_of(info.user_id) if a.id == ig_id), None)

    @staticmethod
    def _missing(node: str) -> Response:
        return graph_error(
            400,
            100,
            f"Unsupported get request. Object with ID '{node}' does not exist.",
            subcode=33,
            kind="GraphMethodException",
        )

    async def _begin(self, request: Request) -> tuple[Token, dict[str, str]] | Response:
        fault = await self.take_fault(request)
        if fault is not None:
            return fault
        if request.path_params["version"] != VERSION:
            return graph_error(400, 2635, "Unknown API version")
        params = await self._params(request)
        info = self._authenticate(request, params)
        if isinstance(info, Response):
            return info
        return info, params

    # ---- routes

    async def token(self, request: Request) -> Response:
        fault = await self.take_fault(request)
        if fault is not None:
            return fault
        params = await self._params(request)
        if params.get("client_id") != self.client_id:
            return graph_error(400, 101, "Error validating application. Invalid application ID.")
        if params.get("client_secret") != self.client_secret:
            return graph_error(400, 1, "Error validating client secret.")
        if params.get("grant_type") == "fb_exchange_token":
            return self._long_lived(params.get("fb_exchange_token", ""))
        return self._code_exchange(params)

    def _long_lived(self, old: str) -> Response:
        info = self.tokens.get(old)
        if info is None or old in self.revoked:
            return graph_error(400, 190, "Invalid OAuth access token.")
        if info.expires_at < time.time():
            return graph_error(400, 190, "Session has expired.", subcode=463)
        if info.long_lived and not self.extend_long_lived:
            left = int(info.expires_at - time.time())
            return JSONResponse({"access_token": old, "token_type": "bearer", "expires_in": left})
        token = self.issue_token(info.user_id, long_lived=True)
        return JSONResponse(
            {"access_token": token, "token_type": "bearer", "expires_in": LONG_LIVED}
        )

    def _code_exchange(self, params: dict[str, str]) -> Response:
        grant = self.grants.pop(params.get("code", ""), None)
        if grant is None:
            return graph_error(400, 100, "This authorization code has been used.", subcode=36009)
        if grant.redirect_uri != params.get("redirect_uri"):
            return graph_error(
                400, 100, "Error validating verification code: redirect_uri differs", subcode=36008
            )
        if grant.challenge is not None:
            verifier = params.get("code_verifier", "").encode()
            digest = base64.urlsafe_b64encode(hashlib.sha256(verifier).digest()).rstrip(b"=")
            if digest.decode() != grant.challenge:
                return graph_error(400, 100, "Invalid code verifier")
        token = self.issue_token(grant.user_id, long_lived=False)
        return JSONResponse(
            {"access_token": token, "token_type": "bearer", "expires_in": SHORT_LIVED}
        )

    async def my_accounts(self, request: Request) -> Response:
        begun = await self._begin(request)
        if isinstance(begun, Response):
            return begun
        info, _ = begun
        data: list[dict[str, Any]] = []
        for page in self.pages[info.user_id]:
            if isinstance(page, IgAccount):
                ig = {"id": page.id, "username": page.username, "name": page.name}
                data.append(
                    {"id": page.page_id, "name": page.name, "instagram_business_account": ig}
                )
            else:
                data.append({"id": page[0], "name": page[1]})
        return JSONResponse({"data": data, "paging": {"cursors": {"before": "b", "after": "a"}}})

    async def my_permissions(self, request: Request) -> Response:
        begun = await self._begin(request)
        if isinstance(begun, Response):
            return begun
        info, _ = begun
        # De-authorizing the app ends every token the user gave it.
        for token, other in self.tokens.items():
            if other.user_id == info.user_id and token not in self.revoked:
                self.revoked.append(token)
        return JSONResponse({"success": True})

    def _check_url(self, url: str | None) -> Response | None:
        parts = urlsplit(url or "")
        if parts.scheme != "https" or not parts.hostname:
            return graph_error(
                400,
                9004,
                "The media could not be fetched from this URI.",
                subcode=2207052,
                kind="OAuthException",
            )
        return None

    def _new_container(self, owner: str, media_type: str, params: dict[str, str]) -> Container:
        url = params.get("image_url") or params.get("video_url")
        container = Container(
            id=self._id(),
            owner=owner,
            media_type=media_type,
            caption=params.get("caption", ""),
            url=url,
            carousel_item=params.get("is_carousel_item") == "true",
            polls_left=self.polls_until_finished,
            outcome=self.container_outcome,
        )
        self.containers[container.id] = container
        return container

    def _caption_error(self, caption: str) -> Response | None:
        if len(caption) > MAX_CAPTION:
            return graph_error(400, 100, "Param caption must be at most 2200 characters long.")
        if len(_HASHTAG.findall(caption)) > 30:
            return graph_error(400, 100, "The caption has more than 30 hashtags.")
        return None

    async def create_container(self, request: Request) -> Response:  # noqa: PLR0911 - one answer per documented refusal
        begun = await self._begin(request)
        if isinstance(begun, Response):
            return begun
        info, params = begun
        owner = request.path_params["node"]
        if self._owned(info, owner) is None:
            return self._missing(owner)
        media_type = params.get("media_type", "IMAGE")
        error = self._caption_error(params.get("caption", ""))
        if error is not None:
            return error
        if media_type == "CAROUSEL":
            return self._carousel(owner, params)
        if media_type == "VIDEO" and params.get("is_carousel_item") != "true":
            return graph_error(400, 100, "VIDEO is only allowed for carousel items; use REELS.")
        if media_type in ("REELS", "VIDEO"):
            error = self._check_url(params.get("video_url"))
        elif media_type == "IMAGE":
            error = self._check_url(params.get("image_url"))
        else:
            error = graph_error(400, 100, f"Unsupported media_type {media_type}.")
        if error is not None:
            return error
        return JSONResponse({"id": self._new_container(owner, media_type, params).id})

    def _carousel(self, owner: str, params: dict[str, str]) -> Response:
        children = [c for c in params.get("children", "").split(",") if c]
        if not 2 <= len(children) <= 10:
            return graph_error(400, 100, "A carousel needs between 2 and 10 children.")
        for child_id in children:
            child = self.containers.get(child_id)
            if child is None or child.owner != owner or not child.carousel_item:
                return graph_error(400, 100, f"Invalid carousel child {child_id}.")
            if child.status != "FINISHED":
                return graph_error(400, 9007, "Media ID is not available", subcode=2207027)
        container = self._new_container(owner, "CAROUSEL", params)
        container.children = children
        return JSONResponse({"id": container.id})

    async def publish(self, request: Request) -> Response:
        begun = await self._begin(request)
        if isinstance(begun, Response):
            return begun
        info, params = begun
        owner = request.path_params["node"]
        account = self._owned(info, owner)
        if account is None:
            return self._missing(owner)
        container = self.containers.get(params.get("creation_id", ""))
        if container is None or container.owner != owner or container.carousel_item:
            return graph_error(400, 100, "Invalid creation_id.")
        if container.status != "FINISHED":
            return graph_error(
                400,
                9007,
                "The media is not ready for publishing, please wait for a moment",
                subcode=2207027,
            )
        if account.quota_usage >= account.quota_total:
            return graph_error(
                400,
                9,
                "Application request limit reached: the content publishing limit is used up.",
                subcode=2207042,
            )
        container.published = True
        account.quota_usage += 1
        media_id = self._id()
        shortcode = secrets.token_urlsafe(8)
        self.media[media_id] = Media(
            media_id,
            owner,
            container.caption,
            container.media_type,
            f"https://www.instagram.com/p/{shortcode}/",
            list(container.children),
        )
        return JSONResponse({"id": media_id})

    async def publishing_limit(self, request: Request) -> Response:
        begun = await self._begin(request)
        if isinstance(begun, Response):
            return begun
        info, params = begun
        account = self._owned(info, request.path_params["node"])
        if account is None:
            return self._missing(request.path_params["node"])
        # As Graph does: only quota_usage unless other fields are asked for.
        fields = set((params.get("fields") or "quota_usage").split(","))
        row: dict[str, Any] = {}
        if "quota_usage" in fields:
            row["quota_usage"] = account.quota_usage
        if "config" in fields:
            row["config"] = {"quota_total": account.quota_total, "quota_duration": 86400}
        return JSONResponse({"data": [row]})

    async def node(self, request: Request) -> Response:
        begun = await self._begin(request)
        if isinstance(begun, Response):
            return begun
        info, _ = begun
        node = request.path_params["node"]
        account = self._owned(info, node)
        if account is not None:
            return JSONResponse(
                {"id": account.id, "username": account.username, "name": account.name}
            )
        container = self.containers.get(node)
        if container is not None and self._owned(info, container.owner):
            if container.polls_left > 0:
                container.polls_left -= 1
                return JSONResponse(
                    {"id": node, "status_code": "IN_PROGRESS", "status": "In Progress"}
                )
            status = container.status
            detail = (
                "Error: Media download has failed. (2207026)"
                if status == "ERROR"
                else "Finished: Media has been uploaded and it is complete."
            )
            return JSONResponse({"id": node, "status_code": status, "status": detail})
        media = self.media.get(node)
        if media is not None and self._owned(info, media.owner):
            return JSONResponse({"id": media.id, "permalink": media.permalink})
        return self._missing(node)

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/{version}/oauth/access_token", self.token, methods=["GET", "POST"]),
            Route("/{version}/me/accounts", self.my_accounts, methods=["GET"]),
            Route("/{version}/me/permissions", self.my_permissions, methods=["DELETE"]),
            Route("/{version}/{node}/media", self.create_container, methods=["POST"]),
            Route("/{version}/{node}/media_publish", self.publish, methods=["POST"]),
            Route(
                "/{version}/{node}/content_publishing_limit",
                self.publishing_limit,
                methods=["GET"],
            ),
            Route("/{version}/{node}", self.node, methods=["GET"]),
        ]
