"""The rules a key's settings must meet: scopes, expiry and networks.

A key never holds more than the person issuing it, and never an instance-wide power; it
expires within ``MAX_LIFETIME`` if at all; its networks are valid and few. Each breach is
a 422 naming the field, shaped like the request-validation ones.
"""

from __future__ import annotations

import ipaddress
from datetime import UTC, timedelta
from typing import TYPE_CHECKING, Final

from plexus.authz.permissions import INSTANCE_PERMISSIONS
from plexus.errors import ValidationFailed

if TYPE_CHECKING:
    from collections.abc import Iterable
    from datetime import datetime

    from plexus.auth.principal import Principal
    from plexus.authz.permissions import Permission

MAX_LIFETIME: Final = timedelta(days=366)
MAX_GRACE_MINUTES: Final = 7 * 24 * 60
MAX_ALLOWED_NETWORKS: Final = 32


def invalid(field: str, message: str) -> ValidationFailed:
    """A 422 shaped like the request-validation ones: the field and what is wrong."""
    return ValidationFailed(
        f"{field} {message}", extra={"errors": [{"field": f"body.{field}", "message": message}]}
    )


def beyond(principal: Principal, scopes: Iterable[Permission]) -> list[str]:
    """The scopes ``principal`` may not put on a key, sorted."""
    return sorted(str(s) for s in set(scopes) if s in INSTANCE_PERMISSIONS or not principal.has(s))


def grantable_scopes(principal: Principal, requested: Iterable[Permission]) -> list[Permission]:
    """The requested scopes, de-duplicated and sorted, when ``principal`` may grant them."""
    scopes = sorted(set(requested), key=str)
    if not scopes:
        raise invalid("scopes", "must name at least one permission.")
    instance = sorted(str(s) for s in scopes if s in INSTANCE_PERMISSIONS)
    if instance:
        raise invalid(
            "scopes", f"cannot include instance-wide powers ({', '.join(instance)}): no key can."
        )
    missing = beyond(principal, scopes)
    if missing:
        raise invalid(
            "scopes",
            "can only include permissions you hold in this workspace; you do not hold "
            + ", ".join(missing)
            + ".",
        )
    return scopes


def checked_expiry(expires_at: datetime | None, now: datetime) -> datetime | None:
    """The expiry in UTC when it is in the future and within ``MAX_LIFETIME``."""
    if expires_at is None:
        return None
    if expires_at.tzinfo is None:
        raise invalid("expires_at", "needs a time zone (for example 2030-01-31T12:00:00Z).")
    expiry = expires_at.astimezone(UTC)
    if expiry <= now:
        raise invalid("expires_at", "must be in the future.")
    if expiry > now + MAX_LIFETIME:
        raise invalid("expires_at", f"can be at most {MAX_LIFETIME.days} days from now.")
    return expiry


def normalise_networks(networks: Iterable[str]) -> list[str]:
    """Validated, de-duplicated networks in canonical form.

    A bare address becomes its /32 or /128. A bad entry is a ValidationFailed (422), and
    so is one with host bits set ("10.1.2.3/24"): it is ambiguous, so it is never silently
    widened (as with IP blocks).
    """
    result: list[str] = []
    for index, raw in enumerate(networks):
        try:
            network = ipaddress.ip_network(raw.strip())
        except ValueError:
            # The entry is named by position: a problem never echoes what was sent.
            message = f"entry {index} is not an IP address or CIDR network (no host bits set)."
            raise invalid("allowed_networks", message) from None
        text = str(network)
        if text not in result:
            result.append(text)
    if len(result) > MAX_ALLOWED_NETWORKS:
        raise invalid("allowed_networks", f"can hold at most {MAX_ALLOWED_NETWORKS} entries.")
    return result
