"""PostgreSQL goes away in the middle of an ingest and comes back.

A real API process (uvicorn) on a private PostgreSQL cluster; a client thread POSTs batches of events and
retries on 503 (honouring Retry-After, capped) and on connection errors, as docs/api.md tells clients to.
Midway the cluster is stopped, kept down for two seconds and started again, twice: ``fast`` (sessions
ended, open transactions rolled back), then ``immediate`` (a crash, recovered from the WAL at start). Then:

- during the outage the API answered 503 with Retry-After, never 500, and no request hung;
- once the database is back the client's retries go through without restarting the API;
- the store holds every event the client sent exactly once (a batch whose commit landed just before the
  connection broke is retried, and the event ids make the retry store nothing twice).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import text

from knowcast.ingest.service import import_records
from knowcast.store import Store

from .conftest import ApiServer, PgServer

BATCH = 100
USERS = [f"u{i}" for i in range(50)]
ITEMS = [f"v{i}" for i in range(20)]
T0 = 1_790_000_000_000
#: Longest a client waits on one Retry-After, whatever the server says.
RETRY_CAP_S = 2.0


@dataclass
class Client:
    """Posts batch after batch until told to stop; every batch is retried until the API takes it."""

    base: str
    stop: threading.Event = field(default_factory=threading.Event)
    sent: list[str] = field(default_factory=list)
    statuses: Counter[int | str] = field(default_factory=Counter)
    retry_after: list[str | None] = field(default_factory=list)
    acked_at: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    slowest_s: float = 0.0

    def batch(self, n: int) -> list[dict[str, Any]]:
        return [
            {
                "event_id": f"pgr-{n}-{i}",
                "type": "view",
                "ts": T0 + n * BATCH + i,
                "user_id": USERS[(n + i) % len(USERS)],
                "item_id": ITEMS[i % len(ITEMS)],
                "watch_ratio": 0.5,
            }
            for i in range(BATCH)
        ]

    def run(self) -> None:
        n = 0
        with httpx.Client(base_url=self.base, timeout=15) as http:
            while not self.stop.is_set():
                rows = self.batch(n)
                self._post_until_taken(http, rows)
                self.sent.extend(r["event_id"] for r in rows)
                self.acked_at.append(time.monotonic())
                n += 1

    def _post_until_taken(self, http: httpx.Client, rows: list[dict[str, Any]]) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            t = time.monotonic()
            try:
                r = http.post("/v1/events", json=rows)
            except httpx.TimeoutException:
                self.statuses["timeout"] += 1
                self.errors.append("a request hung for 15 s")
                continue
            except httpx.TransportError:
                self.statuses["connection error"] += 1
                time.sleep(0.2)
                continue
            finally:
                self.slowest_s = max(self.slowest_s, time.monotonic() - t)
            self.statuses[r.status_code] += 1
            if r.status_code == 200:
                return
            if r.status_code == 503:
                self.retry_after.append(r.headers.get("retry-after"))
                time.sleep(min(float(r.headers.get("retry-after") or 1), RETRY_CAP_S))
                continue
            self.errors.append(f"{r.status_code}: {r.text[:300]}")
            time.sleep(0.5)
        raise AssertionError("a batch was not taken within 120 s")


def _wait(cond: Callable[[], bool], timeout: float, what: str) -> None:
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _outage(pg: PgServer, mode: str, client: Client, api: ApiServer) -> float:
    """Stop PostgreSQL (``mode``), keep it down for at least 2 s, start it; returns seconds to resume."""
    pg.stop(mode)
    down_since = time.monotonic()
    seen_503 = client.statuses[503]
    # the API notices: requests now get 503 (or a connection-level failure), never a 500
    _wait(lambda: client.statuses[503] >= seen_503 + 3, 30, f"503 answers while PostgreSQL is down ({mode})")
    health = httpx.get(f"{api.base}/healthz", timeout=15)
    assert health.status_code == 503 and health.headers.get("retry-after"), health.text
    time.sleep(max(0.0, 2.0 - (time.monotonic() - down_since)))
    acked_while_down = len(client.acked_at)
    pg.start()
    up_at = time.monotonic()
    _wait(lambda: len(client.acked_at) >= acked_while_down + 5, 60, f"ingest to resume ({mode})")
    return client.acked_at[acked_while_down] - up_at


def test_ingest_survives_postgres_restarts(
    pg_server: PgServer, api_server: Callable[[dict[str, str]], ApiServer]
) -> None:
    """A clean restart (``fast``) and then a crash (``immediate``) of PostgreSQL under the same API."""
    url = pg_server.create_database("kc_faults_restart")
    store = Store(url).migrate()
    import_records(store.engine, "users", [{"user_id": u} for u in USERS])
    import_records(store.engine, "items", [{"item_id": i, "kind": "short_video"} for i in ITEMS])
    store.dispose()
    api = api_server({"KNOWCAST_DATABASE_URL": url})
    client = Client(api.base)
    worker = threading.Thread(target=client.run, daemon=True)
    worker.start()
    resumed: dict[str, float] = {}
    try:
        _wait(lambda: len(client.acked_at) >= 5, 60, "the first batches to be taken")
        for mode in ("fast", "immediate"):
            resumed[mode] = _outage(pg_server, mode, client, api)
    finally:
        client.stop.set()
        worker.join(150)
    assert not worker.is_alive(), "the client thread did not finish"
    print(f"statuses {dict(client.statuses)}; resumed after {resumed} s; slowest {client.slowest_s:.2f} s")
    assert not client.errors, (client.errors[:5], api.output()[-3000:])
    assert client.statuses[500] == 0 and "timeout" not in client.statuses, client.statuses
    assert client.statuses[503] >= 6 and all(v and v.isdigit() for v in client.retry_after)
    assert max(resumed.values()) < 10, f"ingest resumed only after {resumed} s"
    assert api.proc.poll() is None, "the API process died"
    assert "database unavailable" in api.output()  # the outage is in the server log

    store = Store(url)
    with store.engine.connect() as c:
        total, distinct = c.execute(text("SELECT COUNT(*), COUNT(DISTINCT id) FROM events")).one()
        stored = {r[0] for r in c.execute(text("SELECT id FROM events"))}
    store.dispose()
    assert len(client.sent) == len(set(client.sent)) >= 15 * BATCH
    assert total == distinct == len(client.sent), (total, distinct, len(client.sent))
    assert stored == set(client.sent)
