"""``/api/v1/content`` through HTTP: writing, versions, the approval step, permissions,
content types, bad input, and the XSS corpus stored in every text field (R11).
"""

from __future__ import annotations

import html
import json
from html.parser import HTMLParser

import pytest
from sqlalchemy import func, select

from plexus.authz.permissions import Role
from plexus.db import unit_of_work
from plexus.models.audit import AuditEvent
from plexus.models.content import ContentItem, ContentVersion

from auth_helpers import sign_in
from xss_corpus import XSS_PAYLOADS

API = "/api/v1"
CONTENT = f"{API}/content"
#: What body_html may contain (the sanitiser's allow-list).
ALLOWED = frozenset(
    {"p", "br", "strong", "em", "del", "code", "pre", "blockquote", "ul", "ol", "li", "a"}
    | {"h1", "h2", "h3", "h4", "h5", "h6", "hr"}
)


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag, attrs):
        self.found.append((tag, attrs))

    handle_startendtag = handle_starttag


def _inert(fragment: str) -> None:
    parser = _Tags()
    parser.feed(fragment)
    parser.close()
    for tag, attrs in parser.found:
        assert tag in ALLOWED, fragment
        for name, value in attrs:
            assert name in {"href", "title", "rel"}, fragment
            if name == "href":
                assert (value or "").split(":", 1)[0].lower() in {"http", "https", "mailto"}


def _count(rt, model) -> int:
    with unit_of_work(rt.sessions) as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def _events(rt, kind: str) -> list[dict]:
    with unit_of_work(rt.sessions) as session:
        rows = session.scalars(select(AuditEvent).where(AuditEvent.event == kind)).all()
        return [json.loads(r.context or "{}") for r in rows]


@pytest.fixture(name="owner")
def owner_fixture(runtime, client):
    return sign_in(runtime, client, "owner@example.org")


def test_write_edit_and_read_back_every_version(runtime, client, owner):
    created = client.post(
        CONTENT,
        json={
            "title": "Spring launch",
            "body": "# Hello\n\nWe *launch* today.",
            "excerpt": "We launch",
            "author": "Ana",
            "tags": ["launch", "spring"],
            "hashtags": ["launch"],
        },
        headers=owner.headers,
    )
    assert created.status_code == 201, created.text
    item = created.json()
    assert (item["status"], item["version"]) == ("draft", 1)
    assert "<h1>Hello</h1>" in item["body_html"]
    assert "<em>launch</em>" in item["body_html"]

    edited = client.patch(
        f"{CONTENT}/{item['id']}",
        json={"body": "We launch **tomorrow**.", "expected_version": 1},
        headers=owner.headers,
    )
    assert edited.status_code == 200, edited.text
    assert edited.json()["version"] == 2
    stale = client.patch(
        f"{CONTENT}/{item['id']}", json={"title": "x", "expected_version": 1}, headers=owner.headers
    )
    assert stale.status_code == 409, stale.text

    versions = client.get(f"{CONTENT}/{item['id']}/versions", headers=owner.headers).json()
    assert [v["version"] for v in versions["items"]] == [2, 1]
    first = client.get(f"{CONTENT}/{item['id']}/versions/1", headers=owner.headers).json()
    assert first["content"]["body"] == "# Hello\n\nWe *launch* today."
    assert first["content"]["tags"] == ["launch", "spring"]
    # An edit that changes nothing makes no version.
    same = client.patch(
        f"{CONTENT}/{item['id']}", json={"title": "Spring launch"}, headers=owner.headers
    )
    assert same.json()["version"] == 2
    assert _count(runtime, ContentVersion) == 2
    updated = _events(runtime, "content:item:updated")
    assert [e["changed"] for e in updated] == [["body"]]


def test_list_filters_and_paginates(client, owner):
    for number in range(5):
        tags = ["even"] if number % 2 == 0 else ["odd"]
        client.post(CONTENT, json={"title": f"Post {number}", "tags": tags}, headers=owner.headers)
    page = client.get(f"{CONTENT}?limit=2&offset=0", headers=owner.headers).json()
    assert (len(page["items"]), page["total"], page["limit"]) == (2, 5, 2)
    even = client.get(f"{CONTENT}?tag=even", headers=owner.headers).json()
    assert sorted(i["title"] for i in even["items"]) == ["Post 0", "Post 2", "Post 4"]
    assert client.get(f"{CONTENT}?status=approved", headers=owner.headers).json()["total"] == 0


