"""Pages: live console, experiments, analytics (funnels, retention, attribution, revenue), data.

Other areas' services are imported inside handlers: a module that has not landed yet (or fails) gives the
page's fallback or a clear empty state, never a broken page.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, Response

from knowcast.web import charts as ch
from knowcast.web import queries as q
from knowcast.web.app import (
    NotFound,
    check_csrf,
    lang_of,
    own_creator,
    redirect,
    render,
    require,
    tz_offset_min,
)
from knowcast.web.i18n import translate
from knowcast.web.pages import day_label, engine_of, window

router = APIRouter(include_in_schema=False)
DAY = q.DAY_MS
EVENT_TYPES = ("impression", "view", "like", "comment", "share", "follow", "click", "add_to_cart", "purchase",
               "refund", "subscribe", "tip", "live_join", "live_leave", "exposure")  # fmt: skip
BREAKDOWNS = ("", "channel", "device", "source", "creator")


# ----------------------------------------------------------------------------- live
def stream_route_exists(request: Request) -> bool:
    """Whether the live area's WebSocket ``/v1/rooms/{room_id}/stream`` is mounted on this app."""
    # Newer FastAPI keeps included routers nested, so look at the live router module itself too.
    if any(getattr(r, "path", "") == "/v1/rooms/{room_id}/stream" for r in request.app.routes):
        return True
    try:
        from knowcast.api.routers.live import router
    except ModuleNotFoundError:
        return False
    mounted = any(getattr(r, "original_router", None) is router or getattr(r, "router", None) is router
                  for r in request.app.routes)
    return mounted or any(getattr(r, "path", "") == "/v1/rooms/{room_id}/stream" for r in router.routes)


def _verdicts_for(rows: list[dict]) -> list[dict]:
    """Stored comments as the console's message format; verdicts computed now where none were stored."""
    mod = None
    out = []
    for r in rows:
        verdict: dict[str, Any] = {
            "action": r["moderation"] or "pass",
            "category": r["category"],
            "matched": r["matched"],
        }
        if r["moderation"] is None:
            try:
                if mod is None:
                    from knowcast.text.moderation import default_moderator

                    mod = default_moderator()
                verdict = mod.moderate(r["text"]).to_dict()
            except Exception:  # noqa: S110 (the text area may be absent: show unmoderated)
                verdict = {"action": "pass"}
        out.append(
            {
                "comment_id": r["id"],
                "ts": r["ts"] / 1000.0,
                "user_id": r["user_id"],
                "text": r["text"],
                "moderation": verdict,
                "sentiment": {"label": r["sentiment"] or "", "score": r["sentiment_score"]},
                "is_question": bool(r["is_question"])
                if r["is_question"] is not None
                else r["text"].rstrip().endswith(("?", "？", "吗")),
            }
        )
    return out[::-1]


@router.get("/live", response_class=HTMLResponse)
def live_index(request: Request) -> HTMLResponse:
    acct = require(request)
    rows = q.rooms(engine_of(request), acct.creator_id if acct.is_creator else None)
    return render(request, "live_index.html", page_title="Live", rooms=rows, charts_needed=False)


