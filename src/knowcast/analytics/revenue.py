"""Money: revenue by stream, subscriptions (MRR movements, churn, survival LTV), RFM and cohort revenue.

Pure functions over aggregated rows from ``queries.py`` (or any DataFrame with the same columns).

Streams: sales of each paid kind (course, column, ebook, audio, membership), subscriptions (``subscribe``
events), tips and gifts in lives (``tip``), ad revenue share (views x CPM / 1000 x creator share), live
commerce GMV (purchases made inside a live room), and refunds, which are netted out of the stream of the
refunded item.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from knowcast.domain import PAID_KINDS

BREAKDOWNS = ("stream", "creator", "item", "channel", "day")


def _stream(row_type: str, kind: str | None, in_live: int) -> str:
    if row_type == "subscribe":
        return "subscription"
    if row_type == "tip":
        return "tips"
    if in_live and (kind is None or kind not in PAID_KINDS):
        return "live_commerce"
    if kind in PAID_KINDS:
        return str(kind)
    return "other"


def revenue_report(
    rows: pd.DataFrame,
    totals: dict[str, float],
    *,
    ad_views: pd.DataFrame | None = None,
    cpm: float = 10.0,
    creator_share: float = 0.5,
    by: str = "stream",
) -> dict[str, Any]:
    """Net revenue by stream (or creator, item, channel, day) plus ARPU, ARPPU, paying ratio and AOV.

    rows: day, type, kind, creator_id, item_id, channel, in_live, events, payers, amount
    (queries.revenue_rows).
    totals: active, payers, net, orders, gross_purchases (queries.payer_totals).
    ad_views: item_id, creator_id, views; ad revenue = views x cpm / 1000, of which ``creator_share`` goes
    to the creator (reported as the ``ads_creator_share`` stream; the platform keeps the rest).
    """
    if by not in BREAKDOWNS:
        raise ValueError(f"by must be one of {', '.join(BREAKDOWNS)}, got {by!r}")
    if not 0.0 <= creator_share <= 1.0:
        raise ValueError(f"creator_share must be in [0, 1], got {creator_share!r}")
    if cpm < 0:
        raise ValueError(f"cpm must be >= 0, got {cpm!r}")
    r = rows.copy()
    if len(r):
        r["stream"] = [_stream(t, k, i) for t, k, i in zip(r["type"], r["kind"], r["in_live"], strict=True)]
        sign = np.where(r["type"] == "refund", -1.0, 1.0)
        r["net"] = sign * r["amount"].astype(float).abs()
        r["gross"] = np.where(r["type"] == "refund", 0.0, r["amount"].astype(float))
        r["refunds"] = np.where(r["type"] == "refund", r["amount"].astype(float).abs(), 0.0)
        r["orders"] = np.where(r["type"] == "purchase", r["events"], 0)
    else:
        cols = ["stream", "creator_id", "item_id", "channel", "day", "net", "gross", "refunds", "orders"]
        r = pd.DataFrame(columns=cols)
    key = {
        "stream": "stream",
        "creator": "creator_id",
        "item": "item_id",
        "channel": "channel",
        "day": "day",
    }[by]
    r[key] = r[key].astype(object).where(r[key].notna(), "(none)") if len(r) else r[key]
    table = r.groupby(key, dropna=False)[["gross", "refunds", "net", "orders"]].sum().reset_index()
    ads_total = 0.0
    if ad_views is not None and len(ad_views):
        views = ad_views.copy()
        views["ads"] = views["views"].astype(float) * cpm / 1000.0
        ads_total = float(views["ads"].sum())
        creator_part = views["ads"] * creator_share
        if by == "stream":
            extra = pd.DataFrame(
                [{"stream": "ads_creator_share", "gross": float(creator_part.sum()), "refunds": 0.0,
                  "net": float(creator_part.sum()), "orders": 0}]
            )  # fmt: skip
            table = pd.concat([table, extra], ignore_index=True)
        elif by in ("creator", "item"):
            col = "creator_id" if by == "creator" else "item_id"
            add = views.assign(ads=creator_part).groupby(col)["ads"].sum().rename("ads_creator_share")
            table = table.merge(add, left_on=key, right_index=True, how="outer").fillna(0.0)
    if by == "day" and len(table):
        table["date"] = [pd.Timestamp(int(d), unit="D").strftime("%Y-%m-%d") for d in table["day"]]
    table = table.sort_values("net", ascending=False, kind="stable").reset_index(drop=True)
    active = totals.get("active", 0.0)
    payers = totals.get("payers", 0.0)
    net = totals.get("net", 0.0)
    orders = totals.get("orders", 0.0)
    summary = {
        "net_revenue": net,
        "gross_purchases": totals.get("gross_purchases", 0.0),
        "active_users": int(active),
        "paying_users": int(payers),
        "arpu": net / active if active else 0.0,
        "arppu": net / payers if payers else 0.0,
        "paying_ratio": payers / active if active else 0.0,
        "average_order_value": totals.get("gross_purchases", 0.0) / orders if orders else 0.0,
        "orders": int(orders),
        "ad_revenue_total": ads_total,
        "ad_revenue_creators": ads_total * creator_share,
        "ad_revenue_platform": ads_total * (1.0 - creator_share),
    }
    return {"by": by, "summary": summary, "table": table}


# ---------------------------------------------------------------- subscriptions


def kaplan_meier(durations: np.ndarray, observed: np.ndarray) -> pd.DataFrame:
    """Kaplan-Meier survival S(t) for integer durations (periods survived) with right censoring."""
    d = np.asarray(durations, dtype=int)
    e = np.asarray(observed, dtype=bool)
    if len(d) != len(e):
        raise ValueError("durations and observed differ in length")
    if (d < 0).any():
        raise ValueError("durations must be >= 0")
    rows = []
    s = 1.0
    for t in range(0, int(d.max()) + 1 if len(d) else 0):
        at_risk = int((d >= t).sum())
        events = int(((d == t) & e).sum())
        if at_risk:
            s *= 1.0 - events / at_risk
        rows.append({"t": t, "at_risk": at_risk, "churned": events, "survival": s})
    return pd.DataFrame(rows, columns=["t", "at_risk", "churned", "survival"])


def subscription_report(ledger: pd.DataFrame, *, horizon: int = 36) -> dict[str, Any]:
    """MRR movements per month, churn rates, and LTV = ARPU x expected lifetime from a survival curve.

    ledger: user_id, month (period index), amount (what the user paid that month). A user who paid in
    month m-1 and not in m churned in m; one who pays again later is a reactivation. Lifetime is the
    restricted mean of the Kaplan-Meier curve of subscription spells (censored when still active at the
    last month), extrapolated over ``horizon`` months with the pooled monthly churn hazard (churned spells
    / spell-months at risk).
    """
    for c in ("user_id", "month", "amount"):
        if c not in ledger.columns:
            raise ValueError(f"subscription ledger: column {c!r} is missing")
    if not len(ledger):
        return {"months": pd.DataFrame(), "survival": pd.DataFrame(), "ltv": 0.0, "arpu_month": 0.0,
                "expected_lifetime_months": 0.0}  # fmt: skip
    piv = ledger.pivot_table(index="user_id", columns="month", values="amount", aggfunc="sum", fill_value=0.0)
    months = list(range(int(piv.columns.min()), int(piv.columns.max()) + 1))
    piv = piv.reindex(columns=months, fill_value=0.0)
    m = piv.to_numpy(dtype=float)
    ever = np.zeros(len(piv), dtype=bool)
    rows = []
    for j, mo in enumerate(months):
        cur = m[:, j]
        prev = m[:, j - 1] if j else np.zeros(len(piv))
        active, was = cur > 0, prev > 0
        new = active & ~was & ~ever
        react = active & ~was & ever
        churn = ~active & was
        exp = active & was & (cur > prev)
        con = active & was & (cur < prev)
        rows.append(
            {
                "month": mo,
                "mrr": float(cur.sum()),
                "subscribers": int(active.sum()),
                "new_mrr": float(cur[new].sum()),
                "new": int(new.sum()),
                "reactivation_mrr": float(cur[react].sum()),
                "expansion_mrr": float((cur - prev)[exp].sum()),
                "contraction_mrr": float((prev - cur)[con].sum()),
                "churned_mrr": float(prev[churn].sum()),
                "churned": int(churn.sum()),
                "logo_churn_rate": float(churn.sum() / was.sum()) if was.sum() else np.nan,
                "mrr_churn_rate": float(prev[churn].sum() / prev.sum()) if prev.sum() else np.nan,
            }
        )
        ever |= active
    table = pd.DataFrame(rows)
    # Spells: consecutive paid months per user; censored when they reach the last month.
    dur, obs = [], []
    last = len(months) - 1
    for row in m > 0:
        j = 0
        while j <= last:
            if row[j]:
                k = j
                while k + 1 <= last and row[k + 1]:
                    k += 1
                dur.append(k - j + 1)
                obs.append(k < last)
                j = k + 1
            else:
                j += 1
    km = kaplan_meier(np.asarray(dur), np.asarray(obs))
    surv = km.set_index("t")["survival"]
    # S(t) is the share still subscribed after t months; lifetime = sum over months of P(paying in month i).
    curve = [1.0] + [float(surv.get(t, surv.iloc[-1])) for t in range(1, len(km))]
    # Beyond the data the hazard is the pooled one (churns / subscriber-months at risk): the last interval
    # alone often has one or two spells at risk and no churn, which would make the tail never decay.
    later = km[km["t"] >= 1]
    exposure = float(later["at_risk"].sum())
    hazard = float(later["churned"].sum()) / exposure if exposure else 1.0
    while len(curve) < horizon:
        curve.append(curve[-1] * (1.0 - hazard))
    lifetime = float(sum(curve[:horizon]))
    arpu = float(m[m > 0].mean())
    return {
        "months": table,
        "survival": km,
        "arpu_month": arpu,
        "expected_lifetime_months": lifetime,
        "ltv": arpu * lifetime,
    }


# ---------------------------------------------------------------- RFM and cohort revenue

RFM_SEGMENTS = (
    # (name, recency score range, frequency+monetary score range) in the usual RFM grid.
    ("champions", (4, 5), (4, 5)),
    ("loyal", (3, 5), (3, 5)),
    ("new_customers", (4, 5), (1, 2)),
    ("at_risk", (1, 2), (3, 5)),
    ("hibernating", (1, 2), (1, 2)),
    ("need_attention", (1, 5), (1, 5)),
)


def _score(values: pd.Series, reverse: bool = False, q: int = 5) -> pd.Series:
    """Quantile score 1..q by rank (ties broken by order, so every bin is filled)."""
    ranks = values.rank(method="first", ascending=not reverse)
    return (np.ceil(ranks / len(values) * q)).clip(1, q).astype(int)


def rfm(
    tx: pd.DataFrame,
    *,
    customer: str = "customer_id",
    day: str = "day",
    amount: str = "amount",
    orders: str | None = None,
    now: int | float | None = None,
) -> pd.DataFrame:
    """Recency (days since last order), frequency (orders), monetary (sum) and 1-5 quintile scores.

    tx: one row per transaction (or per customer-day with an ``orders`` count). ``day`` is numeric days (or a
    datetime column, converted to days). ``now`` defaults to the day after the last transaction.
    """
    for c in [customer, day, amount] + ([orders] if orders else []):
        if c not in tx.columns:
            raise ValueError(f"transactions: column {c!r} is missing")
    t = tx[[customer, day, amount] + ([orders] if orders else [])].copy()
    if np.issubdtype(t[day].dtype, np.datetime64):
        t[day] = (t[day] - pd.Timestamp(0, tz=t[day].dt.tz)) / pd.Timedelta(days=1)
    bad = t[amount].isna()
    if bad.any():
        raise ValueError(
            f"transactions row {int(np.flatnonzero(bad.to_numpy())[0]) + 1}: field {amount!r} is empty"
        )
    if now is None:
        now = float(t[day].max()) + 1
    g = t.groupby(customer)
    out = pd.DataFrame(
        {
            "recency": now - g[day].max(),
            "frequency": g[orders].sum() if orders else g.size(),
            "monetary": g[amount].sum(),
        }
    )
    out["r"] = _score(out["recency"], reverse=True)
    out["f"] = _score(out["frequency"])
    out["m"] = _score(out["monetary"])
    out["rfm"] = out["r"].astype(str) + out["f"].astype(str) + out["m"].astype(str)
    fm = np.round((out["f"] + out["m"]) / 2).astype(int)
    seg = np.full(len(out), "need_attention", dtype=object)
    assigned = np.zeros(len(out), dtype=bool)
    for name, (r_lo, r_hi), (fm_lo, fm_hi) in RFM_SEGMENTS:
        hit = ~assigned & out["r"].between(r_lo, r_hi).to_numpy() & fm.between(fm_lo, fm_hi).to_numpy()
        seg[hit] = name
        assigned |= hit
    out["segment"] = seg
    return out.reset_index().rename(columns={customer: "customer_id"})


def cohort_revenue(
    tx: pd.DataFrame,
    *,
    customer: str = "customer_id",
    day: str = "day",
    amount: str = "amount",
    period_days: int = 30,
) -> pd.DataFrame:
    """Revenue per customer cohort (period of first purchase) and periods since: cumulative per customer."""
    for c in (customer, day, amount):
        if c not in tx.columns:
            raise ValueError(f"transactions: column {c!r} is missing")
    t = tx[[customer, day, amount]].copy()
    if np.issubdtype(t[day].dtype, np.datetime64):
        t[day] = (t[day] - pd.Timestamp(0, tz=t[day].dt.tz)) // pd.Timedelta(days=1)
    t["period"] = (t[day].astype(float) // period_days).astype(int)
    first = t.groupby(customer)["period"].min().rename("cohort")
    t = t.join(first, on=customer)
    t["offset"] = t["period"] - t["cohort"]
    size = first.value_counts().rename("customers")
    table = t.groupby(["cohort", "offset"])[amount].sum().rename("revenue").reset_index()
    table["customers"] = table["cohort"].map(size)
    table = table.sort_values(["cohort", "offset"]).reset_index(drop=True)
    table["cumulative_per_customer"] = table.groupby("cohort")["revenue"].cumsum() / table["customers"]
    return table
