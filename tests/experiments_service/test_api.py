"""The /v1/experiments API: auth (401/403), 404/409/422, YAML bodies, sticky assignment across a ramp."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from knowcast.api.app import create_app
from knowcast.api.security import create_api_key
from knowcast.config import Settings

YAML = {"content-type": "application/yaml"}
YAML_SPEC = """
key: title_test
name: Course title wording
variants:
  - {key: control, weight: 1}
  - {key: question, weight: 1}
decision_metric: conversion
guardrails: [refund_rate]
coverage: 0.1
"""


@pytest.fixture
def api(store):  # type: ignore[no-untyped-def]
    keys = {}
    with store.sessions() as s:
        for name, scopes in (("admin", ["admin"]), ("read", ["read"]), ("app", ["read", "ingest"])):
            keys[name] = create_api_key(s, name, scopes)[1]
        s.commit()
    app = create_app(Settings(database_url=store.url, auth_enabled=True), store)
    with TestClient(app) as client:
        yield client, {k: {"Authorization": f"Bearer {v}"} for k, v in keys.items()}


def test_auth_and_errors(api) -> None:
    client, h = api
    assert client.get("/v1/experiments").status_code == 401
    assert client.post("/v1/experiments", json={"key": "x"}).status_code == 401
    r = client.post("/v1/experiments", content=YAML_SPEC, headers={**h["read"], **YAML})
    assert r.status_code == 403
    r = client.post("/v1/experiments", content=YAML_SPEC, headers={**h["admin"], **YAML})
    assert r.status_code == 201, r.text
    assert r.json()["key"] == "title_test" and r.json()["state"] == "draft"
    assert client.post("/v1/experiments", content=YAML_SPEC,
                       headers={**h["admin"], "content-type": "application/yaml"}).status_code == 409
    assert client.post("/v1/experiments/title_test/start", headers=h["read"]).status_code == 403
    assert client.post("/v1/experiments/title_test/start", headers=h["admin"]).status_code == 200
    assert client.post("/v1/experiments/title_test/start", headers=h["admin"]).status_code == 409
    r = client.post("/v1/experiments/title_test/ramp", json={"coverage": 0.05}, headers=h["admin"])
    assert r.status_code == 409 and "only grow" in r.json()["detail"]
    assert client.post("/v1/experiments/title_test/ramp", json={"coverage": 1.5},
                       headers=h["admin"]).status_code == 422
    for path in ("/v1/experiments/nope", "/v1/experiments/nope/audit", "/v1/experiments/nope/results",
                 "/v1/experiments/nope/assignment?user_id=u1"):
        assert client.get(path, headers=h["read"]).status_code == 404, path
    assert client.post("/v1/experiments/nope/stop", headers=h["admin"]).status_code == 404
    bad = {"key": "b", "variants": [{"key": "a", "weight": 1}, {"key": "b", "weight": "lots"}],
           "decision_metric": "conversion"}
    r = client.post("/v1/experiments", json=bad, headers=h["admin"])
    assert r.status_code == 422 and r.json()["detail"]["errors"][0]["field"] == "variants[1].weight"
    r = client.post("/v1/experiments", json={**bad, "variants": {"a": 1, "b": 1}, "guardrails": ["vibes"]},
                    headers=h["admin"])
    assert r.status_code == 422 and r.json()["detail"]["errors"][0]["field"] == "guardrails[0]"
    r = client.post("/v1/experiments", content="key: [unclosed", headers={**h["admin"],
                                                                          "content-type": "application/yaml"})
    assert r.status_code == 422
    r = client.patch("/v1/experiments/title_test", json={"changes": {"variants": {"a": 1, "b": 1}}},
                     headers=h["admin"])
    assert r.status_code == 409
    assert client.post("/v1/experiments/title_test/stop", headers=h["admin"]).status_code == 200
    assert client.post("/v1/experiments/title_test/stop", headers=h["admin"]).status_code == 409
    audit = client.get("/v1/experiments/title_test/audit", headers=h["read"]).json()["audit"]
    assert [a["action"] for a in audit] == ["create", "start", "stop"]
    assert all(a["actor"].startswith("admin (key ") for a in audit)
    listed = client.get("/v1/experiments", headers=h["read"]).json()["experiments"]
    assert [(e["key"], e["state"]) for e in listed] == [("title_test", "stopped")]


def test_assignment_is_sticky_across_a_ramp(api) -> None:
    client, h = api
    assert client.post("/v1/experiments", content=YAML_SPEC,
                       headers={**h["admin"], "content-type": "application/yaml"}).status_code == 201
    client.post("/v1/experiments/title_test/start", headers=h["admin"])
    users = [f"user-{i}" for i in range(200)]
    seen: dict[str, str] = {}
    counts = []
    for cov in (0.1, 0.5, 1.0):
        if cov > 0.1:
            r = client.post("/v1/experiments/title_test/ramp", json={"coverage": cov}, headers=h["admin"])
            assert r.status_code == 200 and r.json()["coverage"] == cov
        got = {}
        for u in users:
            r = client.get("/v1/experiments/title_test/assignment", params={"user_id": u}, headers=h["read"])
            assert r.status_code == 200
            got[u] = r.json()["variant"]
        assert all(got[u] == v for u, v in seen.items()), "a ramp moved an assigned user"
        seen = {u: v for u, v in got.items() if v is not None}
        counts.append(len(seen))
    assert counts[0] < counts[1] < counts[2] == len(users)
    assert 8 <= counts[0] <= 35 and 75 <= counts[1] <= 125
    assert [a["action"] for a in client.get("/v1/experiments/title_test/audit",
                                            headers=h["read"]).json()["audit"]] == [
        "create", "start", "ramp", "ramp"]


def test_exposure_logging_and_results(api) -> None:
    client, h = api
    spec = {"key": "cta", "variants": {"control": 1, "green": 1}, "decision_metric": "conversion",
            "eligibility": {"channel": "feed"}}
    assert client.post("/v1/experiments", json=spec, headers=h["admin"]).status_code == 201
    client.post("/v1/experiments/cta/start", headers=h["admin"])
    q = {"user_id": "u1", "channel": "feed", "log_exposure": "true"}
    assert client.get("/v1/experiments/cta/assignment", params=q, headers=h["read"]).status_code == 403
    for i in range(40):
        r = client.get("/v1/experiments/cta/assignment", params={**q, "user_id": f"u{i}"}, headers=h["app"])
        assert r.status_code == 200 and r.json()["logged"] and r.json()["variant"] in ("control", "green")
    r = client.get("/v1/experiments/cta/assignment", params={"user_id": "u1", "channel": "push"},
                   headers=h["read"])
    assert r.json() | {"bucket": 0} == {"experiment": "cta", "user_id": "u1", "variant": None,
                                        "in_experiment": False, "reason": "not_eligible", "bucket": 0,
                                        "logged": False}
    rep = client.get("/v1/experiments/cta/results", headers=h["read"])
    assert rep.status_code == 200
    body = rep.json()
    assert body["exposed_users"] == 40 and sum(v["n"] for v in body["variants"]) == 40
    assert {"srm", "recommendation", "verdict", "figure", "metrics", "guardrails"} <= set(body)
    assert body["figure"]["data"][0]["type"] == "scatter"
    csv = client.get("/v1/experiments/cta/results", params={"format": "csv"}, headers=h["read"])
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    assert csv.text.splitlines()[1].startswith("cta,conversion,decision,control,")
    assert client.get("/v1/experiments/cta/results", params={"engine": "magic"},
                      headers=h["read"]).status_code == 422
