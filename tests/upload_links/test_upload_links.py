"""Public upload links, black-box through the HTTP API: who may create and review them
(V8.2.1, V8.2.2, V8.4.1), the token (V7.2.3, V11.5.1: 256 random bits, shown once,
stored as a keyed hash), one answer for every unusable token (V6.4.1), uses that no race
can exceed (V2.3.4), rate limits (V2.4.1), and uploads that go through every media check
into a review queue (V5.2.1, V5.2.2, V5.2.4)."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import func, select, update

from plexus.app import create_app
from plexus.authz.permissions import Role
from plexus.config import load_settings
from plexus.db import unit_of_work
from plexus.models.audit import AuditEvent
from plexus.models.content import UploadLink, UploadSubmission
from plexus.models.media import Media
from plexus.runtime import init_runtime

from auth_helpers import sign_in

LINKS = "/api/v1/upload-links"
QUEUE = f"{LINKS}/submissions"
PUBLIC = "/api/v1/public/uploads"
MEDIA = "/api/v1/media"
CONTENT = "/api/v1/content"
#: Generous budgets for every test but the ones about the budgets themselves.
ROOMY_LIMITS = "upload_link=1000/hour;upload_link_ip=1000/hour"


@pytest.fixture
def env_vars(env_vars: dict[str, str]) -> dict[str, str]:
    return {**env_vars, "PLEXUS_RATE_LIMITS": ROOMY_LIMITS}


@pytest.fixture
def editor(runtime, client):
    return sign_in(runtime, client, "editor@example.com", role=Role.EDITOR)


@pytest.fixture
def item(client, editor):
    response = client.post(CONTENT, json={"title": "Secret launch plan"}, headers=editor.headers)
    assert response.status_code == 201, response.text
    return response.json()


# --- helpers ---------------------------------------------------------------------------


def _image(shade: int = 0, fmt: str = "PNG", size: tuple[int, int] = (32, 24)) -> bytes:
    """A small image; a different ``shade`` gives different (cleaned) bytes."""
    image = Image.new("RGB", size, (200, shade % 256, (shade * 7) % 256))
    image.putpixel((0, 0), (0, 0, 255))
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


def _create(client, who, content_id: int, **overrides):
    body = {
        "content_id": content_id,
        "label": "Photos from the team day",
        "expires_in_hours": 24,
        "max_uses": 5,
        "allowed_kinds": ["image"],
        **overrides,
    }
    return client.post(LINKS, json=body, headers=who.headers)


def _link(client, who, content_id: int, **overrides) -> dict:
    response = _create(client, who, content_id, **overrides)
    assert response.status_code == 201, response.text
    return response.json()


def _send(client, token: str, body: bytes, filename: str = "photo.png", **params):
    """An anonymous upload: no Authorization header, no cookie."""
    return client.post(f"{PUBLIC}/{token}", params={"filename": filename, **params}, content=body)


def _db(runtime, statement):
    with unit_of_work(runtime.sessions) as session:
        rows = list(session.scalars(statement))
        session.expunge_all()
        return rows


def _count(runtime, model) -> int:
    with unit_of_work(runtime.sessions) as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def _audit(runtime, event: str) -> list[AuditEvent]:
    return _db(runtime, select(AuditEvent).where(AuditEvent.event == event))


def _files(runtime) -> list:
    root = runtime.settings.data_dir / "media"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def _problem_shape(response) -> dict:
    """A problem body without its request id (which differs on every request)."""
    assert response.headers["content-type"] == "application/problem+json"
    return {k: v for k, v in response.json().items() if k != "request_id"}


# --- links -------------------------------------------------------------------------------


def test_create_list_read_revoke(client, runtime, editor, item):
    created = _link(client, editor, item["id"], allowed_kinds=["video", "image"])
    token = created["token"]
    assert created["url"].endswith(f"/api/v1/public/uploads/{token}")
    assert created["allowed_kinds"] == ["image", "video"]
    assert (created["uses"], created["uses_left"], created["state"]) == (0, 5, "active")
    expires = datetime.fromisoformat(created["expires_at"])
    assert timedelta(hours=23) < expires - datetime.now(UTC) <= timedelta(hours=24)

    listed = client.get(LINKS, params={"content_id": item["id"]}, headers=editor.headers)
    assert listed.status_code == 200, listed.text
    page = listed.json()
    assert (page["total"], [r["id"] for r in page["items"]]) == (1, [created["id"]])
    one = client.get(f"{LINKS}/{created['id']}", headers=editor.headers)
    # The token (and its hash) never appear again.
    for response in (listed, one):
        assert token not in response.text
        assert "token" not in response.text
    assert client.get(LINKS, params={"content_id": 999}, headers=editor.headers).json() == {
        "items": [],
        "total": 0,
        "limit": 50,
        "offset": 0,
    }

    revoked = client.post(f"{LINKS}/{created['id']}/revoke", headers=editor.headers)
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["state"] == "revoked"
    assert client.post(f"{LINKS}/{created['id']}/revoke", headers=editor.headers).status_code == 409
    assert client.get(f"{PUBLIC}/{token}").status_code == 404
    assert len(_audit(runtime, "upload:link:created")) == 1
    assert len(_audit(runtime, "upload:link:revoked")) == 1


def test_the_token_is_random_shown_once_and_stored_as_a_keyed_hash(client, runtime, editor, item):
    """V7.2.3, V11.5.1: 256 bits from the CSPRNG; the database holds only its HMAC."""
    tokens = [_link(client, editor, item["id"])["token"] for _ in range(5)]
    assert len(set(tokens)) == 5
    for token in tokens:
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}", token)  # 32 bytes, base64url
    rows = _db(runtime, select(UploadLink).order_by(UploadLink.id))
    assert [r.token_hash for r in rows] == [
        runtime.tokens.digest("upload-link", token) for token in tokens
    ]
    for row, token in zip(rows, tokens, strict=True):
        # Keyed: not even the plain SHA-256 of the token, which a dump could be matched to.
        assert row.token_hash != hashlib.sha256(token.encode()).hexdigest()
        assert token not in json.dumps([str(v) for v in vars(row).values()])


def test_who_may_create_list_and_review(client, runtime, editor, item):
    """V8.2.1: content:publish to create, revoke and review; content:read to list."""
    workspace = editor.workspace_id
    contributor = sign_in(
        runtime, client, "contrib@example.com", role=Role.CONTRIBUTOR, workspace_id=workspace
    )
    viewer = sign_in(
        runtime, client, "viewer@example.com", role=Role.VIEWER, workspace_id=workspace
    )
    assert _create(client, contributor, item["id"]).status_code == 403
    assert _create(client, viewer, item["id"]).status_code == 403
    link = _link(client, editor, item["id"])
    assert _send(client, link["token"], _image()).status_code == 202
    for who in (contributor, viewer):
        assert client.get(LINKS, headers=who.headers).status_code == 200
        assert client.get(f"{LINKS}/{link['id']}", headers=who.headers).status_code == 200
        assert client.post(f"{LINKS}/{link['id']}/revoke", headers=who.headers).status_code == 403
        assert client.get(QUEUE, headers=who.headers).status_code == 403
        assert client.post(f"{QUEUE}/1/accept", headers=who.headers).status_code == 403
        assert client.post(f"{QUEUE}/1/reject", headers=who.headers).status_code == 403
    assert client.get(LINKS).status_code == 401
    assert _count(runtime, UploadLink) == 1


@pytest.mark.parametrize(
    "overrides",
    [
        {"max_uses": 0},
        {"max_uses": 1001},
        {"max_uses": "3"},
        {"allowed_kinds": []},
        {"allowed_kinds": ["audio"]},
        {"allowed_kinds": ["image", "image"]},
        {"expires_in_hours": 0},
        {"expires_in_hours": 721},
        {"expires_at": "2030-01-01T00:00:00+00:00"},  # both given
        {"expires_in_hours": None},  # neither given
        {"label": "x" * 201},
        {"label": "line\nbreak"},
        {"token": "chosen-by-me"},
    ],
)
def test_invalid_links_are_refused(client, runtime, editor, item, overrides):
    """V2.2.1, V15.3.3: schema validation, unknown fields refused."""
    assert _create(client, editor, item["id"], **overrides).status_code == 422
    assert _count(runtime, UploadLink) == 0


def test_expires_at_is_bounded(client, runtime, editor, item):
    now = datetime.now(UTC)
    for when, status in [
        (now - timedelta(minutes=1), 422),
        (now + timedelta(hours=721), 422),
        (now.replace(tzinfo=None) + timedelta(hours=1), 422),  # no time zone
        (now + timedelta(hours=2), 201),
    ]:
        response = _create(
            client, editor, item["id"], expires_in_hours=None, expires_at=when.isoformat()
        )
        assert response.status_code == status, response.text
    assert _count(runtime, UploadLink) == 1


def test_a_link_for_another_workspaces_content_is_404(client, runtime, editor, item):
    stranger = sign_in(runtime, client, "stranger@example.com", role=Role.EDITOR)
    assert _create(client, stranger, item["id"]).status_code == 404
    assert _count(runtime, UploadLink) == 0


# --- uploading through a link ------------------------------------------------------------


def test_the_public_view_reveals_only_the_label(client, runtime, editor, item):
    link = _link(client, editor, item["id"], max_uses=3)
    response = client.get(f"{PUBLIC}/{link['token']}")
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"label", "allowed_kinds", "expires_at", "uses_left"}
    assert (body["label"], body["allowed_kinds"], body["uses_left"]) == (
        "Photos from the team day",
        ["image"],
        3,
    )
    assert "Secret launch plan" not in response.text
    assert "Team" not in response.text


def test_an_anonymous_upload_waits_for_review_invisible_to_the_media_api(
    client, runtime, editor, item
):
    link = _link(client, editor, item["id"], max_uses=2)
    response = _send(client, link["token"], _image(), "../../me.png", submitter_name="Ana\x00 Lima")
    assert response.status_code == 202, response.text
    assert response.json() == {"status": "received", "uses_left": 1}
    assert client.get(f"{PUBLIC}/{link['token']}").json()["uses_left"] == 1

    [media] = _db(runtime, select(Media))
    assert (media.status, media.created_by) == ("pending_review", None)
    assert media.original_filename == "me.png"
    # Not listed, not readable, not downloadable, not deletable, not attachable.
    assert client.get(MEDIA, headers=editor.headers).json()["items"] == []
    assert client.get(f"{MEDIA}/{media.id}", headers=editor.headers).status_code == 404
    assert client.get(f"{MEDIA}/{media.id}/content", headers=editor.headers).status_code == 404
    assert client.delete(f"{MEDIA}/{media.id}", headers=editor.headers).status_code == 404
    patched = client.patch(
        f"{CONTENT}/{item['id']}", json={"media_ids": [media.id]}, headers=editor.headers
    )
    assert patched.status_code == 422, patched.text

    queue = client.get(QUEUE, headers=editor.headers)
    assert queue.status_code == 200, queue.text
    [entry] = queue.json()["items"]
    assert (entry["link_id"], entry["content_id"], entry["status"]) == (
        link["id"],
        item["id"],
        "pending",
    )
    assert entry["submitter_name"] == "Ana Lima"
    assert entry["media"]["id"] == media.id
    assert entry["media"]["status"] == "pending_review"
    # The reviewer can look at the file, served inert.
    content = client.get(f"{QUEUE}/{entry['id']}/content", headers=editor.headers)
    assert content.status_code == 200
    assert content.headers["content-security-policy"] == "sandbox"
    assert content.headers["content-disposition"].startswith("attachment;")
    [received] = _audit(runtime, "upload:submission:received")
    assert (received.actor_type, received.workspace_id) == ("anonymous", editor.workspace_id)
    assert received.result == "success"


def test_accepting_makes_the_media_ready_and_attached(client, runtime, editor, item):
    link = _link(client, editor, item["id"])
    assert _send(client, link["token"], _image()).status_code == 202
    [entry] = client.get(QUEUE, headers=editor.headers).json()["items"]

    accepted = client.post(f"{QUEUE}/{entry['id']}/accept", headers=editor.headers)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["status"] == "accepted"
    assert accepted.json()["reviewed_by"] == editor.user_id
    media_id = entry["media"]["id"]
    assert [m["id"] for m in client.get(MEDIA, headers=editor.headers).json()["items"]] == [
        media_id
    ]
    assert client.get(f"{MEDIA}/{media_id}/content", headers=editor.headers).status_code == 200
    content = client.get(f"{CONTENT}/{item['id']}", headers=editor.headers).json()
    assert content["media_ids"] == [media_id]
    # Decided once: neither a second accept nor a reject changes it.
    assert client.post(f"{QUEUE}/{entry['id']}/accept", headers=editor.headers).status_code == 409
    assert client.post(f"{QUEUE}/{entry['id']}/reject", headers=editor.headers).status_code == 409
    assert client.get(QUEUE, headers=editor.headers).json()["items"] == []
    done = client.get(QUEUE, params={"status": "accepted"}, headers=editor.headers).json()
    assert [e["id"] for e in done["items"]] == [entry["id"]]
    assert len(_audit(runtime, "upload:submission:accepted")) == 1


def test_rejecting_removes_the_media_and_its_bytes(client, runtime, editor, item):
    link = _link(client, editor, item["id"])
    assert _send(client, link["token"], _image()).status_code == 202
    [entry] = client.get(QUEUE, headers=editor.headers).json()["items"]
    assert len(_files(runtime)) == 1

    rejected = client.post(f"{QUEUE}/{entry['id']}/reject", headers=editor.headers)
    assert rejected.status_code == 200, rejected.text
    assert (rejected.json()["status"], rejected.json()["media"]) == ("rejected", None)
    assert _count(runtime, Media) == 0
    assert _count(runtime, UploadSubmission) == 0
    assert _files(runtime) == []
    content = client.get(f"{CONTENT}/{item['id']}", headers=editor.headers).json()
    assert content["media_ids"] == []
    [event] = _audit(runtime, "upload:submission:rejected")
    assert json.loads(event.context)["media_removed"] is True
    assert client.post(f"{QUEUE}/{entry['id']}/accept", headers=editor.headers).status_code == 404


def test_bytes_the_workspace_already_holds_are_not_stored_twice(client, runtime, editor, item):
    """A submission of a file the library has points at that media; rejecting it keeps it."""
    png = _image(7)
    mine = client.post(MEDIA, params={"filename": "a.png"}, content=png, headers=editor.headers)
    assert mine.status_code == 201, mine.text
    link = _link(client, editor, item["id"])
    response = _send(client, link["token"], png)
    assert response.status_code == 202
    assert response.json() == {"status": "received", "uses_left": 4}  # no hint of a duplicate
    assert _count(runtime, Media) == 1
    [entry] = client.get(QUEUE, headers=editor.headers).json()["items"]
    assert entry["media"]["id"] == mine.json()["id"]
    assert entry["media"]["status"] == "ready"
    rejected = client.post(f"{QUEUE}/{entry['id']}/reject", headers=editor.headers)
    assert rejected.status_code == 200, rejected.text
    assert rejected.json()["media"]["id"] == mine.json()["id"]
    assert client.get(f"{MEDIA}/{mine.json()['id']}", headers=editor.headers).status_code == 200
    assert len(_files(runtime)) == 1


def test_a_member_uploading_pending_bytes_gets_them_as_new(client, runtime, editor, item):
    """The member vouches for the file: it becomes theirs and ready; the queue keeps its
    entry, and rejecting it no longer removes the media."""
    png = _image(9)
    link = _link(client, editor, item["id"])
    assert _send(client, link["token"], png, "theirs.png").status_code == 202
    mine = client.post(MEDIA, params={"filename": "mine.png"}, content=png, headers=editor.headers)
    assert mine.status_code == 201, mine.text  # the same answer as for a new file
    assert mine.json()["original_filename"] == "mine.png"
    [media] = _db(runtime, select(Media))
    assert (media.status, media.created_by) == ("ready", editor.user_id)
    [entry] = client.get(QUEUE, headers=editor.headers).json()["items"]
    assert client.post(f"{QUEUE}/{entry['id']}/reject", headers=editor.headers).status_code == 200
    assert client.get(f"{MEDIA}/{media.id}", headers=editor.headers).status_code == 200


def test_two_pending_submissions_of_one_file_share_the_media(client, runtime, editor, item):
    png = _image(11)
    link = _link(client, editor, item["id"])
    assert _send(client, link["token"], png).status_code == 202
    assert _send(client, link["token"], png).status_code == 202
    assert _count(runtime, Media) == 1
    first, second = client.get(QUEUE, headers=editor.headers).json()["items"]
    assert first["media"]["id"] == second["media"]["id"]
    # Rejecting one keeps the file the other still offers; accepting the other keeps it.
    assert client.post(f"{QUEUE}/{first['id']}/reject", headers=editor.headers).status_code == 200
    assert _count(runtime, Media) == 1
    assert client.post(f"{QUEUE}/{second['id']}/accept", headers=editor.headers).status_code == 200
    assert client.get(f"{MEDIA}/{first['media']['id']}", headers=editor.headers).status_code == 200


def _expire(runtime, link_id: int) -> None:
    with unit_of_work(runtime.sessions) as session:
        session.execute(
            update(UploadLink)
            .where(UploadLink.id == link_id)
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )


def test_every_unusable_token_gets_the_same_404(client, runtime, editor, item):
    """V6.4.1, no oracle: unknown, malformed, expired, revoked and used-up tokens are
    answered alike, and none of them spends or stores anything."""
    expired = _link(client, editor, item["id"])
    _expire(runtime, expired["id"])
    revoked = _link(client, editor, item["id"])
    assert client.post(f"{LINKS}/{revoked['id']}/revoke", headers=editor.headers).status_code == 200
    used_up = _link(client, editor, item["id"], max_uses=1)
    assert _send(client, used_up["token"], _image(1)).status_code == 202
    unknown = _link(client, editor, item["id"])["token"][::-1]
    tokens = {
        "unknown": unknown,
        "malformed": "x" * 300,
        "expired": expired["token"],
        "revoked": revoked["token"],
        "used up": used_up["token"],
    }
    shapes = []
    for case, token in tokens.items():
        for response in (client.get(f"{PUBLIC}/{token}"), _send(client, token, _image(2))):
            assert response.status_code == 404, (case, response.text)
            shapes.append(_problem_shape(response))
    assert all(shape == shapes[0] for shape in shapes), shapes
    assert _count(runtime, UploadSubmission) == 1
    assert _count(runtime, Media) == 1
    uses = {r.id: r.uses for r in _db(runtime, select(UploadLink))}
    assert (uses[expired["id"]], uses[revoked["id"]], uses[used_up["id"]]) == (0, 0, 1)
    refused = _audit(runtime, "upload:submission:received")
    assert sorted(json.loads(e.context).get("reason", "") for e in refused) == [
        "",
        "expired",
        "revoked",
        "used_up",
    ]


def test_concurrent_uploads_never_exceed_max_uses(client, runtime, editor, item):
    """V2.3.4: many uploads race for the last uses; exactly ``max_uses`` are kept."""
    link = _link(client, editor, item["id"], max_uses=3)
    bodies = [_image(shade) for shade in range(10)]
    with ThreadPoolExecutor(max_workers=10) as pool:
        responses = list(pool.map(lambda body: _send(client, link["token"], body), bodies))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [202] * 3 + [404] * 7, [r.text for r in responses]
    assert sorted(r.json()["uses_left"] for r in responses if r.status_code == 202) == [0, 1, 2]
    [row] = _db(runtime, select(UploadLink))
    assert row.uses == 3
    assert _count(runtime, UploadSubmission) == 3
    assert _count(runtime, Media) == 3
    root = runtime.settings.data_dir / "media"
    kept = [p.relative_to(root).parts[0] for p in _files(runtime)]
    assert len(kept) == 3
    assert "tmp" not in kept  # no temporary file of a refused upload is left behind


def _gated_uploads(app, token: str, bodies: list[bytes]) -> list[int]:
    """POST every body to the ASGI app at once; no body is sent before every request has
    passed the token check and asks for its body, so all of them race for the uses."""
    gate = asyncio.Event()
    waiting = 0

    async def one(body: bytes) -> int:
        status = 0
        sent = False

        async def receive():
            nonlocal waiting, sent
            if sent:
                return {"type": "http.request", "body": b"", "more_body": False}
            waiting += 1
            if waiting == len(bodies):
                gate.set()
            await gate.wait()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        path = f"{PUBLIC}/{token}"
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": b"filename=a.png",
            "headers": [(b"content-length", str(len(body)).encode())],
            "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80),
        }
        await app(scope, receive, send)
        return status

    async def everything() -> list[int]:
        return list(await asyncio.gather(*(one(body) for body in bodies)))

    return asyncio.run(everything())


def test_uploads_that_all_passed_the_token_check_still_never_exceed_max_uses(
    app, client, runtime, editor, item
):
    """V2.3.4: the use is spent by the conditional UPDATE that stores the upload, so even
    uploads that all found the link usable keep exactly ``max_uses`` between them."""
    link = _link(client, editor, item["id"], max_uses=3)
    statuses = _gated_uploads(app, link["token"], [_image(100 + n) for n in range(8)])
    assert sorted(statuses) == [202] * 3 + [404] * 5
    assert _uses(runtime, link["id"]) == 3
    assert _count(runtime, UploadSubmission) == 3
    assert _count(runtime, Media) == 3
    refused = [
        json.loads(e.context).get("reason")
        for e in _audit(runtime, "upload:submission:received")
        if e.result == "denied"
    ]
    assert refused == ["no_longer_usable"] * 5


def _write_lock_taken(runtime) -> bool:
    """Whether another connection holds a transaction open on this test's database now
    (SQLite: the write lock; PostgreSQL: a session idle in a transaction)."""
    import sqlite3

    from sqlalchemy import text

    from conftest import BACKEND

    if BACKEND == "postgres":
        with runtime.engine.connect() as connection:
            idle = connection.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND state = 'idle in transaction' AND pid <> pg_backend_pid()"
                )
            ).scalar_one()
            return int(idle) > 0
    path = runtime.settings.resolved_database_url.removeprefix("sqlite:///")
    probe = sqlite3.connect(path, timeout=0.2, isolation_level=None)
    try:
        probe.execute("BEGIN IMMEDIATE")
        probe.execute("ROLLBACK")
    except sqlite3.OperationalError:
        return True
    finally:
        probe.close()
    return False


def test_no_transaction_is_held_while_a_public_body_arrives(app, client, runtime, editor, item):
    """A slow anonymous uploader holds no database transaction (V15.2.2)."""
    link = _link(client, editor, item["id"])
    body = _image(42)
    seen: list[bool] = []
    status = 0
    chunks = iter([body[:64], body[64:]])

    async def receive():
        chunk = next(chunks, None)
        if chunk is None:
            return {"type": "http.request", "body": b"", "more_body": False}
        if len(chunk) != 64:
            seen.append(_write_lock_taken(runtime))  # mid-body: the request is waiting
        return {"type": "http.request", "body": chunk, "more_body": len(chunk) == 64}

    async def send(message):
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    path = f"{PUBLIC}/{link['token']}"
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"filename=a.png",
        "headers": [],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    asyncio.run(app(scope, receive, send))
    assert status == 202
    assert seen == [False]


def test_a_kind_the_link_does_not_take_is_415_and_spends_nothing(client, runtime, editor, item):
    link = _link(client, editor, item["id"], allowed_kinds=["video"], max_uses=2)
    response = _send(client, link["token"], _image(), "clip.mp4")
    assert response.status_code == 415, response.text
    assert response.headers["content-type"] == "application/problem+json"
    polyglot = _send(client, link["token"], b"<?php system($_GET['c']); ?>", "x.mp4")
    assert polyglot.status_code == 415
    assert client.get(f"{PUBLIC}/{link['token']}").json()["uses_left"] == 2
    assert _count(runtime, Media) == 0
    assert _files(runtime) == []


def _runtime_with(env_vars, **extra):
    settings = load_settings(environ={**env_vars, **extra})
    return init_runtime(settings)


def _uses(rt, link_id: int) -> int:
    [row] = _db(rt, select(UploadLink).where(UploadLink.id == link_id))
    return row.uses


def test_uploads_are_rate_limited_per_link(env_vars):
    """V2.4.1: past the link's budget, 429 with Retry-After (refused uploads count too)."""
    rt = _runtime_with(env_vars, PLEXUS_RATE_LIMITS="upload_link=3/hour;upload_link_ip=1000/hour")
    try:
        with TestClient(create_app(rt.settings, rt), raise_server_exceptions=False) as small:
            who = sign_in(rt, small, "limits@example.com", role=Role.EDITOR)
            content = small.post(CONTENT, json={"title": "x"}, headers=who.headers).json()
            first = _link(small, who, content["id"], max_uses=100)
            other = _link(small, who, content["id"], max_uses=100)
            assert _send(small, first["token"], _image(1)).status_code == 202
            assert _send(small, first["token"], b"not an image").status_code == 415
            assert _send(small, first["token"], _image(2)).status_code == 202
            limited = _send(small, first["token"], _image(3))
            assert limited.status_code == 429, limited.text
            assert int(limited.headers["retry-after"]) >= 1
            assert limited.headers["content-type"] == "application/problem+json"
            # Another link has a budget of its own; reading a link spends none.
            assert _send(small, other["token"], _image(4)).status_code == 202
            assert small.get(f"{PUBLIC}/{first['token']}").status_code == 200
            assert _uses(rt, first["id"]) == 2
    finally:
        rt.dispose()


