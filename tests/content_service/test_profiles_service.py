"""Profiles service through the API and CLI: build, incremental update on read, segments, rule segments."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from sqlalchemy import select
from typer.testing import CliRunner

from knowcast.cli import app as cli
from knowcast.ingest.service import import_records
from knowcast.profiles import service as svc
from knowcast.store.models import UserProfile

TEST_EVENT_PREFIX = "kctest-"  # as in conftest: events the fixture removes again

runner = CliRunner()
RULE = {"all": [{"event": "purchase", "within_days": 5}, {"event": ["like", "comment"], "min_count": 2}]}


def _rows(store) -> dict[str, tuple]:  # type: ignore[no-untyped-def]
    with store.engine.connect() as c:
        return {u: (t, lt) for u, t, lt in c.execute(
            select(UserProfile.user_id, UserProfile.updated_at, UserProfile.last_ts))}


def test_build_update_on_read_and_segments(store, api) -> None:  # type: ignore[no-untyped-def]
    client = api
    res = runner.invoke(cli, ["profiles", "build", "--k-max", "4", "--json", "--db", store.url])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.output)
    n_users = pd.read_sql("SELECT COUNT(DISTINCT user_id) AS n FROM events", store.engine)["n"].iat[0]
    assert rep["n_users"] == n_users and 2 <= rep["k"] <= 4

    # segments: sizes sum to the profiled users, each described in words
    segs = client.get("/v1/segments").json()["segments"]
    clusters = [s for s in segs if s["kind"] == "cluster"]
    assert sum(s["size"] for s in clusters) == n_users
    assert all("users" in s["description"] and s["name"] for s in clusters)
    one = client.get(f"/v1/segments/{clusters[0]['segment_id']}").json()
    assert one["profile"]["members_profiled"] == clusters[0]["size"]
    prof = one["profile"]
    assert prof["top_interests"] and "mean" in prof["spend"] and prof["channels"]
    mem = client.get(f"/v1/segments/{clusters[0]['segment_id']}/members?limit=5").json()
    assert len(mem["members"]) == min(5, clusters[0]["size"])
    assert client.get("/v1/segments/nope").status_code == 404
    assert client.get("/v1/segments/nope/members").status_code == 404
    assert client.get(f"/v1/segments/{clusters[0]['segment_id']}/members?limit=0").status_code == 422

    # a profile, then new events for one user, reflected without a rebuild
    user = "u000209"
    p0 = client.get(f"/v1/users/{user}/profile").json()
    assert p0["profiled"] and p0["applied_events"] == 0 and p0["segment"]["id"].startswith("cluster-")
    assert p0["interests"] and p0["activity"]["n_events"] > 0 and p0["device"]["preferred"]
    before = _rows(store)
    # "now": after every stored event (events are ingested as they happen, newer than the watermark)
    last = int(pd.read_sql("SELECT MAX(ts) AS t FROM events", store.engine)["t"].iat[0])
    assert last > before[user][1]
    item = "i00001"  # tags: music, 音乐, membership
    new = [
        {"event_id": f"{TEST_EVENT_PREFIX}{k}", "type": t, "ts": last + 60_000 * (k + 1), "user_id": user,
         "item_id": item, "watch_ratio": 1.0 if t == "view" else None,
         "amount": 29.9 if t == "purchase" else None, "currency": "CNY" if t == "purchase" else None,
         "channel": "search", "device": "ios"}
        for k, t in enumerate(["view", "like", "view", "purchase"])
    ]
    rep_i = import_records(store.engine, "events", new)
    assert rep_i.rows_written == 4, rep_i.as_dict()
    p1 = client.get(f"/v1/users/{user}/profile").json()
    assert p1["applied_events"] == 4
    assert p1["activity"]["n_events"] == p0["activity"]["n_events"] + 4
    assert p1["rfm"]["n_purchases"] == p0["rfm"]["n_purchases"] + 1
    assert abs(p1["rfm"]["spend"] - p0["rfm"]["spend"] - 29.9) < 1e-6
    assert p1["channels"]["counts"]["search"] == p0["channels"]["counts"].get("search", 0) + 4
    assert p1["last_ts"] == new[-1]["ts"]
    tags = [i["tag"] for i in p1["interests"]]
    assert "music" in tags and "音乐" in tags
    assert tags[:2] != [i["tag"] for i in p0["interests"]][:2] or "music" in [
        i["tag"] for i in p0["interests"]][:2]
    after = _rows(store)
    changed = [u for u in before if after[u] != before[u]]
    assert changed == [user]  # nobody else's row was touched
    # read again: nothing new; the global pass finds nothing either (already applied)
    assert client.get(f"/v1/users/{user}/profile").json()["applied_events"] == 0
    up = svc.update_profiles(store.engine)
    assert up.n_events == 0
    assert _rows(store) == after
    assert client.get("/v1/users/nobody/profile").status_code == 404
    res = runner.invoke(cli, ["profiles", "show", user, "--db", store.url])
    assert res.exit_code == 0 and "music" in res.output

    # the global incremental pass: a new user and an existing one
    more = [
        {"event_id": f"{TEST_EVENT_PREFIX}n{k}", "type": "view", "ts": new[-1]["ts"] + 1000 * (k + 1),
         "user_id": u, "item_id": "i00002", "watch_ratio": 0.5}
        for k, u in enumerate(["u000001", "newcomer"])
    ]
    assert import_records(store.engine, "events", more, create_missing=True).rows_written == 2
    res = runner.invoke(cli, ["profiles", "update", "--json", "--db", store.url])
    assert res.exit_code == 0, res.output
    up = json.loads(res.output)
    assert up["n_events"] == 2 and up["new_users"] == 1
    changed = {u for u, v in _rows(store).items() if after.get(u) != v}
    assert changed == {"u000001", "newcomer"}


def _pandas_rule_members(store) -> set[str]:  # type: ignore[no-untyped-def]
    ev = pd.read_sql("SELECT user_id, type, ts FROM events", store.engine)
    now = ev["ts"].max()
    buyers = set(ev[(ev["type"] == "purchase") & (ev["ts"] >= now - 5 * 86_400_000)]["user_id"])
    counts = ev[ev["type"].isin(["like", "comment"])].groupby("user_id").size()
    engaged = set(counts[counts >= 2].index)
    return buyers & engaged


def test_rule_segments(store, api, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    client = api
    svc.build_profiles(store.engine, k_range=(2, 3))
    r = client.post("/v1/segments", json={"name": "Engaged buyers", "rule": RULE})
    assert r.status_code == 201, r.text
    seg = r.json()
    expected = _pandas_rule_members(store)
    assert seg["kind"] == "rule" and seg["size"] == len(expected) > 0
    got = client.get(f"/v1/segments/{seg['segment_id']}/members?limit=10000").json()["members"]
    assert set(got) == expected
    assert client.post("/v1/segments", json={"name": "Engaged buyers", "rule": RULE}).status_code == 409
    bad = client.post("/v1/segments", json={"name": "x", "rule": {"all": [{"event": "purchase"},
                                                                         {"profile": "spend", "op": "~"}]}})
    assert bad.status_code == 422 and bad.json()["detail"]["errors"][0]["field"] == "body.rule.all[1].op"
    bad = client.post("/v1/segments", json={"name": "x", "rule": {"event": "buy"}})
    assert bad.status_code == 422 and "rule.event" in bad.json()["detail"]["errors"][0]["field"]
    bad = client.post("/v1/segments", json={"rule": RULE})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "body.name"
    # CLI, with a profile condition too
    f = tmp_path / "rule.json"
    f.write_text(json.dumps({"any": [{"profile": "spend", "op": ">=", "value": 100},
                                     {"event": "live_join", "item_kind": "live"}]}))
    res = runner.invoke(cli, ["profiles", "segment", "create", "Big or live", "--rule", str(f), "--json",
                              "--db", store.url])
    assert res.exit_code == 0, res.output
    made = json.loads(res.output)
    ev = pd.read_sql("SELECT e.user_id, e.type, e.amount, i.kind FROM events e LEFT JOIN items i "
                     "ON i.id = e.item_id", store.engine)
    ev["amount"] = pd.to_numeric(ev["amount"]).fillna(0)
    spend = ev[ev["type"].isin(["purchase", "subscribe", "tip"])].groupby("user_id")["amount"].sum() - \
        ev[ev["type"] == "refund"].groupby("user_id")["amount"].sum().reindex(
            ev["user_id"].unique(), fill_value=0).abs()
    big = set(spend[spend.fillna(0) >= 100].index)
    live = set(ev[(ev["type"] == "live_join") & (ev["kind"] == "live")]["user_id"])
    assert made["size"] == len(big | live)
    res = runner.invoke(cli, ["profiles", "segment", "create", "x", "--rule", str(tmp_path / "none.json"),
                              "--db", store.url])
    assert res.exit_code == 2
    segs = {s["segment_id"] for s in client.get("/v1/segments").json()["segments"]}
    assert {seg["segment_id"], made["segment_id"]} <= segs
