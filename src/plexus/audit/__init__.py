"""Tamper-evident audit log: typed events, hash-chained per workspace."""
