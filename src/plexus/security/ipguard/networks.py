"""Addresses and networks for the IP guard.

How a client is named, what a block covers, what a valid network is, and the
per-process index of the rules in force.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from plexus.errors import ValidationFailed

if TYPE_CHECKING:
    from collections.abc import Iterable
    from datetime import datetime

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: The prefix one IPv6 client is taken to hold: blocks and per-address budgets cover it.
IPV6_CLIENT_PREFIX: Final = 64
MAX_REASON_LENGTH: Final = 200


def client_address(text: str | None) -> Address | None:
    """The address a client is known by; None for no address or a non-IP peer."""
    if not text:
        return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def offender_network(address: Address) -> Network:
    """What an automatic block or a per-address budget covers: the address, or its /64."""
    if isinstance(address, ipaddress.IPv4Address):
        return ipaddress.IPv4Network(address)
    return ipaddress.IPv6Network((address, IPV6_CLIENT_PREFIX), strict=False)


def budget_key(text: str | None) -> str:
    """The identifier of an address in per-IP budgets (IPv6: its /64)."""
    address = client_address(text)
    if address is None:
        return f"ip:{text or 'unknown'}"
    if isinstance(address, ipaddress.IPv4Address):
        return f"ip:{address}"
    return f"ip:{offender_network(address)}"


def invalid(field: str, message: str) -> ValidationFailed:
    """A 422 shaped like the request-validation ones: the field and what is wrong."""
    return ValidationFailed(
        f"{field}: {message}", extra={"errors": [{"field": f"body.{field}", "message": message}]}
    )


def parse_network(text: str) -> Network:
    """An address or CIDR network, IPv4 or IPv6; ValidationFailed (422) otherwise.

    Host bits must be clear (``10.1.2.3/8`` is refused rather than silently widened).
    """
    raw = text.strip()
    try:
        network = ipaddress.ip_network(raw, strict=True)
    except ValueError as exc:
        detail = "has host bits set" if "host bits" in str(exc) else "is not an IP address or CIDR"
        raise invalid("network", f"{raw[:60]!r} {detail}.") from None
    if isinstance(network, ipaddress.IPv6Network) and network.network_address.ipv4_mapped:
        mapped = network.network_address.ipv4_mapped
        prefix = max(0, network.prefixlen - 96)
        return ipaddress.IPv4Network((mapped, prefix), strict=False)
    return network


def within(inner: Network, outer: Network) -> bool:
    """Whether ``inner`` lies wholly inside ``outer`` (never across IP versions)."""
    if isinstance(inner, ipaddress.IPv4Network) and isinstance(outer, ipaddress.IPv4Network):
        return inner.subnet_of(outer)
    if isinstance(inner, ipaddress.IPv6Network) and isinstance(outer, ipaddress.IPv6Network):
        return inner.subnet_of(outer)
    return False


def clean_reason(text: str) -> str:
    reason = text.strip()
    if not reason or len(reason) > MAX_REASON_LENGTH:
        raise invalid("reason", f"must be 1 to {MAX_REASON_LENGTH} characters.")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in reason):  # noqa: PLR2004 - control chars
        raise invalid("reason", "must not contain control characters.")
    return reason


@dataclass(frozen=True, slots=True)
class CachedRule:
    id: int
    network: Network
    expires_at: datetime | None

    def live(self, now: datetime) -> bool:
        return self.expires_at is None or self.expires_at > now


def _exact_keys(address: Address) -> tuple[Network, ...]:
    if isinstance(address, ipaddress.IPv4Address):
        return (ipaddress.IPv4Network(address),)
    return (ipaddress.IPv6Network(address), offender_network(address))


class RuleIndex:
    """Rules by network: single addresses (and IPv6 /64s) by lookup, wider ones by scan."""

    def __init__(self, rules: Iterable[CachedRule]) -> None:
        self.exact: defaultdict[Network, list[CachedRule]] = defaultdict(list)
        self.wide: list[CachedRule] = []
        for rule in rules:
            net = rule.network
            single = net.prefixlen == net.max_prefixlen
            if single or (net.version == 6 and net.prefixlen == IPV6_CLIENT_PREFIX):  # noqa: PLR2004
                self.exact[net].append(rule)
            else:
                self.wide.append(rule)

    def find(self, address: Address, now: datetime) -> CachedRule | None:
        for key in _exact_keys(address):
            for rule in self.exact.get(key, ()):
                if rule.live(now):
                    return rule
        for rule in self.wide:
            if address in rule.network and rule.live(now):
                return rule
        return None