@router.get("/live/{room_id}", response_class=HTMLResponse)
def live_console(request: Request, room_id: str) -> HTMLResponse:
    acct = require(request)
    eng = engine_of(request)
    room = q.room(eng, room_id)
    if room is None:
        raise NotFound(f"no room {room_id!r}")
    own_creator(acct, room["creator_id"])
    history = _verdicts_for(q.room_comments(eng, room_id, 200))
    minutes = q.room_minutes(eng, room_id)
    if minutes:
        series = [
            {
                "minute": m["minute_ts"] // 60000 if m["minute_ts"] > 1e10 else m["minute_ts"],
                "viewers": m["viewers"],
                "gmv": m["gmv"],
                "gifts": m["gift_amount"],
            }
            for m in minutes
        ]
    else:
        series, viewers = [], 0
        for m in q.room_event_minutes(eng, room_id):
            viewers = max(0, viewers + (m["joins"] or 0) - (m["leaves"] or 0))
            series.append(
                {
                    "minute": int(m["minute"]),
                    "viewers": viewers,
                    "gmv": m["gmv"] or 0,
                    "gifts": m["gifts"] or 0,
                }
            )
    boot = {
        "room_id": room_id,
        "ws": f"/v1/rooms/{room_id}/stream" if stream_route_exists(request) else None,
        "history": history,
        "series": series[-180:],
        "i18n": {
            k: translate(k, lang_of(request))
            for k in ("blocked", "live", "connecting…", "replay of stored comments")
        },
    }
    boot["i18n"]["replay"] = boot["i18n"].pop("replay of stored comments")
    boot["i18n"]["connecting"] = boot["i18n"].pop("connecting…")
    viewers_chart = None
    if series:
        tail = series[-180:]
        labels = [_minute_label(s["minute"], tz_offset_min(request)) for s in tail]
        viewers_chart = ch.chart(
            "room-viewers",
            translate("Viewers", lang_of(request)) + " & " + translate("GMV", lang_of(request)),
            [
                {
                    "type": "scatter",
                    "mode": "lines",
                    "name": "viewers",
                    "x": labels,
                    "y": [s["viewers"] for s in tail],
                },
                {
                    "type": "bar",
                    "name": "GMV",
                    "x": labels,
                    "y": [s["gmv"] for s in tail],
                    "yaxis": "y2",
                    "opacity": 0.5,
                },
            ],
            ["minute", "viewers", "gmv", "gifts"],
            [[lb, s["viewers"], s["gmv"], s["gifts"]] for lb, s in zip(labels, tail, strict=True)],
            height=220,
            yaxis2={"overlaying": "y", "side": "right"},
        )
    return render(
        request,
        "live.html",
        page_title="Live console",
        room=room,
        viewers_chart=viewers_chart,
        boot_json=json.dumps(boot, ensure_ascii=False).replace("<", "\\u003c"),
    )


