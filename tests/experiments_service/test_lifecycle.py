"""Life cycle, audit trail, layers and eligibility of store-backed experiments (SQLite and PostgreSQL)."""

from __future__ import annotations

import statistics
import time

import pytest

from knowcast.experiments import service as svc
from knowcast.experiments.assignment import hash_unit
from knowcast.ingest.service import import_records

SPEC_YAML = """
key: cover_v2
name: Bold course cover
variants:
  - {key: control, weight: 0.5}
  - {key: bold, weight: 0.5}
decision_metric: conversion
guardrails: [refund_rate]
coverage: 0.1
"""


def test_create_start_ramp_stop_with_audit(store) -> None:
    e = store.engine
    spec = svc.create_experiment(e, SPEC_YAML, "ana", now=1_000)
    assert spec.state == "draft" and spec.variant_keys == ["control", "bold"]
    svc.start_experiment(e, "cover_v2", "ben", now=2_000)
    svc.ramp_experiment(e, "cover_v2", 0.5, "ana", now=3_000)
    svc.ramp_experiment(e, "cover_v2", 1.0, "ana", now=4_000)
    changes = {"name": "Bold cover", "guardrails": ["refund_rate", "revenue_per_user"]}
    svc.update_experiment(e, "cover_v2", changes, "cy", 5_000)
    stopped = svc.stop_experiment(e, "cover_v2", "ben", now=6_000)
    assert stopped.state == "stopped" and stopped.start == 2_000 and stopped.stop == 6_000
    stored = svc.get_experiment(e, "cover_v2")
    assert stored.coverage == 1.0 and stored.name == "Bold cover"
    assert stored.guardrails == ("refund_rate", "revenue_per_user")
    trail = svc.audit_trail(e, "cover_v2")
    assert [(a["action"], a["actor"], a["ts"]) for a in trail] == [
        ("create", "ana", 1_000), ("start", "ben", 2_000), ("ramp", "ana", 3_000), ("ramp", "ana", 4_000),
        ("update", "cy", 5_000), ("stop", "ben", 6_000),
    ]
    assert trail[0]["detail"]["spec"]["key"] == "cover_v2"
    assert trail[1]["detail"] == {"state": ["draft", "running"]}
    assert trail[2]["detail"] == {"coverage": [0.1, 0.5]}
    assert trail[4]["detail"]["name"] == ["Bold course cover", "Bold cover"]
    rows = svc.list_experiments(e)
    assert [(r["key"], r["state"]) for r in rows] == [("cover_v2", "stopped")]
    assert svc.list_experiments(e, "running") == []


def test_illegal_moves_are_conflicts(store) -> None:
    e = store.engine
    svc.create_experiment(e, SPEC_YAML, "ana")
    with pytest.raises(svc.Conflict, match="already exists"):
        svc.create_experiment(e, SPEC_YAML, "ana")
    svc.start_experiment(e, "cover_v2", "ana")
    with pytest.raises(svc.Conflict, match="cannot start"):
        svc.start_experiment(e, "cover_v2", "ana")
    svc.ramp_experiment(e, "cover_v2", 0.5, "ana")
    with pytest.raises(svc.Conflict, match="only grow"):
        svc.ramp_experiment(e, "cover_v2", 0.2, "ana")
    with pytest.raises(svc.Conflict, match="variants"):
        svc.update_experiment(e, "cover_v2", {"variants": {"control": 1, "bold": 3}}, "ana")
    svc.stop_experiment(e, "cover_v2", "ana")
    for call in (lambda: svc.stop_experiment(e, "cover_v2", "ana"),
                 lambda: svc.start_experiment(e, "cover_v2", "ana"),
                 lambda: svc.ramp_experiment(e, "cover_v2", 1.0, "ana"),
                 lambda: svc.update_experiment(e, "cover_v2", {"name": "x"}, "ana")):
        with pytest.raises(svc.Conflict):
            call()
    # refused changes leave no audit row behind
    assert [a["action"] for a in svc.audit_trail(e, "cover_v2")] == ["create", "start", "ramp", "stop"]
    with pytest.raises(svc.NotFound):
        svc.start_experiment(e, "nope", "ana")
    with pytest.raises(svc.NotFound):
        svc.audit_trail(e, "nope")


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"key": "x", "variants": {"a": 1, "b": "heavy"}, "decision_metric": "conversion"},
         "variants[1].weight"),
        ({"key": "x", "variants": {"a": 1}, "decision_metric": "conversion"}, "variants"),
        ({"key": "x", "variants": {"a": 1, "b": 1}, "decision_metric": "clicks"}, "decision_metric"),
        ({"key": "x", "variants": {"a": 1, "b": 1}, "decision_metric": "conversion",
          "guardrails": ["conversion", "vibes"]}, "guardrails[1]"),
        ({"key": "x", "variants": {"a": 1, "b": 1}}, "decision_metric"),
        ({"key": "x y", "variants": {"a": 1, "b": 1}, "decision_metric": "conversion"}, "key"),
        ({"key": "x", "variants": {"a": 1, "b": 1}, "decision_metric": "conversion", "coverage": 2},
         "coverage"),
        ({"key": "x", "variants": {"a": 1, "b": 1}, "decision_metric": "conversion",
          "eligibility": {"country": {"like": "C%"}}}, "eligibility.country"),
        ({"key": "x", "variants": {"a": 1, "b": 1}, "decision_metric": "conversion", "colour": 1}, "colour"),
        ({"key": "x", "variants": {"a": 1, "b": 1}, "decision_metric": "conversion", "state": "running"},
         "state"),
    ],
)
def test_bad_specs_name_the_field(sqlite_store, spec, field) -> None:
    with pytest.raises(svc.SpecError) as info:
        svc.create_experiment(sqlite_store.engine, spec, "ana")
    assert info.value.field == field, str(info.value)
    assert svc.list_experiments(sqlite_store.engine) == []


