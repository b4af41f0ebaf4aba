"""The one way Plexus makes outbound HTTP requests: bounded timeouts, no ambient proxy or
``.netrc``, and a guard against server-side request forgery for hosts a user typed in.

``outbound_client(guarded=True)`` refuses to connect to loopback, private, link-local,
shared (CGNAT), multicast and reserved addresses, IPv4 addresses embedded in IPv6 that are
any of those (unless an operator allowed those networks), and IPv4 literals in legacy forms
(decimal, octal, hex, short), which resolvers disagree on. The check is made on the
address actually connected to, after name resolution, so a host name that resolves to an
internal address (DNS rebinding included) is refused as well. Redirects are never
followed: a platform's redirect to an internal host cannot bypass the guard.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

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


class DestinationRefused(ValueError):
    """A user-given URL or host that a guarded client must not reach; the message says why
    and is safe to show to the person who typed it.
    """


#: A host made only of digits, hex and dots: an IPv4 address in one of the legacy forms
#: ``inet_aton`` accepts (``2130706433``, ``017700000001``, ``0x7f.1``, ``127.1``).
_NUMERIC_HOST = re.compile(
    r"(?:0x[0-9a-f]*|[0-9]+)(?:\.(?:0x[0-9a-f]*|[0-9]+)){0,3}\.?",
    re.IGNORECASE,
)
_HOST_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)", re.IGNORECASE)
MAX_URL_LENGTH: Final = 2000


def _literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address of an IP literal host, or None for a name. Legacy IPv4 forms are
    refused rather than interpreted: resolvers, proxies and libraries disagree on them.
    """
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        address = ipaddress.ip_address(bare.split("%", 1)[0] if ":" in bare else bare)
    except ValueError:
        if _NUMERIC_HOST.fullmatch(bare):
            msg = f"{host} is an IPv4 address in a legacy form; write it as a.b.c.d"
            raise DestinationRefused(msg) from None
        return None
    if "%" in bare:
        msg = "zoned IPv6 addresses are not allowed"
        raise DestinationRefused(msg)
    return address


def resolve_permitted(
    host: str, port: int, policy: DestinationPolicy
) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """Every address ``host`` resolves to, if the policy permits all of them; raises
    ``DestinationRefused`` otherwise (a name that resolves to one internal address among
    public ones is refused too: a client could be made to pick it).
    """
    literal = _literal(host)
    if literal is not None:
        addresses = [literal]
    else:
        name = host.removesuffix(".")
        if not name or not all(_HOST_LABEL.fullmatch(label) for label in name.split(".")):
            msg = f"{host!r} is not a valid host name"
            raise DestinationRefused(msg)
        try:
            infos = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError):
            msg = f"{name} cannot be resolved"
            raise DestinationRefused(msg) from None
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
    if not addresses:
        msg = f"{host} has no address"
        raise DestinationRefused(msg)
    if not all(policy.permits(a) for a in addresses):
        msg = f"{host} resolves to an address that is not allowed (internal or reserved)"
        raise DestinationRefused(msg)
    return addresses


def check_url(url: str, policy: DestinationPolicy, *, https_only: bool) -> str:
    """Validate a user-given URL for a guarded client and resolve its host now.

    Refused: other schemes than https (and http when ``https_only`` is false), user-info
    (``https://a@host``), a missing host, legacy IPv4 forms, and hosts resolving to an
    address the policy does not permit. Returns the URL unchanged. The connect-time check
    of the guarded client still runs at every request (DNS answers change).
    """
    if len(url) > MAX_URL_LENGTH or not url.isprintable() or any(c.isspace() for c in url):
        msg = "the URL is too long or holds spaces or control characters"
        raise DestinationRefused(msg)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        msg = "the URL cannot be parsed"
        raise DestinationRefused(msg) from None
    allowed = ("https",) if https_only else ("https", "http")
    if parts.scheme.lower() not in allowed:
        msg = "the URL must start with https://" if https_only else "the URL must be http(s)"
        raise DestinationRefused(msg)
    if "@" in parts.netloc or parts.username is not None:
        msg = "user names and passwords in the URL are not allowed"
        raise DestinationRefused(msg)
    if parts.fragment:
        msg = "the URL must not have a fragment"
        raise DestinationRefused(msg)
    host = parts.hostname
    if not host:
        msg = "the URL has no host"
        raise DestinationRefused(msg)
    default = 443 if parts.scheme.lower() == "https" else 80
    resolve_permitted(host, port or default, policy)
    return url


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
            addresses = resolve_permitted(host, port, self._policy)
        except DestinationRefused as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        # Connect to the address just checked: a second look-up could answer differently.
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
