"""R5: TOTP and recovery codes, over HTTP, with the workspace MFA policy.

Every code below is computed the way an authenticator app computes it (pyotp over the
secret the enrolment returned). The process clock is moved by whole 30-second steps with
time-machine, which the server in this process reads too: a code is accepted once, so each
sign-in after the first needs the next step's code.
"""

from __future__ import annotations

import base64
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pyotp
import pytest
import time_machine
from sqlalchemy import MetaData, func, select, update

from plexus.accounts.service import email_index
from plexus.audit.events import AuditEventType
from plexus.authz.permissions import Role
from plexus.models.audit import AuditEvent
from plexus.models.identity import RecoveryCode, SecurityEvent, User, Workspace

from auth_helpers import PASSWORD, create_user, login

MFA = "/api/v1/me/mfa"
TOTP = f"{MFA}/totp"
STEP = 30
EMAIL = "ada@example.com"
RECOVERY_SHAPE = re.compile(r"[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}")
#: An admin-only route (api_key:read) that does not exempt members without MFA.
ADMIN_ROUTE = "/api/v1/api-keys"


@pytest.fixture
def many_logins():
    """Requested by tests that sign in more often than the login budgets allow."""


@pytest.fixture
def env_vars(env_vars, request):
    if "many_logins" in request.fixturenames:
        budget = "200 per 5 minutes"
        limits = f"login={budget};login_account={budget};mfa={budget}"
        return {**env_vars, "PLEXUS_RATE_LIMITS": limits}
    return env_vars


@pytest.fixture
def clock():
    """The process clock, ticking, that a test may move forward."""
    with time_machine.travel(time.time(), tick=True) as traveller:
        yield traveller


@dataclass
class Enrolled:
    secret: str
    totp: pyotp.TOTP
    recovery_codes: list[str]


def problem_code(response) -> str:
    assert response.headers["content-type"] == "application/problem+json", response.text
    return response.json()["type"].rsplit(":", 1)[-1]


def access_headers(response) -> dict[str, str]:
    assert response.status_code == 200, response.text
    body = response.json()
    assert "access_token" in body, body
    return {"Authorization": f"Bearer {body['access_token']}"}


def password_step(client, email: str = EMAIL) -> str:
    """Sign in with the password of an account with MFA; returns the ``mfa_token``."""
    response = login(client, email, PASSWORD)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["mfa_required"] is True
    assert body["methods"] == ["totp", "recovery_code"]
    assert "access_token" not in body
    return body["mfa_token"]


def second_step(client, mfa_token: str, code: str):
    return client.post("/api/v1/auth/mfa", json={"mfa_token": mfa_token, "code": code})


def login_with_code(client, code: str, email: str = EMAIL):
    return second_step(client, password_step(client, email), code)


def enrol(client, headers: dict[str, str]) -> Enrolled:
    started = client.post(TOTP, headers=headers)
    assert started.status_code == 200, started.text
    secret = started.json()["secret"]
    totp = pyotp.TOTP(secret)
    confirmed = client.post(f"{TOTP}/confirm", json={"code": totp.now()}, headers=headers)
    assert confirmed.status_code == 200, confirmed.text
    return Enrolled(secret, totp, confirmed.json()["recovery_codes"])


def wrong_code(totp: pyotp.TOTP) -> str:
    """A well-formed code that no step near now accepts."""
    now = time.time()
    near = {totp.at(now + offset * STEP) for offset in range(-2, 3)}
    return next(c for c in (f"{n:06d}" for n in range(1_000_000)) if c not in near)


def next_code(clock, enrolled: Enrolled) -> str:
    """The code of the next time step: the last accepted step is never accepted again."""
    clock.shift(STEP)
    return enrolled.totp.now()


def owner_headers(client, runtime, email: str = EMAIL) -> dict[str, str]:
    create_user(runtime, email)
    return access_headers(login(client, email, PASSWORD))


def audit_events(runtime, event: AuditEventType) -> list[AuditEvent]:
    with runtime.sessions() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.event == str(event))))


