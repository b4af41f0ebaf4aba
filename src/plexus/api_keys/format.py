"""The shape of a Plexus API key: ``plx_<env>_<random>_<checksum>``.

- ``env`` is ``live`` (production) or ``test`` (every other environment), so a key that
  leaks from a test system is recognisably harmless and a live key is never accepted by
  a test deployment (or the reverse).
- ``random`` is 40 base62 characters from the operating system's CSPRNG (≈238 bits).
- ``checksum`` is the CRC32 of everything before it (``plx_<env>_<random>``) in base62,
  fixed at 6 characters, as GitHub's token format does: a secret scanner can tell a real
  key from a look-alike offline, without asking us, and a mistyped key is refused before
  any database work.

The underscores are not base62 or base64 characters, so a double-click selects the whole
key and a scanner's pattern cannot run into neighbouring text. Nothing here touches the
database: this module is safe to import from a scanner or a CLI.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from typing import Final, Literal

from plexus.kit.tokens import base62, random_base62

KEY_PREFIX: Final = "plx"
ENVIRONMENTS: Final = ("live", "test")
#: Characters of randomness in a key this version issues.
RANDOM_LENGTH: Final = 40
#: What the validator accepts (keys issued by earlier or later versions may differ in length).
MIN_RANDOM_LENGTH: Final = 32
MAX_RANDOM_LENGTH: Final = 64
CHECKSUM_WIDTH: Final = 6
#: Random characters kept in the display prefix (``plx_live_3fA9xQ``): enough to tell keys
#: apart in a list, far too few to help guess one (the rest still carries ≥ 190 bits).
DISPLAY_RANDOM_CHARS: Final = 6
#: The longest text that can be a key; anything longer is refused before the regex runs.
MAX_KEY_LENGTH: Final = len(KEY_PREFIX) + 1 + 4 + 1 + MAX_RANDOM_LENGTH + 1 + CHECKSUM_WIDTH

_BODY: Final = (
    rf"{KEY_PREFIX}_(?P<env>live|test)_"
    rf"(?P<random>[0-9A-Za-z]{{{MIN_RANDOM_LENGTH},{MAX_RANDOM_LENGTH}}})"
    rf"_(?P<checksum>[0-9A-Za-z]{{{CHECKSUM_WIDTH}}})"
)
#: Exactly one key and nothing else.
KEY_PATTERN: Final = re.compile(_BODY)
#: For secret scanners: a key inside arbitrary text, not glued to other word characters.
#: A match is a candidate; ``is_plexus_key`` (the checksum) decides.
SCANNER_PATTERN: Final = re.compile(rf"(?<![0-9A-Za-z_]){_BODY}(?![0-9A-Za-z_])")

Environment = Literal["live", "test"]


@dataclass(frozen=True, slots=True)
class ParsedKey:
    env: Environment
    random: str
    checksum: str


def checksum(body: str) -> str:
    """The base62 CRC32 (6 characters) of ``body``, the key without its last part."""
    return base62(zlib.crc32(body.encode("ascii")), CHECKSUM_WIDTH)


def generate_key(env: Environment) -> str:
    """A new key for ``env``: shown once to its creator, never stored."""
    if env not in ENVIRONMENTS:
        msg = f"API key environments are {ENVIRONMENTS}, got {env!r}"
        raise ValueError(msg)
    body = f"{KEY_PREFIX}_{env}_{random_base62(RANDOM_LENGTH)}"
    return f"{body}_{checksum(body)}"


def parse_key(text: str) -> ParsedKey | None:
    """The parts of ``text`` when it is a well-formed key with a valid checksum, else None."""
    if len(text) > MAX_KEY_LENGTH:
        return None
    match = KEY_PATTERN.fullmatch(text)
    if match is None:
        return None
    body = text[: match.start("checksum") - 1]
    if checksum(body) != match["checksum"]:
        return None
    env: Environment = "live" if match["env"] == "live" else "test"
    return ParsedKey(env=env, random=match["random"], checksum=match["checksum"])


def is_plexus_key(text: str) -> bool:
    """True when ``text`` is exactly a Plexus API key with a valid checksum (offline check)."""
    return parse_key(text) is not None


def find_plexus_keys(text: str) -> list[str]:
    """Every Plexus API key (valid checksum) found anywhere in ``text``, in order."""
    return [m[0] for m in SCANNER_PATTERN.finditer(text) if is_plexus_key(m[0])]


def display_prefix(key: str) -> str:
    """The part of a key that is safe to show in lists: ``plx_<env>_`` and 6 characters."""
    parsed = parse_key(key)
    if parsed is None:
        msg = "not a Plexus API key"
        raise ValueError(msg)
    return f"{KEY_PREFIX}_{parsed.env}_{parsed.random[:DISPLAY_RANDOM_CHARS]}"
