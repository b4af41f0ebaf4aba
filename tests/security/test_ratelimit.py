"""Rate limits (R15; ASVS 2.4.1 anti-automation, 6.3.1 brute force): every route class
answers a burst with a 429 problem carrying ``Retry-After`` and ``RateLimit-*``, budgets
are kept per principal and per address, and every response that spent a budget says how
much is left."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, NamedTuple

import pytest
from fastapi import APIRouter, Depends

from plexus.auth.principal import Principal
from plexus.authz.policy import Authenticated
from plexus.config import ConfigError
from plexus.security.ratelimit import DEFAULT_LIMITS, limit_table

from auth_helpers import PASSWORD, bearer, create_user, login
from guard_helpers import assert_problem, assert_rate_headers, deployment

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

    from guard_helpers import Deployment

USER = "member@example.org"
CLIENT_IP = "203.0.113.40"
#: A token-shaped value that matches nothing.
BOGUS_TOKEN = "A" * 43


def _mount_upload_route(deployed: Deployment) -> None:
    """No upload route exists yet; this one declares the class the real one will."""
    router = APIRouter(prefix="/api/v1/_t")

    @router.post("/upload")
    def upload(
        _principal: Annotated[Principal, Depends(Authenticated(rate="upload"))],
    ) -> dict[str, str]:
        return {"status": "stored"}

    deployed.app.include_router(router)


def _signed_in(deployed: Deployment, client: TestClient) -> dict[str, str]:
    create_user(deployed.runtime, USER)
    return bearer(client, USER)


class RouteCase(NamedTuple):
    rate_class: str
    method: str
    path: str
    body: dict[str, Any] | None = None
    signed_in: bool = False


ROUTE_CLASSES = [
    RouteCase("public", "GET", "/api/v1/"),
    RouteCase("public", "GET", "/.well-known/jwks.json"),
    RouteCase("probe", "GET", "/healthz"),
    RouteCase("ip", "GET", "/no/such/path"),
    RouteCase("login", "POST", "/api/v1/auth/login", {"email": "x@example.org", "password": "no"}),
    RouteCase("mfa", "POST", "/api/v1/auth/mfa", {"mfa_token": BOGUS_TOKEN, "code": "123456"}),
    RouteCase("refresh", "POST", "/api/v1/auth/refresh", {"refresh_token": BOGUS_TOKEN}),
    RouteCase(
        "invitation",
        "POST",
        "/api/v1/invitations/accept",
        {"token": BOGUS_TOKEN, "display_name": "New", "password": "a long new passphrase 7"},
    ),
    RouteCase("default", "GET", "/api/v1/me", signed_in=True),
    RouteCase(
        "password",
        "POST",
        "/api/v1/me/password",
        {"current_password": "not the password", "new_password": "another passphrase 42!"},
        signed_in=True,
    ),
    RouteCase("upload", "POST", "/api/v1/_t/upload", signed_in=True),
]


@pytest.mark.parametrize(
    "route", ROUTE_CLASSES, ids=[f"{r.rate_class}:{r.method}:{r.path}" for r in ROUTE_CLASSES]
)
def test_each_route_class_answers_a_burst_with_429_and_headers(
    env_vars: dict[str, str], route: RouteCase
) -> None:
    """ASVS 2.4.1: with a budget of 2 for the class, the third request gets 429."""
    with deployment(env_vars, rate_limits=f"{route.rate_class}=2/minute") as deployed:
        _mount_upload_route(deployed)
        client = deployed.client(CLIENT_IP)
        headers = _signed_in(deployed, client) if route.signed_in else {}
        answers = [
            client.request(route.method, route.path, json=route.body, headers=headers)
            for _ in range(3)
        ]

    for remaining, response in zip((1, 0), answers[:2], strict=True):
        assert response.status_code != 429, response.text
        assert_rate_headers(response, limit=2, remaining=remaining)
    refused = answers[2]
    body = assert_problem(refused, 429, "rate-limited")
    assert "retry" in body["detail"].lower()
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert_rate_headers(refused, limit=2, remaining=0)


def test_login_budget_per_account_holds_across_addresses(env_vars: dict[str, str]) -> None:
    """ASVS 6.3.1: guessing one account's password from many addresses is limited too."""
    with deployment(env_vars, rate_limits="login_account=2/5minutes") as deployed:
        create_user(deployed.runtime, USER)
        answers = [
            login(deployed.client(f"198.51.100.{n}"), USER, "wrong password") for n in (1, 2, 3)
        ]
        other_account = login(deployed.client("198.51.100.4"), "someone@example.org", "wrong")

    assert [a.status_code for a in answers[:2]] == [401, 401]
    assert_problem(answers[2], 429, "rate-limited")
    assert int(answers[2].headers["Retry-After"]) >= 1
    assert_rate_headers(answers[2], limit=2, remaining=0)
    assert other_account.status_code == 401


