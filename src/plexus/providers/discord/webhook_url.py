"""Discord channel-webhook URLs: the strict parser for what a user pastes.

A webhook URL *is* the credential (whoever holds it can post to the channel), so it is
parsed once, strictly, and reduced to its id and token. Requests then go to the API base
the operator configured (Discord's own by default), never to the host that was pasted: a
pasted URL can name a webhook, but it cannot choose where Plexus connects.

Error messages never repeat the pasted value; it may be a live secret.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import urlsplit

from plexus.providers.base import ProviderRejected

#: The hosts Discord serves webhook URLs from (the stable, PTB and canary clients copy
#: their own host into the URL they hand out).
DISCORD_HOSTS: Final = frozenset(
    {
        "discord.com",
        "ptb.discord.com",
        "canary.discord.com",
        "discordapp.com",
        "ptb.discordapp.com",
        "canary.discordapp.com",
    }
)
#: The canonical form every stored webhook URL takes, whatever host it was pasted with.
CANONICAL_BASE: Final = "https://discord.com/api/webhooks"
#: A pasted value longer than this is not a webhook URL (real ones are about 120).
MAX_URL_LENGTH: Final = 300

#: ``/api[/vN]/webhooks/{snowflake}/{token}``; snowflakes are 64-bit decimal ids and
#: tokens are URL-safe base64 (68 characters today; a little slack either way).
_PATH: Final = re.compile(
    r"/api(?:/v[0-9]{1,2})?/webhooks/(?P<id>[0-9]{15,21})/(?P<token>[A-Za-z0-9_-]{20,100})/?"
)
_SNOWFLAKE: Final = re.compile(r"[0-9]{15,21}")
_TOKEN: Final = re.compile(r"[A-Za-z0-9_-]{20,100}")


@dataclass(frozen=True, slots=True)
class WebhookRef:
    """One webhook, as its id and (secret) token."""

    id: str
    token: str = field(repr=False)

    def __post_init__(self) -> None:
        if not _SNOWFLAKE.fullmatch(self.id) or not _TOKEN.fullmatch(self.token):
            raise ProviderRejected("that is not a Discord webhook id and token")

    @property
    def path(self) -> str:
        """The API path of the webhook, relative to the API base."""
        return f"/webhooks/{self.id}/{self.token}"

    @property
    def canonical_url(self) -> str:
        return f"{CANONICAL_BASE}/{self.id}/{self.token}"


def parse_webhook_url(raw: str, *, extra_origin: str | None = None) -> WebhookRef:
    """The webhook a pasted URL names, or ``ProviderRejected``.

    Only ``https://`` on one of Discord's hosts, without user info, port, query or
    fragment, with exactly the webhook path. ``extra_origin`` (``scheme://host[:port]``)
    is accepted as well: the operator's ``api_url`` when it points at a test server.
    """
    value = raw.strip()
    if not value:
        raise ProviderRejected("paste the channel's webhook URL")
    if len(value) > MAX_URL_LENGTH or not value.isascii() or not value.isprintable():
        raise ProviderRejected("that is not a Discord webhook URL")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise ProviderRejected("that is not a Discord webhook URL") from None
    if parts.username is not None or parts.password is not None:
        raise ProviderRejected("a Discord webhook URL carries no user name or password")
    if parts.query or parts.fragment or "?" in value or "#" in value:
        raise ProviderRejected("a Discord webhook URL has no query or fragment")
    origin = f"{parts.scheme}://{parts.netloc}".lower()
    on_discord = parts.scheme == "https" and parts.hostname in DISCORD_HOSTS and port is None
    if not on_discord and (extra_origin is None or origin != extra_origin.lower()):
        raise ProviderRejected(
            "only webhook URLs on discord.com (https://discord.com/api/webhooks/...) are accepted"
        )
    match = _PATH.fullmatch(parts.path)
    if match is None:
        raise ProviderRejected(
            "that is not a webhook URL: expected https://discord.com/api/webhooks/<id>/<token>"
        )
    return WebhookRef(match["id"], match["token"])


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of an operator-configured URL."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()