def test_enrolment_gives_secret_uri_and_qr_then_confirms_with_a_code(client, runtime):
    """V6.5.2, V6.5.4: a 160-bit secret from the CSPRNG, an otpauth URI for Plexus and the
    account, an SVG QR code; nothing is live until a code from the app confirms it."""
    headers = owner_headers(client, runtime)
    assert client.get(MFA, headers=headers).json() == {
        "enabled": False,
        "enrolment_pending": False,
        "enabled_at": None,
        "recovery_codes_left": 0,
    }

    started = client.post(TOTP, headers=headers)
    assert started.status_code == 200, started.text
    body = started.json()
    assert len(base64.b32decode(body["secret"])) * 8 >= 160
    uri = urlsplit(body["otpauth_uri"])
    assert (uri.scheme, uri.netloc, uri.path) == ("otpauth", "totp", "/Plexus:ada%40example.com")
    assert parse_qs(uri.query) == {"secret": [body["secret"]], "issuer": ["Plexus"]}
    assert body["qr_svg"].startswith("<svg")
    assert 'xmlns="http://www.w3.org/2000/svg"' in body["qr_svg"]
    assert "<script" not in body["qr_svg"]
    assert client.get(MFA, headers=headers).json()["enrolment_pending"] is True
    # Not live yet: signing in still needs the password only.
    assert "access_token" in login(client, EMAIL, PASSWORD).json()

    totp = pyotp.TOTP(body["secret"])
    refused = client.post(f"{TOTP}/confirm", json={"code": wrong_code(totp)}, headers=headers)
    assert refused.status_code == 400
    assert problem_code(refused) == "invalid-mfa-code"
    assert client.get(MFA, headers=headers).json()["enabled"] is False

    confirmed = client.post(f"{TOTP}/confirm", json={"code": totp.now()}, headers=headers)
    assert confirmed.status_code == 200, confirmed.text
    codes = confirmed.json()["recovery_codes"]
    assert len(codes) == 10
    assert len(set(codes)) == 10
    # 12 characters of a 32-letter alphabet: 60 bits each (ASVS asks for at least 20).
    assert all(RECOVERY_SHAPE.fullmatch(code) for code in codes), codes
    state = client.get(MFA, headers=headers).json()
    assert state["enabled"] is True
    assert state["enrolment_pending"] is False
    assert state["recovery_codes_left"] == 10
    assert state["enabled_at"] is not None
    assert len(audit_events(runtime, AuditEventType.AUTH_MFA_ENABLED)) == 1
    assert len(audit_events(runtime, AuditEventType.AUTH_MFA_FAILED)) == 1


def test_enrolment_refuses_a_second_start_and_a_confirm_without_start(client, runtime):
    """V6.4.4: an enabled authenticator cannot be silently replaced by a new enrolment."""
    headers = owner_headers(client, runtime)
    early = client.post(f"{TOTP}/confirm", json={"code": "123456"}, headers=headers)
    assert early.status_code == 409
    assert problem_code(early) == "mfa-enrolment-not-started"
    enrol(client, headers)
    again = client.post(TOTP, headers=headers)
    assert again.status_code == 409
    assert problem_code(again) == "mfa-already-enabled"


@pytest.mark.parametrize("code", ["abcdef", "12 34 5x", "1234567", "ÄÖÜ123", "0000-0000-0000"])
def test_malformed_codes_get_a_4xx_problem(client, runtime, code):
    """V6.5.1: a code that cannot be valid is refused as one, never a server error."""
    headers = owner_headers(client, runtime)
    assert client.post(TOTP, headers=headers).status_code == 200
    response = client.post(f"{TOTP}/confirm", json={"code": code}, headers=headers)
    assert response.status_code == 400, response.text
    assert problem_code(response) == "invalid-mfa-code"
    too_short = client.post(f"{TOTP}/confirm", json={"code": "12345"}, headers=headers)
    assert too_short.status_code == 422


def test_sign_in_with_a_computed_totp(client, runtime, clock):
    """R5, V6.3.3: with MFA on, the password alone gives a challenge, not tokens; the
    challenge plus a current code gives tokens; a wrong code gives 401."""
    enrolled = enrol(client, owner_headers(client, runtime))

    mfa_token = password_step(client)
    code = next_code(clock, enrolled)
    assert second_step(client, mfa_token, wrong_code(enrolled.totp)).status_code == 401
    signed_in = second_step(client, mfa_token, code)
    headers = access_headers(signed_in)
    assert client.get("/api/v1/me", headers=headers).status_code == 200
    assert client.get(MFA, headers=headers).json()["enabled"] is True


def test_a_code_is_refused_on_its_second_use(client, runtime, clock):
    """V6.5.1: replaying a TOTP that was accepted once is refused, within its own step."""
    enrolled = enrol(client, owner_headers(client, runtime))
    code = next_code(clock, enrolled)
    access_headers(login_with_code(client, code))

    replay = login_with_code(client, code)
    assert replay.status_code == 401
    assert "access_token" not in replay.json()
    # Nor is the code of an earlier step (the enrolment's, spent by the confirmation),
    # although it is still within the window of skew.
    assert login_with_code(client, enrolled.totp.at(time.time() - STEP)).status_code == 401


