"""Instagram: publishing to professional accounts through the Instagram API with
Facebook Login (media containers, long-lived tokens).
"""

from plexus.providers.instagram.provider import InstagramProvider

__all__ = ["InstagramProvider"]
