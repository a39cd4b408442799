"""Event metrics (exposure-anchored windows), the report's recommendation logic and its figure."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from knowcast.domain import EVENT_COLUMNS
from knowcast.experiments.metrics import (
    DAY_MS,
    HOUR_MS,
    compute_metric,
    conversion,
    first_exposures,
    metric_values,
    refund_rate,
    retention,
    revenue_per_session,
    revenue_per_user,
    watch_time,
)
from knowcast.experiments.report import build_report, format_table
from knowcast.experiments.stats import CupedStats, RatioStats, SampleStats

T0 = 1_700_000_000_000


def ev(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([{c: r.get(c) for c in EVENT_COLUMNS} for r in rows])


def exposure(u: str, v: str, t: int, exp: str = "e1") -> dict:
    return {"type": "exposure", "ts": t, "user_id": u, "experiment": exp, "variant": v}


EVENTS = ev([
    exposure("a", "control", T0), exposure("a", "control", T0 + 5 * HOUR_MS),
    exposure("b", "treatment", T0), exposure("c", "treatment", T0 + HOUR_MS),
    exposure("d", "control", T0), exposure("d", "treatment", T0 + 1),  # in both arms: dropped
    exposure("z", "x", T0, exp="other"),
    # a: bought before exposure (does not count), then within 2 h; a refund later
    {"type": "purchase", "ts": T0 - HOUR_MS, "user_id": "a", "amount": 99.0},
    {"type": "purchase", "ts": T0 + 2 * HOUR_MS, "user_id": "a", "amount": 30.0},
    {"type": "refund", "ts": T0 + 30 * HOUR_MS, "user_id": "a", "amount": 30.0},
    # b: buys after 100 h (outside a 72 h window), watches on day 1 and day 7
    {"type": "purchase", "ts": T0 + 100 * HOUR_MS, "user_id": "b", "amount": 50.0},
    {"type": "view", "ts": T0 + DAY_MS + 60_000, "user_id": "b", "watch_seconds": 120.0},
    {"type": "view", "ts": T0 + 7 * DAY_MS + 60_000, "user_id": "b", "watch_seconds": 30.0},
    {"type": "view", "ts": T0 + 7 * DAY_MS + 120_000, "user_id": "b", "watch_seconds": 10.0},
    # c: watched before exposure only
    {"type": "view", "ts": T0 - DAY_MS, "user_id": "c", "watch_seconds": 500.0},
])


def test_first_exposure_and_windows() -> None:
    ex = first_exposures(EVENTS, "e1")
    assert sorted(ex["user_id"]) == ["a", "b", "c"] and ex.attrs["multi_variant_users"] == 1
    assert ex.set_index("user_id").loc["a", "exposure_ts"] == T0
    val = dict(zip(ex["user_id"], metric_values(EVENTS, ex, conversion(72)), strict=True))
    assert val == {"a": 1.0, "b": 0.0, "c": 0.0}
    rev = dict(zip(ex["user_id"], metric_values(EVENTS, ex, revenue_per_user()), strict=True))
    assert rev == {"a": 0.0, "b": 50.0, "c": 0.0}  # a's 99 was before exposure; 30 refunded
    wt = dict(zip(ex["user_id"], metric_values(EVENTS, ex, watch_time()), strict=True))
    assert wt == {"a": 0.0, "b": 160.0, "c": 0.0}
    d1 = dict(zip(ex["user_id"], metric_values(EVENTS, ex, retention(1)), strict=True))
    d7 = dict(zip(ex["user_id"], metric_values(EVENTS, ex, retention(7)), strict=True))
    assert d1 == {"a": 1.0, "b": 1.0, "c": 0.0} and d7 == {"a": 0.0, "b": 1.0, "c": 0.0}
    pre = dict(zip(ex["user_id"], metric_values(EVENTS, ex, watch_time(), pre_days=7), strict=True))
    assert pre == {"a": 0.0, "b": 0.0, "c": 500.0}


def test_compute_metric_kinds() -> None:
    ex = first_exposures(EVENTS, "e1")
    conv = compute_metric(EVENTS, ex, conversion(72))
    assert conv["control"] == SampleStats.proportion(1, 1)
    assert conv["treatment"] == SampleStats.proportion(2, 0)
    rr = compute_metric(EVENTS, ex, refund_rate())
    assert isinstance(rr["control"], RatioStats) and rr["control"].mean == 1.0
    rps = compute_metric(EVENTS, ex, revenue_per_session())
    # b: 3 sessions (day-1 view, the purchase at 100 h, two day-7 views 1 min apart); c: none
    assert rps["treatment"].mean == pytest.approx(50.0 / 3)
    cu = compute_metric(EVENTS, ex, watch_time(), cuped_days=7)
    assert isinstance(cu["treatment"], CupedStats) and cu["treatment"].pre.sum == 500.0


def test_metric_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match="missing column"):
        first_exposures(pd.DataFrame({"type": []}), "e1")
    bad = ev([exposure("a", None, T0)])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="row 0"):
        first_exposures(bad, "e1")


def _arms(rates: list[float], n: int) -> dict[str, SampleStats]:
    return {f"v{i}": SampleStats.proportion(n, round(r * n)) for i, r in enumerate(rates)}


def test_report_ship_keep_stop() -> None:
    variants, w = ["v0", "v1"], [0.5, 0.5]
    win = build_report("e", variants, w, {"conv": _arms([0.10, 0.12], 20_000)}, "conv")
    assert win["recommendation"]["action"] == "ship" and win["recommendation"]["variant"] == "v1"
    assert "Ship v1" in win["verdict"]
    json.dumps(win)  # JSON-ready
    early = build_report("e", variants, w, {"conv": _arms([0.10, 0.103], 2_000)}, "conv", daily_units=1000,
                         mde=0.2)
    rec = early["recommendation"]
    assert rec["action"] == "keep_running" and rec["days_left"] > 0
    assert rec["days_left"] == pytest.approx((rec["required_per_variant"] - 2000) / 500)
    lose = build_report("e", variants, w, {"conv": _arms([0.12, 0.10], 20_000)}, "conv")
    assert lose["recommendation"]["action"] == "stop" and lose["recommendation"]["variant"] == "v0"
    srm = build_report("e", variants, w, {"conv": {"v0": SampleStats.proportion(10_000, 1000),
                                                    "v1": SampleStats.proportion(10_600, 1300)}}, "conv")
    assert srm["srm"]["flag"] and srm["recommendation"]["action"] == "stop"


def test_report_guardrail_blocks_ship_and_bayesian_engine() -> None:
    metrics = {"conv": _arms([0.10, 0.12], 20_000),
               "refund_rate": {"v0": SampleStats.proportion(20_000, 200),
                               "v1": SampleStats.proportion(20_000, 400)}}
    r = build_report("e", ["v0", "v1"], [1, 1], metrics, "conv", ["refund_rate"],
                     higher_is_better={"refund_rate": False}, engine="bayesian")
    assert r["guardrails"] == [{"metric": "refund_rate", "variant": "v1", "status": "failing"}]
    assert r["recommendation"]["action"] == "keep_running" and "guardrail" in r["recommendation"]["reason"]
    row = r["metrics"][0]["rows"][1]
    assert row["ci"] == row["credible_interval"] and row["chance_to_win"] > 0.99


def test_report_three_arms_cuped_and_figure() -> None:
    rng = np.random.default_rng(0)
    stats = {}
    for i, lift in enumerate([0.0, 0.2, 0.0]):
        pre = rng.gamma(2, 5, 3000)
        post = 0.9 * pre + rng.normal(0, 3, 3000) + lift
        stats[f"v{i}"] = CupedStats.from_values(post, pre)
    r = build_report("e3", ["v0", "v1", "v2"], [1, 1, 1], {"watch": stats}, "watch")
    rows = r["metrics"][0]["rows"]
    assert all("p_value_adjusted" in x for x in rows[1:])
    assert rows[1]["cuped"]["variance_reduction"] > 0.5
    assert rows[1]["cuped"]["ci"][1] - rows[1]["cuped"]["ci"][0] < rows[1]["ci"][1] - rows[1]["ci"][0]
    fig = r["figure"]
    assert fig["data"][0]["y"] == ["watch · v1", "watch · v2"]
    assert len(fig["data"][0]["error_x"]["array"]) == 2
    assert "v1" in format_table(r)
