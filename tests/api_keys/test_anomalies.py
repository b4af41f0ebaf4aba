"""Unusual use of an API key raises security events (R7): a new network, a burst far
above the key's own baseline, and repeated scope denials (probing).

ASVS V16.3.3 (suspicious activity is logged) and the project extra "a usage spike raises
an alert".
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from plexus.api_keys import anomalies
from plexus.api_keys.anomalies import BURST_FACTOR, BURST_FLOOR, PROBING_THRESHOLD
from plexus.authz.permissions import Role
from plexus.db import unit_of_work
from plexus.models.identity import ApiKey

from api_key_helpers import (
    CONTENT_PUBLISH_PATH,
    CONTENT_READ_PATH,
    KEYS_PATH,
    audit_events,
    content_routes_fixture,  # noqa: F401 - a fixture
    create_key,
    event_details,
    from_ip,
    key_header,
    owner_fixture,  # noqa: F401 - a fixture
    security_events,
    set_role,
    stored_key,
)
from auth_helpers import sign_in

NEW_NETWORK = "api_key_new_network"
BURST = "api_key_burst"
PROBING = "api_key_scope_probing"


def test_first_use_from_a_new_ipv4_network_raises_an_event(client, app, owner):
    """The first use sets the key's history (no event); other addresses in the same /24
    are not new; the first use from another /24 raises exactly one event."""
    key = create_key(client, owner)
    headers = key_header(key["key"])
    for ip in ("203.0.113.5", "203.0.113.200", "::ffff:203.0.113.7"):
        assert from_ip(app, ip).get(CONTENT_READ_PATH, headers=headers).status_code == 200
    assert security_events(client.app.state.runtime, NEW_NETWORK) == []
    for ip in ("198.51.100.7", "198.51.100.8", "203.0.113.9"):
        assert from_ip(app, ip).get(CONTENT_READ_PATH, headers=headers).status_code == 200
    [event] = security_events(client.app.state.runtime, NEW_NETWORK)
    assert event.severity == "medium"
    assert event.ip == "198.51.100.7"
    assert event.workspace_id == owner.workspace_id
    assert event.user_id == owner.user_id
    details = event_details(event)
    assert details["api_key_id"] == key["id"]
    assert details["network"] == "198.51.100.0/24"
    assert details["known_networks"] == 1


def test_ipv6_networks_are_judged_by_their_48(client, app, runtime, owner):
    key = create_key(client, owner)
    headers = key_header(key["key"])
    for ip in ("2001:db8:1:1::1", "2001:db8:1:ffff::2"):
        assert from_ip(app, ip).get(CONTENT_READ_PATH, headers=headers).status_code == 200
    assert security_events(runtime, NEW_NETWORK) == []
    assert from_ip(app, "2001:db8:2::1").get(CONTENT_READ_PATH, headers=headers).status_code == 200
    [event] = security_events(runtime, NEW_NETWORK)
    assert event_details(event)["network"] == "2001:db8:2::/48"


def test_a_rotated_key_inherits_the_networks_it_is_judged_by(client, app, runtime, owner):
    """The replacement's first use from the usual network is no anomaly; a new one is."""
    key = create_key(client, owner)
    assert (
        from_ip(app, "203.0.113.5")
        .get(CONTENT_READ_PATH, headers=key_header(key["key"]))
        .status_code
        == 200
    )
    rotated = client.post(
        f"{KEYS_PATH}/{key['id']}/rotate", json={"grace_minutes": 0}, headers=owner.headers
    ).json()
    headers = key_header(rotated["new_key"]["key"])
    assert from_ip(app, "203.0.113.6").get(CONTENT_READ_PATH, headers=headers).status_code == 200
    assert security_events(runtime, NEW_NETWORK) == []
    assert from_ip(app, "192.0.2.1").get(CONTENT_READ_PATH, headers=headers).status_code == 200
    [event] = security_events(runtime, NEW_NETWORK)
    assert event_details(event)["api_key_id"] == rotated["new_key"]["id"]


def test_a_burst_from_a_new_key_is_judged_by_the_absolute_floor(client, runtime, owner):
    """A key with no history may make BURST_FLOOR requests in a minute without an alarm;
    the next one raises a single burst event for that minute."""
    key = create_key(client, owner)
    headers = key_header(key["key"])
    minute_start = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
    with time_machine.travel(minute_start + timedelta(seconds=5), tick=False):
        for _ in range(BURST_FLOOR):
            assert client.get(CONTENT_READ_PATH, headers=headers).status_code == 200
        assert security_events(runtime, BURST) == []
        for _ in range(5):
            assert client.get(CONTENT_READ_PATH, headers=headers).status_code == 200
    [event] = security_events(runtime, BURST)
    assert event.severity == "medium"
    details = event_details(event)
    assert details["api_key_id"] == key["id"]
    assert details["requests_this_minute"] == BURST_FLOOR + 1
    assert details["limit"] == BURST_FLOOR


