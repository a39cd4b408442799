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
