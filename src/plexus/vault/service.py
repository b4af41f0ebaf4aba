"""The vault of this instance: building it from the settings, the canary, rotation, status.

``build_vault`` wires the key provider the settings name (local master keys or HashiCorp
Vault transit) with what can still be read: previous master keys, and values sealed before
the vault (``AesGcmSecretBox``, version 0x01).

The canary is a known value sealed at first start. Every later start opens it and checks it
is sealed under the *current* key: when it does not open, the master key is not the one this
database was sealed with; when it opens only through a previous key, this process has a new
current key nobody has adopted yet (another host would not open what it seals). Either way
the process refuses to run rather than fail on secrets one by one, or seal new secrets under
a key nobody else will have. Only ``plexus keys rotate`` adopts a new key: it re-seals the
canary under it first (from then on services start with it), then re-wraps everything.

Rotation re-wraps each sealed value of every registered column (``plexus.vault_columns``)
under the current key. A batch is read in one short transaction, re-wrapped with no
transaction open (each value may cost a key-service round trip), and written in another
short transaction, each row with a conditional UPDATE so a value the application writes
meanwhile is never overwritten; such rows are read again and retried. The caller's unit of
work (``plexus keys rotate`` passes ``unit_of_work``) opens and commits each transaction.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from plexus.config import ConfigError
from plexus.kit.blindindex import BlindIndex
from plexus.kit.keyproviders import (
    LocalKeyProvider,
    TransitKeyProvider,
    decode_master_key,
    key_name,
)
from plexus.kit.secretbox import AesGcmSecretBox, SealedValueError
from plexus.kit.vault import LEGACY_KEY_ID, KeyProvider, KeyServiceError, Vault
from plexus.models.identity import VaultCanary
from plexus.vault.repository import CanaryRepository, SealedColumnRepository
from plexus.vault_columns import CANARY, SEALED_COLUMNS, SealedColumn

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from contextlib import AbstractContextManager
    from typing import TypeAlias

    from sqlalchemy.orm import Session

    from plexus.config import Settings

    #: A unit of work: a session in a transaction, committed when the block succeeds.
    Transaction: TypeAlias = Callable[[], AbstractContextManager[Session]]

CANARY_ID: Final = 1
CANARY_PLAINTEXT: Final = b"plexus vault canary v1"
DEFAULT_BATCH: Final = 200
#: How often a batch re-reads and retries rows the application changed meanwhile.
REWRAP_ATTEMPTS: Final = 3

MISMATCH_MESSAGE: Final = (
    "the master key cannot decrypt this database's secrets: PLEXUS_MASTER_KEY is wrong or "
    "was replaced; set the key this database was sealed with (during a rotation, the old key "
    "belongs in PLEXUS_MASTER_KEY_PREVIOUS until `plexus keys rotate` has finished)"
)


class MasterKeyMismatch(Exception):
    """The configured keys do not open this database's secrets; the process must not run."""


class CanaryNotCurrent(MasterKeyMismatch):
    """The canary opens, but only through a previous key: the current key is not adopted.

    A process sealing under it would write secrets the other hosts (still on the key the
    canary is under) cannot open; ``plexus keys rotate`` is how a new key is adopted.
    """

    def __init__(self, sealed_under: str, current: str) -> None:
        super().__init__(
            f"the canary is sealed under {sealed_under}, not the current key {current}: "
            "run `plexus keys rotate` with the new key as PLEXUS_MASTER_KEY and the old one "
            "in PLEXUS_MASTER_KEY_PREVIOUS before starting services"
        )
        self.sealed_under = sealed_under
        self.current = current


