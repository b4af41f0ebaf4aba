"""Publishing end to end against a served sandbox platform: compose, preflight, publish,
back off, caps, rejections, time zones, reconciliation, and the publication API.

The pipeline is driven in-process (``drive``) exactly as a worker runs it: the
dispatcher finds the work, ``pipeline.run`` claims and sends, ``pipeline.reconcile``
settles. Time is moved with time-machine where the test is about waiting.
"""

from __future__ import annotations

import io
import json
import sqlite3
from contextlib import closing
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import time_machine
from PIL import Image
from sqlalchemy import func, select

from plexus.db import unit_of_work
from plexus.models.connections import Connection
from plexus.models.content import Publication
from plexus.providers.base import ProviderRetryable, raise_for_transport
from plexus.publishing import pipeline, states

from auth_helpers import sign_in
from connection_helpers import (
    connect_sandbox,
    sandbox_client_fixture,  # noqa: F401 - a fixture
    sandbox_env_fixture,  # noqa: F401 - a fixture
    sandbox_fixture,  # noqa: F401 - a fixture
    sandbox_runtime_fixture,  # noqa: F401 - a fixture
    stored_connection,
)

API = "/api/v1"


def _jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), "red").save(out, "JPEG")
    return out.getvalue()


def drive(rt, rounds: int = 5) -> None:
    """Run the dispatcher and every job it finds, a few rounds, as workers would."""
    for _ in range(rounds):
        found = pipeline.dispatch(rt)
        if not (found.due or found.unparked or found.reconcile or found.recovered):
            return
        for publication_id in (*found.due, *found.unparked):
            pipeline.run(rt, publication_id)
        for publication_id in (*found.reconcile, *found.recovered):
            pipeline.reconcile(rt, publication_id)


def _owner(rt, client, email="owner@example.org"):
    return sign_in(rt, client, email)


