"""Scale: how ingest, ALS training and a 4-step funnel grow with the event log, on SQLite and PostgreSQL.

    python benchmarks/scale.py                                           # 100k, 1M, 10M events, both engines
    python benchmarks/scale.py --sizes 100000,1000000 --engines sqlite   # a quick look
    python benchmarks/scale.py --sizes 10000000 --engines sqlite --merge # add rows to the saved results
    python benchmarks/scale.py --report-only                             # redraw table and plot from the JSON

Needs the `bench` extra (`pip install -e ".[bench]"`: kaleido for the PNG, psutil).

Per size, one simulated platform (``knowcast.sim``) whose users and items grow with the log (about 50
events per user, one item per 500 events, 500 to 20,000 items, 30 days) and its event stream from the
volume generator (``knowcast.sim.volume.iter_event_frames``), written once as CSV and used by both engines.
Per size and engine, on a fresh store (SQLite file; PostgreSQL: a database of its own, recreated per size)
with the creators, items and users already imported, three steps run one after the other, each in its own
child process so its peak memory (max RSS, from ``os.wait4``) is its own:

1. ingest: ``knowcast import events events.csv`` (validation, dedup, one transaction, then the
   post-import refresh of the dashboard rollups and caches, as the CLI does);
2. training: ``knowcast.recommend.service.train`` with ALS (64 factors, 15 iterations, no hold-out);
3. funnel: ``view → click → add_to_cart → purchase``, ordered, 14 days, broken down by channel
   (``knowcast.analytics.service.funnel``), best of 2.

Seconds are measured inside the child (interpreter start-up and imports excluded); the log-log slope of
seconds against events says how each step grows (1 = linear). Results: docs/benchmarks/scale.md, .png, .json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from _common import (
    PG_URL,
    ROOT,
    ensure_pg_database,
    log,
    machine_line,
    peak_rss_self_mb,
    pg_available,
    run_measured,
)

OUT = ROOT / "docs" / "benchmarks"
PG_SCALE = PG_URL.rsplit("/", 1)[0] + "/kc_scale"
STEPS = ("ingest", "train", "funnel")
FUNNEL = ("view", "click", "add_to_cart", "purchase")
MARK = "SCALE_RESULT "
#: What "interactive" and "nightly" mean in the prose: a funnel answered while someone waits, training
#: that fits in a night's batch window.
FUNNEL_BUDGET_S = 5.0
TRAIN_BUDGET_S = 3600.0


def sim_config(n_events: int):  # type: ignore[no-untyped-def]
    """A platform that grows with the log: ~50 events per user, one item per 500 events (500..20,000)."""
    from knowcast.sim import SimConfig

    n_items = max(500, min(20_000, n_events // 500))
    return SimConfig(
        seed=7, n_users=max(2000, n_events // 50), n_items=n_items, n_creators=max(20, n_items // 20), days=30
    )


# ----------------------------------------------------------------------------------------- child steps
def child(step: str, url: str, file: str | None, artifacts: str | None) -> dict:
    """One step, timed here so interpreter start-up and imports are not counted."""
    from sqlalchemy import text

    from knowcast.store import Store

    if step == "ingest":
        from knowcast.cli import app

        t, c = time.perf_counter(), time.process_time()
        app(["import", "events", str(file), "--db", url, "--json"], standalone_mode=False)
        seconds, cpu = time.perf_counter() - t, time.process_time() - c
        store = Store(url)
        with store.engine.connect() as c:
            rows = int(c.execute(text("SELECT COUNT(*) FROM events")).scalar_one())
        return {"seconds": seconds, "cpu_s": cpu, "events_stored": rows}
    store = Store(url)
    if step == "train":
        from knowcast.recommend import service as svc

        t, c = time.perf_counter(), time.process_time()
        rep = svc.train(
            store.engine,
            "als",
            {"factors": 64, "iterations": 15},
            validate=False,
            next_purchase=False,
            artifacts_dir=artifacts,
        )
        seconds, cpu = time.perf_counter() - t, time.process_time() - c
        m = rep.metrics
        keys = ("interactions", "users", "items", "read_s", "fit_s")
        return {"seconds": seconds, "cpu_s": cpu, **{k: m[k] for k in keys}}
    if step == "funnel":
        from knowcast.analytics.funnel import FunnelSpec
        from knowcast.analytics.service import funnel

        spec = FunnelSpec(FUNNEL, breakdown="channel")
        times, cpus, res = [], [], None
        for _ in range(2):
            t, c = time.perf_counter(), time.process_time()
            res = funnel(store.engine, spec)
            times.append(time.perf_counter() - t)
            cpus.append(time.process_time() - c)
        per_step = res.steps.groupby("step")["users"].sum()  # type: ignore[union-attr]
        best = times.index(min(times))
        return {
            "seconds": times[best],
            "cpu_s": cpus[best],
            "first_s": times[0],
            "users": [int(v) for v in per_step.tolist()],
        }
    raise SystemExit(f"unknown step {step!r}")


def run_step(step: str, url: str, file: Path | None, artifacts: Path) -> dict:
    cmd = [sys.executable, __file__, "--child", step, "--db", url, "--artifacts", str(artifacts)]
    if file is not None:
        cmd += ["--file", str(file)]
    load1 = os.getloadavg()[0]
    m = run_measured(cmd, env={**os.environ, "KNOWCAST_ARTIFACTS": str(artifacts)})
    line = next((x for x in reversed(m.stdout.splitlines()) if x.startswith(MARK)), None)
    if m.returncode != 0 or line is None:
        raise RuntimeError(f"{step} failed (exit {m.returncode}):\n{m.stdout[-2000:]}\n{m.stderr[-4000:]}")
    out = json.loads(line.removeprefix(MARK))
    refresh = re.search(r"refreshed in ([\d.]+)s", m.stderr)
    if refresh:
        out["refresh_s"] = float(refresh.group(1))
    out.update(peak_rss_mb=out.pop("vmhwm_mb", m.maxrss_mb), wall_s=m.wall_s, load1=load1)
    return out


# ------------------------------------------------------------------------------------------- parent
def prepare_store(url: str, files: tuple[Path, Path, Path]) -> None:
    """A fresh store with the platform's creators, items and users (not timed)."""
    from _common import fresh_store
    from knowcast.ingest.service import import_file

    store = fresh_store(url).migrate()
    for kind, f in zip(("creators", "items", "users"), files, strict=True):
        rep = import_file(store.engine, kind, f)
        if not rep.committed:
            raise RuntimeError(f"importing {kind} failed: {rep.as_dict()}")
    store.dispose()


