"""``knowcast import events`` killed with SIGKILL halfway through 300,000 simulated events, then rerun.

The import runs as a real subprocess on SQLite and on PostgreSQL (our own database on the shared server).
It is killed once its reader is well into the file (the offset of its open file descriptor, read from
/proc), so the kill lands while rows are being written. Then:

- the store opens and is whole: ``PRAGMA integrity_check`` is ``ok`` on SQLite; the schema is at the head
  migration; the events indexes the bulk path drops inside its transaction are all there again;
- in the default mode (one transaction) nothing of the killed run is stored; with ``--on-error skip`` (a
  commit per chunk of about 50,000 rows) exactly the file's first whole chunks are;
- rerunning the same command finishes and stores every distinct event of the file once; a third run
  stores nothing new.

tests/core/test_cli.py kills a small synthetic import on SQLite by time; this one aims the kill and checks
both backends, the indexes and the chunked mode.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from itertools import accumulate
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import inspect, text

from knowcast.ingest.readers import read_chunks
from knowcast.ingest.service import import_file
from knowcast.store import Store
from tests.conftest import fresh_pg_database

pytestmark = pytest.mark.slow  # 300k rows, several CLI runs per backend: ~30-60 s each on 2 cores

N_EVENTS = 300_000
CHUNK = 50_000  # import_file's chunk_rows (the CLI's); the reader cuts by bytes, so chunks are about this
PG_DB = "kc_faults_import"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Creators, items and users of a small simulated platform; 300k of its events as CSV; and a second
    file of 150k events with new ids for the chunked run."""
    from knowcast.sim import SimConfig, iter_event_frames, simulate_platform

    d = tmp_path_factory.mktemp("import-data")
    cfg = SimConfig(seed=7, n_creators=20, n_items=200, n_users=1000, days=3)
    p = simulate_platform(cfg)
    out: dict[str, Path] = {}
    for kind, frame in (("creators", p.creators), ("items", p.items), ("users", p.users)):
        out[kind] = d / f"{kind}.jsonl"
        frame.assign(created_at=frame["created_at"].astype(str)).to_json(
            out[kind], orient="records", lines=True, force_ascii=False
        )
    events = pd.concat(iter_event_frames(cfg, n_events=N_EVENTS, chunk_size=100_000), ignore_index=True)
    events["props"] = events["props"].map(lambda v: "" if v is None or v != v else json.dumps(v))
    out["events"] = d / "events.csv"
    events.to_csv(out["events"], index=False)
    more = events.iloc[: 3 * CHUNK].assign(event_id=lambda f: "b-" + f["event_id"])
    out["more"] = d / "more.csv"
    more.to_csv(out["more"], index=False)
    return out


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path, data: dict[str, Path]) -> Iterator[str]:
    if request.param == "sqlite":
        u = f"sqlite:///{tmp_path / 'kc.db'}"
    else:
        reason = fresh_pg_database(PG_DB)
        if reason:
            pytest.skip(reason)
        u = f"postgresql://postgres@127.0.0.1:5432/{PG_DB}"
    store = Store(u).migrate()
    for kind in ("creators", "items", "users"):
        import_file(store.engine, kind, data[kind])
    store.dispose()
    yield u


def _cli(url: str, *args: str) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "knowcast.cli", "import", "events", *args, "--db", url]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _run(url: str, *args: str) -> dict:  # type: ignore[type-arg]
    proc = _cli(url, *args, "--json")
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:] + out[-2000:]
    return json.loads(out[out.index("{") :])


def _offset(pid: int, path: Path) -> int | None:
    """Where process ``pid`` is reading ``path`` (None until it has the file open)."""
    fds = Path(f"/proc/{pid}/fd")
    try:
        for fd in fds.iterdir():
            if os.readlink(fd) == str(path):
                for line in (Path(f"/proc/{pid}/fdinfo") / fd.name).read_text().splitlines():
                    if line.startswith("pos:"):
                        return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return None


def _count(url: str) -> int:
    s = Store(url)
    try:
        with s.engine.connect() as c:
            return int(c.execute(text("SELECT COUNT(*) FROM events")).scalar() or 0)
    finally:
        s.dispose()