def test_a_code_from_90_seconds_ago_is_refused_one_from_30_is_accepted(client, runtime, clock):
    """V6.5.5: one time step of skew either way, no more."""
    enrolled = enrol(client, owner_headers(client, runtime))
    # Far enough on that the old code's step comes after the enrolment's: only its age
    # can refuse it, not replay protection.
    clock.shift(4 * STEP)
    now = time.time()
    old, recent = enrolled.totp.at(now - 90), enrolled.totp.at(now - STEP)
    if old in {recent, enrolled.totp.at(now), enrolled.totp.at(now + STEP)}:
        pytest.skip("the 90-second-old code collides with one in the window (p = 3e-6)")

    mfa_token = password_step(client)
    assert second_step(client, mfa_token, old).status_code == 401
    access_headers(second_step(client, mfa_token, recent))


def test_twenty_parallel_uses_of_one_code_yield_one_success(client, runtime, clock, many_logins):
    """V2.3.4, V6.5.1: twenty sign-ins race with the same code; exactly one gets tokens."""
    enrolled = enrol(client, owner_headers(client, runtime))
    mfa_tokens = [password_step(client) for _ in range(20)]
    code = next_code(clock, enrolled)
    start = threading.Barrier(len(mfa_tokens))

    def attempt(mfa_token: str) -> int:
        start.wait(timeout=30)
        return second_step(client, mfa_token, code).status_code

    with ThreadPoolExecutor(max_workers=len(mfa_tokens)) as pool:
        statuses = list(pool.map(attempt, mfa_tokens))
    assert sorted(statuses) == [200] + [401] * 19, statuses


def test_recovery_codes_work_exactly_once(client, runtime, clock):
    """V6.5.1, V6.4.4: each recovery code signs in once; typed in lower case or without
    dashes it still counts as the same (spent) code."""
    enrolled = enrol(client, owner_headers(client, runtime))
    first, second = enrolled.recovery_codes[:2]

    headers = access_headers(login_with_code(client, first))
    assert client.get(MFA, headers=headers).json()["recovery_codes_left"] == 9
    for variant in (first, first.lower(), first.replace("-", "")):
        assert login_with_code(client, variant).status_code == 401, variant
    access_headers(login_with_code(client, second.lower().replace("-", " ")))
    used = audit_events(runtime, AuditEventType.AUTH_RECOVERY_CODE_USED)
    assert [event.result for event in used] == ["success", "success"]

    with runtime.sessions() as session:
        left = session.scalar(
            select(func.count(RecoveryCode.id)).where(RecoveryCode.used_at.is_(None))
        )
    assert left == 8
    # A TOTP still works alongside.
    access_headers(login_with_code(client, next_code(clock, enrolled)))


def test_regenerating_recovery_codes_needs_reauth_and_replaces_them(client, runtime, clock):
    """V6.4.4, V7.5.1: new codes replace every old one; a stale sign-in cannot do it."""
    enrolled = enrol(client, owner_headers(client, runtime))
    headers = access_headers(login_with_code(client, next_code(clock, enrolled)))

    regenerated = client.post(f"{MFA}/recovery-codes", headers=headers)
    assert regenerated.status_code == 200, regenerated.text
    fresh = regenerated.json()["recovery_codes"]
    assert len(fresh) == 10
    assert not set(fresh) & set(enrolled.recovery_codes)
    assert len(audit_events(runtime, AuditEventType.AUTH_RECOVERY_CODES_REGENERATED)) == 1
    assert login_with_code(client, enrolled.recovery_codes[0]).status_code == 401
    access_headers(login_with_code(client, fresh[0]))

    clock.shift(timedelta(minutes=11))
    stale = client.post(f"{MFA}/recovery-codes", headers=headers)
    assert stale.status_code == 403
    assert problem_code(stale) == "reauthentication-required"


def test_regenerating_without_mfa_is_a_conflict(client, runtime):
    response = client.post(f"{MFA}/recovery-codes", headers=owner_headers(client, runtime))
    assert response.status_code == 409
    assert problem_code(response) == "mfa-not-enabled"


def _database_dump(runtime) -> list[object]:
    metadata = MetaData()
    metadata.reflect(runtime.engine)
    values: list[object] = []
    with runtime.engine.connect() as connection:
        for table in metadata.sorted_tables:
            for row in connection.execute(select(table)):
                values.extend(value for value in row if value is not None)
    return values


