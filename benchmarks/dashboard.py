"""Dashboard page server time on the demo data set (issue 9: each page under 300 ms).

Seeds the demo platform once into a temp SQLite file (or reuses --db), refreshes the rollups the way the
post-import hook does (timed), signs in as admin through the real login form and requests every page
in-process (Starlette TestClient), reading the app's own ``Server-Timing: app;dur=..., cpu;dur=...`` header
(wall and process CPU time inside the app, without the client).

Per page:
- cold: the first request after the data changed (result caches emptied: in-process and the ``kv`` copies;
  the rollups stay, as the post-import refresh leaves them), after one process warm-up pass (imports,
  templates, the moderation automaton);
- warm: median and p95 over --repeat requests, and the median CPU time (meaningful on a loaded machine);
- peer: the same page with rollups and result caches switched off (event-log SQL only), one request, in the
  same run; the ratio is peer / cold.

    python benchmarks/dashboard.py --size default --repeat 7
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path

PAGES = [
    "/", "/content", "/content/i00115", "/content/i00001", "/users", "/segments/payers", "/users/u000013",
    "/recommend?user=u000013", "/live", "/live/i00115", "/experiments", "/experiments/checkout_v2",
    "/analytics/funnel?step=view&step=click&step=add_to_cart&step=purchase&mode=ordered&window=7",
    "/analytics/retention", "/analytics/attribution", "/analytics/revenue", "/creators", "/creators/c0001",
    "/data", "/data/keys",
]  # fmt: skip
TARGET_MS = 300.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="default", choices=("tiny", "small", "default"))
    ap.add_argument("--db", help="reuse an existing demo database URL instead of seeding one")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--no-peer", action="store_true", help="skip the event-log-only peer requests")
    ap.add_argument("--out", default="docs/benchmarks/dashboard.md")
    args = ap.parse_args()

    from fastapi.testclient import TestClient
    from sqlalchemy import delete, select, text

    from knowcast.api.app import create_app
    from knowcast.config import Settings
    from knowcast.services import rollups
    from knowcast.store import Store
    from knowcast.store.models import Account, KeyValue
    from knowcast.web import cache
    from knowcast.web import queries as q
    from knowcast.web.accounts import create_account

    tmp = tempfile.TemporaryDirectory()
    url = args.db or f"sqlite:///{Path(tmp.name) / 'demo.db'}"
    store = Store(url).migrate()
    if not args.db:
        from knowcast.services.demo import SIZES, seed_demo
        from knowcast.sim import SimConfig

        t = time.perf_counter()
        seed_demo(store.engine, SimConfig(seed=0, **SIZES[args.size]))
        print(f"seeded {args.size} demo in {time.perf_counter() - t:.0f} s")
    t = time.perf_counter()
    rep = rollups.refresh(store.engine)
    build_s = time.perf_counter() - t
    t = time.perf_counter()
    rollups.refresh(store.engine)
    noop_s = time.perf_counter() - t
    from knowcast.web.warm import warm

    t = time.perf_counter()
    warm(store.engine)
    warm_s = time.perf_counter() - t
    print(f"warm(): {warm_s:.1f} s")
    print(
        f"rollup refresh: {build_s:.1f} s ({sum(map(len, rep.recomputed.values()))} days); "
        f"no-op {noop_s:.2f} s"
    )
    with store.sessions() as s:
        if s.scalar(select(Account).where(Account.username == "bench")) is None:
            create_account(s, "bench", "bench-password", "admin")
            s.commit()
    with store.engine.connect() as c:
        n_events = c.execute(text("SELECT COUNT(*) FROM events")).scalar()
    client = TestClient(create_app(Settings(database_url=url), store=store))
    token = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text).group(1)
    client.post("/login", data={"username": "bench", "password": "bench-password", "csrf": token})

    def timed(path: str) -> tuple[float, float]:
        r = client.get(path)
        assert r.status_code == 200, (path, r.status_code, r.text[-500:])
        st = r.headers.get("server-timing", "")
        app = re.search(r"app;dur=([\d.]+)", st)
        cpu = re.search(r"cpu;dur=([\d.]+)", st)
        return (float(app.group(1)) if app else float("nan"), float(cpu.group(1)) if cpu else float("nan"))

    def forget_results() -> None:
        cache.clear()
        with store.engine.begin() as c:
            c.execute(delete(KeyValue).where(KeyValue.key.like("web.cache.%")))

    load0 = os.getloadavg()
    peer_hz = []
    for _ in range(args.repeat):
        t = time.perf_counter()
        client.get("/healthz")
        peer_hz.append((time.perf_counter() - t) * 1000)
    for p in PAGES:  # process warm-up: imports, templates, moderation automaton
        timed(p)
    rows = []
    for p in PAGES:
        forget_results()
        cold, cold_cpu = timed(p)
        warm = [timed(p) for _ in range(args.repeat)]
        xs = sorted(w[0] for w in warm)
        med = statistics.median(xs)
        p95 = xs[min(len(xs) - 1, round(0.95 * (len(xs) - 1)))]
        cpu = statistics.median(w[1] for w in warm)
        rows.append({"page": p, "cold": cold, "cold_cpu": cold_cpu, "med": med, "p95": p95, "cpu": cpu})
        print(
            f"{p:90s} cold {cold:7.1f} ms (cpu {cold_cpu:6.1f})  warm median {med:6.1f}  p95 {p95:6.1f}  "
            f"cpu {cpu:6.1f}"
        )
    if not args.no_peer:
        q.USE_ROLLUPS = False
        orig = cache.cached
        cache.cached = lambda engine, name, key, compute, persist=True: compute()  # type: ignore[assignment]
        try:
            for r in rows:
                runs = [timed(r["page"]) for _ in range(min(3, args.repeat))]
                r["peer"] = statistics.median(x[0] for x in runs)
                r["peer_cpu"] = statistics.median(x[1] for x in runs)
                print(f"{r['page']:90s} peer (event log only) {r['peer']:8.1f} ms (cpu {r['peer_cpu']:.1f})")
        finally:
            q.USE_ROLLUPS = True
            cache.cached = orig  # type: ignore[assignment]
    load1 = os.getloadavg()
    worst_cold = max(r["cold"] for r in rows)
    worst_p95 = max(r["p95"] for r in rows)
    worst_cpu = max(max(r["cold_cpu"], r["cpu"]) for r in rows)

    def verdict(x: float) -> str:
        return "under" if x < TARGET_MS else "OVER"

    peer_cols = "" if args.no_peer else " peer ms | peer / cold |"
    peer_sep = "" if args.no_peer else " ---: | ---: | ---: |"
    lines = [
        "# Dashboard page server time",
        "",
        f"Command: `python benchmarks/dashboard.py {f'--db {args.db}' if args.db else f'--size {args.size}'} "
        f"--repeat {args.repeat}`  ",
        f"Machine: 2 cores, no GPU, shared · {date.today().isoformat()} · SQLite · {n_events:,} events  ",
        f"Load average (1/5/15 min): {load0[0]:.2f} / {load0[1]:.2f} / {load0[2]:.2f} at the start, "
        f"{load1[0]:.2f} / {load1[1]:.2f} / {load1[2]:.2f} at the end",
        "",
        "Server time = the app's `Server-Timing` header (`app`: wall time inside the app; `cpu`: process CPU",
        "time over the request, which stays meaningful when other jobs share the cores).",
        "",
        "- **cold**: first request after the data changed (result caches emptied; rollups current, as the",
        "  post-import refresh leaves them), after one process warm-up pass;",
        f"- **warm**: median and p95 of {args.repeat} requests, and their median CPU time;",
        "- **peer**: the same page with rollups and result caches off (event-log SQL only, the",
        f"  (type, user_id, ts) index present), median of {min(3, args.repeat)} requests in the same run;",
        "  the ratio is peer / cold.",
        "",
        f"Rollup refresh after the import (the post-import hook): {build_s:.1f} s for "
        f"{sum(map(len, rep.recomputed.values()))} days; a refresh with nothing new: {noop_s:.2f} s; "
        f"`web.warm.warm` (fills the result caches): {warm_s:.1f} s. After both, a page's first view costs",
        "its warm time.  ",
        f"`/healthz` wall time in the same run: median {statistics.median(peer_hz):.1f} ms.",
        "",
        "| page | cold ms | cold cpu ms | warm median ms | warm p95 ms | warm cpu ms |"
        + peer_cols.replace(" peer ms |", " peer ms | peer cpu ms |"),
        "| --- | ---: | ---: | ---: | ---: | ---: |" + peer_sep,
    ]
    for r in rows:
        line = (
            f"| `{r['page']}` | {r['cold']:.1f} | {r['cold_cpu']:.1f} | {r['med']:.1f} | {r['p95']:.1f} "
            f"| {r['cpu']:.1f} |"
        )
        if not args.no_peer:
            line += f" {r['peer']:.1f} | {r['peer_cpu']:.1f} | {r['peer'] / max(r['cold'], 0.1):.1f}x |"
        lines.append(line)
    lines += [
        "",
        f"Slowest cold: {worst_cold:.1f} ms ({verdict(worst_cold)} the {TARGET_MS:.0f} ms target); "
        f"slowest warm p95: {worst_p95:.1f} ms ({verdict(worst_p95)}); "
        f"largest CPU time: {worst_cpu:.1f} ms ({verdict(worst_cpu)}).",
        "",
    ]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines))
    print(
        f"wrote {args.out}; slowest cold {worst_cold:.1f} ms, warm p95 {worst_p95:.1f} ms, "
        f"cpu {worst_cpu:.1f} ms"
    )
    store.dispose()


if __name__ == "__main__":
    main()