def _use(runtime, key_id: int, at: datetime, times: int) -> None:
    """Count ``times`` uses of the key at ``at`` through the anomaly bookkeeping itself
    (hundreds of HTTP requests would prove nothing more, only slower)."""
    with unit_of_work(runtime.sessions) as session:
        key = session.get(ApiKey, key_id)
        assert key is not None
        for _ in range(times):
            anomalies.record_use(session, key, None, at)


def test_a_burst_is_judged_against_the_key_s_own_baseline(client, runtime, owner):
    """A busy key's baseline raises its bar to BURST_FACTOR times the baseline, and a
    flagged minute does not teach the key that bursts are normal."""
    key = create_key(client, owner)
    start = datetime(2031, 3, 1, 12, 0, 5, tzinfo=UTC)
    busy = 30  # requests per minute, every minute, for ten minutes
    for minute in range(10):
        _use(runtime, key["id"], start + timedelta(minutes=minute), busy)
    bar = int(BURST_FACTOR * busy)
    assert bar > BURST_FLOOR
    # Well above the floor, but within ten times this key's usual rate: no alarm.
    _use(runtime, key["id"], start + timedelta(minutes=10), bar)
    assert security_events(runtime, BURST) == []
    # That minute enters the baseline at its weight: 0.8 * 30 + 0.2 * 300 = 84, so the
    # next minute's bar is 840; go far above it.
    _use(runtime, key["id"], start + timedelta(minutes=11), 2000)
    [event] = security_events(runtime, BURST)
    details = event_details(event)
    assert details["limit"] == 840
    assert details["requests_this_minute"] == 841
    # That flagged minute is not folded into the baseline.
    _use(runtime, key["id"], start + timedelta(minutes=12), 1)
    with unit_of_work(runtime.sessions) as session:
        stored = session.get(ApiKey, key["id"])
        assert stored is not None
        assert stored.usage_baseline == pytest.approx(84.0)


def test_probing_for_scopes_raises_one_event_per_window(client, runtime, owner):
    """A key asking again and again for what it was never given raises scope probing:
    once at the threshold, not again within the window, again in a later window."""
    key = create_key(client, owner, scopes=["content:read"])
    headers = key_header(key["key"])
    start = datetime.now(UTC)
    with time_machine.travel(start, tick=False):
        for _ in range(PROBING_THRESHOLD - 1):
            assert client.post(CONTENT_PUBLISH_PATH, headers=headers).status_code == 403
        assert security_events(runtime, PROBING) == []
        for _ in range(3):
            assert client.post(CONTENT_PUBLISH_PATH, headers=headers).status_code == 403
        # Keys, too, are denied: probing other routes counts the same.
        assert client.get(KEYS_PATH, headers=headers).status_code == 403
    [event] = security_events(runtime, PROBING)
    assert event.severity == "high"
    assert event_details(event)["api_key_id"] == key["id"]
    assert len(audit_events(runtime, "api_key:scope:denied")) == PROBING_THRESHOLD + 3
    with time_machine.travel(start + timedelta(minutes=11), tick=False):
        for _ in range(PROBING_THRESHOLD):
            assert client.post(CONTENT_PUBLISH_PATH, headers=headers).status_code == 403
    assert len(security_events(runtime, PROBING)) == 2


def test_denials_caused_by_the_creator_s_demotion_are_not_probing(client, runtime, owner):
    """A key whose creator lost a permission is refused it, audited, but not accused of
    probing for a scope it was given."""
    admin = sign_in(
        runtime, client, "admin@example.com", role=Role.ADMIN, workspace_id=owner.workspace_id
    )
    key = create_key(client, admin, scopes=["content:read", "content:publish"])
    set_role(runtime, admin, Role.VIEWER)
    for _ in range(PROBING_THRESHOLD + 2):
        assert client.post(CONTENT_PUBLISH_PATH, headers=key_header(key["key"])).status_code == 403
    assert security_events(runtime, PROBING) == []
    assert len(audit_events(runtime, "api_key:scope:denied")) == PROBING_THRESHOLD + 2


def test_a_key_whose_requests_fail_is_still_watched(client, app, runtime, owner):
    """A request that fails after the key authenticated (404, 422) rolls its work back,
    but not the key's use: a stolen key that only ever fails still updates its last use
    and raises its anomalies."""
    key = create_key(client, owner, scopes=["api_key:read"])
    headers = key_header(key["key"])
    assert from_ip(app, "203.0.113.5").get(KEYS_PATH, headers=headers).status_code == 200
    stranger = from_ip(app, "198.51.100.7")
    assert stranger.get(f"{KEYS_PATH}/999999", headers=headers).status_code == 404
    assert stranger.get(f"{KEYS_PATH}?limit=0", headers=headers).status_code == 422
    [event] = security_events(runtime, NEW_NETWORK)
    assert event_details(event)["network"] == "198.51.100.0/24"
    stored = stored_key(runtime, key["id"])
    assert stored.last_used_ip == "198.51.100.7"
    assert stored.usage_count == 3
