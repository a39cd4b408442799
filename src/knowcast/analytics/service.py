"""Analytics use cases: run the store queries (``queries.py``) and hand their small results to the math.

Each function takes an SQLAlchemy Engine (SQLite or PostgreSQL) and returns plain results that the API and
CLI render as JSON or CSV.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
from sqlalchemy import Engine

from knowcast.analytics import attribution as attr
from knowcast.analytics import creators as cr
from knowcast.analytics import models as mdl
from knowcast.analytics import queries as q
from knowcast.analytics import retention as ret
from knowcast.analytics import revenue as rev
from knowcast.analytics.funnel import FunnelResult, FunnelSpec, summarize_funnel
from knowcast.domain import EVENT_TYPES

DAY_MS = 86_400_000


def funnel(engine: Engine, spec: FunnelSpec) -> FunnelResult:
    """A funnel report: per-user step times from the database, summarised in memory."""
    return summarize_funnel(q.funnel_users(engine, spec), spec)


def retention(
    engine: Engine,
    *,
    start_types: Sequence[str] | None = None,
    return_types: Sequence[str] | None = None,
    period: str = "day",
    kind: str = "first_time",
    max_offset: int | None = None,
    start_ms: int | None = None,
    end_ms: int | None = None,
) -> ret.RetentionTable:
    sizes, returns = q.retention_counts(
        engine,
        start_types=tuple(start_types) if start_types else None,
        return_types=tuple(return_types) if return_types else None,
        period=period,
        kind=kind,
        start_ms=start_ms,
        end_ms=end_ms,
    )
    return ret.cohort_table(sizes, returns, period=period, max_offset=max_offset)


def stickiness(engine: Engine, *, types: Sequence[str] | None = None, mau_days: int = 30) -> pd.DataFrame:
    return ret.stickiness(q.active_users(engine, types=tuple(types) if types else None, mau_days=mau_days))


def channel_attribution(
    engine: Engine,
    *,
    lookback_days: float = 30.0,
    half_life_days: float = 7.0,
    touch_types: Sequence[str] = ("view", "click", "live_join"),
) -> dict[str, Any]:
    """Every channel model over the journeys in the store: rule-based, Markov, Shapley."""
    touches = q.channel_touches(engine, tuple(touch_types))
    convs = q.conversions(engine)
    journeys = attr.build_journeys(touches, convs, lookback_days * DAY_MS)
    if not any(j.conversions for j in journeys):
        raise ValueError("no purchase has a channel touch in its lookback window; nothing to attribute")
    table = attr.heuristic_models(journeys, half_life=half_life_days)
    mk = attr.MarkovAttribution().fit(journeys).result_
    sh = attr.shapley(journeys)
    table = table.merge(
        mk.attribution.rename(columns={"conversions": "markov", "value": "markov_value"}),
        on="channel",
        how="outer",
    ).merge(
        sh.rename(columns={"conversions": "shapley", "value": "shapley_value"}), on="channel", how="outer"
    )
    return {
        "channels": table.fillna(0.0),
        "removal_effects": mk.removal_effects,
        "journeys": len(journeys),
        "conversions": float(sum(j.conversions for j in journeys)),
    }


def content_attribution(
    engine: Engine, *, lookback_days: float = 14.0, model: str = "linear", creator_id: str | None = None
) -> pd.DataFrame:
    """Revenue, purchases and conversion rate of each short video / live from the purchases it promoted."""
    purchases, touches = q.content_touches(engine, int(lookback_days * DAY_MS))
    views = q.promoter_views(engine)
    out = attr.content_attribution(purchases, touches, views, model=model)
    cat = q.catalog(engine)[["item_id", "kind", "creator_id"]].rename(columns={"item_id": "promoter_id"})
    out = out.merge(cat, on="promoter_id", how="left")
    if creator_id is not None:
        out = out[out["creator_id"] == creator_id].reset_index(drop=True)
    return out


def revenue(
    engine: Engine, *, cpm: float = 10.0, creator_share: float = 0.5, by: str = "stream"
) -> dict[str, Any]:
    rows = q.revenue_rows(engine)
    totals = q.payer_totals(engine)
    return rev.revenue_report(
        rows, totals, ad_views=_views(engine), cpm=cpm, creator_share=creator_share, by=by
    )


def _views(engine: Engine) -> pd.DataFrame:
    stats = q.creator_item_stats(engine)
    return (
        stats[["item_id", "creator_id", "view"]].rename(columns={"view": "views"})
        if len(stats)
        else pd.DataFrame(columns=["item_id", "creator_id", "views"])
    )


def subscriptions(engine: Engine, *, month_days: int = 30) -> dict[str, Any]:
    ledger = q.user_month_amounts(engine, ("subscribe",), month_days=month_days)
    return rev.subscription_report(ledger)


def rfm(engine: Engine, *, now_day: int | None = None) -> pd.DataFrame:
    tx = q.transactions(engine)
    return rev.rfm(tx, customer="user_id", day="day", amount="amount", orders="orders", now=now_day)


def cohort_revenue(engine: Engine, *, period_days: int = 7) -> pd.DataFrame:
    tx = q.transactions(engine)
    return rev.cohort_revenue(tx, customer="user_id", day="day", amount="amount", period_days=period_days)


def user_scores(
    engine: Engine, *, target: str = "churn", horizon_days: int = 7, history_days: int = 30, top: int = 500
) -> dict[str, Any]:
    """Churn (no activity in the next ``horizon_days``) or buy propensity (a purchase in them).

    Time split: features at cutoff T1 = end - 2*horizon with labels from [T1, T1+h) train the model; it is
    evaluated at T2 = end - horizon with labels from [T2, end), then scores everyone at the end of the log.
    """
    if target not in ("churn", "buy"):
        raise ValueError(f"target must be 'churn' or 'buy', got {target!r}")
    _, hi = q.time_bounds(engine)
    if hi is None:
        raise ValueError("the store has no events")
    end = hi + 1
    h = horizon_days * DAY_MS
    types = ("purchase",) if target == "buy" else tuple(EVENT_TYPES)

    def labelled(cutoff: int) -> tuple[pd.DataFrame, Any]:
        feats = mdl.activity_features(q.user_activity(engine, cutoff, history_days), cutoff)
        did = q.users_with(engine, types, cutoff, cutoff + h)
        y = feats["user_id"].isin(did).to_numpy()
        return feats, (~y if target == "churn" else y)

    train_x, train_y = labelled(end - 2 * h)
    test_x, test_y = labelled(end - h)
    model = mdl.ScoreModel(mdl.CHURN_FEATURES).fit(train_x, train_y)
    ev = model.evaluate(test_x, test_y)
    now = mdl.activity_features(q.user_activity(engine, end, history_days), end)
    seg = mdl.segment(now, model.predict_proba(now), top=top)
    return {"target": target, "evaluation": ev, "segment": seg}


# ---------------------------------------------------------------- creators and personal brand


def creators(engine: Engine, *, lookback_days: float = 14.0, creator_id: str | None = None) -> pd.DataFrame:
    """Per creator: views, reach, engagement and completion rates, followers and growth, revenue, RPM and
    the video -> course conversion of their promoting videos and lives."""
    stats = q.creator_item_stats(engine)
    if not len(stats):
        return pd.DataFrame()
    try:
        attributed = content_attribution(engine, lookback_days=lookback_days)
    except ValueError:
        attributed = None
    out = cr.creator_summary(stats, q.creator_followers(engine), attributed)
    if creator_id is not None:
        out = out[out["creator_id"] == creator_id].reset_index(drop=True)
    return out


def content_pillars(engine: Engine, *, creator_id: str | None = None) -> pd.DataFrame:
    stats = q.creator_item_stats(engine)
    if not len(stats):
        return pd.DataFrame(columns=["creator_id", "tag", "items", "views", "engagements", "revenue"])
    return cr.content_pillars(stats, creator_id)


def best_hours(
    engine: Engine, *, creator_id: str | None = None, top: int = 3, offset_hours: int = 8
) -> pd.DataFrame:
    """Hours to post short videos and to go live, ranked; ``offset_hours`` 8 gives Beijing time."""
    return cr.best_hours(q.creator_hour_stats(engine, creator_id), top=top, offset_hours=offset_hours)


def brand_sentiment(engine: Engine, *, creator_id: str | None = None, period_days: int = 1) -> pd.DataFrame:
    """Mean comment sentiment (0 negative .. 1 positive) per creator and period.

    Comments the live pipeline has not analysed yet (no stored score) are scored here with the same
    sentiment model, so imported comment logs count too.
    """
    c = q.comment_rows(engine, creator_id)
    if not len(c):
        return pd.DataFrame(columns=["creator_id", "period", "comments", "sentiment", "date"])
    missing = c["sentiment_score"].isna()
    if missing.any():
        from knowcast.text.sentiment import default_model

        c.loc[missing, "sentiment_score"] = default_model().predict_proba(
            c.loc[missing, "text"].astype(str).tolist()
        )
    c["intent"] = c["text"].astype(str).str.contains(cr.PURCHASE_INTENT)
    out = cr.sentiment_over_time(c, period_ms=period_days * DAY_MS)
    intent = c.assign(period=c["ts"].astype("int64") // (period_days * DAY_MS))
    intent = intent.groupby(["creator_id", "period"])["intent"].sum().rename("purchase_intent_comments")
    return out.merge(intent.reset_index(), on=["creator_id", "period"], how="left")


def share_of_voice(engine: Engine, *, topic: str | None = None) -> pd.DataFrame:
    out = cr.share_of_voice(q.creator_item_stats(engine), q.creator_topics(engine))
    return out[out["topic"] == topic].reset_index(drop=True) if topic is not None else out


def audience(engine: Engine, creator_id: str, *, key: str = "city_tier", top: int = 20) -> dict[str, Any]:
    """The creator's audience: viewers by a user attribute (segments) and the tags they watch (interests)."""
    seg = q.viewer_attributes(engine, creator_id, key)
    if len(seg):
        seg["value"] = seg["value"].fillna("(unknown)")
        seg["share"] = seg["viewers"] / seg["viewers"].sum()
        seg = seg.sort_values(["viewers", "value"], ascending=[False, True]).reset_index(drop=True)
    interests = cr.audience_interests(q.audience_item_views(engine, creator_id), q.catalog(engine), top=top)
    return {"creator_id": creator_id, "key": key, "segments": seg, "interests": interests}
