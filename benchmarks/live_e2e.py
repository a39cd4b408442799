"""End to end on loopback: POST comments to a real server, time them until a console WebSocket shows them.

Starts ``uvicorn knowcast.api.app:create_app --factory`` on a free port against a fresh SQLite store (with
``--bus redis`` the server uses KNOWCAST_REDIS_URL), connects one console, then posts real danmaku at a
fixed rate (open loop: batches every ``--batch-ms`` whatever the answers, at most ``--inflight`` requests
in flight) for ``--seconds``. Latency per comment = console receive time − POST send time (same clock).
After the run it checks the store: every accepted comment must be there exactly once.

The peer, measured in the same run: the pure pipeline (``RoomState.add_comments`` in batches of one POST's
size at the top rate) on one core with no HTTP, bus or store, i.e. the most one server process could take.

    python benchmarks/live_e2e.py                                  # quick: 200 and 2000/s for 10 s
    python benchmarks/live_e2e.py --rates 2000 --seconds 60        # the target figure
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from knowcast.ingest.service import import_records  # noqa: E402
from knowcast.paths import shared_data  # noqa: E402
from knowcast.store import Store  # noqa: E402


def texts() -> list[str]:
    import pandas as pd

    p = shared_data("danmaku", "bilibili_av80976236.csv")
    if p.exists():
        t = pd.read_csv(p)["text"].dropna().astype(str)
        return [x for x in t if x.strip()]
    return [f"第{i}条弹幕 老师讲得好" for i in range(1000)]


def pipeline_rate(sample: list[str], n: int, batch: int = 100) -> float:
    """Comments/s of ``RoomState.add_comments`` in batches of ``batch`` (what a POST of that size runs)."""
    from knowcast.live.pipeline import RoomState

    room = RoomState("peer")
    # warm up as the server's start-up does: jieba, the sentiment model and the batch moderation tables
    room.add_comments([(t, 0.0, "w", f"w{i}") for i, t in enumerate(sample[-200:])])
    items = [(sample[i % len(sample)], 1.0 + i * 0.0005, f"u{i % 500}", f"p{i}") for i in range(n)]
    t0 = time.perf_counter()
    for lo in range(0, n, batch):
        room.add_comments(items[lo : lo + batch])
    return n / (time.perf_counter() - t0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(db_url: str, bus: str, log: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = dict(os.environ)
    env.update(
        {
            "KNOWCAST_DATABASE_URL": db_url,
            "KNOWCAST_AUTH": "off",
            "KNOWCAST_LIVE_RATE": "1000000",
            "KNOWCAST_LIVE_BURST": "1000000",
        }
    )
    if bus == "redis":
        env.setdefault("KNOWCAST_REDIS_URL", "redis://127.0.0.1:6379/0")
    else:
        env.pop("KNOWCAST_REDIS_URL", None)
    cmd = [sys.executable, "-m", "uvicorn", "knowcast.api.app:create_app", "--factory", "--host", "127.0.0.1",
           "--port", str(port), "--log-level", "warning", "--no-access-log"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    import httpx

    for _ in range(300):
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc, port
        except httpx.HTTPError:
            time.sleep(0.2)
    raise SystemExit("server did not start")


async def run_load(port: int, room: str, rate: int, seconds: float, batch_ms: int, inflight: int,
                   sample: list[str], tag: str) -> dict[str, float]:  # fmt: skip
    import httpx
    import websockets

    sent: dict[str, float] = {}
    lat: list[float] = []
    received: set[str] = set()
    post_lat: list[float] = []
    status: dict[int, int] = {}
    accepted = 0
    url = f"http://127.0.0.1:{port}/v1/rooms/{room}/comments"
    ws = await websockets.connect(
        f"ws://127.0.0.1:{port}/v1/rooms/{room}/stream?batch_ms=50", max_size=None, ping_interval=None
    )
    json.loads(await ws.recv())  # snapshot

    async def reader() -> None:
        try:
            await _read(ws)
        except websockets.ConnectionClosed as exc:
            print(f"console closed: {exc}")

    async def _read(ws) -> None:  # type: ignore[no-untyped-def]
        async for raw in ws:
            now = time.perf_counter()
            m = json.loads(raw)
            if m.get("type") != "comments":
                continue
            for c in m["items"]:
                cid = c["comment_id"]
                t = sent.get(cid)
                if t is not None and cid not in received:
                    received.add(cid)
                    lat.append(now - t)

    rtask = asyncio.create_task(reader())
    sem = asyncio.Semaphore(inflight)
    per_batch = max(1, round(rate * batch_ms / 1000))
    n_batches = int(seconds * 1000 / batch_ms)
    tasks = []
    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=inflight)) as client:

        async def post(rows: list[dict]) -> None:
            nonlocal accepted
            async with sem:
                t0 = time.perf_counter()
                for r in rows:
                    sent[r["comment_id"]] = t0
                r = await client.post(url, json=rows)
                post_lat.append(time.perf_counter() - t0)
                status[r.status_code] = status.get(r.status_code, 0) + 1
                if r.status_code == 200:
                    accepted += r.json()["accepted"]

        start = time.perf_counter()
        k = 0
        for b in range(n_batches):
            due = start + b * batch_ms / 1000
            wait = due - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            rows = []
            for _ in range(per_batch):
                rows.append(
                    {"comment_id": f"{tag}-{k}", "user_id": f"u{k % 997}", "text": sample[k % len(sample)]}
                )
                k += 1
            tasks.append(asyncio.create_task(post(rows)))
        await asyncio.gather(*tasks)
        send_s = time.perf_counter() - start
    t_end = time.perf_counter() + 15
    while len(received) < accepted and time.perf_counter() < t_end:
        await asyncio.sleep(0.1)
    rtask.cancel()
    await ws.close()
    a = np.array(lat) * 1000 if lat else np.array([np.nan])
    p = np.array(post_lat) * 1000
    return {
        "posted": k,
        "accepted": accepted,
        "achieved_rate": accepted / send_s,
        "on_console": len(received),
        "p50": float(np.percentile(a, 50)),
        "p95": float(np.percentile(a, 95)),
        "p99": float(np.percentile(a, 99)),
        "post_p99": float(np.percentile(p, 99)) if len(p) else float("nan"),
        "non_200": sum(v for s, v in status.items() if s != 200),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rates", default="200,2000", help="comments per second, comma-separated")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--batch-ms", type=int, default=50, help="one POST every this many ms")
    ap.add_argument("--inflight", type=int, default=32, help="most POSTs in flight at once")
    ap.add_argument("--bus", choices=["inprocess", "redis"], default="inprocess")
    ap.add_argument("--peer-n", type=int, default=3000, help="comments for the pipeline-only peer")
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks" / "live_e2e.md"))
    args = ap.parse_args()
    sample = texts()
    per_post = max(1, round(max(int(r) for r in args.rates.split(",")) * args.batch_ms / 1000))
    peer = pipeline_rate(sample, args.peer_n, per_post)
    print(f"peer: pipeline alone (RoomState.add_comments, batches of {per_post}, one core): {peer:,.0f}/s")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for rate in [int(r) for r in args.rates.split(",")]:
            db = f"sqlite:///{tmp}/live_{rate}.db"
            store = Store(db).migrate()
            import_records(store.engine, "creators", [{"creator_id": "c1"}])
            import_records(store.engine, "items", [{"item_id": "bench", "kind": "live", "creator_id": "c1"}])
            proc, port = start_server(db, args.bus, Path(tmp) / f"server_{rate}.log")
            try:
                import httpx  # warm the pipeline so the lexicon build is not timed

                httpx.post(f"http://127.0.0.1:{port}/v1/rooms/bench/comments", json=["warm up"], timeout=120)
                res = asyncio.run(
                    run_load(
                        port, "bench", rate, args.seconds, args.batch_ms, args.inflight, sample, f"r{rate}"
                    )
                )
            finally:
                proc.terminate()
                proc.wait(30)
            with store.engine.connect() as c:
                from sqlalchemy import text

                stored = c.execute(
                    text("SELECT COUNT(*) FROM comments WHERE id LIKE :p"), {"p": f"r{rate}-%"}
                ).scalar()
            store.dispose()
            res["stored"] = int(stored or 0)
            res["rate"] = rate
            res["lost"] = res["accepted"] - res["stored"]
            rows.append(res)
            print(
                f"rate {rate}/s: accepted {res['accepted']} ({res['achieved_rate']:.0f}/s), on console "
                f"{res['on_console']}, stored {res['stored']}, p50 {res['p50']:.0f} ms, "
                f"p99 {res['p99']:.0f} ms, "
                f"POST p99 {res['post_p99']:.0f} ms, non-200 {res['non_200']}"
            )
    cmd = "python benchmarks/live_e2e.py " + " ".join(sys.argv[1:])
    lines = [
        "# Live rooms end to end: POST → console",
        "",
        f"Command: `{cmd.strip()}`  ",
        f"Machine: 2 cores (shared with other jobs), no GPU. Date: {dt.date.today().isoformat()}. "
        f"Bus: {args.bus}; store: SQLite (WAL); one uvicorn process; load generator and console in a second "
        "process on the same machine.",
        "",
        "Peer, same run: the pipeline alone (`RoomState.add_comments` in batches of one POST at the top "
        "rate, one core, no HTTP/bus/store): "
        f"**{peer:,.0f} comments/s**.",
        "",
        "| target /s | seconds | accepted | achieved /s | achieved / peer | on console | stored | lost | "
        "p50 ms | p95 ms | p99 ms | POST p99 ms | non-200 |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['rate']:,} | {args.seconds:g} | {r['accepted']:,} | {r['achieved_rate']:,.0f} | "
            f"{r['achieved_rate'] / peer:.2f} | {r['on_console']:,} | {r['stored']:,} | {r['lost']} | "
            f"{r['p50']:.0f} | {r['p95']:.0f} | {r['p99']:.0f} | {r['post_p99']:.0f} | {r['non_200']} |"
        )
    lines += [
        "",
        "Target: p99 under 200 ms at 2,000 comments/s for 60 s, nothing lost. `lost` = accepted − stored "
        "(ids are primary keys, so stored means stored once).",
        "",
    ]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines), encoding="utf-8")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
