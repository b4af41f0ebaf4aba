"""Have I Been Pwned's Pwned Passwords range API, by k-anonymity (R3; ASVS V6.2.12).

Only the first five hexadecimal characters of the password's SHA-1 leave the machine; the
service answers with every hash suffix it knows under that prefix (with ``Add-Padding``,
padded with random suffixes whose count is 0, so the answer's size says nothing either),
and the comparison happens here. SHA-1 is the service's protocol, not a protection of
ours: passwords are stored with bcrypt (``passwords.py``).
"""

from __future__ import annotations

import hashlib
from typing import Final

import httpx

PREFIX_LENGTH: Final = 5
#: The longest a password change waits for the service before the fallback decides.
TIMEOUT_SECONDS: Final = 3.0
USER_AGENT: Final = "plexus"


class HibpUnavailable(Exception):
    """The range API could not be asked or gave no usable answer; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def pwned_count(password: str, *, base_url: str, timeout: float = TIMEOUT_SECONDS) -> int:
    """How many times the service has seen ``password`` in breaches (0 when never).

    Raises HibpUnavailable when the service cannot be reached, times out, answers anything
    but 200, or answers something that is not a range listing.
    """
    digest = hashlib.sha1(password.encode("utf-8", "surrogatepass"), usedforsecurity=False)
    full = digest.hexdigest().upper()
    prefix, suffix = full[:PREFIX_LENGTH], full[PREFIX_LENGTH:]
    url = f"{base_url.rstrip('/')}/range/{prefix}"
    try:
        # trust_env=False: only the settings configure Plexus, never proxy variables.
        response = httpx.get(
            url,
            headers={"Add-Padding": "true", "User-Agent": USER_AGENT},
            timeout=timeout,
            follow_redirects=False,
            trust_env=False,
        )
    except httpx.TimeoutException:
        raise HibpUnavailable("timeout") from None
    except httpx.HTTPError as exc:
        raise HibpUnavailable(type(exc).__name__) from None
    if response.status_code != 200:  # noqa: PLR2004 - the one success status of the API
        raise HibpUnavailable(f"status {response.status_code}")
    return _count_in(response.text, suffix)


def _count_in(listing: str, suffix: str) -> int:
    """The count of ``suffix`` in a range listing of ``SUFFIX:COUNT`` lines."""
    found = 0
    for line in listing.splitlines():
        if not line.strip():
            continue
        candidate, sep, count = line.strip().partition(":")
        if not sep or not (count.isascii() and count.isdigit()):
            raise HibpUnavailable("malformed answer")
        if candidate.upper() == suffix:
            found = int(count)
    return found
