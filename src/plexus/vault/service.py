"""The vault of this instance: building it from the settings, the canary, rotation, status.

``build_vault`` wires the key provider the settings name (local master keys or HashiCorp
Vault transit) with what can still be read: previous master keys, and values sealed before
the vault (``AesGcmSecretBox``, version 0x01).

The canary is a known value sealed at first start. Every later start opens it; when it does
not open, the master key is not the one this database was sealed with, and the process
refuses to run rather than fail on secrets one by one (or, worse, seal new secrets under a
key nobody will have tomorrow).

Rotation re-wraps each sealed value of every registered column (``plexus.vault_columns``)
under the current key, one batch per transaction, each row with a conditional UPDATE so a
value the application writes meanwhile is never overwritten. Nothing here commits: the
caller (``plexus keys rotate``) commits each batch.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from plexus.kit.blindindex import BlindIndex
from plexus.kit.keyproviders import LocalKeyProvider, TransitKeyProvider, decode_master_key
from plexus.kit.secretbox import AesGcmSecretBox, SealedValueError
from plexus.kit.vault import LEGACY_KEY_ID, KeyProvider, KeyServiceError, Vault
from plexus.models.identity import VaultCanary
from plexus.vault.repository import CanaryRepository, SealedColumnRepository
from plexus.vault_columns import CANARY, SEALED_COLUMNS, SealedColumn

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from plexus.config import Settings

CANARY_ID: Final = 1
CANARY_PLAINTEXT: Final = b"plexus vault canary v1"
DEFAULT_BATCH: Final = 200

MISMATCH_MESSAGE: Final = (
    "the master key cannot decrypt this database's secrets: PLEXUS_MASTER_KEY is wrong or "
    "was replaced; set the key this database was sealed with (during a rotation, the old key "
    "belongs in PLEXUS_MASTER_KEY_PREVIOUS until `plexus keys rotate` has finished)"
)


class MasterKeyMismatch(Exception):
    """The configured keys do not open this database's secrets; the process must not run."""


def build_blind_index(settings: Settings) -> BlindIndex:
    return BlindIndex(settings.secret("token_key").encode())


def build_vault(settings: Settings) -> Vault:
    """The vault the settings describe (validated by ``plexus.config``)."""
    strings: list[str] = []
    if settings.master_key is not None:
        strings.append(settings.master_key.get_secret_value())
    strings.extend(settings.previous_master_keys())
    keys: list[bytes] = []
    for text in strings:
        try:
            keys.append(decode_master_key(text))
        except ValueError:
            continue  # a pre-vault master key: it only opens legacy values (below)
    # Before the vault, a value was sealed under HKDF of the master key setting's text.
    legacy = [AesGcmSecretBox(text.encode()) for text in strings]
    local: KeyProvider | None = None
    if settings.master_key is not None:
        current = decode_master_key(settings.master_key.get_secret_value())
        local = LocalKeyProvider(current, [k for k in keys if k != current])
    elif keys:
        local = LocalKeyProvider(keys[0], keys[1:])
    if settings.key_provider == "vault-transit":
        if settings.vault_addr is None or settings.vault_token is None:
            msg = "vault-transit needs PLEXUS_VAULT_ADDR and PLEXUS_VAULT_TOKEN"
            raise ValueError(msg)
        transit = TransitKeyProvider.connect(
            address=settings.vault_addr,
            token=settings.vault_token.get_secret_value(),
            key_name=settings.vault_transit_key,
            mount=settings.vault_transit_mount,
            ca_file=settings.vault_ca_file,
        )
        return Vault(transit, readers=[local] if local is not None else [], legacy=legacy)
    if local is None:
        msg = "PLEXUS_MASTER_KEY is not set"
        raise ValueError(msg)
    return Vault(local, legacy=legacy)


# The canary -------------------------------------------------------------------------------


def _opens_an_existing_secret(session: Session, vault: Vault) -> bool:
    """True when the database has no sealed value yet, or one of them opens."""
    found = False
    for sealed in SEALED_COLUMNS:
        repo = SealedColumnRepository(session, sealed)
        if sealed is CANARY or not repo.exists():
            continue
        row = repo.first()
        if row is None:
            continue
        found = True
        try:
            vault.open(row[1], sealed.context(row[0]))
        except SealedValueError:
            continue
        return True
    return not found


def check_canary(session: Session, vault: Vault) -> str:
    """Open the canary (sealing it on first start); raise MasterKeyMismatch when it fails.

    Returns ``"verified"``, ``"created"`` or ``"no-table"`` (a schema before the vault,
    which only ``plexus migrate`` may touch). Raises KeyServiceError when the key service
    cannot be asked. On first start the canary is only created when the secrets already in
    the database (if any) open: a new canary must not bless a wrong key.
    """
    repo = CanaryRepository(session)
    if not repo.table_exists():
        return "no-table"
    canary = repo.get(CANARY_ID)
    if canary is None:
        if not _opens_an_existing_secret(session, vault):
            raise MasterKeyMismatch(MISMATCH_MESSAGE)
        sealed = vault.seal(CANARY_PLAINTEXT, CANARY.context(CANARY_ID))
        if repo.add(VaultCanary(id=CANARY_ID, sealed=sealed)):
            return "created"
        canary = repo.get(CANARY_ID)
        if canary is None:  # pragma: no cover - inserted by another process, then deleted
            msg = "the vault canary vanished while it was being created"
            raise RuntimeError(msg)
    try:
        opened = vault.open(canary.sealed, CANARY.context(CANARY_ID))
    except SealedValueError:
        raise MasterKeyMismatch(MISMATCH_MESSAGE) from None
    if opened != CANARY_PLAINTEXT:
        raise MasterKeyMismatch(MISMATCH_MESSAGE)
    return "verified"