def _content(client, headers, **fields) -> dict:
    body = {"title": "Launch", "body": "**Hello** world, see [our site](https://example.org)."}
    body.update(fields)
    response = client.post(f"{API}/content", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def _approve(client, headers, content_id: int) -> None:
    response = client.post(f"{API}/content/{content_id}/approve", headers=headers)
    assert response.status_code == 200, response.text


def _publish(
    client, headers, content_id: int, connection_ids: list[int], **extra
) -> httpx.Response:
    return client.post(
        f"{API}/content/{content_id}/publish",
        json={"connection_ids": connection_ids, **extra},
        headers=headers,
    )


def _publication(client, headers, publication_id: int) -> dict:
    response = client.get(f"{API}/publications/{publication_id}", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def _platform_posts(sandbox) -> list[tuple[str, str, str]]:
    with closing(sqlite3.connect(sandbox.platform.database)) as db:
        return list(db.execute("SELECT id, text, media FROM posts WHERE deleted = 0"))


def _ready(rt, client, email="owner@example.org"):
    owner = _owner(rt, client, email)
    connection = connect_sandbox(client, owner.headers)
    return owner, connection["id"]


# --------------------------------------------------------------------------- the main job


def test_compose_with_an_image_publish_to_the_sandbox_and_see_it_published(
    sandbox, sandbox_runtime, sandbox_client
):
    """The README's promise: with no credentials, a post with an image reaches the
    sandbox platform through the queue and shows as published (R8, R12, R18).
    """
    client = sandbox_client
    owner, connection_id = _ready(sandbox_runtime, client)
    upload = client.post(f"{API}/media?filename=cat.jpg", content=_jpeg(), headers=owner.headers)
    assert upload.status_code == 201, upload.text
    item = _content(client, owner.headers, media_ids=[upload.json()["id"]], hashtags=["launch"])
    _approve(client, owner.headers, item["id"])

    check = client.post(
        f"{API}/content/{item['id']}/preflight",
        json={"connection_ids": [connection_id]},
        headers=owner.headers,
    )
    assert check.status_code == 200, check.text
    assert check.json() == {"ok": True, "problems": []}

    response = _publish(client, owner.headers, item["id"], [connection_id])
    assert response.status_code == 201, response.text
    [created] = response.json()["publications"]
    assert created["state"] == "queued"
    assert sandbox.platform.count("/api/posts") == 0, "sent before a worker ran"

    drive(sandbox_runtime)

    shown = _publication(client, owner.headers, created["id"])
    assert shown["state"] == "published"
    assert shown["attempts"] == 1
    [(post_id, text, media)] = _platform_posts(sandbox)
    assert shown["remote_id"] == post_id
    assert shown["remote_url"].endswith(f"/sandbox/posts/{post_id}")
    # Plain text the sandbox's way: Markdown gone, the link's address written out, and
    # the item's hashtag appended.
    assert "**" not in text
    assert "Hello world" in text
    assert "https://example.org" in text
    assert text.rstrip().endswith("#launch")
    [stored] = json.loads(media)
    assert stored["content_type"] == "image/jpeg"
    assert (
        client.get(f"{API}/content/{item['id']}", headers=owner.headers).json()["status"]
        == "published"
    )
    listed = client.get(f"{API}/publications?state=published", headers=owner.headers).json()
    assert [p["id"] for p in listed["items"]] == [created["id"]]
    assert listed["total"] == 1


def test_publishing_twice_runs_the_job_once_at_the_platform(
    sandbox, sandbox_runtime, sandbox_client
):
    """A job delivered twice (the dispatcher and its own schedule) sends once: the
    second claim finds the publication taken.
    """
    owner, connection_id, item = _approved(sandbox_runtime, sandbox_client)
    [created] = _publish(sandbox_client, owner.headers, item["id"], [connection_id]).json()[
        "publications"
    ]
    first = pipeline.run(sandbox_runtime, created["id"])
    second = pipeline.run(sandbox_runtime, created["id"])
    assert (first.state, second.state) == ("published", "skipped")
    assert sandbox.platform.count("/api/posts") == 1


def test_the_same_content_cannot_be_queued_twice_to_one_connection(
    sandbox, sandbox_runtime, sandbox_client
):
    owner, connection_id, item = _approved(sandbox_runtime, sandbox_client)
    assert _publish(sandbox_client, owner.headers, item["id"], [connection_id]).status_code == 201
    again = _publish(sandbox_client, owner.headers, item["id"], [connection_id])
    assert again.status_code == 409, again.text
    assert again.json()["connection_ids"] == [connection_id]


# --------------------------------------------------------------------------- approval


def test_contributors_write_and_submit_editors_approve_and_publish(
    sandbox, sandbox_runtime, sandbox_client
):
    from plexus.authz.permissions import Role

    client = sandbox_client
    owner, connection_id = _ready(sandbox_runtime, client)
    writer = sign_in(
        sandbox_runtime,
        client,
        "writer@example.org",
        role=Role.CONTRIBUTOR,
        workspace_id=owner.workspace_id,
    )
    item = _content(client, writer.headers)
    assert (
        client.post(f"{API}/content/{item['id']}/submit", headers=writer.headers).json()["status"]
        == "in_review"
    )
    assert (
        client.post(f"{API}/content/{item['id']}/approve", headers=writer.headers).status_code
        == 403
    )
    assert _publish(client, writer.headers, item["id"], [connection_id]).status_code == 403
    # Not approved yet: the workspace publishes approved content only.
    refused = _publish(client, owner.headers, item["id"], [connection_id])
    assert refused.status_code == 409, refused.text
    _approve(client, owner.headers, item["id"])
    # An edit after approval is a new, unapproved version.
    edited = client.patch(
        f"{API}/content/{item['id']}", json={"body": "changed"}, headers=writer.headers
    ).json()
    assert (edited["status"], edited["version"], edited["approved_version"]) == ("draft", 2, 1)
    assert _publish(client, owner.headers, item["id"], [connection_id]).status_code == 409
    _approve(client, owner.headers, item["id"])
    response = _publish(client, owner.headers, item["id"], [connection_id])
    assert response.status_code == 201, response.text
    assert response.json()["publications"][0]["version"] == 2
    with unit_of_work(sandbox_runtime.sessions) as session:
        assert session.scalar(select(func.count()).select_from(Publication)) == 1


def test_a_workspace_without_approval_publishes_drafts(sandbox, sandbox_runtime, sandbox_client):
    owner, connection_id = _ready(sandbox_runtime, sandbox_client)
    turned_off = sandbox_client.patch(
        f"{API}/workspaces/{owner.workspace_id}",
        json={"require_approval": False},
        headers=owner.headers,
    )
    assert turned_off.status_code == 200, turned_off.text
    assert turned_off.json()["require_approval"] is False
    item = _content(sandbox_client, owner.headers)
    assert _publish(sandbox_client, owner.headers, item["id"], [connection_id]).status_code == 201


# --------------------------------------------------------------------------- preflight


def test_preflight_reports_every_problem_of_every_target_and_publish_sends_nothing(
    sandbox, sandbox_runtime, sandbox_client
):
    client = sandbox_client
    owner, first = _ready(sandbox_runtime, client)
    second = connect_sandbox(client, owner.headers, name="Second")["id"]
    images = []
    for colour in ("red", "green", "blue", "white", "black"):
        out = io.BytesIO()
        Image.new("RGB", (40, 30), colour).save(out, "PNG")
        uploaded = client.post(
            f"{API}/media?filename=x.png", content=out.getvalue(), headers=owner.headers
        )
        images.append(uploaded.json()["id"])
    item = _content(
        client,
        owner.headers,
        body="short and fine",
        overrides={str(first): {"text": "x" * 600, "media_ids": images}},
    )
    _approve(client, owner.headers, item["id"])

    check = client.post(
        f"{API}/content/{item['id']}/preflight",
        json={"connection_ids": [first, second, 999_999]},
        headers=owner.headers,
    ).json()
    assert check["ok"] is False
    problems = {(p["connection_id"], p["field"]) for p in check["problems"]}
    assert (first, "text") in problems
    assert (first, "media") in problems
    assert (999_999, "connection") in problems
    assert not any(p["connection_id"] == second for p in check["problems"])

    refused = _publish(client, owner.headers, item["id"], [first, second])
    assert refused.status_code == 422, refused.text
    assert {p["connection_id"] for p in refused.json()["problems"]} == {first}
    with unit_of_work(sandbox_runtime.sessions) as session:
        assert session.scalar(select(func.count()).select_from(Publication)) == 0

    valid_only = _publish(client, owner.headers, item["id"], [first, second], valid_only=True)
    assert valid_only.status_code == 201, valid_only.text
    assert [p["connection_id"] for p in valid_only.json()["publications"]] == [second]
    assert {p["connection_id"] for p in valid_only.json()["problems"]} == {first}


# --------------------------------------------------------------------------- failures


def _approved(rt, client):
    """A signed-in owner, a sandbox connection, and an approved item."""
    owner, connection_id = _ready(rt, client)
    item = _content(client, owner.headers)
    _approve(client, owner.headers, item["id"])
    return owner, connection_id, item


def _one_publication(rt, client, *, fault: str | None = None):
    owner, connection_id, item = _approved(rt, client)
    if fault is not None:
        _arm(rt, connection_id, fault)
    response = _publish(client, owner.headers, item["id"], [connection_id])
    assert response.status_code == 201, response.text
    return owner, connection_id, response.json()["publications"][0]["id"]


def _arm(rt, connection_id: int, fault: str) -> None:
    """Ask the sandbox platform to answer the account's next request with ``fault``."""
    from plexus.connections import calls

    snapshot = calls.load(rt, connection_id)
    api_url = rt.settings.provider_values("sandbox")["api_url"]
    response = httpx.post(
        f"{api_url}/faults",
        json={"fault": fault},
        headers={"authorization": f"Bearer {snapshot.link.credentials.access_token}"},
    )
    assert response.status_code in {200, 201, 204}, response.text


def _row(rt, publication_id: int) -> Publication:
    with unit_of_work(rt.sessions) as session:
        row = session.get(Publication, publication_id)
        session.expunge(row)
        return row


def test_a_429_with_retry_after_7_is_not_called_again_for_7_seconds(
    sandbox, sandbox_runtime, sandbox_client
):
    _, _, publication_id = _one_publication(sandbox_runtime, sandbox_client, fault="rate_limited")
    start = datetime.now(UTC)
    with time_machine.travel(start, tick=False) as clock:
        assert pipeline.run(sandbox_runtime, publication_id).state == "queued"
        assert sandbox.platform.count("/api/posts") == 1
        row = _row(sandbox_runtime, publication_id)
        assert row.state == states.QUEUED
        assert row.next_attempt_at >= start + timedelta(seconds=7)
        clock.shift(6.5)
        drive(sandbox_runtime)
        pipeline.run(sandbox_runtime, publication_id)
        assert sandbox.platform.count("/api/posts") == 1, "called again inside Retry-After"
        clock.shift(2.0)  # past Retry-After and its jitter
        drive(sandbox_runtime)
    assert sandbox.platform.count("/api/posts") == 2
    assert _row(sandbox_runtime, publication_id).state == states.PUBLISHED


def test_a_server_error_backs_off_and_then_succeeds(sandbox, sandbox_runtime, sandbox_client):
    _, _, publication_id = _one_publication(sandbox_runtime, sandbox_client, fault="server_error")
    start = datetime.now(UTC)
    with time_machine.travel(start, tick=False) as clock:
        assert pipeline.run(sandbox_runtime, publication_id).state == "queued"
        row = _row(sandbox_runtime, publication_id)
        base = sandbox_runtime.settings.publish_backoff_base_seconds
        waited = (row.next_attempt_at - start).total_seconds()
        assert base * 0.5 <= waited <= base * 1.5 + 0.01
        clock.shift(waited + 1)
        drive(sandbox_runtime)
    row = _row(sandbox_runtime, publication_id)
    assert (row.state, row.attempts) == (states.PUBLISHED, 2)


def test_a_rejection_fails_at_once_with_the_platforms_reason_and_is_not_retried(
    sandbox, sandbox_runtime, sandbox_client
):
    owner, _, publication_id = _one_publication(sandbox_runtime, sandbox_client, fault="rejected")
    drive(sandbox_runtime)
    with time_machine.travel(datetime.now(UTC) + timedelta(hours=2), tick=False):
        drive(sandbox_runtime)
    shown = _publication(sandbox_client, owner.headers, publication_id)
    assert shown["state"] == "failed"
    assert shown["attempts"] == 1
    assert shown["last_error"]
    assert sandbox.platform.count("/api/posts") == 1


def test_revoked_credentials_park_the_publication_until_reconnected(
    sandbox, sandbox_runtime, sandbox_client
):
    _, connection_id, publication_id = _one_publication(
        sandbox_runtime, sandbox_client, fault="unauthorized"
    )
    drive(sandbox_runtime)
    assert _row(sandbox_runtime, publication_id).state == states.PARKED
    assert stored_connection(sandbox_runtime, connection_id).status == "needs_reauth"
    drive(sandbox_runtime)
    assert _row(sandbox_runtime, publication_id).state == states.PARKED, "sent while broken"
    assert sandbox.platform.count("/api/posts") == 1
    # What a successful reconnect does to the row (the sandbox makes a new account on
    # every connect, so it cannot be reconnected to the same one through the API).
    with unit_of_work(sandbox_runtime.sessions) as session:
        session.get(Connection, connection_id).status = "active"
    drive(sandbox_runtime)
    assert _row(sandbox_runtime, publication_id).state == states.PUBLISHED


def test_a_daily_cap_of_3_lets_exactly_3_through_and_schedules_the_rest_for_the_next_window(
    sandbox, sandbox_env, tmp_path
):
    from fastapi.testclient import TestClient

    from plexus.app import create_app
    from plexus.config import load_settings
    from plexus.runtime import init_runtime

    rt = init_runtime(
        load_settings(environ={**sandbox_env, "PLEXUS_PROVIDER_SANDBOX_DAILY_CAP": "3"})
    )
    try:
        with TestClient(create_app(rt.settings, rt), raise_server_exceptions=False) as client:
            owner, connection_id = _ready(rt, client)
            ids = []
            for number in range(5):
                item = _content(client, owner.headers, title=f"Post {number}")
                _approve(client, owner.headers, item["id"])
                ids.append(
                    _publish(client, owner.headers, item["id"], [connection_id]).json()[
                        "publications"
                    ][0]["id"]
                )
            start = datetime.now(UTC)
            drive(rt)
            rows = [_row(rt, i) for i in ids]
            assert [r.state for r in rows].count(states.PUBLISHED) == 3
            waiting = [r for r in rows if r.state != states.PUBLISHED]
            assert len(waiting) == 2
            for row in waiting:
                assert row.state == states.QUEUED
                assert row.next_attempt_at >= start + timedelta(hours=23, minutes=59)
                assert "daily cap" in (row.last_error or "")
            assert sandbox.platform.count("/api/posts") == 3
            with time_machine.travel(start + timedelta(hours=24, minutes=1), tick=False):
                drive(rt)
            assert all(_row(rt, i).state == states.PUBLISHED for i in ids)
            assert sandbox.platform.count("/api/posts") == 5
    finally:
        rt.dispose()


# --------------------------------------------------------------------------- time zones


@pytest.mark.parametrize(
    ("local", "expected_utc"),
    [
        ("2027-03-28T09:00:00", "2027-03-28T07:00:00Z"),  # the day clocks go forward
        ("2027-10-31T09:00:00", "2027-10-31T08:00:00Z"),  # the day clocks go back
        ("2027-03-27T09:00:00", "2027-03-27T08:00:00Z"),  # the day before: winter time
    ],
)
def test_a_post_scheduled_for_9_in_berlin_goes_out_at_the_right_utc_instant(
    sandbox, sandbox_runtime, sandbox_client, local, expected_utc
):
    due = datetime.fromisoformat(expected_utc)
    with time_machine.travel(due - timedelta(days=2), tick=False) as clock:
        owner, connection_id, item = _approved(sandbox_runtime, sandbox_client)
        response = _publish(
            sandbox_client,
            owner.headers,
            item["id"],
            [connection_id],
            scheduled_at=local,
            timezone="Europe/Berlin",
        )
        assert response.status_code == 201, response.text
        [created] = response.json()["publications"]
        assert created["state"] == "scheduled"
        assert datetime.fromisoformat(created["scheduled_at"]) == due
        assert created["scheduled_at_local"].startswith(local)
        clock.move_to(due - timedelta(seconds=1))
        drive(sandbox_runtime)
        assert sandbox.platform.count("/api/posts") == 0, "sent before its time"
        clock.move_to(due + timedelta(seconds=1))
        drive(sandbox_runtime)
        assert sandbox.platform.count("/api/posts") == 1


@pytest.mark.parametrize(
    ("local", "message"),
    [("2027-03-28T02:30:00", "does not exist"), ("2027-10-31T02:30:00", "happens twice")],
)
def test_a_local_time_a_clock_change_skips_or_repeats_is_refused(
    sandbox, sandbox_runtime, sandbox_client, local, message
):
    with time_machine.travel(datetime(2027, 3, 1, tzinfo=UTC), tick=False):
        owner, connection_id, item = _approved(sandbox_runtime, sandbox_client)
        response = _publish(
            sandbox_client,
            owner.headers,
            item["id"],
            [connection_id],
            scheduled_at=local,
            timezone="Europe/Berlin",
        )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert message in response.json()["detail"]


def test_an_unknown_time_zone_is_refused(sandbox, sandbox_runtime, sandbox_client):
    owner, connection_id, item = _approved(sandbox_runtime, sandbox_client)
    response = _publish(
        sandbox_client,
        owner.headers,
        item["id"],
        [connection_id],
        scheduled_at="2030-01-01T09:00:00",
        timezone="Mars/Olympus",
    )
    assert response.status_code == 422, response.text


# --------------------------------------------------------------------------- reconciliation


def test_a_worker_dying_after_sending_is_reconciled_not_sent_again(
    sandbox, sandbox_runtime, sandbox_client
):
    """Claimed, sent, and the worker died before recording: past the lease the
    dispatcher finds it, the platform is asked, and the post it holds is recorded.
    """
    _, connection_id, publication_id = _one_publication(sandbox_runtime, sandbox_client)
    job = pipeline.claim(sandbox_runtime, publication_id)
    assert isinstance(job, pipeline.Job)
    from plexus.connections import calls

    post = job.planned.post(sandbox_runtime, job.idempotency_key)
    sent = calls.with_connection(
        sandbox_runtime, connection_id, lambda p, link: p.publish(link, post)
    )
    # ... and here the worker is killed: nothing recorded.
    assert _row(sandbox_runtime, publication_id).state == states.PUBLISHING
    drive(sandbox_runtime)
    assert _row(sandbox_runtime, publication_id).state == states.PUBLISHING, "lease not over"
    lease = sandbox_runtime.settings.publish_lease_seconds
    with time_machine.travel(datetime.now(UTC) + timedelta(seconds=lease + 1), tick=False):
        drive(sandbox_runtime)
    row = _row(sandbox_runtime, publication_id)
    assert (row.state, row.remote_id) == (states.PUBLISHED, sent.external_id)
    assert sandbox.platform.count("/api/posts") == 1
    assert len(_platform_posts(sandbox)) == 1


def test_a_worker_dying_before_sending_is_sent_once_after_the_platform_says_it_has_nothing(
    sandbox, sandbox_runtime, sandbox_client
):
    _, _, publication_id = _one_publication(sandbox_runtime, sandbox_client)
    assert isinstance(pipeline.claim(sandbox_runtime, publication_id), pipeline.Job)
    lease = sandbox_runtime.settings.publish_lease_seconds
    with time_machine.travel(datetime.now(UTC) + timedelta(seconds=lease + 1), tick=False):
        drive(sandbox_runtime)
    assert _row(sandbox_runtime, publication_id).state == states.PUBLISHED
    assert sandbox.platform.count("/api/posts") == 1


def test_only_a_request_that_went_out_counts_as_maybe_delivered():
    request = httpx.Request("POST", "https://platform.example/posts")
    assert raise_for_transport(httpx.ReadTimeout("slow", request=request), "x").maybe_delivered
    assert raise_for_transport(
        httpx.RemoteProtocolError("cut", request=request), "x"
    ).maybe_delivered
    refused = raise_for_transport(httpx.ConnectError("refused", request=request), "x")
    assert isinstance(refused, ProviderRetryable)
    assert not refused.maybe_delivered
    assert not raise_for_transport(
        httpx.ConnectTimeout("slow", request=request), "x"
    ).maybe_delivered


# --------------------------------------------------------------------------- the API


def test_cancel_reschedule_retry_and_delete_at_the_platform(
    sandbox, sandbox_runtime, sandbox_client
):
    client = sandbox_client
    owner, connection_id = _ready(sandbox_runtime, client)
    item = _content(client, owner.headers)
    _approve(client, owner.headers, item["id"])
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    [created] = _publish(
        client, owner.headers, item["id"], [connection_id], scheduled_at=later
    ).json()["publications"]
    moved = client.post(
        f"{API}/publications/{created['id']}/reschedule",
        json={"scheduled_at": "2027-06-01T12:00:00", "timezone": "America/New_York"},
        headers=owner.headers,
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["scheduled_at"].startswith("2027-06-01T16:00:00")
    assert moved.json()["timezone"] == "America/New_York"
    cancelled = client.post(f"{API}/publications/{created['id']}/cancel", headers=owner.headers)
    assert cancelled.json()["state"] == "cancelled"
    assert (
        client.post(f"{API}/publications/{created['id']}/cancel", headers=owner.headers).status_code
        == 409
    )

    # A failed one is retried on request; a published one is deleted at the platform.
    _arm(sandbox_runtime, connection_id, "rejected")
    [now_one] = _publish(client, owner.headers, item["id"], [connection_id]).json()["publications"]
    drive(sandbox_runtime)
    assert _publication(client, owner.headers, now_one["id"])["state"] == "failed"
    retried = client.post(f"{API}/publications/{now_one['id']}/retry", headers=owner.headers)
    assert retried.json()["state"] == "queued"
    drive(sandbox_runtime)
    assert _publication(client, owner.headers, now_one["id"])["state"] == "published"
    deleted = client.delete(f"{API}/publications/{now_one['id']}/post", headers=owner.headers)
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["state"] == "deleted"
    assert _platform_posts(sandbox) == []


def test_another_workspace_sees_none_of_it(sandbox, sandbox_runtime, sandbox_client):
    owner, _, publication_id = _one_publication(sandbox_runtime, sandbox_client)
    stranger = sign_in(sandbox_runtime, sandbox_client, "stranger@example.org")
    assert (
        sandbox_client.get(
            f"{API}/publications/{publication_id}", headers=stranger.headers
        ).status_code
        == 404
    )
    assert (
        sandbox_client.post(
            f"{API}/publications/{publication_id}/cancel", headers=stranger.headers
        ).status_code
        == 404
    )
    assert sandbox_client.get(f"{API}/publications", headers=stranger.headers).json()["total"] == 0
    assert _publication(sandbox_client, owner.headers, publication_id)["state"] == "queued"


def test_calendar_range_lists_what_is_scheduled_inside_it(sandbox, sandbox_runtime, sandbox_client):
    owner, connection_id = _ready(sandbox_runtime, sandbox_client)
    for day in (3, 10):
        item = _content(sandbox_client, owner.headers, title=f"Day {day}")
        _approve(sandbox_client, owner.headers, item["id"])
        when = (datetime.now(UTC) + timedelta(days=day)).isoformat()
        assert (
            _publish(
                sandbox_client, owner.headers, item["id"], [connection_id], scheduled_at=when
            ).status_code
            == 201
        )
    start = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    end = (datetime.now(UTC) + timedelta(days=7)).isoformat()
    listed = sandbox_client.get(
        f"{API}/publications", params={"start": start, "end": end}, headers=owner.headers
    )
    assert listed.status_code == 200, listed.text
    assert listed.json()["total"] == 1


def test_returned_content_needs_approval_again(sandbox, sandbox_runtime, sandbox_client):
    owner, connection_id, item = _approved(sandbox_runtime, sandbox_client)
    returned = sandbox_client.post(f"{API}/content/{item['id']}/return", headers=owner.headers)
    assert returned.json()["approved_version"] is None
    refused = _publish(sandbox_client, owner.headers, item["id"], [connection_id])
    assert refused.status_code == 409, refused.text


def test_content_being_published_cannot_be_deleted_until_settled(
    sandbox, sandbox_runtime, sandbox_client
):
    owner, _, publication_id = _one_publication(sandbox_runtime, sandbox_client)
    content_id = _publication(sandbox_client, owner.headers, publication_id)["content_id"]
    path = f"{API}/content/{content_id}"
    assert sandbox_client.delete(path, headers=owner.headers).status_code == 409
    sandbox_client.post(f"{API}/publications/{publication_id}/cancel", headers=owner.headers)
    assert sandbox_client.delete(path, headers=owner.headers).status_code == 204


def test_media_that_cannot_be_read_sends_nothing_and_waits(
    sandbox, sandbox_runtime, sandbox_client
):
    client = sandbox_client
    owner, connection_id = _ready(sandbox_runtime, client)
    upload = client.post(f"{API}/media?filename=a.jpg", content=_jpeg(), headers=owner.headers)
    item = _content(client, owner.headers, media_ids=[upload.json()["id"]])
    _approve(client, owner.headers, item["id"])
    [created] = _publish(client, owner.headers, item["id"], [connection_id]).json()["publications"]
    stored = sandbox_runtime.settings.data_dir / "media"
    for path in stored.rglob(upload.json()["sha256"]):
        path.unlink()
    drive(sandbox_runtime)
    row = _row(sandbox_runtime, created["id"])
    assert row.state == states.QUEUED
    assert "could not be read" in (row.last_error or "")
    assert sandbox.platform.count("/api/posts") == 0
