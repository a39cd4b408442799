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


REPORTS = (
    "rfm",
    "cohort-revenue?period_days=3",
    "subscriptions",
    "creators",
    "creators/pillars",
    "creators/best-hours",
    "creators/sentiment?period_days=7",
    "creators/share-of-voice",
    "creators/c0001/audience",
    "creators/c0001/audience?part=interests",
    "user-scores?target=churn&horizon_days=2&history_days=3&top=20",
    "user-scores?target=buy&horizon_days=2&history_days=7",
    "advice/next-topics?window_days=3",
    "advice/promote-next?creator_id=c0001",
)


def test_creator_model_and_advice_reports_json_and_csv(demo: Store) -> None:
    from knowcast.analytics import service

    with demo.sessions() as s:
        read = create_api_key(s, "r2", ["read"])[1]
        s.commit()
    h = {"X-API-Key": read}
    with TestClient(create_app(Settings(database_url=demo.url), demo)) as c:
        for path in REPORTS:
            r = c.get(f"/v1/analytics/{path}", headers=h)
            assert r.status_code == 200, (path, r.text[:300])
            sep = "&" if "?" in path else "?"
            csv = c.get(f"/v1/analytics/{path}{sep}format=csv", headers=h)
            assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv"), path
            assert len(pd.read_csv(io.StringIO(csv.text))) > 0, path
        lib = service.creators(demo.engine)
        got = pd.DataFrame(c.get("/v1/analytics/creators", headers=h).json()["creators"])
        assert got["creator_id"].tolist() == lib["creator_id"].tolist()
        assert got["views"].tolist() == lib["views"].tolist()
        churn = c.get("/v1/analytics/user-scores?horizon_days=2&history_days=3&top=20", headers=h).json()
        assert 0.0 <= churn["evaluation"]["model"]["auc"] <= 1.0
        assert {"model", "base_rate", "recency_days"} == {r["scorer"] for r in churn["scorers"]}
        assert len(churn["segment"]) == 20
        # a 7-day tiny log is too short to train the commercial-value model: a 422 that says why
        cv = c.get("/v1/analytics/commercial-value", headers=h)
        assert cv.status_code == 422 and ("single class" in cv.text or "too short" in cv.text)
        assert c.get("/v1/analytics/user-scores?target=fly", headers=h).status_code == 422


def test_model_and_creator_cli(demo: Store) -> None:
    from knowcast.analytics import service

    run = CliRunner().invoke
    res = run(cli, ["analytics", "creators", "-o", "csv", "--db", demo.url])
    assert res.exit_code == 0, res.output
    assert (
        pd.read_csv(io.StringIO(res.output))["views"].tolist()
        == service.creators(demo.engine)["views"].tolist()
    )
    seg = run(
        cli, ["analytics", "user-scores", "--horizon-days", "2", "--top", "15", "-o", "csv", "--db", demo.url]
    )
    assert seg.exit_code == 0, seg.output
    assert len(pd.read_csv(io.StringIO(seg.output))) == 15
    for args in (
        ["promote-next", "--creator", "c0001"],
        ["next-topics"],
        ["rfm"],
        ["best-hours"],
        ["audience", "c0001"],
    ):
        r = run(cli, ["analytics", *args, "-o", "json", "--db", demo.url])
        assert r.exit_code == 0, (args, r.output[-500:])
    bad = run(cli, ["analytics", "commercial-value", "--db", demo.url])
    assert bad.exit_code == 2
