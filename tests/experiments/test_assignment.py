"""Sticky hashing, weights over 1M ids, ramps that never move users, layers, eligibility, spec life cycle."""

from __future__ import annotations

import time

import numpy as np
import pytest
from scipy import stats as st

from knowcast.experiments.assignment import (
    Layer,
    assign,
    bucket_ranges,
    evaluate_eligibility,
    hash_unit,
    hash_units,
)
from knowcast.experiments.spec import ExperimentSpec

YAML = """
key: cover_image_v2
name: New course cover
layer: course_page
variants:
  - {key: control, weight: 0.5}
  - {key: bold_title, weight: 0.3}
  - {key: face, weight: 0.2}
eligibility:
  channel: [feed, search]
  new_user: true
  country: {not_in: [KP]}
decision_metric: conversion
guardrails: [refund_rate, watch_time]
coverage: 0.1
"""


def test_split_over_one_million_ids_matches_weights() -> None:
    weights = [0.5, 0.3, 0.2]
    ranges = bucket_ranges(weights)
    u = hash_units("exp-salt", range(1_000_000))
    edges = [r[0] for r in ranges] + [1.0]
    counts = np.histogram(u, bins=edges)[0]
    expected = np.array(weights) * 1_000_000
    assert np.all(np.abs(counts - expected) / expected < 0.005)
    assert st.chisquare(counts, expected).pvalue > 0.001  # no sample-ratio mismatch
    assert st.kstest(u[:200_000], "uniform").pvalue > 0.001


def test_assignment_is_deterministic_and_salt_dependent() -> None:
    a = [assign("e", f"u{i}", ["a", "b"], [1, 1]).variant for i in range(200)]
    b = [assign("e", f"u{i}", ["a", "b"], [1, 1]).variant for i in range(200)]
    c = [assign("e", f"u{i}", ["a", "b"], [1, 1], salt="other").variant for i in range(200)]
    assert a == b and a != c
    assert hash_unit("s", 42) == hash_unit("s", "42")


def test_ramp_never_moves_an_assigned_user() -> None:
    users = [f"user{i}" for i in range(20_000)]
    before: dict[str, str] = {}
    for cov in (0.1, 0.5, 1.0):
        now = {}
        for uid in users:
            r = assign("ramp", uid, ["c", "t"], [0.5, 0.5], coverage=cov)
            if r.variant is not None:
                now[uid] = r.variant
        assert all(now[uid] == v for uid, v in before.items())  # nobody moved or dropped out
        assert abs(len(now) / len(users) - cov) < 0.02
        before = now


def test_layers_are_mutually_exclusive() -> None:
    layer = Layer("home_banner")
    layer.allocate("exp_a", 0.5)
    layer.allocate("exp_b", 0.5)
    with pytest.raises(ValueError, match="no free gap"):
        layer.allocate("exp_c", 0.1)
    with pytest.raises(ValueError, match="overlaps"):
        layer.add("exp_d", 0.4, 0.6)
    in_a = in_b = 0
    for i in range(10_000):
        ra = assign("exp_a", i, ["c", "t"], [1, 1], layer=layer)
        rb = assign("exp_b", i, ["c", "t"], [1, 1], layer=layer)
        assert not (ra.variant and rb.variant)
        in_a += ra.variant is not None
        in_b += rb.variant is not None
    assert in_a + in_b == 10_000 and abs(in_a - 5000) < 300


def test_eligibility_rules() -> None:
    rules = {"segment": ["student", "pro"], "new_user": True, "country": {"not_in": ["KP"]},
             "age_days": {"gte": 0, "lt": 7}, "device": {"exists": True}}
    ok = {"segment": "pro", "new_user": True, "country": "CN", "age_days": 3, "device": "ios"}
    assert evaluate_eligibility(rules, ok)
    assert not evaluate_eligibility(rules, {**ok, "segment": "casual"})
    assert not evaluate_eligibility(rules, {**ok, "country": "KP"})
    assert not evaluate_eligibility(rules, {**ok, "age_days": 9})
    assert not evaluate_eligibility(rules, {k: v for k, v in ok.items() if k != "device"})
    assert evaluate_eligibility(rules, {k: v for k, v in ok.items() if k != "country"})
    assert not evaluate_eligibility(rules, {**ok, "age_days": "three"})  # wrong type fails, no crash


def test_spec_from_yaml_life_cycle_and_audit() -> None:
    spec = ExperimentSpec.from_yaml(YAML, actor="ana", ts=1)
    assert spec.control == "control" and spec.weights == [0.5, 0.3, 0.2] and spec.state == "draft"
    assert spec.audit[0].action == "create"
    r = spec.assign("u1", {"channel": "feed", "new_user": True})
    assert r.variant is None and r.reason == "not_running"
    running = spec.start_running("ana", 100)
    assert running.state == "running" and running.start == 100
    with pytest.raises(ValueError, match="cannot change"):
        running.update({"variants": {"a": 1, "b": 1}}, "bob", 150)
    with pytest.raises(ValueError, match="only grow"):
        running.ramp(0.05, "bob", 160)
    ramped = running.ramp(0.5, "bob", 200).update({"guardrails": ["refund_rate"]}, "bob", 210)
    stopped = ramped.stop_running("ana", 300)
    assert stopped.stop == 300
    with pytest.raises(ValueError, match="cannot go from stopped"):
        stopped.start_running("ana", 400)
    actions = [a.action for a in stopped.audit]
    assert actions == ["create", "start", "ramp", "update", "stop"]
    assert stopped.audit[2].changes == {"coverage": [0.1, 0.5]}
    assert stopped.audit[3].actor == "bob"
    again = ExperimentSpec.from_yaml(stopped.to_yaml())
    assert again == stopped


def test_spec_validation_names_the_field() -> None:
    with pytest.raises(ValueError, match="variants"):
        ExperimentSpec.from_dict({"key": "x", "variants": ["only"], "decision_metric": "m"})
    with pytest.raises(ValueError, match=r"variants\[1\].weight"):
        ExperimentSpec.from_dict({"key": "x", "variants": [{"key": "a"}, {"key": "b", "weight": "lots"}],
                                  "decision_metric": "m"})
    with pytest.raises(ValueError, match="decision_metric"):
        ExperimentSpec.from_dict({"key": "x", "variants": ["a", "b"]})
    with pytest.raises(ValueError, match="eligibility.country"):
        ExperimentSpec.from_dict({"key": "x", "variants": ["a", "b"], "decision_metric": "m",
                                  "eligibility": {"country": {"among": ["CN"]}}})
    with pytest.raises(ValueError, match="unknown field"):
        ExperimentSpec.from_dict({"key": "x", "variants": ["a", "b"], "decision_metric": "m", "colour": 1})


def test_assignment_under_a_millisecond() -> None:
    spec = ExperimentSpec.from_yaml(YAML).start_running("a", 1)
    layer = Layer("course_page")
    layer.allocate(spec.key, 1.0)
    attrs = {"channel": "feed", "new_user": True, "country": "CN"}
    n = 5000
    t0 = time.perf_counter()
    for i in range(n):
        spec.assign(f"user{i}", attrs, layer=layer)
    per_call = (time.perf_counter() - t0) / n
    assert per_call < 1e-3, per_call
