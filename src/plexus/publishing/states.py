"""The states of a publication, and which of them are still in motion."""

from __future__ import annotations

from typing import Final

SCHEDULED: Final = "scheduled"
QUEUED: Final = "queued"
PUBLISHING: Final = "publishing"
PUBLISHED: Final = "published"
FAILED: Final = "failed"
#: The request may have reached the platform but its answer was lost: reconciled by asking
#: the platform, never by sending again blindly.
UNCONFIRMED: Final = "unconfirmed"
#: Waiting for its connection to be connected again.
PARKED: Final = "parked"
CANCELLED: Final = "cancelled"
DELETED: Final = "deleted"

ALL: Final = (
    SCHEDULED,
    QUEUED,
    PUBLISHING,
    PUBLISHED,
    FAILED,
    UNCONFIRMED,
    PARKED,
    CANCELLED,
    DELETED,
)
#: Waiting to be claimed by a worker.
CLAIMABLE: Final = frozenset({SCHEDULED, QUEUED})
#: Not finished: a second publication of the same content to the same connection waits.
ACTIVE: Final = frozenset({SCHEDULED, QUEUED, PUBLISHING, UNCONFIRMED, PARKED})
#: Counted against a connection's daily cap and rate limits (sent, or maybe sent).
SENT: Final = frozenset({PUBLISHING, PUBLISHED, UNCONFIRMED, DELETED})