def test_ramp_never_moves_an_assigned_user(store) -> None:
    e = store.engine
    svc.create_experiment(e, SPEC_YAML, "ana")
    svc.start_experiment(e, "cover_v2", "ana")
    users = [f"u{i}" for i in range(4000)]
    seen: dict[str, str] = {}
    shares = []
    for cov in (0.1, 0.5, 1.0):
        if cov > 0.1:
            svc.ramp_experiment(e, "cover_v2", cov, "ana")
        got = {u: svc.assign(e, "cover_v2", u).variant for u in users}
        for u, v in seen.items():
            assert got[u] == v, f"{u} moved from {v} to {got[u]} at coverage {cov}"
        seen = {u: v for u, v in got.items() if v is not None}
        shares.append(len(seen) / len(users))
    assert abs(shares[0] - 0.1) < 0.02 and abs(shares[1] - 0.5) < 0.03 and shares[2] == 1.0
    bold = sum(v == "bold" for v in seen.values()) / len(seen)
    assert abs(bold - 0.5) < 0.03
    # deterministic: the bucket is the documented hash
    a = svc.assign(e, "cover_v2", "u7")
    assert a.bucket == hash_unit("cover_v2", "u7")
    svc.stop_experiment(e, "cover_v2", "ana")
    assert svc.assign(e, "cover_v2", "u7").reason == "not_running"


def test_layers_keep_experiments_apart(store) -> None:
    e = store.engine
    base = {"variants": {"a": 1, "b": 1}, "decision_metric": "conversion", "layer": "course_page"}
    s1 = svc.create_experiment(e, {**base, "key": "e1", "layer_share": 0.5}, "ana")
    s2 = svc.create_experiment(e, {**base, "key": "e2", "layer_share": 0.5}, "ana")
    assert s1.layer_slice == (0.0, 0.5) and s2.layer_slice == (0.5, 1.0)
    with pytest.raises(svc.Conflict, match="no free gap"):
        svc.create_experiment(e, {**base, "key": "e3", "layer_share": 0.2}, "ana")
    for k in ("e1", "e2"):
        svc.start_experiment(e, k, "ana")
    both = 0
    in1 = in2 = 0
    for i in range(3000):
        v1 = svc.assign(e, "e1", f"u{i}").variant
        v2 = svc.assign(e, "e2", f"u{i}").variant
        both += v1 is not None and v2 is not None
        in1 += v1 is not None
        in2 += v2 is not None
    assert both == 0 and in1 + in2 == 3000 and abs(in1 / 3000 - 0.5) < 0.03
    # a stopped experiment frees its slice for the next one on the surface
    svc.stop_experiment(e, "e1", "ana")
    s3 = svc.create_experiment(e, {**base, "key": "e3", "layer_share": 0.2}, "ana")
    assert s3.layer_slice == (0.0, 0.2)