def test_review_flow_and_who_may_do_what(runtime, client, owner):
    writer = sign_in(
        runtime,
        client,
        "writer@example.org",
        role=Role.CONTRIBUTOR,
        workspace_id=owner.workspace_id,
    )
    viewer = sign_in(
        runtime, client, "viewer@example.org", role=Role.VIEWER, workspace_id=owner.workspace_id
    )
    assert client.post(CONTENT, json={"title": "x"}, headers=viewer.headers).status_code == 403
    item = client.post(CONTENT, json={"title": "Draft"}, headers=writer.headers).json()
    assert client.post(f"{CONTENT}/{item['id']}/submit", headers=writer.headers).status_code == 200
    again = client.post(f"{CONTENT}/{item['id']}/submit", headers=writer.headers)
    assert again.status_code == 409
    assert client.post(f"{CONTENT}/{item['id']}/approve", headers=writer.headers).status_code == 403
    returned = client.post(
        f"{CONTENT}/{item['id']}/return", json={"comment": "needs a picture"}, headers=owner.headers
    )
    assert returned.json()["status"] == "draft"
    assert _events(runtime, "content:item:returned")[0]["comment"] == "needs a picture"
    client.post(f"{CONTENT}/{item['id']}/submit", headers=writer.headers)
    approved = client.post(f"{CONTENT}/{item['id']}/approve", headers=owner.headers).json()
    assert (approved["status"], approved["approved_version"]) == ("approved", 1)
    archived = client.post(f"{CONTENT}/{item['id']}/archive", headers=owner.headers).json()
    assert archived["status"] == "archived"
    assert (
        client.patch(
            f"{CONTENT}/{item['id']}", json={"title": "y"}, headers=writer.headers
        ).status_code
        == 409
    )
    assert (
        client.post(f"{CONTENT}/{item['id']}/restore", headers=owner.headers).json()["status"]
        == "draft"
    )
    assert client.delete(f"{CONTENT}/{item['id']}", headers=writer.headers).status_code == 403
    assert client.delete(f"{CONTENT}/{item['id']}", headers=owner.headers).status_code == 204
    assert client.get(f"{CONTENT}/{item['id']}", headers=owner.headers).status_code == 404
    assert _count(runtime, ContentVersion) == 0


def test_another_workspace_cannot_see_or_touch_it(runtime, client, owner):
    item = client.post(CONTENT, json={"title": "Ours"}, headers=owner.headers).json()
    stranger = sign_in(runtime, client, "stranger@example.org")
    for method, path in (
        ("GET", f"{CONTENT}/{item['id']}"),
        ("PATCH", f"{CONTENT}/{item['id']}"),
        ("POST", f"{CONTENT}/{item['id']}/approve"),
        ("DELETE", f"{CONTENT}/{item['id']}"),
        ("GET", f"{CONTENT}/{item['id']}/versions"),
    ):
        body = {"title": "theirs"} if method == "PATCH" else None
        response = client.request(method, path, json=body, headers=stranger.headers)
        assert response.status_code == 404, (method, path, response.text)
    assert client.get(CONTENT, headers=stranger.headers).json()["total"] == 0


