"""Funnel speed: a 4-step funnel with a breakdown over N events in SQLite and PostgreSQL vs pandas in memory.

    python benchmarks/analytics.py --events 10000000
    python benchmarks/analytics.py --events 1000000 --no-postgres

Events are generated here (vectorised, seeded: a feed where users view short videos, some click, add to
cart and buy) and bulk-written with the store's own writer (``knowcast.store.bulk.insert_ignore``: the
path the importer uses, without per-row validation, which would dominate the set-up time). The funnel
is ``view → click → add_to_cart → purchase`` in a 14-day window, broken down by channel. The peer is the
same funnel computed by ``knowcast.analytics.funnel.ordered_funnel_pandas`` on the events already in
memory (loading time not counted); both results are checked equal before timing is reported.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from _common import ensure_pg_database  # noqa: E402
from knowcast.analytics import queries, service  # noqa: E402
from knowcast.analytics.funnel import FunnelSpec, ordered_funnel_pandas, summarize_funnel  # noqa: E402
from knowcast.store import Store  # noqa: E402
from knowcast.store.bulk import insert_ignore  # noqa: E402

TYPES = np.array(
    ["impression", "view", "like", "comment", "share", "click", "add_to_cart", "purchase", "live_join"]
)
TYPE_P = np.array([0.30, 0.42, 0.07, 0.02, 0.01, 0.1, 0.04, 0.015, 0.025])
CHANNELS = np.array(["feed", "search", "push", "kol", "other_platform", "live", "direct"])
DEVICES = np.array(["ios", "android", "web"])
COLUMNS = ["id", "type", "ts", "user_id", "item_id", "amount", "channel", "device"]
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
PG_DB = "kc_analytics_bench"  # default; --pg-db picks another


def generate(n_events: int, seed: int = 0, days: int = 30) -> pd.DataFrame:
    """A seeded event log; users are heavy-tailed (a few very active), types follow a feed's mix."""
    rng = np.random.default_rng(seed)
    n_users = max(100, n_events // 40)
    n_items = max(50, n_events // 2000)
    activity = rng.lognormal(0.0, 1.0, n_users)
    user = rng.choice(n_users, size=n_events, p=activity / activity.sum())
    typ = rng.choice(len(TYPES), size=n_events, p=TYPE_P / TYPE_P.sum())
    start = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1000)
    ts = start + rng.integers(0, days * 86_400_000, size=n_events)
    order = np.argsort(ts, kind="stable")
    user, typ, ts = user[order], typ[order], ts[order]
    amount = np.where(TYPES[typ] == "purchase", rng.choice([9.9, 49.0, 99.0, 199.0], size=n_events), np.nan)
    return pd.DataFrame(
        {
            "id": np.char.add("e", np.arange(n_events).astype(str)),
            "type": TYPES[typ],
            "ts": ts,
            "user_id": np.char.add("u", user.astype(str)),
            "item_id": np.char.add("i", rng.integers(0, n_items, size=n_events).astype(str)),
            "amount": amount,
            "channel": CHANNELS[rng.integers(0, len(CHANNELS), size=n_events)],
            "device": DEVICES[rng.integers(0, len(DEVICES), size=n_events)],
        }
    )


def load(store: Store, ev: pd.DataFrame, chunk: int = 500_000) -> float:
    t0 = time.perf_counter()
    for lo in range(0, len(ev), chunk):
        part = ev.iloc[lo : lo + chunk]
        amount = part["amount"].astype(object).where(part["amount"].notna(), None)
        rows = list(
            zip(
                part["id"].tolist(), part["type"].tolist(), part["ts"].tolist(), part["user_id"].tolist(),
                part["item_id"].tolist(), amount.tolist(), part["channel"].tolist(), part["device"].tolist(),
                strict=True,
            )
        )  # fmt: skip
        with store.engine.begin() as conn:
            insert_ignore(conn, "events", ["id"], COLUMNS, rows)
    return time.perf_counter() - t0


#: The funnel index as migration 0003 made it: PostgreSQL then looks the breakdown up per user.
LOOKUP_INDEX = ("type", "user_id", "ts")


def prepare(store: Store) -> None:
    """Refresh planner statistics, and on PostgreSQL the visibility map (VACUUM), after the bulk load.

    The funnel index (type, user_id, ts, channel) comes with the schema (migration 0004, applied by
    ``Store.migrate`` to a reused database too). PostgreSQL answers from the index alone (index-only scans)
    only for pages the visibility map marks all-visible, which a VACUUM after the load sets; autovacuum
    would get there too, but not before the timing starts.
    """
    with store.engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.exec_driver_sql("VACUUM ANALYZE events" if store.dialect == "postgresql" else "ANALYZE")


def pg_store(fresh: bool, db: str = PG_DB) -> Store | None:
    url = PG_ADMIN.rsplit("/", 1)[0] + "/" + db
    try:
        ensure_pg_database(url, fresh=fresh)
    except Exception as exc:  # noqa: BLE001
        print(f"PostgreSQL unreachable ({exc.__class__.__name__}); skipping it", file=sys.stderr)
        return None
    return Store(url).migrate()


def event_count(store: Store) -> int:
    with store.engine.connect() as c:
        return int(c.exec_driver_sql("SELECT COUNT(*) FROM events").scalar_one())


def backend_pid(store: Store) -> int | None:
    """The PostgreSQL server process of the store's (single pooled) connection, when it runs on this host."""
    if store.dialect != "postgresql":
        return None
    with store.engine.connect() as c:
        pid = int(c.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())
    return pid if Path(f"/proc/{pid}/stat").exists() else None


def proc_cpu(pid: int | None) -> float:
    """User + system CPU seconds of process ``pid`` (0 when unknown)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def time_it(fn, repeat: int, pid: int | None = None) -> tuple[float, float, object]:  # type: ignore[no-untyped-def]
    """Best wall time of ``repeat`` runs and the CPU seconds of that run (this process + the server's)."""
    best, cpu, out = float("inf"), float("nan"), None
    for _ in range(repeat):
        c0, b0, t0 = time.process_time(), proc_cpu(pid), time.perf_counter()
        out = fn()
        wall = time.perf_counter() - t0
        if wall < best:
            best, cpu = wall, time.process_time() - c0 + proc_cpu(pid) - b0
    return best, cpu, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--sqlite", default="/tmp/knowcast_bench_analytics.db", help="SQLite file (reused if full)"
    )
    ap.add_argument("--no-postgres", action="store_true")
    ap.add_argument("--pg-db", default=PG_DB, help="PostgreSQL database (reused if full)")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks" / "analytics.md"))
    args = ap.parse_args()

    print(f"generating {args.events:,} events ...", flush=True)
    ev = generate(args.events, args.seed)
    spec = FunnelSpec(("view", "click", "add_to_cart", "purchase"), breakdown="channel")

    # The peer: pandas on the in-memory log.
    load_start = os.getloadavg()
    t_pd, c_pd, pu_pd = time_it(lambda: ordered_funnel_pandas(ev, spec), args.repeat)
    ref = summarize_funnel(pu_pd, spec).steps  # type: ignore[arg-type]
    rows = []
    backends: list[tuple[str, Store]] = []
    sqlite_path = Path(args.sqlite)
    st = Store(f"sqlite:///{sqlite_path}").migrate()
    backends.append(("SQLite", st))
    if not args.no_postgres:
        pg = pg_store(fresh=False, db=args.pg_db)
        if pg is not None:
            backends.append(("PostgreSQL", pg))
    for name, store in backends:
        if event_count(store) != len(ev):
            if name == "SQLite":
                store.dispose()
                for suffix in ("", "-wal", "-shm"):
                    Path(str(sqlite_path) + suffix).unlink(missing_ok=True)
                store = Store(f"sqlite:///{sqlite_path}").migrate()
            else:
                store.dispose()
                store = pg_store(fresh=True, db=args.pg_db)  # type: ignore[assignment]
            print(f"loading {name} ...", flush=True)
            secs = load(store, ev)
            print(f"  loaded in {secs:.0f} s", flush=True)
        prepare(store)
        fn = lambda store=store: service.funnel(store.engine, spec)  # noqa: E731
        fn()  # warm: the first run after loading reads the index pages from disk
        t_db, c_db, res = time_it(fn, args.repeat, backend_pid(store))
        same = res.steps[["group", "step", "users"]].equals(ref[["group", "step", "users"]])  # type: ignore[union-attr]
        if not same:
            raise SystemExit(f"{name} funnel differs from pandas:\n{res.steps}\n{ref}")  # type: ignore[union-attr]
        rows.append((name, t_db, c_db, t_pd / t_db))
        print(
            f"{name}: {t_db:.2f} s, CPU {c_db:.2f} s (pandas {t_pd:.2f} s, ratio {t_pd / t_db:.2f})",
            flush=True,
        )
        if name == "PostgreSQL":  # peer: the plan before migration 0004 (channel looked up per user)
            old = lambda store=store: summarize_funnel(  # noqa: E731
                queries.funnel_users(store.engine, spec, index_columns=LOOKUP_INDEX), spec
            )
            t_old, c_old, res_old = time_it(old, args.repeat, backend_pid(store))
            if not res_old.steps[["group", "step", "users"]].equals(ref[["group", "step", "users"]]):  # type: ignore[union-attr]
                raise SystemExit("PostgreSQL (lookup shape) funnel differs from pandas")
            rows.append((f"{name}, channel looked up per user (before 0004)", t_old, c_old, t_pd / t_old))
            print(f"{rows[-1][0]}: {t_old:.2f} s, CPU {c_old:.2f} s", flush=True)
        store.dispose()

    load_end = os.getloadavg()
    total = ref.groupby("step")["users"].sum()
    table = [
        f"| engine | funnel seconds (best of {args.repeat}) | CPU seconds, that run | pandas / engine |",
        "| --- | ---: | ---: | ---: |",
    ]
    table += [f"| {n} | {t:.2f} | {c:.2f} | {r:.2f} |" for n, t, c, r in rows]
    table += [f"| pandas (peer, in memory) | {t_pd:.2f} | {c_pd:.2f} | 1.00 |"]
    start, end = (" / ".join(f"{x:.1f}" for x in la) for la in (load_start, load_end))
    loads = f"{start} at start, {end}"
    counts = ", ".join(f"step {k}: {int(v):,}" for k, v in total.items())
    md = "\n".join(
        [
            "# Analytics: funnel speed",
            "",
            f"Command: `python benchmarks/analytics.py --events {args.events}`  ",
            f"Machine: {os.cpu_count()} cores, no GPU ({platform.processor() or platform.machine()}), "
            "shared with other jobs; date: " + datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            f"Load average (1 / 5 / 15 min): {loads} at the end.",
            "",
            "Funnel `view → click → add_to_cart → purchase`, ordered, 14-day window, breakdown by channel,",
            f"over {args.events:,} events ({ev['user_id'].nunique():,} users).",
            f"Users per step (all channels): {counts}.",
            "Every engine's per-step counts were checked equal to the pandas peer's before timing was kept.",
            "",
            *table,
            "",
            "A ratio above 1 means the database is faster than pandas on data already in memory.",
            "CPU seconds: this process (SQLite runs in it; for PostgreSQL: fetching, summarising) plus,",
            "for PostgreSQL on this host, its server process. On a machine shared with other jobs this is",
            "the steadier figure: the wall time includes waiting for a core.",
            "The target is under 5 s per engine at 10,000,000 events.",
            "",
            "How the funnel runs (`knowcast.analytics.queries`, one statement per engine). Step 1 is each",
            "user's first `view` read from the funnel index `(type, user_id, ts, channel)` (migration 0004)",
            "index-only, in user order: on PostgreSQL as `DISTINCT ON (user_id) ... ORDER BY user_id, ts,",
            "channel`, which gives t1 and the channel of that first view (the smallest one among same-",
            "millisecond views, as pandas' peer rule) in the same pass, without a sort or a table read; on",
            "SQLite as a grouped `MIN(ts)` with the channel looked up per user, now in the index too. Steps",
            "2-4: PostgreSQL merges the users with each step's index range and groups (one join per step,",
            "no join explosion: the earlier steps are already one row per user); SQLite seeks each user's",
            "first step-k event. PostgreSQL runs it with `SET LOCAL` jit off, work_mem 256MB,",
            "random_page_cost 1.1, no parallel workers. The row 'channel looked up per user (before 0004)'",
            "is the previous plan on the same data in the same run: step 1 as `GROUP BY user_id`, then per",
            "user a lookup of the channel at t1 through `(type, ts)` and the table. The table is vacuumed",
            "and analysed after loading (index-only scans need the visibility map; knowcast's importer now",
            "does the same after a bulk load on PostgreSQL).",
            "",
        ]
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(md, encoding="utf-8")
    print(md)


if __name__ == "__main__":
    main()
