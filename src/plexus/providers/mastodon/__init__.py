"""The Mastodon provider: any server, one OAuth app registered per server."""

from plexus.providers.mastodon.instance import InstanceLimits, normalise_instance
from plexus.providers.mastodon.provider import MastodonProvider
from plexus.providers.mastodon.text import status_length

__all__ = ["InstanceLimits", "MastodonProvider", "normalise_instance", "status_length"]
