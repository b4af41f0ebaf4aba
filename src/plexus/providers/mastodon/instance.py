"""Which Mastodon server a user means, and what that server allows.

``normalise_instance`` turns what a user typed (``mastodon.social``, ``https://Host/``,
``@me@host``) into an origin ``https://host[:port]``. ``checked_origin`` adds the
operator's destination policy: plain ``http://`` is accepted only for hosts inside the
networks the operator explicitly allowed (a test or a LAN instance), and a host that
resolves to a non-public address outside them is refused before any request is made. The
guarded outbound client checks again at connect time, so DNS rebinding cannot slip past.

``InstanceLimits`` reads the server's ``configuration`` (``GET /api/v2/instance``) into
plain values stored in ``Account.settings``; the defaults are Mastodon's own, used only
when a server leaves a value out.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from plexus.providers.base import ProviderRejected, ProviderRetryable

if TYPE_CHECKING:
    from collections.abc import Mapping

    from plexus.kit.http import DestinationPolicy

HOST_NAME_RE: Final = re.compile(
    r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*"
)
DEFAULT_MAX_CHARACTERS: Final = 500
DEFAULT_MAX_MEDIA_ATTACHMENTS: Final = 4
DEFAULT_CHARACTERS_RESERVED_PER_URL: Final = 23
DEFAULT_IMAGE_SIZE_LIMIT: Final = 16 * 1024 * 1024
DEFAULT_VIDEO_SIZE_LIMIT: Final = 99 * 1024 * 1024
DEFAULT_DESCRIPTION_LIMIT: Final = 1500
DEFAULT_MIME_TYPES: Final = (
    "image/jpeg",
    "image/png",
    "image/gif",
    "image/heic",
    "image/heif",
    "image/webp",
    "image/avif",
    "video/webm",
    "video/mp4",
    "video/quicktime",
    "video/ogg",
)


def normalise_instance(value: str) -> tuple[str, str]:
    """``(scheme, host[:port])`` of the server the user named; no network access."""
    raw = value.strip()
    if raw.startswith("@") and raw.count("@") == 2:  # noqa: PLR2004 - "@user@host"
        raw = raw.rsplit("@", 1)[1]
    if "://" not in raw:
        raw = f"https://{raw}"
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError:
        raise ProviderRejected("that is not a Mastodon server address") from None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").rstrip(".")
    if scheme not in {"https", "http"} or not host:
        raise ProviderRejected("give the Mastodon server as a host name, e.g. mastodon.social")
    if parts.username is not None or parts.password is not None:
        raise ProviderRejected("a Mastodon server address carries no user name or password")
    if parts.path not in {"", "/"} or parts.query or parts.fragment:
        raise ProviderRejected("give only the Mastodon server's address, without a path")
    host = _canonical_host(host)
    default_port = (scheme, port) in {("https", 443), ("http", 80)}
    netloc = host if port is None or default_port else f"{host}:{port}"
    return scheme, netloc


def _canonical_host(host: str) -> str:
    """An IP literal in its compressed form (IPv6 in brackets), a name as IDNA ASCII."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        try:
            name = host.encode("idna").decode("ascii").lower()
        except UnicodeError:
            name = ""
        if not HOST_NAME_RE.fullmatch(name):
            raise ProviderRejected("that is not a valid host name") from None
        return name
    return f"[{ip.compressed}]" if ip.version == 6 else ip.compressed  # noqa: PLR2004


