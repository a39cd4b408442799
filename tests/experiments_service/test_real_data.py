"""The real A/B logs end to end through the store (ingest -> exposures -> SQL -> metrics -> report),
pinned against statsmodels/scipy computed here from the raw files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st
from statsmodels.stats.proportion import confint_proportions_2indep
from statsmodels.stats.proportion import test_proportions_2indep as sm_test_2indep

from knowcast.experiments import service as svc
from knowcast.paths import shared_data_dir


def _dir():  # type: ignore[no-untyped-def]
    base = shared_data_dir()
    path = None if base is None else base / "experiments"
    files = ("cookie_cats.csv", "udacity_ab_data.csv.gz")
    if path is None or not all((path / f).exists() for f in files):
        pytest.skip(f"shared/data/experiments ({', '.join(files)}) is not available")
    return path


def _pin(report: dict, metric: str, x: np.ndarray, y: np.ndarray) -> None:
    """Absolute effect, Wald CI and p-value (statsmodels), Welch p (scipy), chance to win (normal)."""
    m = next(m for m in report["metrics"] if m["name"] == metric)
    ctrl, row = m["rows"][0], m["rows"][1]
    assert ctrl["n"] == x.size and row["n"] == y.size
    assert ctrl["mean"] == pytest.approx(x.mean(), abs=1e-12)
    assert row["mean"] == pytest.approx(y.mean(), abs=1e-12)
    c1, n1, c0, n0 = int(y.sum()), y.size, int(x.sum()), x.size
    ref = sm_test_2indep(c1, n1, c0, n0, method="wald")
    lo, hi = confint_proportions_2indep(c1, n1, c0, n0, method="wald")
    assert row["effect"] == pytest.approx(y.mean() - x.mean(), abs=1e-12)
    assert row["p_value"] == pytest.approx(ref.pvalue, abs=1e-4)
    assert row["ci"][0] == pytest.approx(lo, abs=1e-5) and row["ci"][1] == pytest.approx(hi, abs=1e-5)
    assert row["p_value"] == pytest.approx(st.ttest_ind(y, x, equal_var=False).pvalue, abs=1e-3)
    se = (hi - lo) / 2 / st.norm.ppf(0.975)
    assert row["chance_to_win"] == pytest.approx(st.norm.sf(0, row["effect"], se), abs=1e-3)


def _udacity_clean(raw: pd.DataFrame) -> pd.DataFrame:
    ok = raw[(raw["group"] == "treatment") == (raw["landing_page"] == "new_page")]
    return ok.drop_duplicates("user_id")


def test_cookie_cats_through_the_store(sqlite_store) -> None:
    d = _dir()
    raw = pd.read_csv(d / "cookie_cats.csv")
    e = sqlite_store.engine
    rep = svc.analyze_real(e, "cookie_cats", relative=False, cuped_days=0)
    assert rep["imported_now"] and rep["state"] == "stopped"
    for metric, col in (("retention_d1", "retention_1"), ("retention_d7", "retention_7")):
        flag = raw[col].astype(str).str.upper().eq("TRUE").astype(int)
        x = flag[raw["version"] == "gate_30"].to_numpy()
        y = flag[raw["version"] == "gate_40"].to_numpy()
        _pin(rep, metric, x, y)
    counts = raw["version"].value_counts()
    assert rep["srm"]["counts"] == {"gate_30": counts["gate_30"], "gate_40": counts["gate_40"]}
    assert rep["srm"]["counts"] == {"gate_30": 44_700, "gate_40": 45_489}
    assert rep["srm"]["p_value"] == pytest.approx(st.chisquare([44_700, 45_489]).pvalue, abs=1e-12)
    assert not rep["srm"]["flag"]
    assert rep["recommendation"]["action"] == "stop" and rep["recommendation"]["variant"] == "gate_30"
    assert "gate_30" in rep["verdict"] and "no sample-ratio mismatch" in rep["verdict"]
    # second run: nothing re-imported, the same numbers, relative effects by default with CUPED attached
    again = svc.analyze_real(e, "cookie_cats")
    assert not again["imported_now"]
    d7 = next(m for m in again["metrics"] if m["name"] == "retention_d7")["rows"]
    assert d7[1]["effect"] == pytest.approx(d7[1]["mean"] / d7[0]["mean"] - 1, abs=1e-12)
    assert d7[1]["effect"] == pytest.approx(-0.0431, abs=5e-5) and d7[1]["chance_to_win"] < 0.01
    assert d7[1]["cuped"]["effect"] == pytest.approx(d7[1]["effect"])  # no pre-period in this log
    assert [a["action"] for a in svc.audit_trail(e, "cookie_cats_gate")] == ["create", "start", "stop"]


def test_udacity_sample_through_the_store(store, tmp_path) -> None:
    """The first 12,000 rows of the Udacity log, through the same import path (fast; both backends)."""
    d = _dir()
    raw = pd.read_csv(d / "udacity_ab_data.csv.gz", nrows=12_000)
    raw.to_csv(tmp_path / "udacity_ab_data.csv.gz", index=False)
    rep = svc.analyze_real(store.engine, "udacity", data_dir=tmp_path, relative=False, cuped_days=0)
    ok = _udacity_clean(raw)
    x = ok.loc[ok["group"] == "control", "converted"].to_numpy()
    y = ok.loc[ok["group"] == "treatment", "converted"].to_numpy()
    _pin(rep, "conversion", x, y)
    assert rep["srm"]["p_value"] == pytest.approx(st.chisquare([x.size, y.size]).pvalue, abs=1e-12)
    assert rep["recommendation"]["action"] != "ship"


@pytest.mark.slow
def test_udacity_full_through_the_store(sqlite_store) -> None:
    d = _dir()
    ok = _udacity_clean(pd.read_csv(d / "udacity_ab_data.csv.gz"))
    x = ok.loc[ok["group"] == "control", "converted"].to_numpy()
    y = ok.loc[ok["group"] == "treatment", "converted"].to_numpy()
    rep = svc.analyze_real(sqlite_store.engine, "udacity", relative=False, cuped_days=0)
    _pin(rep, "conversion", x, y)
    assert [v["n"] for v in rep["variants"]] == [145_274, 145_310]
    rel = svc.results(sqlite_store.engine, "udacity_landing_page", mde=0.02)
    row = rel["metrics"][0]["rows"][1]
    assert row["effect"] == pytest.approx(y.mean() / x.mean() - 1, abs=1e-12)
    assert row["p_value"] > 0.05 and row["chance_to_win"] < 0.2
    assert rel["recommendation"]["action"] == "keep_running" and 15 < rel["recommendation"]["days_left"] < 30