def test_database_holds_no_plaintext_totp_secret_or_recovery_code(client, runtime, clock):
    """V6.5.2, V14.2.4 (W): the TOTP secret is stored sealed and recovery codes only as
    keyed hashes; no column of any table holds either in the clear."""
    enrolled = enrol(client, owner_headers(client, runtime))
    access_headers(login_with_code(client, next_code(clock, enrolled)))
    access_headers(login_with_code(client, enrolled.recovery_codes[0]))

    needles = [enrolled.secret, enrolled.secret.lower()]
    for code in enrolled.recovery_codes:
        needles += [code, code.replace("-", ""), code.lower(), code.replace("-", "").lower()]
    raw_secret = base64.b32decode(enrolled.secret)
    dump = _database_dump(runtime)
    assert dump
    for value in dump:
        if isinstance(value, (bytes, memoryview)):
            blob = bytes(value)
            assert raw_secret not in blob
            assert not any(needle.encode() in blob for needle in needles)
        else:
            text = str(value)
            assert not any(needle in text for needle in needles)
    with runtime.sessions() as session:
        sealed = session.scalars(select(User.totp_secret)).one()
    assert sealed is not None
    assert len(sealed) > len(raw_secret)


def test_disabling_needs_reauth_and_a_current_code(client, runtime, clock):
    """V6.4.4, V6.5.6, V7.5.1: turning MFA off needs a recent sign-in and a current code;
    afterwards sign-in asks for no code, the recovery codes are gone, and a security event
    is raised."""
    enrolled = enrol(client, owner_headers(client, runtime))
    headers = access_headers(login_with_code(client, next_code(clock, enrolled)))

    clock.shift(timedelta(minutes=11))
    stale = client.request("DELETE", TOTP, json={"code": enrolled.totp.now()}, headers=headers)
    assert stale.status_code == 403
    assert problem_code(stale) == "reauthentication-required"

    code = enrolled.totp.now()
    headers = access_headers(login_with_code(client, code))
    assert client.request("DELETE", TOTP, headers=headers).status_code == 422
    # The code the re-authentication just used cannot be used again.
    replayed = client.request("DELETE", TOTP, json={"code": code}, headers=headers)
    assert replayed.status_code == 400
    assert problem_code(replayed) == "invalid-mfa-code"
    assert client.get(MFA, headers=headers).json()["enabled"] is True

    current = next_code(clock, enrolled)
    disabled = client.request("DELETE", TOTP, json={"code": current}, headers=headers)
    assert disabled.status_code == 204, disabled.text
    assert client.get(MFA, headers=headers).json() == {
        "enabled": False,
        "enrolment_pending": False,
        "enabled_at": None,
        "recovery_codes_left": 0,
    }
    assert "access_token" in login(client, EMAIL, PASSWORD).json()
    with runtime.sessions() as session:
        assert session.scalar(select(func.count(RecoveryCode.id))) == 0
        assert session.scalars(select(User.totp_secret)).one() is None
        kinds = list(session.scalars(select(SecurityEvent.kind)))
    assert kinds.count("mfa_disabled") == 1
    assert len(audit_events(runtime, AuditEventType.AUTH_MFA_DISABLED)) == 1
    failed = audit_events(runtime, AuditEventType.AUTH_MFA_FAILED)
    assert any('"disable"' in event.context for event in failed)
    again = client.request("DELETE", TOTP, json={"code": current}, headers=headers)
    assert again.status_code == 409


def test_disabling_with_a_recovery_code(client, runtime, clock):
    """V6.4.4: a user who lost the device signs in and turns MFA off with recovery codes,
    then can enrol a new authenticator; the old one's codes no longer matter."""
    enrolled = enrol(client, owner_headers(client, runtime))
    headers = access_headers(login_with_code(client, enrolled.recovery_codes[0]))
    disabled = client.request(
        "DELETE", TOTP, json={"code": enrolled.recovery_codes[1]}, headers=headers
    )
    assert disabled.status_code == 204, disabled.text
    fresh = enrol(client, headers)
    assert fresh.secret != enrolled.secret
    assert login_with_code(client, enrolled.recovery_codes[2]).status_code == 401
    code = next_code(clock, fresh)
    old_device = enrolled.totp.now()
    if old_device == code:
        pytest.skip("the two authenticators show the same code this step (p = 1e-6)")
    mfa_token = password_step(client)
    assert second_step(client, mfa_token, old_device).status_code == 401
    access_headers(second_step(client, mfa_token, code))


