"""Results read from the store with SQL equal the metrics computed directly from the same events in pandas."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from knowcast.domain import EVENT_COLUMNS
from knowcast.experiments import service as svc
from knowcast.experiments.metrics import compute_metric, daily_exposures, first_exposures, metric_by_name
from knowcast.experiments.report import build_report
from knowcast.ingest.service import import_records

T0 = 1_600_000_000_000
H = 3_600_000
D = 24 * H
KEY = "price_tag"
METRICS = ["conversion", "refund_rate", "revenue_per_user", "watch_time", "retention_d1", "retention_d7",
           "revenue_per_session"]


def synthetic_events(n_users: int = 600, seed: int = 3) -> pd.DataFrame:
    """Exposures (with re-exposures and a few users in both arms), purchases, refunds, views, activity
    before and after exposure, other experiments' exposures and users never exposed."""
    rng = np.random.default_rng(seed)
    rows: list[dict] = []

    def ev(kind: str, ts: int, user: str, **kw) -> None:
        rows.append({"event_id": f"e{len(rows)}", "type": kind, "ts": int(ts), "user_id": user, **kw})

    for i in range(n_users):
        u = f"u{i}"
        variant = "treatment" if rng.random() < 0.5 else "control"
        t = T0 + int(rng.integers(0, 10 * D))
        exposed = i % 10 != 9  # one user in ten never sees the experiment
        if exposed:
            ev("exposure", t, u, experiment=KEY, variant=variant)
            if rng.random() < 0.3:
                ev("exposure", t + int(rng.integers(1, 3 * D)), u, experiment=KEY, variant=variant)
            if i % 97 == 0:
                other = "control" if variant == "treatment" else "treatment"
                ev("exposure", t + H, u, experiment=KEY, variant=other)
        if rng.random() < 0.4:
            ev("exposure", t - D, u, experiment="other_test", variant="a")
        lift = 1.5 if variant == "treatment" else 1.0
        # before exposure: counts only as the CUPED covariate (within 14 days) or not at all
        for _ in range(int(rng.poisson(1.0))):
            amount, secs = float(rng.integers(9, 199)), float(rng.integers(5, 600))
            ev("purchase", t - int(rng.integers(1, 20 * D)), u, item_id="c1", amount=amount)
            ev("view", t - int(rng.integers(1, 20 * D)), u, item_id="v1", watch_seconds=secs)
        if rng.random() < 0.25 * lift:  # purchase within or after the 72 h window
            ts = t + int(rng.integers(0, 5 * D))
            amount = float(rng.integers(9, 199))
            ev("purchase", ts, u, item_id="c1", amount=amount)
            if rng.random() < 0.2:
                ev("refund", ts + 2 * H, u, item_id="c1", amount=amount)
        if rng.random() < 0.1:
            ev("tip", t + int(rng.integers(0, 3 * D)), u, amount=5.0)
        for _ in range(int(rng.poisson(3 * lift))):
            secs = float(rng.integers(5, 900))
            ev("view", t + int(rng.integers(0, 9 * D)), u, item_id="v1", watch_seconds=secs)
        if rng.random() < 0.45:
            ev("like", t + D + int(rng.integers(0, D)), u, item_id="v1")
        if rng.random() < 0.2 * lift:
            ev("click", t + 7 * D + int(rng.integers(0, D)), u, item_id="c1")
    frame = pd.DataFrame(rows)
    for c in EVENT_COLUMNS:
        if c not in frame:
            frame[c] = None
    return frame[list(EVENT_COLUMNS)]


