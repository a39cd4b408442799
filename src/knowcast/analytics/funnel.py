"""Funnels: the specification and the math that turns per-user step times into a report.

The database work (finding, per user, when each step was first reached under the funnel's rules) lives in
``analytics/queries.py``; this module is pure: it validates a funnel, summarises per-user step times into
conversion, drop-off and time-to-convert per step and per breakdown group, and gives the users who dropped.
``ordered_funnel_pandas`` computes an ordered funnel from an in-memory event table; it is the in-memory
peer of the SQL funnel in benchmarks and tests.

Semantics (the same as Mixpanel/Amplitude's defaults):
- ordered: a user enters at their first step-1 event (in the date range); step k counts when an event of
  step k happens at or after step k-1's time and within the conversion window from step 1 (and within the
  step's own window from step k-1, if given). Other events may happen in between.
- strict: as ordered, but the step events must be consecutive in the user's event stream (no other event
  in between).
- any_order: step k counts when the user did each of steps 1..k, in any order, with the first
  occurrences of them all inside one conversion window.
- exclusions: a user with an exclusion event between step a and step b (or the window's end when b was
  not reached) is taken out of the funnel entirely.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from knowcast.domain import EVENT_TYPES

DAY_MS = 86_400_000
MODES = ("ordered", "strict", "any_order")
#: Event columns a step may filter on (``props`` is JSON text and is not filterable here).
FILTER_COLUMNS = (
    "item_id", "channel", "source", "experiment", "variant", "device", "room_id", "currency",
    "watch_seconds", "watch_ratio", "amount",
)  # fmt: skip
OPERATORS = ("eq", "ne", "in", "gt", "gte", "lt", "lte")
#: Breakdowns by a column of the first step event; also "creator", "segment:<attr>", "variant:<experiment>".
EVENT_BREAKDOWNS = ("channel", "device", "source", "variant", "experiment", "item_id", "room_id")


def parse_filter(key: str, value: Any) -> tuple[str, str, Any]:
    """``"watch_ratio__gte": 0.5`` -> (column, operator, value); a list value without operator means IN."""
    col, _, op = key.partition("__")
    if not op:
        op = "in" if isinstance(value, (list, tuple, set, frozenset)) else "eq"
    if col not in FILTER_COLUMNS:
        raise ValueError(f"cannot filter on {col!r}; filterable columns: {', '.join(FILTER_COLUMNS)}")
    if op not in OPERATORS:
        raise ValueError(f"unknown operator {op!r} in filter {key!r}; expected one of {', '.join(OPERATORS)}")
    if op == "in":
        if not isinstance(value, (list, tuple, set, frozenset)) or not value:
            raise ValueError(f"filter {key!r} needs a non-empty list")
        value = sorted(value) if isinstance(value, (set, frozenset)) else list(value)
    return col, op, value


@dataclass(frozen=True)
class Step:
    """One funnel step: an event type (or several), property filters, the item's kind, an own window."""

    type: str | tuple[str, ...]
    where: Mapping[str, Any] = field(default_factory=dict)
    item_kind: str | tuple[str, ...] | None = None
    window_ms: int | None = None
    name: str | None = None

    @property
    def types(self) -> tuple[str, ...]:
        return (self.type,) if isinstance(self.type, str) else tuple(self.type)

    @property
    def kinds(self) -> tuple[str, ...] | None:
        if self.item_kind is None:
            return None
        return (self.item_kind,) if isinstance(self.item_kind, str) else tuple(self.item_kind)

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        base = "|".join(self.types)
        return f"{base}:{'|'.join(self.kinds)}" if self.kinds else base

    def filters(self) -> list[tuple[str, str, Any]]:
        return [parse_filter(k, v) for k, v in self.where.items()]

    @classmethod
    def coerce(cls, obj: Step | str | Mapping[str, Any], pos: int) -> Step:
        """A Step from a Step, an event type string, or a dict (as the API and CLI send it)."""
        if isinstance(obj, Step):
            return obj
        if isinstance(obj, str):
            return cls(obj)
        if isinstance(obj, Mapping):
            unknown = set(obj) - {"type", "where", "item_kind", "window_ms", "name"}
            if unknown:
                raise ValueError(f"step {pos}: unknown field(s) {sorted(unknown)}")
            if "type" not in obj:
                raise ValueError(f"step {pos}: field 'type' is required")
            t = obj["type"]
            k = obj.get("item_kind")
            return cls(
                t if isinstance(t, str) else tuple(t),
                dict(obj.get("where") or {}),
                k if k is None or isinstance(k, str) else tuple(k),
                obj.get("window_ms"),
                obj.get("name"),
            )
        raise TypeError(f"step {pos}: expected a Step, str or dict, got {type(obj).__name__}")


