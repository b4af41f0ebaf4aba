"""Discord channel webhooks (created through OAuth2 ``webhook.incoming``, or pasted)."""

from plexus.providers.discord.provider import DiscordProvider

__all__ = ["DiscordProvider"]
