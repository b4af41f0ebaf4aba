"""R15: two ``plexus serve`` processes sharing one Redis draw from one rate-limit budget
(ASVS 2.4.1: anti-automation holds however many processes serve the API)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from guard_helpers import assert_problem, assert_rate_headers
from server_helpers import free_ports, serving_on

pytestmark = [pytest.mark.slow, pytest.mark.redis]


def test_two_processes_sharing_redis_share_one_budget(
    env_vars: dict[str, str], redis_url: str, tmp_path: Path
) -> None:
    """Three requests to one process and two to the other spend a budget of five; the
    next request to either is refused. ``PLEXUS_QUEUE_NAME`` (unique per test) keeps
    this budget apart from every other test's on the same Redis."""
    env = {**env_vars, "PLEXUS_REDIS_URL": redis_url, "PLEXUS_RATE_LIMITS": "public=5/minute"}
    port_a, port_b = free_ports(2)
    with serving_on(port_a, env, tmp_path) as url_a, serving_on(port_b, env, tmp_path) as url_b:
        first = [httpx.get(f"{url_a}/api/v1/", timeout=5) for _ in range(3)]
        second = [httpx.get(f"{url_b}/api/v1/", timeout=5) for _ in range(2)]
        refused_b = httpx.get(f"{url_b}/api/v1/", timeout=5)
        refused_a = httpx.get(f"{url_a}/api/v1/", timeout=5)

    for remaining, response in zip((4, 3, 2, 1, 0), [*first, *second], strict=True):
        assert response.status_code == 200, response.text
        assert_rate_headers(response, limit=5, remaining=remaining)
    for refused in (refused_b, refused_a):
        assert_problem(refused, 429, "rate-limited")
        assert int(refused.headers["Retry-After"]) >= 1
        assert_rate_headers(refused, limit=5, remaining=0)


def test_processes_without_redis_keep_budgets_of_their_own(
    env_vars: dict[str, str], tmp_path: Path
) -> None:
    """The control: in-memory budgets are per process, so the test above proves sharing."""
    env = {**env_vars, "PLEXUS_RATE_LIMITS": "public=2/minute"}
    port_a, port_b = free_ports(2)
    with serving_on(port_a, env, tmp_path) as url_a, serving_on(port_b, env, tmp_path) as url_b:
        first = [httpx.get(f"{url_a}/api/v1/", timeout=5) for _ in range(2)]
        second = httpx.get(f"{url_b}/api/v1/", timeout=5)

    assert [r.status_code for r in first] == [200, 200]
    assert second.status_code == 200
    assert_rate_headers(second, limit=2, remaining=1)
