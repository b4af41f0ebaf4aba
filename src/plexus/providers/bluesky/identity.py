"""atproto identity: handle and DID syntax, DID documents, and where an account's PDS is.

An account is a DID (``did:plc:…`` registered at a PLC directory, or ``did:web:host``); its
DID document names the PDS that hosts its repository (the service with id ``#atproto_pds``)
and its handle (``alsoKnownAs: ["at://handle"]``). See https://atproto.com/specs/did and
https://atproto.com/specs/handle.
"""

from __future__ import annotations

import re
import unicodedata
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote, urlsplit

import httpx

from plexus.providers.base import ProviderRejected, ProviderRetryable, raise_for_transport
from plexus.providers.bluesky.xrpc import PLATFORM, Xrpc

if TYPE_CHECKING:
    from collections.abc import Mapping

DEFAULT_PLC_URL: Final = "https://plc.directory"
_HANDLE_SEGMENT = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?"
#: A handle is a DNS name of two or more labels whose last label does not start with a
#: digit (https://atproto.com/specs/handle#handle-identifier-syntax).
HANDLE_RE: Final = re.compile(
    rf"^(?:{_HANDLE_SEGMENT}\.)+[a-zA-Z](?:[a-zA-Z0-9-]{{0,61}}[a-zA-Z0-9])?$"
)
DID_RE: Final = re.compile(r"^did:[a-z]+:[a-zA-Z0-9._:%-]*[a-zA-Z0-9._-]$")
MAX_HANDLE_LENGTH: Final = 253
MAX_DID_LENGTH: Final = 2048
#: The longest service (PDS, entryway, PLC directory) address accepted.
MAX_SERVICE_URL_LENGTH: Final = 512


def is_handle(value: str) -> bool:
    return len(value) <= MAX_HANDLE_LENGTH and HANDLE_RE.fullmatch(value) is not None


def is_did(value: str) -> bool:
    return len(value) <= MAX_DID_LENGTH and DID_RE.fullmatch(value) is not None


def normalize_identifier(value: str) -> str:
    """A handle (lower-cased, without a leading ``@``) or a DID; refuses anything else."""
    value = value.strip()
    if value.startswith("did:"):
        if not is_did(value):
            raise ProviderRejected("that is not a valid DID")
        return value
    handle = value.removeprefix("@").lower()
    if not is_handle(handle):
        raise ProviderRejected("that is not a valid handle (for example alice.bsky.social)")
    return handle


def service_url(value: str, what: str) -> str:
    """An https origin (``http`` only for loopback, as in development); no path, no
    credentials, no query. The guarded client decides whether the host may be reached.
    """
    value = value.strip().rstrip("/")
    if len(value) > MAX_SERVICE_URL_LENGTH:
        raise ProviderRejected(f"the {what} is too long")
    if any(c.isspace() or unicodedata.category(c).startswith("C") for c in value):
        raise ProviderRejected(f"the {what} must not hold spaces or control characters")
    try:
        parts = urlsplit(value)
        hostname = parts.hostname
        port = parts.port  # raises ValueError for a port out of range
    except ValueError:
        raise ProviderRejected(f"the {what} is not a valid URL") from None
    loopback = hostname in {"localhost", "127.0.0.1", "::1"}
    if parts.scheme not in {"https", "http"} or (parts.scheme == "http" and not loopback):
        raise ProviderRejected(f"the {what} must be an https:// URL")
    if not hostname or parts.username or parts.password or parts.query or parts.fragment:
        raise ProviderRejected(f"the {what} must be a plain https:// origin")
    if parts.path not in {"", "/"}:
        raise ProviderRejected(f"the {what} must be an origin without a path")
    origin = f"{parts.scheme}://{parts.netloc}"
    try:
        httpx.URL(origin + "/xrpc/")
    except (httpx.InvalidURL, ValueError):
        raise ProviderRejected(f"the {what} is not a valid URL") from None
    if port == 0:
        raise ProviderRejected(f"the {what} is not a valid URL")
    return origin


