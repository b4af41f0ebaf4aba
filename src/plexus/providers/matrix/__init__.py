"""The Matrix provider: posts to a room over the client-server API."""

from plexus.providers.matrix.provider import MatrixProvider

__all__ = ["MatrixProvider"]
