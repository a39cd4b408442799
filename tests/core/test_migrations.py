"""Migrations build exactly the schema the models describe, on both backends."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from knowcast.store import Store
from knowcast.store.models import Base


def test_migrated_schema_matches_models(store: Store) -> None:
    with store.engine.connect() as conn:
        ctx = MigrationContext.configure(conn)
        diff = compare_metadata(ctx, Base.metadata)
    assert diff == []


def test_migrate_is_idempotent(store: Store) -> None:
    store.migrate()
    store.migrate()
