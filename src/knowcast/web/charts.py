"""Chart blocks: a Plotly figure (plain dict, drawn by the browser) plus its table and a CSV download.

Every chart on the dashboard goes through :func:`chart`, which is what guarantees the issue's rule "every
chart has a table view and a CSV download". The CSV is a ``data:`` link (no extra request, UTF-8 with a
BOM so spreadsheet programs read Chinese correctly).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

FONT = "Noto Sans CJK SC, Noto Sans SC, PingFang SC, Microsoft YaHei, system-ui, sans-serif"
COLORS = ["#3b6fd8", "#e0803a", "#3aa67a", "#c44e52", "#8172b2", "#937860", "#da8bc3", "#8c8c8c"]


@dataclass
class Chart:
    id: str
    title: str
    figure: dict[str, Any]
    columns: list[str]
    rows: list[list[Any]]
    filename: str
    height: int = 320

    @property
    def figure_json(self) -> str:
        # Safe inside <script type="application/json">: no "</script>" can close the tag early.
        return json.dumps(self.figure, ensure_ascii=False, default=_jsonable).replace("<", "\\u003c")

    @property
    def csv_href(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(self.columns)
        w.writerows([["" if v is None else v for v in r] for r in self.rows])
        return "data:text/csv;charset=utf-8," + quote("\ufeff" + buf.getvalue())


def _jsonable(v: Any) -> Any:
    if hasattr(v, "item"):
        return v.item()
    if hasattr(v, "tolist"):
        return v.tolist()
    return str(v)


def _slug(s: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_-]+", "-", s).strip("-").lower() or "chart"


def layout(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "margin": {"l": 50, "r": 20, "t": 30, "b": 40},
        "font": {"family": FONT, "size": 12},
        "colorway": COLORS,
        "legend": {"orientation": "h", "y": -0.2},
        "paper_bgcolor": "rgba(0,0,0,0)",
        "plot_bgcolor": "rgba(0,0,0,0)",
    }
    base.update(kw)
    return base


def chart(
    id: str,
    title: str,
    data: list[dict[str, Any]],
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    height: int = 320,
    **layout_kw: Any,
) -> Chart:
    return Chart(
        id=_slug(id),
        title=title,
        figure={"data": data, "layout": layout(height=height, **layout_kw)},
        columns=list(columns),
        rows=[list(r) for r in rows],
        filename=f"{_slug(id)}.csv",
        height=height,
    )


def line_chart(
    id: str, title: str, x: Sequence[Any], series: dict[str, Sequence[Any]], x_name: str = "date", **kw: Any
) -> Chart:
    data = [
        {"type": "scatter", "mode": "lines+markers", "name": k, "x": list(x), "y": list(v)}
        for k, v in series.items()
    ]
    rows = [[xv, *[series[k][i] for k in series]] for i, xv in enumerate(x)]
    return chart(id, title, data, [x_name, *series], rows, **kw)


def bar_chart(
    id: str,
    title: str,
    x: Sequence[Any],
    series: dict[str, Sequence[Any]],
    x_name: str = "x",
    stacked: bool = False,
    horizontal: bool = False,
    **kw: Any,
) -> Chart:
    data = []
    for k, v in series.items():
        tr: dict[str, Any] = {"type": "bar", "name": k}
        if horizontal:
            tr.update(x=list(v), y=list(x), orientation="h")
        else:
            tr.update(x=list(x), y=list(v))
        data.append(tr)
    rows = [[xv, *[series[k][i] for k in series]] for i, xv in enumerate(x)]
    if stacked:
        kw.setdefault("barmode", "stack")
    if horizontal:
        kw.setdefault("yaxis", {"automargin": True, "autorange": "reversed"})
    return chart(id, title, data, [x_name, *series], rows, **kw)


def sparkline_svg(values: Sequence[float | None], width: int = 120, height: int = 28) -> str:
    """A tiny inline SVG polyline (no script, no request): the KPI cards' trend; values are in the card's
    table too."""
    vals = [float(v or 0.0) for v in values]
    if len(vals) < 2:
        return ""
    lo, hi = min(vals), max(vals)
    span = (hi - lo) or 1.0
    step = width / (len(vals) - 1)
    pts = " ".join(
        f"{i * step:.1f},{height - 2 - (v - lo) / span * (height - 4):.1f}" for i, v in enumerate(vals)
    )
    return (
        f'<svg class="spark" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        'aria-hidden="true">'
        f'<polyline fill="none" stroke="currentColor" stroke-width="1.5" points="{pts}"/></svg>'
    )
