"""The key format (R7): ``plx_<env>_<random>_<checksum>``, checkable offline.

ASVS V7.2.3 / V11.5.1: every key carries at least 128 bits from the CSPRNG, keys are
unique, and none is a UUID.
"""

from __future__ import annotations

import math
import re
import uuid
import zlib

import pytest

from plexus.api_keys.format import (
    CHECKSUM_WIDTH,
    RANDOM_LENGTH,
    SCANNER_PATTERN,
    checksum,
    display_prefix,
    find_plexus_keys,
    generate_key,
    is_plexus_key,
    parse_key,
)
from plexus.kit.tokens import BASE62_ALPHABET, base62

#: The documented shape, written out independently of the module's own pattern.
DOCUMENTED_SHAPE = re.compile(r"plx_(live|test)_[0-9A-Za-z]{32,}_[0-9A-Za-z]{6}")


def _replace(key: str, index: int) -> str:
    """``key`` with the character at ``index`` swapped for another base62 character."""
    current = key[index]
    other = BASE62_ALPHABET[(BASE62_ALPHABET.index(current) + 1) % 62]
    return key[:index] + other + key[index + 1 :]


def test_a_thousand_keys_are_unique_well_formed_and_valid_offline():
    """V7.2.3, V11.5.1: 1000 keys, all different, all of the documented shape."""
    keys = [generate_key("live") for _ in range(1000)]
    assert len(set(keys)) == 1000
    randoms = set()
    for key in keys:
        assert DOCUMENTED_SHAPE.fullmatch(key), key
        assert is_plexus_key(key)
        parsed = parse_key(key)
        assert parsed is not None
        assert parsed.env == "live"
        assert len(parsed.random) == RANDOM_LENGTH >= 32
        randoms.add(parsed.random)
        with pytest.raises(ValueError):
            uuid.UUID(parsed.random)
    assert len(randoms) == 1000
    # At least 128 bits of entropy in the random part alone.
    assert RANDOM_LENGTH * math.log2(62) >= 128


def test_every_character_of_the_alphabet_appears():
    """The random part uses the whole base62 alphabet (no bias towards a subset)."""
    seen = set("".join(parse_key(generate_key("test")).random for _ in range(200)))
    assert seen == set(BASE62_ALPHABET)


def test_checksum_is_crc32_of_the_rest_in_fixed_width_base62():
    key = generate_key("test")
    body, _, check = key.rpartition("_")
    assert len(check) == CHECKSUM_WIDTH
    assert check == base62(zlib.crc32(body.encode()), 6)
    assert checksum("plx_test_") == base62(zlib.crc32(b"plx_test_"), 6)
    # Fixed width: a CRC of 0 still takes six characters.
    assert base62(0, 6) == "000000"


@pytest.mark.parametrize("env", ["live", "test"])
def test_any_one_character_change_fails_the_checksum(env):
    """A scanner (or a typo) cannot turn one valid key into another: each single-character
    change anywhere in the random part or the checksum is detected offline."""
    key = generate_key(env)
    first_random = len(f"plx_{env}_")
    positions = [i for i in range(first_random, len(key)) if key[i] != "_"]
    assert len(positions) == RANDOM_LENGTH + CHECKSUM_WIDTH
    for index in positions:
        changed = _replace(key, index)
        assert changed != key
        assert not is_plexus_key(changed), index


@pytest.mark.parametrize(
    "text",
    [
        "",
        "plx_",
        "plx_prod_" + "a" * 40 + "_000000",  # unknown environment
        "plx_live_" + "a" * 31 + "_000000",  # random part too short
        "plx_live_" + "a" * 65 + "_000000",  # too long
        "PLX_live_" + "a" * 40 + "_000000",
        "plx-live-" + "a" * 40 + "-000000",
        "plx_live_" + "a" * 39 + "!_000000",
        "plx_live_" + "a" * 40 + "_00000",  # checksum too short
        "plx_live_" + "٣" * 40 + "_000000",  # non-ASCII digits are not base62
        "x" * 10_000,
    ],
)
def test_malformed_text_is_not_a_key(text):
    assert not is_plexus_key(text)
    assert parse_key(text) is None


def test_a_key_with_its_environment_changed_fails():
    key = generate_key("test")
    assert not is_plexus_key(key.replace("plx_test_", "plx_live_", 1))


def test_surrounding_whitespace_or_text_is_not_a_key():
    key = generate_key("live")
    assert not is_plexus_key(f" {key}")
    assert not is_plexus_key(f"{key}\n")
    assert not is_plexus_key(f"{key}x")


def test_scanner_finds_keys_in_text_and_ignores_look_alikes():
    live, test = generate_key("live"), generate_key("test")
    fake = _replace(live, len(live) - 1)
    text = (
        f"token={live}\n"
        f"export KEY='{test}'\n"
        f"not this one {fake} nor glued{generate_key('live')} nor {generate_key('live')}_x"
    )
    assert find_plexus_keys(text) == [live, test]
    # The raw pattern finds candidates; the checksum rules the look-alike out.
    candidates = [m[0] for m in SCANNER_PATTERN.finditer(text)]
    assert fake in candidates
    assert fake not in find_plexus_keys(text)


def test_display_prefix_shows_the_environment_and_six_characters():
    key = generate_key("live")
    prefix = display_prefix(key)
    assert key.startswith(prefix)
    assert re.fullmatch(r"plx_live_[0-9A-Za-z]{6}", prefix)
    with pytest.raises(ValueError):
        display_prefix("plx_live_nope")


def test_unknown_environment_is_refused_at_generation():
    with pytest.raises(ValueError):
        generate_key("prod")  # type: ignore[arg-type]
