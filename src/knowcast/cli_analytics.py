"""``knowcast analytics``: funnels, retention, attribution and revenue in the terminal (table, JSON, CSV)."""

from __future__ import annotations

import json
from typing import Annotated

import pandas as pd
import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(no_args_is_help=True)
console = Console()
DbOption = Annotated[str | None, typer.Option("--db", help="database URL")]
Out = Annotated[str, typer.Option("--output", "-o", help="table, json or csv")]


def _engine(db: str | None):  # type: ignore[no-untyped-def]
    from knowcast.cli import _store

    return _store(db).engine


def _show(frame: pd.DataFrame, output: str, title: str, extra: dict | None = None) -> None:
    if output == "csv":
        print(frame.to_csv(index=False), end="")
    elif output == "json":
        from knowcast.api.routers.analytics import _plain

        print(json.dumps(_plain({**(extra or {}), "rows": frame}), ensure_ascii=False, indent=2))
    else:
        table = Table(title=title)
        for c in frame.columns:
            table.add_column(str(c))
        for row in frame.itertuples(index=False):
            table.add_row(*[f"{v:.4g}" if isinstance(v, float) else str(v) for v in row])
        console.print(table)


def _fail(exc: Exception) -> typer.Exit:
    console.print(f"[red]error:[/] {exc}")
    return typer.Exit(2)


@app.command()
def funnel(
    step: Annotated[
        list[str], typer.Option("--step", help="event type per step, in order (type or type:item_kind)")
    ],
    mode: Annotated[str, typer.Option(help="ordered, strict or any_order")] = "ordered",
    window_days: Annotated[float, typer.Option(help="conversion window")] = 14.0,
    breakdown: Annotated[
        str | None, typer.Option(help="channel, device, creator, segment:<attr>, variant:<exp>")
    ] = None,
    output: Out = "table",
    db: DbOption = None,
) -> None:
    """A funnel with conversion, drop-off and time to convert per step."""
    from knowcast.analytics.funnel import FunnelSpec
    from knowcast.analytics.service import funnel as run

    steps = [{"type": s.split(":")[0], "item_kind": s.split(":")[1]} if ":" in s else s for s in step]
    try:
        spec = FunnelSpec(
            steps=tuple(steps), mode=mode, window_ms=int(window_days * 86_400_000), breakdown=breakdown
        )
        result = run(_engine(db), spec)
    except (ValueError, TypeError) as exc:
        raise _fail(exc) from None
    _show(result.steps, output, "funnel")


@app.command()
def retention(
    period: Annotated[str, typer.Option(help="day or week")] = "day",
    kind: Annotated[str, typer.Option(help="first_time or recurring")] = "first_time",
    output: Out = "table",
    db: DbOption = None,
) -> None:
    """Cohort retention rates."""
    from knowcast.analytics.service import retention as run

    try:
        result = run(_engine(db), period=period, kind=kind)
    except ValueError as exc:
        raise _fail(exc) from None
    rates = result.rates.reset_index()
    rates.columns = [str(c) for c in rates.columns]
    _show(rates, output, f"{kind} retention by {period}")


@app.command()
def attribution(
    lookback_days: Annotated[float, typer.Option(help="lookback window")] = 30.0,
    output: Out = "table",
    db: DbOption = None,
) -> None:
    """Channel attribution: rule-based models, Markov removal effect and Shapley values side by side."""
    from knowcast.analytics.service import channel_attribution as run

    try:
        out = run(_engine(db), lookback_days=lookback_days)
    except ValueError as exc:
        raise _fail(exc) from None
    _show(out["channels"], output, f"attribution over {out['journeys']} journeys")


@app.command()
def revenue(
    by: Annotated[str, typer.Option(help="stream, creator, item, channel or day")] = "stream",
    output: Out = "table",
    db: DbOption = None,
) -> None:
    """Revenue with refunds netted out, and ARPU / ARPPU / paying ratio."""
    from knowcast.analytics.service import revenue as run

    try:
        out = run(_engine(db), by=by)
    except ValueError as exc:
        raise _fail(exc) from None
    table = next((v for v in out.values() if isinstance(v, pd.DataFrame)), pd.DataFrame())
    if output == "table":
        console.print(out.get("summary", {}))
    _show(table, output, f"revenue by {by}")


CreatorOpt = Annotated[str | None, typer.Option("--creator", help="one creator id (default: all)")]


