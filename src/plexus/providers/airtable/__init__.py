"""The Airtable provider: records in one table, connected with OAuth2 or a personal token."""

from plexus.providers.airtable.api import (
    AirtableBase,
    AirtableField,
    AirtableRecord,
    AirtableTable,
    RecordPage,
)
from plexus.providers.airtable.provider import AirtableProvider

__all__ = [
    "AirtableBase",
    "AirtableField",
    "AirtableProvider",
    "AirtableRecord",
    "AirtableTable",
    "RecordPage",
]
