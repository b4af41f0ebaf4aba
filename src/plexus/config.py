"""Settings: one typed object, read once, that refuses unsafe production configurations.

Everything Plexus is configured with comes from ``PLEXUS_*`` environment variables (or, for
each secret, ``PLEXUS_<NAME>_FILE`` pointing at a file, as Docker and Kubernetes secrets
are mounted). ``.env`` is read only in development. Nothing else in Plexus reads
``os.environ``.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

ENV_PREFIX: Final = "PLEXUS_"
DEV_SECRETS_FILE: Final = "dev-secrets.env"
MIN_SECRET_BYTES: Final = 32
#: OWASP's floor for bcrypt; the default is 12.
MIN_PRODUCTION_BCRYPT_ROUNDS: Final = 10

#: Fields whose value is a secret: each is a SecretStr, may come from ``PLEXUS_<NAME>_FILE``,
#: must be at least MIN_SECRET_BYTES long in production, and is generated in development.
SECRET_FIELDS: Final = ("audit_key", "password_pepper", "token_key", "index_key", "master_key")
#: Further secrets that may come from ``PLEXUS_<NAME>_FILE`` but are optional.
EXTRA_SECRET_FIELDS: Final = (
    "master_key_previous",
    "vault_token",
    "database_url",
    "redis_url",
    "media_s3_access_key_id",
    "media_s3_secret_access_key",
)
#: Per-provider settings: ``PLEXUS_PROVIDER_<NAME>_<KEY>``; keys ending like these are secrets.
PROVIDER_PREFIX: Final = "PLEXUS_PROVIDER_"
PROVIDER_SECRET_SUFFIXES: Final = ("secret", "token", "key", "password")

#: Markers of values that were copied from ``.env.example`` (or are well-known defaults)
#: rather than chosen for this deployment. A secret containing one is refused in production.
PLACEHOLDER_MARKERS: Final = (
    "change-me",
    "changeme",
    "replace-me",
    "placeholder",
    "example",
    "your-secret",
    "xxxxxxxx",
)


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class ConfigError(Exception):
    """The configuration cannot be used; ``problems`` holds one readable line per fault.

    No line ever contains a secret's value, only the variable's name.
    """

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def env_name(field: str) -> str:
    return f"{ENV_PREFIX}{field.upper()}"


class Settings(BaseSettings):
    """Every setting Plexus has. See ``.env.example`` for one line of documentation each."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="ignore",
        case_sensitive=False,
        frozen=True,
    )

    env: Environment = Environment.DEVELOPMENT
    data_dir: Path = Path("var")
    database_url: SecretStr | None = None
    database_statement_timeout_ms: int = Field(default=15_000, ge=100, le=600_000)
    redis_url: SecretStr | None = None
    queue_file: Path | None = None
    queue_name: str = Field(default="plexus", pattern=r"^[a-z][a-z0-9_-]{0,63}$")

    audit_key: SecretStr | None = None
    password_pepper: SecretStr | None = None
    token_key: SecretStr | None = None
    #: Key of the blind indexes (e-mail look-ups and uniqueness); must never change.
    index_key: SecretStr | None = None
    master_key: SecretStr | None = None
    #: Earlier master keys, comma-separated, that still unwrap while ``plexus keys rotate``
    #: moves their secrets to the current key (see docs/operations.md).
    master_key_previous: SecretStr | None = None
    key_provider: Literal["local", "vault-transit"] = "local"
    vault_addr: str | None = Field(default=None, pattern=r"^https?://[^\s?#]+$")
    vault_token: SecretStr | None = None
    vault_transit_mount: str = Field(
        default="transit", pattern=r"^[A-Za-z0-9][A-Za-z0-9_/-]{0,127}$"
    )
    vault_transit_key: str = Field(default="plexus", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
    vault_ca_file: Path | None = None

    bcrypt_rounds: int = Field(default=12, ge=4, le=16)
    signup_open: bool = False
    hibp_enabled: bool = False
    hibp_url: str = Field(default="https://api.pwnedpasswords.com", pattern=r"^https?://[^\s?#]+$")
    hibp_unreachable: Literal["allow", "refuse"] = "allow"
    access_token_ttl_seconds: int = Field(default=900, ge=30, le=900)
    refresh_token_idle_seconds: int = Field(default=14 * 86_400, ge=60, le=90 * 86_400)
    refresh_family_lifetime_seconds: int = Field(default=30 * 86_400, ge=60, le=365 * 86_400)
    web_session_idle_seconds: int = Field(default=1_800, ge=60, le=86_400)
    web_session_absolute_seconds: int = Field(default=43_200, ge=300, le=30 * 86_400)
    reauth_window_seconds: int = Field(default=600, ge=30, le=3_600)
    lockout_threshold: int = Field(default=5, ge=1, le=100)
    lockout_base_seconds: int = Field(default=30, ge=1, le=86_400)
    lockout_max_seconds: int = Field(default=3_600, ge=1, le=7 * 86_400)
    rate_limits: str = ""
    ip_block_base_seconds: int = Field(default=900, ge=1, le=7 * 86_400)
    ip_block_max_seconds: int = Field(default=7 * 86_400, ge=1, le=365 * 86_400)

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    public_url: str | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    trusted_proxies: list[str] = Field(default_factory=list)
    cors_origins: list[str] = Field(default_factory=list)
    openapi_enabled: bool | None = None

    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    request_deadline_seconds: float = Field(default=30.0, gt=0, le=600)
    keep_alive_seconds: int = Field(default=5, ge=1, le=120)
    header_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    log_level: str = "INFO"

    #: ``PLEXUS_PROVIDER_<NAME>_<KEY>`` values (client ids and secrets, API base URLs),
    #: keyed ``<name>_<key>`` in lower case; see ``provider_values``.
    provider_config: dict[str, SecretStr] = Field(default_factory=dict)
    #: Networks (CIDR) outbound requests to user-given hosts may reach besides public ones.
    outbound_allow_networks: list[str] = Field(default_factory=list)
    #: How far ahead of a token's refresh time the periodic job refreshes it.
    token_refresh_margin_seconds: int = Field(default=900, ge=60, le=86_400)

    #: Media uploads (docs/media.md): the largest upload, in bytes (images: the lower cap).
    media_max_bytes: int = Field(default=50 * 1_048_576, ge=1024, le=4 * 1_073_741_824)
    media_max_image_bytes: int = Field(default=20 * 1_048_576, ge=1024, le=1_073_741_824)
    #: Largest image decoded, in pixels (width x height), checked from its header.
    media_max_image_pixels: int = Field(default=40_000_000, ge=1, le=200_000_000)
    media_max_video_seconds: int = Field(default=900, ge=1, le=86_400)
    #: Total bytes of media one workspace may store.
    media_workspace_quota_bytes: int = Field(default=5 * 1_073_741_824, ge=0)
    #: Where media bytes live: a folder under data_dir, or an S3-compatible bucket.
    media_storage: Literal["local", "s3"] = "local"
    media_s3_bucket: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    #: Only for S3-compatible services (MinIO, Ceph, R2); unset = AWS's endpoint of the
    #: region. No credentials, query or fragment in it.
    media_s3_endpoint_url: str | None = Field(
        default=None, pattern=r"^https?://[^\s/?#@]+(?:/[^\s?#@]*)?$"
    )
    media_s3_region: str = Field(default="us-east-1", pattern=r"^[a-z0-9][a-z0-9-]{0,31}$")
    #: Static credentials (both or neither); without them only the platform's role
    #: credentials are used (plexus.media.s3 says which).
    media_s3_access_key_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9+/=_.-]{1,128}$")
    media_s3_secret_access_key: SecretStr | None = None
    #: Folder of the bucket the objects go under: empty, or path segments each ending in "/".
    media_s3_prefix: str = Field(
        default="", max_length=256, pattern=r"^(?:[A-Za-z0-9_-][A-Za-z0-9._-]*/)*$"
    )
    media_s3_path_style: bool = False
    media_s3_sse: Literal["AES256", "none"] = "AES256"
    media_s3_ca_file: Path | None = None
    #: How long a worker holds a publication it is sending. Past it, the dispatcher takes
    #: the worker for dead and reconciles; it must exceed the longest publish (uploads
    #: included), or a slow one still in flight would be looked up before it lands.
    publish_lease_seconds: int = Field(default=900, ge=5, le=86_400)
    #: How long after an unanswered publish Plexus first asks the platform what it holds.
    publish_reconcile_delay_seconds: int = Field(default=60, ge=0, le=86_400)
    #: Attempts before a publication that keeps failing temporarily is marked failed.
    publish_max_attempts: int = Field(default=8, ge=1, le=100)
    #: Exponential backoff between attempts: base, doubled each time, capped; with jitter.
    publish_backoff_base_seconds: float = Field(default=30.0, ge=0.1, le=3600)
    publish_backoff_max_seconds: float = Field(default=3600.0, ge=1, le=86_400)
    #: Look-ups of an unconfirmed publication before it waits for a person.
    publish_max_reconcile_attempts: int = Field(default=10, ge=1, le=1000)
    #: Outbound webhooks (docs/webhooks.md): how long a rotated-out secret keeps signing.
    webhook_secret_overlap_seconds: int = Field(default=86_400, ge=0, le=30 * 86_400)
    #: Retries: exponential from this base, doubled each time, capped; with jitter.
    webhook_retry_base_seconds: float = Field(default=30.0, ge=0.1, le=3_600)
    webhook_retry_max_seconds: float = Field(default=21_600.0, ge=1, le=86_400)
    #: No attempt is scheduled later than this after an event's first attempt.
    webhook_retry_window_seconds: int = Field(default=3 * 86_400, ge=60, le=30 * 86_400)
    #: An endpoint whose every delivery has failed for this long is disabled.
    webhook_disable_after_seconds: int = Field(default=5 * 86_400, ge=60, le=90 * 86_400)
    #: Total time one delivery may take (connect, send, read the capped answer).
    webhook_timeout_seconds: float = Field(default=15.0, gt=0, le=120)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # load_settings() has already gathered the environment, the *_FILE secrets and (in
        # development) .env into the init values; no other source may add to them.
        del settings_cls, env_settings, dotenv_settings, file_secret_settings
        return (init_settings,)

    @field_validator("trusted_proxies", "outbound_allow_networks")
    @classmethod
    def _valid_networks(cls, value: list[str]) -> list[str]:
        for item in value:
            ipaddress.ip_network(item, strict=False)
        return value

    @field_validator(
        "media_s3_bucket",
        "media_s3_endpoint_url",
        "media_s3_access_key_id",
        "media_s3_secret_access_key",
        "media_s3_ca_file",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # ``PLEXUS_MEDIA_S3_ENDPOINT_URL=`` (as an env file leaves it) means "not set".
        return None if value == "" else value

    @field_validator("master_key")
    @classmethod
    def _valid_master_key(cls, value: SecretStr | None) -> SecretStr | None:
        from plexus.kit.keyproviders import decode_master_key

        if value is not None:
            decode_master_key(value.get_secret_value())
        return value

    @field_validator("master_key_previous")
    @classmethod
    def _valid_previous_keys(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and any(
            len(key.encode()) < MIN_SECRET_BYTES for key in _split_keys(value)
        ):
            msg = f"each comma-separated key is at least {MIN_SECRET_BYTES} bytes"
            raise ValueError(msg)
        return value

    @field_validator("rate_limits")
    @classmethod
    def _valid_rate_limits(cls, value: str) -> str:
        from plexus.security.ratelimit import limit_table

        try:
            limit_table(value)
        except ConfigError:
            msg = "entries are class=limit separated by ';', e.g. login=10/minute"
            raise ValueError(msg) from None
        return value

    @field_validator("cors_origins")
    @classmethod
    def _valid_origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            if origin == "*" or not origin.startswith(("https://", "http://")):
                msg = "each origin must be a full http(s) origin; '*' is not allowed"
                raise ValueError(msg)
            if origin.rstrip("/") != origin or origin.count("/") != 2:  # noqa: PLR2004 - "//" only
                msg = "an origin has a scheme and a host, and no path"
                raise ValueError(msg)
        return value

    @property
    def is_production(self) -> bool:
        return self.env is Environment.PRODUCTION

    @property
    def tls_enabled(self) -> bool:
        return self.tls_cert_file is not None and self.tls_key_file is not None

    @property
    def resolved_database_url(self) -> str:
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return f"sqlite:///{(self.data_dir / 'plexus.db').resolve()}"

    @property
    def resolved_queue_file(self) -> Path:
        return self.queue_file or self.data_dir / "queue.db"

    @property
    def issuer(self) -> str:
        """The ``iss`` of the tokens this deployment signs: its public address."""
        return self.public_url or f"http://{self.host}:{self.port}"

    @property
    def api_key_env(self) -> Literal["live", "test"]:
        """Production keys are ``plx_live_``; every other environment issues ``plx_test_``."""
        return "live" if self.is_production else "test"

    @property
    def docs_enabled(self) -> bool:
        if self.openapi_enabled is not None:
            return self.openapi_enabled
        return not self.is_production

    def secret(self, name: str) -> str:
        """The value of a secret setting; raises if it is unset (validated at startup)."""
        value = getattr(self, name)
        if not isinstance(value, SecretStr):
            msg = f"{env_name(name)} is not set"
            raise ConfigError([msg])
        return value.get_secret_value()

    def provider_values(self, provider: str) -> dict[str, str]:
        """The operator's settings for one provider, keyed by setting name (``client_id``)."""
        prefix = f"{provider}_"
        return {
            key[len(prefix) :]: value.get_secret_value()
            for key, value in self.provider_config.items()
            if key.startswith(prefix)
        }

    def previous_master_keys(self) -> list[str]:
        """The entries of ``PLEXUS_MASTER_KEY_PREVIOUS``, in the order given."""
        return _split_keys(self.master_key_previous)

    def secret_values(self) -> list[str]:
        """Every secret value in use, for the log redactor to recognise anywhere."""
        values = [self.secret(n) for n in SECRET_FIELDS if getattr(self, n) is not None]
        values.extend(self.previous_master_keys())
        values.extend(
            optional.get_secret_value()
            for optional in (self.vault_token, self.media_s3_secret_access_key)
            if optional is not None and optional.get_secret_value()
        )
        values.extend(
            v.get_secret_value()
            for k, v in self.provider_config.items()
            if k.endswith(PROVIDER_SECRET_SUFFIXES) and v.get_secret_value()
        )
        for url in (self.database_url, self.redis_url):
            if url is not None:
                password = _url_password(url.get_secret_value())
                if password:
                    values.append(password)
        return values


def _split_keys(value: SecretStr | None) -> list[str]:
    if value is None:
        return []
    return [key.strip() for key in value.get_secret_value().split(",") if key.strip()]


def _url_password(url: str) -> str | None:
    from urllib.parse import urlsplit

    try:
        return urlsplit(url).password
    except ValueError:
        return None


def _read_secret_files(environ: dict[str, str], problems: list[str]) -> dict[str, str]:
    """Resolve ``PLEXUS_<NAME>_FILE`` variables into values for their secret."""
    resolved: dict[str, str] = {}
    for name in (*SECRET_FIELDS, *EXTRA_SECRET_FIELDS):
        file_var = f"{env_name(name)}_FILE"
        path = environ.get(file_var)
        if not path:
            continue
        if env_name(name) in environ:
            problems.append(f"{env_name(name)} and {file_var} are both set; set only one")
            continue
        try:
            resolved[env_name(name)] = Path(path).read_text(encoding="utf-8").strip()
        except OSError:
            problems.append(f"{file_var} names a file that cannot be read")
    return resolved


def _provider_config(environ: dict[str, str], problems: list[str]) -> dict[str, str]:
    """Gather ``PLEXUS_PROVIDER_<NAME>_<KEY>`` (or ``…_<KEY>_FILE``) into ``name_key`` values."""
    found: dict[str, str] = {}
    for var, value in environ.items():
        if not var.startswith(PROVIDER_PREFIX):
            continue
        key = var[len(PROVIDER_PREFIX) :].lower()
        if key.endswith("_file"):
            key = key[: -len("_file")]
            if f"{PROVIDER_PREFIX}{key.upper()}" in environ:
                problems.append(f"{var[: -len('_FILE')]} and {var} are both set; set only one")
                continue
            try:
                found[key] = Path(value).read_text(encoding="utf-8").strip()
            except OSError:
                problems.append(f"{var} names a file that cannot be read")
            continue
        found[key] = value
    return found


def _read_env_file(path: Path) -> dict[str, str]:
    """Parse a dotenv-style file: ``KEY=value`` lines, ``#`` comments, optional quotes."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":  # noqa: PLR2004
            value = value[1:-1]
        values[key.strip()] = value
    return values


def _ensure_dev_secrets(data_dir: Path, environ: dict[str, str]) -> dict[str, str]:
    """Generate each missing secret once into ``dev-secrets.env`` (mode 0600) and reuse it."""
    path = data_dir / DEV_SECRETS_FILE
    stored = _read_env_file(path)
    changed = _retire_pre_vault_master_key(stored, environ)
    missing = [n for n in SECRET_FIELDS if env_name(n) not in environ and env_name(n) not in stored]
    if missing or changed:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        for name in missing:
            stored[env_name(name)] = _new_secret(name)
        body = "# Generated by Plexus for development only. Never use these in production.\n"
        body += "".join(f"{k}={v}\n" for k, v in sorted(stored.items()))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(body)
    if path.exists():
        path.chmod(0o600)
    return stored


def _new_secret(name: str) -> str:
    from plexus.kit.keyproviders import generate_master_key

    return generate_master_key() if name == "master_key" else secrets.token_urlsafe(48)


def _retire_pre_vault_master_key(stored: dict[str, str], environ: dict[str, str]) -> bool:
    """Move a generated master key of the pre-vault form to the previous keys (in place).

    Development secrets made before the vault hold a master key that is not 32 base64
    bytes; the values it sealed still open through ``PLEXUS_MASTER_KEY_PREVIOUS``, and a
    new key of the right form is generated in its place. True when ``stored`` changed.
    """
    from plexus.kit.keyproviders import decode_master_key

    name, previous = env_name("master_key"), env_name("master_key_previous")
    old = stored.get(name)
    if old is None or name in environ:
        return False
    try:
        decode_master_key(old)
    except ValueError:
        kept = [k for k in stored.get(previous, "").split(",") if k]
        stored[previous] = ",".join([*kept, old])
        del stored[name]
        return True
    return False


def _is_placeholder(value: str) -> bool:
    lowered = value.lower()
    return any(marker in lowered for marker in PLACEHOLDER_MARKERS)


def _secret_problems(settings: Settings) -> list[str]:
    problems: list[str] = []
    for name in SECRET_FIELDS:
        value = getattr(settings, name)
        var = env_name(name)
        if value is None and name == "master_key" and settings.key_provider != "local":
            continue  # the key service holds the key-encryption key
        if value is None or not value.get_secret_value():
            problems.append(f"{var} is required in production (or {var}_FILE)")
            continue
        secret = value.get_secret_value()
        if _is_placeholder(secret):
            problems.append(f"{var} is a placeholder value; generate a real secret")
        elif len(secret.encode()) < MIN_SECRET_BYTES:
            problems.append(f"{var} is shorter than {MIN_SECRET_BYTES} bytes")
    return problems


def _key_provider_problems(settings: Settings) -> list[str]:
    problems: list[str] = []
    if settings.key_provider == "local" and settings.master_key is None:
        problems.append("PLEXUS_MASTER_KEY is required with PLEXUS_KEY_PROVIDER=local")
    if settings.key_provider == "vault-transit":
        if settings.vault_addr is None:
            problems.append("PLEXUS_KEY_PROVIDER=vault-transit needs PLEXUS_VAULT_ADDR")
        if settings.vault_token is None or not settings.vault_token.get_secret_value():
            problems.append(
                "PLEXUS_KEY_PROVIDER=vault-transit needs PLEXUS_VAULT_TOKEN "
                "(or PLEXUS_VAULT_TOKEN_FILE)"
            )
        if (
            settings.is_production
            and settings.vault_addr is not None
            and not settings.vault_addr.startswith("https://")
        ):
            problems.append("PLEXUS_VAULT_ADDR must be an https:// address in production")
    if settings.vault_ca_file is not None and not Path(settings.vault_ca_file).is_file():
        problems.append("PLEXUS_VAULT_CA_FILE names a file that does not exist")
    return problems


def _is_loopback_url(url: str) -> bool:
    from urllib.parse import urlsplit

    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _media_storage_problems(settings: Settings) -> list[str]:
    if settings.media_storage != "s3":
        return []
    problems: list[str] = []
    if settings.media_s3_bucket is None:
        problems.append("PLEXUS_MEDIA_STORAGE=s3 needs PLEXUS_MEDIA_S3_BUCKET")
    secret = settings.media_s3_secret_access_key
    if (settings.media_s3_access_key_id is None) != (secret is None):
        problems.append(
            "PLEXUS_MEDIA_S3_ACCESS_KEY_ID and PLEXUS_MEDIA_S3_SECRET_ACCESS_KEY are set "
            "together or not at all"
        )
    if settings.media_s3_ca_file is not None and not Path(settings.media_s3_ca_file).is_file():
        problems.append("PLEXUS_MEDIA_S3_CA_FILE names a file that does not exist")
    if not settings.is_production:
        return problems
    endpoint = settings.media_s3_endpoint_url
    if (
        endpoint is not None
        and not endpoint.startswith("https://")
        and not _is_loopback_url(endpoint)
    ):
        problems.append(
            "PLEXUS_MEDIA_S3_ENDPOINT_URL must be an https:// address in production "
            "(http only for a loopback address)"
        )
    if secret is not None and _is_placeholder(secret.get_secret_value()):
        problems.append("PLEXUS_MEDIA_S3_SECRET_ACCESS_KEY is a placeholder value")
    return problems


def check_settings(settings: Settings) -> list[str]:
    """Return one line per problem that makes these settings unsafe for their environment."""
    if not settings.is_production:
        return [*_key_provider_problems(settings), *_media_storage_problems(settings)]
    problems = _secret_problems(settings)
    problems.extend(_media_storage_problems(settings))
    problems.extend(
        p for p in _key_provider_problems(settings) if not p.startswith("PLEXUS_MASTER_KEY is")
    )
    if settings.database_url is not None and _is_placeholder(
        _url_password(settings.database_url.get_secret_value()) or ""
    ):
        problems.append("PLEXUS_DATABASE_URL contains a placeholder password")
    if settings.tls_cert_file is None and settings.tls_key_file is not None:
        problems.append("PLEXUS_TLS_KEY_FILE is set without PLEXUS_TLS_CERT_FILE")
    if settings.tls_cert_file is not None and settings.tls_key_file is None:
        problems.append("PLEXUS_TLS_CERT_FILE is set without PLEXUS_TLS_KEY_FILE")
    if settings.bcrypt_rounds < MIN_PRODUCTION_BCRYPT_ROUNDS:
        problems.append(
            f"PLEXUS_BCRYPT_ROUNDS must be at least {MIN_PRODUCTION_BCRYPT_ROUNDS} in production"
        )
    if not settings.tls_enabled and not settings.trusted_proxies:
        problems.append(
            "production refuses plain HTTP: set PLEXUS_TLS_CERT_FILE and PLEXUS_TLS_KEY_FILE "
            "(or --tls-cert/--tls-key), or PLEXUS_TRUSTED_PROXIES for a TLS-terminating proxy"
        )
    for name in ("tls_cert_file", "tls_key_file"):
        path = getattr(settings, name)
        if path is not None and not Path(path).is_file():
            problems.append(f"{env_name(name)} names a file that does not exist")
    return problems


def load_settings(
    environ: dict[str, str] | None = None, overrides: dict[str, Any] | None = None
) -> Settings:
    """Build and check the settings; raise ConfigError with every problem found.

    ``environ`` defaults to the process environment; ``overrides`` are values given on the
    command line, which win over the environment.
    """
    env = dict(os.environ if environ is None else environ)
    problems: list[str] = []
    values: dict[str, str] = {k: v for k, v in env.items() if k.startswith(ENV_PREFIX)}
    values.update(_read_secret_files(env, problems))
    environment = values.get(env_name("env"), Environment.DEVELOPMENT.value).lower()
    if environment == Environment.DEVELOPMENT.value:
        dotenv = _read_env_file(Path(".env"))
        values = {**{k: v for k, v in dotenv.items() if k.startswith(ENV_PREFIX)}, **values}
        data_dir = Path(values.get(env_name("data_dir"), "var"))
        values = {**_ensure_dev_secrets(data_dir, values), **values}
    elif environment == Environment.TEST.value:
        for name in SECRET_FIELDS:
            values.setdefault(env_name(name), _new_secret(name))
    provider_config = _provider_config(values, problems)
    values = {k: v for k, v in values.items() if not k.startswith(PROVIDER_PREFIX)}
    init: dict[str, Any] = {k[len(ENV_PREFIX) :].lower(): v for k, v in values.items()}
    init = {k: v for k, v in init.items() if k in Settings.model_fields}
    init["provider_config"] = provider_config
    init.update(overrides or {})
    try:
        settings = _from_values(init)
    except ValidationError as exc:
        for error in exc.errors(include_url=False, include_input=False):
            field = str(error["loc"][0]) if error["loc"] else "settings"
            problems.append(f"{env_name(field)} is invalid: {error['msg']}")
        raise ConfigError(problems) from None
    problems.extend(check_settings(settings))
    if problems:
        raise ConfigError(problems)
    return settings


def _from_values(init: dict[str, Any]) -> Settings:
    # Values arrive as strings from the environment; list settings are comma-separated.
    for key in ("trusted_proxies", "cors_origins", "outbound_allow_networks"):
        if isinstance(init.get(key), str):
            init[key] = [p.strip() for p in str(init[key]).split(",") if p.strip()]
    # Read from the mapping we built only, never again from the process environment.
    return Settings(**init)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, loaded once."""
    return load_settings()
