"""The HTTP API and the CLI over the recommendation service: status codes, scopes, commands."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from knowcast.cli import app as cli
from knowcast.recommend import service as svc

from .conftest import active_users

runner = CliRunner()


def test_recommendations_endpoint(store, api) -> None:  # type: ignore[no-untyped-def]
    r = api.get("/v1/users/u000001/recommendations")
    assert r.status_code == 409 and "knowcast train" in r.json()["detail"]
    r = api.post("/v1/recommend/train", json={"algorithm": "ease", "params": {"lambda_": 100}})
    assert r.status_code == 201, r.text
    assert r.json()["version"] == 1 and r.json()["metrics"]["model_ndcg@10"] > 0
    user = active_users(store, 1)[0]
    r = api.get(f"/v1/users/{user}/recommendations", params={"n": 5, "surface": "next_course"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["surface"] == "next_course" and len(body["items"]) == 5
    assert all(it["price"] > 0 and it["reason"] for it in body["items"])
    # unknown user: the cold-start list, not a 404
    r = api.get("/v1/users/nobody-at-all/recommendations", params={"n": 3})
    assert r.status_code == 200 and r.json()["cold_start"] is True and len(r.json()["items"]) == 3
    for params, fld in (
        ({"surface": "home"}, "query.surface"),
        ({"n": 0}, "query.n"),
        ({"n": 101}, "query.n"),
        ({"model": "../etc"}, "query.model"),
    ):
        r = api.get(f"/v1/users/{user}/recommendations", params=params)
        assert r.status_code == 422, (params, r.text)
        assert fld in {e["field"] for e in r.json()["errors"]}
    r = api.post("/v1/recommend/train", json={"algorithm": "nope"})
    assert r.status_code == 422 and "unknown algorithm" in r.text
    assert api.post("/v1/recommend/train", json={}).status_code == 422


def test_versions_rollback_and_blocked_endpoints(store, api) -> None:  # type: ignore[no-untyped-def]
    for alg in ("ease", "item_knn"):
        assert (
            api.post("/v1/recommend/train", json={"algorithm": alg, "validate_holdout": False}).status_code
            == 201
        )
    models = api.get("/v1/recommend/models").json()
    assert models["count"] == 2 and [m["active"] for m in models["models"]] == [True, False]
    r = api.post("/v1/recommend/models/default/rollback")
    assert r.status_code == 200 and r.json()["version"] == 1
    assert api.post("/v1/recommend/models/default/rollback").status_code == 404
    assert api.post("/v1/recommend/models/default/activate", json={"version": 9}).status_code == 404
    assert api.post("/v1/recommend/models/default/activate", json={"version": 0}).status_code == 422
    assert api.post("/v1/recommend/models/default/activate", json={"version": 2}).json()["version"] == 2
    user = active_users(store, 1)[0]
    first = api.get(f"/v1/users/{user}/recommendations").json()["items"][0]
    r = api.post("/v1/recommend/blocked", json={"creators": [first["creator_id"]]})
    assert r.status_code == 200 and r.json()["creators"] == [first["creator_id"]]
    page = api.get(f"/v1/users/{user}/recommendations", params={"n": 30}).json()["items"]
    assert first["creator_id"] not in {it["creator_id"] for it in page}
    assert api.post("/v1/recommend/blocked", json={}).status_code == 422
    assert api.get("/v1/recommend/blocked").json() == {"items": [], "creators": [first["creator_id"]]}


def test_similar_uses_the_model_and_falls_back_to_content(store, api) -> None:  # type: ignore[no-untyped-def]
    r = api.get("/v1/items/i00001/similar", params={"n": 3})
    assert r.status_code == 200 and r.json()["source"] in ("tags", "content")
    assert (
        api.post("/v1/recommend/train", json={"algorithm": "ease", "validate_holdout": False}).status_code
        == 201
    )
    served = svc.served_model(store.engine)
    busy = str(served.item_ids[int(served.item_events.argmax())])
    r = api.get(f"/v1/items/{busy}/similar", params={"n": 3})
    assert r.status_code == 200 and r.json()["source"] == "collaborative"
    assert len(r.json()["similar"]) == 3 and r.json()["model"]["version"] == 1
    assert api.get("/v1/items/no-such-item/similar").status_code == 404
    assert api.get(f"/v1/items/{busy}/similar", params={"n": 0}).status_code == 422


def test_scopes(store) -> None:  # type: ignore[no-untyped-def]
    from knowcast.api.app import create_app
    from knowcast.api.security import create_api_key
    from knowcast.config import Settings

    keys = {}
    with store.sessions() as s:
        for scope in ("read", "ingest", "admin"):
            keys[scope] = create_api_key(s, scope, [scope])[1]
        s.commit()
    svc.train(store.engine, "ease", validate=False)
    app = create_app(Settings(database_url=store.url, auth_enabled=True), store)
    with TestClient(app) as c:
        url = "/v1/users/u000001/recommendations"
        assert c.get(url).status_code == 401
        assert c.get(url, headers={"X-API-Key": keys["ingest"]}).status_code == 403
        assert c.get(url, headers={"X-API-Key": keys["read"]}).status_code == 200
        read = {"Authorization": f"Bearer {keys['read']}"}
        assert c.post("/v1/recommend/models/default/rollback", headers=read).status_code == 403
        assert c.post("/v1/recommend/train", headers=read, json={"algorithm": "ease"}).status_code == 403
        assert c.get("/v1/recommend/blocked", headers=read).status_code == 403
        admin = {"Authorization": f"Bearer {keys['admin']}"}
        assert c.get("/v1/recommend/blocked", headers=admin).status_code == 200


def _cli(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(cli, list(args))


def test_cli_train_models_show_rollback_block(store) -> None:  # type: ignore[no-untyped-def]
    db = ["--db", store.url]
    r = _cli("train", "-a", "ease", "-p", "lambda_=100", *db)  # the top-level name
    assert r.exit_code == 0, r.output
    assert "stored default v1 (ease)" in r.output and "hold-out NDCG@10" in r.output
    r = _cli("recommend", "train", "-a", "item_knn", "--no-validate", "--json", *db)
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["version"] == 2
    r = _cli("recommend", "models", "--json", *db)
    assert [(m["version"], m["active"]) for m in json.loads(r.stdout)] == [(2, True), (1, False)]
    user = active_users(store, 1)[0]
    r = _cli("recommend", "show", user, "--surface", "live", "--json", *db)
    assert r.exit_code == 0, r.output
    page = json.loads(r.stdout)
    assert page["model"]["version"] == 2 and {it["kind"] for it in page["items"]} == {"live"}
    r = _cli("recommend", "rollback", *db)
    assert r.exit_code == 0 and "from v2 to v1" in r.output
    r = _cli("recommend", "rollback", *db)
    assert r.exit_code == 1 and "older than v1" in r.output
    r = _cli("recommend", "block", "--item", page["items"][0]["item_id"], *db)
    assert r.exit_code == 0 and page["items"][0]["item_id"] in r.output
    assert svc.get_blocked(store.engine)["items"] == [page["items"][0]["item_id"]]
    assert _cli("recommend", "block", *db).exit_code == 2
    r = _cli("recommend", "train", "-a", "deep_magic", *db)
    assert r.exit_code == 2 and "unknown algorithm" in r.output
    r = _cli("recommend", "show", user, "--surface", "home", *db)
    assert r.exit_code == 2 and "surface" in r.output


@pytest.mark.parametrize("dataset", ["store"])
def test_cli_evaluate_on_the_store(store, dataset: str) -> None:  # type: ignore[no-untyped-def]
    r = _cli(
        "recommend",
        "evaluate",
        "-a",
        "most_popular",
        "-a",
        "ease",
        "--dataset",
        dataset,
        "--json",
        "--db",
        store.url,
    )
    assert r.exit_code == 0, r.output
    rows = {row["algorithm"]: row for row in json.loads(r.stdout)}
    assert rows["ease"]["ndcg@10"] > rows["most_popular"]["ndcg@10"] > 0
