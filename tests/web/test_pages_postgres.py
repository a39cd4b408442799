"""Every dashboard page on PostgreSQL (the production store).

The other dashboard tests run on the embedded SQLite store; the SQL behind the pages must work on both
(PostgreSQL is stricter: no GROUP BY over JSON columns, typed comparisons, no implicit casts).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from knowcast.api.app import create_app
from knowcast.config import Settings
from knowcast.store import Store
from tests.conftest import fresh_pg_database
from tests.web.conftest import sign_in
from tests.web.pages import PAGES

DB = "kc_web_pg_test"


@pytest.fixture(scope="module")
def pg_admin() -> Iterator[TestClient]:
    reason = fresh_pg_database(DB)
    if reason:
        pytest.skip(reason)
    from knowcast.services.demo import SIZES, seed_demo
    from knowcast.sim import SimConfig
    from knowcast.web.accounts import create_account

    store = Store(f"postgresql://postgres@127.0.0.1:5432/{DB}").migrate()
    seed_demo(store.engine, SimConfig(seed=0, **SIZES["tiny"]))  # same seed as the SQLite demo: same ids
    with store.sessions() as s:
        create_account(s, "pg-admin", "pg-admin-pass", "admin")
        s.commit()
    with TestClient(create_app(Settings(database_url=store.url), store=store)) as client:
        yield sign_in(client, "pg-admin", "pg-admin-pass")
    store.dispose()


@pytest.mark.parametrize("name", sorted(PAGES))
def test_page_renders_on_postgresql(pg_admin: TestClient, name: str) -> None:
    r = pg_admin.get(PAGES[name])
    assert r.status_code == 200, f"{name} {PAGES[name]}: {r.status_code} {r.text[-800:]}"
    assert "<html" in r.text.lower()
    assert "Traceback" not in r.text and "Internal Server Error" not in r.text
