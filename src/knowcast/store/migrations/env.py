"""Alembic environment: the engine comes from knowcast (``alembic_config``) or ``KNOWCAST_DATABASE_URL``."""

from __future__ import annotations

from alembic import context

from knowcast.config import get_settings
from knowcast.store.db import make_engine
from knowcast.store.models import Base

config = context.config
engine = config.attributes.get("engine") or make_engine(get_settings().database_url)

with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    context.run_migrations()
