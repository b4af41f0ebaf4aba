"""Telegram: a bot posting to a channel or group through the Bot API."""

from plexus.providers.telegram.provider import TelegramProvider

__all__ = ["TelegramProvider"]