def build_blind_index(settings: Settings) -> BlindIndex:
    """The blind index of e-mail addresses, keyed by PLEXUS_INDEX_KEY (never the token key)."""
    return BlindIndex(settings.secret("index_key").encode())


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
            msg = "PLEXUS_KEY_PROVIDER=vault-transit needs PLEXUS_VAULT_ADDR and PLEXUS_VAULT_TOKEN"
            raise ConfigError([msg])
        transit = TransitKeyProvider.connect(
            address=settings.vault_addr,
            token=settings.vault_token.get_secret_value(),
            key_name=settings.vault_transit_key,
            mount=settings.vault_transit_mount,
            ca_file=settings.vault_ca_file,
        )
        return Vault(transit, readers=[local] if local is not None else [], legacy=legacy)
    if local is None:
        msg = "PLEXUS_MASTER_KEY is required with PLEXUS_KEY_PROVIDER=local"
        raise ConfigError([msg])
    return Vault(local, legacy=legacy)


# The canary -------------------------------------------------------------------------------


def _existing_secret_key(session: Session, vault: Vault) -> str | None:
    """The key id of the first sealed value that opens; None when the database has none.

    Raises MasterKeyMismatch when there are sealed values and the first one found of each
    column opens with no configured key.
    """
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
        return vault.key_id_of(row[1])
    if found:
        raise MasterKeyMismatch(MISMATCH_MESSAGE)
    return None


def _is_current(key_id: str, current: str) -> bool:
    """True when ``key_id`` is the current key (any version of the same transit key)."""
    return key_id != LEGACY_KEY_ID and key_name(key_id) == key_name(current)


def _open_canary(vault: Vault, sealed: bytes) -> None:
    try:
        opened = vault.open(sealed, CANARY.context(CANARY_ID))
    except SealedValueError:
        raise MasterKeyMismatch(MISMATCH_MESSAGE) from None
    if opened != CANARY_PLAINTEXT:
        raise MasterKeyMismatch(MISMATCH_MESSAGE)


def check_canary(session: Session, vault: Vault, *, adopt: bool = False) -> str:
    """Open the canary (sealing it on first start) and check it is under the current key.

    Returns ``"verified"``, ``"created"``, ``"adopted"`` (re-sealed under the current key,
    only with ``adopt``) or ``"no-table"`` (a schema before the vault, which only ``plexus
    migrate`` may touch). Raises MasterKeyMismatch when no configured key opens it, and
    CanaryNotCurrent when it opens only through a previous key and ``adopt`` is off: only
    ``plexus keys rotate`` adopts a new key. A transit key's versions are one key, so a
    rotation in HashiCorp Vault does not stop anything. Raises KeyServiceError when the key
    service cannot be asked.

    On first start the canary is only created when the secrets already in the database (if
    any) open, and (without ``adopt``) are under the current key: a new canary must not
    bless a wrong or unadopted key.
    """
    repo = CanaryRepository(session)
    if not repo.table_exists():
        return "no-table"
    current = vault.current_key_id()
    for _attempt in range(REWRAP_ATTEMPTS):
        canary = repo.get(CANARY_ID)
        if canary is None:
            existing = _existing_secret_key(session, vault)
            if not adopt and existing is not None and not _legacy_or_current(existing, current):
                raise CanaryNotCurrent(existing, current)
            sealed = vault.seal(CANARY_PLAINTEXT, CANARY.context(CANARY_ID))
            if repo.add(VaultCanary(id=CANARY_ID, sealed=sealed)):
                return "created"
            continue  # inserted by another process meanwhile: check that one
        _open_canary(vault, canary.sealed)
        sealed_under = vault.key_id_of(canary.sealed)
        if _is_current(sealed_under, current):
            return "verified"
        if not adopt:
            raise CanaryNotCurrent(sealed_under, current)
        rewrapped = vault.rewrap(canary.sealed, CANARY.context(CANARY_ID))
        if SealedColumnRepository(session, CANARY).replace(CANARY_ID, canary.sealed, rewrapped):
            session.expire(canary)
            return "adopted"
        # Another process (a second `keys rotate`) moved the canary meanwhile: read it again;
        # it opens now only if that process adopted a key this one also holds.
        session.expire_all()
    msg = "the vault canary kept changing while it was being checked; try again"
    raise MasterKeyMismatch(msg)


def _legacy_or_current(key_id: str, current: str) -> bool:
    """True for a value sealed before the vault, or under the current key."""
    return key_id == LEGACY_KEY_ID or _is_current(key_id, current)


