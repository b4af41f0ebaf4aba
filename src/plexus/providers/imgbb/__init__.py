"""ImgBB: image uploads with the user's API key (upload only: no delete, no read-back)."""

from plexus.providers.imgbb.provider import ImgbbProvider

__all__ = ["ImgbbProvider"]