def drop_store(url: str) -> None:
    if url.startswith("sqlite:///"):
        for suffix in ("", "-wal", "-shm"):
            Path(url.removeprefix("sqlite:///") + suffix).unlink(missing_ok=True)
    else:
        from sqlalchemy import create_engine, text

        base, name = url.rsplit("/", 1)
        admin = create_engine(
            base.replace("postgresql://", "postgresql+psycopg://") + "/postgres", isolation_level="AUTOCOMMIT"
        )
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def bench_size(n: int, engines: list[str], work: Path, results: list[dict], save) -> None:  # type: ignore[no-untyped-def]
    from _common import write_entities, write_events_csv

    cfg = sim_config(n)
    d = work / f"n{n}"
    d.mkdir(parents=True, exist_ok=True)
    log(f"{n:,} events: simulating {cfg.n_users:,} users, {cfg.n_items:,} items and the event stream ...")
    t = time.perf_counter()
    entities = write_entities(d, cfg)
    events = write_events_csv(d / "events.csv", cfg, n)
    log(f"  generated in {time.perf_counter() - t:.0f}s ({events.stat().st_size / 1e6:.0f} MB CSV)")
    for engine in engines:
        if engine == "sqlite":
            url = f"sqlite:///{d / 'scale.db'}"
        else:
            url = PG_SCALE
            ensure_pg_database(url, fresh=True)
        prepare_store(url, entities)
        artifacts = d / f"artifacts-{engine}"
        for step in STEPS:
            log(f"  {engine} {step} ...")
            r = run_step(step, url, events if step == "ingest" else None, artifacts)
            row = {"size": n, "engine": engine, "step": step, **r}
            results[:] = [x for x in results if (x["size"], x["engine"], x["step"]) != (n, engine, step)] + [
                row
            ]
            log(
                f"  {engine} {step}: {r['seconds']:.1f}s, {n / r['seconds']:,.0f} ev/s, "
                f"peak RSS {r['peak_rss_mb']:.0f} MB (load {r['load1']:.1f})"
            )
            save()
        drop_store(url)
        shutil.rmtree(artifacts, ignore_errors=True)
    shutil.rmtree(d, ignore_errors=True)


