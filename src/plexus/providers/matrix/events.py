"""Ids of what Plexus sends to a room: transaction ids, and the post id it hands back.

A Plexus post becomes one event per part (the text, then each image). Its id for Plexus is
the room id followed by those event ids, so ``delete`` and ``fetch_status`` need nothing
but the id.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import TYPE_CHECKING, Final
from urllib.parse import quote

from plexus.providers.base import ProviderRejected

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

#: Joins the room id and the event ids in a post id: every event id begins with ``$``,
#: and ``/$`` occurs in no room id or event id.
_ID_SEPARATOR: Final = "/"


def post_id(room_id: str, event_ids: Sequence[str]) -> str:
    return _ID_SEPARATOR.join([room_id, *event_ids])


def transaction_ids(room_id: str, idempotency_key: str | None) -> Iterator[str]:
    """One transaction id per event of a post; the same ones on every retry of it.

    Homeservers deduplicate ``PUT /send`` by device and transaction id, so a retry with the
    same ``idempotency_key`` returns the event already sent instead of sending another.
    """
    seed = idempotency_key if idempotency_key is not None else secrets.token_hex(16)
    part = 0
    while True:
        digest = hashlib.sha256(f"{room_id}\0{seed}\0{part}".encode()).hexdigest()
        yield f"plexus-{digest[:40]}"
        part += 1


def redaction_transaction_id(event_id: str) -> str:
    """Derived from the event, so a retried delete makes no second redaction."""
    return "plexus-redact-" + hashlib.sha256(event_id.encode()).hexdigest()[:32]


def parse_post_id(external_id: str) -> tuple[str, list[str]]:
    room_id, *events = external_id.split(_ID_SEPARATOR + "$")
    event_ids = ["$" + e for e in events]
    if not room_id.startswith("!") or not event_ids or not all(len(e) > 1 for e in event_ids):
        raise ProviderRejected("this is not a Matrix post id from Plexus")
    return room_id, event_ids


def event_url(room_id: str, event_id: str) -> str:
    return f"https://matrix.to/#/{quote(room_id, safe='!:')}/{quote(event_id, safe='$:')}"
