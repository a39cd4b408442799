"""Pages: overview, content, users and segments, recommendations, creators.

Handlers are thin: check the account, call a query (``queries.py``) or a service of another area (imported
lazily, so a missing module degrades to the built-in fallback instead of breaking the page), shape charts,
render a template.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from knowcast.web import charts as ch
from knowcast.web import queries as q
from knowcast.web.app import NotFound, own_creator, render, require, tz_offset_min
from knowcast.web.i18n import translate

router = APIRouter(include_in_schema=False)
DAY = q.DAY_MS


def engine_of(request: Request) -> Any:
    return request.app.state.store.engine


def day_label(day: int) -> str:
    """A day number (already shifted to the viewer's zone) as YYYY-MM-DD."""
    return datetime.fromtimestamp(day * 86400, tz=UTC).strftime("%Y-%m-%d")


def window(request: Request, days: int) -> dict[str, Any] | None:
    """The last ``days`` days up to the latest data day, in the viewer's time zone (None: no events)."""
    eng = engine_of(request)
    lo, hi = q.data_bounds(eng)
    if hi is None:
        return None
    off = tz_offset_min(request) * 60_000
    today = (hi + off) // DAY
    first = today - days + 1
    return {
        "off": off,
        "today": today,
        "first": first,
        "start": first * DAY - off,
        "end": (today + 1) * DAY - off,
        "as_of": hi,
        "lo": lo,
        "days": list(range(first, today + 1)),
    }


def _fill(rows: list[dict], days: list[int], keys: tuple[str, ...]) -> list[dict]:
    by = {r["day"]: r for r in rows}
    return [by.get(d) or {"day": d, **{k: 0 for k in keys}} for d in days]


KPI_KEYS = ("active_users", "views", "watch_hours", "gmv", "revenue", "paying_users", "conversion",
            "subscriptions", "tips", "refunds")  # fmt: skip


@router.get("/", response_class=HTMLResponse)
def overview(request: Request) -> HTMLResponse:
    acct = require(request)
    t = lambda s: translate(s, _lang(request))  # noqa: E731
    creator = acct.creator_id if acct.is_creator else None
    w = window(request, 14)
    if w is None:
        return render(request, "overview.html", page_title="Overview", empty=True)
    eng = engine_of(request)
    days = _fill(q.daily_kpis(eng, w["start"], w["end"], w["off"], creator), w["days"], KPI_KEYS)
    last7 = q.window_totals(eng, w["end"] - 7 * DAY, w["end"], creator, w["off"])
    cards = []
    for key, label, digits, pct in (
        ("active_users", "Active users", 0, False),
        ("views", "Views", 0, False),
        ("watch_hours", "Watch time (h)", 1, False),
        ("gmv", "GMV", 0, False),
        ("revenue", "Revenue", 0, False),
        ("paying_users", "Paying users", 0, False),
        ("conversion", "Conversion", 2, True),
    ):
        series = [float(d[key] or 0) for d in days]
        today, yday = series[-1], series[-2] if len(series) > 1 else 0.0
        if key in ("active_users", "paying_users"):
            l7 = float(last7[key] or 0)
        elif key == "conversion":
            l7 = (last7["paying_users"] / last7["active_users"]) if last7["active_users"] else 0.0
        else:
            l7 = sum(series[-7:])
        cards.append(
            {
                "key": key,
                "label": t(label),
                "today": today,
                "yesterday": yday,
                "last7": l7,
                "digits": digits,
                "pct": pct,
                "delta": ((today - yday) / yday) if yday else None,
                "spark": ch.sparkline_svg(series),
            }
        )
    labels = [day_label(d["day"]) for d in days]
    trend = ch.line_chart(
        "trend",
        t("Active users") + " / " + t("Views"),
        labels,
        {
            "active_users": [d["active_users"] for d in days],
            "views": [d["views"] for d in days],
            "paying_users": [d["paying_users"] for d in days],
        },
    )
    rev = ch.bar_chart(
        "revenue-streams",
        t("Revenue by stream"),
        labels,
        {
            "purchases": [round(d["gmv"] or 0, 2) for d in days],
            "subscriptions": [round(d["subscriptions"] or 0, 2) for d in days],
            "tips": [round(d["tips"] or 0, 2) for d in days],
            "refunds": [-abs(round(d["refunds"] or 0, 2)) for d in days],
        },
        x_name="date",
        stacked=True,
    )
    rev.figure["layout"]["barmode"] = "relative"
    flags = q.anomalies(days, ("active_users", "views", "gmv", "revenue", "paying_users"))
    top_i = q.top_items(eng, w["end"] - 7 * DAY, w["end"], creator, off_ms=w["off"])
    from knowcast.web.cache import cached

    # The audience column counts distinct users over the top creators' events: cached per data version.
    top_c = (
        []
        if creator
        else cached(
            eng,
            "top_creators",
            f"{w['end']}:{w['off']}",
            lambda: q.top_creators(eng, w["end"] - 7 * DAY, w["end"], off_ms=w["off"]),
        )
    )
    return render(
        request,
        "overview.html",
        page_title="Overview",
        empty=False,
        cards=cards,
        charts=[trend, rev],
        flags=flags,
        top_items=top_i,
        top_creators=top_c,
        as_of=w["as_of"],
        today_label=labels[-1],
        scope_creator=creator,
    )


def _lang(request: Request) -> str:
    from knowcast.web.app import lang_of

    return lang_of(request)


# ----------------------------------------------------------------------------- content
@router.get("/content", response_class=HTMLResponse)
def content(
    request: Request,
    kind: str = "",
    creator: str = "",
    tag: str = "",
    topic: str = "",
    q_: str = "",
    page: int = 1,
) -> HTMLResponse:
    acct = require(request)
    if acct.is_creator:
        if creator and creator != acct.creator_id:
            own_creator(acct, creator)
        creator = acct.creator_id or ""
    eng = engine_of(request)
    qtext = request.query_params.get("q", q_)
    page = max(page, 1)
    rows, total = q.list_items(
        eng,
        kind or None,
        creator or None,
        tag or None,
        topic or None,
        qtext or None,
        limit=50,
        offset=(page - 1) * 50,
    )
    opts = q.filter_options(eng, acct.creator_id if acct.is_creator else None)
    return render(
        request,
        "content.html",
        page_title="Content",
        rows=rows,
        total=total,
        opts=opts,
        page=page,
        f={"kind": kind, "creator": creator, "tag": tag, "topic": topic, "q": qtext},
        pages=(total + 49) // 50,
    )


def _item_funnel(eng: Any, it: dict) -> tuple[list[str], list[int], str]:
    """An ordered funnel on this item with the analytics module (falls back to distinct users per step)."""
    if it["kind"] in ("short_video", "live") and it["promotes"]:
        paid = [p["id"] for p in it["promotes"]]
        first = "view" if it["kind"] == "short_video" else "live_join"
        steps = [
            {"type": "impression", "where": {"item_id": it["id"]}, "name": "impression"},
            {"type": first, "where": {"item_id": it["id"]}, "name": first},
            {"type": "purchase", "where": {"item_id__in": paid}, "name": "purchase (promoted)"},
        ]
    else:
        steps = [
            {"type": t, "where": {"item_id": it["id"]}, "name": t}
            for t in ("impression", "view", "click", "add_to_cart", "purchase")
        ]
        if it["kind"] in ("short_video", "live"):
            steps = steps[:2] + [{"type": "like", "where": {"item_id": it["id"]}, "name": "like"}]
    try:
        from knowcast.analytics.funnel import FunnelSpec, summarize_funnel

        spec = FunnelSpec(steps=tuple(steps), window_ms=7 * DAY)
        # Every step is filtered to this item (or the items it promotes): read only those items' events
        # through the (item_id, ts) index and compute the ordered funnel in memory (the SQL funnel's
        # semantics; a test compares both) instead of a store-wide funnel query.
        ids = sorted({it["id"], *[p["id"] for p in it["promotes"]]})
        types = tuple(sorted({s_["type"] for s_ in steps}))
        times = q.ordered_funnel_times(q.item_funnel_events(eng, ids, types), steps, 7 * DAY)
        res = summarize_funnel(times, spec)
        st = res.steps[res.steps["group"] == "(all)"].sort_values("step")
        names = [s["name"] for s in steps]
        vals = [int(v) for v in st["users"].tolist()]
        vals += [0] * (len(names) - len(vals))
        return names, vals, "ordered funnel (7-day window)"
    except Exception:  # analytics missing or changed: distinct users per step
        c = q.item_event_counts(eng, it["id"])
        names = [s["name"] for s in steps]
        return names, [c.get(s["type"], 0) for s in steps], "distinct users per step"


def item_data(eng: Any, it: dict) -> dict[str, Any]:
    """An item page's computed parts: funnel, attribution (promoter) or drivers (paid item), similar items."""
    promoter = it["kind"] in ("short_video", "live")
    return {
        "funnel": _item_funnel(eng, it),
        "attributed": q.promoter_attribution(eng, it["id"]) if promoter else None,
        "drivers": None if promoter else q.paid_item_drivers(eng, it["id"]),
        "similar": q.similar_items(eng, it),
    }


@router.get("/content/{item_id}", response_class=HTMLResponse)
def item_page(request: Request, item_id: str) -> HTMLResponse:
    acct = require(request)
    eng = engine_of(request)
    it = q.item(eng, item_id)
    if it is None:
        raise NotFound(f"no item {item_id!r}")
    own_creator(acct, it["creator_id"])
    lang = _lang(request)
    from knowcast.web.cache import cached

    # The item's funnel, attributed revenue and neighbours change only with the data: cached per version.
    data = cached(eng, "item", item_id, lambda: item_data(eng, it))
    names, vals, how = data["funnel"]
    funnel = ch.chart(
        "item-funnel",
        translate("Funnel", lang) + f" ({how})",
        [{"type": "funnel", "y": names, "x": vals, "textinfo": "value+percent initial"}],
        ["step", "users"],
        list(zip(names, vals, strict=True)),
        height=260,
        margin={"l": 150, "r": 20, "t": 20, "b": 30},
    )
    charts = [funnel]
    f = it["features"] or {}
    topics = f.get("topics") or {}
    if isinstance(topics, dict) and topics:
        mix = topics.get("mix", topics) if isinstance(topics.get("mix", topics), dict) else topics
        pairs = sorted(
            ((str(k), float(v)) for k, v in mix.items() if isinstance(v, (int, float))), key=lambda p: -p[1]
        )[:8]
        if pairs:
            charts.append(
                ch.bar_chart(
                    "topic-mix",
                    translate("Topic mix", lang),
                    [p[0] for p in pairs],
                    {"weight": [round(p[1], 3) for p in pairs]},
                    x_name="topic",
                    horizontal=True,
                    height=240,
                )
            )
    attributed, drivers, similar = data["attributed"], data["drivers"], data["similar"]
    if acct.is_creator:
        similar = [
            s
            for s in similar
            if s.get("id") and q.item(eng, s["id"]) and q.item(eng, s["id"])["creator_id"] == acct.creator_id
        ]
    return render(
        request,
        "item.html",
        page_title="Content",
        it=it,
        f=f,
        charts=charts,
        attributed=attributed,
        drivers=drivers,
        similar=similar,
    )


# ----------------------------------------------------------------------------- users and segments
@router.get("/users", response_class=HTMLResponse)
def users(request: Request) -> HTMLResponse:
    require(request, "admin", "analyst")
    eng = engine_of(request)
    segs = q.segments(eng)
    tiers = []
    if not segs:
        _, hi = q.data_bounds(eng)
        if hi is not None:
            tiers = [{**r, "description": q.TIER_TEXT.get(r["tier"], "")} for r in q.activity_tiers(eng, hi)]
    lang = _lang(request)
    chart = None
    src = segs or [{"id": r["tier"], "size": r["size"]} for r in tiers]
    if src:
        chart = ch.bar_chart(
            "segment-sizes",
            translate("Segments", lang),
            [s["id"] for s in src],
            {"users": [s["size"] for s in src]},
            x_name="segment",
            height=260,
        )
    uid = request.query_params.get("user", "").strip()
    sample = q._rows(eng, "SELECT id FROM users ORDER BY id LIMIT 12")
    return render(
        request,
        "users.html",
        page_title="Users",
        segs=segs,
        tiers=tiers,
        chart=chart,
        uid=uid,
        sample=[r["id"] for r in sample],
    )


def _profile_charts(prof: dict, lang: str, prefix: str) -> list[ch.Chart]:
    out = []
    if prof["interests"]:
        out.append(
            ch.bar_chart(
                f"{prefix}-interests",
                translate("Interests", lang),
                [k for k, _ in prof["interests"]],
                {"views": [v for _, v in prof["interests"]]},
                x_name="tag",
                horizontal=True,
                height=300,
            )
        )
    if prof["channels"]:
        out.append(
            ch.chart(
                f"{prefix}-channels",
                translate("Channels", lang),
                [
                    {
                        "type": "pie",
                        "labels": [c["channel"] for c in prof["channels"]],
                        "values": [c["views"] for c in prof["channels"]],
                        "hole": 0.45,
                    }
                ],
                ["channel", "views"],
                [[c["channel"], c["views"]] for c in prof["channels"]],
                height=300,
            )
        )
    if prof["activity"]:
        out.append(
            ch.bar_chart(
                f"{prefix}-activity",
                translate("Activity", lang),
                [a["type"] for a in prof["activity"]],
                {"events": [a["n"] for a in prof["activity"]]},
                x_name="type",
                height=280,
            )
        )
    return out


def segment_data(eng: Any, seg_id: str) -> tuple[dict, dict, list[str]] | None:
    """A segment (stored, or a built-in activity tier), its profile and 20 members; None if unknown.

    The profile aggregates all members' events (seconds for a big segment), so it is cached per data
    version; tier membership comes from the per-user-day rollup."""
    from knowcast.web.cache import cached

    seg = q.segment(eng, seg_id)
    if seg is not None:
        member_sql, params = "SELECT user_id FROM segment_members WHERE segment_id = :sid", {"sid": seg_id}
    elif seg_id in q.TIER_TEXT:
        _, hi = q.data_bounds(eng)
        member_sql = f"SELECT user_id FROM ({q.tier_users_sql(eng)}) tu WHERE tier = :tier"
        params = {"recent": (hi or 0) - 7 * DAY, "tier": seg_id}
        desc = q.TIER_TEXT[seg_id]
        seg = {"id": seg_id, "name": seg_id, "description": desc, "kind": "built-in", "size": None}
    else:
        return None
    prof = cached(eng, "segment", seg_id, lambda: q.segment_profile(eng, member_sql, params))
    members = q._rows(eng, f"SELECT user_id FROM ({member_sql}) m ORDER BY user_id LIMIT 20", **params)
    return seg, prof, [m["user_id"] for m in members]


@router.get("/segments/{seg_id}", response_class=HTMLResponse)
def segment_page(request: Request, seg_id: str) -> HTMLResponse:
    require(request, "admin", "analyst")
    got = segment_data(engine_of(request), seg_id)
    if got is None:
        raise NotFound(f"no segment {seg_id!r}")
    seg, prof, members = got
    return render(
        request,
        "segment.html",
        page_title="Segments",
        seg=seg,
        prof=prof,
        charts=_profile_charts(prof, _lang(request), "seg"),
        members=members,
    )


@router.get("/users/{user_id}", response_class=HTMLResponse)
def user_page(request: Request, user_id: str) -> HTMLResponse:
    require(request, "admin", "analyst")
    eng = engine_of(request)
    if not q.user_exists(eng, user_id):
        raise NotFound(f"no user {user_id!r}")
    evs = q.user_events(eng, user_id)
    prof = q.user_profile(eng, user_id)
    recs, engine_name = recommend_for(request, user_id, 10)
    return render(
        request,
        "user.html",
        page_title="Users",
        uid=user_id,
        events=evs,
        prof=prof,
        recs=recs,
        engine_name=engine_name,
        charts=_profile_charts(prof, _lang(request), "user"),
    )


# ----------------------------------------------------------------------------- recommendations
def recommend_for(
    request: Request, user_id: str, n: int = 10, model: str | None = None
) -> tuple[list[dict], str]:
    """Recommendations with reasons: the recommend service when it exists, else a transparent baseline
    (popular items of the user's favourite tags that they have not seen)."""
    eng = engine_of(request)
    try:  # the recommend area's serving layer, when it has landed
        from knowcast.recommend import service as rsvc  # type: ignore[attr-defined]

        fn = getattr(rsvc, "recommend_for_user", None) or getattr(rsvc, "recommend", None)
        if fn is not None:
            out = fn(request.app.state.store, user_id, n=n, **({"model": model} if model else {}))
            items = out.get("items", out) if isinstance(out, dict) else out
            rows = []
            for r in items:
                r = dict(r) if isinstance(r, dict) else {"item_id": getattr(r, "item_id", str(r))}
                rows.append(
                    {
                        "id": r.get("item_id") or r.get("id"),
                        "title": r.get("title", ""),
                        "kind": r.get("kind", ""),
                        "score": r.get("score"),
                        "reasons": r.get("reasons") or ([r["reason"]] if r.get("reason") else []),
                    }
                )
            return rows, (out.get("model") if isinstance(out, dict) else None) or "recommend service"
    except Exception:  # noqa: S110 (fall back to the baseline below)
        pass
    return baseline_recommend(eng, user_id, n), "baseline: popular in your tags"


def baseline_recommend(eng: Any, user_id: str, n: int = 10) -> list[dict]:
    prof = q.segment_profile(eng, ":u", {"u": user_id})
    likes = dict(prof["interests"])
    seen = q.seen_items(eng, user_id)
    _, hi = q.data_bounds(eng)
    pop = q.popular_items(eng, (hi or 0) - 14 * DAY)
    total = max((p["views"] for p in pop), default=1)
    out = []
    for p in pop:
        if p["id"] in seen:
            continue
        tags = [t for t in q._json_list(p["tags"]) if t != p["kind"]]
        match = [t for t in tags if t in likes]
        score = p["views"] / total + sum(likes[t] for t in match) / (sum(likes.values()) or 1)
        reasons = [f"you watch {t}" for t in match[:2]] or ["popular in the last 14 days"]
        out.append(
            {
                "id": p["id"],
                "title": p["title"],
                "kind": p["kind"],
                "score": round(score, 4),
                "reasons": reasons,
            }
        )
    out.sort(key=lambda r: -r["score"])
    return out[:n]


@router.get("/recommend", response_class=HTMLResponse)
def recommend_page(
    request: Request, user: str = "", segment: str = "", a: str = "", b: str = ""
) -> HTMLResponse:
    require(request, "admin", "analyst")
    eng = engine_of(request)
    versions = q.model_versions(eng)
    recs, engine_name, target = [], "", ""
    if user:
        if not q.user_exists(eng, user):
            raise NotFound(f"no user {user!r}")
        recs, engine_name = recommend_for(request, user, 10)
        target = f"user {user}"
    elif segment:
        # A segment's recommendation: what its most typical member gets (the member with most views).
        seg_users = q._rows(
            eng, "SELECT user_id FROM segment_members WHERE segment_id = :s LIMIT 1", s=segment
        )
        if not seg_users:
            seg_users = q._rows(
                eng,
                "SELECT user_id FROM events WHERE type = 'view' GROUP BY user_id "
                "ORDER BY COUNT(*) DESC LIMIT 1",
            )
        if seg_users:
            recs, engine_name = recommend_for(request, seg_users[0]["user_id"], 10)
            target = f"segment {segment} (as {seg_users[0]['user_id']})"
    compare = None
    if a and b and user:
        ra, _ = recommend_for(request, user, 10, model=a)
        rb, _ = recommend_for(request, user, 10, model=b)
        compare = list(zip(ra + [{}] * (10 - len(ra)), rb + [{}] * (10 - len(rb)), strict=False))
    evals = [v for v in versions if v["metrics"]]
    metric_names = sorted({k for v in evals for k, x in v["metrics"].items() if isinstance(x, (int, float))})
    segs = q.segments(eng) or [{"id": k, "name": k} for k in q.TIER_TEXT]
    sample = q._rows(eng, "SELECT id FROM users ORDER BY id LIMIT 8")
    return render(
        request,
        "recommend.html",
        page_title="Recommendations",
        recs=recs,
        engine_name=engine_name,
        target=target,
        user=user,
        segment=segment,
        versions=versions,
        evals=evals,
        metric_names=metric_names,
        compare=compare,
        a=a,
        b=b,
        segs=segs,
        sample=[r["id"] for r in sample],
    )


# ----------------------------------------------------------------------------- creators
@router.get("/creators", response_class=HTMLResponse)
def creators_page(request: Request) -> HTMLResponse:
    acct = require(request)
    if acct.is_creator:
        from knowcast.web.app import redirect

        return redirect(f"/creators/{acct.creator_id}")  # type: ignore[return-value]
    rows = q.creators(engine_of(request))
    for r in rows:
        r["topics"] = q._json_list(r["topics"])
    return render(request, "creators.html", page_title="Creators", rows=rows)


def creator_data(eng: Any, creator_id: str, off: int) -> dict[str, Any]:
    """The creator page's numbers, cached per data version (a creator's events are read once for all)."""
    from knowcast.web.cache import cached

    def compute() -> dict[str, Any]:
        ev = q.creator_events(eng, creator_id)
        return {
            "daily": q.creator_daily(eng, creator_id, off, ev),
            "hours": q.creator_hours(eng, creator_id, off, ev),
            "audience": q.creator_audience(eng, creator_id, ev),
            "items": q.creator_items(eng, creator_id),
            "value": q.creator_video_value(eng, creator_id),
        }

    return cached(eng, "creator", f"{creator_id}:{off}", compute)


@router.get("/creators/{creator_id}", response_class=HTMLResponse)
def creator_page(request: Request, creator_id: str) -> HTMLResponse:
    acct = require(request)
    own_creator(acct, creator_id)
    eng = engine_of(request)
    c = q.creator_row(eng, creator_id)
    if c is None:
        raise NotFound(f"no creator {creator_id!r}")
    lang = _lang(request)
    off = tz_offset_min(request) * 60_000
    data = creator_data(eng, creator_id, off)
    daily = data["daily"]
    charts = []
    if daily:
        labels = [day_label(int(d["day"])) for d in daily]
        follows, cum = [], 0
        for d in daily:
            cum += d["follows"] or 0
            follows.append(cum)
        charts.append(
            ch.line_chart(
                "creator-growth",
                translate("Growth", lang),
                labels,
                {"audience": [d["audience"] for d in daily], "new_followers_cumulative": follows},
            )
        )
        charts.append(
            ch.line_chart(
                "creator-engagement",
                translate("Engagement", lang),
                labels,
                {
                    "views": [d["views"] for d in daily],
                    "engagement_rate": [
                        round((d["engagements"] or 0) / d["views"], 4) if d["views"] else 0 for d in daily
                    ],
                },
            )
        )
    hours = data["hours"]
    if hours:
        charts.append(
            ch.bar_chart(
                "creator-hours",
                translate("Best hours", lang),
                [int(h["hour"]) for h in hours],
                {"views": [h["views"] for h in hours]},
                x_name="hour",
                height=260,
            )
        )
    aud = data["audience"]
    if aud["channels"]:
        charts.append(
            ch.chart(
                "creator-audience",
                translate("Audience", lang),
                [
                    {
                        "type": "pie",
                        "labels": [r["channel"] for r in aud["channels"]],
                        "values": [r["users"] for r in aud["channels"]],
                        "hole": 0.45,
                    }
                ],
                ["channel", "users"],
                [[r["channel"], r["users"]] for r in aud["channels"]],
                height=280,
            )
        )
    items = data["items"]
    pillars: dict[str, dict[str, float]] = {}
    for it in items:
        for tg in it["tags"]:
            if tg == it["kind"]:
                continue
            p = pillars.setdefault(tg, {"items": 0, "views": 0, "gmv": 0.0})
            p["items"] += 1
            p["views"] += it["views"] or 0
            p["gmv"] += it["gmv"] or 0
    pillar_rows = sorted(pillars.items(), key=lambda kv: -kv[1]["views"])[:8]
    if pillar_rows:
        charts.append(
            ch.bar_chart(
                "creator-pillars",
                translate("Content pillars", lang),
                [k for k, _ in pillar_rows],
                {
                    "views": [v["views"] for _, v in pillar_rows],
                    "gmv": [round(v["gmv"], 2) for _, v in pillar_rows],
                },
                x_name="tag",
                height=280,
            )
        )
    value = data["value"]
    titles = {i["id"]: i["title"] for i in items}
    for v in value:
        v["title"] = titles.get(v["id"], "")
    return render(
        request,
        "creator.html",
        page_title="Creators",
        c=c,
        charts=charts,
        items=items[:20],
        value=value,
        t0=time.time(),
    )
