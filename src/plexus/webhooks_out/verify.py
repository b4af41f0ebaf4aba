"""Verifying a Plexus webhook on the receiving side: standard library only.

This is the helper docs/webhooks.md shows; copy it into a receiver as it is. It checks
that the timestamp is within five minutes of the receiver's clock (a replayed request is
refused) and that one of the ``v1,`` signatures matches, comparing in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Mapping  # noqa: TC003 - receivers copy this file as it is

TOLERANCE_SECONDS = 5 * 60


def verify_webhook(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance: int = TOLERANCE_SECONDS,
    now: float | None = None,
) -> bool:
    """True if ``body`` with these headers was signed with ``secret`` (``whsec_...``)."""
    lower = {name.lower(): value for name, value in headers.items()}
    message_id = lower.get("webhook-id", "")
    timestamp = lower.get("webhook-timestamp", "")
    signatures = lower.get("webhook-signature", "")
    if not message_id or not timestamp.isdigit() or not signatures:
        return False
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > tolerance:
        return False
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{message_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest())
    found = False
    for candidate in signatures.split(" "):
        version, _, value = candidate.partition(",")
        # Compare every candidate (no early exit), each in constant time.
        found |= version == "v1" and hmac.compare_digest(value.encode(), expected)
    return found
