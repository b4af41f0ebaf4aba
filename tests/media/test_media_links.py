"""Signed, expiring media links (for platforms that fetch media by URL, like Instagram)."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import time_machine
from PIL import Image
from sqlalchemy import select

from plexus.db import unit_of_work
from plexus.media import links
from plexus.models.media import Media

from auth_helpers import sign_in

API = "/api/v1"


def _png(colour: str = "red") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (30, 20), colour).save(out, "PNG")
    return out.getvalue()


def _media(runtime, media_id: int) -> Media:
    with unit_of_work(runtime.sessions) as session:
        row = session.scalars(select(Media).where(Media.id == media_id)).one()
        session.expunge(row)
        return row


def _upload(client, headers, colour="red") -> dict:
    response = client.post(f"{API}/media?filename=a.png", content=_png(colour), headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def _path(url: str) -> str:
    return urlsplit(url).path


def test_a_signed_link_serves_the_file_to_anyone_sandboxed(runtime, client):
    owner = sign_in(runtime, client, "owner@example.org")
    uploaded = _upload(client, owner.headers)
    url = links.public_url(runtime, _media(runtime, uploaded["id"]))
    assert url.startswith(runtime.settings.issuer.rstrip("/"))
    response = client.get(_path(url))  # no credentials at all
    assert response.status_code == 200, response.text
    stored = client.get(f"{API}/media/{uploaded['id']}/content", headers=owner.headers)
    assert response.content == stored.content
    assert response.headers["content-type"] == "image/png"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["content-security-policy"] == "sandbox"
    assert response.headers["content-disposition"].startswith("attachment;")


def test_a_tampered_foreign_or_expired_link_is_the_same_404(runtime, client):
    owner = sign_in(runtime, client, "owner@example.org")
    first = _upload(client, owner.headers, "red")
    second = _upload(client, owner.headers, "blue")
    url = _path(links.public_url(runtime, _media(runtime, first["id"])))
    prefix, media_id, expires, signature = url.rsplit("/", 3)
    flipped = ("0" if signature[0] != "0" else "1") + signature[1:]
    answers = [
        client.get(f"{prefix}/{media_id}/{expires}/{flipped}"),
        client.get(f"{prefix}/{second['id']}/{expires}/{signature}"),
        client.get(f"{prefix}/{media_id}/{int(expires) + 60}/{signature}"),
        client.get(f"{prefix}/999999/{expires}/{signature}"),
    ]
    with time_machine.travel(datetime.now(UTC) + timedelta(hours=25), tick=False):
        answers.append(client.get(url))
    bodies = set()
    for answer in answers:
        assert answer.status_code == 404, answer.text
        bodies.add(answer.json()["detail"])
    assert bodies == {"There is no such file."}


def test_a_link_stops_working_when_the_media_is_deleted(runtime, client):
    owner = sign_in(runtime, client, "owner@example.org")
    uploaded = _upload(client, owner.headers)
    url = _path(links.public_url(runtime, _media(runtime, uploaded["id"])))
    assert client.delete(f"{API}/media/{uploaded['id']}", headers=owner.headers).status_code == 204
    assert client.get(url).status_code == 404
