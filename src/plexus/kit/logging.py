"""Structured JSON logging with a redaction layer that every log line passes through.

Each line is one JSON object with a UTC ISO-8601 timestamp and the request id. Values are
redacted by key name (passwords, tokens, keys, cookies, ``Authorization``...), by shape
(bearer tokens, JWTs, Plexus API keys, credentials in URLs, PEM blocks) and by identity
(every secret the running configuration holds, and any ``SecretStr``). JSON encoding
escapes newlines and control characters, so a logged value can never forge a line.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any, Final, TextIO

import structlog
from pydantic import SecretStr

from plexus.kit.context import current_client_ip, current_request_id

REDACTED: Final = "[REDACTED]"
#: Shorter known values are not scrubbed verbatim (they would hit ordinary words).
MIN_SCRUB_LENGTH: Final = 8
MAX_DEPTH: Final = 8

_SENSITIVE_KEY: Final = re.compile(
    r"pass(word|wd|phrase)?|secret|token|api[_-]?key|private[_-]?key|\bkey$|_key$|^key_|"
    r"authori[sz]ation|cookie|session|credential|signature|otp|totp|recovery|pepper|"
    r"client[_-]?secret|refresh|bearer|dsn",
    re.IGNORECASE,
)

#: Shapes that are secrets wherever they appear inside a logged string.
_SECRET_SHAPES: Final = (
    # Authorization header values: "Bearer x", "Basic x", "Token x", "DPoP x".
    re.compile(r"(?i)\b(bearer|basic|token|dpop)\s+[A-Za-z0-9._~+/=-]{8,}"),
    # JSON Web Tokens.
    re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"),
    # Plexus API keys (plx_<env>_<random>_<checksum>).
    re.compile(r"\bplx_[a-z]+_[A-Za-z0-9]{8,}(_[A-Za-z0-9]+)?"),
    # Credentials inside URLs: scheme://user:password@host.
    re.compile(r"(?<=://)[^/\s:@]+:[^/\s@]+(?=@)"),
    # PEM private keys.
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----"),
    # Query-string or form pairs whose name says secret: token=..., password=..., key=...
    re.compile(
        r"(?i)(?<=[?&;\s])((?:access_|refresh_|id_)?token|password|passwd|secret|api_?key|"
        r"key|code|client_secret|signature|sig)=[^&\s;]+"
    ),
)


#: ``name: value`` / ``name=value`` pairs inside free text (JSON, Python reprs, headers)
#: whose name says secret: the name is kept, the value replaced.
_SECRET_PAIR: Final = re.compile(
    r"""(?ix)
    (["']?)                                   # optional quote around the name
    ([a-z0-9_-]*(?:pass(?:word|wd|phrase)?|secret|token|api[_-]?key|authori[sz]ation|
        cookie|session|credential|private[_-]?key)[a-z0-9_-]*)
    \1
    # "=" anywhere; ":" only before a space or a quote, so identifiers such as the
    # permission "api_key:read" or the event "auth:session:ended" are left alone.
    (\s*(?:=|:(?=\s|["']))\s*)
    (["']?)                                   # optional quote around the value
    ((?:(?:bearer|basic|digest)\s+)?[^"'\s,&;}\]]+)  # an auth scheme goes with its value
    \4
    """
)


def _mask_pair(match: re.Match[str]) -> str:
    quote, name, sep, vquote = match.group(1), match.group(2), match.group(3), match.group(4)
    return f"{quote}{name}{quote}{sep}{vquote}{REDACTED}{vquote}"


class _KnownSecrets:
    """Secret values registered at runtime (configuration, generated keys) to scrub verbatim."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: frozenset[str] = frozenset()
        self._pattern: re.Pattern[str] | None = None

    def add(self, values: Iterable[str]) -> None:
        with self._lock:
            # Very short values would scrub ordinary words; secrets are long by policy.
            merged = set(self._values) | {v for v in values if len(v) >= MIN_SCRUB_LENGTH}
            self._values = frozenset(merged)
            ordered = sorted(self._values, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(v) for v in ordered)) if ordered else None

    def scrub(self, text: str) -> str:
        pattern = self._pattern
        return pattern.sub(REDACTED, text) if pattern is not None else text


KNOWN_SECRETS: Final = _KnownSecrets()


def register_secrets(values: Iterable[str]) -> None:
    """Make the logger redact these exact values wherever they appear."""
    KNOWN_SECRETS.add(values)


def redact_text(text: str) -> str:
    text = KNOWN_SECRETS.scrub(text)
    text = _SECRET_PAIR.sub(_mask_pair, text)
    for shape in _SECRET_SHAPES:
        text = shape.sub(REDACTED, text)
    return text


def redact_value(key: str | None, value: Any, depth: int = 0) -> Any:  # noqa: PLR0911
    """Redact one value, recursing into mappings and sequences."""
    sensitive = key is not None and _SENSITIVE_KEY.search(key) is not None
    if sensitive and value not in (None, "", [], {}) and not isinstance(value, bool | int | float):
        return REDACTED
    if isinstance(value, SecretStr):
        return REDACTED
    if depth > MAX_DEPTH:
        return "[TRUNCATED]"
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, bytes):
        return redact_text(value.decode("utf-8", "backslashreplace"))
    if isinstance(value, Mapping):
        return {str(k): redact_value(str(k), v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact_value(None, v, depth + 1) for v in value]
    if isinstance(value, bool | int | float) or value is None:
        return value
    return redact_text(repr(value))


def _drop_console_extras(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    # uvicorn adds an ANSI-coloured copy of its message for terminals; JSON logs want none.
    event_dict.pop("color_message", None)
    return event_dict


def _redact_processor(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        if key in ("timestamp", "level", "logger"):
            continue
        if key == "event":
            event_dict[key] = redact_value(None, event_dict[key])
        else:
            event_dict[key] = redact_value(key, event_dict[key])
    return event_dict


def _add_request_context(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    request_id = current_request_id()
    if request_id is not None:
        event_dict.setdefault("request_id", request_id)
    client_ip = current_client_ip()
    if client_ip is not None:
        event_dict.setdefault("client_ip", client_ip)
    return event_dict


def _render_exception(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Turn exc_info into a redacted traceback string (for the log only, never a response)."""
    exc_info = event_dict.pop("exc_info", None)
    if exc_info:
        if exc_info is True:
            exc_info = sys.exc_info()
        if isinstance(exc_info, BaseException):
            exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
        if isinstance(exc_info, tuple) and exc_info[0] is not None:
            import traceback

            event_dict["exception"] = redact_text("".join(traceback.format_exception(*exc_info)))
    return event_dict


def _json_renderer(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> str:
    # ensure_ascii also escapes U+2028/U+2029, which some readers treat as line breaks.
    return json.dumps(event_dict, default=repr, ensure_ascii=True, separators=(",", ":"))


_SHARED_PROCESSORS: Final[list[Any]] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    _add_request_context,
    structlog.stdlib.PositionalArgumentsFormatter(),
    _render_exception,
    _drop_console_extras,
    _redact_processor,
]


def configure_logging(level: str = "INFO", stream: TextIO | None = None) -> None:
    """Route structlog and the standard library's logging through one JSON pipeline."""
    out = stream or sys.stderr
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.stdlib.ExtraAdder(),
            *_SHARED_PROCESSORS,
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _json_renderer,
        ],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # These libraries log on their own; their lines pass through the same redaction, and
    # uvicorn's access log is replaced by Plexus's own (route templates, no query strings).
    for name in ("uvicorn", "uvicorn.error", "huey", "huey.consumer", "alembic"):
        lib = logging.getLogger(name)
        lib.handlers.clear()
        lib.propagate = True
    logging.getLogger("uvicorn.access").disabled = True
    # HTTP client libraries log every request's full URL at INFO, and a platform's URL can
    # carry a token in its path; Plexus logs its outbound calls itself, redacted.
    for name in ("httpx", "httpx2", "httpcore", "hpack"):
        logging.getLogger(name).setLevel(logging.WARNING)
    structlog.configure(
        processors=[
            *_SHARED_PROCESSORS,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger
