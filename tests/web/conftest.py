"""Fixtures for the dashboard tests: one tiny demo store per test session, signed-in clients."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from knowcast.api.app import create_app
from knowcast.config import Settings
from knowcast.store import Store
from knowcast.web.accounts import bootstrap_accounts, create_account


@pytest.fixture(scope="session")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The tiny demo seeded once, plus accounts: admin, analyst, creator-<first>, creator-<second>."""
    from knowcast.services.demo import SIZES, seed_demo
    from knowcast.sim import SimConfig

    d = tmp_path_factory.mktemp("webdb")
    path = d / "demo.db"
    store = Store(f"sqlite:///{path}").migrate()
    seed_demo(store.engine, SimConfig(seed=0, **SIZES["tiny"]))
    pw = bootstrap_accounts(store, path=d / "pw.txt")
    with store.sessions() as s:
        create_account(s, "analyst", "analyst-pass", "analyst")
        create_account(s, "creator-c0002", "creator-pass", "creator", creator_id="c0002")
        s.commit()
    store.dispose()
    pw.update({"analyst": "analyst-pass", "creator-c0002": "creator-pass"})
    return {"path": path, "passwords": pw, "dir": d}


@pytest.fixture
def store(demo_db: dict, tmp_path: Path) -> Iterator[Store]:
    """A private copy of the demo database (tests may write to it)."""
    dst = tmp_path / "copy.db"
    shutil.copy(demo_db["path"], dst)
    s = Store(f"sqlite:///{dst}").migrate()
    yield s
    s.dispose()


@pytest.fixture
def app(store: Store):  # type: ignore[no-untyped-def]
    return create_app(Settings(database_url=store.url), store=store)


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, "page has no CSRF field"
    return m.group(1)


def sign_in(client: TestClient, username: str, password: str) -> TestClient:
    token = csrf_of(client.get("/login").text)
    r = client.post(
        "/login", data={"username": username, "password": password, "csrf": token}, follow_redirects=False
    )
    assert r.status_code == 303, r.text[:500]
    return client


@pytest.fixture
def admin(app, demo_db: dict) -> TestClient:  # type: ignore[no-untyped-def]
    return sign_in(TestClient(app), "admin", demo_db["passwords"]["admin"])


@pytest.fixture
def creator(app, demo_db: dict) -> TestClient:  # type: ignore[no-untyped-def]
    return sign_in(TestClient(app), "creator-c0001", demo_db["passwords"]["creator-c0001"])


__all__ = ["csrf_of", "sign_in"]