def assert_close(a, b, path: str = "") -> None:
    """Nested equality with floats compared to 1e-9 (relative)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{path}: keys {set(a) ^ set(b)}"
        for k in a:
            assert_close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        if a is None or b is None or (isinstance(b, float) and math.isnan(b)):
            assert a is None or b is None or math.isnan(b), f"{path}: {a} vs {b}"
        else:
            assert a == pytest.approx(b, rel=1e-9, abs=1e-12), f"{path}: {a} vs {b}"
    else:
        assert a == b, f"{path}: {a!r} vs {b!r}"


@pytest.fixture
def loaded(store):  # type: ignore[no-untyped-def]
    events = synthetic_events()
    rep = import_records(store.engine, "events", events, create_missing=True)
    assert rep.rows_written == len(events)
    svc.create_experiment(store.engine, {"key": KEY, "variants": {"control": 1, "treatment": 1},
                                         "decision_metric": "conversion", "guardrails": METRICS[1:]}, "ana")
    return store, events


def test_results_from_store_equal_pandas_on_the_same_events(loaded) -> None:
    store, events = loaded
    got = svc.results(store.engine, KEY, cuped_days=14, mde=0.1)
    # the same analysis straight from the events in pandas
    ex = first_exposures(events, KEY)
    stats = {m: compute_metric(events, ex, metric_by_name(m),
                               cuped_days=None if metric_by_name(m).kind == "ratio" else 14) for m in METRICS}
    want = build_report(KEY, ["control", "treatment"], [1.0, 1.0], stats, "conversion", METRICS[1:],
                        higher_is_better={m: metric_by_name(m).higher_is_better for m in METRICS},
                        mde=0.1, daily_units=daily_exposures(ex),
                        descriptions={m: metric_by_name(m).description for m in METRICS})
    assert got["multi_variant_users"] == ex.attrs["multi_variant_users"] == 7
    assert got["exposed_users"] == len(ex)
    for k in ("metrics", "srm", "guardrails", "recommendation", "verdict", "variants"):
        assert_close(got[k], want[k], k)
    # CUPED used the pre-period: it reduces variance on revenue and watch time
    rows = {m["name"]: m["rows"][1] for m in got["metrics"]}
    assert rows["watch_time"]["cuped"]["theta"] != 0.0
    assert rows["refund_rate"]["cuped"] is None  # ratio metric: delta method, no CUPED


def test_results_match_plain_pandas_definitions(loaded) -> None:
    """Independent of metrics.py: conversion in 72 h, revenue per user and retention from raw pandas."""
    store, events = loaded
    got = svc.results(store.engine, KEY, cuped_days=0)
    ex = events[(events["type"] == "exposure") & (events["experiment"] == KEY)]
    nvar = ex.groupby("user_id")["variant"].nunique()
    ex = ex[ex["user_id"].isin(nvar.index[nvar == 1])]
    first = ex.groupby("user_id").agg(variant=("variant", "first"), t0=("ts", "min"))
    ev = events[events["type"] != "exposure"].merge(first, left_on="user_id", right_index=True)
    rel = ev["ts"] - ev["t0"]
    buy72 = set(ev.loc[(ev["type"] == "purchase") & (rel >= 0) & (rel < 72 * H), "user_id"])
    sign = np.where(ev["type"] == "refund", -1.0, 1.0)
    money = ev["type"].isin(["purchase", "subscribe", "tip", "refund"]) & (rel >= 0)
    revenue = (ev["amount"].astype(float).fillna(0) * sign)[money].groupby(ev.loc[money, "user_id"]).sum()
    d7 = set(ev.loc[(rel >= 7 * D) & (rel < 8 * D), "user_id"])
    rows = {m["name"]: m["rows"] for m in got["metrics"]}
    for i, v in enumerate(["control", "treatment"]):
        users = first.index[first["variant"] == v]
        assert rows["conversion"][i]["n"] == len(users)
        assert rows["conversion"][i]["mean"] == pytest.approx(np.mean([u in buy72 for u in users]))
        assert rows["revenue_per_user"][i]["mean"] == pytest.approx(revenue.reindex(users).fillna(0).mean())
        assert rows["retention_d7"][i]["mean"] == pytest.approx(np.mean([u in d7 for u in users]))
    assert rows["conversion"][1]["cuped"] is None


def test_report_csv_and_empty_experiment(loaded) -> None:
    store, _ = loaded
    rep = svc.results(store.engine, KEY)
    lines = svc.report_csv(rep).splitlines()
    assert lines[0].startswith("experiment,metric,role,variant,n,mean,effect,ci_low")
    assert len(lines) == 1 + 2 * len(METRICS)
    svc.create_experiment(store.engine, {"key": "empty", "variants": {"a": 1, "b": 1},
                                         "decision_metric": "conversion"}, "ana")
    empty = svc.results(store.engine, "empty")
    assert empty["exposed_users"] == 0 and empty["recommendation"]["action"] == "keep_running"
    with pytest.raises(svc.NotFound):
        svc.results(store.engine, "nope")
    with pytest.raises(svc.SpecError) as info:
        svc.results(store.engine, KEY, engine_name="magic")
    assert info.value.field == "engine"
