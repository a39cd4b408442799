"""Retention cohort tables and stickiness from aggregated counts (pure: the database aggregates).

Inputs are the small tables ``queries.retention_counts`` returns: cohort sizes (cohort period, users) and
returns (cohort period, offset, users): how many of a cohort came back ``offset`` periods later.

- first-time retention: a cohort is the users whose *first* start event fell in that period;
- recurring retention: every period in which a user did the start event is a cohort entry;
- stickiness: DAU / MAU per day, MAU being the distinct users of the trailing 30 days.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

PERIOD_DAYS = {"day": 1, "week": 7}


@dataclass
class RetentionTable:
    """Cohort x offset counts and rates, and the size-weighted average retention curve."""

    period: str
    counts: pd.DataFrame
    rates: pd.DataFrame
    sizes: pd.Series
    curve: pd.DataFrame

    def to_dict(self) -> dict[str, Any]:
        return {
            "period": self.period,
            "cohorts": [
                {
                    "cohort": str(c),
                    "users": int(self.sizes[c]),
                    "retained": {str(k): int(v) for k, v in self.counts.loc[c].items() if not pd.isna(v)},
                }
                for c in self.counts.index
            ],
            "curve": self.curve.to_dict(orient="records"),
        }

    def to_frame(self) -> pd.DataFrame:
        """Long form: cohort, offset, cohort_users, retained, rate (the CSV export).

        Cells a cohort has not lived to see yet are left out (pandas 3's ``stack`` keeps NaN cells).
        """
        long = self.counts.stack().dropna().rename("retained").reset_index()
        long.columns = ["cohort", "offset", "retained"]
        long["cohort_users"] = long["cohort"].map(self.sizes)
        long["rate"] = long["retained"] / long["cohort_users"]
        return long[["cohort", "offset", "cohort_users", "retained", "rate"]]


def _period_label(p: int, period: str) -> str:
    day = pd.Timestamp(int(p) * PERIOD_DAYS[period], unit="D")
    return day.strftime("%Y-%m-%d")


def cohort_table(
    sizes: pd.DataFrame,
    returns: pd.DataFrame,
    *,
    period: str = "day",
    max_offset: int | None = None,
    last_period: int | None = None,
) -> RetentionTable:
    """Build the cohort table. Offsets a cohort has not lived to see yet (after ``last_period``) are NaN.

    sizes: columns cohort, users. returns: cohort, offset, users. Cohort values are period numbers since
    the epoch (day or week index) and are labelled with their first day.
    """
    if period not in PERIOD_DAYS:
        raise ValueError(f"period must be one of {', '.join(PERIOD_DAYS)}, got {period!r}")
    for name, df, cols in (
        ("sizes", sizes, ("cohort", "users")),
        ("returns", returns, ("cohort", "offset", "users")),
    ):
        for c in cols:
            if c not in df.columns:
                raise ValueError(f"{name}: column {c!r} is missing")
    if (returns["offset"] < 0).any() if len(returns) else False:
        row = int(np.flatnonzero(returns["offset"].to_numpy() < 0)[0]) + 1
        raise ValueError(f"returns row {row}: field 'offset' must be >= 0")
    s = sizes.assign(cohort=sizes["cohort"].astype(int)).set_index("cohort")["users"].astype(int).sort_index()
    r = returns.assign(cohort=returns["cohort"].astype(int), offset=returns["offset"].astype(int))
    if max_offset is not None:
        r = r[r["offset"] <= max_offset]
    last = last_period if last_period is not None else (int(s.index.max()) if len(s) else 0)
    if len(r):
        last = max(last, int((r["cohort"] + r["offset"]).max()))
    n_off = (max_offset if max_offset is not None else (last - int(s.index.min()) if len(s) else 0)) + 1
    counts = pd.DataFrame(0.0, index=s.index, columns=range(n_off))
    counts[0] = s.astype(float)
    for c, o, u in r[r["offset"] > 0][["cohort", "offset", "users"]].itertuples(index=False):
        if c in counts.index and o < n_off:
            counts.loc[c, o] = float(u)
    # NaN where the cohort has not lived to that offset yet.
    age = last - counts.index.to_numpy()
    mask = np.arange(n_off)[None, :] > age[:, None]
    counts = counts.mask(mask)
    rates = counts.div(s.astype(float), axis=0)
    curve_rows = []
    for o in counts.columns:
        col = counts[o]
        seen = col.notna()
        base = float(s[seen].sum())
        curve_rows.append(
            {"offset": int(o), "cohorts": int(seen.sum()), "users": base,
             "retained": float(col[seen].sum()), "rate": float(col[seen].sum() / base) if base else np.nan}
        )  # fmt: skip
    labels = [_period_label(c, period) for c in counts.index]
    counts.index = labels
    rates.index = labels
    s.index = labels
    return RetentionTable(period, counts, rates, s, pd.DataFrame(curve_rows))


def retention_from_activity(
    activity: pd.DataFrame, *, user: str = "user_id", period_col: str = "period", kind: str = "first_time"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Cohort sizes and returns from (user, period) activity rows: an in-memory twin of the SQL aggregation.

    Used for data that is not in the store (e.g. OULAD daily clicks) and to check the SQL in tests.
    """
    a = activity[[user, period_col]].drop_duplicates()
    if kind == "first_time":
        first = a.groupby(user)[period_col].min().rename("cohort")
        j = a.join(first, on=user)
        sizes = first.value_counts().rename_axis("cohort").rename("users").reset_index()
        j = j[j[period_col] > j["cohort"]]
    elif kind == "recurring":
        sizes = a[period_col].value_counts().rename_axis("cohort").rename("users").reset_index()
        j = a.rename(columns={period_col: "cohort"}).merge(a, on=user)
        j = j[j[period_col] > j["cohort"]]
    else:
        raise ValueError(f"kind must be 'first_time' or 'recurring', got {kind!r}")
    j = j.assign(offset=j[period_col] - j["cohort"])
    returns = j.groupby(["cohort", "offset"]).size().rename("users").reset_index()
    return sizes, returns


def stickiness(active: pd.DataFrame) -> pd.DataFrame:
    """DAU/MAU per day from (day, dau, mau) rows; days are labelled as dates."""
    for c in ("day", "dau", "mau"):
        if c not in active.columns:
            raise ValueError(f"active users: column {c!r} is missing")
    out = active.copy()
    out["stickiness"] = np.where(out["mau"] > 0, out["dau"] / out["mau"].clip(lower=1), 0.0)
    out["date"] = [pd.Timestamp(int(d), unit="D").strftime("%Y-%m-%d") for d in out["day"]]
    return out[["date", "day", "dau", "mau", "stickiness"]]