# Rotation ---------------------------------------------------------------------------------


def canary_state(session: Session, vault: Vault) -> str:
    """The canary without creating it (for ``doctor``): ``verified``, ``absent`` (not sealed
    yet: the next start seals it), ``no-table``, or ``mismatch``. Raises KeyServiceError
    when the key service cannot be asked.
    """
    repo = CanaryRepository(session)
    if not repo.table_exists():
        return "no-table"
    canary = repo.get(CANARY_ID)
    if canary is None:
        return "absent"
    try:
        opened = vault.open(canary.sealed, CANARY.context(CANARY_ID))
    except SealedValueError:
        return "mismatch"
    return "verified" if opened == CANARY_PLAINTEXT else "mismatch"


@dataclass(slots=True)
class BatchResult:
    """What one batch of one column did; ``last`` is where the next batch starts."""

    last: object | None
    examined: int = 0
    rewrapped: int = 0
    changed_meanwhile: int = 0
    failed: list[str] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.last is None


def rotate_batch(  # noqa: PLR0913 - which rows, and under which key, all keyword-only
    session: Session,
    vault: Vault,
    sealed: SealedColumn,
    *,
    after: object | None,
    limit: int = DEFAULT_BATCH,
    current: str | None = None,
) -> BatchResult:
    """Re-wrap, under the current key, the next ``limit`` values of ``sealed`` after ``after``.

    A value already under the current key is left alone; a legacy value is sealed anew as
    an envelope. A row that changed between the read and the write keeps what it has now
    (it was sealed by the application, under the current key). A value that does not open
    is reported in ``failed`` (as ``table.column[key]``) and left as it is.
    """
    current = current or vault.current_key_id()
    repo = SealedColumnRepository(session, sealed)
    rows = repo.batch(after, limit)
    result = BatchResult(last=rows[-1][0] if len(rows) == limit else None, examined=len(rows))
    for key, value in rows:
        try:
            if vault.key_id_of(value) == current:
                continue
            rewrapped = vault.rewrap(value, sealed.context(key))
        except SealedValueError as exc:
            result.failed.append(f"{sealed.name}[{key}]: {exc}")
            continue
        if repo.replace(key, value, rewrapped):
            result.rewrapped += 1
        else:
            result.changed_meanwhile += 1
    return result


def present_columns(session: Session) -> list[SealedColumn]:
    """The registered sealed columns whose table exists in this database."""
    return [s for s in SEALED_COLUMNS if SealedColumnRepository(session, s).exists()]


def sealed_count(session: Session) -> int:
    """How many sealed values the registered columns hold (for a progress bar)."""
    return sum(SealedColumnRepository(session, s).count() for s in present_columns(session))


def rotate_key_service(vault: Vault) -> str | None:
    """Have the key service make a new key version (None for local master keys)."""
    return vault.provider.rotate()


# Status -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ColumnStatus:
    name: str
    by_key: dict[str, int]
    unreadable: int

    @property
    def total(self) -> int:
        return sum(self.by_key.values()) + self.unreadable


@dataclass(frozen=True, slots=True)
class VaultStatus:
    current_key: str
    keys: list[str]
    columns: list[ColumnStatus]

    @property
    def by_key(self) -> dict[str, int]:
        totals: Counter[str] = Counter()
        for column in self.columns:
            totals.update(column.by_key)
        return dict(totals)

    @property
    def legacy(self) -> int:
        return self.by_key.get(LEGACY_KEY_ID, 0)

    @property
    def not_current(self) -> int:
        return sum(n for key, n in self.by_key.items() if key != self.current_key)


def vault_status(session: Session, vault: Vault, *, batch: int = 1_000) -> VaultStatus:
    """Which key wraps how many values, per registered column (tables not yet made skip)."""
    columns: list[ColumnStatus] = []
    for sealed in SEALED_COLUMNS:
        repo = SealedColumnRepository(session, sealed)
        if not repo.exists():
            continue
        counts: Counter[str] = Counter()
        unreadable = 0
        after: object | None = None
        while True:
            rows = repo.batch(after, batch)
            for _key, value in rows:
                try:
                    counts[vault.key_id_of(value)] += 1
                except SealedValueError:
                    unreadable += 1
            if len(rows) < batch:
                break
            after = rows[-1][0]
        columns.append(ColumnStatus(sealed.name, dict(counts), unreadable))
    return VaultStatus(vault.current_key_id(), vault.describe(), columns)


__all__ = [
    "CANARY_ID",
    "MISMATCH_MESSAGE",
    "BatchResult",
    "ColumnStatus",
    "KeyServiceError",
    "MasterKeyMismatch",
    "VaultStatus",
    "build_blind_index",
    "build_vault",
    "check_canary",
    "present_columns",
    "rotate_batch",
    "rotate_key_service",
    "sealed_count",
    "vault_status",
]
