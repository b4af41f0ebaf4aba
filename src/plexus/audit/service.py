"""Recording and verifying the audit chain.

Each workspace has its own chain (events outside any workspace go to the ``instance``
chain). A row stores HMAC-SHA256, under the audit key, of its canonical content plus the
previous row's MAC, and each chain's head row records the latest (seq, MAC) under a MAC
of its own, so editing, deleting (anywhere, including at the end) or reordering rows is
found by ``verify``. The key itself never leaves the process; rows store only its id.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from plexus.audit.events import EVENT_NAME_SHAPE, Actor, AuditEventType, AuditResult, Target
from plexus.audit.repository import AuditRepository
from plexus.kit.context import current_client_ip, current_request_id
from plexus.kit.logging import get_logger, redact_value
from plexus.models.audit import AuditChainHead, AuditEvent
from plexus.models.base import utcnow

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from sqlalchemy.orm import Session

INSTANCE_CHAIN: Final = "instance"
GENESIS_MAC: Final = "0" * 64
_HEAD_RETRIES: Final = 5
MIN_KEY_BYTES: Final = 16

log = get_logger("plexus.audit")


def chain_for(workspace_id: int | None) -> str:
    return INSTANCE_CHAIN if workspace_id is None else f"workspace:{workspace_id}"


def key_id_for(key: bytes) -> str:
    """A short, non-secret identifier of an audit key (so rotation can tell keys apart)."""
    return hashlib.sha256(b"plexus-audit-key-id:" + key).hexdigest()[:16]


def _canonical(event: AuditEvent) -> bytes:
    occurred = event.occurred_at.isoformat(timespec="microseconds")
    fields = [
        event.chain,
        event.workspace_id,
        event.seq,
        occurred,
        event.event,
        event.actor_type,
        event.actor_id,
        event.target_type,
        event.target_id,
        event.result,
        event.ip,
        event.request_id,
        event.context,
        event.key_id,
        event.prev_mac,
    ]
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=True).encode()


def _mac(key: bytes, message: bytes) -> str:
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def _head_mac(key: bytes, chain: str, seq: int, mac: str) -> str:
    return _mac(key, json.dumps(["head", chain, seq, mac], separators=(",", ":")).encode())


class AuditService:
    """Appends events to, and verifies, the audit chain. Never commits."""

    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_KEY_BYTES:
            msg = "the audit key is too short"
            raise ValueError(msg)
        self._key = key
        self.key_id = key_id_for(key)
        self._listeners: list[Callable[[Session, AuditEvent], None]] = []

    def add_listener(self, listener: Callable[[Session, AuditEvent], None]) -> None:
        """Call ``listener(session, row)`` after every recorded event, in the same
        transaction (outbound webhooks are derived here: they commit, or roll back, with
        the event that caused them).
        """
        self._listeners.append(listener)

    def record(  # noqa: PLR0913 - the audit record has this many parts by definition
        self,
        session: Session,
        event: AuditEventType | str,
        actor: Actor,
        *,
        target: Target | None = None,
        result: AuditResult = AuditResult.SUCCESS,
        context: Mapping[str, Any] | None = None,
        workspace_id: int | None = None,
        ip: str | None = None,
    ) -> AuditEvent:
        """Append one event to its workspace's chain inside the caller's transaction."""
        name = str(event)
        if not EVENT_NAME_SHAPE.fullmatch(name):
            msg = f"audit event names are 'area:subject:action', got {name!r}"
            raise ValueError(msg)
        repo = AuditRepository(session)
        chain = chain_for(workspace_id)
        head = self._locked_head(repo, chain)
        row = AuditEvent(
            chain=chain,
            workspace_id=workspace_id,
            seq=head.seq + 1,
            occurred_at=utcnow(),
            event=name,
            actor_type=actor.type,
            actor_id=actor.id,
            target_type=target.type if target else None,
            target_id=target.id if target else None,
            result=str(result),
            ip=ip if ip is not None else current_client_ip(),
            request_id=current_request_id(),
            context=json.dumps(
                redact_value(None, dict(context or {})),
                sort_keys=True,
                separators=(",", ":"),
                ensure_ascii=True,
            ),
            key_id=self.key_id,
            prev_mac=head.mac,
            mac="",
        )
        row.mac = _mac(self._key, _canonical(row))
        repo.add(row)
        head.seq, head.mac = row.seq, row.mac
        head.head_mac = _head_mac(self._key, chain, row.seq, row.mac)
        session.flush()
        for listener in self._listeners:
            listener(session, row)
        return row

    def _locked_head(self, repo: AuditRepository, chain: str) -> AuditChainHead:
        for _ in range(_HEAD_RETRIES):
            head = repo.lock_head(chain)
            if head is not None:
                return head
            fresh = AuditChainHead(
                chain=chain,
                seq=0,
                mac=GENESIS_MAC,
                head_mac=_head_mac(self._key, chain, 0, GENESIS_MAC),
            )
            if repo.create_head(fresh):
                return fresh
        msg = f"could not obtain the head of audit chain {chain!r}"
        raise RuntimeError(msg)

    def verify(self, session: Session) -> VerifyReport:
        """Walk every chain; report the first broken row of each."""
        repo = AuditRepository(session)
        report = VerifyReport()
        for chain in repo.chains():
            report.chains += 1
            problem = self._verify_chain(repo, chain, report)
            if problem is not None:
                report.problems.append(problem)
        return report

    def _verify_chain(  # noqa: PLR0911 - one check, and one return, per kind of tampering
        self, repo: AuditRepository, chain: str, report: VerifyReport
    ) -> ChainProblem | None:
        expected_seq, prev_mac, prev_id = 1, GENESIS_MAC, 0
        for row in repo.iter_chain(chain):
            report.rows += 1
            if row.id <= prev_id:
                return ChainProblem(chain, row.id, row.seq, "reordered: out of insertion order")
            if row.seq != expected_seq:
                reason = f"deleted: rows missing before this one (expected seq {expected_seq})"
                return ChainProblem(chain, row.id, row.seq, reason)
            if not hmac.compare_digest(row.prev_mac, prev_mac):
                reason = "reordered or deleted: does not follow the previous row"
                return ChainProblem(chain, row.id, row.seq, reason)
            if row.key_id != self.key_id:
                return ChainProblem(chain, row.id, row.seq, "signed with an unknown audit key")
            if not hmac.compare_digest(row.mac, _mac(self._key, _canonical(row))):
                return ChainProblem(chain, row.id, row.seq, "edited: content does not match MAC")
            expected_seq, prev_mac, prev_id = row.seq + 1, row.mac, row.id
        head = repo.head(chain)
        last_seq = expected_seq - 1
        if head is None:
            return ChainProblem(chain, None, last_seq, "chain head is missing")
        expected_head = _head_mac(self._key, chain, head.seq, head.mac)
        if not hmac.compare_digest(head.head_mac, expected_head):
            return ChainProblem(chain, None, head.seq, "chain head was edited")
        if head.seq != last_seq or not hmac.compare_digest(head.mac, prev_mac):
            reason = f"deleted: the chain ends at seq {last_seq} but its head is at {head.seq}"
            return ChainProblem(chain, None, last_seq + 1, reason)
        return None


@dataclass(slots=True)
class ChainProblem:
    chain: str
    row_id: int | None
    seq: int
    reason: str

    def describe(self) -> str:
        where = f"row id {self.row_id}" if self.row_id is not None else "end of chain"
        return f"chain {self.chain}: first broken at seq {self.seq} ({where}): {self.reason}"


@dataclass(slots=True)
class VerifyReport:
    chains: int = 0
    rows: int = 0
    problems: list[ChainProblem] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not self.problems
