"""Fixtures for the security tests: the tiny demo (seeded once), one API key per scope, dashboard accounts.

Every test gets a private copy of the seeded SQLite file, so tests may write (ingest, revoke, erase) freely.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from knowcast.api.app import create_app
from knowcast.config import Settings
from knowcast.store import Store

PASSWORDS = {
    "admin": "admin-pass-1",
    "analyst": "analyst-pass",
    "creator-c0001": "creator-one",
    "creator-c0002": "creator-two",
}


@pytest.fixture(scope="session")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Seed the tiny demo once; add keys (ingest, read, admin, read+ingest, revoked) and accounts."""
    from knowcast.api.security import create_api_key, revoke_api_key
    from knowcast.services.demo import SIZES, seed_demo
    from knowcast.sim import SimConfig
    from knowcast.web.accounts import create_account

    d = tmp_path_factory.mktemp("secdb")
    path = d / "demo.db"
    store = Store(f"sqlite:///{path}").migrate()
    seed_demo(store.engine, SimConfig(seed=0, **SIZES["tiny"]))
    keys: dict[str, str] = {}
    with store.sessions() as s:
        for name, scopes in {
            "ingest": ["ingest"],
            "read": ["read"],
            "admin": ["admin"],
            "read+ingest": ["read", "ingest"],
            "revoked": ["read"],
        }.items():
            row, secret = create_api_key(s, name, scopes)
            keys[name] = secret
            if name == "revoked":
                revoke_api_key(s, row.id)
        create_account(s, "admin", PASSWORDS["admin"], "admin")
        create_account(s, "analyst", PASSWORDS["analyst"], "analyst")
        create_account(s, "creator-c0001", PASSWORDS["creator-c0001"], "creator", creator_id="c0001")
        create_account(s, "creator-c0002", PASSWORDS["creator-c0002"], "creator", creator_id="c0002")
        s.commit()
    store.dispose()
    return {"path": path, "keys": keys}


def copy_store(demo_db: dict[str, Any], dst: Path) -> Store:
    shutil.copy(demo_db["path"], dst)
    return Store(f"sqlite:///{dst}").migrate()


@pytest.fixture
def store(demo_db: dict[str, Any], tmp_path: Path) -> Iterator[Store]:
    s = copy_store(demo_db, tmp_path / "copy.db")
    yield s
    s.dispose()


@pytest.fixture
def keys(demo_db: dict[str, Any]) -> dict[str, str]:
    return demo_db["keys"]


def make_app(store: Store, **settings: Any) -> Any:
    return create_app(Settings(database_url=store.url, auth_enabled=True, **settings), store=store)


@pytest.fixture
def app(store: Store) -> Any:
    return make_app(store)


@pytest.fixture
def client(app: Any) -> TestClient:
    return TestClient(app)


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def sign_in(client: TestClient, username: str) -> TestClient:
    """Sign a dashboard account in; returns the client (cookie jar holds the session)."""
    html = client.get("/login").text
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, "login page has no CSRF field"
    r = client.post(
        "/login",
        data={"username": username, "password": PASSWORDS[username], "csrf": m.group(1)},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text[:300]
    return client


def csrf_token(client: TestClient) -> str:
    """The CSRF token of a signed-in session (every page's sign-out form carries it)."""
    m = re.search(r'name="csrf" value="([^"]+)"', client.get("/").text)
    assert m, "signed-in page has no CSRF field"
    return m.group(1)
