"""R2, V8.2.1: every route of the application declares exactly one access policy."""

from __future__ import annotations

from fastapi.routing import APIRoute, iter_route_contexts

from plexus.authz.policy import Policy

#: Routes that are not FastAPI endpoints, each with the reason it needs no policy.
NON_API_ROUTES = {
    "/static": "package files (robots.txt, later the UI's own CSS/JS); no data, no listing",
    "/api/v1/openapi.json": "the API description; off in production unless enabled",
    "/sandbox": "the practice platform outside production: its own accounts and bearer "
    "tokens, its own SQLite file, never Plexus data",
}


def _policies(dependant) -> list[Policy]:
    found = []
    for dependency in dependant.dependencies:
        if isinstance(dependency.call, Policy):
            found.append(dependency.call)
        found.extend(_policies(dependency))
    return found


def api_routes(app):
    """Every endpoint of the app as FastAPI resolves it (router prefixes and router-level
    dependencies included), with the non-API routes checked against NON_API_ROUTES."""
    for context in iter_route_contexts(app.routes):
        if isinstance(context.original_route, APIRoute):
            yield context
        else:
            assert context.path in NON_API_ROUTES, f"unreviewed non-API route {context.path}"


def test_every_route_declares_exactly_one_policy(app):
    """A route without a policy (or with two that could disagree) fails this test."""
    missing, doubled, checked = [], [], 0
    for route in api_routes(app):
        checked += 1
        policies = _policies(route.dependant)
        label = f"{sorted(route.methods)} {route.path}"
        if not policies:
            missing.append(label)
        elif len({id(p) for p in policies}) > 1:
            doubled.append(label)
    assert not missing, f"routes without a policy: {missing}"
    assert not doubled, f"routes with more than one policy: {doubled}"
    assert checked > 10


def test_policy_table_is_printable(app):
    """The declared policies form the route-by-permission table docs/security.md shows."""
    table = {
        (method, route.path): _policies(route.dependant)[0].describe()
        for route in api_routes(app)
        for method in route.methods
    }
    assert table[("POST", "/api/v1/auth/login")] == "public"
    assert table[("GET", "/api/v1/me")] == "authenticated"
