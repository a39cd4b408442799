"""Analytics reachable from the API and the CLI, with the same numbers as the library."""

from __future__ import annotations

import io

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from knowcast.analytics.funnel import FunnelSpec
from knowcast.analytics.service import funnel
from knowcast.api.app import create_app
from knowcast.api.security import create_api_key
from knowcast.cli import app as cli
from knowcast.config import Settings
from knowcast.services.demo import SIZES, seed_demo
from knowcast.sim import SimConfig
from knowcast.store import Store


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Store:
    store = Store(f"sqlite:///{tmp_path_factory.mktemp('an') / 'a.db'}").migrate()
    seed_demo(store.engine, SimConfig(seed=0, **SIZES["tiny"]))
    return store


def test_funnel_api_equals_library_and_csv(demo: Store) -> None:
    with demo.sessions() as s:
        read = create_api_key(s, "r", ["read"])[1]
        s.commit()
    body = {"steps": ["view", "click", "purchase"], "breakdown": "channel", "window_days": 7}
    lib = funnel(
        demo.engine,
        FunnelSpec(steps=("view", "click", "purchase"), breakdown="channel", window_ms=7 * 86_400_000),
    ).steps
    with TestClient(create_app(Settings(database_url=demo.url), demo)) as c:
        assert c.post("/v1/analytics/funnel", json=body).status_code == 401
        r = c.post("/v1/analytics/funnel", json=body, headers={"X-API-Key": read})
        assert r.status_code == 200
        got = pd.DataFrame(r.json()["steps"])
        assert got["users"].tolist() == lib["users"].tolist()
        csv = c.post("/v1/analytics/funnel?format=csv", json=body, headers={"X-API-Key": read}).text
        assert pd.read_csv(io.StringIO(csv))["users"].tolist() == lib["users"].tolist()
        bad = c.post("/v1/analytics/funnel", json={"steps": ["view", "fly"]}, headers={"X-API-Key": read})
        assert bad.status_code == 422 and "fly" in bad.json()["detail"]
        for path in (
            "retention",
            "stickiness",
            "attribution",
            "content-attribution",
            "revenue",
            "subscriptions",
        ):
            assert c.get(f"/v1/analytics/{path}", headers={"X-API-Key": read}).status_code == 200, path


def test_funnel_cli_csv_matches_library(demo: Store) -> None:
    res = CliRunner().invoke(
        cli, ["analytics", "funnel", "--step", "view", "--step", "purchase", "-o", "csv", "--db", demo.url]
    )
    assert res.exit_code == 0, res.output
    lib = funnel(demo.engine, FunnelSpec(steps=("view", "purchase"))).steps
    assert pd.read_csv(io.StringIO(res.output))["users"].tolist() == lib["users"].tolist()
    bad = CliRunner().invoke(cli, ["analytics", "funnel", "--step", "view", "--db", demo.url])
    assert bad.exit_code == 2