def test_content_types_have_their_own_fields(client, owner):
    quote = client.post(
        CONTENT,
        json={
            "content_type": "quote",
            "title": "On shipping",
            "fields": {"quote": "Real artists ship.", "attribution": "Steve Jobs"},
        },
        headers=owner.headers,
    )
    assert quote.status_code == 201, quote.text
    assert quote.json()["fields"] == {"quote": "Real artists ship.", "attribution": "Steve Jobs"}
    member = client.post(
        CONTENT,
        json={"content_type": "team_member", "title": "Meet Ana", "fields": {"role": "Editor"}},
        headers=owner.headers,
    )
    assert member.status_code == 422, member.text
    assert any(e["field"] == "fields.name" for e in member.json()["errors"])
    unknown = client.post(
        CONTENT,
        json={"title": "x", "fields": {"quote": "not a post field"}},
        headers=owner.headers,
    )
    assert unknown.status_code == 422


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"title": ""},
        {"title": "x", "surprise": 1},
        {"title": "x", "tags": ['a"b']},
        {"title": "x", "hashtags": ["#no"]},
        {"title": "x", "body": "b" * 100_001},
        {"title": "x", "body": "nul \x00 inside"},
        {"title": "x", "excerpt": "\x00"},
        {"title": "x", "content_type": "quote", "fields": {"quote": "a\x00", "attribution": "b"}},
        {"title": "line\nbreak"},
        {"title": "x", "content_type": "essay"},
        {"title": "x", "media_ids": [0]},
        {"title": "x", "overrides": {"abc": {"text": "x"}}},
        {"title": 5},
    ],
)
def test_bad_input_is_a_clear_422_and_stores_nothing(runtime, client, owner, body):
    response = client.post(CONTENT, json=body, headers=owner.headers)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert _count(runtime, ContentItem) == 0


def test_references_to_media_or_connections_that_do_not_exist_are_refused(runtime, client, owner):
    response = client.post(
        CONTENT,
        json={"title": "x", "media_ids": [424242], "overrides": {"777": {"text": "hi"}}},
        headers=owner.headers,
    )
    assert response.status_code == 422, response.text
    fields = {e["field"] for e in response.json()["errors"]}
    assert fields == {"media_ids[0]", "overrides.777"}
    assert _count(runtime, ContentItem) == 0


def test_the_xss_corpus_in_every_text_field_comes_back_inert(client, owner):
    """R11, ASVS 1.3.5: whatever is written, the API's HTML field is sanitised markup
    and the text fields are data (JSON strings, never rendered by the API).
    """
    assert len(XSS_PAYLOADS) >= 50
    for payload in XSS_PAYLOADS:
        line = " ".join(payload.split()) or "x"
        line = "".join(c for c in line if c.isprintable()) or "x"
        response = client.post(
            CONTENT,
            json={
                "title": line[:300],
                "body": payload,
                "excerpt": payload[:1000],
                "author": line[:200],
                "content_type": "quote",
                "fields": {"quote": line[:2000], "attribution": line[:200]},
            },
            headers=owner.headers,
        )
        if "\x00" in payload:
            # No database column holds a NUL: refused at the edge, nothing stored.
            assert response.status_code == 422, (payload, response.text)
            continue
        assert response.status_code == 201, (payload, response.text)
        item = response.json()
        _inert(item["body_html"])
        assert item["body"] == payload
        shown = client.get(f"{CONTENT}/{item['id']}", headers=owner.headers)
        assert shown.headers["content-type"].startswith("application/json")
        _inert(shown.json()["body_html"])


def test_xss_payloads_published_to_the_sandbox_page_show_as_text(tmp_path):
    """R11: the sandbox's page (served by Plexus outside production) shows every post's
    text as text: the page holds only its own few elements, with no handler or script.
    """
    from fastapi.testclient import TestClient

    from plexus.providers.sandbox import SandboxPlatform

    platform = SandboxPlatform(tmp_path / "sandbox.db")
    page_tags = {"html", "head", "meta", "title", "body", "h1", "h2", "p", "article", "small"}
    with TestClient(platform.app()) as sandbox:
        account = sandbox.post("/api/accounts", json={"name": "<b>acct</b>"}).json()
        headers = {"authorization": f"Bearer {account['access_token']}"}
        sent = 0
        for payload in XSS_PAYLOADS:
            if payload.strip():
                posted = sandbox.post("/api/posts", json={"text": payload[:500]}, headers=headers)
                sent += posted.status_code == 201
        page = sandbox.get("/").text
    assert sent >= 50
    parser = _Tags()
    parser.feed(page)
    for tag, attrs in parser.found:
        assert tag in page_tags, tag
        assert all(not name.startswith("on") and name != "style" for name, _ in attrs)
    assert html.escape("<script>alert(1)</script>") in page