def _addresses(netloc: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    host = urlsplit(f"//{netloc}").hostname or ""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        # Possibly a passing DNS failure: not a reason to drop an existing connection.
        raise ProviderRetryable(f"the Mastodon server {host} cannot be found") from None
    return [ipaddress.ip_address(info[4][0]) for info in infos]


def checked_origin(value: str, policy: DestinationPolicy) -> str:
    """The instance origin, if the operator's destination policy allows reaching it."""
    scheme, netloc = normalise_instance(value)
    addresses = _addresses(netloc)
    if not addresses or not all(policy.permits(a) for a in addresses):
        raise ProviderRejected(f"{netloc} is not a public address; it cannot be connected")
    if scheme == "http" and not all(
        any(a in network for network in policy.allowed_networks) for a in addresses
    ):
        raise ProviderRejected("Mastodon servers are reached over https://")
    return f"{scheme}://{netloc}"


def _section(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key)
    return value if isinstance(value, dict) else {}


def _positive_int(value: object, default: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return default
    return int(value)


@dataclass(frozen=True, slots=True)
class InstanceLimits:
    """What one Mastodon server allows in a status, from its instance configuration."""

    max_characters: int = DEFAULT_MAX_CHARACTERS
    max_media_attachments: int = DEFAULT_MAX_MEDIA_ATTACHMENTS
    characters_reserved_per_url: int = DEFAULT_CHARACTERS_RESERVED_PER_URL
    image_size_limit: int = DEFAULT_IMAGE_SIZE_LIMIT
    video_size_limit: int = DEFAULT_VIDEO_SIZE_LIMIT
    description_limit: int = DEFAULT_DESCRIPTION_LIMIT
    supported_mime_types: tuple[str, ...] = DEFAULT_MIME_TYPES

    @classmethod
    def from_instance(cls, instance: Mapping[str, Any]) -> InstanceLimits:
        """From ``GET /api/v2/instance`` (or v1, whose ``configuration`` is the same)."""
        config = _section(instance, "configuration")
        statuses = _section(config, "statuses")
        media = _section(config, "media_attachments")
        mimes = media.get("supported_mime_types")
        return cls(
            max_characters=_positive_int(statuses.get("max_characters"), DEFAULT_MAX_CHARACTERS),
            max_media_attachments=_positive_int(
                statuses.get("max_media_attachments"), DEFAULT_MAX_MEDIA_ATTACHMENTS
            ),
            characters_reserved_per_url=_positive_int(
                statuses.get("characters_reserved_per_url"), DEFAULT_CHARACTERS_RESERVED_PER_URL
            ),
            image_size_limit=_positive_int(media.get("image_size_limit"), DEFAULT_IMAGE_SIZE_LIMIT),
            video_size_limit=_positive_int(media.get("video_size_limit"), DEFAULT_VIDEO_SIZE_LIMIT),
            description_limit=_positive_int(
                media.get("description_limit"), DEFAULT_DESCRIPTION_LIMIT
            ),
            supported_mime_types=(
                tuple(str(m) for m in mimes if isinstance(m, str))
                if isinstance(mimes, list) and mimes
                else DEFAULT_MIME_TYPES
            ),
        )

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> InstanceLimits:
        """From ``Account.settings`` as ``as_settings`` wrote them (defaults when absent)."""
        mimes = settings.get("supported_mime_types")
        return cls(
            max_characters=_positive_int(settings.get("max_characters"), DEFAULT_MAX_CHARACTERS),
            max_media_attachments=_positive_int(
                settings.get("max_media_attachments"), DEFAULT_MAX_MEDIA_ATTACHMENTS
            ),
            characters_reserved_per_url=_positive_int(
                settings.get("characters_reserved_per_url"), DEFAULT_CHARACTERS_RESERVED_PER_URL
            ),
            image_size_limit=_positive_int(
                settings.get("image_size_limit"), DEFAULT_IMAGE_SIZE_LIMIT
            ),
            video_size_limit=_positive_int(
                settings.get("video_size_limit"), DEFAULT_VIDEO_SIZE_LIMIT
            ),
            description_limit=_positive_int(
                settings.get("description_limit"), DEFAULT_DESCRIPTION_LIMIT
            ),
            supported_mime_types=(
                tuple(str(m) for m in mimes)
                if isinstance(mimes, list | tuple) and mimes
                else DEFAULT_MIME_TYPES
            ),
        )

    def as_settings(self) -> dict[str, Any]:
        return {
            "max_characters": self.max_characters,
            "max_media_attachments": self.max_media_attachments,
            "characters_reserved_per_url": self.characters_reserved_per_url,
            "image_size_limit": self.image_size_limit,
            "video_size_limit": self.video_size_limit,
            "description_limit": self.description_limit,
            "supported_mime_types": list(self.supported_mime_types),
        }
