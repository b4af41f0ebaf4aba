"""Building provider instances from the settings, and the one OAuth redirect URI."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from plexus.errors import NotFound
from plexus.kit.http import DestinationPolicy
from plexus.providers.base import Provider, ProviderContext, ProviderSettings
from plexus.providers.registry import PROVIDERS, provider_class

if TYPE_CHECKING:
    from plexus.config import Settings

CALLBACK_PATH: Final = "/api/v1/connections/oauth/callback"


def public_base(settings: Settings) -> str:
    return settings.issuer.rstrip("/")


def redirect_uri(settings: Settings) -> str:
    """The exact redirect URI registered with every platform: one for all providers."""
    return public_base(settings) + CALLBACK_PATH


def context_for(settings: Settings, name: str) -> ProviderContext:
    return ProviderContext(
        settings=ProviderSettings(settings.provider_values(name)),
        destinations=DestinationPolicy.from_strings(settings.outbound_allow_networks),
        public_url=public_base(settings),
        development=not settings.is_production,
    )


def build_provider(settings: Settings, name: str) -> Provider:
    """The provider ``name``, configured for this deployment; 404 for an unknown name."""
    cls = provider_class(name)
    if cls is None:
        raise NotFound(f"There is no provider named {name!r}.")
    return cls(context_for(settings, name))


def all_providers(settings: Settings) -> list[Provider]:
    return [cls(context_for(settings, name)) for name, cls in PROVIDERS.items()]
