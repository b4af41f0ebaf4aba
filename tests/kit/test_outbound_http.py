"""The outbound client's SSRF guard (ASVS V1.3.6): a guarded request never reaches an
internal address, however the address is spelled, and a redirect is never followed.

A canary server on loopback counts every request it receives: it must get none."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse, RedirectResponse
from starlette.routing import Route

from plexus.kit.http import DestinationPolicy, is_public_address, outbound_client

from fake_helpers import serve_app


class Canary:
    def __init__(self) -> None:
        self.hits = 0

    def app(self) -> Starlette:
        async def hit(request):
            self.hits += 1
            return PlainTextResponse("canary")

        return Starlette(routes=[Route("/{path:path}", hit)])


@pytest.fixture
def canary():
    bird = Canary()
    with serve_app(bird.app()) as url:
        yield bird, int(url.rsplit(":", 1)[1])


@pytest.mark.parametrize(
    "template",
    [
        "http://127.0.0.1:{port}/",
        "http://localhost:{port}/",
        "http://localhost.:{port}/",
        "http://2130706433:{port}/",
        "http://0x7f.1:{port}/",
        "http://127.1:{port}/",
        "http://a@127.0.0.1:{port}/",
        "http://0.0.0.0:{port}/",
        "http://[::ffff:127.0.0.1]:{port}/",
    ],
)
def test_guarded_requests_never_reach_loopback(canary, template):
    bird, port = canary
    with outbound_client(guarded=True) as client, pytest.raises(httpx.HTTPError):
        client.get(template.format(port=port))
    assert bird.hits == 0


@pytest.mark.parametrize(
    "address",
    [
        "169.254.169.254",
        "10.0.0.1",
        "172.16.0.1",
        "192.168.1.1",
        "::1",
        "fe80::1",
        "224.0.0.1",
        # IPv4 carried in IPv6: NAT64 to 10.0.0.1 and to the metadata address, 6to4,
        # IPv4-compatible, mapped; and deprecated site-local.
        "64:ff9b::a00:1",
        "64:ff9b::a9fe:a9fe",
        "64:ff9b:1::a00:1",
        "2002:a00:1::1",
        "::a00:1",
        "::ffff:10.0.0.1",
        "fec0::1",
    ],
)
def test_internal_and_metadata_addresses_are_not_public(address):
    import ipaddress

    assert not is_public_address(ipaddress.ip_address(address))
    assert not DestinationPolicy().permits(ipaddress.ip_address(address))


def test_public_addresses_are_permitted():
    import ipaddress

    assert DestinationPolicy().permits(ipaddress.ip_address("93.184.215.14"))
    assert DestinationPolicy().permits(ipaddress.ip_address("2606:4700::1111"))
    # NAT64 and 6to4 forms of a public IPv4 address are as public as the address.
    assert DestinationPolicy().permits(ipaddress.ip_address("64:ff9b::5db8:d70e"))
    assert DestinationPolicy().permits(ipaddress.ip_address("2002:5db8:d70e::1"))


def test_an_allowed_network_is_reached_and_redirects_are_not_followed(canary):
    bird, port = canary

    async def redirect(request):
        return RedirectResponse(f"http://127.0.0.1:{port}/stolen", status_code=302)

    policy = DestinationPolicy.from_strings(["127.0.0.0/8"])
    with serve_app(Starlette(routes=[Route("/", redirect)])) as redirector:
        with outbound_client(guarded=True, policy=policy) as client:
            answer = client.get(f"{redirector}/")
        assert answer.status_code == 302
    assert bird.hits == 0
    with outbound_client(guarded=True, policy=policy) as client:
        assert client.get(f"http://127.0.0.1:{port}/").text == "canary"
    assert bird.hits == 1


def test_an_unguarded_client_is_for_operator_configured_hosts(canary):
    bird, port = canary
    with outbound_client(guarded=False) as client:
        assert client.get(f"http://127.0.0.1:{port}/").status_code == 200
    assert bird.hits == 1
