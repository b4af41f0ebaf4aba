"""Imgur: single-image uploads on the user's account, over OAuth2 with refresh tokens."""

from plexus.providers.imgur.provider import ImgurProvider

__all__ = ["ImgurProvider"]
