"""All ORM models, one module per table family. Importing this package registers them all."""

from plexus.models.audit import AuditChainHead, AuditEvent
from plexus.models.base import Base

__all__ = ["AuditChainHead", "AuditEvent", "Base"]
