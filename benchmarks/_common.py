"""Helpers the benchmark scripts share: simulated data, fresh stores, measured child processes, a server.

Imported by the scripts as ``from _common import ...`` (``python benchmarks/x.py`` puts this folder on
``sys.path``). Kept free of knowcast imports at module level so a script's ``--help`` stays fast.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import platform
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
#: The benchmarks' own PostgreSQL database (never the shared ``test`` one); override per script.
PG_URL = os.environ.get("KNOWCAST_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/kc_bench")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def loadavg() -> tuple[float, float, float]:
    return os.getloadavg()


def machine_line() -> str:
    """Cores, Python, date and the 1/5/15-minute load average now: speed figures mean little without them."""
    la = loadavg()
    return (
        f"{os.cpu_count()} cores, no GPU ({platform.machine()}), CPython {platform.python_version()}, "
        f"shared with other jobs; date {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; "
        f"load average {la[0]:.1f} / {la[1]:.1f} / {la[2]:.1f} (1 / 5 / 15 min) at the start"
    )


# ------------------------------------------------------------------------------------------ data files
def default_sim_config():  # type: ignore[no-untyped-def]
    """The small platform ``benchmarks/ingest.py`` has always used (2,000 users, 500 items, 3 days)."""
    from knowcast.sim import SimConfig

    return SimConfig(seed=7, n_creators=50, n_items=500, n_users=2000, days=3)


def write_entities(workdir: Path, cfg) -> tuple[Path, Path, Path]:  # type: ignore[no-untyped-def]
    """The simulator's creators, items and users as JSONL files (what ``knowcast import`` reads)."""
    from knowcast.sim.catalog import build_catalog

    cat = build_catalog(cfg)
    paths = []
    for name, frame in (("creators", cat.creators), ("items", cat.items), ("users", cat.users)):
        path = workdir / f"{name}.jsonl"
        frame.assign(created_at=frame["created_at"].astype(str)).to_json(
            path, orient="records", lines=True, force_ascii=False
        )
        paths.append(path)
    return paths[0], paths[1], paths[2]


def write_events_csv(path: Path, cfg, n_events: int, chunk_size: int = 200_000) -> Path:  # type: ignore[no-untyped-def]
    """``n_events`` events of the simulator's volume generator (``iter_event_frames``) as one CSV file."""
    import pandas as pd

    from knowcast.sim import iter_event_frames

    first = True
    for frame in iter_event_frames(cfg, n_events=n_events, chunk_size=chunk_size):
        frame = frame.copy()
        frame["props"] = frame["props"].map(
            lambda v: "" if v is None or v != v else pd.io.json.ujson_dumps(v)
        )
        frame.to_csv(path, mode="w" if first else "a", header=first, index=False)
        first = False
    return path


def make_data(workdir: Path, n_events: int, cfg=None) -> tuple[Path, Path, Path, Path]:  # type: ignore[no-untyped-def]
    """creators.jsonl, items.jsonl, users.jsonl and events.csv of one simulated platform in ``workdir``."""
    cfg = cfg or default_sim_config()
    creators, items, users = write_entities(workdir, cfg)
    return creators, items, users, write_events_csv(workdir / "events.csv", cfg, n_events)


# -------------------------------------------------------------------------------------------- stores
def ensure_pg_database(url: str, fresh: bool = False) -> None:
    """Create the benchmark's own database (dropped first when ``fresh``)."""
    from sqlalchemy import create_engine, text

    base, name = url.rsplit("/", 1)
    admin = create_engine(
        base.replace("postgresql://", "postgresql+psycopg://") + "/postgres",
        isolation_level="AUTOCOMMIT",
        connect_args={"connect_timeout": 5},
    )
    with admin.connect() as c:
        exists = c.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).scalar()
        if exists and fresh:
            c.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        if not exists or fresh:
            c.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()


def pg_available(url: str = PG_URL) -> bool:
    try:
        ensure_pg_database(url)
    except Exception as exc:  # noqa: BLE001 - any failure means "not there"
        print(f"PostgreSQL unreachable ({exc.__class__.__name__}); skipping it", file=sys.stderr)
        return False
    return True