# ------------------------------------------------------------------------------------------- report
def slope(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of log(seconds) on log(events): 1 = linear, 2 = quadratic."""
    pts = [(math.log10(x), math.log10(y)) for x, y in points if x > 0 and y > 0]
    if len({x for x, _ in pts}) < 2:
        return None
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    return sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)


def growth(rows: list[dict], key: str = "seconds") -> float | None:
    """The slope used to extrapolate, at least 1 (every step reads every event, so only fixed costs make
    a fitted slope come out below 1). For time on SQLite, of CPU seconds when the rows have them: all the
    work is in the knowcast process, and contention on a shared machine stretches wall time unevenly
    between sizes, CPU time much less. On PostgreSQL the database server does much of the work, so wall
    seconds."""
    sqlite = all(r["engine"] == "sqlite" for r in rows)
    k = "cpu_s" if key == "seconds" and sqlite and rows and all("cpu_s" in r for r in rows) else key
    s = slope([(r["size"], r[k]) for r in rows])
    return None if s is None else max(s, 1.0)


def at_size(rows: list[dict], target: float, key: str = "seconds") -> tuple[float, float] | None:
    """(value at ``target`` events, slope): the largest size's value grown by the fitted slope."""
    s = growth(rows, key)
    if s is None:
        return None
    big = max(rows, key=lambda r: r["size"])
    return big[key] * (target / big["size"]) ** s, s


def memory_at(rows: list[dict], target: float) -> tuple[float, float] | None:
    """(peak RSS MB at ``target`` events, MB per million events): the growth between the smallest and
    largest size, taken as linear (the fixed part, imports and caches, is the smallest size's)."""
    if len({r["size"] for r in rows}) < 2:
        return None
    lo, hi = min(rows, key=lambda r: r["size"]), max(rows, key=lambda r: r["size"])
    per = max(0.0, (hi["peak_rss_mb"] - lo["peak_rss_mb"]) / (hi["size"] - lo["size"]))
    return hi["peak_rss_mb"] + per * (target - hi["size"]), per * 1e6


def size_for(rows: list[dict], budget: float, key: str = "seconds") -> float | None:
    """Events at which the extrapolation reaches ``budget``."""
    s = growth(rows, key)
    if s is None or s <= 0:
        return None
    big = max(rows, key=lambda r: r["size"])
    return big["size"] * (budget / big[key]) ** (1 / s)


def human(n: float) -> str:
    for unit, div in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= div:
            return f"{n / div:.3g}{unit}"
    return f"{n:.0f}"


def note(r: dict) -> str:
    if r["step"] == "ingest":
        extra = f"; post-import refresh {r['refresh_s']:.1f} s" if "refresh_s" in r else ""
        return f"{r['events_stored']:,} events stored{extra}"
    if r["step"] == "train":
        return (
            f"{r['interactions']:,} interactions, {r['users']:,} users x {r['items']:,} items; "
            f"read {r['read_s']:.1f} s, fit {r['fit_s']:.1f} s"
        )
    return f"first run {r['first_s']:.1f} s; users per step {' / '.join(f'{u:,}' for u in r['users'])}"


def plot(results: list[dict], path: Path) -> None:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("seconds", "peak RSS (MB)"))
    colors = {"ingest": "#1f77b4", "train": "#d62728", "funnel": "#2ca02c"}
    dashes = {"sqlite": "solid", "postgresql": "dash"}
    for step in STEPS:
        for engine in ("sqlite", "postgresql"):
            rows = sorted((r for r in results if r["step"] == step and r["engine"] == engine),
                          key=lambda r: r["size"])  # fmt: skip
            if not rows:
                continue
            xs = [r["size"] for r in rows]
            for col, key in ((1, "seconds"), (2, "peak_rss_mb")):
                fig.add_trace(
                    go.Scatter(
                        x=xs, y=[r[key] for r in rows], mode="lines+markers", name=f"{step}, {engine}",
                        legendgroup=f"{step}{engine}", showlegend=col == 1,
                        line={"color": colors[step], "dash": dashes.get(engine, "dot")},
                    ),
                    row=1, col=col,
                )  # fmt: skip
    fig.update_xaxes(type="log", title_text="events")
    fig.update_yaxes(type="log")
    fig.update_layout(
        title="knowcast on one 2-core machine: time and memory against the size of the event log",
        width=1200, height=520, template="plotly_white", legend={"orientation": "h", "y": -0.2},
    )  # fmt: skip
    fig.write_image(str(path), scale=1)


