"""Client IP blocking (R16): manual block and allow lists, escalating automatic blocks.

``IpGuard`` (one per process, ``runtime.ip_guard``) holds the rules in force in a cache
refreshed every few seconds, and changes made in this process refresh it at once.
``IpGuardMiddleware`` consults it on every request: a blocked address gets 403 before
anything else runs, and the refusal is counted in memory, then added to
``ip_rules.blocked_requests`` at the next refresh, so a blocked attacker cannot make the
database write once per request.

Automatic blocks come from failures counted per address (an IPv6 client per /64, which
one host usually holds whole) against the ``block_*`` rate-limit classes: failed logins
(credential stuffing), refused CSRF tokens, bad signatures, spent or forged tokens, and
bursts of 401/403/404 responses. Each block of a network lasts
``PLEXUS_IP_BLOCK_BASE_SECONDS`` * 4^(earlier automatic blocks of it), at most
``PLEXUS_IP_BLOCK_MAX_SECONDS``. An allow-listed address is never blocked, by hand or
automatically: the allow list wins.

``service`` holds ``IpGuard`` and the failure kinds, ``middleware`` the ASGI layer,
``networks`` the address rules.
"""

from __future__ import annotations

from plexus.security.ipguard.middleware import IpGuardMiddleware
from plexus.security.ipguard.networks import MAX_REASON_LENGTH, parse_network
from plexus.security.ipguard.service import (
    MAX_BLOCK_MINUTES,
    FailureKind,
    IpGuard,
    RuleKind,
    RuleSource,
)

__all__ = [
    "MAX_BLOCK_MINUTES",
    "MAX_REASON_LENGTH",
    "FailureKind",
    "IpGuard",
    "IpGuardMiddleware",
    "RuleKind",
    "RuleSource",
    "parse_network",
]
