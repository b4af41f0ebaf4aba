"""Open sign-up (R2; ASVS V6.3.8, V6.2.x): off by default (404); when on it creates an
account and a workspace it owns, and answers the same for an address that already has an
account (creating nothing, auditing the attempt)."""

from __future__ import annotations

import pytest

from plexus.audit.events import AuditEventType

from auth_helpers import bearer, create_user
from workspace_helpers import (
    API,
    NEW_PASSWORD,
    audit_events,
    counts,
    problem,
    problem_code,
    user_by_email,
    without_request_id,
)

SIGNUP = f"{API}/auth/signup"


@pytest.fixture
def signup_closed():
    """Requested by tests that run with the default settings (sign-up off)."""


@pytest.fixture
def env_vars(env_vars, request):
    if "signup_closed" in request.fixturenames:
        return env_vars
    return {**env_vars, "PLEXUS_SIGNUP_OPEN": "true"}


def form(email: str = "grace@example.com", **overrides) -> dict[str, str]:
    return {
        "email": email,
        "display_name": "Grace Hopper",
        "password": NEW_PASSWORD,
        "workspace_name": "Compilers",
        **overrides,
    }


def test_signup_is_off_by_default(client, runtime, signup_closed):
    assert runtime.settings.signup_open is False
    body = problem(client.post(SIGNUP, json=form()), 404)
    unknown = problem(client.post(f"{API}/auth/no-such-route", json=form()), 404)
    assert body["type"] == unknown["type"]
    assert user_by_email(runtime, "grace@example.com") is None


def test_signup_creates_an_account_that_owns_its_workspace(client, runtime):
    response = client.post(SIGNUP, json=form(email="Grace@Example.com"))
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "accepted"
    user = user_by_email(runtime, "grace@example.com")
    assert user is not None
    assert user.is_instance_admin is False
    headers = bearer(client, "grace@example.com", NEW_PASSWORD)
    (workspace,) = client.get(f"{API}/workspaces", headers=headers).json()
    assert workspace["name"] == "Compilers"
    assert workspace["role"] == "owner"
    assert audit_events(runtime, AuditEventType.USER_ACCOUNT_CREATED)[0].result == "success"
    assert audit_events(runtime, AuditEventType.WORKSPACE_WORKSPACE_CREATED)


def test_an_existing_address_gets_the_same_answer_and_nothing_is_created(client, runtime):
    """V6.3.8: no enumeration through sign-up."""
    create_user(runtime, "taken@example.com")
    before = counts(runtime)
    existing = client.post(SIGNUP, json=form(email="Taken@example.com"))
    fresh = client.post(SIGNUP, json=form(email="fresh@example.com"))
    assert existing.status_code == fresh.status_code == 202
    assert existing.json() == fresh.json()
    assert existing.headers["content-type"] == fresh.headers["content-type"]
    assert counts(runtime) == (before[0] + 1, before[1] + 1, before[2] + 1)
    failures = [
        e
        for e in audit_events(runtime, AuditEventType.USER_ACCOUNT_CREATED)
        if e.result == "failure"
    ]
    assert len(failures) == 1
    assert "email_taken" in failures[0].context
    # The existing account's password is untouched.
    assert (
        client.post(
            f"{API}/auth/login", json={"email": "taken@example.com", "password": NEW_PASSWORD}
        ).status_code
        == 401
    )


def test_a_weak_password_is_refused_the_same_for_new_and_existing(client, runtime):
    create_user(runtime, "taken@example.com")
    answers = [
        client.post(SIGNUP, json=form(email=e, password="password1234"))
        for e in ("taken@example.com", "new@example.com")
    ]
    bodies = [without_request_id(problem(a, 422)) for a in answers]
    assert bodies[0] == bodies[1]
    assert bodies[0]["errors"]
    assert user_by_email(runtime, "new@example.com") is None


@pytest.mark.parametrize(
    "overrides",
    [
        {"email": "no-at-sign"},
        {"email": "x@example.com\nBcc: y@example.com"},
        {"display_name": ""},
        {"workspace_name": "tab\there"},
        {"workspace_name": "x" * 121},
        {"role": "owner"},
    ],
)
def test_invalid_signups_are_422(client, runtime, overrides):
    response = client.post(SIGNUP, json=form(**overrides))
    assert problem_code(response, 422) == "validation-failed"
    assert counts(runtime) == (0, 0, 0)