def test_uploads_are_rate_limited_per_address(env_vars):
    rt = _runtime_with(env_vars, PLEXUS_RATE_LIMITS="upload_link=1000/hour;upload_link_ip=2/hour")
    try:
        with TestClient(create_app(rt.settings, rt), raise_server_exceptions=False) as small:
            who = sign_in(rt, small, "ip@example.com", role=Role.EDITOR)
            content = small.post(CONTENT, json={"title": "x"}, headers=who.headers).json()
            links = [_link(small, who, content["id"]) for _ in range(3)]
            assert _send(small, links[0]["token"], _image(1)).status_code == 202
            assert _send(small, links[1]["token"], _image(2)).status_code == 202
            limited = _send(small, links[2]["token"], _image(3))
            assert limited.status_code == 429, limited.text
            assert "retry-after" in limited.headers
            assert _uses(rt, links[2]["id"]) == 0
    finally:
        rt.dispose()


def test_the_quota_applies_and_is_not_disclosed(env_vars):
    """V5.2.4: pending uploads count against the workspace quota; the uploader is not told
    what the quota is, and the refused upload spends no use."""
    rt = _runtime_with(env_vars, PLEXUS_MEDIA_WORKSPACE_QUOTA_BYTES="1500")
    try:
        with TestClient(create_app(rt.settings, rt), raise_server_exceptions=False) as small:
            who = sign_in(rt, small, "quota@example.com", role=Role.EDITOR)
            content = small.post(CONTENT, json={"title": "x"}, headers=who.headers).json()
            link = _link(small, who, content["id"])
            assert _send(small, link["token"], _image(1, size=(20, 20))).status_code == 202
            noise = Image.effect_noise((40, 40), 80).convert("RGB")
            out = io.BytesIO()
            noise.save(out, format="PNG")
            refused = _send(small, link["token"], out.getvalue())
            assert refused.status_code == 413, refused.text
            assert "quota" not in refused.text
            assert "1500" not in refused.text
            assert _uses(rt, link["id"]) == 1
            # The pending upload counts: a member's upload over the quota is refused too.
            member = small.post(
                MEDIA, params={"filename": "n.png"}, content=out.getvalue(), headers=who.headers
            )
            assert member.status_code == 413
    finally:
        rt.dispose()


