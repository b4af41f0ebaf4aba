"""API keys (R7): issuing, rotating, revoking and authenticating them. Never commits.

A key is shown once, at creation (or rotation); the database keeps only its HMAC under
the server's token key (``runtime.tokens.digest("api-key", key)``) and a short display
prefix. Its scopes are a subset of what its creator held when creating it, and at every
use they are intersected again with what the creator holds *now*: demoting the creator
shrinks the key at once, removing them (or disabling their account) kills it.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Final

from sqlalchemy import event
from sqlalchemy.orm import Session

from plexus.api_keys import anomalies, rules
from plexus.api_keys.format import display_prefix, generate_key, parse_key
from plexus.api_keys.repository import ApiKeyRepository, creator_role, key_by_hash, key_by_id
from plexus.audit.events import Actor, AuditEventType, AuditResult, Target
from plexus.auth.principal import Principal, PrincipalKind
from plexus.authz.permissions import Permission, Role, permissions_for
from plexus.db import unit_of_work
from plexus.errors import Conflict, NotFound, PermissionDenied, Unauthorized
from plexus.kit.logging import get_logger
from plexus.models.base import utcnow
from plexus.models.identity import ApiKey

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from datetime import datetime

    from sqlalchemy.orm import SessionTransaction, sessionmaker

    from plexus.runtime import Runtime

#: Where a request's session remembers the key use it has to record (see _record_use).
_PENDING_USE: Final = "plexus_api_key_use"
#: The purpose label of API-key HMACs (so no other kind of token can ever match one).
HASH_PURPOSE: Final = "api-key"
#: One answer for every way a presented key can be wrong, so none of them can be told apart.
INVALID_KEY_DETAIL: Final = "The API key is invalid, expired or revoked."
#: Keys that can still be used (not revoked, expired or replaced), per workspace.
MAX_USABLE_KEYS: Final = 100

log = get_logger("plexus.api_keys")


class KeyStatus(StrEnum):
    ACTIVE = "active"
    #: Replaced by a rotation; still valid until its grace period ends.
    ROTATING = "rotating"
    EXPIRED = "expired"
    REVOKED = "revoked"


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A key as just created: the row, and the key itself, to be shown exactly once."""

    record: ApiKey
    plaintext: str


@dataclass(frozen=True, slots=True)
class RotatedKey:
    issued: IssuedKey
    previous: ApiKey


def key_status(key: ApiKey, now: datetime) -> KeyStatus:
    if key.revoked_at is not None:
        return KeyStatus.REVOKED
    if key.expires_at is not None and key.expires_at <= now:
        return KeyStatus.EXPIRED
    if key.rotated_to_id is not None:
        return KeyStatus.ROTATING
    return KeyStatus.ACTIVE


def key_scopes(key: ApiKey) -> list[Permission]:
    """The key's stored scopes; a name this version does not know grants nothing."""
    known = {p.value for p in Permission}
    return [Permission(s) for s in json.loads(key.scopes) if s in known]


def key_networks(key: ApiKey) -> list[str]:
    networks: list[str] = json.loads(key.allowed_networks or "[]")
    return networks


# Managing keys ------------------------------------------------------------------------


def list_keys(
    session: Session, principal: Principal, *, limit: int, offset: int
) -> Sequence[ApiKey]:
    return ApiKeyRepository(session, principal.workspace_id).page(limit=limit, offset=offset)


def get_key(session: Session, principal: Principal, key_id: int) -> ApiKey:
    key = ApiKeyRepository(session, principal.workspace_id).get(key_id)
    if key is None:
        raise NotFound("There is no API key with this id.")
    return key