@dataclass(frozen=True)
class Exclusion:
    """Users with this event between step ``after`` and step ``before`` (1-based) leave the funnel."""

    type: str
    after: int = 1
    before: int | None = None
    where: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FunnelSpec:
    """A funnel: steps, mode, conversion window, optional date range, exclusions and breakdown."""

    steps: tuple[Step, ...]
    mode: str = "ordered"
    window_ms: int = 14 * DAY_MS
    start_ms: int | None = None
    end_ms: int | None = None
    exclusions: tuple[Exclusion, ...] = ()
    breakdown: str | None = None

    def __post_init__(self) -> None:
        steps = tuple(Step.coerce(s, i) for i, s in enumerate(self.steps, start=1))
        object.__setattr__(self, "steps", steps)
        excl = tuple(e if isinstance(e, Exclusion) else Exclusion(**e) for e in self.exclusions)
        object.__setattr__(self, "exclusions", excl)
        if len(steps) < 2:
            raise ValueError("a funnel needs at least 2 steps")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if not isinstance(self.window_ms, int) or self.window_ms <= 0:
            raise ValueError(f"window_ms must be a positive int, got {self.window_ms!r}")
        for i, s in enumerate(steps, start=1):
            for t in s.types:
                if t not in EVENT_TYPES:
                    raise ValueError(f"step {i}: unknown event type {t!r}")
            s.filters()
            if s.window_ms is not None and (not isinstance(s.window_ms, int) or s.window_ms <= 0):
                raise ValueError(f"step {i}: window_ms must be a positive int")
        for e in excl:
            if e.type not in EVENT_TYPES:
                raise ValueError(f"exclusion: unknown event type {e.type!r}")
            before = e.before if e.before is not None else len(steps)
            if not 1 <= e.after < before <= len(steps):
                raise ValueError(f"exclusion {e.type!r}: need 1 <= after < before <= {len(steps)}")
            for k, v in e.where.items():
                parse_filter(k, v)
        if self.breakdown is not None:
            b = self.breakdown
            ok = b in EVENT_BREAKDOWNS or b == "creator" or b.startswith(("segment:", "variant:"))
            if not ok or b.endswith(":"):
                raise ValueError(
                    f"unknown breakdown {b!r}; use one of {', '.join(EVENT_BREAKDOWNS)}, creator, "
                    "segment:<user attribute> or variant:<experiment key>"
                )
        if self.start_ms is not None and self.end_ms is not None and self.end_ms <= self.start_ms:
            raise ValueError("end_ms must be after start_ms")

    @property
    def n(self) -> int:
        return len(self.steps)


@dataclass
class FunnelResult:
    """A funnel's report: per step and group counts, conversion, drop-off and time to convert."""

    spec: FunnelSpec
    steps: pd.DataFrame
    time_to_convert: pd.DataFrame
    users: pd.DataFrame = field(repr=False)

    def dropped_at(self, step: int, group: Any = None) -> list[str]:
        """Users who reached step ``step`` (1-based) but not step ``step + 1``: a segment to act on."""
        if not 1 <= step < self.spec.n:
            raise ValueError(f"step must be in 1..{self.spec.n - 1}, got {step}")
        u = self.users
        mask = u["reached"] == step
        if group is not None:
            mask &= u["group"] == group
        return sorted(u.loc[mask, "user_id"].astype(str))

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.spec.mode,
            "window_ms": self.spec.window_ms,
            "breakdown": self.spec.breakdown,
            "steps": _records(self.steps),
            "time_to_convert": _records(self.time_to_convert),
        }


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    out = []
    for rec in df.to_dict(orient="records"):
        out.append({k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in rec.items()})
    return out


