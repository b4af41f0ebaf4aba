"""The composition root: what one Plexus process is wired with, built once at startup.

``create_app``, the worker and the CLI call ``init_runtime(settings)``; everything else
asks ``runtime()`` for the engine, the session factory, the audit service or the queue.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from plexus.audit.service import AuditService
from plexus.auth.keyring import KeyRing
from plexus.auth.passwords import PasswordHasher
from plexus.db import build_engine, make_session_factory
from plexus.kit.logging import register_secrets
from plexus.kit.tokens import TokenHasher
from plexus.security.ipguard import IpGuard
from plexus.security.ratelimit import RateLimiter
from plexus.vault.service import build_blind_index, build_vault

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session, sessionmaker

    from plexus.config import Settings
    from plexus.kit.blindindex import BlindIndex
    from plexus.kit.vault import Vault


@dataclass(slots=True)
class Runtime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    audit: AuditService
    tokens: TokenHasher
    #: The vault (envelope encryption): ``seal``/``open`` like any SecretBox, plus rewrap.
    secretbox: Vault
    #: Keyed blind indexes of encrypted values that must be looked up (e-mail addresses).
    blind_index: BlindIndex
    passwords: PasswordHasher
    keyring: KeyRing
    limiter: RateLimiter
    ip_guard: IpGuard

    def dispose(self) -> None:
        self.engine.dispose()


_current: Runtime | None = None


def init_runtime(settings: Settings) -> Runtime:
    """Wire this process for ``settings``, replacing any earlier wiring."""
    global _current  # noqa: PLW0603 - the one process-wide composition root
    from plexus.worker import configure_queue

    register_secrets(settings.secret_values())
    engine = build_engine(settings)
    secretbox = build_vault(settings)
    sessions = make_session_factory(engine)
    audit = AuditService(settings.secret("audit_key").encode())
    # Outbound webhook events are derived from audit events, in the same transaction.
    from plexus.webhooks_out.service import on_audit_event

    audit.add_listener(on_audit_event)
    limiter = RateLimiter(settings)
    built = Runtime(
        settings=settings,
        engine=engine,
        sessions=sessions,
        audit=audit,
        tokens=TokenHasher(settings.secret("token_key").encode()),
        secretbox=secretbox,
        blind_index=build_blind_index(settings),
        passwords=PasswordHasher(
            settings.secret("password_pepper").encode(), settings.bcrypt_rounds
        ),
        keyring=KeyRing(secretbox, settings),
        limiter=limiter,
        ip_guard=IpGuard(settings, limiter, audit, sessions),
    )
    configure_queue(settings)
    if _current is not None:
        _current.dispose()
    _current = built
    return built


def runtime() -> Runtime:
    if _current is None:
        msg = "Plexus is not initialised: call init_runtime(settings) at startup"
        raise RuntimeError(msg)
    return _current
