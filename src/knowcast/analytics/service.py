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
    engine: Engine,
    *,
    target: str = "churn",
    horizon_days: int = 7,
    history_days: int = 30,
    top: int = 500,
    **model_params: Any,
) -> dict[str, Any]:
    """Churn (no activity in the next ``horizon_days``) or buy propensity (a purchase in them).

    Time split: features at cutoff T1 = end - 2*horizon with labels from [T1, T1+h) train the model; it is
    evaluated at T2 = end - horizon with labels from [T2, end), next to trivial baselines (the training
    rate for everyone; recency of the last visit for churn, number of views for buying). Then the model is
    refitted on the T2 cutoff and scores everyone active before the end of the log: ``segment`` is the
    ``top`` highest, an exportable list (user_id, score).
    """
    if target not in ("churn", "buy"):
        raise ValueError(f"target must be 'churn' or 'buy', got {target!r}")
    if horizon_days < 1 or history_days < 1:
        raise ValueError("horizon_days and history_days must be >= 1")
    _, hi = q.time_bounds(engine)
    if hi is None:
        raise ValueError("the store has no events")
    end = hi + 1
    h = horizon_days * DAY_MS
    types = ("purchase",) if target == "buy" else tuple(EVENT_TYPES)
    model_params = {**mdl.USER_PARAMS, **model_params}

    def labelled(cutoff: int) -> tuple[pd.DataFrame, Any]:
        feats = mdl.activity_features(q.user_activity(engine, cutoff, history_days), cutoff)
        did = q.users_with(engine, types, cutoff, cutoff + h)
        y = feats["user_id"].isin(did).to_numpy()
        return feats, (~y if target == "churn" else y).astype(int)

    train_x, train_y = labelled(end - 2 * h)
    test_x, test_y = labelled(end - h)
    heur = {"recency_days": "recency_days"} if target == "churn" else {"n_view": "n_view"}
    _, report = mdl.fit_and_evaluate(
        train_x, train_y, test_x, test_y, mdl.CHURN_FEATURES, target=target, cutoff=end - h,
        heuristics=heur, **model_params,
    )  # fmt: skip
    final = mdl.ScoreModel(mdl.CHURN_FEATURES, **model_params).fit(test_x, test_y)
    now = mdl.activity_features(q.user_activity(engine, end, history_days), end)
    seg = mdl.segment(now, final.predict_proba(now), top=top)
    return {"target": target, "evaluation": report.model, "report": report, "segment": seg}


# ---------------------------------------------------------------- commercial value of videos and lives


def commercial_value(
    engine: Engine,
    *,
    window_minutes: int = 60,
    horizon_days: float = 3.0,
    lookback_days: float = 3.0,
    test_fraction: float = 0.3,
    creator_id: str | None = None,
    **model_params: Any,
) -> dict[str, Any]:
    """Commercial-value score of each short video and live from its first hour.

    Label: the item drove at least one purchase of what it promotes within ``horizon_days`` of its first
    view (queries.promoter_early_signals). Only items that promote something are scored. The model is
    trained on the earlier items and evaluated on the later ones (models.time_split), next to trivial
    baselines (the training rate; first-hour views alone; first-hour clicks on the promoted items alone).
    Then it is refitted on every item with a complete label window and scores every item: ``score`` =
    P(drives a purchase), ``expected_revenue`` = score x the mean revenue of the items that did.
    """
    from knowcast.analytics.creators import INTENT_PHRASES

    if window_minutes < 1:
        raise ValueError(f"window_minutes must be >= 1, got {window_minutes!r}")
    sig = q.promoter_early_signals(
        engine,
        window_ms=int(window_minutes * 60_000),
        horizon_ms=int(horizon_days * DAY_MS),
        lookback_ms=int(lookback_days * DAY_MS),
        intent_phrases=INTENT_PHRASES,
    )
    sig = sig[sig["n_promoted"] > 0].reset_index(drop=True)
    _, hi = q.time_bounds(engine)
    if hi is None or not len(sig):
        raise ValueError("no short video or live that promotes a paid item has been viewed yet")
    end, h = hi + 1, int(horizon_days * DAY_MS)
    model_params = {**mdl.COMMERCIAL_PARAMS, **model_params}
    sig["drove_purchase"] = (sig["purchases"] > 0).astype(int)
    sig["label_complete"] = (sig["t0"].astype("int64") + h <= end).astype(int)
    train, test, cutoff = mdl.time_split(sig, time_col="t0", horizon=h, end=end, test_fraction=test_fraction)
    _, report = mdl.fit_and_evaluate(
        train, train["drove_purchase"].to_numpy(), test, test["drove_purchase"].to_numpy(),
        mdl.COMMERCIAL_FEATURES, target="drove_purchase", cutoff=cutoff,
        heuristics={"first_hour_views": "first_hour_views", "first_hour_clicks": "first_hour_clicks"},
        **model_params,
    )  # fmt: skip
    done = sig[sig["label_complete"] == 1]
    final = mdl.ScoreModel(mdl.COMMERCIAL_FEATURES, **model_params).fit(done, done["drove_purchase"])
    sig["score"] = final.predict_proba(sig)
    sig["expected_revenue"] = mdl.expected_revenue(
        sig["score"].to_numpy(), done["revenue"], done["drove_purchase"]
    )
    out = sig.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)
    if creator_id is not None:
        out = out[out["creator_id"] == creator_id].reset_index(drop=True)
    return {"report": report, "items": out}


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


