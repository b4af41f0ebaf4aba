"""A sandbox platform that answers publishes slowly and counts, per idempotency key, what
it was sent and what it did with each request (created a post, or answered from the key).
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import threading
from collections import Counter
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse

from connection_helpers import RecordingSandbox

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

#: How long each ``POST /api/posts`` is held back before the platform acts on it.
MIN_DELAY = 0.05
MAX_DELAY = 0.1
HOLD_POLL_SECONDS = 0.005


@dataclass(frozen=True, slots=True)
class Answer:
    """One ``POST /api/posts`` and the platform's status (201 created, 200 from the key)."""

    key: str
    status: int


class SlowSandbox(RecordingSandbox):
    """The recording sandbox whose ``POST /api/posts`` waits ``MIN_DELAY``-``MAX_DELAY`` s
    before creating the post, and which records every publish's answer per key.

    ``hold()`` stops publishes where they are (received, not yet acted on) until
    ``release()``; ``held()`` says which wait there.
    """

    def __init__(
        self, database: Path, *, min_delay: float = MIN_DELAY, max_delay: float = MAX_DELAY
    ) -> None:
        super().__init__(database)
        self.min_delay = min_delay
        self.max_delay = max_delay
        self._record_lock = threading.Lock()
        self._answers: list[Answer] = []
        self._received: Counter[str] = Counter()
        self._incomplete = 0
        self._held: Counter[str] = Counter()
        self._holding = threading.Event()

    async def create_post(self, request: Request) -> Response:
        """Read the whole request, wait, then act on it (even if the client has gone by
        then, as a real platform would: the sender never hears that its post was made).
        """
        try:
            await request.body()  # kept by the request for the platform's own handler
        except ClientDisconnect:
            # The sender died before the request was complete: the platform never got it.
            with self._record_lock:
                self._incomplete += 1
            return JSONResponse({"error": "incomplete_request"}, status_code=400)
        key = request.headers.get("idempotency-key", "")
        with self._record_lock:
            self._received[key] += 1
        if self._holding.is_set():
            with self._record_lock:
                self._held[key] += 1
            try:
                # Released from the test's thread, not this event loop's: polled.
                while self._holding.is_set():  # noqa: ASYNC110
                    await asyncio.sleep(HOLD_POLL_SECONDS)
            finally:
                with self._record_lock:
                    self._held[key] -= 1
        await asyncio.sleep(random.uniform(self.min_delay, self.max_delay))  # noqa: S311
        response = await super().create_post(request)
        with self._record_lock:
            self._answers.append(Answer(key, response.status_code))
        return response

    # ---- controls

    def hold(self) -> None:
        self._holding.set()

    def release(self) -> None:
        self._holding.clear()

    def held(self) -> Counter[str]:
        """Publishes received and stopped by ``hold()`` now, per idempotency key."""
        with self._record_lock:
            return +self._held

    # ---- reading what it got

    @property
    def incomplete(self) -> int:
        """Publishes whose sender went away before the request was complete."""
        with self._record_lock:
            return self._incomplete

    def answers(self) -> list[Answer]:
        with self._record_lock:
            return list(self._answers)

    def posts_received(self) -> Counter[str]:
        """``POST /api/posts`` requests received (answered or not yet), per idempotency key."""
        with self._record_lock:
            return Counter(self._received)

    def answered_from_key(self) -> Counter[str]:
        """Publishes answered 200 (the key had already created a post), per key."""
        return Counter(answer.key for answer in self.answers() if answer.status == 200)

    def refused(self) -> list[Answer]:
        """Publishes answered neither 201 nor 200."""
        return [answer for answer in self.answers() if answer.status not in {200, 201}]

    def posts_created(self) -> dict[str, int]:
        """Posts the platform holds, per idempotency key (from its own database)."""
        with closing(sqlite3.connect(self.database)) as db:
            rows = db.execute(
                "SELECT idempotency_key, count(*) FROM posts GROUP BY idempotency_key"
            ).fetchall()
        return {str(key): int(count) for key, count in rows}

    def post_ids(self) -> dict[str, list[str]]:
        """The ids of the posts each idempotency key created."""
        found: dict[str, list[str]] = {}
        with closing(sqlite3.connect(self.database)) as db:
            for key, post_id in db.execute("SELECT idempotency_key, id FROM posts"):
                found.setdefault(str(key), []).append(str(post_id))
        return found
