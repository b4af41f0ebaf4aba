"""Checks on text that comes in from outside, shared by the request schemas."""

from __future__ import annotations


def no_nul(value: str | None) -> str | None:
    """Refuse text with a NUL character: no database column may hold one (PostgreSQL
    refuses it outright), so it is a 422 at the edge instead of a failure at the commit.
    """
    if value is not None and "\x00" in value:
        msg = "must not contain a NUL character"
        raise ValueError(msg)
    return value
