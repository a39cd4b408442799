"""Experiment metrics computed from the event log into per-variant sufficient statistics.

Input is an events DataFrame with the ``knowcast.domain.EVENT_COLUMNS`` columns (``ts`` in epoch ms).
Only users with an ``exposure`` event for the experiment count, and each user's events count from their
*first* exposure on: that is what makes the comparison causal (what happened before exposure cannot be
an effect). Users exposed to more than one variant are dropped and counted, as GrowthBook does.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Literal

import pandas as pd

from knowcast.domain import EventType
from knowcast.experiments.stats import CupedStats, RatioStats, SampleStats

__all__ = [
    "MetricDef",
    "first_exposures",
    "metric_values",
    "compute_metric",
    "conversion",
    "revenue_per_user",
    "watch_time",
    "retention",
    "refund_rate",
    "revenue_per_session",
    "STANDARD_METRICS",
    "metric_by_name",
    "ACTIVITY_TYPES",
    "daily_exposures",
]

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
#: Everything a user does except being exposed: "was active" for retention and sessions.
ACTIVITY_TYPES: tuple[str, ...] = tuple(e.value for e in EventType if e != EventType.EXPOSURE)
_NEGATIVE = frozenset({EventType.REFUND.value})


@dataclass(frozen=True)
class MetricDef:
    """What to measure per exposed user.

    ``kind``: ``proportion`` (did it at least once, 0/1), ``mean`` (a per-user total) or ``ratio``
    (``sum(value) / sum(denominator's value)`` over users, delta method). ``value``: ``count`` of events,
    ``amount`` (refunds negative), ``watch_seconds``, or ``sessions`` (bursts of activity 30 minutes
    apart). The window is ``[exposure + start_hours, exposure + end_hours)``; ``end_hours=None`` is open.
    """

    name: str
    kind: Literal["proportion", "mean", "ratio"]
    event_types: tuple[str, ...]
    value: Literal["count", "amount", "watch_seconds", "sessions"] = "count"
    start_hours: float = 0.0
    end_hours: float | None = None
    denominator: MetricDef | None = None
    higher_is_better: bool = True
    description: str = ""

    def __post_init__(self) -> None:
        if self.kind not in ("proportion", "mean", "ratio"):
            raise ValueError(f"metric {self.name!r}: kind must be proportion, mean or ratio")
        if self.value not in ("count", "amount", "watch_seconds", "sessions"):
            raise ValueError(f"metric {self.name!r}: value must be count, amount, watch_seconds or sessions")
        if (self.kind == "ratio") != (self.denominator is not None):
            raise ValueError(f"metric {self.name!r}: a ratio metric needs a denominator (and only a ratio)")
        if self.end_hours is not None and self.end_hours <= self.start_hours:
            raise ValueError(f"metric {self.name!r}: end_hours must be after start_hours")
        if not self.event_types:
            raise ValueError(f"metric {self.name!r}: event_types must not be empty")


# --------------------------------------------------------------------------------------------------
# standard metrics of the issue
# --------------------------------------------------------------------------------------------------


def conversion(window_hours: float | None = 72.0, event_type: str = EventType.PURCHASE) -> MetricDef:
    """Share of exposed users who bought within ``window_hours`` after their first exposure."""
    return MetricDef("conversion", "proportion", (str(event_type),), "count", 0.0, window_hours,
                     description=f"{event_type} within {window_hours} h of exposure")


def revenue_per_user(window_hours: float | None = None) -> MetricDef:
    """Net money per exposed user (purchases, subscriptions, tips, minus refunds)."""
    types = (EventType.PURCHASE, EventType.SUBSCRIBE, EventType.TIP, EventType.REFUND)
    return MetricDef("revenue_per_user", "mean", tuple(str(t) for t in types), "amount", 0.0, window_hours,
                     description="net revenue per exposed user")


def watch_time(window_hours: float | None = None) -> MetricDef:
    return MetricDef("watch_time", "mean", (EventType.VIEW.value,), "watch_seconds", 0.0, window_hours,
                     description="seconds watched per exposed user")


def retention(day: int) -> MetricDef:
    """Active on day ``day`` after exposure: any activity in ``[day*24h, (day+1)*24h)``."""
    if day < 1:
        raise ValueError(f"retention day must be >= 1, got {day}")
    return MetricDef(f"retention_d{day}", "proportion", ACTIVITY_TYPES, "count", 24.0 * day, 24.0 * (day + 1),
                     description=f"active on day {day} after exposure")


def refund_rate(window_hours: float | None = None) -> MetricDef:
    """Refunds per purchase (ratio metric, lower is better: a guardrail)."""
    purchases = MetricDef("purchases", "mean", (EventType.PURCHASE.value,), "count", 0.0, window_hours)
    return MetricDef("refund_rate", "ratio", (EventType.REFUND.value,), "count", 0.0, window_hours,
                     denominator=purchases, higher_is_better=False, description="refunds per purchase")


def revenue_per_session(window_hours: float | None = None) -> MetricDef:
    sessions = MetricDef("sessions", "mean", ACTIVITY_TYPES, "sessions", 0.0, window_hours)
    rev = revenue_per_user(window_hours)
    return MetricDef("revenue_per_session", "ratio", rev.event_types, "amount", 0.0, window_hours,
                     denominator=sessions, description="net revenue per session (delta method)")


STANDARD_METRICS: dict[str, MetricDef] = {
    m.name: m
    for m in (conversion(), revenue_per_user(), watch_time(), retention(1), retention(7), refund_rate(),
              revenue_per_session())
}


_NAMED = re.compile(r"^(conversion|revenue_per_user|watch_time|refund_rate|revenue_per_session)_(\d+)h$")
_RETENTION = re.compile(r"^retention_d(\d+)$")


def metric_by_name(name: str) -> MetricDef:
    """The metric an experiment spec names: a standard one, ``retention_dN`` or ``<metric>_<hours>h``.

    ``conversion_24h`` is a purchase within 24 hours; ``revenue_per_user_168h`` the net revenue of the first
    week. Unknown names raise ValueError listing what is known.
    """
    if not isinstance(name, str):
        raise TypeError(f"metric name must be a string, got {type(name).__name__}")
    if name in STANDARD_METRICS:
        return STANDARD_METRICS[name]
    m = _RETENTION.match(name)
    if m and int(m.group(1)) >= 1:
        return retention(int(m.group(1)))
    m = _NAMED.match(name)
    if m and int(m.group(2)) > 0:
        base = {"conversion": conversion, "revenue_per_user": revenue_per_user, "watch_time": watch_time,
                "refund_rate": refund_rate, "revenue_per_session": revenue_per_session}[m.group(1)]
        return replace(base(float(m.group(2))), name=name)
    raise ValueError(
        f"unknown metric {name!r}; use one of {sorted(STANDARD_METRICS)}, retention_d<N> or <metric>_<N>h"
    )


# --------------------------------------------------------------------------------------------------
# computation
# --------------------------------------------------------------------------------------------------


def _check_events(events: pd.DataFrame, needed: Iterable[str]) -> None:
    if not isinstance(events, pd.DataFrame):
        raise TypeError(f"events must be a pandas DataFrame, got {type(events).__name__}")
    missing = [c for c in needed if c not in events.columns]
    if missing:
        raise ValueError(f"events is missing column(s) {missing}")


def first_exposures(events: pd.DataFrame, experiment: str) -> pd.DataFrame:
    """One row per exposed user: ``user_id, variant, exposure_ts`` (first exposure).

    Users seen in several variants are removed; their number is in ``.attrs["multi_variant_users"]``.
    """
    _check_events(events, ("type", "ts", "user_id", "experiment", "variant"))
    ex = events.loc[(events["type"] == EventType.EXPOSURE) & (events["experiment"] == experiment),
                    ["user_id", "variant", "ts"]]
    bad = ex["variant"].isna() | (ex["variant"].astype(str) == "")
    if bad.any():
        row = ex.index[bad.to_numpy()][0]
        raise ValueError(f"exposure event at row {row} of experiment {experiment!r} has no variant")
    nvar = ex.groupby("user_id")["variant"].nunique()
    multi = nvar.index[nvar > 1]
    ex = ex[~ex["user_id"].isin(multi)]
    out = (ex.groupby("user_id", as_index=False).agg(variant=("variant", "first"), exposure_ts=("ts", "min")))
    out["exposure_ts"] = out["exposure_ts"].astype("int64")
    out.attrs["multi_variant_users"] = int(len(multi))
    return out


def _sessions(ev: pd.DataFrame, gap_ms: int = 30 * 60 * 1000) -> pd.Series:
    ev = ev.sort_values(["user_id", "ts"])
    new_user = ev["user_id"].ne(ev["user_id"].shift())
    new_sess = new_user | (ev["ts"].diff() > gap_ms)
    return new_sess.groupby(ev["user_id"]).sum()


def metric_values(events: pd.DataFrame, exposures: pd.DataFrame, metric: MetricDef,
                  pre_days: float | None = None) -> pd.Series:
    """Per exposed user value of ``metric`` (0 for users without events), indexed like ``exposures``.

    With ``pre_days`` the window is instead the ``pre_days`` before the first exposure (CUPED covariate).
    """
    _check_events(events, ("type", "ts", "user_id"))
    ev = events.loc[events["type"].isin(metric.event_types), ["user_id", "ts", "type", "amount",
                                                              "watch_seconds"]]
    ev = ev.merge(exposures[["user_id", "exposure_ts"]], on="user_id", how="inner")
    rel = ev["ts"].to_numpy(dtype="int64") - ev["exposure_ts"].to_numpy(dtype="int64")
    if pre_days is not None:
        keep = (rel < 0) & (rel >= -pre_days * DAY_MS)
    else:
        keep = rel >= metric.start_hours * HOUR_MS
        if metric.end_hours is not None:
            keep &= rel < metric.end_hours * HOUR_MS
    ev = ev.loc[keep]
    if metric.value == "count":
        per_user = ev.groupby("user_id").size().astype(float)
    elif metric.value == "amount":
        amt = pd.to_numeric(ev["amount"], errors="coerce").fillna(0.0).abs()
        amt = amt.where(~ev["type"].isin(_NEGATIVE), -amt)
        per_user = amt.groupby(ev["user_id"]).sum()
    elif metric.value == "watch_seconds":
        ws = pd.to_numeric(ev["watch_seconds"], errors="coerce").fillna(0.0)
        per_user = ws.groupby(ev["user_id"]).sum()
    else:
        per_user = _sessions(ev).astype(float)
    vals = exposures["user_id"].map(per_user).fillna(0.0).astype(float)
    if metric.kind == "proportion":
        vals = (vals > 0).astype(float)
    vals.index = exposures.index
    return vals


def compute_metric(events: pd.DataFrame, exposures: pd.DataFrame, metric: MetricDef,
                   cuped_days: float | None = None) -> dict[str, SampleStats | RatioStats | CupedStats]:
    """Sufficient statistics per variant: SampleStats, RatioStats (ratio) or CupedStats (``cuped_days``)."""
    if exposures.empty:
        return {}
    y = metric_values(events, exposures, metric)
    variants = exposures["variant"].astype(str)
    kind = "proportion" if metric.kind == "proportion" else "mean"
    out: dict[str, SampleStats | RatioStats | CupedStats] = {}
    if metric.kind == "ratio":
        assert metric.denominator is not None
        d = metric_values(events, exposures, metric.denominator)
        for v, idx in variants.groupby(variants).groups.items():
            out[str(v)] = RatioStats.from_values(y.loc[idx].to_numpy(), d.loc[idx].to_numpy())
        return out
    x = metric_values(events, exposures, metric, pre_days=cuped_days) if cuped_days else None
    for v, idx in variants.groupby(variants).groups.items():
        yv = y.loc[idx].to_numpy()
        if x is not None:
            out[str(v)] = CupedStats.from_values(yv, x.loc[idx].to_numpy(), kind)
        else:
            out[str(v)] = SampleStats.from_values(yv, kind)
    return out


def daily_exposures(exposures: pd.DataFrame) -> float:
    """Average first exposures per day over the span observed (traffic for duration estimates)."""
    if exposures.empty:
        return 0.0
    span = (exposures["exposure_ts"].max() - exposures["exposure_ts"].min()) / DAY_MS
    return float(len(exposures) / max(span, 1.0))

