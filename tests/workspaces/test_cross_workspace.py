"""Tenant isolation (R2; ASVS V8.2.2, V8.4.1): a member of workspace A gets 404 on every
object of workspace B, exactly as for an id that exists nowhere, and B's object is left as
it was.

The test is a table. To cover a new resource type, add
- a factory to ``FACTORIES`` that makes one object in B through the API as B's owner and
  returns its id (the key is the placeholder name, starting with ``b_``),
- one ``Probe`` per route that takes the object's id, with ``intact`` naming a path B's
  owner reads before and after to prove nothing changed,
- a ``Listing`` for each list route, so B's object never shows in A's list.
A's owner makes every request: they hold every permission there is in their own workspace.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from string import Formatter
from typing import Any

import pytest

from plexus.authz.permissions import Role

from auth_helpers import add_member, bearer
from connection_helpers import (
    connect_sandbox,
    sandbox_fixture,  # noqa: F401 - a fixture
)
from workspace_helpers import (
    API,
    Person,
    invite,
    people_fixture,  # noqa: F401 - a fixture
    problem,
    without_request_id,
)

#: An id no object of any kind has in a test database.
GHOST_ID = 4_000_000_001


@dataclass
class World:
    client: Any
    a: Person
    b: Person
    b_member: Person
    made: dict[str, int] = field(default_factory=dict)

    def ids(self, template: str) -> dict[str, int]:
        names = {name for _, name, _, _ in Formatter().parse(template) if name}
        for name in names - self.made.keys():
            self.made[name] = FACTORIES[name](self)
        return {name: self.made[name] for name in names}

    def fill(self, template: str, *, ghost: bool = False) -> str:
        ids = self.ids(template)
        if ghost:
            ids = {k: GHOST_ID if k.startswith("b_") else v for k, v in ids.items()}
        return template.format(**ids)

    def fill_body(self, body: dict[str, Any] | None, *, ghost: bool = False) -> Any:
        """The body with any ``"{placeholder}"`` value replaced by that object's id."""
        if body is None:
            return None
        return {
            k: int(self.fill(v, ghost=ghost)) if isinstance(v, str) and v.startswith("{") else v
            for k, v in body.items()
        }

    def as_b(self, method: str, path: str, **kwargs: Any):
        return self.client.request(method, path, headers=self.b.headers, **kwargs)


def _b_invitation(world: World) -> int:
    return int(invite(world.client, world.b, "invitee@example.com", Role.EDITOR)["id"])


def _b_connection(world: World) -> int:
    return int(connect_sandbox(world.client, world.b.headers, "B's sandbox")["id"])


def _b_api_key(world: World) -> int:
    response = world.as_b(
        "POST", f"{API}/api-keys", json={"name": "b-key", "scopes": ["content:read"]}
    )
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


#: Placeholder → how to get that object's id (made in B through the API when needed).
FACTORIES: dict[str, Callable[[World], int]] = {
    "a_workspace": lambda w: w.a.workspace_id,
    "b_workspace": lambda w: w.b.workspace_id,
    "b_member": lambda w: w.b_member.user_id,
    "b_invitation": _b_invitation,
    "b_api_key": _b_api_key,
    "b_connection": _b_connection,
}


@dataclass(frozen=True)
class Probe:
    resource: str
    method: str
    path: str
    body: dict[str, Any] | None = None
    #: What B's owner reads before and after: the answer must not change.
    intact: str | None = None

    def __str__(self) -> str:
        return f"{self.resource}:{self.method}:{self.path}"


WS_B = f"{API}/workspaces/{{b_workspace}}"
MEMBER_B = f"{WS_B}/members/{{b_member}}"
MEMBER_VIA_A = f"{API}/workspaces/{{a_workspace}}/members/{{b_member}}"
INVITATION_B = f"{API}/invitations/{{b_invitation}}"
KEY_B = f"{API}/api-keys/{{b_api_key}}"
CONNECTION_B = f"{API}/connections/{{b_connection}}"

PROBES = [
    Probe("workspace", "GET", WS_B),
    Probe("workspace", "PATCH", WS_B, {"name": "Taken over"}, intact=WS_B),
    Probe("workspace", "PATCH", WS_B, {"mfa_policy": "none"}, intact=WS_B),
    Probe("members", "GET", f"{WS_B}/members"),
    Probe("member", "GET", MEMBER_B),
    Probe("member", "PATCH", MEMBER_B, {"role": "viewer"}, intact=MEMBER_B),
    Probe("member", "DELETE", MEMBER_B, intact=MEMBER_B),
    # B's member named through A's own workspace path.
    Probe("member", "GET", MEMBER_VIA_A),
    Probe("member", "PATCH", MEMBER_VIA_A, {"role": "viewer"}, intact=MEMBER_B),
    Probe("member", "DELETE", MEMBER_VIA_A, intact=MEMBER_B),
    Probe("invitation", "DELETE", INVITATION_B, intact=f"{API}/invitations"),
    Probe("api_key", "GET", KEY_B),
    Probe("api_key", "POST", f"{KEY_B}/rotate", {"grace_minutes": 0}, intact=f"{API}/api-keys"),
    Probe("api_key", "DELETE", KEY_B, intact=KEY_B),
    Probe("connection", "GET", CONNECTION_B),
    Probe("connection", "POST", f"{CONNECTION_B}/check", intact=CONNECTION_B),
    Probe("connection", "DELETE", CONNECTION_B, intact=CONNECTION_B),
    Probe(
        "connection",
        "POST",
        f"{API}/connections",
        {"provider": "sandbox", "name": "takeover", "reconnect_id": "{b_connection}"},
        intact=CONNECTION_B,
    ),
]


