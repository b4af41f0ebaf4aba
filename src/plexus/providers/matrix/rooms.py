"""Rooms: resolving what the user typed to a room id, and whether a user may post there.

Matrix enforces who may send what with the room's ``m.room.power_levels`` state; Plexus
reads the same rules at connect time so that a connection that could never post is refused
up front, with a reason, instead of failing on its first publication.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from plexus.providers.base import ProviderError, ProviderRejected
from plexus.providers.matrix.client import has_control_or_space, path_segment

if TYPE_CHECKING:
    from collections.abc import Mapping

    from plexus.providers.matrix.client import MatrixClient

MESSAGE_EVENT: Final = "m.room.message"
#: Room ids and aliases are at most 255 bytes (Matrix spec, "Room IDs", "Room aliases").
MAX_ROOM_LENGTH: Final = 255
#: Room versions in which the creator is an ordinary user with a power level. From room
#: version 12 on, creators are "privileged": they outrank every power level and are not
#: listed in ``users``.
_CLASSIC_ROOM_VERSIONS: Final = frozenset(
    {str(n) for n in range(1, 12)} | {"org.matrix.msc3757.10", "org.matrix.msc3757.11"}
)


def resolve_room(client: MatrixClient, room: str) -> tuple[str, str | None]:
    """``(room_id, alias)`` for a room id (``!…``) or an alias (``#name:server``)."""
    value = check_room(room)
    if value.startswith("!"):
        return value, None
    try:
        found = client.request("GET", f"/directory/room/{path_segment(value)}", authenticated=False)
    except ProviderRejected as exc:
        raise ProviderRejected(f"the room alias {value} is unknown ({exc.reason})") from None
    room_id = found.get("room_id")
    if not isinstance(room_id, str) or not room_id.startswith("!"):
        raise ProviderRejected(f"the homeserver gave no room id for {value}")
    try:
        return check_room(room_id), value
    except ProviderRejected:
        raise ProviderRejected(f"the homeserver gave an invalid room id for {value}") from None


def check_room(room: str) -> str:
    """A room id (``!opaque[:server]``) or alias (``#name:server``) as typed, checked for
    shape before anything is sent: at most 255 bytes, no spaces or control characters.
    """
    value = room.strip()
    usage = "the room must be a room id (!…) or an alias (#name:server)"
    if not value:
        raise ProviderRejected("give the room to post to")
    if len(value.encode()) > MAX_ROOM_LENGTH:
        raise ProviderRejected(f"the room id or alias is longer than {MAX_ROOM_LENGTH} bytes")
    if has_control_or_space(value):
        raise ProviderRejected("the room must not contain spaces or control characters")
    if value.startswith("!") and len(value) > 1:
        return value
    if value.startswith("#"):
        local, _, server = value[1:].partition(":")
        if local and server:
            return value
    raise ProviderRejected(usage)


def require_can_post(client: MatrixClient, room_id: str, user_id: str) -> None:
    """Refuse unless ``user_id`` is joined to ``room_id`` and may send messages there."""
    room = path_segment(room_id)
    try:
        member = client.request("GET", f"/rooms/{room}/state/m.room.member/{path_segment(user_id)}")
    except ProviderRejected:
        member = {}
    if member.get("membership") != "join":
        raise ProviderRejected(f"{user_id} has not joined the room {room_id}: join it first")
    try:
        levels: Mapping[str, Any] | None = client.request(
            "GET", f"/rooms/{room}/state/m.room.power_levels"
        )
    except ProviderRejected:
        levels = None  # no power levels event: everyone may send messages
    if levels is None:
        return
    if _outranks_power_levels(client, room, user_id):
        return
    needed = _level(_mapping(levels.get("events")).get(MESSAGE_EVENT), levels.get("events_default"))
    has = _level(_mapping(levels.get("users")).get(user_id), levels.get("users_default"))
    if has < needed:
        raise ProviderRejected(
            f"{user_id} may not post in {room_id}: power level {has}, the room needs {needed}"
        )


def _outranks_power_levels(client: MatrixClient, room: str, user_id: str) -> bool:
    """Whether ``user_id`` is one of the room's privileged creators (room version 12 on)."""
    try:
        create = client.request(
            "GET", f"/rooms/{room}/state/m.room.create", params={"format": "event"}
        )
    except ProviderError:
        return False
    content = _mapping(create.get("content"))
    if str(content.get("room_version") or "1") in _CLASSIC_ROOM_VERSIONS:
        return False
    sender = create.get("sender")
    if not isinstance(sender, str):
        # A server without ``format=event`` answers with the content alone: the creator is
        # unknown, so do not refuse on power levels the user may well outrank.
        return True
    extra = content.get("additional_creators")
    creators = {sender} | (
        {c for c in extra if isinstance(c, str)} if isinstance(extra, list) else set()
    )
    return user_id in creators


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _level(value: object, default: object) -> int:
    """A power level; older room versions allow numbers as strings."""
    for candidate in (value, default):
        if isinstance(candidate, bool):
            continue
        if isinstance(candidate, int):
            return candidate
        if isinstance(candidate, str):
            try:
                return int(candidate.strip())
            except ValueError:
                continue
    return 0
