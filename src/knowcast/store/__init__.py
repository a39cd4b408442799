"""The store: schema, migrations and queries in one place (SQLite by default, PostgreSQL by URL)."""

from __future__ import annotations

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from knowcast.store.db import make_engine, migrate, session_factory


class Store:
    """An engine plus a session factory for one database URL; ``Store(url).migrate()`` makes it ready."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: Engine = make_engine(url)
        self.sessions: sessionmaker[Session] = session_factory(self.engine)

    def migrate(self) -> Store:
        migrate(self.engine)
        return self

    def dispose(self) -> None:
        self.engine.dispose()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name


__all__ = ["Store", "make_engine", "migrate"]
