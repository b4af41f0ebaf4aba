"""Queries over the sealed columns of the registry, and of the vault canary.

The registry names tables and columns as strings (``plexus.vault_columns``), so these
queries are written against lightweight table clauses built from it, not ORM classes: a
column added to the registry is rotated without another line of query code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import LargeBinary, column, func, inspect, select, table, update
from sqlalchemy.exc import IntegrityError

from plexus.models.identity import VaultCanary

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy import TableClause
    from sqlalchemy.orm import Session

    from plexus.vault_columns import SealedColumn


def _clause(sealed: SealedColumn) -> TableClause:
    return table(sealed.table, column(sealed.key), column(sealed.column, LargeBinary))


class SealedColumnRepository:
    """Reads and conditional writes of one registered sealed column."""

    def __init__(self, session: Session, sealed: SealedColumn) -> None:
        self.session = session
        self.sealed = sealed
        self._table = _clause(sealed)
        self._key = self._table.c[sealed.key]
        self._value = self._table.c[sealed.column]

    def exists(self) -> bool:
        """False while the schema predates the table (a column registered ahead of it)."""
        return inspect(self.session.connection()).has_table(self.sealed.table)

    def count(self) -> int:
        statement = select(func.count()).select_from(self._table).where(self._value.is_not(None))
        return int(self.session.scalar(statement) or 0)

    def batch(self, after: object | None, limit: int) -> Sequence[tuple[object, bytes]]:
        """Up to ``limit`` rows with a value, in key order, after the key ``after``."""
        statement = select(self._key, self._value).where(self._value.is_not(None))
        if after is not None:
            statement = statement.where(self._key > after)
        rows = self.session.execute(statement.order_by(self._key).limit(limit)).all()
        return [(key, bytes(value)) for key, value in rows]

    def values(self, keys: Sequence[object]) -> list[tuple[object, bytes]]:
        """The rows of ``keys`` that still hold a value (a row deleted meanwhile is absent)."""
        if not keys:
            return []
        statement = (
            select(self._key, self._value)
            .where(self._key.in_(keys), self._value.is_not(None))
            .order_by(self._key)
        )
        return [(key, bytes(value)) for key, value in self.session.execute(statement).all()]

    def first(self) -> tuple[object, bytes] | None:
        rows = self.batch(None, 1)
        return rows[0] if rows else None

    def replace(self, key: object, old: bytes, new: bytes) -> bool:
        """Write ``new`` only if the row still holds ``old``; False when it changed meanwhile.

        A value written by the application between the read and this statement is never
        overwritten with the re-wrapped old one.
        """
        result = self.session.execute(
            update(self._table)
            .where(self._key == key, self._value == old)
            .values({self.sealed.column: new})
        )
        return int(result.rowcount) == 1  # type: ignore[attr-defined]


class CanaryRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def table_exists(self) -> bool:
        return inspect(self.session.connection()).has_table(VaultCanary.__tablename__)

    def get(self, canary_id: int) -> VaultCanary | None:
        return self.session.get(VaultCanary, canary_id)

    def add(self, canary: VaultCanary) -> bool:
        """Insert ``canary``; False when another process inserted it first."""
        try:
            with self.session.begin_nested():
                self.session.add(canary)
        except IntegrityError:
            return False
        return True