def _minute_label(minute: int, off_min: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp((minute + off_min) * 60, tz=UTC).strftime("%m-%d %H:%M")


# ----------------------------------------------------------------------------- experiments
def _exp_service() -> Any:
    try:
        from knowcast.experiments import service

        return service
    except Exception:
        return None


@router.get("/experiments", response_class=HTMLResponse)
def experiments_page(request: Request) -> HTMLResponse:
    acct = require(request, "admin", "analyst")
    rows = q.experiments(engine_of(request))
    return render(
        request,
        "experiments.html",
        page_title="Experiments",
        rows=rows,
        is_admin=acct.is_admin,
        error=request.query_params.get("error"),
        charts_needed=False,
    )


def _fallback_report(eng: Any, key: str, rows: list[dict]) -> dict[str, Any] | None:
    """A report from exposures alone (experiments imported as logs, without a spec)."""
    from knowcast.experiments.report import build_report
    from knowcast.experiments.stats import SampleStats

    arms = q.experiment_arm_stats(eng, key)
    if len(arms) < 2:
        return None
    control = next((a for a in arms if a["variant"] in ("control", "A", "a")), arms[0])
    arms = [control] + [a for a in arms if a is not control]
    conv = {
        a["variant"]: SampleStats(int(a["n"]), float(a["converters"]), float(a["converters"]), "proportion")
        for a in arms
    }
    rev = {
        a["variant"]: SampleStats(int(a["n"]), float(a["rev_sum"] or 0), float(a["rev_sq"] or 0))
        for a in arms
    }
    span_days = (
        max(((rows[0].get("last_ts") or 0) - (rows[0].get("first_ts") or 0)) / DAY, 1.0) if rows else 1.0
    )
    total = sum(int(a["n"]) for a in arms)
    return build_report(
        key,
        [a["variant"] for a in arms],
        [1.0] * len(arms),
        {"conversion": conv, "revenue_per_user": rev},
        "conversion",
        guardrails=("revenue_per_user",),
        daily_units=total / span_days,
    )


@router.get("/experiments/{key}", response_class=HTMLResponse)
def experiment_page(request: Request, key: str) -> HTMLResponse:
    acct = require(request, "admin", "analyst")
    eng = engine_of(request)
    rows = [r for r in q.experiments(eng) if r["key"] == key]
    if not rows:
        raise NotFound(f"no experiment {key!r}")
    exp = rows[0]
    report, source, err = None, "", None
    svc = _exp_service()
    if svc is not None and exp["state"] != "observed (no spec)":
        try:
            report = svc.results(eng, key)
            source = "experiments service"
        except Exception as exc:  # noqa: BLE001 (shown on the page)
            err = str(exc)
    if report is None:
        try:
            report = _fallback_report(eng, key, rows)
            source = "exposure log (no spec: equal weights assumed)"
        except Exception as exc:  # noqa: BLE001
            err = err or str(exc)
    charts = []
    lang = lang_of(request)
    if report and report.get("figure"):
        fig = report["figure"]
        tab = []
        for m in report["metrics"]:
            for r in m["rows"][1:]:
                if "effect" in r:
                    tab.append(
                        [
                            m["name"],
                            r["variant"],
                            round(r["effect"], 5),
                            round(r["ci"][0], 5),
                            round(r["ci"][1], 5),
                            round(r["p_value"], 5),
                            round(r["chance_to_win"], 4),
                        ]
                    )
        c = ch.chart(
            "forest",
            "Forest plot: " + translate("Effect", lang) + " ± CI",
            fig["data"],
            ["metric", "variant", "effect", "ci_low", "ci_high", "p_value", "chance_to_win"],
            tab,
            height=max(220, 90 + 50 * len(tab)),
        )
        c.figure["layout"].update({k: v for k, v in fig.get("layout", {}).items() if k != "title"})
        c.figure["layout"]["margin"] = {"l": 200, "r": 20, "t": 20, "b": 50}
        charts.append(c)
    daily = q.experiment_daily(eng, key)
    if daily:
        variants = sorted({d["variant"] for d in daily})
        days = sorted({int(d["day"]) for d in daily})
        cnt = {(int(d["day"]), d["variant"]): d["users"] for d in daily}
        charts.append(
            ch.bar_chart(
                "exposures",
                translate("Users exposed", lang),
                [day_label(d) for d in days],
                {v: [cnt.get((d, v), 0) for d in days] for v in variants},
                x_name="date",
                stacked=True,
                height=260,
            )
        )
    audit = []
    if svc is not None and exp["state"] != "observed (no spec)":
        try:
            audit = svc.audit_trail(eng, key)
        except Exception:  # noqa: S110
            audit = []
    return render(
        request,
        "experiment.html",
        page_title="Experiments",
        exp=exp,
        report=report,
        source=source,
        error=err or request.query_params.get("error"),
        charts=charts,
        is_admin=acct.is_admin,
        audit=audit,
    )


@router.post("/experiments", include_in_schema=False)
def experiment_create(
    request: Request,
    csrf: str = Form(""),
    key: str = Form(""),
    name: str = Form(""),
    variants: str = Form("control,treatment"),
    weights: str = Form(""),
    decision_metric: str = Form("conversion"),
    guardrails: str = Form(""),
) -> Response:
    acct = require(request, "admin")
    check_csrf(request, csrf)
    svc = _exp_service()
    if svc is None:
        return redirect("/experiments?error=" + "experiments service unavailable")
    names = [v.strip() for v in variants.split(",") if v.strip()]
    try:
        ws = [float(w) for w in weights.split(",")] if weights.strip() else [1.0] * len(names)
        spec = {
            "key": key.strip(),
            "name": name,
            "decision_metric": decision_metric,
            "variants": [{"key": n, "weight": w} for n, w in zip(names, ws, strict=True)],
            "guardrails": [g.strip() for g in guardrails.split(",") if g.strip()],
        }
        svc.create_experiment(engine_of(request), spec, actor=f"web:{acct.username}")
    except Exception as exc:  # noqa: BLE001 (shown to the admin)
        from urllib.parse import quote

        return redirect("/experiments?error=" + quote(str(exc)))
    return redirect(f"/experiments/{key.strip()}")


@router.post("/experiments/{key}/{action}", include_in_schema=False)
def experiment_action(
    request: Request, key: str, action: str, csrf: str = Form(""), coverage: str = Form("")
) -> Response:
    acct = require(request, "admin")
    check_csrf(request, csrf)
    svc = _exp_service()
    from urllib.parse import quote

    if svc is None or action not in ("start", "stop", "ramp"):
        raise NotFound(f"unknown action {action!r}")
    actor = f"web:{acct.username}"
    try:
        if action == "start":
            svc.start_experiment(engine_of(request), key, actor)
        elif action == "stop":
            svc.stop_experiment(engine_of(request), key, actor)
        else:
            svc.ramp_experiment(engine_of(request), key, float(coverage), actor)
    except Exception as exc:  # noqa: BLE001
        return redirect(f"/experiments/{quote(key)}?error=" + quote(str(exc)))
    return redirect(f"/experiments/{quote(key)}")


# ----------------------------------------------------------------------------- analytics
ANALYTICS_TABS = [
    ("/analytics/funnel", "Funnel"),
    ("/analytics/retention", "Retention"),
    ("/analytics/attribution", "Attribution"),
    ("/analytics/revenue", "Revenue"),
]


def funnel_report(
    eng: Any,
    steps: list[str],
    mode: str,
    window_days: int,
    breakdown: str | None,
    start_ms: int | None = None,
    end_ms: int | None = None,
) -> dict[str, Any]:
    """The analytics area's funnel (the same code the API calls), as a plain dict."""
    from knowcast.analytics.funnel import FunnelSpec, summarize_funnel
    from knowcast.analytics.queries import funnel_users

    spec = FunnelSpec(
        steps=tuple(steps),
        mode=mode,
        window_ms=window_days * DAY,
        breakdown=breakdown or None,
        start_ms=start_ms,
        end_ms=end_ms,
    )
    return summarize_funnel(funnel_users(eng, spec), spec).to_dict()


@router.get("/analytics/funnel", response_class=HTMLResponse)
def funnel_page(request: Request) -> HTMLResponse:
    acct = require(request)
    qp = request.query_params
    steps = [s for s in qp.getlist("step") if s] or ["view", "click", "add_to_cart", "purchase"]
    mode = qp.get("mode", "ordered")
    breakdown = qp.get("breakdown", "")
    try:
        window_days = max(1, min(90, int(qp.get("window", "7"))))
    except ValueError:
        window_days = 7
    lang = lang_of(request)
    result, error, chart = None, None, None
    if acct.is_creator:
        error = "Funnels span the whole platform: a creator account sees its own numbers on the creator page."
    elif "step" in qp:
        try:
            from knowcast.web.cache import cached

            eng = engine_of(request)
            key = f"{mode}:{window_days}:{breakdown}:" + ",".join(steps)
            result = cached(
                eng, "funnel", key, lambda: funnel_report(eng, steps, mode, window_days, breakdown or None)
            )
        except ModuleNotFoundError:
            error = "the analytics module is not installed in this build"
        except ValueError as exc:
            error = str(exc)
    if result:
        groups = sorted({r["group"] for r in result["steps"]}, key=str)
        data = []
        for g in groups:
            rs = [r for r in result["steps"] if r["group"] == g]
            data.append(
                {
                    "type": "funnel",
                    "name": str(g),
                    "y": [r["name"] for r in rs],
                    "x": [r["users"] for r in rs],
                    "textinfo": "value+percent initial",
                }
            )
        chart = ch.chart(
            "funnel",
            translate("Funnel", lang),
            data,
            ["group", "step", "name", "users", "conversion", "step_conversion", "median_seconds"],
            [
                [
                    r["group"],
                    r["step"],
                    r["name"],
                    r["users"],
                    round(r["conversion"], 4),
                    round(r["step_conversion"], 4),
                    r.get("median_seconds"),
                ]
                for r in result["steps"]
            ],
            height=300 + 30 * len(steps),
            margin={"l": 130, "r": 20, "t": 20, "b": 30},
        )
    return render(
        request,
        "funnel.html",
        page_title="Analytics",
        tabs=ANALYTICS_TABS,
        steps=steps,
        mode=mode,
        window=window_days,
        breakdown=breakdown,
        result=result,
        error=error,
        chart=chart,
        event_types=EVENT_TYPES,
        breakdowns=BREAKDOWNS,
        charts_needed=chart is not None,
    )


def retention_frames(eng: Any, period: str) -> tuple[Any, Any]:
    """Cohort sizes and returns of viewers: from the rollup (the same numbers as the analytics query, without
    grouping the event log), cached per data version."""
    import pandas as pd

    from knowcast.web.cache import cached

    def compute() -> dict[str, list]:
        got = q.view_retention(eng, period)
        if got is None:
            from knowcast.analytics.queries import retention_counts

            got = retention_counts(eng, start_types=("view",), return_types=("view",), period=period)
        return {
            "sizes": [[int(c), int(u)] for c, u in got[0][["cohort", "users"]].itertuples(index=False)],
            "ret": [
                [int(c), int(o), int(u)]
                for c, o, u in got[1][["cohort", "offset", "users"]].itertuples(index=False)
            ],
        }

    d = cached(eng, "retention", period, compute)
    return (
        pd.DataFrame(d["sizes"], columns=["cohort", "users"]),
        pd.DataFrame(d["ret"], columns=["cohort", "offset", "users"]),
    )


@router.get("/analytics/retention", response_class=HTMLResponse)
def retention_page(request: Request, period: str = "day") -> HTMLResponse:
    acct = require(request)
    if acct.is_creator:
        return render(
            request,
            "analytics_msg.html",
            page_title="Analytics",
            tabs=ANALYTICS_TABS,
            charts_needed=False,
            message="Retention spans the whole platform: open your creator page for your audience.",
        )
    eng = engine_of(request)
    period = period if period in ("day", "week") else "day"
    lang = lang_of(request)
    chart, error = None, None
    try:
        sizes, ret = retention_frames(eng, period)
    except ModuleNotFoundError:
        sizes, ret, error = None, None, "the analytics module is not installed in this build"
    if sizes is not None and len(sizes):
        p = DAY if period == "day" else 7 * DAY
        cohorts = sorted(int(c) for c in sizes["cohort"])
        size = {int(r.cohort): int(r.users) for r in sizes.itertuples()}
        maxo = int(ret["offset"].max()) if len(ret) else 0
        cell = {(int(r.cohort), int(r.offset)): int(r.users) for r in ret.itertuples()}
        z, text = [], []
        for c in cohorts:
            z.append(
                [
                    round(cell.get((c, o), 0) / size[c], 4)
                    if o <= maxo - (c - cohorts[0]) or (c, o) in cell
                    else None
                    for o in range(1, maxo + 1)
                ]
            )
            text.append([f"{v:.0%}" if v is not None else "" for v in z[-1]])
        ylab = [day_label(c * p // DAY) + f" (n={size[c]})" for c in cohorts]
        xlab = [f"+{o}" for o in range(1, maxo + 1)]
        chart = ch.chart(
            "retention",
            translate("Retention cohorts", lang),
            [
                {
                    "type": "heatmap",
                    "z": z,
                    "x": xlab,
                    "y": ylab,
                    "text": text,
                    "texttemplate": "%{text}",
                    "colorscale": [[0, "#eef4ff"], [1, "#1d4ed8"]],
                    "zmin": 0,
                    "hoverongaps": False,
                }
            ],
            ["cohort", "users", *xlab],
            [[day_label(c * p // DAY), size[c], *row] for c, row in zip(cohorts, z, strict=True)],
            height=max(300, 24 * len(cohorts) + 120),
            yaxis={"autorange": "reversed", "automargin": True},
        )
    return render(
        request,
        "retention.html",
        page_title="Analytics",
        tabs=ANALYTICS_TABS,
        chart=chart,
        period=period,
        error=error,
        charts_needed=chart is not None,
    )


@router.get("/analytics/attribution", response_class=HTMLResponse)
def attribution_page(request: Request, lookback: int = 7) -> HTMLResponse:
    acct = require(request)
    if acct.is_creator:
        return render(
            request,
            "analytics_msg.html",
            page_title="Analytics",
            tabs=ANALYTICS_TABS,
            charts_needed=False,
            message="Attribution spans the whole platform: open your creator page for your videos' value.",
        )
    eng = engine_of(request)
    lang = lang_of(request)
    lookback = max(1, min(60, lookback))
    chart, table, error = None, [], None
    try:
        from knowcast.web.cache import cached

        # Journeys over the whole log take seconds: computed once per data version (and shared by workers).
        table = cached(eng, "attribution", str(lookback), lambda: attribution_table(eng, lookback))
    except ModuleNotFoundError:
        error = "the analytics module is not installed in this build"
    except (ValueError, KeyError) as exc:
        error = str(exc)
    if table:
        channels = [r["channel"] for r in table]
        model_names = [k for k in table[0] if k != "channel"]
        chart = ch.bar_chart(
            "attribution",
            translate("Models side by side", lang),
            channels,
            {m: [r[m] for r in table] for m in model_names},
            x_name="channel",
            height=360,
        )
    return render(
        request,
        "attribution.html",
        page_title="Analytics",
        tabs=ANALYTICS_TABS,
        chart=chart,
        lookback=lookback,
        error=error,
        charts_needed=chart is not None,
    )


def attribution_table(eng: Any, lookback: int) -> list[dict]:
    """Conversions credited per channel by each attribution model of the analytics area."""
    from knowcast.analytics import attribution as at
    from knowcast.analytics.queries import channel_touches, conversions

    touches = channel_touches(eng)
    conv = conversions(eng)
    if not (len(conv) and len(touches)):
        return []
    if "value" not in conv.columns and "amount" in conv.columns:
        conv = conv.rename(columns={"amount": "value"})
    journeys = at.build_journeys(touches, conv, lookback * DAY)
    models = {"heuristics": at.heuristic_models(journeys)}
    try:
        models["markov"] = at.markov(journeys)
    except Exception:  # noqa: S110
        pass
    try:
        models["shapley"] = at.shapley(journeys)
    except Exception:  # noqa: S110
        pass
    return _attribution_table(models)


def _attribution_table(models: dict[str, Any]) -> list[dict]:
    """Conversions credited per channel and model, whatever frame shape each model returns."""
    per: dict[str, dict[str, float]] = {}
    for mname, df in models.items():
        if df is None or not len(df):
            continue
        d = df.reset_index() if "channel" not in df.columns else df
        if "channel" not in d.columns:
            d = d.rename(columns={d.columns[0]: "channel"})
        if mname == "heuristics" and "model" in d.columns:
            val = "conversions" if "conversions" in d.columns else d.columns[-1]
            for r in d.itertuples(index=False):
                per.setdefault(str(r.channel), {})[str(r.model)] = round(float(getattr(r, val)), 3)
        else:
            cols = [c for c in d.columns if c != "channel"]
            numeric = [c for c in cols if str(d[c].dtype).startswith(("float", "int"))]
            if "conversions" in d.columns and "model" not in d.columns:
                for r in d.itertuples(index=False):
                    per.setdefault(str(r.channel), {})[mname] = round(float(r.conversions), 3)
            elif "model" in d.columns and numeric:
                for r in d.itertuples(index=False):
                    per.setdefault(str(r.channel), {})[str(r.model)] = round(float(getattr(r, numeric[0])), 3)
            else:
                for c in numeric:
                    for r in d.itertuples(index=False):
                        per.setdefault(str(r.channel), {})[c if c.startswith(mname) else f"{mname}:{c}"] = (
                            round(float(getattr(r, c)), 3)
                        )
    names = sorted({k for v in per.values() for k in v})
    return [{"channel": ch_, **{n: per[ch_].get(n, 0.0) for n in names}} for ch_ in sorted(per)]


@router.get("/analytics/revenue", response_class=HTMLResponse)
def revenue_page(request: Request, days: int = 30) -> HTMLResponse:
    acct = require(request)
    days = max(7, min(365, days))
    w = window(request, days)
    lang = lang_of(request)
    charts, totals = [], []
    if w is not None:
        rows = q.revenue_daily(
            engine_of(request), w["start"], w["end"], w["off"], acct.creator_id if acct.is_creator else None
        )
        streams = sorted({r["stream"] for r in rows})
        amt = {(int(r["day"]), r["stream"]): round(float(r["amount"] or 0), 2) for r in rows}
        labels = [day_label(d) for d in w["days"]]
        c = ch.bar_chart(
            "revenue",
            translate("Revenue by stream", lang),
            labels,
            {s: [amt.get((d, s), 0.0) for d in w["days"]] for s in streams},
            x_name="date",
            height=360,
        )
        c.figure["layout"]["barmode"] = "relative"
        charts.append(c)
        totals = sorted(
            (
                {
                    "stream": s,
                    "amount": sum(v for (d, s2), v in amt.items() if s2 == s),
                    "orders": sum(int(r["orders"]) for r in rows if r["stream"] == s),
                }
                for s in streams
            ),
            key=lambda r: -r["amount"],
        )
    return render(
        request,
        "revenue.html",
        page_title="Analytics",
        tabs=ANALYTICS_TABS,
        charts=charts,
        totals=totals,
        days=days,
        as_of=w["as_of"] if w else None,
        charts_needed=bool(charts),
    )


# ----------------------------------------------------------------------------- data
@router.get("/data", response_class=HTMLResponse)
def data_page(request: Request) -> HTMLResponse:
    require(request, "admin", "analyst")
    eng = engine_of(request)
    return render(
        request,
        "data.html",
        page_title="Data",
        runs=q.import_runs(eng),
        report=None,
        counts=q.counts(eng),
        charts_needed=False,
    )


@router.post("/data/import", response_class=HTMLResponse)
async def data_import(
    request: Request,
    csrf: str = Form(""),
    kind: str = Form("events"),
    dry_run: str = Form(""),
    on_error: str = Form("abort"),
    file: UploadFile = File(...),
) -> HTMLResponse:
    acct = require(request, "admin", "analyst")
    check_csrf(request, csrf)
    from knowcast.ingest.service import KINDS, ImportRejected, import_file

    eng = engine_of(request)
    if kind not in KINDS:
        raise NotFound(f"unknown kind {kind!r}")
    name = Path(file.filename or "upload.csv").name
    suffix = "".join(Path(name).suffixes[-2:]) or ".csv"
    report, error = None, None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"upload{suffix}"
        path.write_bytes(await file.read())
        try:
            report = import_file(
                eng, kind, path, dry_run=bool(dry_run), on_error="skip" if on_error == "skip" else "abort"
            )
        except ImportRejected as exc:
            report = exc.report
            error = str(exc)
        except (ValueError, TypeError) as exc:
            error = str(exc)
    if report is not None:
        report.source = name
    if report is not None and not dry_run:
        from knowcast.services.rollups import forget

        forget()  # the next page checks the data token at once instead of after CHECK_S
    _ = acct
    return render(
        request,
        "data.html",
        page_title="Data",
        runs=q.import_runs(eng),
        report=report,
        error=error,
        counts=q.counts(eng),
        charts_needed=False,
    )


@router.get("/data/keys", response_class=HTMLResponse)
def keys_page(request: Request) -> HTMLResponse:
    require(request, "admin")
    return render(
        request,
        "keys.html",
        page_title="API keys",
        keys=q.api_keys(engine_of(request)),
        secret=None,
        charts_needed=False,
    )


@router.post("/data/keys", response_class=HTMLResponse)
def keys_create(
    request: Request, csrf: str = Form(""), name: str = Form(""), scopes: list[str] = Form([])
) -> HTMLResponse:
    require(request, "admin")
    check_csrf(request, csrf)
    from knowcast.api.security import create_api_key

    secret, error = None, None
    with request.app.state.store.sessions() as s:
        try:
            _, secret = create_api_key(s, name, scopes)
            s.commit()
        except ValueError as exc:
            error = str(exc)
    resp = render(
        request,
        "keys.html",
        page_title="API keys",
        keys=q.api_keys(engine_of(request)),
        secret=secret,
        error=error,
        charts_needed=False,
    )
    resp.headers["Cache-Control"] = "no-store"
    return resp


@router.post("/data/keys/{key_id}/revoke")
def keys_revoke(request: Request, key_id: int, csrf: str = Form("")) -> Response:
    require(request, "admin")
    check_csrf(request, csrf)
    from knowcast.api.security import revoke_api_key

    with request.app.state.store.sessions() as s:
        revoke_api_key(s, key_id)
        s.commit()
    return redirect("/data/keys")


_ = tz_offset_min