#: Bucket edges (seconds) for the time-to-convert distribution.
TTC_EDGES = (0, 60, 300, 900, 3600, 6 * 3600, 86400, 3 * 86400, 7 * 86400, 14 * 86400, 30 * 86400, np.inf)


def reached_steps(times: np.ndarray, spec: FunnelSpec) -> np.ndarray:
    """How many steps each user reached, from an (n_users, n_steps) float array of times (NaN: never).

    For ordered/strict funnels the query already enforced order and windows, so the depth is the first
    missing step. For any_order, step k counts when steps 1..k all occurred inside one window.
    """
    n = times.shape[1]
    present = ~np.isnan(times)
    if spec.mode != "any_order":
        depth = np.where(present.all(axis=1), n, np.argmin(present, axis=1))
        return depth.astype(int)
    depth = np.zeros(len(times), dtype=int)
    alive = np.ones(len(times), dtype=bool)
    lo = np.full(len(times), np.inf)
    hi = np.full(len(times), -np.inf)
    for k in range(n):
        t = times[:, k]
        lo = np.fmin(lo, t)
        hi = np.fmax(hi, t)
        alive &= present[:, k] & (hi - lo <= spec.window_ms)
        depth[alive] = k + 1
    return depth


def summarize_funnel(per_user: pd.DataFrame, spec: FunnelSpec) -> FunnelResult:
    """Turn per-user step times into the funnel report.

    per_user: columns user_id, group (breakdown value or None), t1..tn (epoch ms, NaN/None when not
    reached) and, when the funnel has exclusions, excluded (bool).
    """
    n = spec.n
    cols = [f"t{k}" for k in range(1, n + 1)]
    for c in ["user_id", *cols]:
        if c not in per_user.columns:
            raise ValueError(f"per-user step table: column {c!r} is missing")
    u = per_user.copy()
    if "group" not in u.columns:
        u["group"] = None
    if "excluded" in u.columns:
        u = u[~u["excluded"].astype(bool)]
    u = u[u["t1"].notna()] if spec.mode != "any_order" else u
    times = u[cols].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    depth = reached_steps(times, spec) if len(u) else np.zeros(0, dtype=int)
    u = u.assign(reached=depth)
    u = u[u["reached"] >= 1].reset_index(drop=True)
    times = (
        u[cols].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float) if len(u) else np.zeros((0, n))
    )
    if spec.mode == "any_order" and len(u):
        # Time to step k = span of the first k steps' first occurrences.
        start = np.nanmin(times, axis=1)
    else:
        start = times[:, 0] if len(u) else np.zeros(0)
    u["group"] = u["group"].astype(object).where(u["group"].notna(), "(none)") if spec.breakdown else "(all)"
    rows = []
    ttc_rows = []
    labels = [s.label for s in spec.steps]
    for g, idx in sorted(u.groupby("group", sort=False).indices.items(), key=lambda kv: str(kv[0])):
        d = depth_g = u["reached"].to_numpy()[idx]
        entered = len(idx)
        prev = entered
        for k in range(1, n + 1):
            cnt = int((d >= k).sum())
            if spec.mode == "any_order":
                tk = np.nanmax(times[idx, :k], axis=1)
            else:
                tk = times[idx, k - 1]
            secs = (tk - start[idx])[depth_g >= k] / 1000.0
            rows.append(
                {
                    "group": g,
                    "step": k,
                    "name": labels[k - 1],
                    "users": cnt,
                    "conversion": cnt / entered if entered else 0.0,
                    "step_conversion": cnt / prev if prev else 0.0,
                    "dropped": prev - cnt,
                    "drop_off": (prev - cnt) / prev if prev else 0.0,
                    "median_seconds": float(np.median(secs)) if k > 1 and len(secs) else np.nan,
                    "mean_seconds": float(np.mean(secs)) if k > 1 and len(secs) else np.nan,
                }
            )
            if k > 1 and len(secs):
                hist, _ = np.histogram(secs, bins=np.asarray(TTC_EDGES, dtype=float))
                for b, h in enumerate(hist):
                    ttc_rows.append(
                        {
                            "group": g,
                            "step": k,
                            "from_s": TTC_EDGES[b],
                            "to_s": TTC_EDGES[b + 1],
                            "users": int(h),
                        }
                    )
            prev = cnt
    steps = pd.DataFrame(rows)
    ttc = pd.DataFrame(ttc_rows, columns=["group", "step", "from_s", "to_s", "users"])
    return FunnelResult(spec, steps, ttc, u[["user_id", "group", "reached", *cols]])


