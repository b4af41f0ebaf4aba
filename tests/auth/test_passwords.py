"""R3: password hashing and the password policy.

The policy is driven directly for its reasons; Have I Been Pwned is a local fake range
server that records what it was sent; hashing is checked on the hasher and, black-box, by
signing in over HTTP (on SQLite and, with PLEXUS_TEST_DATABASE=postgres, PostgreSQL).
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from random import Random
from string import ascii_letters, digits

import pytest

from plexus.auth import hibp
from plexus.auth.password_policy import check_password
from plexus.auth.passwords import PasswordHasher
from plexus.config import ConfigError, Settings, load_settings
from plexus.db import unit_of_work
from plexus.errors import ValidationFailed
from plexus.models.identity import User

from auth_helpers import PASSWORD, bearer, create_user, login

EMAIL = "alice@example.com"
NAME = "Bartholomew Quill"
STRONG = "violet tractor dances quietly"
PEPPER = b"unit-test-pepper-" + b"p" * 32
#: 100 ASCII characters; bcrypt alone would read only the first 72.
LONG_ASCII = "".join(Random(72).choices(ascii_letters + digits, k=100))  # noqa: S311 - fixed test data
#: 64 characters of two bytes each: 128 bytes in UTF-8, its 72nd byte ends a character.
MULTIBYTE_64 = "ШифрВишняОблакоЁжМостРассветКофеЛампаВетерПазлГротУзелСветДомЛес"


def _first_72_bytes(password: str) -> str:
    prefix = password.encode()[:72].decode()
    assert len(prefix.encode()) == 72
    return prefix


def _random_password(length: int, alphabet: str = ascii_letters + digits) -> str:
    # Seeded, so every run tests the same password; nothing here needs to be secret.
    return "".join(Random(length).choices(alphabet, k=length))  # noqa: S311


# --- the policy, directly --------------------------------------------------------------


@pytest.fixture
def policy_settings(tmp_path: Path) -> Settings:
    return load_settings(environ={"PLEXUS_ENV": "test", "PLEXUS_DATA_DIR": str(tmp_path)})


def reasons(
    password: str,
    settings: Settings,
    *,
    email: str = EMAIL,
    display_name: str = NAME,
) -> list[str]:
    """The reasons the policy gives for refusing ``password``; [] when it accepts it."""
    try:
        check_password(password, email=email, display_name=display_name, settings=settings)
    except ValidationFailed as exc:
        refusal = exc
    else:
        return []
    assert refusal.status == 422
    errors = refusal.extra["errors"]
    assert errors, "a refusal always gives at least one reason"
    assert all(set(e) == {"field", "message"} for e in errors)
    assert {e["field"] for e in errors} == {"password"}
    messages = [e["message"] for e in errors]
    # A reason never echoes the password back (it would land in logs and screens).
    assert not any(password in m for m in messages)
    return messages


def has(found: list[str], fragment: str) -> bool:
    return any(fragment in reason for reason in found)


def test_short_password_is_refused(policy_settings) -> None:
    """V6.2.1: fewer than 12 characters is refused with that reason alone."""
    assert reasons("Zq9#vLp2!xR", policy_settings) == ["Must be at least 12 characters long."]
    assert reasons("Zq9#vLp2!xRw", policy_settings) == []


def test_length_counts_characters_not_bytes(policy_settings) -> None:
    """V6.2.1, V6.2.9: eleven CJK characters (33 bytes) are still too short; a 1024-character
    password of two-byte characters (2048 bytes) is not too long."""
    eleven = "雨夜灯塔咖啡远山星河旧"
    assert len(eleven) == 11
    assert len(eleven.encode()) == 33
    assert has(reasons(eleven, policy_settings), "at least 12 characters")
    wide = _random_password(1024, "äöüéèàçñßøåæœ")
    assert len(wide.encode()) == 2048
    assert reasons(wide, policy_settings) == []


def test_1025_characters_are_refused(policy_settings) -> None:
    """V6.2.9: the limit is 1024 characters; one more is refused, and nothing else is
    computed on input that long."""
    assert reasons(_random_password(1025), policy_settings) == [
        "Must be at most 1024 characters long."
    ]


def test_1024_characters_are_accepted(policy_settings) -> None:
    """V6.2.9: passwords of up to 1024 characters are allowed."""
    password = _random_password(1024)
    assert len(password) == 1024
    assert reasons(password, policy_settings) == []


def test_64_character_multibyte_password_is_accepted(policy_settings) -> None:
    """V6.2.9: 64 characters of any script are allowed (V6.2.8's multibyte case)."""
    assert len(MULTIBYTE_64) == 64
    assert len(MULTIBYTE_64.encode()) == 128
    assert reasons(MULTIBYTE_64, policy_settings) == []


def test_lowercase_passphrase_is_accepted(policy_settings) -> None:
    """V6.2.5: no composition rules: lower-case words and spaces only are fine."""
    assert STRONG.lower() == STRONG
    assert reasons(STRONG, policy_settings) == []


@pytest.mark.parametrize("password", ["qwerty123456", "QWERTY123456", "1qaz2wsx3edc"])
def test_common_password_is_refused(password: str, policy_settings) -> None:
    """V6.2.4: a password in the bundled common list is refused, whatever its case."""
    assert reasons(password, policy_settings) == ["Is one of the most commonly used passwords."]


@pytest.mark.parametrize(
    ("password", "fragment"),
    [
        ("zebra-quantum-ALICE@EXAMPLE.COM", "your e-mail address"),
        ("Zebra quantum aLiCe lighthouse", "before the @"),
        ("lighthouse bartholomew QUILL zebra", "your name"),
        ("Zebra quantum PlExUs lighthouse", '"plexus"'),
    ],
)
def test_context_words_are_refused(password: str, fragment: str, policy_settings) -> None:
    """V6.2.11: the user's e-mail, its local part, their name and the app's name are refused,
    case-insensitively, however strong the rest of the password is."""
    found = reasons(password, policy_settings)
    assert len(found) == 1
    assert fragment in found[0]
    # The same password is fine for another user (but "plexus" is refused for everyone).
    always = ['Must not contain the word "plexus".'] if fragment == '"plexus"' else []
    assert reasons(password, policy_settings, email="x@y.org", display_name="Nobody") == always


def test_context_words_shorter_than_three_characters_are_not_refused(policy_settings) -> None:
    """V6.2.11: a local part or name of two characters would forbid half the dictionary."""
    assert reasons("total vibrant walrus 42", policy_settings, email="al@example.com") == []
    assert reasons("total vibrant walrus 42", policy_settings, display_name="Al") == []


@pytest.mark.parametrize(
    ("password", "hint"),
    [
        ("aaaaaaaaaaaaaaaa", "Repeats"),
        ("qwertyuiop[]\\", "rows of keys"),
        ("1234567890123", "commonly used"),
    ],
)
def test_weak_password_is_refused_with_zxcvbn_advice(
    password: str, hint: str, policy_settings
) -> None:
    """V6.2.4: zxcvbn scores below 3 are refused, with its advice as the reason."""
    found = reasons(password, policy_settings)
    assert len(found) == 1
    assert found[0].startswith("Is too easy to guess.")
    assert hint in found[0]


def test_user_inputs_weaken_the_score(policy_settings) -> None:
    """V6.2.11: zxcvbn is told the user's words, so a password built from the pieces of their
    name scores as weak even where no whole context word appears."""
    password = "QuillBartholomew"
    assert reasons(password, policy_settings, display_name="Nobody Atall") == []
    assert has(reasons(password, policy_settings), "Is too easy to guess.")


def test_every_reason_is_reported_at_once(policy_settings) -> None:
    found = reasons("plexus12", policy_settings)
    assert has(found, "at least 12 characters")
    assert has(found, '"plexus"')
    assert has(found, "too easy to guess")


# --- Have I Been Pwned, against a local fake range server ------------------------------


@dataclass
class FakeRange:
    """A Pwned Passwords range API on 127.0.0.1 that records every request it gets."""

    url: str = ""
    status: int = 200
    listing: str = ""
    stall: bool = False
    requests: list[dict[str, object]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)


def _sha1(password: str) -> str:
    return hashlib.sha1(password.encode(), usedforsecurity=False).hexdigest().upper()


def _padding(count: int, seed: int = 5) -> list[str]:
    rng = Random(seed)  # noqa: S311 - padding stands in for random suffixes; any will do
    return [f"{rng.getrandbits(140):035X}:0" for _ in range(count)]


@pytest.fixture
def fake_hibp() -> Iterator[FakeRange]:
    state = FakeRange()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            state.requests.append(
                {
                    "path": self.path,
                    "headers": dict(self.headers.items()),
                    "body": self.rfile.read(length) if length else b"",
                }
            )
            if state.stall:
                state.release.wait(10)
            body = state.listing.encode()
            try:
                self.send_response(state.status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except OSError:
                pass  # the client gave up waiting (the timeout test)

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield state
    state.release.set()
    server.shutdown()
    server.server_close()
    thread.join(5)


def hibp_settings(tmp_path: Path, url: str, unreachable: str = "allow") -> Settings:
    return load_settings(
        environ={
            "PLEXUS_ENV": "test",
            "PLEXUS_DATA_DIR": str(tmp_path),
            "PLEXUS_HIBP_ENABLED": "true",
            "PLEXUS_HIBP_URL": url,
            "PLEXUS_HIBP_UNREACHABLE": unreachable,
        }
    )


def test_only_the_five_character_prefix_leaves(fake_hibp, tmp_path) -> None:
    """V6.2.12: k-anonymity: the request carries the first five hex characters of the SHA-1
    and nothing else of the password; padding is asked for; the agent is "plexus"."""
    digest = _sha1(STRONG)
    fake_hibp.listing = "\r\n".join(_padding(40))
    assert reasons(STRONG, hibp_settings(tmp_path, fake_hibp.url)) == []
    assert len(fake_hibp.requests) == 1
    sent = fake_hibp.requests[0]
    assert sent["path"] == f"/range/{digest[:5]}"
    assert sent["body"] == b""
    headers = {k.lower(): v for k, v in sent["headers"].items()}
    assert headers["add-padding"] == "true"
    assert headers["user-agent"] == "plexus"
    everything = json.dumps(sent, default=repr).upper()
    assert digest[5:] not in everything
    assert digest[5:12] not in everything
    assert STRONG.upper() not in everything


def test_breached_password_is_refused(fake_hibp, tmp_path) -> None:
    """V6.2.12: a suffix in the range answer with a count above 0 refuses the password."""
    suffix = _sha1(STRONG)[5:]
    fake_hibp.listing = "\r\n".join([*_padding(20), f"{suffix}:3", *_padding(20, seed=6)])
    found = reasons(STRONG, hibp_settings(tmp_path, fake_hibp.url))
    assert found == ["Has appeared in a data breach (Have I Been Pwned); choose another password."]


def test_lower_case_suffix_in_the_answer_still_matches(fake_hibp, tmp_path) -> None:
    suffix = _sha1(STRONG)[5:]
    fake_hibp.listing = f"{suffix.lower()}:1\n"
    assert has(reasons(STRONG, hibp_settings(tmp_path, fake_hibp.url)), "data breach")


def test_padding_entries_with_count_zero_are_ignored(fake_hibp, tmp_path) -> None:
    """V6.2.12: ``Add-Padding`` entries carry a count of 0 and never refuse, even the one
    that happens to equal this password's suffix."""
    suffix = _sha1(STRONG)[5:]
    fake_hibp.listing = "\r\n".join([*_padding(30), f"{suffix}:0"])
    assert reasons(STRONG, hibp_settings(tmp_path, fake_hibp.url)) == []
    assert len(fake_hibp.requests) == 1


def test_hibp_is_not_asked_when_disabled_or_already_refused(fake_hibp, tmp_path) -> None:
    """Nothing leaves when the check is off, nor for a password the offline policy refuses."""
    disabled = load_settings(
        environ={
            "PLEXUS_ENV": "test",
            "PLEXUS_DATA_DIR": str(tmp_path),
            "PLEXUS_HIBP_URL": fake_hibp.url,
        }
    )
    assert reasons(STRONG, disabled) == []
    assert reasons("qwerty123456", hibp_settings(tmp_path, fake_hibp.url)) != []
    assert fake_hibp.requests == []


def _closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.mark.parametrize("failure", ["refused", "status-503", "malformed"])
def test_unreachable_hibp_allows_with_a_warning(failure, fake_hibp, tmp_path, log_stream) -> None:
    """V6.2.12: with PLEXUS_HIBP_UNREACHABLE=allow the password is accepted and a warning
    logged, which names neither the password nor its hash."""
    url = fake_hibp.url
    if failure == "refused":
        url = _closed_port_url()
    elif failure == "status-503":
        fake_hibp.status = 503
    else:
        fake_hibp.listing = "<html>maintenance</html>"
    assert reasons(STRONG, hibp_settings(tmp_path, url, "allow")) == []
    lines = [json.loads(line) for line in log_stream.getvalue().splitlines() if line.strip()]
    warnings = [line for line in lines if line.get("event") == "hibp_unreachable"]
    assert len(warnings) == 1
    assert warnings[0]["level"] == "warning"
    assert warnings[0]["action"] == "allowed"
    text = log_stream.getvalue().upper()
    assert STRONG.upper() not in text
    assert _sha1(STRONG)[:5] not in text


@pytest.mark.parametrize("failure", ["refused", "status-503"])
def test_unreachable_hibp_refuses_when_configured(failure, fake_hibp, tmp_path) -> None:
    """V6.2.12: with PLEXUS_HIBP_UNREACHABLE=refuse the reason says the check could not be
    made (and it is the only reason)."""
    url = _closed_port_url() if failure == "refused" else fake_hibp.url
    fake_hibp.status = 503
    found = reasons(STRONG, hibp_settings(tmp_path, url, "refuse"))
    assert len(found) == 1
    assert "Could not be checked" in found[0]


def test_a_stalled_hibp_gives_up_within_three_seconds(fake_hibp, tmp_path) -> None:
    """V6.2.12, R18: the outbound call has a timeout of at most 3 s; then the fallback
    setting decides."""
    fake_hibp.stall = True
    started = time.monotonic()
    found = reasons(STRONG, hibp_settings(tmp_path, fake_hibp.url, "refuse"))
    elapsed = time.monotonic() - started
    assert has(found, "Could not be checked")
    assert elapsed < 4.5
    assert len(fake_hibp.requests) == 1


def test_pwned_count_reports_a_timeout(fake_hibp) -> None:
    fake_hibp.stall = True
    with pytest.raises(hibp.HibpUnavailable) as caught:
        hibp.pwned_count(STRONG, base_url=fake_hibp.url, timeout=0.2)
    assert caught.value.reason == "timeout"


# --- hashing ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hasher() -> PasswordHasher:
    return PasswordHasher(PEPPER, 4)


@pytest.mark.parametrize("password", [LONG_ASCII, MULTIBYTE_64], ids=["ascii-100", "utf8-64"])
def test_passwords_sharing_the_first_72_bytes_do_not_verify_as_each_other(
    password: str, hasher
) -> None:
    """V6.2.8: every byte counts. bcrypt alone reads 72 bytes; ours does not truncate."""
    prefix = _first_72_bytes(password)
    assert prefix != password
    assert password.encode().startswith(prefix.encode())
    other = prefix + "-something else"
    stored = hasher.hash(password)
    stored_other = hasher.hash(other)
    assert hasher.verify(password, stored)
    assert hasher.verify(other, stored_other)
    for wrong, target in ((prefix, stored), (other, stored), (password, stored_other)):
        assert not hasher.verify(wrong, target)


def test_a_1024_character_password_verifies_exactly(hasher) -> None:
    """V6.2.9, V6.2.8: the longest allowed password works, and its last character counts."""
    password = _random_password(1024)
    stored = hasher.hash(password)
    assert hasher.verify(password, stored)
    assert not hasher.verify(password[:-1] + ("a" if password[-1] != "a" else "b"), stored)


def test_default_cost_is_12(tmp_path) -> None:
    """V11.4.2: the stored hash is bcrypt ($2b$) at cost 12 unless configured otherwise."""
    settings = load_settings(environ={"PLEXUS_ENV": "test", "PLEXUS_DATA_DIR": str(tmp_path)})
    assert settings.bcrypt_rounds == 12
    stored = PasswordHasher(PEPPER, settings.bcrypt_rounds).hash(STRONG)
    assert stored.startswith("$2b$12$")


def test_needs_rehash_when_the_cost_rises(hasher) -> None:
    """V11.4.2: a hash made at a lower cost than the configured one is due for a rehash."""
    low = hasher.hash(STRONG)
    assert low.startswith("$2b$04$")
    assert not hasher.needs_rehash(low)
    higher = PasswordHasher(PEPPER, 5)
    assert higher.needs_rehash(low)
    assert not higher.needs_rehash(higher.hash(STRONG))
    assert higher.verify(STRONG, low)


def test_the_pepper_is_part_of_the_hash(hasher) -> None:
    """A stolen database alone is not enough: without the pepper no password verifies."""
    stored = hasher.hash(STRONG)
    assert not PasswordHasher(b"another-pepper-" + b"x" * 32, 4).verify(STRONG, stored)


def test_unicode_forms_of_one_password_verify_as_each_other(hasher) -> None:
    """NIST SP 800-63B 5.1.1.2: "é" typed as one code point or as e + combining accent is
    the same password."""
    composed = "café crème brûlée à volonté"
    decomposed = "cafe\u0301 cre\u0300me bru\u0302le\u0301e a\u0300 volonte\u0301"
    assert composed != decomposed
    assert hasher.verify(decomposed, hasher.hash(composed))


def test_missing_or_malformed_hash_never_verifies(hasher) -> None:
    assert not hasher.verify(STRONG, None)
    assert not hasher.verify(STRONG, "")
    assert not hasher.verify(STRONG, "$2b$04$not-a-real-hash")
    assert not hasher.verify(STRONG, "plain-text-password")


def _production_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("unused by the settings check")
    key.write_text("unused by the settings check")
    strong = "s3cure-" + "Q" * 40
    return {
        "PLEXUS_ENV": "production",
        "PLEXUS_DATA_DIR": str(tmp_path / "var"),
        "PLEXUS_AUDIT_KEY": "audit-" + strong,
        "PLEXUS_PASSWORD_PEPPER": "pepper-" + strong,
        "PLEXUS_TOKEN_KEY": "token-" + strong,
        "PLEXUS_INDEX_KEY": "index-" + strong,
        "PLEXUS_MASTER_KEY": "prodMasterKey" + "Q" * 30 + "=",
        "PLEXUS_TLS_CERT_FILE": str(cert),
        "PLEXUS_TLS_KEY_FILE": str(key),
        **extra,
    }


def test_production_refuses_bcrypt_cost_below_10(tmp_path) -> None:
    """V11.4.2: OWASP's floor for bcrypt is cost 10; production will not start below it."""
    with pytest.raises(ConfigError) as caught:
        load_settings(environ=_production_env(tmp_path, PLEXUS_BCRYPT_ROUNDS="9"))
    assert any("PLEXUS_BCRYPT_ROUNDS" in p for p in caught.value.problems)
    assert load_settings(environ=_production_env(tmp_path, PLEXUS_BCRYPT_ROUNDS="10")).is_production
    assert load_settings(environ=_production_env(tmp_path)).bcrypt_rounds == 12


# --- black-box, over HTTP --------------------------------------------------------------

#: The cost the rehash test configures: above the cost-4 hash it plants, still fast.
RAISED_ROUNDS = 6


@pytest.fixture
def raised_cost():
    """Requested by tests that run the server at bcrypt cost RAISED_ROUNDS."""


@pytest.fixture
def env_vars(env_vars, request):
    if "raised_cost" in request.fixturenames:
        return {**env_vars, "PLEXUS_BCRYPT_ROUNDS": str(RAISED_ROUNDS)}
    return env_vars


def _stored_hash(runtime, user_id: int) -> str:
    with runtime.sessions() as session:
        user = session.get(User, user_id)
        assert user is not None
        assert user.password_hash is not None
        return user.password_hash


@pytest.mark.parametrize("password", [LONG_ASCII, MULTIBYTE_64], ids=["ascii-100", "utf8-64"])
def test_72_byte_prefix_pair_cannot_log_in_as_each_other(password: str, runtime, client) -> None:
    """V6.2.8, R3: two accounts whose passwords share their first 72 bytes; each password
    opens its own account only, and the 72-byte prefix opens neither."""
    prefix = _first_72_bytes(password)
    other = prefix + " and then it differs"
    create_user(runtime, "first@example.com", password=password)
    create_user(runtime, "second@example.com", password=other)
    assert login(client, "first@example.com", password).status_code == 200
    assert login(client, "second@example.com", other).status_code == 200
    assert login(client, "first@example.com", other).status_code == 401
    assert login(client, "second@example.com", password).status_code == 401
    assert login(client, "first@example.com", prefix).status_code == 401
    assert login(client, "second@example.com", prefix).status_code == 401


def test_1024_character_password_logs_in(runtime, client) -> None:
    """V6.2.9: the longest allowed password signs in, and one character less does not."""
    password = _random_password(1024)
    create_user(runtime, "long@example.com", password=password)
    response = login(client, "long@example.com", password)
    assert response.status_code == 200, response.text
    assert "access_token" in response.json()
    assert login(client, "long@example.com", password[:-1]).status_code == 401


def test_lower_cost_hash_is_upgraded_at_login(raised_cost, runtime, client) -> None:
    """V11.4.2, R3: an account stored at cost 4 is rehashed at the configured cost after a
    successful sign-in (and not after a failed one); the password still works after."""
    assert runtime.settings.bcrypt_rounds == RAISED_ROUNDS
    user_id, _ = create_user(runtime, "old@example.com")
    pepper = runtime.settings.secret("password_pepper").encode()
    old = PasswordHasher(pepper, 4).hash(PASSWORD)
    with unit_of_work(runtime.sessions) as session:
        user = session.get(User, user_id)
        assert user is not None
        user.password_hash = old
    assert login(client, "old@example.com", "not the password at all").status_code == 401
    assert _stored_hash(runtime, user_id) == old
    assert login(client, "old@example.com", PASSWORD).status_code == 200
    upgraded = _stored_hash(runtime, user_id)
    assert upgraded.startswith(f"$2b$0{RAISED_ROUNDS}$")
    assert runtime.passwords.verify(PASSWORD, upgraded)
    assert login(client, "old@example.com", PASSWORD).status_code == 200
    assert _stored_hash(runtime, user_id) == upgraded


def _change(client, headers, current: str, new: str):
    return client.post(
        "/api/v1/me/password",
        json={"current_password": current, "new_password": new},
        headers=headers,
    )


def _problem_messages(response) -> list[str]:
    assert response.headers["content-type"] == "application/problem+json", response.text
    body = response.json()
    return [e["message"] for e in body.get("errors", [])]


@pytest.mark.parametrize(
    ("new", "fragment"),
    [
        ("qwerty123456", "most commonly used"),
        ("aaaaaaaaaaaaaaaa", "too easy to guess"),
        ("short-pw", "at least 12 characters"),
        ("zebra-quantum-alice@example.com", "e-mail address"),
        ("Zebra quantum PLEXUS lighthouse", '"plexus"'),
    ],
)
def test_password_change_refuses_a_weak_password_with_a_reason(
    new: str, fragment: str, runtime, client
) -> None:
    """V6.2.4, V6.2.11: a weak, common or context-word password is refused with 422 and a
    reason; the old password keeps working."""
    create_user(runtime, EMAIL)
    headers = bearer(client, EMAIL)
    response = _change(client, headers, PASSWORD, new)
    assert response.status_code == 422, response.text
    assert has(_problem_messages(response), fragment)
    assert new not in response.text
    assert login(client, EMAIL, new).status_code == 401
    assert login(client, EMAIL, PASSWORD).status_code == 200


def test_password_change_needs_the_current_password(runtime, client) -> None:
    """V6.2.2, V6.2.3: a wrong current password is refused and nothing changes."""
    create_user(runtime, EMAIL)
    headers = bearer(client, EMAIL)
    response = _change(client, headers, "not the current password", STRONG)
    assert response.status_code == 401, response.text
    assert login(client, EMAIL, STRONG).status_code == 401
    assert login(client, EMAIL, PASSWORD).status_code == 200


def test_password_change_accepts_a_strong_password(runtime, client) -> None:
    """V6.2.2, V6.2.5: the current password and a lower-case passphrase change it."""
    create_user(runtime, EMAIL)
    headers = bearer(client, EMAIL)
    response = _change(client, headers, PASSWORD, STRONG)
    assert response.status_code == 200, response.text
    assert login(client, EMAIL, STRONG).status_code == 200
    assert login(client, EMAIL, PASSWORD).status_code == 401
