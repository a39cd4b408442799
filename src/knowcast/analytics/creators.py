"""Creator and personal-brand metrics, commercial-value scoring and growth advice (pure logic).

Inputs are the aggregated tables from ``queries.py`` (per item stats, per hour stats, follows per day,
comments) and the content attribution; nothing here touches the database.
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np
import pandas as pd

ENGAGEMENTS = ("like", "comment", "share", "follow")
#: Phrases of comments that ask how to buy or what it costs: an early signal of commercial value. Plain
#: substrings (lower case), so the store can count them with portable ``LIKE`` (queries.py) and Python with
#: the same list (``PURCHASE_INTENT``).
INTENT_PHRASES: tuple[str, ...] = (
    "怎么买", "多少钱", "哪里买", "在哪买", "链接", "怎么报名", "报名", "价格", "优惠", "上车", "求购",
    "how much", "price", "where to buy", "where can i buy", "link",
)  # fmt: skip
PURCHASE_INTENT = re.compile("|".join(re.escape(p) for p in INTENT_PHRASES), re.IGNORECASE)


def tags_of(value: Any) -> list[str]:
    """Item tags from the store (a list, or JSON text on some drivers)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return [value]
    return [str(t) for t in value] if isinstance(value, (list, tuple)) else []


def creator_summary(
    item_stats: pd.DataFrame, follows: pd.DataFrame | None = None, attributed: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Per creator: views, reach, engagement rate, completion rate, followers, revenue and RPM.

    item_stats: queries.creator_item_stats (one row per item). follows: creator_id, day, follows.
    attributed: content attribution (promoter_id, revenue, buyers, viewers) for video -> course conversion.
    Reach is the sum of per-item unique viewers (an upper bound of the creator's distinct audience).
    ``revenue_per_1000_views`` is the creator's own sales and tips (net of refunds) per 1,000 views;
    ``attributed_rpm`` the revenue credited to the creator's videos and lives per 1,000 views. They are
    kept apart: a course sold through the creator's video is in both, and adding them would count it twice.
    """
    s = item_stats.copy()
    g = s.groupby("creator_id")
    out = pd.DataFrame(
        {
            "items": g.size(),
            "views": g["view"].sum() + g["live_join"].sum(),
            "reach": g["viewers"].sum(),
            **{f"{e}s": g[e].sum() for e in ENGAGEMENTS},
            "completed": g["completed"].sum(),
            "direct_revenue": g["revenue"].sum(),
        }
    )
    views = out["views"].clip(lower=1)
    out["engagement_rate"] = (out["likes"] + out["comments"] + out["shares"] + out["follows"]) / views
    out["completion_rate"] = out["completed"] / g["view"].sum().clip(lower=1)
    if follows is not None and len(follows):
        f = follows.groupby("creator_id")["follows"].sum()
        out["followers"] = f.reindex(out.index).fillna(0).astype(int)
        last7 = follows[follows["day"] > follows["day"].max() - 7].groupby("creator_id")["follows"].sum()
        out["net_growth_7d"] = last7.reindex(out.index).fillna(0).astype(int)
    if attributed is not None and len(attributed) and "creator_id" in attributed.columns:
        a = attributed.groupby("creator_id")[["revenue", "buyers", "viewers"]].sum()
        out["attributed_revenue"] = a["revenue"].reindex(out.index).fillna(0.0)
        out["video_to_course_conversion"] = (
            (a["buyers"] / a["viewers"].clip(lower=1)).reindex(out.index).fillna(0.0)
        )
    out["revenue_per_1000_views"] = out["direct_revenue"] * 1000.0 / views
    if "attributed_revenue" in out.columns:
        out["attributed_rpm"] = out["attributed_revenue"] * 1000.0 / views
    return out.reset_index().sort_values("views", ascending=False, kind="stable").reset_index(drop=True)


def content_pillars(item_stats: pd.DataFrame, creator_id: str | None = None) -> pd.DataFrame:
    """Per (creator, tag): items, views, engagement rate and revenue: which topics carry the brand."""
    s = item_stats if creator_id is None else item_stats[item_stats["creator_id"] == creator_id]
    rows = []
    for r in s.itertuples(index=False):
        for t in tags_of(r.tags):
            eng = r.like + r.comment + r.share + r.follow
            rows.append((r.creator_id, t, 1, r.view + r.live_join, eng, r.revenue))
    df = pd.DataFrame(rows, columns=["creator_id", "tag", "items", "views", "engagements", "revenue"])
    out = df.groupby(["creator_id", "tag"], as_index=False).sum()
    out["engagement_rate"] = out["engagements"] / out["views"].clip(lower=1)
    out["views_per_item"] = out["views"] / out["items"]
    return out.sort_values(["creator_id", "views"], ascending=[True, False], kind="stable").reset_index(
        drop=True
    )


def best_hours(hour_stats: pd.DataFrame, top: int = 3, offset_hours: int = 0) -> pd.DataFrame:
    """Best hours to post short videos and to go live: hours ranked by views + engagements + 5 x purchases.

    hour_stats: creator_id, kind, hour (UTC), views, engagements, purchases. ``offset_hours`` shifts to
    local time (e.g. 8 for Beijing).
    """
    h = hour_stats.copy()
    h["hour"] = (h["hour"].astype(int) + offset_hours) % 24
    h = h.groupby(["creator_id", "kind", "hour"], as_index=False)[["views", "engagements", "purchases"]].sum()
    # views + engagements + 5 x purchases: an hour that only sells (a live's closing hour) still scores.
    h["score"] = (h["views"] + h["engagements"] + 5.0 * h["purchases"]).astype(float)
    h["what"] = np.where(h["kind"] == "live", "go_live", "post")
    h = h[h["kind"].isin(["short_video", "live"])]
    h = h.sort_values(["creator_id", "what", "score"], ascending=[True, True, False], kind="stable")
    return h.groupby(["creator_id", "what"]).head(top).reset_index(drop=True)


def sentiment_over_time(comments: pd.DataFrame, period_ms: int = 86_400_000) -> pd.DataFrame:
    """Mean sentiment score (stored verdicts, 0..1) and comment counts per creator and period."""
    c = comments[comments["sentiment_score"].notna()].copy()
    c["period"] = c["ts"].astype(np.int64) // period_ms
    out = c.groupby(["creator_id", "period"]).agg(
        comments=("text", "size"), sentiment=("sentiment_score", "mean")
    )
    out = out.reset_index()
    out["date"] = [pd.Timestamp(int(p) * period_ms, unit="ms").strftime("%Y-%m-%d") for p in out["period"]]
    return out


def share_of_voice(item_stats: pd.DataFrame, creator_topics: pd.DataFrame) -> pd.DataFrame:
    """Per topic: each creator's share of the views of that topic's content.

    A topic's views are the views (and live joins) of items tagged with it. The creators compared are those
    who declare the topic or publish in it; a creator who declares it without publishing there has 0.
    """
    rows = []
    for r in item_stats.itertuples(index=False):
        for t in set(tags_of(r.tags)):
            rows.append((t, r.creator_id, float(r.view + r.live_join)))
    for r in creator_topics.itertuples(index=False):
        for t in tags_of(r.topics):
            rows.append((t, r.creator_id, 0.0))
    ct = pd.DataFrame(rows, columns=["topic", "creator_id", "views"])
    ct = ct[ct["creator_id"].notna()].groupby(["topic", "creator_id"], as_index=False)["views"].sum()
    declared = {(t, r.creator_id) for r in creator_topics.itertuples(index=False) for t in tags_of(r.topics)}
    ct["declared"] = [(t, c) in declared for t, c in zip(ct["topic"], ct["creator_id"], strict=True)]
    ct["share_of_voice"] = ct["views"] / ct.groupby("topic")["views"].transform("sum").replace(0, np.nan)
    ct["rank"] = ct.groupby("topic")["views"].rank(ascending=False, method="min").astype(int)
    ct = ct.fillna({"share_of_voice": 0.0})
    return ct.sort_values(["topic", "rank", "creator_id"], kind="stable").reset_index(drop=True)


def audience_interests(item_views: pd.DataFrame, catalog: pd.DataFrame, top: int = 20) -> pd.DataFrame:
    """What a creator's audience watches: views per tag over every item the audience viewed, and the share.

    item_views: item_id, views (queries.audience_item_views). catalog: item_id, tags.
    """
    tags = dict(zip(catalog["item_id"], catalog["tags"], strict=True))
    rows = [(t, float(v)) for i, v in zip(item_views["item_id"], item_views["views"], strict=True)
            for t in set(tags_of(tags.get(i, [])))]  # fmt: skip
    df = pd.DataFrame(rows, columns=["tag", "views"]).groupby("tag", as_index=False)["views"].sum()
    total = float(item_views["views"].sum()) or 1.0
    df["share"] = df["views"] / total
    return df.sort_values(["views", "tag"], ascending=[False, True]).head(top).reset_index(drop=True)


def intent_count(texts: pd.Series) -> int:
    return int(texts.astype(str).str.contains(PURCHASE_INTENT).sum())


def rising_topics(
    demand_now: pd.Series,
    demand_before: pd.Series,
    supply: pd.Series,
    questions: pd.Series | None = None,
    top: int = 10,
) -> pd.DataFrame:
    """Topics with rising demand and little supply: what to make next.

    demand_*: views per tag in the recent and the previous window; supply: items per tag; questions:
    live-room / comment questions per tag. score = growth x recent demand per item on offer.
    """
    tags = demand_now.index.union(demand_before.index).union(supply.index)
    d = pd.DataFrame(index=tags)
    d["demand_now"] = demand_now.reindex(tags).fillna(0.0)
    d["demand_before"] = demand_before.reindex(tags).fillna(0.0)
    d["supply"] = supply.reindex(tags).fillna(0).astype(int)
    d["questions"] = questions.reindex(tags).fillna(0).astype(int) if questions is not None else 0
    d["growth"] = (d["demand_now"] + 1.0) / (d["demand_before"] + 1.0)
    d["demand_per_item"] = (d["demand_now"] + 10.0 * d["questions"]) / (d["supply"] + 1.0)
    d["score"] = d["growth"] * d["demand_per_item"]
    d = d[d["demand_now"] > 0]
    return d.sort_values("score", ascending=False).head(top).rename_axis("tag").reset_index()


def promote_candidates(demand: pd.DataFrame, top: int = 5) -> pd.DataFrame:
    """The best paid items to promote in the next live: expected sales among people already interested.

    demand: queries.paid_item_demand rows (clickers, carters, buyers, revenue, open_users, price).
    p_buy = (buyers + 1) / (clickers + carters + 2) is the item's smoothed conversion of interest into a
    sale; expected_revenue = p_buy x price x (open_users + 1): what a live could still sell to the people
    who clicked or carted it and did not buy, plus one newcomer. Items nobody showed interest in rank by
    p_buy x price alone.
    """
    d = demand.copy()
    price = pd.to_numeric(d["price"], errors="coerce").fillna(0.0)
    d["p_buy"] = (d["buyers"] + 1.0) / (d["clickers"] + d["carters"] + 2.0)
    d["expected_revenue"] = d["p_buy"] * price * (d["open_users"] + 1.0)
    d = d.sort_values(["expected_revenue", "item_id"], ascending=[False, True], kind="stable")
    return d.head(top).reset_index(drop=True)


def tag_table(values: pd.DataFrame, catalog: pd.DataFrame, value: str, skip: frozenset[str]) -> pd.Series:
    """Sum ``value`` per tag: an item's value goes to each of its tags (kind names like "course" skipped)."""
    tags = dict(zip(catalog["item_id"], catalog["tags"], strict=True))
    acc: dict[str, float] = {}
    for i, v in zip(values["item_id"], values[value], strict=True):
        for t in set(tags_of(tags.get(i, []))):
            if t not in skip:
                acc[t] = acc.get(t, 0.0) + float(v)
    return pd.Series(acc, dtype=float)