def create_key(  # noqa: PLR0913 - the parts of a key
    session: Session,
    runtime: Runtime,
    principal: Principal,
    *,
    name: str,
    scopes: Iterable[Permission],
    expires_at: datetime | None = None,
    allowed_networks: Iterable[str] = (),
) -> IssuedKey:
    """Issue a key acting for ``principal``'s user in their workspace.

    Raises ValidationFailed (422) for scopes beyond what the creator holds (or instance
    powers, which no key ever holds), an expiry that is past or too far ahead, or a bad
    network; Conflict (409) when the workspace already has ``MAX_USABLE_KEYS`` keys.
    """
    now = utcnow()
    granted = rules.grantable_scopes(principal, scopes)
    expiry = rules.checked_expiry(expires_at, now)
    networks = rules.normalise_networks(allowed_networks)
    repo = ApiKeyRepository(session, principal.workspace_id)
    if repo.count_usable(now) >= MAX_USABLE_KEYS:
        msg = (
            f"This workspace already has {MAX_USABLE_KEYS} usable API keys; "
            "revoke one before creating another."
        )
        raise Conflict(msg)
    issued = _issue(
        runtime,
        workspace_id=principal.workspace_id,
        created_by=principal.user_id,
        name=name,
        scopes=granted,
        networks=networks,
        expires_at=expiry,
    )
    repo.add(issued.record)
    runtime.audit.record(
        session,
        AuditEventType.API_KEY_KEY_CREATED,
        principal.actor,
        target=_target(issued.record),
        workspace_id=principal.workspace_id,
        context={
            "name": name,
            "scopes": [str(s) for s in granted],
            "expires_at": expiry.isoformat() if expiry else None,
            "allowed_networks": networks,
        },
    )
    log.info("api_key_created", api_key_id=issued.record.id, workspace_id=principal.workspace_id)
    return issued


def rotate_key(
    session: Session, runtime: Runtime, principal: Principal, key_id: int, *, grace_minutes: int
) -> RotatedKey:
    """Replace a key with a new one (shown once).

    The old key keeps working for ``grace_minutes`` (0 ends it at once), then fails like an
    expired key.

    The new key has the old one's name, scopes, networks and expiry, and is issued by
    ``principal``, who must hold every one of its scopes.
    """
    if not 0 <= grace_minutes <= rules.MAX_GRACE_MINUTES:
        raise rules.invalid("grace_minutes", f"must be between 0 and {rules.MAX_GRACE_MINUTES}.")
    now = utcnow()
    repo = ApiKeyRepository(session, principal.workspace_id)
    old = repo.get(key_id, lock=True)
    if old is None:
        raise NotFound("There is no API key with this id.")
    status = key_status(old, now)
    if status is KeyStatus.ROTATING:
        msg = f"This key was already rotated; rotate its replacement (id {old.rotated_to_id})."
        raise Conflict(msg)
    if status is not KeyStatus.ACTIVE:
        msg = f"This key is {status} and cannot be rotated; create a new one."
        raise Conflict(msg)
    scopes = key_scopes(old)
    missing = rules.beyond(principal, scopes)
    if missing:
        raise PermissionDenied(
            "This key holds permissions you do not have, so you cannot reissue it: "
            + ", ".join(missing)
            + "."
        )
    issued = _issue(
        runtime,
        workspace_id=old.workspace_id,
        created_by=principal.user_id,
        name=old.name,
        scopes=scopes,
        networks=key_networks(old),
        expires_at=old.expires_at,
    )
    # The successor inherits the history its anomalies are judged against.
    issued.record.seen_networks = old.seen_networks
    issued.record.usage_baseline = old.usage_baseline
    repo.add(issued.record)
    grace_end = now + timedelta(minutes=grace_minutes)
    old.expires_at = min(old.expires_at, grace_end) if old.expires_at else grace_end
    old.rotated_to_id = issued.record.id
    runtime.audit.record(
        session,
        AuditEventType.API_KEY_KEY_ROTATED,
        principal.actor,
        target=_target(old),
        workspace_id=old.workspace_id,
        context={
            "replacement_id": issued.record.id,
            "grace_minutes": grace_minutes,
            "old_expires_at": old.expires_at.isoformat(),
        },
    )
    log.info("api_key_rotated", api_key_id=old.id, replacement_id=issued.record.id)
    session.flush()
    return RotatedKey(issued=issued, previous=old)


