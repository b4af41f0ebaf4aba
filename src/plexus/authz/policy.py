"""The policy each route declares, in its signature, exactly once.

- ``Public(rate=...)``: anyone may call it (still rate-limited per client address).
- ``Authenticated(...)``: any signed-in user, whatever their role (their own account).
- ``Allow(permission, ...)``: a principal holding ``permission`` in its workspace.

Each is a dependency returning the caller (``None`` for public routes), so a route reads::

    @router.post("/api-keys")
    def create(principal: Annotated[Principal, Depends(Allow(Permission.API_KEY_CREATE))]): ...

``tests/authz/test_routes.py`` walks every route of the app and fails on one that declares
no policy or more than one. Anything a policy refuses is refused before the handler runs.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the annotations of the
# policies' ``__call__`` at run time, and an instance has no module globals to resolve
# string annotations against.
from abc import ABC, abstractmethod
from typing import Final

from fastapi import Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from plexus.auth.authn import authenticate_request
from plexus.auth.principal import Principal
from plexus.authz.permissions import Permission
from plexus.deps import SessionDep, get_runtime
from plexus.errors import MfaRequired, PermissionDenied, ReauthenticationRequired
from plexus.security.ipguard.networks import budget_key

DEFAULT_RATE_CLASS: Final = "default"


_FORM_TYPES: Final = ("application/x-www-form-urlencoded", "multipart/form-data")
_SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})


async def _form_csrf_token(request: Request) -> str | None:
    """The ``csrf_token`` field of an HTML form post (HTMX sends the header instead)."""
    if request.method in _SAFE_METHODS or "x-csrf-token" in request.headers:
        return None
    if not request.headers.get("content-type", "").startswith(_FORM_TYPES):
        return None
    if "cookie" not in request.headers:
        return None
    form = await request.form()
    value = form.get("csrf_token")
    return value if isinstance(value, str) else None


class Policy(ABC):
    """Base of the three policies; ``rate`` names the rate-limit class of the route."""

    rate: str = DEFAULT_RATE_CLASS

    @abstractmethod
    def describe(self) -> str:
        """How the route table in the docs names this policy."""


class Public(Policy):
    def __init__(self, rate: str = "public") -> None:
        self.rate = rate

    def describe(self) -> str:
        return "public"

    def __call__(self, request: Request) -> None:
        limiter = get_runtime(request).limiter
        client = request.client.host if request.client else None
        limiter.check(request.scope, self.rate, budget_key(client))


class Authenticated(Policy):
    """Any signed-in principal. ``reauth`` demands a fresh proof of identity (sensitive
    actions); ``allow_api_keys=False`` keeps keys off routes about a person's own account;
    ``mfa_exempt`` keeps the route open to a member who still has to enrol a second factor.
    """

    def __init__(
        self,
        *,
        rate: str = DEFAULT_RATE_CLASS,
        reauth: bool = False,
        allow_api_keys: bool = False,
        mfa_exempt: bool = False,
    ) -> None:
        self.rate = rate
        self.reauth = reauth
        self.allow_api_keys = allow_api_keys
        self.mfa_exempt = mfa_exempt

    def describe(self) -> str:
        return "authenticated"

    async def __call__(self, request: Request, session: SessionDep) -> Principal:
        form_token = await _form_csrf_token(request)
        return await run_in_threadpool(self.decide, request, session, form_token)

    def decide(self, request: Request, session: Session, form_token: str | None) -> Principal:
        principal = self._resolve(request, session, form_token)
        self._check_mfa(principal)
        self._check_reauth(request, principal)
        return principal

    def _resolve(self, request: Request, session: Session, form_token: str | None) -> Principal:
        runtime = get_runtime(request)
        principal = authenticate_request(
            request, session, allow_api_keys=self.allow_api_keys, csrf_form_token=form_token
        )
        request.scope.setdefault("state", {})["principal"] = principal.log_label
        runtime.limiter.check(request.scope, self.rate, principal.log_label)
        return principal

    def _check_mfa(self, principal: Principal) -> None:
        if principal.mfa_required and not principal.mfa and not self.mfa_exempt:
            raise MfaRequired(
                "This workspace requires multi-factor authentication: enrol a second factor "
                "and sign in with it."
            )

    def _check_reauth(self, request: Request, principal: Principal) -> None:
        if not self.reauth:
            return
        window = get_runtime(request).settings.reauth_window_seconds
        if not principal.recently_authenticated(window):
            raise ReauthenticationRequired(
                "Confirm your password (and second factor) at /api/v1/auth/reauth, or with "
                "a security key at /api/v1/auth/reauth/webauthn, then retry."
            )


class Allow(Authenticated):
    """A principal holding ``permission`` in its current workspace."""

    def __init__(
        self, permission: Permission, *, rate: str = DEFAULT_RATE_CLASS, reauth: bool = False
    ) -> None:
        super().__init__(rate=rate, reauth=reauth, allow_api_keys=True)
        self.permission = permission

    def describe(self) -> str:
        return str(self.permission)

    def decide(self, request: Request, session: Session, form_token: str | None) -> Principal:
        principal = self._resolve(request, session, form_token)
        self._check_mfa(principal)
        if not principal.has(self.permission):
            from plexus.api_keys.service import note_scope_denial

            note_scope_denial(session, principal, self.permission)
            raise PermissionDenied(
                f"This needs the {self.permission} permission.", keep_changes=True
            )
        self._check_reauth(request, principal)
        return principal