def write_report(meta: dict, results: list[dict], out_md: Path) -> None:
    order = {"sqlite": 0, "postgresql": 1}
    results = sorted(results, key=lambda r: (r["size"], order.get(r["engine"], 2), STEPS.index(r["step"])))
    sizes = sorted({r["size"] for r in results})
    engines = [e for e in ("sqlite", "postgresql") if any(r["engine"] == e for r in results)]
    import psutil

    ram_gb = psutil.virtual_memory().total / 2**30
    lines = [
        "# Scale: ingest, training and a funnel against the size of the event log",
        "",
        f"Command: `{meta['command']}`  ",
        f"Machine: {meta['machine']}; {ram_gb:.0f} GiB RAM. Finished {meta['finished']} with load average "
        f"{meta['load_end']}.",
        "",
        *([meta["note"], ""] if meta.get("note") else []),
        "Data: per size, a simulated platform that grows with the log (about 50 events per user, one item "
        "per 500 events, 500 to 20,000 items, 30 days) and the simulator's volume event stream (about 2/3 "
        "impressions), as one CSV imported on each engine into a fresh store holding the platform's "
        "creators, items and users. Each step runs in its own process; seconds exclude interpreter start-up "
        "and imports; peak RSS is that process's maximum resident memory (`VmHWM`, imports included).",
        "",
        "- **ingest**: `knowcast import events FILE` (validation, dedup by id, one transaction, then the "
        "post-import refresh of dashboard rollups and caches that the CLI runs);",
        "- **train**: `knowcast.recommend.service.train`, ALS (64 factors, 15 iterations, 2 threads, no "
        "hold-out), reading the interactions from the store and writing the artifact;",
        "- **funnel**: `view → click → add_to_cart → purchase`, ordered, 14-day window, breakdown by channel "
        "(`knowcast.analytics.service.funnel`), best of 2 runs in the same process.",
        "",
        "| events | engine | step | seconds | CPU s | events/s | peak RSS MB | load 1 min | notes |",
        "|---:|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['size']:,} | {r['engine']} | {r['step']} | {r['seconds']:.1f} | "
            + (f"{r['cpu_s']:.1f} | " if "cpu_s" in r else "n/a | ")
            + f"{r['size'] / r['seconds']:,.0f} | {r['peak_rss_mb']:.0f} | {r['load1']:.1f} | {note(r)} |"
        )
    lines += [
        "",
        "![time and peak memory against events, log-log](scale.png)",
        "",
        "How time grows with size: the slope of log(time) against log(events), fitted over "
        f"{', '.join(human(s) for s in sizes)} events (1.0 = linear; below 1 = fixed costs still dominate "
        "the small sizes), of wall seconds and of the knowcast process's CPU seconds. On a shared machine "
        "the wall-time slope carries the load's swings between sizes (see the load column); the CPU-time "
        "slope is the steadier one, but on PostgreSQL it leaves out the database server's work.",
        "",
        "| step | " + " | ".join(f"{e} wall | {e} CPU" for e in engines) + " |",
        "|---|" + "---:|---:|" * len(engines),
    ]
    for step in STEPS:
        cells = []
        for e in engines:
            rows = [r for r in results if r["step"] == step and r["engine"] == e]
            for key in ("seconds", "cpu_s"):
                sl = slope([(r["size"], r[key]) for r in rows]) if all(key in r for r in rows) else None
                cells.append("n/a" if sl is None else f"{sl:.2f}")
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    lines += ["", "## Where one machine stops being enough", "", *prose(results, engines, ram_gb), ""]
    out_md.write_text("\n".join(lines) + "\n")