# Rotation ---------------------------------------------------------------------------------


def canary_state(session: Session, vault: Vault) -> str:
    """The canary without creating it (for ``doctor``): ``verified``, ``absent`` (not sealed
    yet: the next start seals it), ``no-table``, ``not-current`` (it opens only through a
    previous key: ``plexus keys rotate`` has not adopted the current one) or ``mismatch``.
    Raises KeyServiceError when the key service cannot be asked.
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
    if opened != CANARY_PLAINTEXT:
        return "mismatch"
    if not _is_current(vault.key_id_of(canary.sealed), vault.current_key_id()):
        return "not-current"
    return "verified"


@dataclass(slots=True)
class BatchResult:
    """What one batch of one column did; ``last`` is where the next batch starts.

    ``changed_meanwhile`` counts rows the application wrote between a read and a write (read
    again and retried); ``unsettled`` names those still changing after every attempt.
    """

    last: object | None
    examined: int = 0
    rewrapped: int = 0
    changed_meanwhile: int = 0
    failed: list[str] = field(default_factory=list)
    unsettled: list[str] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.last is None


def _rewrap_rows(
    vault: Vault,
    sealed: SealedColumn,
    rows: Sequence[tuple[object, bytes]],
    current: str,
    failed: list[str],
) -> list[tuple[object, bytes, bytes]]:
    """(key, old, new) for each row not yet under ``current``; no transaction is open."""
    updates: list[tuple[object, bytes, bytes]] = []
    for key, value in rows:
        try:
            if vault.key_id_of(value) == current:
                continue
            updates.append((key, value, vault.rewrap(value, sealed.context(key))))
        except SealedValueError as exc:
            failed.append(f"{sealed.name}[{key}]: {exc}")
    return updates


def rotate_batch(  # noqa: PLR0913 - which rows, and under which key, all keyword-only
    transaction: Transaction,
    vault: Vault,
    sealed: SealedColumn,
    *,
    after: object | None,
    limit: int = DEFAULT_BATCH,
    current: str | None = None,
) -> BatchResult:
    """Re-wrap, under the current key, the next ``limit`` values of ``sealed`` after ``after``.

    ``transaction`` opens a unit of work (``lambda: unit_of_work(sessions)``). The rows are
    read in one, re-wrapped with none open (a key service may take a round trip per value;
    holding a SQLite write lock meanwhile would make the application's writes fail), and
    written in another, each only where the row still holds what was read.

    A value already under the current key is left alone; a legacy value is sealed anew as
    an envelope. A row that changed between the read and the write (the application sealed
    it anew, perhaps in a process still running with the old key) is read again and
    retried, up to REWRAP_ATTEMPTS times. A value that does not open is reported in
    ``failed`` (as ``table.column[key]``) and left as it is.
    """
    current = current or vault.current_key_id()
    with transaction() as session:
        rows = SealedColumnRepository(session, sealed).batch(after, limit)
    result = BatchResult(last=rows[-1][0] if len(rows) == limit else None, examined=len(rows))
    pending: Sequence[tuple[object, bytes]] = rows
    for _attempt in range(REWRAP_ATTEMPTS):
        updates = _rewrap_rows(vault, sealed, pending, current, result.failed)
        if not updates:
            return result
        with transaction() as session:
            repo = SealedColumnRepository(session, sealed)
            changed = [key for key, old, new in updates if not repo.replace(key, old, new)]
        result.rewrapped += len(updates) - len(changed)
        if not changed:
            return result
        result.changed_meanwhile += len(changed)
        with transaction() as session:
            pending = SealedColumnRepository(session, sealed).values(changed)
    result.unsettled.extend(f"{sealed.name}[{key}]" for key, _value in pending)
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
    def unreadable(self) -> int:
        return sum(column.unreadable for column in self.columns)

    @property
    def not_current(self) -> int:
        """Values not under the current key, unreadable ones included (they are not)."""
        stale = sum(n for key, n in self.by_key.items() if key != self.current_key)
        return stale + self.unreadable


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
    "CanaryNotCurrent",
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