def test_enrolment_needs_a_recent_sign_in(client, runtime, clock):
    """V7.5.1: changing MFA is a sensitive action."""
    headers = owner_headers(client, runtime)
    clock.shift(timedelta(minutes=11))
    for response in (
        client.post(TOTP, headers=headers),
        client.post(f"{TOTP}/confirm", json={"code": "123456"}, headers=headers),
    ):
        assert response.status_code == 403
        assert problem_code(response) == "reauthentication-required"
    assert client.get(MFA, headers=headers).status_code == 200


def _require_mfa(runtime, workspace_id: int, policy: str) -> None:
    with runtime.sessions() as session:
        session.execute(
            update(Workspace).where(Workspace.id == workspace_id).values(mfa_policy=policy)
        )
        session.commit()


def test_admin_without_mfa_in_mfa_required_workspace(client, runtime, clock):
    """V6.3.3, V10.3.4: in a workspace that requires MFA of admins, an admin without MFA
    gets 403 mfa-required on admin routes but can still enrol; after enrolling and signing
    in with a TOTP, the same routes answer."""
    _, workspace_id = create_user(runtime, EMAIL, role=Role.ADMIN)
    _require_mfa(runtime, workspace_id, "admins")
    headers = access_headers(login(client, EMAIL, PASSWORD))

    refused = client.get(ADMIN_ROUTE, headers=headers)
    assert refused.status_code == 403
    assert problem_code(refused) == "mfa-required"
    assert client.get(MFA, headers=headers).status_code == 200
    enrolled = enrol(client, headers)

    headers = access_headers(login_with_code(client, next_code(clock, enrolled)))
    assert client.get(ADMIN_ROUTE, headers=headers).status_code == 200


def test_mfa_policy_all_covers_every_role_and_admins_only_admins(client, runtime):
    """V6.3.3: "admins" leaves an editor alone; "all" holds an editor to it too."""
    _, workspace_id = create_user(runtime, "owner@example.com")
    create_user(runtime, "ed@example.com", role=Role.EDITOR, workspace_id=workspace_id)
    _require_mfa(runtime, workspace_id, "admins")
    editor = access_headers(login(client, "ed@example.com", PASSWORD))
    members = f"/api/v1/workspaces/{workspace_id}/members"
    assert client.get(members, headers=editor).status_code == 200
    owner = access_headers(login(client, "owner@example.com", PASSWORD))
    assert problem_code(client.get(members, headers=owner)) == "mfa-required"

    _require_mfa(runtime, workspace_id, "all")
    refused = client.get(members, headers=editor)
    assert refused.status_code == 403
    assert problem_code(refused) == "mfa-required"
    assert client.get(MFA, headers=editor).status_code == 200


def test_wrong_codes_count_toward_the_account_lockout(client, runtime, clock, many_logins):
    """V6.3.1, V2.3.4: knowing the password does not buy unlimited guesses at the second
    factor. Wrong codes across fresh challenges lock the account like wrong passwords do;
    a correct password does not reset the count; a full sign-in does."""
    enrolled = enrol(client, owner_headers(client, runtime))
    threshold = runtime.settings.lockout_threshold
    for _ in range(threshold):
        assert (
            second_step(client, password_step(client), wrong_code(enrolled.totp)).status_code == 401
        )
    # Locked: the password step itself is refused now, with the usual answer.
    assert login(client, EMAIL, PASSWORD).status_code == 401
    with runtime.sessions() as session:
        user = session.scalars(
            select(User).where(User.email_index == email_index(runtime, EMAIL))
        ).one()
        assert user.locked_until is not None
        locked_until = user.locked_until
    clock.move_to(locked_until + timedelta(seconds=1))
    assert access_headers(login_with_code(client, enrolled.totp.now()))
    with runtime.sessions() as session:
        assert (
            session.scalars(
                select(User.failed_logins).where(User.email_index == email_index(runtime, EMAIL))
            ).one()
            == 0
        )


def test_parallel_guesses_on_one_challenge_cannot_exceed_its_attempts(
    client, runtime, clock, many_logins
):
    """V2.3.4: each guess reserves an attempt in the database first, so 20 parallel wrong
    guesses on one challenge get at most its 5 attempts checked."""
    enrolled = enrol(client, owner_headers(client, runtime))
    mfa_token = password_step(client)
    bad = wrong_code(enrolled.totp)
    with ThreadPoolExecutor(max_workers=20) as pool:
        statuses = list(
            pool.map(lambda _i: second_step(client, mfa_token, bad).status_code, range(20))
        )
    assert set(statuses) == {401}
    failed = audit_events(runtime, AuditEventType.AUTH_MFA_FAILED)
    assert len(failed) <= 5
