"""Outbound webhooks end to end: endpoints through the HTTP API, deliveries to a local
receiver (served on 127.0.0.2, the only allow-listed network) driven in-process as a
worker runs them, and a canary on 127.0.0.1 that must never receive anything.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from sqlalchemy import select, update

from plexus.authz.permissions import Role
from plexus.db import unit_of_work
from plexus.models.connections import Notification
from plexus.models.webhooks import WebhookDelivery, WebhookEndpoint
from plexus.webhooks_out import delivery
from plexus.webhooks_out.verify import verify_webhook

from auth_helpers import bearer, sign_in
from webhook_receiver import CANARY_HOST, RECEIVER_HOST, Receiver, serve_on

API = "/api/v1"
pytestmark = pytest.mark.allow_hosts([CANARY_HOST, RECEIVER_HOST, "::1"])


@pytest.fixture
def env_vars(env_vars: dict[str, str]) -> dict[str, str]:
    return {**env_vars, "PLEXUS_OUTBOUND_ALLOW_NETWORKS": f"{RECEIVER_HOST}/32"}


@pytest.fixture
def receiver():
    fake = Receiver()
    with serve_on(fake.app(), RECEIVER_HOST) as url:
        fake.redirect_to = url
        yield fake, url


@pytest.fixture
def canary():
    fake = Receiver()
    with serve_on(fake.app(), CANARY_HOST) as url:
        yield fake, url


def drive(rt) -> int:
    """Send every attempt that is due now, as the worker (or the sweep) would."""
    sent = 0
    for delivery_id in delivery.sweep(rt, grace=timedelta(0)):
        delivery.deliver(rt, delivery_id)
        sent += 1
    return sent


def _register(client, headers, url: str, events: list[str] | None = None) -> dict:
    response = client.post(
        f"{API}/webhooks", json={"url": url, "events": events or ["content.*"]}, headers=headers
    )
    assert response.status_code == 201, response.text
    return response.json()


def _content(client, headers, title: str = "Launch") -> dict:
    response = client.post(
        f"{API}/content", json={"title": title, "body": "secret draft body"}, headers=headers
    )
    assert response.status_code == 201, response.text
    return response.json()


def _log(client, headers, endpoint_id: int) -> list[dict]:
    response = client.get(f"{API}/webhooks/{endpoint_id}/deliveries", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["items"]


def test_an_event_reaches_the_receiver_signed_and_verifiable(runtime, client, receiver):
    fake, url = receiver
    owner = sign_in(runtime, client, "owner@example.org")
    endpoint = _register(client, owner.headers, f"{url}/hook")
    assert endpoint["secret"].startswith("whsec_")
    item = _content(client, owner.headers)
    assert fake.requests == [], "sent before a worker ran"

    assert drive(runtime) == 1
    [got] = fake.requests
    assert verify_webhook(endpoint["secret"], got.headers, got.body)
    payload = json.loads(got.body)
    assert payload["type"] == "content.created"
    assert payload["data"]["id"] == str(item["id"])
    assert b"secret draft body" not in got.body, "content bodies are not sent"
    assert not verify_webhook("whsec_" + "A" * 44, got.headers, got.body)
    [row] = _log(client, owner.headers, endpoint["id"])
    assert row["state"] == "succeeded"
    assert row["status_code"] == 204
    assert row["attempt"] == 1
    assert row["event_id"] == got.headers["webhook-id"]


def test_a_receiver_failing_three_times_gets_the_event_once_it_recovers(runtime, client, receiver):
    fake, url = receiver
    owner = sign_in(runtime, client, "owner@example.org")
    endpoint = _register(client, owner.headers, f"{url}/hook")
    fake.fail_next = 3
    _content(client, owner.headers)
    start = datetime.now(UTC)
    for hop in range(8):
        with time_machine.travel(start + timedelta(minutes=10 * hop), tick=True):
            drive(runtime)
    assert len(fake.requests) == 4
    assert len({r.headers["webhook-id"] for r in fake.requests}) == 1, "one event, one id"
    assert all(
        verify_webhook(endpoint["secret"], r.headers, r.body, now=r.at) for r in fake.requests
    )
    with time_machine.travel(start + timedelta(minutes=80), tick=True):
        headers = bearer(client, owner.email, workspace_id=owner.workspace_id)
        log = sorted(_log(client, headers, endpoint["id"]), key=lambda r: r["attempt"])
    assert [r["attempt"] for r in log] == [1, 2, 3, 4]
    assert [r["state"] for r in log] == ["failed", "failed", "failed", "succeeded"]
    assert [r["status_code"] for r in log] == [500, 500, 500, 204]
    assert all(r["next_retry_at"] for r in log[:3])
    assert log[3]["next_retry_at"] is None
    assert all(r["duration_ms"] is not None for r in log)


def test_during_a_rotation_both_secrets_sign(runtime, client, receiver):
    fake, url = receiver
    owner = sign_in(runtime, client, "owner@example.org")
    endpoint = _register(client, owner.headers, f"{url}/hook")
    rotated = client.post(f"{API}/webhooks/{endpoint['id']}/rotate-secret", headers=owner.headers)
    assert rotated.status_code == 200, rotated.text
    new_secret = rotated.json()["secret"]
    assert new_secret != endpoint["secret"]
    assert (
        client.post(f"{API}/webhooks/{endpoint['id']}/test", headers=owner.headers).status_code
        == 202
    )
    drive(runtime)
    [got] = fake.requests
    assert json.loads(got.body)["type"] == "webhook.test"
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    assert verify_webhook(endpoint["secret"], got.headers, got.body)
    assert verify_webhook(new_secret, got.headers, got.body)

    # After the overlap only the new secret signs.
    with time_machine.travel(datetime.now(UTC) + timedelta(days=1, minutes=1), tick=True):
        headers = bearer(client, owner.email, workspace_id=owner.workspace_id)
        client.post(f"{API}/webhooks/{endpoint['id']}/test", headers=headers)
        drive(runtime)
    later = fake.requests[-1]
    assert len(later.headers["webhook-signature"].split(" ")) == 1
    assert verify_webhook(new_secret, later.headers, later.body, now=later.at)
    assert not verify_webhook(endpoint["secret"], later.headers, later.body, now=later.at)


def test_an_endpoint_failing_for_five_days_is_disabled_and_its_admins_told(
    runtime, client, receiver
):
    fake, url = receiver
    owner = sign_in(runtime, client, "owner@example.org")
    endpoint = _register(client, owner.headers, f"{url}/hook")
    fake.fail_next = 10_000
    _content(client, owner.headers)
    start = datetime.now(UTC)
    for hour in range(0, 24 * 4, 6):
        with time_machine.travel(start + timedelta(hours=hour), tick=True):
            drive(runtime)
    with unit_of_work(runtime.sessions) as session:
        rows = session.scalars(select(WebhookDelivery)).all()
        assert all(r.state == "failed" for r in rows)
        assert max(r.scheduled_at for r in rows) <= start + timedelta(days=3, minutes=1)
        assert session.get(WebhookEndpoint, endpoint["id"]).enabled
    with time_machine.travel(start + timedelta(days=5, hours=1), tick=True):
        headers = bearer(client, owner.email, workspace_id=owner.workspace_id)
        _content(client, headers, "Another")
        drive(runtime)
        shown = client.get(f"{API}/webhooks/{endpoint['id']}", headers=headers).json()
        assert shown["enabled"] is False
        assert "5 days" in shown["disabled_reason"]
        _content(client, headers, "A third")
        assert drive(runtime) == 0, "a disabled endpoint gets nothing"
    with unit_of_work(runtime.sessions) as session:
        notes = session.scalars(
            select(Notification).where(Notification.kind == "webhook_disabled")
        ).all()
        assert [n.user_id for n in notes] == [owner.user_id]


def test_a_delivery_can_be_replayed(runtime, client, receiver):
    fake, url = receiver
    owner = sign_in(runtime, client, "owner@example.org")
    endpoint = _register(client, owner.headers, f"{url}/hook")
    _content(client, owner.headers)
    drive(runtime)
    [first] = _log(client, owner.headers, endpoint["id"])
    response = client.post(
        f"{API}/webhooks/{endpoint['id']}/deliveries/{first['id']}/replay", headers=owner.headers
    )
    assert response.status_code == 202, response.text
    drive(runtime)
    assert len(fake.requests) == 2
    assert fake.requests[0].headers["webhook-id"] == fake.requests[1].headers["webhook-id"]
    newest = _log(client, owner.headers, endpoint["id"])[0]
    assert newest["replay_of"] == first["id"]
    assert newest["state"] == "succeeded"


def test_only_admins_manage_and_other_workspaces_see_nothing(runtime, client, receiver):
    _, url = receiver
    owner = sign_in(runtime, client, "owner@example.org")
    endpoint = _register(client, owner.headers, f"{url}/hook")
    editor = sign_in(
        runtime, client, "editor@example.org", role=Role.EDITOR, workspace_id=owner.workspace_id
    )
    body = {"url": f"{url}/hook", "events": ["content.*"]}
    assert client.post(f"{API}/webhooks", json=body, headers=editor.headers).status_code == 403
    path = f"{API}/webhooks/{endpoint['id']}"
    assert client.patch(path, json={"enabled": False}, headers=editor.headers).status_code == 403
    assert client.delete(path, headers=editor.headers).status_code == 403
    assert client.post(f"{path}/rotate-secret", headers=editor.headers).status_code == 403
    assert client.get(path, headers=editor.headers).status_code == 200

    stranger = sign_in(runtime, client, "other@example.org")
    for method, suffix in (("get", ""), ("get", "/deliveries"), ("post", "/test"), ("delete", "")):
        response = getattr(client, method)(path + suffix, headers=stranger.headers)
        assert response.status_code == 404, (method, suffix, response.text)
    assert client.get(f"{API}/webhooks", headers=stranger.headers).json()["items"] == []


def test_the_secret_is_shown_once_and_sealed_at_rest(runtime, client, receiver):
    _, url = receiver
    owner = sign_in(runtime, client, "owner@example.org")
    endpoint = _register(client, owner.headers, f"{url}/hook")
    secret = endpoint["secret"]
    listed = client.get(f"{API}/webhooks", headers=owner.headers)
    one = client.get(f"{API}/webhooks/{endpoint['id']}", headers=owner.headers)
    for response in (listed, one):
        assert response.status_code == 200
        assert secret not in response.text
        assert "secret" not in json.dumps(response.json()).replace("previous_secret_expires_at", "")
    with unit_of_work(runtime.sessions) as session:
        row = session.get(WebhookEndpoint, endpoint["id"])
        assert secret.encode() not in row.secret_sealed
        assert secret.removeprefix("whsec_").encode() not in row.secret_sealed


def test_unknown_events_and_bad_urls_are_refused(runtime, client, receiver):
    _, url = receiver
    owner = sign_in(runtime, client, "owner@example.org")
    bad = client.post(
        f"{API}/webhooks",
        json={"url": f"{url}/hook", "events": ["content.exploded"]},
        headers=owner.headers,
    )
    assert bad.status_code == 422
    assert "content.exploded" in bad.text


REFUSED_TARGETS = [
    "http://127.0.0.1:{port}/hook",
    "http://[::1]:{port}/hook",
    "http://0x7f.1:{port}/hook",
    "http://2130706433:{port}/hook",
    "http://017700000001:{port}/hook",
    "http://169.254.169.254/latest/meta-data",
    "http://[::ffff:127.0.0.1]:{port}/hook",
    "http://localhost.:{port}/hook",
    "http://a@127.0.0.1:{port}/hook",
    "http://100.64.0.1/hook",
]


def test_internal_targets_are_refused_and_the_canary_hears_nothing(
    runtime, client, receiver, canary
):
    """SSRF (R18): every form of an internal address is refused when saved; a receiver
    that redirects to loopback is not followed; a URL changed behind the API's back is
    refused at delivery. The canary on 127.0.0.1 receives nothing throughout.
    """
    fake, url = receiver
    canary_fake, canary_url = canary
    port = canary_url.rsplit(":", 1)[1]
    owner = sign_in(runtime, client, "owner@example.org")
    for target in REFUSED_TARGETS:
        response = client.post(
            f"{API}/webhooks",
            json={"url": target.format(port=port), "events": ["content.*"]},
            headers=owner.headers,
        )
        assert response.status_code == 422, (target, response.text)
        assert "refused" in response.json()["detail"]
    endpoint = _register(client, owner.headers, f"{url}/hook")
    patched = client.patch(
        f"{API}/webhooks/{endpoint['id']}",
        json={"url": f"{canary_url}/hook"},
        headers=owner.headers,
    )
    assert patched.status_code == 422

    # A public-looking (allowed) receiver that redirects to the canary.
    fake.redirect_to = f"{canary_url}/hook"
    redirecting = _register(client, owner.headers, f"{url}/redirect")
    client.post(f"{API}/webhooks/{redirecting['id']}/test", headers=owner.headers)
    drive(runtime)
    [row] = [r for r in _log(client, owner.headers, redirecting["id"]) if r["attempt"] == 1]
    assert row["state"] == "failed"
    assert row["status_code"] == 302
    assert row["error"] == "redirects are not followed"

    # Checked again at delivery: a URL that became internal is refused before connecting.
    with unit_of_work(runtime.sessions) as session:
        session.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == endpoint["id"])
            .values(url=f"{canary_url}/hook")
        )
    client.post(f"{API}/webhooks/{endpoint['id']}/test", headers=owner.headers)
    drive(runtime)
    [row] = [r for r in _log(client, owner.headers, endpoint["id"]) if r["attempt"] == 1]
    assert row["state"] == "failed"
    assert row["status_code"] is None
    assert "not allowed" in row["error"]
    assert canary_fake.requests == []
