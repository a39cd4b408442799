"""Activity, spend (RFM), channels, hours and devices per user, kept as mergeable running totals.

Why running totals: a profile must follow new events without re-reading a user's history. Every statistic
here is a sum, a min/max or a small state machine (the day streak), so ``update(batch)`` combines the batch's
group-by with the stored state in a few vectorised joins, and the result equals one pass over all events
(tested), as long as batches arrive in time order. An event older than a user's last active day still
counts in the totals but cannot reopen a streak that has already moved on.

Read the profile with :meth:`ActivityProfiler.table`, which derives what depends on "now": recency, whether
the streak is still alive, RFM scores (quintiles 1-5 across users), spend and activity levels in words.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from knowcast.profiles.interest import to_epoch_ms

__all__ = ["ActivityProfiler", "MONEY_IN", "MONEY_OUT"]

MONEY_IN: frozenset[str] = frozenset({"purchase", "subscribe", "tip"})
MONEY_OUT: frozenset[str] = frozenset({"refund"})
_MS_PER_DAY = 86_400_000
#: Integer columns of the running state (besides the ``prefix:`` count columns).
_INT_STATE = ("n_events", "n_purchases", "n_active_days", "last_day", "streak", "longest_streak")


def _count_table(ucode: np.ndarray, n_users: int, values: np.ndarray, prefix: str) -> pd.DataFrame:
    """Users x categories counts with ``np.bincount`` (much faster than ``pd.crosstab``)."""
    ok = pd.notna(values)
    codes, cats = pd.factorize(values[ok], sort=True)
    m = np.bincount(ucode[ok] * len(cats) + codes, minlength=n_users * len(cats)).reshape(n_users, len(cats))
    return pd.DataFrame(m, columns=[f"{prefix}{c}" for c in cats])


def _argmax_label(counts: pd.DataFrame, prefix: str) -> pd.Series:
    cols = [c for c in counts.columns if c.startswith(prefix)]
    if not cols:
        return pd.Series(None, index=counts.index, dtype=object)
    sub = counts[cols].to_numpy()
    best = np.asarray([c[len(prefix) :] for c in cols], dtype=object)[sub.argmax(axis=1)]
    best[sub.max(axis=1) <= 0] = None
    return pd.Series(best, index=counts.index, dtype=object)


class ActivityProfiler:
    """Per-user activity and spend statistics, updated incrementally.

    Parameters
    ----------
    tz_offset_hours: local time offset for days and hours of the day (8 for China; 0 = UTC).
    money_in / money_out: event types whose ``amount`` adds to / subtracts from spend.
    """

    def __init__(
        self,
        tz_offset_hours: float = 0.0,
        money_in: Iterable[str] = MONEY_IN,
        money_out: Iterable[str] = MONEY_OUT,
    ) -> None:
        self.tz_offset_hours = tz_offset_hours
        self.money_in = money_in
        self.money_out = money_out

    def fit(self, events: pd.DataFrame) -> ActivityProfiler:
        self.state_ = pd.DataFrame()
        return self.update(events)

    def update(self, events: pd.DataFrame) -> ActivityProfiler:
        """Fold a batch of events into the running totals."""
        if not hasattr(self, "state_"):
            self.state_ = pd.DataFrame()
        for col in ("user_id", "type", "ts"):
            if col not in events.columns:
                raise ValueError(f"events need a {col!r} column")
        ev = events[events["user_id"].notna()]
        if ev.empty:
            return self
        ts = to_epoch_ms(ev["ts"].reset_index(drop=True))
        local = ts + self.tz_offset_hours * 3_600_000
        day = np.floor(local / _MS_PER_DAY).astype(np.int64)
        hour = (np.floor(local / 3_600_000).astype(np.int64) % 24).astype(np.int64)
        types = ev["type"].astype(str).to_numpy()
        if "amount" in ev.columns:
            amount = pd.to_numeric(ev["amount"], errors="coerce").fillna(0.0).to_numpy(dtype=np.float64)
        else:
            amount = np.zeros(len(ev))
        is_in = np.isin(types, list(self.money_in))
        is_out = np.isin(types, list(self.money_out))
        df = pd.DataFrame(
            {
                "user_id": ev["user_id"].to_numpy(),
                "ts": ts,
                "day": day,
                "spend": np.where(is_in, amount, 0.0) - np.where(is_out, np.abs(amount), 0.0),
                "n_purchases": is_in.astype(np.int64),
                "purchase_ts": np.where(is_in, ts, -np.inf),
            }
        )
        g = df.groupby("user_id", sort=False)
        batch = pd.DataFrame(
            {
                "n_events": g.size(),
                "first_ts": g["ts"].min(),
                "last_ts": g["ts"].max(),
                "spend": g["spend"].sum(),
                "n_purchases": g["n_purchases"].sum(),
                "last_purchase_ts": g["purchase_ts"].max(),
            }
        )
        ucode, uniq = pd.factorize(df["user_id"], sort=False)
        nu = len(uniq)
        counts = [
            _count_table(ucode, nu, types, "type:"),
            _count_table(ucode, nu, np.asarray([f"{h:02d}" for h in range(24)], dtype=object)[hour], "hour:"),
        ]
        for col in ("channel", "device"):
            if col in ev.columns:
                vals = ev[col].astype(object).where(ev[col].notna(), None).to_numpy()
                counts.append(_count_table(ucode, nu, vals, f"{col}:"))
        batch = batch.reindex(uniq)
        cnt = pd.concat(counts, axis=1)
        cnt.index = uniq
        batch = batch.join(cnt)
        streak = self._streaks(df[["user_id", "day"]])
        self.state_ = self._merge(self.state_, batch, streak)
        return self

    # ------------------------------------------------------------------ merging
    def _streaks(self, ud: pd.DataFrame) -> pd.DataFrame:
        """Per user: new active days, last day, current and longest streak, continuing the stored state."""
        d = ud.drop_duplicates().sort_values(["user_id", "day"], kind="stable")
        prev = self.state_.reindex(d["user_id"].unique()) if len(self.state_) else None
        if prev is not None and "last_day" in prev.columns:
            pl = d["user_id"].map(prev["last_day"]).fillna(-(10**12)).to_numpy(dtype=np.int64)
            ps = d["user_id"].map(prev["streak"]).fillna(0).to_numpy(dtype=np.int64)
        else:
            pl = np.full(len(d), -(10**12), dtype=np.int64)
            ps = np.zeros(len(d), dtype=np.int64)
        keep = d["day"].to_numpy() > pl  # days already counted (or late) do not move streaks
        d, pl, ps = d[keep], pl[keep], ps[keep]
        users = d["user_id"].to_numpy()
        days = d["day"].to_numpy()
        first_of_user = np.r_[True, users[1:] != users[:-1]] if len(d) else np.zeros(0, bool)
        breaks = np.r_[True, days[1:] != days[:-1] + 1] if len(d) else np.zeros(0, bool)
        new_run = first_of_user | breaks
        run_id = np.cumsum(new_run)
        carry = np.where(first_of_user & (days == pl + 1), ps, 0)  # continues the stored streak
        runs = pd.DataFrame({"user_id": users, "run": run_id, "carry": carry})
        rl = runs.groupby("run", sort=False).agg(
            user_id=("user_id", "first"), n=("run", "size"), c=("carry", "sum")
        )
        rl["len"] = rl["n"] + rl["c"]
        per_user = rl.groupby("user_id", sort=False).agg(streak=("len", "last"), longest=("len", "max"))
        per_user["new_days"] = d.groupby("user_id", sort=False).size()
        per_user["last_day"] = d.groupby("user_id", sort=False)["day"].max()
        return per_user

    @staticmethod
    def _merge(state: pd.DataFrame, batch: pd.DataFrame, streak: pd.DataFrame) -> pd.DataFrame:
        batch = batch.join(streak, how="left")
        if state.empty:
            out = batch.rename(columns={"new_days": "n_active_days", "longest": "longest_streak"})
            out["n_active_days"] = out["n_active_days"].fillna(0).astype(np.int64)
            return out
        idx = state.index.union(batch.index, sort=False)
        s = state.reindex(idx)
        b = batch.reindex(idx)
        out = pd.DataFrame(index=idx)
        count_cols = sorted({c for c in [*s.columns, *b.columns] if ":" in c})
        for c in ["n_events", "spend", "n_purchases", *count_cols]:
            sv = s[c] if c in s.columns else 0
            bv = b[c] if c in b.columns else 0
            out[c] = pd.Series(sv, index=idx).fillna(0) + pd.Series(bv, index=idx).fillna(0)
        out["first_ts"] = np.fmin(s["first_ts"], b["first_ts"])
        out["last_ts"] = np.fmax(s["last_ts"], b["last_ts"])
        out["last_purchase_ts"] = np.fmax(s["last_purchase_ts"], b["last_purchase_ts"])
        out["n_active_days"] = s["n_active_days"].fillna(0) + b["new_days"].fillna(0)
        has_new = b["last_day"].notna()
        out["last_day"] = np.where(has_new, b["last_day"], s["last_day"])
        out["streak"] = np.where(has_new, b["streak"], s["streak"])
        out["longest_streak"] = np.fmax(s["longest_streak"], b["longest"])
        for c in [
            "n_events",
            "n_purchases",
            "n_active_days",
            "last_day",
            "streak",
            "longest_streak",
            *count_cols,
        ]:
            out[c] = out[c].fillna(0).astype(np.int64)
        return out

    # ------------------------------------------------------------------ persistence
    def state_records(self) -> dict[Any, dict[str, Any]]:
        """The running totals per user as JSON-safe dicts (no NaN/inf: absent values are left out).

        A service stores these next to each profile and passes them back to :meth:`load_state`, so an
        incremental update continues the totals without re-reading history.
        """
        if not hasattr(self, "state_") or self.state_.empty:
            return {}
        out: dict[Any, dict[str, Any]] = {}
        cols = list(self.state_.columns)
        for u, row in zip(self.state_.index, self.state_.itertuples(index=False, name=None), strict=True):
            rec: dict[str, Any] = {}
            for c, v in zip(cols, row, strict=True):
                if v is None or (isinstance(v, float) and not math.isfinite(v)):
                    continue
                if isinstance(v, np.integer | int) and ":" in c and v == 0:
                    continue  # zero counts are implied
                rec[c] = v.item() if hasattr(v, "item") else v
            out[u] = rec
        return out

    def load_state(self, records: Mapping[Any, Mapping[str, Any]]) -> ActivityProfiler:
        """Start from stored running totals (see :meth:`state_records`); missing counts are zero."""
        self.state_ = pd.DataFrame()
        if not records:
            return self
        st = pd.DataFrame.from_dict({u: dict(r) for u, r in records.items()}, orient="index")
        for c in st.columns:
            if ":" in c or c in _INT_STATE:
                st[c] = pd.to_numeric(st[c], errors="coerce").fillna(0).astype(np.int64)
        for c in ("first_ts", "last_ts"):
            if c not in st.columns:
                raise ValueError(f"stored activity state lacks {c!r}")
        if "last_purchase_ts" not in st.columns:
            st["last_purchase_ts"] = -np.inf
        st["last_purchase_ts"] = pd.to_numeric(st["last_purchase_ts"], errors="coerce").fillna(-np.inf)
        for c in ("spend",):
            st[c] = pd.to_numeric(st.get(c, 0.0), errors="coerce").fillna(0.0)
        self.state_ = st
        return self

    @staticmethod
    def thresholds(table: pd.DataFrame) -> dict[str, list[float]]:
        """Population breakpoints of R/F/M (quintiles among payers) and spend/activity levels (terciles
        of positive values), so a single user updated later is scored against the same population."""
        out: dict[str, list[float]] = {}
        payers = table["n_purchases"] > 0
        for key, x in (
            ("R", -table.loc[payers, "purchase_recency_days"].astype(float)),
            ("F", table.loc[payers, "n_purchases"].astype(float)),
            ("M", table.loc[payers, "spend"].astype(float)),
        ):
            out[key] = [float(q) for q in np.quantile(x, [0.2, 0.4, 0.6, 0.8])] if len(x) else []
        for key, col in (("spend_level", "spend"), ("activity_level", "events_per_day")):
            pos = table[col][table[col] > 0].astype(float)
            out[key] = [float(q) for q in np.quantile(pos, [1 / 3, 2 / 3])] if len(pos) else []
        return out

    # ------------------------------------------------------------------ reading
    def table(
        self, as_of: Any = None, reference: Mapping[str, Sequence[float]] | None = None
    ) -> pd.DataFrame:
        """One row per user: activity, spend, RFM, preferred channel/hour/device and levels in words.

        ``as_of`` (epoch ms or datetime) is "now" for recency; default the latest event seen.
        ``reference``: breakpoints from :meth:`thresholds` of a population; R/F/M and levels are then
        scored against them instead of among the users in this profiler (for incremental updates).
        """
        if not hasattr(self, "state_") or self.state_.empty:
            raise RuntimeError("ActivityProfiler has no events: call fit() or update() first")
        s = self.state_
        now = float(s["last_ts"].max()) if as_of is None else float(to_epoch_ms([as_of], field="as_of")[0])
        today = int(np.floor((now + self.tz_offset_hours * 3_600_000) / _MS_PER_DAY))
        out = pd.DataFrame(index=s.index.rename("user_id"))
        out["n_events"] = s["n_events"]
        out["n_active_days"] = s["n_active_days"]
        out["first_seen_days_ago"] = ((now - s["first_ts"]) / _MS_PER_DAY).round(2)
        out["recency_days"] = ((now - s["last_ts"]) / _MS_PER_DAY).clip(lower=0).round(2)
        tenure = np.maximum((now - s["first_ts"]) / _MS_PER_DAY, 1.0)
        out["events_per_day"] = (s["n_events"] / tenure).round(3)
        alive = s["last_day"] >= today - 1
        out["streak_days"] = np.where(alive, s["streak"], 0)
        out["longest_streak_days"] = s["longest_streak"]
        out["n_purchases"] = s["n_purchases"]
        out["spend"] = s["spend"].round(2)
        lp = s["last_purchase_ts"].replace(-np.inf, np.nan)
        out["purchase_recency_days"] = ((now - lp) / _MS_PER_DAY).round(2)
        payer = out["n_purchases"] > 0
        rfm_x = {
            "R": -out["purchase_recency_days"].fillna(np.inf),
            "F": out["n_purchases"].astype(float),
            "M": out["spend"].astype(float),
        }
        for key, x in rfm_x.items():
            if reference is not None and reference.get(key):
                out[key] = _score_with(x, payer, reference[key])
            else:
                out[key] = _quintile(x, valid=payer)
        out["preferred_channel"] = _argmax_label(s, "channel:")
        out["device"] = _argmax_label(s, "device:")
        hours = _argmax_label(s, "hour:")
        out["preferred_hour"] = hours.map(lambda h: None if h is None else int(h))
        ref = reference or {}
        out["spend_level"] = _levels(
            out["spend"], zero_label="no spend", names=("low", "medium", "high"), cuts=ref.get("spend_level")
        )
        out["activity_level"] = _levels(
            out["events_per_day"],
            zero_label="inactive",
            names=("low", "medium", "high"),
            cuts=ref.get("activity_level"),
        )
        return out

    def arpu(self) -> float:
        """Average revenue per user: total spend over all users seen (payers and non-payers)."""
        if not hasattr(self, "state_") or self.state_.empty:
            return 0.0
        return float(self.state_["spend"].sum() / len(self.state_))

    def counts(self, prefix: str) -> pd.DataFrame:
        """Raw count columns, e.g. ``counts("hour:")`` or ``counts("channel:")``, one row per user."""
        cols = [c for c in self.state_.columns if c.startswith(prefix)]
        return self.state_[cols].rename(columns=lambda c: c[len(prefix) :])


def _quintile(x: pd.Series, valid: pd.Series) -> pd.Series:
    """Scores 1-5 by rank among valid users (5 = best); 0 for users with no purchase."""
    out = pd.Series(0, index=x.index, dtype=np.int64)
    if valid.any():
        r = x[valid].rank(method="average", pct=True)
        out[valid] = np.ceil(r * 5).clip(1, 5).astype(np.int64)
    return out


def _score_with(x: pd.Series, valid: pd.Series, breaks: Sequence[float]) -> pd.Series:
    """Scores 1-5 against stored quintile breakpoints; 0 for users with no purchase."""
    out = pd.Series(0, index=x.index, dtype=np.int64)
    if valid.any():
        pos = np.searchsorted(np.asarray(breaks, float), x[valid].to_numpy(float), "left")
        out[valid] = (pos + 1).clip(1, 5)
    return out


def _levels(
    x: pd.Series, zero_label: str, names: tuple[str, str, str], cuts: Sequence[float] | None = None
) -> pd.Series:
    """Words for a non-negative amount: ``zero_label`` at 0, then terciles of the positive values
    (or the stored ``cuts``)."""
    out = pd.Series(zero_label, index=x.index, dtype=object)
    pos = x > 0
    if pos.any():
        q1, q2 = cuts if cuts else np.quantile(x[pos], [1 / 3, 2 / 3])
        out[pos] = np.where(x[pos] <= q1, names[0], np.where(x[pos] <= q2, names[1], names[2]))
    return out
