"""Unit tests: Standard Webhooks signing against the receiver helper, and each form of an
internal address the SSRF guard must refuse, both when a URL is saved (``check_url``) and
when the guarded client connects (a canary on 127.0.0.1 receives nothing).
"""

from __future__ import annotations

import base64
import time

import httpx
import pytest

from plexus.kit.http import DestinationPolicy, DestinationRefused, check_url, outbound_client
from plexus.webhooks_out import signing
from plexus.webhooks_out.verify import verify_webhook

from webhook_receiver import CANARY_HOST, Receiver, serve_on

ONLY_RECEIVER = DestinationPolicy.from_strings(["127.0.0.2/32"])


def test_a_secret_has_the_standard_webhooks_format():
    secret = signing.new_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert signing.new_secret() != secret


def test_signatures_verify_with_the_documented_helper():
    secret, other = signing.new_secret(), signing.new_secret()
    now = int(time.time())
    body = b'{"type":"webhook.test"}'
    headers = signing.headers([secret, other], "msg_1", now, body)
    assert headers["webhook-signature"].count("v1,") == 2
    assert verify_webhook(secret, headers, body)
    assert verify_webhook(other, headers, body)
    assert not verify_webhook(signing.new_secret(), headers, body)
    assert not verify_webhook(secret, headers, body + b" ")
    assert not verify_webhook(secret, {**headers, "webhook-id": "msg_2"}, body)
    assert not verify_webhook(secret, headers, body, now=now + 301), "too old"
    assert not verify_webhook(secret, headers, body, now=now - 301), "from the future"
    assert not verify_webhook(secret, {k: v for k, v in headers.items() if k != "webhook-id"}, body)
    upper = {k.title(): v for k, v in headers.items()}
    assert verify_webhook(secret, upper, body), "header names are case-insensitive"


def test_the_signature_is_hmac_sha256_of_id_timestamp_body():
    import hashlib
    import hmac

    secret = "whsec_" + base64.b64encode(b"k" * 32).decode()
    expected = base64.b64encode(
        hmac.new(b"k" * 32, b"msg_x.1700000000.{}", hashlib.sha256).digest()
    ).decode()
    assert signing.sign(secret, "msg_x", 1_700_000_000, b"{}") == f"v1,{expected}"


FORMS = {
    "loopback": "http://127.0.0.1/",
    "ipv6 loopback": "http://[::1]/",
    "hex short": "http://0x7f.1/",
    "decimal": "http://2130706433/",
    "octal": "http://017700000001/",
    "short dotted": "http://127.1/",
    "metadata": "http://169.254.169.254/",
    "private": "http://10.0.0.1/",
    "cgnat": "http://100.64.0.1/",
    "multicast": "http://224.0.0.1/",
    "reserved": "http://240.0.0.1/",
    "ipv4-mapped": "http://[::ffff:127.0.0.1]/",
    "ipv4-mapped hex": "http://[::ffff:7f00:1]/",
    "trailing dot": "http://localhost./",
    "user-info": "http://a@127.0.0.2/",
    "user-info trick": "http://127.0.0.2@127.0.0.1/",
    "no host": "http:///path",
    "other scheme": "ftp://127.0.0.2/",
}


@pytest.mark.parametrize("url", FORMS.values(), ids=FORMS.keys())
def test_internal_forms_are_refused_when_saved(url):
    with pytest.raises(DestinationRefused):
        check_url(url, ONLY_RECEIVER, https_only=False)


def test_the_allow_list_permits_exactly_its_networks_and_production_wants_https():
    assert check_url("http://127.0.0.2:8080/x", ONLY_RECEIVER, https_only=False)
    with pytest.raises(DestinationRefused, match="https"):
        check_url("http://127.0.0.2:8080/x", ONLY_RECEIVER, https_only=True)
    assert check_url("https://127.0.0.2/x", ONLY_RECEIVER, https_only=True)


CONNECT_FORMS = ["127.0.0.1", "0x7f.1", "2130706433", "017700000001", "[::ffff:127.0.0.1]"]


@pytest.mark.allow_hosts([CANARY_HOST, "::1"])
@pytest.mark.parametrize("host", CONNECT_FORMS)
def test_the_guarded_client_never_reaches_the_canary(host):
    canary = Receiver()
    with serve_on(canary.app(), CANARY_HOST) as url:
        port = url.rsplit(":", 1)[1]
        with (
            outbound_client(guarded=True, policy=ONLY_RECEIVER) as client,
            pytest.raises(httpx.HTTPError),
        ):
            client.post(f"http://{host}:{port}/hook", content=b"x")
    assert canary.requests == []


def test_the_docs_show_the_same_helper_the_tests_use():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    helper = (root / "src/plexus/webhooks_out/verify.py").read_text()
    code = helper.split("as it is\n", 1)[1]
    assert code in (root / "docs/webhooks.md").read_text()
