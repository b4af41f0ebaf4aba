"""API keys and the log (R19): anomalies are logged; a key never is.

ASVS V16.2.5 (no secrets in logs), V16.3.3 (suspicious activity is logged).
"""

from __future__ import annotations

import json

from plexus.api_keys.anomalies import PROBING_THRESHOLD

from api_key_helpers import (
    CONTENT_PUBLISH_PATH,
    CONTENT_READ_PATH,
    KEYS_PATH,
    content_routes_fixture,  # noqa: F401 - a fixture
    create_key,
    from_ip,
    key_header,
    owner_fixture,  # noqa: F401 - a fixture
)


def test_keys_never_reach_the_log_and_anomalies_do(client, app, owner, log_stream):
    created = create_key(client, owner, scopes=["content:read"])
    key = created["key"]
    headers = key_header(key)
    assert from_ip(app, "203.0.113.5").get(CONTENT_READ_PATH, headers=headers).status_code == 200
    assert from_ip(app, "198.51.100.7").get(CONTENT_READ_PATH, headers=headers).status_code == 200
    for _ in range(PROBING_THRESHOLD):
        assert client.post(CONTENT_PUBLISH_PATH, headers=headers).status_code == 403
    rotated = client.post(
        f"{KEYS_PATH}/{created['id']}/rotate", json={"grace_minutes": 0}, headers=owner.headers
    ).json()
    new_key = rotated["new_key"]["key"]
    assert client.get(CONTENT_READ_PATH, headers=key_header(key)).status_code == 401
    assert (
        client.delete(f"{KEYS_PATH}/{rotated['new_key']['id']}", headers=owner.headers).status_code
        == 204
    )
    assert client.get(CONTENT_READ_PATH, headers=key_header(new_key)).status_code == 401

    text = log_stream.getvalue()
    for secret in (key, new_key, key.split("_")[2], new_key.split("_")[2]):
        assert secret not in text
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    anomalies = {line.get("kind") for line in lines if line.get("event") == "api_key_anomaly"}
    assert anomalies == {"api_key_new_network", "api_key_scope_probing"}
    security = {line.get("kind") for line in lines if line.get("event") == "security_event"}
    assert {"api_key_new_network", "api_key_scope_probing"} <= security
    refused = [line for line in lines if line.get("event") == "api_key_refused"]
    assert [line["reason"] for line in refused] == ["expired", "revoked"]
    assert {line["api_key_id"] for line in refused} == {created["id"], rotated["new_key"]["id"]}
