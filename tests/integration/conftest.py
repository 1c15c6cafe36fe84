"""Integration fixtures: the care database fixtures of the store tests (a fresh migrated
database per test on the configured or an embedded server)."""

from tests.gateway.store.conftest import admin, care_db, empty_db, server_dsn

__all__ = ["admin", "care_db", "empty_db", "server_dsn"]
