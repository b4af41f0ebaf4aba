"""Every column that holds a value sealed by the vault, in one registry.

``plexus keys rotate`` re-wraps, and ``plexus keys status`` counts, exactly what is listed
here; a sealed column missing from this list would keep its old key forever. Each entry
names the table, its primary-key column, the sealed column and the associated-data context
of a row (``{id}`` is the row's primary key). The owning code builds its contexts from the
same entry (``TOTP_SECRET.context(user.id)``), so the two cannot drift apart.

Adding a sealed column is one line in ``SEALED_COLUMNS``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True)
class SealedColumn:
    table: str
    key: str
    column: str
    #: The context with ``{id}`` standing for the row's primary key.
    template: str

    def context(self, row_key: object) -> str:
        """The associated data binding a sealed value to this column of row ``row_key``."""
        return self.template.format(id=row_key)

    @property
    def name(self) -> str:
        return f"{self.table}.{self.column}"


TOTP_SECRET: Final = SealedColumn("users", "id", "totp_secret", "users:{id}:totp_secret")
SIGNING_KEY: Final = SealedColumn(
    "signing_keys", "kid", "private_key", "signing_keys:{id}:private_key"
)
USER_EMAIL: Final = SealedColumn("users", "id", "email_sealed", "users:email:{id}")
INVITATION_EMAIL: Final = SealedColumn(
    "invitations", "id", "email_sealed", "invitations:email:{id}"
)
CANARY: Final = SealedColumn("vault_canary", "id", "sealed", "vault_canary:sealed:{id}")
CONNECTION_CREDENTIALS: Final = SealedColumn(
    "connections", "id", "credentials_sealed", "connections:credentials:{id}"
)
OAUTH_FLOW: Final = SealedColumn("oauth_flows", "id", "flow_sealed", "oauth_flows:flow:{id}")
OAUTH_CLIENT_SECRET: Final = SealedColumn(
    "oauth_clients", "id", "client_secret_sealed", "oauth_clients:client_secret:{id}"
)
WEBHOOK_SECRET: Final = SealedColumn(
    "webhook_endpoints", "id", "secret_sealed", "webhook_endpoints:secret:{id}"
)
WEBHOOK_PREVIOUS_SECRET: Final = SealedColumn(
    "webhook_endpoints",
    "id",
    "previous_secret_sealed",
    "webhook_endpoints:previous_secret:{id}",
)

SEALED_COLUMNS: Final[tuple[SealedColumn, ...]] = (
    TOTP_SECRET,
    SIGNING_KEY,
    USER_EMAIL,
    INVITATION_EMAIL,
    CANARY,
    CONNECTION_CREDENTIALS,
    OAUTH_FLOW,
    OAUTH_CLIENT_SECRET,
    WEBHOOK_SECRET,
    WEBHOOK_PREVIOUS_SECRET,
)