_OPS = {
    "eq": operator.eq,
    "ne": operator.ne,
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}


def _match(df: pd.DataFrame, step: Step | Exclusion, item_kinds: Mapping[str, str] | None) -> np.ndarray:
    types = step.types if isinstance(step, Step) else (step.type,)
    m = df["type"].isin(types).to_numpy(dtype=bool, copy=True)  # writable: the filters below AND into it
    filters = (
        step.filters() if isinstance(step, Step) else [parse_filter(k, v) for k, v in step.where.items()]
    )
    for col, op, val in filters:
        s = df[col]
        cond = s.isin(val) if op == "in" else _OPS[op](s, val)
        m &= cond.fillna(False).to_numpy(dtype=bool)
    kinds = step.kinds if isinstance(step, Step) else None
    if kinds:
        if item_kinds is None:
            raise ValueError("item_kinds mapping is needed for steps with item_kind")
        m &= df["item_id"].map(item_kinds).isin(kinds).to_numpy()
    return m


def ordered_funnel_pandas(
    events: pd.DataFrame, spec: FunnelSpec, item_kinds: Mapping[str, str] | None = None
) -> pd.DataFrame:
    """Per-user step times of an ordered funnel computed in memory with pandas (the SQL's peer).

    events: columns user_id, type, ts and any filtered columns. Returns user_id, group, t1..tn like the
    store query, ready for ``summarize_funnel``. Breakdown supports the event-column breakdowns.
    """
    if spec.mode != "ordered":
        raise ValueError("ordered_funnel_pandas only computes ordered funnels")
    if spec.exclusions:
        raise ValueError("ordered_funnel_pandas does not handle exclusions")
    ev = events
    m1 = _match(ev, spec.steps[0], item_kinds)
    if spec.start_ms is not None:
        m1 &= (ev["ts"] >= spec.start_ms).to_numpy()
    if spec.end_ms is not None:
        m1 &= (ev["ts"] < spec.end_ms).to_numpy()
    first = ev.loc[m1, ["user_id", "ts"] + ([spec.breakdown] if spec.breakdown in EVENT_BREAKDOWNS else [])]
    first = first.sort_values("ts", kind="stable").drop_duplicates("user_id")
    out = first.rename(columns={"ts": "t1"})
    out["group"] = out[spec.breakdown] if spec.breakdown in EVENT_BREAKDOWNS else None
    out = out[["user_id", "group", "t1"]].reset_index(drop=True)
    cur = out[["user_id", "t1"]]
    prev_col = "t1"
    for k in range(2, spec.n + 1):
        step = spec.steps[k - 1]
        mk = _match(ev, step, item_kinds)
        cand = ev.loc[mk, ["user_id", "ts"]].merge(cur, on="user_id", how="inner")
        ok = (cand["ts"] >= cand[prev_col]) & (cand["ts"] <= cand["t1"] + spec.window_ms)
        if step.window_ms is not None:
            ok &= cand["ts"] <= cand[prev_col] + step.window_ms
        got = cand[ok].groupby("user_id", sort=False)["ts"].min().rename(f"t{k}").reset_index()
        cur = cur.merge(got, on="user_id", how="inner")
        prev_col = f"t{k}"
        out = out.merge(got, on="user_id", how="left")
    return out