def revoke_key(session: Session, runtime: Runtime, principal: Principal, key_id: int) -> ApiKey:
    """Revoke a key at once. Revoking a revoked key changes nothing (and audits nothing)."""
    key = ApiKeyRepository(session, principal.workspace_id).get(key_id, lock=True)
    if key is None:
        raise NotFound("There is no API key with this id.")
    if key.revoked_at is None:
        _revoke(session, runtime, key, principal.actor, reason="revoked")
    return key


def revoke_keys_of_user(
    session: Session, user_id: int, workspace_id: int, *, actor: Actor | None = None
) -> int:
    """Revoke every key ``user_id`` created in ``workspace_id``; returns how many.

    For their removal from the workspace, or their account being disabled. Each
    revocation is audited, by ``actor`` when given (the member who removed them).
    """
    from plexus.runtime import runtime as current_runtime

    rt = current_runtime()
    keys = ApiKeyRepository(session, workspace_id).unrevoked_of_creator(user_id)
    for key in keys:
        _revoke(session, rt, key, actor or Actor.system("api_keys"), reason="creator_removed")
    return len(keys)


def _revoke(session: Session, runtime: Runtime, key: ApiKey, actor: Actor, *, reason: str) -> None:
    key.revoked_at = utcnow()
    runtime.audit.record(
        session,
        AuditEventType.API_KEY_KEY_REVOKED,
        actor,
        target=_target(key),
        workspace_id=key.workspace_id,
        context={"reason": reason},
    )
    log.info("api_key_revoked", api_key_id=key.id, reason=reason)
    session.flush()


def _issue(  # noqa: PLR0913 - the parts of a key
    runtime: Runtime,
    *,
    workspace_id: int,
    created_by: int,
    name: str,
    scopes: Sequence[Permission],
    networks: Sequence[str],
    expires_at: datetime | None,
) -> IssuedKey:
    plaintext = generate_key(runtime.settings.api_key_env)
    record = ApiKey(
        workspace_id=workspace_id,
        created_by=created_by,
        name=name,
        env=runtime.settings.api_key_env,
        display_prefix=display_prefix(plaintext),
        key_hash=runtime.tokens.digest(HASH_PURPOSE, plaintext),
        scopes=json.dumps([str(s) for s in scopes]),
        allowed_networks=json.dumps(list(networks)),
        created_at=utcnow(),
        expires_at=expires_at,
        seen_networks="[]",
        usage_minute=0,
        usage_count=0,
        usage_baseline=0.0,
        burst_flagged_minute=0,
        denials_window=0,
        denials_count=0,
    )
    return IssuedKey(record=record, plaintext=plaintext)


def _target(key: ApiKey) -> Target:
    return Target("api_key", str(key.id))


# Using keys ------------------------------------------------------------------------------


def _refused(reason: str, key: ApiKey | None = None) -> Unauthorized:
    if key is None:
        log.info("api_key_refused", reason=reason)
    else:
        log.warning("api_key_refused", reason=reason, api_key_id=key.id)
    return Unauthorized(
        INVALID_KEY_DETAIL, headers={"WWW-Authenticate": "Bearer"}, keep_changes=True
    )


def _client_address(ip: str | None) -> anomalies.IPAddress | None:
    if not ip:
        return None
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _address_allowed(key: ApiKey, address: anomalies.IPAddress | None) -> bool:
    networks = key_networks(key)
    if not networks:
        return True
    if address is None:
        return False
    return any(address in ipaddress.ip_network(n) for n in networks)


