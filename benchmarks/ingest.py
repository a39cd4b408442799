"""Ingest benchmark: knowcast's validated, deduplicating import vs a bare ``pandas.DataFrame.to_sql``.

    python benchmarks/ingest.py --events 1000000            # SQLite and PostgreSQL, file import
    python benchmarks/ingest.py --events 200000 --http      # plus HTTP batches of 1,000 on loopback

Both sides start from the same CSV file (the peer's time includes ``pandas.read_csv``), each run in its own
child process so peak memory (max RSS) is per run. Results go to docs/benchmarks/ingest.md.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from _common import PG_URL, ROOT, fresh_store, make_data, run_child


def _child_knowcast(url: str, files: tuple[Path, Path, Path, Path], q: mp.Queue) -> None:
    from knowcast.ingest.service import import_file

    store = fresh_store(url).migrate()
    creators, items, users, events = files
    import_file(store.engine, "creators", creators)
    import_file(store.engine, "items", items)
    import_file(store.engine, "users", users)
    t, cpu = time.perf_counter(), time.process_time()
    rep = import_file(store.engine, "events", events)
    dt, cpu = time.perf_counter() - t, time.process_time() - cpu
    t = time.perf_counter()
    again = import_file(store.engine, "events", events)
    dt2 = time.perf_counter() - t
    q.put(
        {
            "rows": rep.rows_written,
            "seconds": dt,
            "cpu_s": cpu,
            "again_written": again.rows_written,
            "again_duplicates": again.duplicates,
            "again_seconds": dt2,
            "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
    )
    store.dispose()


def _child_to_sql(url: str, events: Path, q: mp.Queue) -> None:
    from sqlalchemy import text

    from knowcast.store.db import make_engine

    engine = make_engine(url)
    with engine.begin() as c:
        c.execute(text("DROP TABLE IF EXISTS events_bare"))
    t, cpu = time.perf_counter(), time.process_time()
    rows = 0
    for df in pd.read_csv(events, chunksize=200_000, dtype={"room_id": str}):
        df.to_sql("events_bare", engine, if_exists="append", index=False, chunksize=50_000)
        rows += len(df)
    dt, cpu = time.perf_counter() - t, time.process_time() - cpu
    with engine.begin() as c:
        c.execute(text("DROP TABLE IF EXISTS events_bare"))
    q.put(
        {
            "rows": rows,
            "seconds": dt,
            "cpu_s": cpu,
            "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
    )
    engine.dispose()


def bench_http(
    files: tuple[Path, Path, Path, Path], workdir: Path, batch: int = 1000, seconds: float = 20.0
) -> dict:
    """One uvicorn process on loopback; a client posts batches of ``batch`` events for ``seconds``."""
    import subprocess

    import httpx
    import orjson

    from knowcast.ingest.service import import_file

    db = workdir / "http.db"
    url = f"sqlite:///{db}"
    store = fresh_store(url).migrate()
    creators, items, users, events = files
    for kind, f in (("creators", creators), ("items", items), ("users", users)):
        import_file(store.engine, kind, f)
    store.dispose()
    env = {**os.environ, "KNOWCAST_DATABASE_URL": url, "KNOWCAST_AUTH": "off", "KNOWCAST_DEMO": "off"}
    port = 8765
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "knowcast.api.app:create_app",
            "--factory",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=env,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                if httpx.get(base + "/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        df = pd.read_csv(events, nrows=400_000, dtype=str, keep_default_na=False)
        records = [{k: v for k, v in r.items() if v != ""} for r in df.to_dict("records")]
        # A load client sends ready-made payloads: the bodies are serialised before the clock starts, so
        # the figure is the server's (the client shares the machine's two cores with it).
        bodies = [orjson.dumps(records[i : i + batch]) for i in range(0, len(records), batch)]
        sent = 0
        lat: list[float] = []
        headers = {"Content-Type": "application/json"}
        with httpx.Client(base_url=base, timeout=30, headers=headers) as client:
            server_cpu = _proc_cpu_s(proc.pid)
            t0 = time.perf_counter()
            for i, body in enumerate(bodies):
                t = time.perf_counter()
                r = client.post("/v1/events", content=body)
                lat.append(time.perf_counter() - t)
                if r.status_code != 200:
                    raise RuntimeError(f"HTTP {r.status_code}: {r.text[:300]}")
                sent += len(records[i * batch : (i + 1) * batch])
                if time.perf_counter() - t0 > seconds:
                    break
            dt = time.perf_counter() - t0
            server_cpu = _proc_cpu_s(proc.pid) - server_cpu
        lat.sort()
        return {
            "events": sent,
            "seconds": dt,
            "events_per_s": sent / dt,
            "p50_ms": lat[len(lat) // 2] * 1000,
            "p99_ms": lat[int(len(lat) * 0.99) - 1] * 1000,
            "server_cpu_ms_per_batch": server_cpu * 1000 / len(lat),
        }
    finally:
        proc.terminate()
        proc.wait()


def _proc_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far, from /proc (NaN where there is none)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--stores", default="sqlite,postgresql")
    ap.add_argument("--http", action="store_true", help="also measure HTTP batch ingest")
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks" / "ingest.md"))
    args = ap.parse_args()
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="kc-ingest-") as tmp:
        work = Path(tmp)
        t = time.perf_counter()
        files = make_data(work, args.events)
        print(
            f"generated {args.events:,} events in {time.perf_counter() - t:.1f}s "
            f"({files[3].stat().st_size / 1e6:.0f} MB CSV)"
        )
        rows = []
        for store in args.stores.split(","):
            url = f"sqlite:///{work / 'bench.db'}" if store == "sqlite" else PG_URL
            kc = run_child(_child_knowcast, url, files)
            bare = run_child(_child_to_sql, url, files[3])
            row = {
                "store": store,
                "knowcast ev/s": kc["rows"] / kc["seconds"],
                "to_sql ev/s": bare["rows"] / bare["seconds"],
                "ratio": (kc["rows"] / kc["seconds"]) / (bare["rows"] / bare["seconds"]),
                "knowcast cpu s": kc["cpu_s"],
                "to_sql cpu s": bare["cpu_s"],
                "re-import dup ev/s": args.events / kc["again_seconds"],
                "re-import written": kc["again_written"],
                "knowcast peak MB": kc["maxrss_mb"],
                "to_sql peak MB": bare["maxrss_mb"],
            }
            print(row)
            rows.append(row)
        http = bench_http(files, work) if args.http else None
    write_report(args, rows, http, (load_start, os.getloadavg()[0]))


def write_report(
    args: argparse.Namespace, rows: list[dict], http: dict | None, load: tuple[float, float]
) -> None:
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Ingest benchmark",
        "",
        f"Command: `python benchmarks/ingest.py --events {args.events}{' --http' if http else ''}`  ",
        f"Machine: {os.cpu_count()} cores, no GPU, Python {platform.python_version()}, "
        f"shared with other jobs (1-minute load average {load[0]:.1f} at the start, {load[1]:.1f} at the "
        f"end); date {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. Absolute rates move with the load; the "
        "ratio to the same-run `to_sql` peer much less.",
        "",
        "knowcast = `knowcast import events FILE` (validation, reference checks, dedup by event id, one "
        "transaction); peer = `pandas.read_csv` + `DataFrame.to_sql` into a bare table (no validation, no "
        "keys, no indexes), same CSV, same run, each in its own process. CPU s = the importing process's "
        "own CPU seconds (all its threads; a PostgreSQL server's CPU is not in it): steadier than the "
        "rates on a busy machine.",
        "",
        "| store | knowcast events/s | to_sql events/s | ratio | knowcast CPU s | to_sql CPU s | "
        "re-import (all duplicates) events/s | rows written by re-import | knowcast peak RSS MB | "
        "to_sql peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['store']} | {r['knowcast ev/s']:,.0f} | {r['to_sql ev/s']:,.0f} | {r['ratio']:.2f} | "
            f"{r['knowcast cpu s']:.1f} | {r['to_sql cpu s']:.1f} | "
            f"{r['re-import dup ev/s']:,.0f} | {r['re-import written']} | {r['knowcast peak MB']:.0f} | "
            f"{r['to_sql peak MB']:.0f} |"
        )
    if http:
        lines += [
            "",
            "HTTP ingest, one server process (uvicorn), one client on loopback sending ready-serialised "
            "batches of 1,000 events one after another (`POST /v1/events`, SQLite store):",
            "",
            "| events | seconds | events/s | p50 ms per batch | p99 ms per batch | server CPU ms per batch |",
            "|---|---|---|---|---|---|",
            f"| {http['events']:,} | {http['seconds']:.1f} | {http['events_per_s']:,.0f} | "
            f"{http['p50_ms']:.0f} | {http['p99_ms']:.0f} | {http['server_cpu_ms_per_batch']:.1f} |",
        ]
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
