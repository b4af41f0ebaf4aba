"""``IpGuard``: the rules in force, failures counted towards automatic blocks, and the
block and allow lists administrators manage (R16).

Never commits the caller's session; only its own background paths (the cache refresh and
the burst check after a response) open a transaction of their own, in a worker thread.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections import Counter
from datetime import timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Final

from plexus.audit.events import Actor, AuditEventType, AuditResult, Target
from plexus.db import after_commit, unit_of_work
from plexus.errors import Conflict, NotFound
from plexus.kit.logging import get_logger
from plexus.models.base import utcnow
from plexus.models.identity import IpRule
from plexus.security.events import SecurityEventKind, Severity
from plexus.security.ipguard.networks import (
    Address,
    CachedRule,
    RuleIndex,
    clean_reason,
    client_address,
    invalid,
    offender_network,
    parse_network,
    within,
)
from plexus.security.repository import IpRuleRepository
from plexus.security.service import raise_security_event

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from datetime import datetime

    from sqlalchemy.orm import Session, sessionmaker

    from plexus.audit.service import AuditService
    from plexus.config import Settings
    from plexus.security.ratelimit import RateLimiter

log = get_logger("plexus.ipguard")

#: How long a process trusts its copy of the rules (another process's change shows
#: within this; a change made here shows at once).
RULE_CACHE_SECONDS: Final = 5.0
#: After a failed refresh (database down), try again this soon.
RETRY_SECONDS: Final = 1.0
#: The longest manual block with an end, in minutes (a year); no end means until lifted.
MAX_BLOCK_MINUTES: Final = 525_600
#: Escalation stops growing here (the maximum caps it long before).
_MAX_LEVEL_EXPONENT: Final = 30


class FailureKind(StrEnum):
    """What went wrong, as the auth code (and the middleware) reports it."""

    LOGIN = "login"
    CSRF = "csrf"
    SIGNATURE = "signature"
    TOKEN = "token"  # noqa: S105 - a kind of failure, not a secret
    #: A 401, 403 or 404 response (counted by the middleware).
    ERRORS = "errors"


class RuleKind(StrEnum):
    BLOCK = "block"
    ALLOW = "allow"


class RuleSource(StrEnum):
    MANUAL = "manual"
    AUTO = "auto"


#: The rate-limit class whose budget each kind of failure spends; exhausting it blocks.
THRESHOLD_CLASSES: Final[dict[FailureKind, str]] = {
    FailureKind.LOGIN: "block_login",
    FailureKind.CSRF: "block_csrf",
    FailureKind.SIGNATURE: "block_signature",
    FailureKind.TOKEN: "block_token",
    FailureKind.ERRORS: "block_errors",
}

_REASONS: Final[dict[FailureKind, str]] = {
    FailureKind.LOGIN: "credential stuffing: repeated failed logins",
    FailureKind.CSRF: "repeated CSRF failures",
    FailureKind.SIGNATURE: "repeated signature failures",
    FailureKind.TOKEN: "repeated invalid or spent tokens",
    FailureKind.ERRORS: "burst of 401/403/404 responses",
}


def _cached(rules: Iterable[IpRule]) -> RuleIndex:
    return RuleIndex(CachedRule(r.id, ipaddress.ip_network(r.network), r.expires_at) for r in rules)


def _covering(rules: Iterable[IpRule], address: Address) -> IpRule | None:
    return next((r for r in rules if address in ipaddress.ip_network(r.network)), None)


class IpGuard:
    """Decides whether an address may be served; records failures; manages the lists.

    Never commits the caller's session: ``note_failure`` and the list management run in
    the caller's transaction. Only the middleware's own paths (refresh, the burst check
    after a response) open a transaction of their own, in a worker thread.
    """

    def __init__(
        self,
        settings: Settings,
        limiter: RateLimiter,
        audit: AuditService,
        sessions: sessionmaker[Session],
    ) -> None:
        self.base_seconds = settings.ip_block_base_seconds
        self.max_seconds = settings.ip_block_max_seconds
        self.limiter = limiter
        self.audit = audit
        self.sessions = sessions
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._blocks = RuleIndex(())
        self._allows = RuleIndex(())
        self._fresh_until = 0.0
        self._loaded = False
        self._pending: Counter[int] = Counter()

    # The request path ------------------------------------------------------------------

    def needs_refresh(self) -> bool:
        return time.monotonic() >= self._fresh_until

    def invalidate(self) -> None:
        """Reload the rules before the next request (a change was committed here)."""
        self._fresh_until = 0.0

    def refresh_if_stale(self) -> None:
        """Refresh unless another thread is at it.

        Only before the first load do other requests wait for it: afterwards a slow
        database stalls the one refreshing request, not every request of the moment.
        """
        if not self._refresh_lock.acquire(blocking=not self._loaded):
            return
        try:
            if self.needs_refresh():
                self.refresh()
        finally:
            self._refresh_lock.release()

    def refresh(self) -> None:
        """Write the counted refusals, end expired blocks, reload the rules in force.

        A database failure keeps the previous rules (and the counts) and is retried soon.
        """
        with self._lock:
            counts, self._pending = self._pending, Counter()
        try:
            with unit_of_work(self.sessions) as session:
                repo = IpRuleRepository(session)
                if counts:
                    repo.add_blocked_requests(counts)
                self._lift_expired(session, repo)
                now = utcnow()
                blocks = _cached(repo.active(RuleKind.BLOCK, now))
                allows = _cached(repo.active(RuleKind.ALLOW, now))
        except Exception as exc:
            # Keep serving on the rules already known.
            log.exception("ip_rules_refresh_failed", error=type(exc).__name__)
            with self._lock:
                self._pending.update(counts)
            self._fresh_until = time.monotonic() + RETRY_SECONDS
            return
        with self._lock:
            self._blocks, self._allows = blocks, allows
        self._loaded = True
        self._fresh_until = time.monotonic() + RULE_CACHE_SECONDS

    def blocking_rule(self, ip: str | None) -> int | None:
        """The id of the block refusing ``ip`` (and count the refusal), or None."""
        address = client_address(ip)
        if address is None:
            return None
        now = utcnow()
        with self._lock:
            if self._allows.find(address, now) is not None:
                return None
            rule = self._blocks.find(address, now)
            if rule is None:
                return None
            self._pending[rule.id] += 1
            return rule.id

    def pending_refusals(self, rule_id: int) -> int:
        """Refusals counted in this process and not yet written to the rule."""
        with self._lock:
            return self._pending.get(rule_id, 0)

    def note_error_response(self, ip: str | None) -> None:
        """Count a 401/403/404 sent to ``ip``; block it when they come in a burst.

        Runs after the response, in a worker thread, in a transaction of its own.
        """
        address = client_address(ip)
        if address is None:
            return
        network = offender_network(address)
        if self.limiter.count(THRESHOLD_CLASSES[FailureKind.ERRORS], f"ip:{network}"):
            return
        try:
            with unit_of_work(self.sessions) as session:
                self._auto_block(session, address, FailureKind.ERRORS)
        except Exception as exc:
            # The response is already sent: log, never raise.
            log.exception("ip_auto_block_failed", error=type(exc).__name__)

    def note_rate_limited(self, ip: str | None) -> None:
        """Audit that ``ip`` ran out of a budget: once per window, never once per refusal
        (ASVS V16.3.x). Runs after the response, in a transaction of its own.
        """
        address = client_address(ip)
        key = f"ip:{offender_network(address)}" if address is not None else f"ip:{ip}"
        if not self.limiter.count("audit_rate_limited", key):
            return
        try:
            with unit_of_work(self.sessions) as session:
                self.audit.record(
                    session,
                    AuditEventType.SECURITY_RATE_LIMIT_EXCEEDED,
                    Actor.anonymous(),
                    result=AuditResult.DENIED,
                    ip=ip,
                )
        except Exception as exc:
            log.exception("rate_limit_audit_failed", error=type(exc).__name__)

    # Called by the auth code ---------------------------------------------------------

    def note_failure(self, session: Session, ip: str | None, kind: FailureKind) -> None:
        """Count a failure of ``kind`` from ``ip``; block the address past the threshold.

        Runs in the caller's transaction (the request's session), which must commit for
        the block to take effect: raise the request's error with ``keep_changes=True``.
        """
        address = client_address(ip)
        if address is None:
            return
        network = offender_network(address)
        if self.limiter.count(THRESHOLD_CLASSES[kind], f"ip:{network}"):
            return
        self._auto_block(session, address, kind)

    def _auto_block(self, session: Session, address: Address, kind: FailureKind) -> None:
        repo = IpRuleRepository(session)
        now = utcnow()
        network = offender_network(address)
        threshold = THRESHOLD_CLASSES[kind]
        if _covering(repo.active(RuleKind.ALLOW, now), address) is not None:
            log.info("ip_auto_block_skipped", reason="allow-listed", cause=str(kind))
            return
        if _covering(repo.active(RuleKind.BLOCK, now), address) is not None:
            return
        level = repo.auto_blocks_of(str(network))
        seconds = min(self.max_seconds, self.base_seconds * 4 ** min(level, _MAX_LEVEL_EXPONENT))
        rule = repo.add(
            IpRule(
                network=str(network),
                kind=RuleKind.BLOCK,
                source=RuleSource.AUTO,
                reason=_REASONS[kind],
                level=level,
                created_at=now,
                expires_at=now + timedelta(seconds=seconds),
                blocked_requests=0,
            )
        )
        details = {
            "rule_id": rule.id,
            "network": rule.network,
            "cause": str(kind),
            "level": level,
            "seconds": seconds,
            "threshold": str(self.limiter.item(threshold)),
        }
        self.audit.record(
            session,
            AuditEventType.SECURITY_IP_BLOCKED,
            Actor.system("ip_guard"),
            target=Target("ip_rule", str(rule.id)),
            result=AuditResult.SUCCESS,
            context={"source": RuleSource.AUTO.value, "reason": rule.reason, **details},
            ip=str(address),
        )
        severity = Severity.HIGH if level >= 2 else Severity.MEDIUM  # noqa: PLR2004
        raise_security_event(
            session, SecurityEventKind.IP_BLOCKED, severity, ip=str(address), details=details
        )
        if kind is FailureKind.LOGIN:
            raise_security_event(
                session,
                SecurityEventKind.CREDENTIAL_STUFFING,
                Severity.HIGH,
                ip=str(address),
                details=details,
            )
        log.warning("ip_auto_blocked", network=rule.network, cause=str(kind), level=level)

        def _blocked() -> None:
            # The next offence starts counting afresh once this block ends.
            self.limiter.reset(threshold, f"ip:{network}")
            self.invalidate()

        after_commit(session, _blocked)

    def _lift_expired(self, session: Session, repo: IpRuleRepository) -> None:
        for rule_id, network, expired_at in repo.expired_unlifted(utcnow()):
            if repo.mark_lifted(rule_id, expired_at, None):
                self.audit.record(
                    session,
                    AuditEventType.SECURITY_IP_UNBLOCKED,
                    Actor.system("ip_guard"),
                    target=Target("ip_rule", str(rule_id)),
                    context={"network": network, "reason": "expired"},
                )

    # The lists (API and CLI) -----------------------------------------------------------

    def active_rules(self, session: Session, kind: RuleKind) -> Sequence[IpRule]:
        """Rules of ``kind`` in force, newest first (ending the expired blocks first)."""
        repo = IpRuleRepository(session)
        self._lift_expired(session, repo)
        return repo.active(kind, utcnow())

    def block(  # noqa: PLR0913 - a manual block has these parts
        self,
        session: Session,
        *,
        network: str,
        reason: str,
        minutes: int | None,
        actor: Actor,
        user_id: int | None = None,
        requester_ip: str | None = None,
    ) -> IpRule:
        """Block ``network`` by hand, for ``minutes`` or until lifted.

        Conflict (409) when the same network is already blocked, when an allow entry
        covers it whole (the block would have no effect), or when it holds the
        requester's own address (an administrator locking themselves out).
        """
        parsed = parse_network(network)
        cleaned = clean_reason(reason)
        if minutes is not None and not 1 <= minutes <= MAX_BLOCK_MINUTES:
            raise invalid("minutes", f"must be between 1 and {MAX_BLOCK_MINUTES}.")
        repo = IpRuleRepository(session)
        now = utcnow()
        if repo.active_for_network(RuleKind.BLOCK, str(parsed), now):
            raise Conflict(f"{parsed} is already blocked.")
        for allowed in repo.active(RuleKind.ALLOW, now):
            allow_net = ipaddress.ip_network(allowed.network)
            if within(parsed, allow_net):
                raise Conflict(f"{parsed} is allow-listed (rule {allowed.id}); remove that first.")
        own = client_address(requester_ip)
        if own is not None and own in parsed:
            raise Conflict("This would block your own address.")
        rule = repo.add(
            IpRule(
                network=str(parsed),
                kind=RuleKind.BLOCK,
                source=RuleSource.MANUAL,
                reason=cleaned,
                level=0,
                created_by=user_id,
                created_at=now,
                expires_at=now + timedelta(minutes=minutes) if minutes is not None else None,
                blocked_requests=0,
            )
        )
        self._record(session, AuditEventType.SECURITY_IP_BLOCKED, actor, rule, minutes=minutes)
        return rule

    def allow(
        self,
        session: Session,
        *,
        network: str,
        reason: str,
        actor: Actor,
        user_id: int | None = None,
    ) -> IpRule:
        """Allow-list ``network``: never blocked; blocks inside it are lifted now."""
        parsed = parse_network(network)
        cleaned = clean_reason(reason)
        repo = IpRuleRepository(session)
        now = utcnow()
        if repo.active_for_network(RuleKind.ALLOW, str(parsed), now):
            raise Conflict(f"{parsed} is already allow-listed.")
        rule = repo.add(
            IpRule(
                network=str(parsed),
                kind=RuleKind.ALLOW,
                source=RuleSource.MANUAL,
                reason=cleaned,
                level=0,
                created_by=user_id,
                created_at=now,
                blocked_requests=0,
            )
        )
        self._record(session, AuditEventType.SECURITY_IP_ALLOWED, actor, rule)
        for blocked in repo.active(RuleKind.BLOCK, now):
            inner = ipaddress.ip_network(blocked.network)
            if within(inner, parsed):
                self._lift(session, repo, blocked, actor, user_id, why="allow-listed")
        return rule

    def lift(
        self,
        session: Session,
        rule_id: int,
        kind: RuleKind,
        *,
        actor: Actor,
        user_id: int | None = None,
    ) -> IpRule:
        """Lift a block or remove an allow entry; NotFound (404) unless it is in force."""
        repo = IpRuleRepository(session)
        rule = repo.get(rule_id, kind, lock=True)
        if rule is None or rule.lifted_at is not None or not _live(rule, utcnow()):
            raise NotFound(f"No {kind} rule {rule_id} is in force.")
        self._lift(session, repo, rule, actor, user_id, why="lifted")
        return rule

    def lift_network(
        self,
        session: Session,
        network: str,
        kind: RuleKind,
        *,
        actor: Actor,
        user_id: int | None = None,
    ) -> list[IpRule]:
        """Lift every rule of ``kind`` in force for exactly ``network``."""
        parsed = parse_network(network)
        repo = IpRuleRepository(session)
        rules = list(repo.active_for_network(kind, str(parsed), utcnow()))
        if not rules:
            raise NotFound(f"No {kind} rule for {parsed} is in force.")
        for rule in rules:
            self._lift(session, repo, rule, actor, user_id, why="lifted")
        return rules

    def _lift(  # noqa: PLR0913 - who lifted what, and why
        self,
        session: Session,
        repo: IpRuleRepository,
        rule: IpRule,
        actor: Actor,
        user_id: int | None,
        *,
        why: str,
    ) -> None:
        now = utcnow()
        if not repo.mark_lifted(rule.id, now, user_id):
            return
        rule.lifted_at, rule.lifted_by = now, user_id
        event = (
            AuditEventType.SECURITY_IP_UNBLOCKED
            if rule.kind == RuleKind.BLOCK
            else AuditEventType.SECURITY_IP_ALLOW_REMOVED
        )
        self._record(session, event, actor, rule, why=why)

    def _record(
        self,
        session: Session,
        event: AuditEventType,
        actor: Actor,
        rule: IpRule,
        **extra: object,
    ) -> None:
        context: dict[str, object] = {
            "network": rule.network,
            "source": rule.source,
            "reason": rule.reason,
        }
        context.update({k: v for k, v in extra.items() if v is not None})
        self.audit.record(
            session, event, actor, target=Target("ip_rule", str(rule.id)), context=context
        )
        after_commit(session, self.invalidate)


def _live(rule: IpRule, now: datetime) -> bool:
    return rule.expires_at is None or rule.expires_at > now