def fresh_store(url: str):  # type: ignore[no-untyped-def]
    """An empty, unmigrated knowcast store at ``url`` (SQLite file removed, PostgreSQL schema emptied)."""
    from sqlalchemy import text

    from knowcast.store import Store

    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
    else:
        ensure_pg_database(url)
    store = Store(url)
    if store.dialect == "postgresql":
        with store.engine.begin() as c:
            c.execute(text("DROP SCHEMA public CASCADE"))
            c.execute(text("CREATE SCHEMA public"))
    return store


# ------------------------------------------------------------------------------------ child processes
def run_child(target, *args):  # type: ignore[no-untyped-def]
    """Run ``target(*args, queue)`` in a fresh (spawned) process and return what it put on the queue."""
    ctx = mp.get_context("spawn")
    q: mp.Queue = ctx.Queue()
    p = ctx.Process(target=target, args=(*args, q))
    p.start()
    out = q.get()
    p.join()
    return out


@dataclass
class Measured:
    """A finished child process: exit status, output, wall seconds and its own peak RSS."""

    returncode: int
    stdout: str
    stderr: str
    wall_s: float
    maxrss_mb: float


def peak_rss_self_mb() -> float:
    """This process's own peak resident memory (``VmHWM``), in MB.

    Prefer it to ``ru_maxrss`` in a child: Linux carries the parent's RSS at fork time into the child's
    ``ru_maxrss`` across ``exec``, so a big parent puts a floor under every child's figure.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_measured(cmd: list[str], env: dict[str, str] | None = None, timeout: float | None = None) -> Measured:
    """Run ``cmd`` and reap it with ``os.wait4``: the rusage is that child's alone (RUSAGE_CHILDREN would
    keep the largest child seen so far). Its ``maxrss_mb`` is floored by this process's RSS at fork time
    (see ``peak_rss_self_mb``): children that can should report their own peak."""
    t = time.perf_counter()
    with (
        open(os.devnull) as devnull,
        subprocess.Popen(
            cmd, stdin=devnull, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True
        ) as proc,
    ):
        import threading

        chunks: dict[str, list[str]] = {"out": [], "err": []}

        def drain(stream: Any, key: str) -> None:
            for line in stream:
                chunks[key].append(line)

        readers = [
            threading.Thread(target=drain, args=(proc.stdout, "out"), daemon=True),
            threading.Thread(target=drain, args=(proc.stderr, "err"), daemon=True),
        ]
        for r in readers:
            r.start()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if deadline is not None and time.monotonic() > deadline:
                proc.kill()
            time.sleep(0.05)
        proc.returncode = os.waitstatus_to_exitcode(status)
        for r in readers:
            r.join(5)
    return Measured(
        proc.returncode,
        "".join(chunks["out"]),
        "".join(chunks["err"]),
        time.perf_counter() - t,
        usage.ru_maxrss / 1024,  # KiB on Linux
    )


# -------------------------------------------------------------------------------------------- server
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(
    url: str, artifacts: Path, port: int, workers: int = 1, extra_env: dict[str, str] | None = None
) -> subprocess.Popen:
    """``uvicorn knowcast.api.app:create_app`` on loopback (auth and rate limit off), once ``/healthz``
    answers."""
    import httpx

    env = dict(
        os.environ,
        KNOWCAST_DATABASE_URL=url,
        KNOWCAST_AUTH="off",
        KNOWCAST_RATE_LIMIT="0",
        KNOWCAST_ARTIFACTS=str(artifacts),
        **(extra_env or {}),
    )
    cmd = [
        sys.executable, "-m", "uvicorn", "knowcast.api.app:create_app", "--factory",
        "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
        "--log-level", "warning", "--no-access-log",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise RuntimeError("the server exited during start-up")
        time.sleep(0.3)
    proc.terminate()
    raise RuntimeError("the server did not answer /healthz within 120 s")


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