def test_budgets_are_per_principal_and_per_address(env_vars: dict[str, str]) -> None:
    """R15: one principal's burst leaves another's budget alone; one address's burst, made
    with several principals, is stopped by the per-address budget."""
    with deployment(env_vars, rate_limits="default=3/minute;ip=9/minute") as deployed:
        create_user(deployed.runtime, "a@example.org")
        create_user(deployed.runtime, "b@example.org")
        shared = deployed.client(CLIENT_IP)
        alice = bearer(shared, "a@example.org")  # ip: 1
        bob = bearer(shared, "b@example.org")  # ip: 2
        alice_answers = [shared.get("/api/v1/me", headers=alice) for _ in range(4)]  # ip: 6
        bob_answers = [shared.get("/api/v1/me", headers=bob) for _ in range(3)]  # ip: 9
        over_ip = shared.get("/api/v1/me", headers=bob)
        elsewhere = deployed.client("198.51.100.77").get("/api/v1/me", headers=bob)

    assert [a.status_code for a in alice_answers] == [200, 200, 200, 429]
    assert [b.status_code for b in bob_answers] == [200, 200, 200]
    assert_problem(over_ip, 429, "rate-limited")
    assert over_ip.headers["RateLimit-Limit"] == "9"
    # From a fresh address, Bob's own budget (three calls, all spent) still holds.
    assert_problem(elsewhere, 429, "rate-limited")
    assert elsewhere.headers["RateLimit-Limit"] == "3"


def test_per_address_budget_is_spent_once_per_request(env_vars: dict[str, str]) -> None:
    """The IP guard and the route's policy both check the ``ip`` budget: one unit a request."""
    with deployment(env_vars, rate_limits="ip=10/minute") as deployed:
        create_user(deployed.runtime, USER)
        client = deployed.client(CLIENT_IP)
        headers = bearer(client, USER)
        first = client.get("/api/v1/me", headers=headers)
        second = client.get("/api/v1/me", headers=headers)

    assert_rate_headers(first, limit=10, remaining=8)
    assert_rate_headers(second, limit=10, remaining=7)


def test_unmatched_paths_spend_the_per_address_budget(env_vars: dict[str, str]) -> None:
    """A scanner walking paths that match no route is limited like any other caller."""
    with deployment(env_vars, rate_limits="ip=3/minute;block_errors=100/minute") as deployed:
        client = deployed.client(CLIENT_IP)
        answers = [client.get(f"/wp-admin/{n}.php") for n in range(4)]
        other = deployed.client("198.51.100.9").get("/wp-admin/0.php")

    assert [a.status_code for a in answers[:3]] == [404, 404, 404]
    assert_rate_headers(answers[2], limit=3, remaining=0)
    assert_problem(answers[3], 429, "rate-limited")
    assert int(answers[3].headers["Retry-After"]) >= 1
    assert other.status_code == 404


def test_responses_carry_the_tightest_budget(env_vars: dict[str, str]) -> None:
    """Every limited response says what is left of the budget closest to running out."""
    with deployment(env_vars, rate_limits="public=50/minute;ip=1000/minute") as deployed:
        client = deployed.client(CLIENT_IP)
        first = client.get("/api/v1/")
        second = client.get("/api/v1/")

    assert first.status_code == 200
    assert_rate_headers(first, limit=50, remaining=49)
    assert_rate_headers(second, limit=50, remaining=48)


def test_signed_in_password_change_is_limited_by_its_own_class(env_vars: dict[str, str]) -> None:
    """Once the password budget is spent, even the right current password is refused:
    the limit cannot be used to confirm a guess."""
    with deployment(env_vars, rate_limits="password=1/minute") as deployed:
        client = deployed.client(CLIENT_IP)
        headers = _signed_in(deployed, client)
        wrong = client.post(
            "/api/v1/me/password",
            json={"current_password": "not it", "new_password": "a new passphrase 77!"},
            headers=headers,
        )
        right = client.post(
            "/api/v1/me/password",
            json={"current_password": PASSWORD, "new_password": "a new passphrase 77!"},
            headers=headers,
        )

    assert wrong.status_code != 429
    assert_problem(right, 429, "rate-limited")


@pytest.mark.parametrize(
    "spec", ["login", "login=", "=5/minute", "login=5 per fortnight", "login=many"]
)
def test_malformed_overrides_are_a_configuration_error(spec: str) -> None:
    """A bad ``PLEXUS_RATE_LIMITS`` stops the process with the variable named."""
    with pytest.raises(ConfigError) as caught:
        limit_table(spec)
    assert "PLEXUS_RATE_LIMITS" in caught.value.problems[0]


def test_overrides_replace_only_the_classes_they_name() -> None:
    table = limit_table("login=3/minute; upload = 1 per day")
    assert (table["login"].amount, table["upload"].amount) == (3, 1)
    assert table["mfa"].amount == limit_table("")["mfa"].amount
    assert set(DEFAULT_LIMITS) <= set(table)
