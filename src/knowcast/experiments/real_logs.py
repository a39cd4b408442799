"""Real public A/B logs (../shared/data/experiments) turned into knowcast users and events.

Each converter is a pure function from the raw table to ``(users, events)`` DataFrames with the
``knowcast.domain`` columns, so the store's importer can load them and the same metric and report code
that serves live experiments analyses them. ``load_*`` read the shared files; ``analyze`` runs the whole
path: events -> first exposures -> metrics -> report.

* **udacity**: an e-commerce landing-page test (old_page vs new_page), 294,478 rows. Cleaning: drop the
  rows whose ``group`` and ``landing_page`` disagree (control must see old_page, treatment new_page), then
  keep the first row of each duplicated ``user_id``. Conversion is a ``purchase`` event 1 s after the
  exposure (the log has no purchase time or amount; amount 0).
* **cookie_cats**: a mobile game moving its first gate from level 30 to 40, 90,189 installs. The log has
  no timestamps: exposures are placed one second apart from 2014-01-01 UTC (a documented stand-in), and
  ``retention_1``/``retention_7`` become a ``view`` event 1 h into day 1 resp. day 7 after exposure, so the
  standard ``retention_d1``/``retention_d7`` metrics recover exactly the flags of the file.
* the fast-food promotion test (three arms) named in the issue is not in the shared data folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from knowcast.domain import EVENT_COLUMNS, USER_COLUMNS, EventType
from knowcast.experiments.metrics import (
    MetricDef,
    compute_metric,
    conversion,
    daily_exposures,
    first_exposures,
    retention,
)
from knowcast.experiments.report import build_report

__all__ = ["RealLog", "udacity_to_knowcast", "cookie_cats_to_knowcast", "load", "analyze", "DATASETS"]

_COOKIE_BASE_MS = int(pd.Timestamp("2014-01-01", tz="UTC").value // 1_000_000)


@dataclass
class RealLog:
    """One real experiment as knowcast data plus how to analyse it."""

    name: str
    experiment: str
    variants: list[str]
    weights: list[float]
    users: pd.DataFrame
    events: pd.DataFrame
    decision_metric: str
    metrics: dict[str, MetricDef]
    guardrails: list[str] = field(default_factory=list)
    cleaning: dict[str, int] = field(default_factory=dict)


def _events_frame(cols: dict[str, Any], n: int) -> pd.DataFrame:
    data = {c: cols.get(c, pd.Series([None] * n, dtype=object)) for c in EVENT_COLUMNS}
    return pd.DataFrame(data)


def _require(df: pd.DataFrame, cols: tuple[str, ...], what: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"{what}: missing column(s) {missing}")


def udacity_to_knowcast(raw: pd.DataFrame, countries: pd.DataFrame | None = None
                        ) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, int]]:
    """Clean the Udacity log and return ``(users, events, cleaning counts)``."""
    _require(raw, ("user_id", "timestamp", "group", "landing_page", "converted"), "udacity log")
    n0 = len(raw)
    aligned = (raw["group"] == "treatment") == (raw["landing_page"] == "new_page")
    df = raw.loc[aligned]
    dup = df["user_id"].duplicated(keep="first")
    df = df.loc[~dup].reset_index(drop=True)
    # epoch ms whatever resolution pandas parses to (pandas 3 parses these strings at microseconds)
    ts = pd.to_datetime(df["timestamp"], utc=True).dt.as_unit("ms").astype("int64").to_numpy()
    uid = "udacity:" + df["user_id"].astype(str)
    n = len(df)
    exp = _events_frame({
        "event_id": uid + ":exposure", "type": pd.Series([EventType.EXPOSURE.value] * n),
        "ts": pd.Series(ts), "user_id": uid, "experiment": pd.Series(["udacity_landing_page"] * n),
        "variant": df["group"].astype(str), "source": df["landing_page"].astype(str),
    }, n)
    conv = df["converted"].astype(int).to_numpy() == 1
    m = int(conv.sum())
    buy = _events_frame({
        "event_id": (uid[conv] + ":purchase").reset_index(drop=True),
        "type": pd.Series([EventType.PURCHASE.value] * m), "ts": pd.Series(ts[conv] + 1000),
        "user_id": uid[conv].reset_index(drop=True), "item_id": pd.Series(["udacity:course"] * m),
        "amount": pd.Series(np.zeros(m)), "currency": pd.Series(["USD"] * m),
    }, m)
    events = pd.concat([exp, buy], ignore_index=True)
    attrs: list[dict[str, Any]] = [{} for _ in range(n)]
    if countries is not None:
        _require(countries, ("user_id", "country"), "udacity countries")
        cmap = countries.drop_duplicates("user_id").set_index("user_id")["country"]
        for i, c in enumerate(df["user_id"].map(cmap).to_numpy()):
            if isinstance(c, str):
                attrs[i] = {"country": c}
    users = pd.DataFrame({"user_id": uid, "created_at": ts, "attributes": attrs})[list(USER_COLUMNS)]
    cleaning = {"rows": n0, "group_page_mismatch": int((~aligned).sum()), "duplicate_users": int(dup.sum()),
                "users": n}
    return users, events, cleaning


def cookie_cats_to_knowcast(raw: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, int]]:
    """Cookie Cats installs to ``(users, events, counts)`` with retention activity events."""
    _require(raw, ("userid", "version", "sum_gamerounds", "retention_1", "retention_7"), "cookie cats log")
    if raw["userid"].duplicated().any():
        raise ValueError("cookie cats log: duplicated userid")
    n = len(raw)
    uid = "cookie_cats:" + raw["userid"].astype(str).reset_index(drop=True)
    ts = _COOKIE_BASE_MS + np.arange(n, dtype="int64") * 1000
    frames = [_events_frame({
        "event_id": uid + ":exposure", "type": pd.Series([EventType.EXPOSURE.value] * n), "ts": pd.Series(ts),
        "user_id": uid, "experiment": pd.Series(["cookie_cats_gate"] * n),
        "variant": raw["version"].astype(str).reset_index(drop=True),
    }, n)]
    for day, col in ((1, "retention_1"), (7, "retention_7")):
        flag = raw[col].astype(str).str.upper().eq("TRUE").to_numpy()
        k = int(flag.sum())
        frames.append(_events_frame({
            "event_id": (uid[flag] + f":d{day}").reset_index(drop=True),
            "type": pd.Series([EventType.VIEW.value] * k),
            "ts": pd.Series(ts[flag] + day * 86_400_000 + 3_600_000),
            "user_id": uid[flag].reset_index(drop=True), "item_id": pd.Series(["cookie_cats:game"] * k),
        }, k))
    events = pd.concat(frames, ignore_index=True)
    attrs = [{"sum_gamerounds": int(g)} for g in raw["sum_gamerounds"].to_numpy()]
    users = pd.DataFrame({"user_id": uid, "created_at": ts, "attributes": attrs})[list(USER_COLUMNS)]
    return users, events, {"rows": n, "users": n}


def load(name: str, data_dir: Path | None = None) -> RealLog:
    """Read one dataset from ``shared/data/experiments`` (or ``data_dir``) and convert it."""
    if data_dir is None:
        from knowcast.paths import shared_data

        data_dir = shared_data("experiments")
    if name == "udacity":
        raw = pd.read_csv(data_dir / "udacity_ab_data.csv.gz")
        cpath = data_dir / "udacity_countries.csv"
        countries = pd.read_csv(cpath) if cpath.exists() else None
        users, events, cleaning = udacity_to_knowcast(raw, countries)
        return RealLog("udacity", "udacity_landing_page", ["control", "treatment"], [0.5, 0.5], users,
                       events, "conversion", {"conversion": conversion(window_hours=None)}, cleaning=cleaning)
    if name == "cookie_cats":
        users, events, counts = cookie_cats_to_knowcast(pd.read_csv(data_dir / "cookie_cats.csv"))
        return RealLog("cookie_cats", "cookie_cats_gate", ["gate_30", "gate_40"], [0.5, 0.5], users, events,
                       "retention_d7", {"retention_d1": retention(1), "retention_d7": retention(7)},
                       guardrails=["retention_d1"], cleaning=counts)
    raise ValueError(f"unknown dataset {name!r}; known: {sorted(DATASETS)}")


DATASETS: dict[str, str] = {
    "udacity": "Udacity landing-page test (old vs new page), conversion",
    "cookie_cats": "Cookie Cats gate_30 vs gate_40, retention day 1 and day 7",
}


def analyze(name: str | RealLog, engine: str = "frequentist", relative: bool = True,
            data_dir: Path | None = None, mde: float = 0.02) -> dict[str, Any]:
    """End to end: events -> first exposures -> metrics -> report (with the cleaning counts)."""
    log = name if isinstance(name, RealLog) else load(name, data_dir)
    exposures = first_exposures(log.events, log.experiment)
    stats = {k: compute_metric(log.events, exposures, m) for k, m in log.metrics.items()}
    # the landing-page log spans 22 days; Cookie Cats has no real time, so no duration estimate there
    daily = daily_exposures(exposures) if log.name == "udacity" else None
    report = build_report(
        log.experiment, log.variants, log.weights, stats, log.decision_metric, log.guardrails,
        higher_is_better={k: m.higher_is_better for k, m in log.metrics.items()},
        engine=engine,  # type: ignore[arg-type]
        relative=relative, mde=mde, daily_units=daily,
        descriptions={k: m.description for k, m in log.metrics.items()},
    )
    report["dataset"] = log.name
    report["cleaning"] = log.cleaning
    report["multi_variant_users"] = exposures.attrs.get("multi_variant_users", 0)
    return report