def _ids(url: str, like: str) -> list[str]:
    s = Store(url)
    try:
        with s.engine.connect() as c:
            return list(c.execute(text("SELECT id FROM events WHERE id LIKE :p"), {"p": like}).scalars())
    finally:
        s.dispose()


def _indexes(url: str) -> list[str]:
    s = Store(url)
    try:
        return sorted(ix["name"] for ix in inspect(s.engine).get_indexes("events"))  # type: ignore[misc]
    finally:
        s.dispose()


def _kill_when(proc: subprocess.Popen[str], ready, what: str, timeout: float = 300) -> None:  # type: ignore[no-untyped-def]
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"the import ended ({proc.returncode}) before {what}: {err[-2000:]}")
        if ready():
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=30)
            assert proc.returncode == -signal.SIGKILL
            return
        time.sleep(0.02)
    proc.kill()
    raise AssertionError(f"timed out waiting for {what}")


def _wait_for_orphans(url: str, timeout: float = 120) -> None:
    """PostgreSQL ends a killed client's session when it next talks to the client; until then its
    transaction (and the table locks of the bulk path) stay. Wait for that, as an operator would."""
    if not url.startswith("postgresql"):
        return
    s = Store(url)
    try:
        t_end = time.monotonic() + timeout
        while time.monotonic() < t_end:
            with s.engine.connect() as c:
                others = c.execute(
                    text(
                        "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() "
                        "AND pid <> pg_backend_pid() AND state <> 'idle'"
                    )
                ).scalar()
            if not others:
                return
            time.sleep(0.2)
        raise AssertionError("the killed import's PostgreSQL session did not end")
    finally:
        s.dispose()


def _check_whole(url: str, indexes: list[str]) -> None:
    s = Store(url)
    try:
        if s.dialect == "sqlite":
            with s.engine.connect() as c:
                assert c.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
                assert c.exec_driver_sql("PRAGMA foreign_key_check").all() == []
        s.migrate()  # at head already: a no-op that must not fail
    finally:
        s.dispose()
    assert _indexes(url) == indexes  # the bulk path's dropped indexes came back with the rollback


def test_killed_import_leaves_a_whole_store_and_the_rerun_finishes(url: str, data: dict[str, Path]) -> None:
    indexes = _indexes(url)
    assert len(indexes) >= 3
    size = data["events"].stat().st_size
    distinct = int(pd.read_csv(data["events"], usecols=["event_id"])["event_id"].nunique())
    assert distinct == N_EVENTS

    # 1. default mode, one transaction: killed with 40-80% of the file read -> nothing stored
    proc = _cli(url, str(data["events"]))
    _kill_when(
        proc,
        lambda: (_offset(proc.pid, data["events"]) or 0) > 0.4 * size,
        "the reader to pass 40% of the file",
    )
    _wait_for_orphans(url)
    _check_whole(url, indexes)
    assert _count(url) == 0

    # 2. the rerun finishes; a third run stores nothing new
    rep = _run(url, str(data["events"]))
    assert rep["committed"] and rep["rows_written"] == distinct
    assert _count(url) == distinct
    rep = _run(url, str(data["events"]))
    assert rep["rows_written"] == 0 and rep["duplicates"] == distinct
    assert _count(url) == distinct
    _check_whole(url, indexes)

    # 3. --on-error skip commits chunk by chunk (150k rows onto 300k: no bulk path): killed after the first
    # chunk is committed -> whole chunks only; the rerun adds exactly the rest
    more = data["more"]
    proc = _cli(url, str(more), "--on-error", "skip")
    _kill_when(proc, lambda: _count(url) > distinct, "the first chunk to be committed")
    _wait_for_orphans(url)
    _check_whole(url, indexes)
    kept = _count(url) - distinct
    # the reader cuts the file by bytes (about CHUNK rows each): the stored rows are the file's first chunks
    bounds = list(accumulate(len(c) for c in read_chunks(more, chunk_rows=CHUNK)))
    assert len(bounds) >= 3 and kept in bounds[:-1], (kept, bounds)
    first = pd.read_csv(more, usecols=["event_id"], nrows=kept)["event_id"]
    assert set(_ids(url, "b-%")) == set(first)
    rep = _run(url, str(more), "--on-error", "skip")
    assert rep["rows_written"] == 3 * CHUNK - kept and rep["duplicates"] == kept
    assert _count(url) == distinct + 3 * CHUNK
