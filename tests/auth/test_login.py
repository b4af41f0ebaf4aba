"""R4, V6.3.1, V6.3.8: login hardening — lockout, no enumeration, even timing."""

from __future__ import annotations

import statistics
import time
from datetime import timedelta

import pytest
import time_machine
from sqlalchemy import select

from plexus.db import unit_of_work
from plexus.models.audit import AuditEvent
from plexus.models.base import utcnow
from plexus.models.identity import SecurityEvent, User

from auth_helpers import PASSWORD, create_user, login

EMAIL = "alan@example.com"
#: Loose enough that these tests exercise the lockout, not the rate limits.
LOOSE_LIMITS = "login=1000/minute;login_account=1000/minute;block_login=1000/minute"


@pytest.fixture
def env_vars(env_vars):
    return {**env_vars, "PLEXUS_RATE_LIMITS": LOOSE_LIMITS}


def _comparable(response) -> tuple[int, dict]:
    body = dict(response.json())
    body.pop("request_id", None)
    return response.status_code, body


def test_unknown_account_wrong_password_and_locked_account_answer_alike(client, runtime):
    """V6.3.8: status and body do not tell an unknown e-mail from a wrong password or a
    locked account."""
    create_user(runtime, EMAIL)
    unknown = _comparable(login(client, "nobody@example.com", PASSWORD))
    wrong = _comparable(login(client, EMAIL, "not the password at all"))
    for _ in range(runtime.settings.lockout_threshold):
        login(client, EMAIL, "still not the password")
    locked = _comparable(login(client, EMAIL, PASSWORD))
    assert unknown == wrong == locked
    assert unknown[0] == 401
    assert unknown[1]["type"] == "urn:plexus:problem:invalid-credentials"


def test_lockout_refuses_the_right_password_until_it_ends(client, runtime):
    """R4, V6.3.1: N failures lock the account; the right password is refused during the
    lock; the lock ends by itself; each lockout is audited and raises a security event."""
    user_id, _ = create_user(runtime, EMAIL)
    threshold = runtime.settings.lockout_threshold
    for _ in range(threshold):
        assert login(client, EMAIL, "wrong password here").status_code == 401
    assert login(client, EMAIL, PASSWORD).status_code == 401
    with unit_of_work(runtime.sessions) as session:
        locked_until = session.get(User, user_id).locked_until
        events = session.scalars(select(AuditEvent.event)).all()
        kinds = session.scalars(select(SecurityEvent.kind)).all()
    assert locked_until is not None
    assert events.count("auth:account:locked") == 1
    assert kinds.count("account_locked") == 1
    with time_machine.travel(locked_until + timedelta(seconds=1), tick=False):
        assert login(client, EMAIL, PASSWORD).status_code == 200


def test_lockout_grows_with_each_further_failure(client, runtime):
    user_id, _ = create_user(runtime, EMAIL)
    threshold = runtime.settings.lockout_threshold
    for _ in range(threshold):
        login(client, EMAIL, "wrong password here")
    durations = []
    now = utcnow()
    for _ in range(3):
        with unit_of_work(runtime.sessions) as session:
            until = session.get(User, user_id).locked_until
        durations.append((until - now).total_seconds())
        now = until + timedelta(seconds=1)
        with time_machine.travel(now, tick=False):
            assert login(client, EMAIL, "wrong password again").status_code == 401
    assert durations[0] < durations[1] - 5 < durations[2] - 10


def test_a_successful_login_resets_the_failure_count(client, runtime):
    user_id, _ = create_user(runtime, EMAIL)
    for _ in range(runtime.settings.lockout_threshold - 1):
        login(client, EMAIL, "wrong password here")
    assert login(client, EMAIL, PASSWORD).status_code == 200
    with unit_of_work(runtime.sessions) as session:
        user = session.get(User, user_id)
        assert user.failed_logins == 0
        assert user.locked_until is None


def test_every_login_and_failure_is_audited(client, runtime):
    """R19, V16.3.1: successes and failures are audit events, with no password in them."""
    create_user(runtime, EMAIL)
    login(client, EMAIL, "wrong password here")
    login(client, "nobody@example.com", "whatever it is")
    login(client, EMAIL, PASSWORD)
    with unit_of_work(runtime.sessions) as session:
        rows = session.scalars(select(AuditEvent).order_by(AuditEvent.id)).all()
        names = [r.event for r in rows]
        contexts = " ".join(r.context for r in rows)
    assert names.count("auth:login:failed") == 2
    assert names.count("auth:login:succeeded") == 1
    assert PASSWORD not in contexts
    assert "wrong password here" not in contexts


@pytest.mark.parametrize(
    "body",
    [
        {"email": EMAIL},
        {"email": EMAIL, "password": PASSWORD, "role": "owner"},
        {"email": EMAIL, "password": 12345678901234},
        {"email": EMAIL, "password": "x" * 1025},
    ],
)
def test_malformed_login_bodies_get_422(client, runtime, body):
    create_user(runtime, EMAIL)
    response = client.post("/api/v1/auth/login", json=body)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")


def test_text_plain_login_is_refused(client, runtime):
    """V3.5.2: a simple (non-preflighted) cross-site POST cannot carry JSON."""
    create_user(runtime, EMAIL)
    response = client.post(
        "/api/v1/auth/login",
        content=f'{{"email":"{EMAIL}","password":"{PASSWORD}"}}',
        headers={"Content-Type": "text/plain"},
    )
    assert response.status_code in (415, 422)
    assert "access_token" not in response.text


class TestTiming:
    @pytest.fixture
    def env_vars(self, env_vars):
        # The production cost: the comparison is about bcrypt dominating both paths.
        return {**env_vars, "PLEXUS_BCRYPT_ROUNDS": "12"}

    def test_known_and_unknown_accounts_take_the_same_time(self, client, runtime):
        """V6.3.8: median response times of known and unknown accounts are within 20%."""
        create_user(runtime, EMAIL)
        known, unknown = [], []
        for attempt in range(30):
            for email, bucket in ((EMAIL, known), (f"ghost{attempt}@example.com", unknown)):
                started = time.perf_counter()
                response = login(client, email, f"wrong password number {attempt}")
                bucket.append(time.perf_counter() - started)
                assert response.status_code == 401
            if attempt % 4 == 3:
                # Keep the known account below its lockout so both paths stay comparable.
                assert login(client, EMAIL, PASSWORD).status_code == 200
        known_median, unknown_median = statistics.median(known), statistics.median(unknown)
        assert abs(known_median - unknown_median) <= 0.2 * max(known_median, unknown_median), (
            known_median,
            unknown_median,
        )


def test_cli_unlocks_a_locked_account(client, runtime, env_vars):
    """R4: an operator lifts a lockout at once; it is audited."""
    from conftest import run_cli

    create_user(runtime, EMAIL)
    for _ in range(runtime.settings.lockout_threshold):
        login(client, EMAIL, "wrong password here")
    assert login(client, EMAIL, PASSWORD).status_code == 401
    result = run_cli(["users", "unlock", EMAIL.upper()], env_vars)
    assert result.returncode == 0, result.stderr
    assert login(client, EMAIL, PASSWORD).status_code == 200
    with unit_of_work(runtime.sessions) as session:
        events = session.scalars(select(AuditEvent.event)).all()
    assert "auth:account:unlocked" in events
    missing = run_cli(["users", "unlock", "nobody@example.com"], env_vars)
    assert missing.returncode == 1
