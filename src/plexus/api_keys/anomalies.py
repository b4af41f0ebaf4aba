"""Usage anomalies of an API key, judged against the key's own history (R7).

Three signals, each raised as a security event (and so logged) at most once per episode:

- **New network**: the first use from a network (/24 for IPv4, /48 for IPv6) the key has
  not been used from before, once the key has a history at all. A key's very first use
  sets its history and raises nothing; a rotated key inherits its predecessor's networks.
- **Burst**: more requests in one minute than ``BURST_FACTOR`` times the key's baseline
  (an exponentially weighted mean of its requests per active minute), and never fewer
  than ``BURST_FLOOR``, so a new key without a baseline is judged by an absolute bar
  instead of by the first request it ever made. A flagged minute does not feed the
  baseline, so an attack cannot teach the key that bursts are normal.
- **Scope probing**: ``PROBING_THRESHOLD`` denials of permissions outside the key's scopes
  within ``PROBING_WINDOW_SECONDS`` of the first of them.

The counters live on the key's row (read under the row lock authentication takes), so
every process of a deployment sees the same history. Nothing here commits.
"""

from __future__ import annotations

import ipaddress
import json
from typing import TYPE_CHECKING, Final

from plexus.kit.logging import get_logger
from plexus.security.events import SecurityEventKind, Severity
from plexus.security.service import raise_security_event

if TYPE_CHECKING:
    from datetime import datetime

    from sqlalchemy.orm import Session

    from plexus.authz.permissions import Permission
    from plexus.models.identity import ApiKey

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

IPV4_NETWORK_PREFIX: Final = 24
IPV6_NETWORK_PREFIX: Final = 48
#: Networks remembered per key; the oldest is forgotten first.
NETWORK_HISTORY: Final = 64
#: A minute is a burst above max(BURST_FLOOR, BURST_FACTOR * baseline) requests.
BURST_FLOOR: Final = 120
BURST_FACTOR: Final = 10.0
#: Weight of the latest active minute in the baseline (an exponentially weighted mean).
BASELINE_WEIGHT: Final = 0.2
PROBING_WINDOW_SECONDS: Final = 600
PROBING_THRESHOLD: Final = 5

log = get_logger("plexus.api_keys")


def network_of(address: IPAddress) -> str:
    """The network an address is judged by: its /24 (IPv4) or /48 (IPv6)."""
    prefix = IPV4_NETWORK_PREFIX if address.version == 4 else IPV6_NETWORK_PREFIX  # noqa: PLR2004
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def record_use(session: Session, key: ApiKey, address: IPAddress | None, now: datetime) -> None:
    """Count one authenticated use of ``key`` and raise the anomalies it shows."""
    if address is not None:
        _check_network(session, key, address)
    _check_burst(session, key, now)


def record_denial(session: Session, key: ApiKey, permission: Permission, now: datetime) -> None:
    """Count one request refused because ``permission`` is outside the key's scopes."""
    second = int(now.timestamp())
    if key.denials_count == 0 or second - key.denials_window >= PROBING_WINDOW_SECONDS:
        key.denials_window, key.denials_count = second, 0
    key.denials_count += 1
    if key.denials_count == PROBING_THRESHOLD:
        _raise(
            session,
            key,
            SecurityEventKind.API_KEY_SCOPE_PROBING,
            Severity.HIGH,
            denials=key.denials_count,
            window_seconds=PROBING_WINDOW_SECONDS,
            last_permission=str(permission),
        )


def _check_network(session: Session, key: ApiKey, address: IPAddress) -> None:
    seen: list[str] = json.loads(key.seen_networks or "[]")
    network = network_of(address)
    if network in seen:
        return
    if seen:
        _raise(
            session,
            key,
            SecurityEventKind.API_KEY_NEW_NETWORK,
            Severity.MEDIUM,
            ip=str(address),
            network=network,
            known_networks=len(seen),
        )
    seen.append(network)
    key.seen_networks = json.dumps(seen[-NETWORK_HISTORY:])


def _check_burst(session: Session, key: ApiKey, now: datetime) -> None:
    minute = int(now.timestamp()) // 60
    if key.usage_minute != minute:
        _fold_into_baseline(key)
        key.usage_minute, key.usage_count = minute, 0
    key.usage_count += 1
    limit = burst_limit(key.usage_baseline)
    if key.usage_count > limit and key.burst_flagged_minute != minute:
        key.burst_flagged_minute = minute
        _raise(
            session,
            key,
            SecurityEventKind.API_KEY_BURST,
            Severity.MEDIUM,
            requests_this_minute=key.usage_count,
            baseline_per_minute=round(key.usage_baseline, 2),
            limit=limit,
        )


def burst_limit(baseline: float) -> int:
    """Requests in one minute above which a key with ``baseline`` is bursting."""
    return max(BURST_FLOOR, int(BURST_FACTOR * baseline))


def _fold_into_baseline(key: ApiKey) -> None:
    """Add the minute that just ended to the baseline, unless it was itself a burst."""
    count = key.usage_count
    if count <= 0 or key.burst_flagged_minute == key.usage_minute:
        return
    if key.usage_baseline <= 0:
        key.usage_baseline = float(count)
    else:
        key.usage_baseline = (1 - BASELINE_WEIGHT) * key.usage_baseline + BASELINE_WEIGHT * count


def _raise(
    session: Session,
    key: ApiKey,
    kind: SecurityEventKind,
    severity: Severity,
    *,
    ip: str | None = None,
    **details: object,
) -> None:
    log.warning("api_key_anomaly", kind=str(kind), api_key_id=key.id, **details)
    raise_security_event(
        session,
        kind,
        severity,
        workspace_id=key.workspace_id,
        user_id=key.created_by,
        ip=ip,
        details={"api_key_id": key.id, **details},
    )
