"""``knowcast train --engine spark``: from the store and from a Parquet export, served by the API."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import text
from typer.testing import CliRunner

from knowcast.cli import app as cli
from knowcast.recommend import service as svc
from knowcast.store import Store

runner = CliRunner()
PARAMS = ["-p", "rank=8", "-p", "max_iter=5", "-p", "reg_param=0.01"]


def _busiest_user(store: Store) -> str:
    with store.engine.connect() as c:
        return str(
            c.execute(
                text(
                    "SELECT user_id FROM events WHERE type IN ('view', 'like', 'click', 'purchase') "
                    "GROUP BY user_id ORDER BY COUNT(*) DESC, user_id LIMIT 1"
                )
            ).scalar()
        )


def _api_recommendations(store: Store, user: str) -> dict[str, Any]:
    from fastapi.testclient import TestClient

    from knowcast.api.app import create_app
    from knowcast.config import Settings

    app = create_app(Settings(database_url=store.url, auth_enabled=False), store)
    with TestClient(app) as client:
        r = client.get(f"/v1/users/{user}/recommendations", params={"n": 5})
        assert r.status_code == 200, r.text
        return r.json()


def _train(store: Store, *extra: str) -> dict[str, Any]:
    res = runner.invoke(
        cli, ["train", "--engine", "spark", *PARAMS, "--no-validate", "--json", "--db", store.url, *extra]
    )
    assert res.exit_code == 0, res.output
    return json.loads(res.output)


def test_train_engine_spark_from_store_is_served(spark: Any, store: Store) -> None:
    report = _train(store)
    assert report["algorithm"] == "als" and report["params"]["engine"] == "spark"
    assert report["params"]["factors"] == 8  # stored as an ordinary ALS artifact
    meta = json.loads((Path(report["path"]) / "meta.json").read_text())
    assert meta["engine"] == "spark" and meta["spark"]["params"]["rank"] == 8
    assert meta["spark"]["params"]["master"] == "local[2]"
    served = svc.load_artifact(report["path"])
    assert served.model.item_factors_.shape == (report["metrics"]["items"], 8)
    assert np.abs(served.model.item_factors_).sum() > 0

    user = _busiest_user(store)
    body = _api_recommendations(store, user)
    assert body["model"] == {"name": "default", "version": 1, "algorithm": "als"}
    assert body["source"] == "personal" and len(body["items"]) == 5
    assert all(it["item_id"] and it["reason"] for it in body["items"])

    res = runner.invoke(cli, ["recommend", "models", "--db", store.url])
    assert res.exit_code == 0 and "spark" in res.output, res.output


def test_train_from_parquet_export_matches_store(spark: Any, store: Store, tmp_path: Path) -> None:
    out = tmp_path / "events.parquet"
    res = runner.invoke(cli, ["export", "events", str(out), "--format", "parquet", "--db", store.url])
    assert res.exit_code == 0, res.output

    # the pairs Spark aggregates from the export are the store's interaction matrix, weight for weight
    items = svc._items_frame(store.engine)
    item_ids = items["item_id"].to_numpy().astype(str)
    expect = svc._interactions(
        svc._interaction_events(store.engine), {v: i for i, v in enumerate(item_ids)}, len(item_ids)
    )
    got, _ = svc._spark_interactions(spark, out, item_ids)
    assert got.user_ids.tolist() == expect.user_ids.tolist()
    assert got.matrix.shape == expect.matrix.shape and got.matrix.nnz == expect.matrix.nnz
    assert np.allclose(got.matrix.toarray(), expect.matrix.toarray(), atol=1e-4)
    assert np.allclose(got.timestamps.toarray(), expect.timestamps.toarray())

    report = _train(store, "--from-parquet", str(out))
    assert report["metrics"]["interactions"] == expect.matrix.nnz
    assert report["metrics"]["next_purchase"].startswith("skipped")
    body = _api_recommendations(store, _busiest_user(store))
    assert body["model"]["version"] == 1 and len(body["items"]) == 5


def test_bad_engine_inputs_name_the_field(spark: Any, store: Store, tmp_path: Path) -> None:
    res = runner.invoke(cli, ["train", "--engine", "spark", "--algorithm", "ease", "--db", store.url])
    assert res.exit_code == 2 and "ALS only" in res.output
    res = runner.invoke(cli, ["train", "--from-parquet", "x.parquet", "--db", store.url])
    assert res.exit_code == 2 and "--engine spark" in res.output
    missing = tmp_path / "nope.parquet"
    res = runner.invoke(
        cli, ["train", "--engine", "spark", "--from-parquet", str(missing), "--db", store.url]
    )
    assert res.exit_code == 2 and "cannot read events" in res.output, res.output
    assert svc.list_models(store.engine) == []