def authenticate(session: Session, runtime: Runtime, raw_key: str, ip: str | None) -> Principal:
    """The principal a presented API key acts as, or Unauthorized (401).

    Every failure (malformed, bad checksum, other environment, unknown, revoked, expired
    or past its rotation grace, address outside the allow-list, creator no longer an
    active member) gets the same answer. A success records the use and its anomalies.
    """
    parsed = parse_key(raw_key)
    if parsed is None:
        raise _refused("malformed")
    if parsed.env != runtime.settings.api_key_env:
        raise _refused("other_environment")
    key = key_by_hash(session, runtime.tokens.digest(HASH_PURPOSE, raw_key))
    if key is None:
        raise _refused("unknown")
    now = utcnow()
    status = key_status(key, now)
    if status in (KeyStatus.REVOKED, KeyStatus.EXPIRED):
        raise _refused(str(status), key)
    address = _client_address(ip)
    if not _address_allowed(key, address):
        raise _refused("address_not_allowed", key)
    role_name = creator_role(session, key.created_by, key.workspace_id)
    if role_name not in {r.value for r in Role}:
        raise _refused("creator_not_member", key)
    role = Role(role_name)
    _record_use(session, key, address, now)
    session.info[_PENDING_USE] = _Use(key.id, address, now, runtime.sessions)
    return Principal(
        kind=PrincipalKind.API_KEY,
        user_id=key.created_by,
        workspace_id=key.workspace_id,
        role=role,
        # permissions_for without instance_admin: a key never carries instance powers.
        permissions=frozenset(key_scopes(key)) & permissions_for(role),
        mfa=False,
        mfa_required=False,
        api_key_id=key.id,
    )


@dataclass(frozen=True, slots=True)
class _Use:
    key_id: int
    address: anomalies.IPAddress | None
    at: datetime
    sessions: sessionmaker[Session]


def _record_use(
    session: Session, key: ApiKey, address: anomalies.IPAddress | None, now: datetime
) -> None:
    anomalies.record_use(session, key, address, now)
    key.last_used_at = now
    key.last_used_ip = str(address) if address is not None else None


# A use is recorded in the request's own transaction. When that transaction is rolled back
# (the request failed after authenticating: a 404, a 422, a 429...), the use is recorded
# again in a transaction of its own: a key that only ever fails must still update its
# last use and raise its anomalies (a stolen key probing from a new network, say).


@event.listens_for(Session, "after_commit")
def _use_committed(session: Session) -> None:
    if not session.in_nested_transaction():
        session.info.pop(_PENDING_USE, None)


@event.listens_for(Session, "after_transaction_end")
def _use_rolled_back(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is not None:
        return
    use: _Use | None = session.info.pop(_PENDING_USE, None)
    if use is None:
        return
    try:
        with unit_of_work(use.sessions) as own:
            key = key_by_id(own, use.key_id)
            if key is not None:
                _record_use(own, key, use.address, use.at)
    except Exception:  # must not mask the request's own failure; logged
        log.exception("api_key_use_not_recorded", api_key_id=use.key_id)


def note_scope_denial(session: Session, principal: Principal, permission: Permission) -> None:
    """Record that an API key was refused ``permission``. A no-op for people.

    The denial is audited; when the permission is outside the key's scopes (rather than
    lost by its creator's demotion) it counts towards scope probing.
    """
    if principal.kind is not PrincipalKind.API_KEY or principal.api_key_id is None:
        return
    from plexus.runtime import runtime as current_runtime

    key = ApiKeyRepository(session, principal.workspace_id).get(principal.api_key_id, lock=True)
    in_scope = key is not None and permission in key_scopes(key)
    current_runtime().audit.record(
        session,
        AuditEventType.API_KEY_SCOPE_DENIED,
        principal.actor,
        target=Target("permission", str(permission)),
        result=AuditResult.DENIED,
        workspace_id=principal.workspace_id,
        # "creator_role": the key has the scope but its creator no longer holds it.
        context={"reason": "creator_role" if in_scope else "outside_scopes"},
    )
    if key is not None and not in_scope:
        anomalies.record_denial(session, key, permission, utcnow())