def _run(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    try:
        return fn(*args, **kwargs)
    except ValueError as exc:
        raise _fail(exc) from None


@app.command()
def subscriptions(output: Out = "table", db: DbOption = None) -> None:
    """MRR movements per 30-day month, churn rates and the survival LTV."""
    from knowcast.analytics.service import subscriptions as run

    out = _run(run, _engine(db))
    extra = {k: out.get(k) for k in ("ltv", "arpu_month", "expected_lifetime_months")}
    if output == "table":
        console.print(extra)
    _show(out["months"], output, "subscriptions", extra)


@app.command()
def rfm(output: Out = "table", db: DbOption = None) -> None:
    """RFM scores and segments of every buyer."""
    from knowcast.analytics.service import rfm as run

    _show(_run(run, _engine(db)), output, "RFM")


@app.command("cohort-revenue")
def cohort_revenue(
    period_days: Annotated[int, typer.Option(help="cohort period")] = 30,
    output: Out = "table",
    db: DbOption = None,
) -> None:
    """Revenue per first-purchase cohort and period since, cumulative per customer."""
    from knowcast.analytics.service import cohort_revenue as run

    _show(_run(run, _engine(db), period_days=period_days), output, "cohort revenue")


@app.command()
def creators(creator: CreatorOpt = None, output: Out = "table", db: DbOption = None) -> None:
    """Per creator: views, reach, engagement and completion, followers, revenue, RPM, video -> course."""
    from knowcast.analytics.service import creators as run

    _show(_run(run, _engine(db), creator_id=creator), output, "creators")


@app.command()
def pillars(creator: CreatorOpt = None, output: Out = "table", db: DbOption = None) -> None:
    """Content pillars: per creator and tag, items, views, engagement rate and revenue."""
    from knowcast.analytics.service import content_pillars as run

    _show(_run(run, _engine(db), creator_id=creator), output, "content pillars")


@app.command("best-hours")
def best_hours(
    creator: CreatorOpt = None,
    offset_hours: Annotated[int, typer.Option(help="hours added to UTC (8 = Beijing)")] = 8,
    output: Out = "table",
    db: DbOption = None,
) -> None:
    """Best hours to post short videos and to go live."""
    from knowcast.analytics.service import best_hours as run

    _show(_run(run, _engine(db), creator_id=creator, offset_hours=offset_hours), output, "best hours")


@app.command()
def sentiment(
    creator: CreatorOpt = None,
    period_days: Annotated[int, typer.Option(help="days per period")] = 1,
    output: Out = "table",
    db: DbOption = None,
) -> None:
    """Brand sentiment from comments over time, with purchase-intent comments."""
    from knowcast.analytics.service import brand_sentiment as run

    _show(_run(run, _engine(db), creator_id=creator, period_days=period_days), output, "brand sentiment")


@app.command("share-of-voice")
def share_of_voice(
    topic: Annotated[str | None, typer.Option(help="one topic")] = None,
    output: Out = "table",
    db: DbOption = None,
) -> None:
    """Each creator's share of the views of their topics' content."""
    from knowcast.analytics.service import share_of_voice as run

    _show(_run(run, _engine(db), topic=topic), output, "share of voice")


@app.command()
def audience(
    creator: Annotated[str, typer.Argument(help="creator id")],
    key: Annotated[str, typer.Option(help="user attribute for the segments")] = "city_tier",
    output: Out = "table",
    db: DbOption = None,
) -> None:
    """A creator's audience: segments by a user attribute, and the tags they watch."""
    from knowcast.analytics.service import audience as run

    out = _run(run, _engine(db), creator, key=key)
    if output == "json":
        from knowcast.api.routers.analytics import _plain

        print(json.dumps(_plain(out), ensure_ascii=False, indent=2))
        return
    _show(out["segments"], output, f"audience by {key}")
    if output == "table":
        _show(out["interests"], output, "interests")


@app.command("commercial-value")
def commercial_value(
    creator: CreatorOpt = None,
    window_minutes: Annotated[int, typer.Option(help="early-signal window")] = 60,
    horizon_days: Annotated[float, typer.Option(help="days after the first view a sale counts")] = 3.0,
    output: Out = "table",
    db: DbOption = None,
) -> None:
    """Commercial-value score per video and live from first-hour signals (AUC/Brier on a time split)."""
    from knowcast.analytics.service import commercial_value as run

    out = _run(
        run, _engine(db), creator_id=creator, window_minutes=window_minutes, horizon_days=horizon_days,
        lookback_days=horizon_days,
    )  # fmt: skip
    report = out["report"]
    if output == "table":
        _show(
            report.summary(), output, f"time split at {report.cutoff} ms, {report.n_train} items trained on"
        )
    cols = ["item_id", "kind", "creator_id", "score", "expected_revenue", "first_hour_views",
            "first_hour_intent_comments", "purchases", "revenue", "label_complete"]  # fmt: skip
    items = out["items"] if output != "table" else out["items"][cols].head(30)
    _show(items, output, "commercial value", {"evaluation": report.to_dict()})


@app.command("user-scores")
def user_scores(
    target: Annotated[str, typer.Option(help="churn or buy")] = "churn",
    horizon_days: Annotated[int, typer.Option(help="days ahead the label looks")] = 7,
    top: Annotated[int, typer.Option(help="users in the segment")] = 500,
    output: Out = "table",
    db: DbOption = None,
) -> None:
    """Churn or buy-propensity model with AUC reported, and the top-scored users (CSV: the segment)."""
    from knowcast.analytics.service import user_scores as run

    out = _run(run, _engine(db), target=target, horizon_days=horizon_days, top=top)
    if output == "table":
        _show(out["report"].summary(), output, f"{target} model vs baselines (later period)")
    _show(out["segment"], output, f"{target} segment", {"evaluation": out["report"].to_dict()})


@app.command("next-topics")
def next_topics(
    creator: CreatorOpt = None,
    window_days: Annotated[int, typer.Option(help="recent window compared with the one before")] = 7,
    output: Out = "table",
    db: DbOption = None,
) -> None:
    """What to make next: topics with rising demand and little supply."""
    from knowcast.analytics.service import next_topics as run

    _show(_run(run, _engine(db), creator_id=creator, window_days=window_days), output, "next topics")


@app.command("promote-next")
def promote_next(
    creator: CreatorOpt = None,
    window_days: Annotated[int, typer.Option(help="days of clicks and carts considered")] = 14,
    output: Out = "table",
    db: DbOption = None,
) -> None:
    """The paid items to promote in the next live."""
    from knowcast.analytics.service import promote_next as run

    _show(_run(run, _engine(db), creator_id=creator, window_days=window_days), output, "promote next")