def prose(results: list[dict], engines: list[str], ram_gb: float) -> list[str]:
    """The verdict, computed from the measured rows (so a rerun on other hardware rewrites it)."""
    biggest = max(r["size"] for r in results)
    loads = [r["load1"] for r in results]
    out = [
        f"Extrapolated from the largest measured size ({human(biggest)} events) to 100M events with each "
        "step's fitted slope (CPU time on SQLite, wall time on PostgreSQL), taken as at least linear: every "
        "step reads every event, and slopes under 1 come from fixed costs at the small size. A power law "
        "fitted on a few points is a rough guide, not a promise. The runs saw a 1-minute load average of "
        f"{min(loads):.0f} to {max(loads):.0f} on "
        f"{os.cpu_count()} cores: on a machine of its own every step would be several times faster and "
        "every crossing point below several times further out; the slopes are the portable part.",
        "",
    ]

    def rows(step: str, engine: str) -> list[dict]:
        return [r for r in results if r["step"] == step and r["engine"] == engine]

    crossings: dict[str, dict[str, float]] = {"train": {}, "funnel": {}}
    for e in engines:
        parts = []
        ing = rows("ingest", e)
        big = max(ing, key=lambda r: r["size"]) if ing else None
        if big:
            rate = big["size"] / big["seconds"]
            share = big.get("refresh_s", 0.0) / big["seconds"]
            parts.append(
                f"`knowcast import events` sustains {rate:,.0f} events/s at {human(big['size'])}, "
                f"{share:.0%} of it the post-import dashboard refresh "
                f"({rate * 86_400 / 1e6:,.0f}M events a day if it did nothing else)"
            )
        tr = rows("train", e)
        x = at_size(tr, 1e8)
        if x:
            mem = memory_at(tr, 1e8)
            n_budget = size_for(tr, TRAIN_BUDGET_S)
            if n_budget:
                crossings["train"][e] = n_budget
            parts.append(
                f"ALS training would take about {x[0] / 60:,.0f} min at 100M events (slope {x[1]:.2f})"
                + (
                    f" in about {mem[0] / 1024:.0f} GB (+{mem[1]:,.0f} MB per million events measured)"
                    if mem
                    else ""
                )
                + (f"; it passes one hour near {human(n_budget)} events" if n_budget else "")
            )
        fu = rows("funnel", e)
        x = at_size(fu, 1e8)
        if x:
            n_budget = size_for(fu, FUNNEL_BUDGET_S)
            if n_budget:
                crossings["funnel"][e] = n_budget
            parts.append(
                f"the whole-log funnel would take about {x[0]:,.0f} s at 100M events (slope {x[1]:.2f})"
                + (f" and passes {FUNNEL_BUDGET_S:.0f} s near {human(n_budget)} events" if n_budget else "")
            )
        if parts:
            out.append(f"- **{e}**: " + "; ".join(parts) + ".")
    big_rows = [r for r in results if r["size"] == biggest]
    worst = max(big_rows, key=lambda r: r["peak_rss_mb"])
    mem_limit = []
    for e in engines:
        m = memory_at(rows("train", e), 1e9)
        if m and m[1] > 0:
            hi = max(rows("train", e), key=lambda r: r["size"])
            mem_limit.append(hi["size"] + (0.75 * ram_gb * 1024 - hi["peak_rss_mb"]) / m[1] * 1e6)
    out += [
        "",
        f"At {human(biggest)} events memory is far from the limit: the most any step used was "
        f"{worst['peak_rss_mb']:,.0f} MB ({worst['step']} on {worst['engine']}) of the machine's "
        f"{ram_gb:.0f} GiB."
        + (
            f" Training's memory, growing as measured, would reach three quarters of it near "
            f"{human(min(mem_limit))} events."
            if mem_limit
            else ""
        ),
        "",
        "What to switch on, in the order this machine needs it (how: "
        "[operations](../operations.md#past-one-machine)):",
        "",
    ]
    items = []
    fu_s = {
        e: max(rows("funnel", e), key=lambda r: r["size"])["seconds"] for e in engines if rows("funnel", e)
    }
    pg_note = ""
    if "sqlite" in fu_s and "postgresql" in fu_s:
        pg_note = (
            f" At {human(biggest)} events the funnel took {fu_s['sqlite']:.1f} s on SQLite and "
            f"{fu_s['postgresql']:.1f} s on PostgreSQL."
        )
    items.append(
        "**PostgreSQL** (`KNOWCAST_DATABASE_URL=postgresql://...`) once more than one process writes "
        "(several API workers, imports while serving: SQLite has one writer at a time) or the log passes a "
        f"few million events.{pg_note}"
    )
    first_funnel = max(crossings["funnel"].values(), default=None)  # the better engine
    first_train = max(crossings["train"].values(), default=None)
    funnel_item = (
        "**Date ranges and rollups for analytics**: a funnel over the whole log stops being interactive "
        f"({FUNNEL_BUDGET_S:.0f} s) "
        + (f"near {human(first_funnel)} events on the faster engine here; " if first_funnel else "first; ")
        + "send `start_ms`/`end_ms`, or read the dashboard's daily rollups instead of raw events."
    )
    spark_item = (
        "**Spark training** (`knowcast train --engine spark`, a cluster by URL) when in-process ALS "
        "passes the nightly window "
        + (f"(one hour: near {human(first_train)} events on the faster engine here) " if first_train else "")
        + "or its memory nears the machine's."
    )
    if first_train is not None and (first_funnel is None or first_train < first_funnel):
        items += [spark_item, funnel_item]
    else:
        items += [funnel_item, spark_item]
    items.append(
        "**Redis** (`KNOWCAST_REDIS_URL`) for the live bus, so live rooms span processes, and **more API "
        "workers** (`knowcast serve --workers N`, stateless, PostgreSQL only) when request rate, not data "
        "size, is the limit: the [load run](load.md) says what one worker sustains."
    )
    out += [f"{k}. {t}" for k, t in enumerate(items, start=1)]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100000,1000000,10000000")
    ap.add_argument("--engines", default="sqlite,postgresql")
    ap.add_argument("--work", default=None, help="scratch folder (default: a temporary one)")
    ap.add_argument("--merge", action="store_true", help="keep saved rows of other sizes / engines")
    ap.add_argument("--report-only", action="store_true", help="only redraw the report from the JSON")
    ap.add_argument("--note", default="", help="a sentence for the report (e.g. why a size was left out)")
    ap.add_argument("--out", default=str(OUT / "scale.md"))
    ap.add_argument("--child", choices=STEPS, help=argparse.SUPPRESS)
    ap.add_argument("--db", help=argparse.SUPPRESS)
    ap.add_argument("--file", help=argparse.SUPPRESS)
    ap.add_argument("--artifacts", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        out = child(args.child, args.db, args.file, args.artifacts)
        out["vmhwm_mb"] = peak_rss_self_mb()
        print(MARK + json.dumps(out), flush=True)
        return

    out_md = Path(args.out)
    out_json, out_png = out_md.with_suffix(".json"), out_md.with_suffix(".png")
    saved = json.loads(out_json.read_text()) if out_json.exists() else {"meta": {}, "results": []}
    if args.report_only:
        write_report(saved["meta"], saved["results"], out_md)
        plot(saved["results"], out_png)
        log(f"wrote {out_md} and {out_png}")
        return
    sizes = [int(s) for s in args.sizes.split(",") if s]
    engines = [e for e in args.engines.split(",") if e]
    if "postgresql" in engines and not pg_available(PG_SCALE):
        engines.remove("postgresql")
    results: list[dict] = saved["results"] if args.merge else []
    argv = sys.argv[1:]
    if "--note" in argv:  # the note goes into the report's text, not its command line
        k = argv.index("--note")
        argv = argv[:k] + argv[k + 2 :]
    cmd = "python benchmarks/scale.py " + " ".join(argv)
    meta = {"command": cmd.strip(), "machine": machine_line(), "note": args.note}
    if args.merge and saved["meta"].get("command"):
        meta["command"] = f"{saved['meta']['command']}`, then `{meta['command']}"
    log(meta["machine"])

    def save() -> None:
        la = os.getloadavg()
        meta.update(finished=f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC", load_end=f"{la[0]:.1f} / {la[1]:.1f}")
        out_json.write_text(json.dumps({"meta": meta, "results": results}, indent=1))
        write_report(meta, results, out_md)

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="kc-scale-"))
    try:
        for n in sizes:
            bench_size(n, engines, work, results, save)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    plot(results, out_png)
    log(f"wrote {out_md}, {out_png} and {out_json}")


if __name__ == "__main__":
    main()
