"""Bluesky (atproto) provider: atproto OAuth or app-password sessions, posts with facets
and images. ``client_metadata`` is the document Plexus serves for its OAuth client.
"""

from plexus.providers.bluesky.atproto_oauth import METADATA_PATH, client_metadata
from plexus.providers.bluesky.provider import BlueskyProvider

__all__ = ["METADATA_PATH", "BlueskyProvider", "client_metadata"]
