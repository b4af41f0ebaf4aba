"""The explicit list of providers Plexus offers, keyed by name.

A provider is listed here only when it is finished: it passes the contract tests against
its fake (or real) platform server. Nothing registers itself by being imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from plexus.providers.airtable import AirtableProvider
from plexus.providers.bluesky import BlueskyProvider
from plexus.providers.discord import DiscordProvider
from plexus.providers.imgbb import ImgbbProvider
from plexus.providers.imgur import ImgurProvider
from plexus.providers.instagram import InstagramProvider
from plexus.providers.mastodon import MastodonProvider
from plexus.providers.matrix import MatrixProvider
from plexus.providers.sandbox import SandboxProvider
from plexus.providers.telegram import TelegramProvider

if TYPE_CHECKING:
    from plexus.providers.base import Provider

#: Every finished provider, in the order the API lists them.
_FINISHED: tuple[type[Provider], ...] = (
    SandboxProvider,
    DiscordProvider,
    InstagramProvider,
    ImgurProvider,
    ImgbbProvider,
    AirtableProvider,
    MastodonProvider,
    BlueskyProvider,
    TelegramProvider,
    MatrixProvider,
)

PROVIDERS: dict[str, type[Provider]] = {cls.name: cls for cls in _FINISHED}


def provider_class(name: str) -> type[Provider] | None:
    return PROVIDERS.get(name)


def provider_names() -> list[str]:
    return sorted(PROVIDERS)