def pds_endpoint(did_doc: Mapping[str, Any], did: str) -> str | None:
    """The ``#atproto_pds`` service endpoint of a DID document that belongs to ``did``."""
    if did_doc.get("id") != did:
        return None
    services = did_doc.get("service")
    if not isinstance(services, list):
        return None
    for service in services:
        if not isinstance(service, dict):
            continue
        ident = str(service.get("id", ""))
        if ident in {"#atproto_pds", f"{did}#atproto_pds"} and (
            service.get("type") == "AtprotoPersonalDataServer"
        ):
            endpoint = service.get("serviceEndpoint")
            if isinstance(endpoint, str):
                return service_url(endpoint, "PDS address in the DID document")
    return None


def handle_of(did_doc: Mapping[str, Any]) -> str | None:
    """The handle a DID document claims (``at://handle`` in ``alsoKnownAs``)."""
    aliases = did_doc.get("alsoKnownAs")
    if not isinstance(aliases, list):
        return None
    for alias in aliases:
        if isinstance(alias, str) and alias.startswith("at://"):
            handle = alias.removeprefix("at://").lower()
            if is_handle(handle):
                return handle
    return None


def did_document_url(did: str, plc_url: str) -> str:
    if did.startswith("did:plc:"):
        return f"{plc_url.rstrip('/')}/{quote(did, safe=':')}"
    if did.startswith("did:web:"):
        host = did.removeprefix("did:web:")
        if ":" in host.replace("%3A", ""):
            raise ProviderRejected("did:web with a path is not supported by atproto")
        if "%" in host.replace("%3A", ""):
            raise ProviderRejected("that did:web names no valid host")
        try:
            origin = service_url(f"https://{host.replace('%3A', ':')}", "did:web host")
        except ProviderRejected:
            raise ProviderRejected("that did:web names no valid host") from None
        return f"{origin}/.well-known/did.json"
    raise ProviderRejected("only did:plc and did:web accounts are supported")


def resolve_did(http: httpx.Client, did: str, plc_url: str) -> dict[str, Any]:
    """Fetch the DID document of ``did`` (PLC directory or did:web)."""
    url = did_document_url(did, plc_url)
    try:
        response = http.get(url, headers={"accept": "application/did+ld+json, application/json"})
    except httpx.InvalidURL:
        raise ProviderRejected("the DID directory address is not a valid URL") from None
    except httpx.HTTPError as exc:
        raise raise_for_transport(exc, "the DID directory") from None
    if response.status_code >= 500:  # noqa: PLR2004
        raise ProviderRetryable(f"the DID directory answered {response.status_code}")
    if not response.is_success:
        raise ProviderRejected(f"the DID document of the account was not found ({did})")
    try:
        doc = response.json()
    except ValueError:
        doc = None
    if not isinstance(doc, dict) or doc.get("id") != did:
        raise ProviderRejected(f"the DID document of {did} is not valid")
    return doc


def resolve_handle(xrpc: Xrpc, handle: str) -> str | None:
    """The DID a handle points to, as the service resolves it; None when it does not."""
    try:
        data = xrpc.query("com.atproto.identity.resolveHandle", {"handle": handle})
    except ProviderRejected:
        return None
    did = data.get("did")
    return did if isinstance(did, str) and is_did(did) else None


def find_pds(
    http: httpx.Client, did: str, did_doc: Mapping[str, Any] | None, plc_url: str
) -> tuple[str, dict[str, Any]]:
    """The PDS hosting ``did``: from ``did_doc`` when given (createSession includes it),
    else from the resolved document. Returns the endpoint and the document used.
    """
    if did_doc:
        endpoint = pds_endpoint(did_doc, did)
        if endpoint:
            return endpoint, dict(did_doc)
    doc = resolve_did(http, did, plc_url)
    endpoint = pds_endpoint(doc, did)
    if endpoint is None:
        raise ProviderRejected(f"{PLATFORM}: the DID document of {did} names no PDS")
    return endpoint, doc
