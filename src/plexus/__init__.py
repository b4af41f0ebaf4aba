"""Plexus: a self-hosted, security-first integration hub."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("plexus")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
