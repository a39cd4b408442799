"""The real A/B logs end to end through knowcast, pinned against scipy/statsmodels computed here."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st
from statsmodels.stats.proportion import confint_proportions_2indep
from statsmodels.stats.proportion import test_proportions_2indep as sm_test_2indep

from knowcast.domain import EVENT_COLUMNS
from knowcast.experiments.real_logs import analyze, load
from knowcast.paths import shared_data_dir


def _dir():
    base = shared_data_dir()
    path = None if base is None else base / "experiments"
    if path is None or not path.is_dir():
        pytest.skip("shared/data/experiments is not available")
    return path


def _check_against_statsmodels(report: dict, metric: str, x: np.ndarray, y: np.ndarray) -> None:
    """Report row for ``metric`` against Wald two-proportion test/CI and Welch's t from scipy."""
    m = next(m for m in report["metrics"] if m["name"] == metric)
    row = m["rows"][1]
    c1, n1, c0, n0 = y.sum(), y.size, x.sum(), x.size
    ref = sm_test_2indep(c1, n1, c0, n0, method="wald")
    lo, hi = confint_proportions_2indep(c1, n1, c0, n0, method="wald")
    assert abs(row["effect"] - (y.mean() - x.mean())) < 1e-12
    assert abs(row["p_value"] - ref.pvalue) < 1e-4
    assert abs(row["ci"][0] - lo) < 1e-5 and abs(row["ci"][1] - hi) < 1e-5
    # Welch's t on the 0/1 values differs only by n vs n-1 in the variance
    assert abs(row["p_value"] - st.ttest_ind(y, x, equal_var=False).pvalue) < 1e-3
    assert abs(row["chance_to_win"] - st.norm.sf(0, row["effect"], (hi - lo) / 2 / 1.959964)) < 1e-3


def test_udacity_end_to_end() -> None:
    d = _dir()
    raw = pd.read_csv(d / "udacity_ab_data.csv.gz")
    # the cleaning the dataset needs, done independently here
    ok = raw[(raw["group"] == "treatment") == (raw["landing_page"] == "new_page")]
    ok = ok.drop_duplicates("user_id")
    x = ok.loc[ok["group"] == "control", "converted"].to_numpy()
    y = ok.loc[ok["group"] == "treatment", "converted"].to_numpy()

    log = load("udacity", d)
    assert log.cleaning == {"rows": 294_478, "group_page_mismatch": 3_893, "duplicate_users": 1,
                            "users": 290_584}
    assert list(log.events.columns) == list(EVENT_COLUMNS)
    assert log.users["attributes"].map(lambda a: a.get("country")).notna().sum() == 290_584
    rep = analyze(log, relative=False)
    _check_against_statsmodels(rep, "conversion", x, y)
    assert rep["variants"][0]["n"] == 145_274 and rep["variants"][1]["n"] == 145_310
    assert not rep["srm"]["flag"]
    assert abs(rep["srm"]["p_value"] - st.chisquare([145_274, 145_310]).pvalue) < 1e-12
    rel = analyze(log)["metrics"][0]["rows"][1]
    assert abs(rel["effect"] - (y.mean() / x.mean() - 1)) < 1e-12
    assert rel["p_value"] > 0.05 and rel["chance_to_win"] < 0.2  # the new page does not win
    assert analyze(log)["recommendation"]["action"] != "ship"


def test_cookie_cats_end_to_end() -> None:
    d = _dir()
    raw = pd.read_csv(d / "cookie_cats.csv")
    log = load("cookie_cats", d)
    rep = analyze(log, relative=False)
    for metric, col in (("retention_d1", "retention_1"), ("retention_d7", "retention_7")):
        flag = raw[col].astype(str).str.upper().eq("TRUE").astype(int)
        x = flag[raw["version"] == "gate_30"].to_numpy()
        y = flag[raw["version"] == "gate_40"].to_numpy()
        _check_against_statsmodels(rep, metric, x, y)
    assert rep["variants"][0]["n"] == 44_700 and rep["variants"][1]["n"] == 45_489
    assert abs(rep["srm"]["p_value"] - st.chisquare([44_700, 45_489]).pvalue) < 1e-12
    d7 = next(m for m in rep["metrics"] if m["name"] == "retention_d7")["rows"][1]
    assert d7["p_value"] < 0.01 and d7["effect"] < 0  # moving the gate to 40 lowers 7-day retention
    assert rep["recommendation"] == {"action": "stop", "variant": "gate_30", "days_left": 0.0,
                                     "reason": rep["recommendation"]["reason"]}
    assert "gate_30" in rep["verdict"]
