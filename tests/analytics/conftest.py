"""Shared fixtures: the real e-commerce funnel loaded into a store (SQLite, and PostgreSQL when reachable)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pandas as pd
import pytest

from knowcast.paths import shared_data

FUNNEL_DIR = shared_data("funnels")
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
STEP_TYPES = ("view", "click", "add_to_cart", "purchase")
PAGES = (
    ("ecommerce_home_page_table.csv", "view", "home"),
    ("ecommerce_search_page_table.csv", "click", "search"),
    ("ecommerce_payment_page_table.csv", "add_to_cart", "payment"),
    ("ecommerce_payment_confirmation_table.csv", "purchase", "payment"),
)


def funnel_tables() -> tuple[pd.DataFrame, dict[str, set[str]]]:
    if not (FUNNEL_DIR / "ecommerce_user_table.csv").exists():
        pytest.skip(f"funnels dataset absent ({FUNNEL_DIR}); see ../shared/data/README.md")
    users = pd.read_csv(FUNNEL_DIR / "ecommerce_user_table.csv", dtype={"user_id": str})
    pages = {}
    for fname, etype, _ in PAGES:
        pages[etype] = set(pd.read_csv(FUNNEL_DIR / fname, dtype={"user_id": str})["user_id"])
    return users, pages


def funnel_events(users: pd.DataFrame, pages: dict[str, set[str]]) -> pd.DataFrame:
    """The page tables as events: one per page reached, on the user's visit date, a minute apart."""
    day_ms = (
        (pd.to_datetime(users["date"], utc=True) - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1)
    ).to_numpy()
    base = dict(zip(users["user_id"], day_ms, strict=True))
    device = dict(zip(users["user_id"], users["device"], strict=True))
    rows = []
    for k, (_, etype, item) in enumerate(PAGES):
        for u in sorted(pages[etype]):
            rows.append(
                {
                    "event_id": f"{etype}-{u}",
                    "type": etype,
                    "ts": int(base[u] + 12 * 3_600_000 + k * 60_000),
                    "user_id": u,
                    "item_id": item,
                    "amount": 1.0 if etype == "purchase" else None,
                    "currency": "USD" if etype == "purchase" else None,
                    "device": device[u],
                    "channel": "search" if int(u) % 3 == 0 else "feed",
                }
            )
    return pd.DataFrame(rows)


def load_funnel_store(url: str):  # type: ignore[no-untyped-def]
    from knowcast.ingest.service import import_records
    from knowcast.store import Store

    users, pages = funnel_tables()
    store = Store(url).migrate()
    urows = pd.DataFrame(
        {
            "user_id": users["user_id"],
            "created_at": pd.to_datetime(users["date"], utc=True),
            "attributes": [
                {"sex": s, "device": d} for s, d in zip(users["sex"], users["device"], strict=True)
            ],
        }
    )
    import_records(store.engine, "users", urows)
    import_records(
        store.engine,
        "items",
        [
            {"item_id": "home", "kind": "short_video", "title": "home"},
            {"item_id": "search", "kind": "short_video", "title": "search"},
            {"item_id": "payment", "kind": "course", "title": "payment", "price": 1.0, "currency": "USD"},
        ],
        create_missing=True,
    )
    import_records(store.engine, "events", funnel_events(users, pages), create_missing=True)
    return store, users, pages


@pytest.fixture(scope="session")
def funnel_sqlite(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    path = tmp_path_factory.mktemp("funnel") / "funnel.db"
    store, users, pages = load_funnel_store(f"sqlite:///{path}")
    yield store, users, pages
    store.dispose()


def pg_database() -> Iterator[str]:
    """A private PostgreSQL database for these tests (dropped at the end); skips if the server is absent."""
    try:
        from sqlalchemy import create_engine, text

        admin = create_engine(
            PG_ADMIN_URL.replace("postgresql://", "postgresql+psycopg://"),
            isolation_level="AUTOCOMMIT",
            connect_args={"connect_timeout": 3},
        )
        with admin.connect() as c:
            c.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"PostgreSQL unreachable at {PG_ADMIN_URL}: {exc.__class__.__name__}")
    name = f"kc_analytics_test_{uuid.uuid4().hex[:8]}"
    with admin.connect() as c:
        c.execute(text(f"CREATE DATABASE {name}"))
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as c:
            c.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


@pytest.fixture(scope="session")
def funnel_pg():  # type: ignore[no-untyped-def]
    gen = pg_database()
    url = next(gen)
    store, users, pages = load_funnel_store(url)
    yield store, users, pages
    store.dispose()
    gen.close()


@pytest.fixture(scope="session")
def sim_store(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A seeded simulator run (50 creators, 500 items, 1,500 users, 14 days: ~117k events) on SQLite."""
    from knowcast.services.demo import seed_demo
    from knowcast.sim import SimConfig
    from knowcast.store import Store

    store = Store(f"sqlite:///{tmp_path_factory.mktemp('sim') / 'sim.db'}").migrate()
    seed_demo(store.engine, SimConfig(seed=0, n_creators=50, n_items=500, n_users=1500, days=14))
    yield store
    store.dispose()
