"""The one way Plexus makes outbound HTTP requests: bounded timeouts, no ambient proxy or
``.netrc``, and a guard against server-side request forgery for hosts a user typed in.

``outbound_client(guarded=True)`` refuses to connect to loopback, private, link-local,
multicast and reserved addresses (unless an operator allowed those networks). The check is
made on the address actually connected to, after name resolution, so a host name that
resolves to an internal address (DNS rebinding included) is refused as well. Redirects are
never followed: a platform's redirect to an internal host cannot bypass the guard.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

import httpcore
import httpx

if TYPE_CHECKING:
    from collections.abc import Iterable

    from httpcore import NetworkStream

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_TIMEOUT: Final = httpx.Timeout(connect=5.0, read=20.0, write=20.0, pool=5.0)
DEFAULT_LIMITS: Final = httpx.Limits(max_connections=20, max_keepalive_connections=10)
USER_AGENT: Final = "Plexus (+https://github.com/plexus-hub)"


#: IPv6 ranges that carry an IPv4 address (NAT64, 6to4, IPv4-compatible) or are
#: deprecated site-local: the embedded IPv4 address decides, or the range is refused.
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_SIX_TO_FOUR = ipaddress.ip_network("2002::/16")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
_SITE_LOCAL = ipaddress.ip_network("fec0::/10")


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _SIX_TO_FOUR:
        return address.sixtofour
    if any(address in network for network in (*_NAT64, _IPV4_COMPATIBLE)):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_public_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """True for a globally routable unicast address (an IPv4 address embedded in IPv6 by
    mapping, NAT64, 6to4 or the old compatible form counts as that IPv4 address).
    """
    if isinstance(address, ipaddress.IPv6Address):
        if address in _SITE_LOCAL:
            return False
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            address = embedded
    return address.is_global and not address.is_multicast


@dataclass(frozen=True, slots=True)
class DestinationPolicy:
    """Which resolved addresses a guarded client may connect to."""

    allowed_networks: tuple[IpNetwork, ...] = field(default_factory=tuple)

    @classmethod
    def from_strings(cls, networks: Iterable[str]) -> DestinationPolicy:
        return cls(tuple(ipaddress.ip_network(n, strict=False) for n in networks))

    def permits(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        if any(address in network for network in self.allowed_networks):
            return True
        return is_public_address(address)


class _GuardedBackend(httpcore.SyncBackend):
    """Resolves the host itself, checks every address, and connects to a checked one."""

    def __init__(self, policy: DestinationPolicy) -> None:
        self._policy = policy

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> NetworkStream:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}") from exc
        addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
        if not addresses or not all(self._policy.permits(a) for a in addresses):
            raise httpcore.ConnectError(f"{host} resolves to an address that is not allowed")
        return super().connect_tcp(
            str(addresses[0]),
            port,
            timeout=timeout,
            local_address=local_address,
            socket_options=socket_options,
        )


def _transport(policy: DestinationPolicy | None) -> httpx.HTTPTransport:
    transport = httpx.HTTPTransport(trust_env=False, limits=DEFAULT_LIMITS, retries=0)
    if policy is not None:
        # httpx builds its connection pool from the same options; only the network backend
        # differs, so TLS still verifies against the original host name (SNI included).
        transport._pool = httpcore.ConnectionPool(  # noqa: SLF001 - httpx exposes no backend hook
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=DEFAULT_LIMITS.max_connections,
            max_keepalive_connections=DEFAULT_LIMITS.max_keepalive_connections,
            keepalive_expiry=DEFAULT_LIMITS.keepalive_expiry,
            network_backend=_GuardedBackend(policy),
        )
    return transport


def outbound_client(
    *,
    guarded: bool,
    policy: DestinationPolicy | None = None,
    base_url: str = "",
    timeout: httpx.Timeout = DEFAULT_TIMEOUT,
    headers: dict[str, str] | None = None,
) -> httpx.Client:
    """An httpx client with Plexus's timeouts; ``guarded`` for hosts a user chose."""
    return httpx.Client(
        base_url=base_url,
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,
        headers={"user-agent": USER_AGENT, **(headers or {})},
        transport=_transport((policy or DestinationPolicy()) if guarded else None),
    )


def guarded_transport(policy: DestinationPolicy) -> httpx.HTTPTransport:
    """The guarded transport alone, for libraries that build their own httpx client."""
    return _transport(policy)