# ---------------------------------------------------------------- growth advice


def next_topics(
    engine: Engine,
    *,
    creator_id: str | None = None,
    window_days: int = 7,
    top: int = 10,
    declared_only: bool = True,
) -> pd.DataFrame:
    """What to make next: topics whose demand rises while few items serve them (creators.rising_topics).

    Demand per tag: views, clicks and live joins of items with that tag, plus searches for it (a search
    event's ``source`` "query:<topic>"), in the last ``window_days`` against the window before; questions:
    comments that ask something (stored verdict, or the question detector) on items with that tag; supply:
    items carrying the tag. ``declared_only``: only the topics creators declare (the platform's topic
    vocabulary; free hashtags of single videos are left out), when any creator declares one.
    With ``creator_id``, each topic also shows how many items the creator has in it and its share of the
    creator's audience's viewing, and the ranking favours topics that audience watches
    (score x (1 + audience share)).
    """
    from knowcast.domain import ItemKind
    from knowcast.text.questions import is_question

    _, hi = q.time_bounds(engine)
    if hi is None:
        raise ValueError("the store has no events")
    end, w = hi + 1, window_days * DAY_MS
    cat = q.catalog(engine)
    skip = frozenset(k.value for k in ItemKind)

    def demand(lo: int, up: int) -> pd.Series:
        d = cr.tag_table(q.tag_demand(engine, lo, up), cat, "views", skip)
        terms = q.search_terms(engine, lo, up)
        if len(terms):
            t = terms[terms["term"].astype(str).str.startswith("query:")]
            extra = t.assign(tag=t["term"].str.slice(6)).groupby("tag")["n"].sum().astype(float)
            d = d.add(extra, fill_value=0.0)
        return d

    now, before = demand(end - w, end), demand(end - 2 * w, end - w)
    supply = cat.assign(n=1)
    supply_s = cr.tag_table(supply, cat, "n", skip)
    qc = q.question_comments(engine, end - w, end)
    if len(qc):
        asked = qc["is_question"].astype(object).where(qc["is_question"].notna())
        guess = qc["text"].astype(str).map(is_question)
        qc["q"] = asked.fillna(guess).astype(bool).astype(float)
        questions = cr.tag_table(qc.groupby("item_id", as_index=False)["q"].sum(), cat, "q", skip)
    else:
        questions = None
    out = cr.rising_topics(now, before, supply_s, questions, top=10_000)
    if declared_only:
        vocab = {t for v in q.creator_topics(engine)["topics"] for t in cr.tags_of(v)}
        if vocab:
            out = out[out["tag"].isin(vocab)].reset_index(drop=True)
    if creator_id is not None:
        mine = cr.tag_table(supply[supply["creator_id"] == creator_id], cat, "n", skip)
        out["creator_items"] = out["tag"].map(mine).fillna(0).astype(int)
        aud = cr.audience_interests(q.audience_item_views(engine, creator_id), cat, top=10_000)
        share = dict(zip(aud["tag"], aud["share"], strict=True))
        out["audience_share"] = out["tag"].map(share).fillna(0.0)
        out["score"] = out["score"] * (1.0 + out["audience_share"])
        out = out.sort_values("score", ascending=False, kind="stable")
    return out.head(top).reset_index(drop=True)


def promote_next(
    engine: Engine, *, creator_id: str | None = None, window_days: int = 14, top: int = 5
) -> pd.DataFrame:
    """The best paid items (of a creator) to promote in the next live (creators.promote_candidates)."""
    _, hi = q.time_bounds(engine)
    if hi is None:
        raise ValueError("the store has no events")
    demand = q.paid_item_demand(engine, creator_id=creator_id, start_ms=hi + 1 - window_days * DAY_MS)
    if not len(demand):
        raise ValueError(f"no paid item found{f' for creator {creator_id!r}' if creator_id else ''}")
    return cr.promote_candidates(demand, top=top)