def test_eligibility_from_request_attributes_stored_attributes_and_segments(store) -> None:
    e = store.engine
    now = int(time.time() * 1000)
    import_records(e, "users", [
        {"user_id": "cn_old", "created_at": now - 90 * 86_400_000, "attributes": {"country": "CN"}},
        {"user_id": "cn_new", "created_at": now - 2 * 86_400_000, "attributes": {"country": "CN"}},
        {"user_id": "us_new", "created_at": now - 86_400_000, "attributes": {"country": "US"}},
    ])
    from sqlalchemy import insert

    from knowcast.store.models import Segment, SegmentMember

    with e.begin() as conn:
        conn.execute(insert(Segment), [{"id": "students", "name": "students"}])
        conn.execute(insert(SegmentMember), [{"segment_id": "students", "user_id": "cn_new"}])
    svc.create_experiment(e, {"key": "newcn", "variants": {"a": 1, "b": 1}, "decision_metric": "conversion",
                              "eligibility": {"country": ["CN"], "new_user": True}}, "ana")
    svc.create_experiment(e, {"key": "seg", "variants": {"a": 1, "b": 1}, "decision_metric": "conversion",
                              "eligibility": {"segment": "students", "channel": {"in": ["feed", "search"]}}},
                          "ana")
    for k in ("newcn", "seg"):
        svc.start_experiment(e, k, "ana")
    reason = {u: svc.assign(e, "newcn", u).reason for u in ("cn_old", "cn_new", "us_new", "stranger")}
    assert reason == {"cn_old": "not_eligible", "cn_new": "assigned", "us_new": "not_eligible",
                      "stranger": "not_eligible"}
    # attributes sent with the request win over stored ones (a returning user seen from another country)
    assert svc.assign(e, "newcn", "us_new", {"country": "CN"}).reason == "assigned"
    assert svc.assign(e, "seg", "cn_new", {"channel": "feed"}).reason == "assigned"
    assert svc.assign(e, "seg", "cn_new", {"channel": "push"}).reason == "not_eligible"
    assert svc.assign(e, "seg", "cn_old", {"channel": "feed"}).reason == "not_eligible"


def test_cached_assignment_sees_changes_and_is_fast(store) -> None:
    e = store.engine
    svc.create_experiment(e, SPEC_YAML, "ana")
    assert svc.assign(e, "cover_v2", "u1").reason == "not_running"  # cached as draft ...
    svc.start_experiment(e, "cover_v2", "ana")  # ... and invalidated by the change
    svc.ramp_experiment(e, "cover_v2", 1.0, "ana")
    assert svc.assign(e, "cover_v2", "u1").reason == "assigned"
    times = []
    for i in range(10_000):
        t = time.perf_counter()
        svc.assign(e, "cover_v2", f"user-{i}")
        times.append(time.perf_counter() - t)
    assert statistics.median(times) < 1e-3, f"median {statistics.median(times) * 1e6:.0f} us"


def test_log_exposure_writes_one_event_and_first_exposure(store) -> None:
    from sqlalchemy import select

    from knowcast.store.models import Event, Exposure

    e = store.engine
    svc.create_experiment(e, SPEC_YAML, "ana", now=1_600_000_000_000)
    svc.start_experiment(e, "cover_v2", "ana", now=1_600_000_000_000)
    svc.ramp_experiment(e, "cover_v2", 1.0, "ana")
    # before the start the experiment is not running for anybody
    assert svc.assign(e, "cover_v2", "u1", now=1_500_000_000_000).reason == "not_running"
    a = svc.assign(e, "cover_v2", "u1", {"channel": "feed", "device": "ios"}, now=1_700_000_000_000, log=True)
    assert a.variant is not None
    assert svc.log_exposure(e, "cover_v2", "u1", a.variant, ts=1_700_000_500_000) is False  # same event id
    with pytest.raises(svc.SpecError, match="variant"):
        svc.log_exposure(e, "cover_v2", "u1", "purple")
    with e.connect() as c:
        ev = c.execute(select(Event.type, Event.ts, Event.experiment, Event.variant, Event.channel,
                              Event.device)).all()
        ex = c.execute(select(Exposure.user_id, Exposure.variant, Exposure.first_ts)).all()
    assert ev == [("exposure", 1_700_000_000_000, "cover_v2", a.variant, "feed", "ios")]
    assert ex == [("u1", a.variant, 1_700_000_000_000)]