@dataclass(frozen=True)
class Listing:
    resource: str
    path: str
    #: The placeholder of B's object that must not appear.
    placeholder: str
    ids: Callable[[Any], set[int]]

    def __str__(self) -> str:
        return f"{self.resource}:{self.path}"


LISTINGS = [
    Listing("invitation", f"{API}/invitations", "b_invitation", lambda b: {i["id"] for i in b}),
    Listing("api_key", f"{API}/api-keys", "b_api_key", lambda b: {k["id"] for k in b["items"]}),
    Listing(
        "member",
        f"{API}/workspaces/{{a_workspace}}/members",
        "b_member",
        lambda b: {m["user_id"] for m in b},
    ),
    Listing("workspace", f"{API}/workspaces", "b_workspace", lambda b: {w["id"] for w in b}),
    Listing(
        "connection", f"{API}/connections", "b_connection", lambda b: {c["id"] for c in b["items"]}
    ),
]


@pytest.fixture(name="env_vars")
def env_vars_fixture(env_vars: dict[str, str], sandbox) -> dict[str, str]:
    """Sign-ins beyond one address's login budget; the sandbox platform for connections."""
    budget = "1000 per 5 minutes"
    return {
        **env_vars,
        "PLEXUS_RATE_LIMITS": f"login={budget};login_account={budget}",
        "PLEXUS_PROVIDER_SANDBOX_API_URL": sandbox.api_url,
    }


@pytest.fixture
def world(client, people) -> World:
    a = people("alice@a.example.com")
    b = people("bob@b.example.com")
    b_member = people("bea@b.example.com", role=Role.EDITOR, workspace_id=b.workspace_id)
    return World(client, a, b, b_member)


@pytest.mark.parametrize("probe", PROBES, ids=str)
def test_a_member_of_a_gets_404_on_every_object_of_b(world, probe):
    """V8.2.2 / V8.4.1: 404, never 403; the same answer as for a missing id; B unchanged."""
    client = world.client
    path = world.fill(probe.path)
    intact = world.fill(probe.intact) if probe.intact else None
    before = world.as_b("GET", intact) if intact else None
    if before is not None:
        assert before.status_code == 200, before.text

    response = client.request(
        probe.method, path, json=world.fill_body(probe.body), headers=world.a.headers
    )
    body = problem(response, 404)

    ghost = client.request(
        probe.method,
        world.fill(probe.path, ghost=True),
        json=world.fill_body(probe.body, ghost=True),
        headers=world.a.headers,
    )
    assert without_request_id(body) == without_request_id(problem(ghost, 404))
    if intact is not None:
        after = world.as_b("GET", intact)
        assert after.status_code == 200, after.text
        assert after.json() == before.json()


@pytest.mark.parametrize("listing", LISTINGS, ids=str)
def test_b_objects_never_show_in_a_lists(world, listing):
    hidden = world.ids(f"{{{listing.placeholder}}}")[listing.placeholder]
    response = world.client.get(world.fill(listing.path), headers=world.a.headers)
    assert response.status_code == 200, response.text
    listed = listing.ids(response.json())
    assert hidden not in listed
    # The check can fail: B's owner does see it in B.
    own = world.as_b("GET", world.fill(listing.path.replace("{a_workspace}", "{b_workspace}")))
    assert hidden in listing.ids(own.json())


def test_a_member_of_both_sees_only_the_workspace_they_signed_in_to(client, runtime, world):
    """The token names one workspace; the other is a 404 until signing in to it."""
    add_member(runtime, world.a.user_id, world.b.workspace_id, Role.ADMIN)
    b_path = f"{API}/workspaces/{world.b.workspace_id}"
    assert problem(client.get(b_path, headers=world.a.headers), 404)
    assert problem(client.get(f"{b_path}/members", headers=world.a.headers), 404)
    in_b = bearer(client, world.a.email, workspace_id=world.b.workspace_id)
    assert client.get(b_path, headers=in_b).status_code == 200
    a_path = f"{API}/workspaces/{world.a.workspace_id}"
    assert problem(client.get(a_path, headers=in_b), 404)