def test_another_workspace_cannot_see_or_review(client, runtime, editor, item):
    """V8.2.2, V8.4.1: links and submissions of another workspace are 404, never listed."""
    link = _link(client, editor, item["id"])
    assert _send(client, link["token"], _image()).status_code == 202
    [entry] = client.get(QUEUE, headers=editor.headers).json()["items"]
    stranger = sign_in(runtime, client, "stranger@example.com", role=Role.OWNER)
    headers = stranger.headers
    assert client.get(LINKS, headers=headers).json()["items"] == []
    assert client.get(QUEUE, headers=headers).json()["items"] == []
    for status in ("accepted", "rejected"):
        assert client.get(QUEUE, params={"status": status}, headers=headers).json()["total"] == 0
    for response in (
        client.get(f"{LINKS}/{link['id']}", headers=headers),
        client.post(f"{LINKS}/{link['id']}/revoke", headers=headers),
        client.get(f"{QUEUE}/{entry['id']}", headers=headers),
        client.get(f"{QUEUE}/{entry['id']}/content", headers=headers),
        client.post(f"{QUEUE}/{entry['id']}/accept", headers=headers),
        client.post(f"{QUEUE}/{entry['id']}/reject", headers=headers),
        client.get(f"{MEDIA}/{entry['media']['id']}", headers=headers),
    ):
        assert response.status_code == 404, response.text
    [row] = _db(runtime, select(UploadSubmission))
    assert row.status == "pending"
    [link_row] = _db(runtime, select(UploadLink))
    assert link_row.revoked_at is None


def test_a_public_upload_may_be_as_large_as_a_member_upload(client, runtime, editor, item):
    """The public route has the media cap, not the 1 MiB JSON body cap of other routes."""
    noise = Image.frombytes("RGB", (800, 800), os.urandom(800 * 800 * 3))
    out = io.BytesIO()
    noise.save(out, format="PNG")
    body = out.getvalue()
    assert len(body) > runtime.settings.max_body_bytes
    link = _link(client, editor, item["id"])
    response = _send(client, link["token"], body)
    assert response.status_code == 202, response.text
