"""Integration fixtures: the database fixtures of the store tests (fresh databases per
test on the configured or an embedded server)."""

from tests.gateway.store.conftest import admin, care_db, empty_db, new_database, server_dsn

__all__ = ["admin", "care_db", "empty_db", "new_database", "server_dsn"]
