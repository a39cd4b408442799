"""Production mode end to end: ``knowcast serve --workers 2`` on PostgreSQL and Redis, behind one port.

Every request may land on either worker process, so nothing may live in one process only: an event
posted through one connection must change the recommendations every other connection gets, a dashboard
session signed by one worker must be honoured by the other, and a key's rate limit is one bucket in Redis
shared by both (not one bucket per process, which would let a key through twice as often).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from knowcast.store import Store
from tests.conftest import fresh_pg_database
from tests.live_server.conftest import free_port, redis_reason, wait_up

PG_URL = "postgresql://postgres@127.0.0.1:5432/kc_workers_test"
REDIS_URL = "redis://127.0.0.1:6379/0"
BURST = 30
RATE = 0.5  # per second: low, so the refill during the burst test stays far below a second bucket


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    reason = fresh_pg_database("kc_workers_test") or redis_reason(REDIS_URL)
    if reason:
        pytest.skip(reason)
    from knowcast.api.security import create_api_key
    from knowcast.recommend.service import train
    from knowcast.services.demo import SIZES, seed_demo
    from knowcast.sim import SimConfig
    from knowcast.web.accounts import create_account

    d = tmp_path_factory.mktemp("workers")
    store = Store(PG_URL).migrate()
    seed_demo(store.engine, SimConfig(seed=3, **SIZES["tiny"]))
    train(store.engine, "ease", artifacts_dir=d / "artifacts", next_purchase=False)
    with store.sessions() as s:
        _, reader = create_api_key(s, "reader", ["read", "ingest"])
        _, limited = create_api_key(s, "limited", ["read"])
        create_account(s, "ops", "correct horse battery", "analyst")
        s.commit()
    store.dispose()
    port = free_port()
    env = dict(os.environ)
    env.update(
        {
            "KNOWCAST_DATABASE_URL": PG_URL,
            "KNOWCAST_REDIS_URL": REDIS_URL,
            "KNOWCAST_ARTIFACTS": str(d / "artifacts"),
            "KNOWCAST_RATE_LIMIT": str(RATE),
            "KNOWCAST_RATE_BURST": str(BURST),
        }
    )
    env.pop("KNOWCAST_SECRET_KEY", None)  # the signing secret must come from the shared store
    log = d / "serve.log"
    cmd = [sys.executable, "-m", "knowcast.cli", "serve", "--workers", "2", "--no-demo", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, cwd=d, stdout=log.open("w"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_up(port, proc, log, timeout=300)  # two workers importing on a busy 2-core box
        yield {"base": base, "reader": reader, "limited": limited, "log": log}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def _fresh(method: str, url: str, **kw) -> httpx.Response:  # type: ignore[no-untyped-def]
    """One request on a new TCP connection, so the kernel may hand it to either worker."""
    with httpx.Client(timeout=30) as c:
        return c.request(method, url, **kw)


def _page(url: str, cookies: dict[str, str]) -> httpx.Response:
    with httpx.Client(timeout=30, cookies=cookies) as c:
        return c.get(url)


def _workers_seen(base: str, tries: int = 200) -> set[int]:
    seen: set[int] = set()
    with ThreadPoolExecutor(8) as pool:
        for _ in range(tries // 20):
            for r in pool.map(lambda _: _fresh("GET", base + "/healthz"), range(20)):
                assert r.status_code == 200
                seen.add(r.json()["worker"])
            if len(seen) >= 2:
                break
    return seen


def test_two_workers_answer_on_one_port(served: dict) -> None:
    seen = _workers_seen(served["base"])
    assert len(seen) == 2, f"only worker(s) {seen} answered; the log:\n{served['log'].read_text()[-2000:]}"


def test_a_watched_item_leaves_the_feed_on_every_worker(served: dict) -> None:
    base, key = served["base"], {"X-API-Key": served["reader"]}
    user = "u000007"
    first = _fresh("GET", f"{base}/v1/users/{user}/recommendations?n=5&surface=feed", headers=key)
    assert first.status_code == 200, first.text
    top = first.json()["items"][0]["item_id"]
    ev = {"event_id": f"w-{time.time_ns()}", "type": "view", "user_id": user, "item_id": top,
          "ts": int(time.time() * 1000) - 1000, "watch_ratio": 1.0, "watch_seconds": 60}  # fmt: skip
    posted = _fresh("POST", f"{base}/v1/events", headers=key, json=[ev])
    assert posted.status_code in (200, 201), posted.text
    with ThreadPoolExecutor(8) as pool:
        answers = list(
            pool.map(
                lambda _: _fresh(
                    "GET", f"{base}/v1/users/{user}/recommendations?n=5&surface=feed", headers=key
                ),
                range(24),
            )
        )
    for r in answers:
        assert r.status_code == 200, r.text
        assert top not in [it["item_id"] for it in r.json()["items"]]
    assert len({tuple(it["item_id"] for it in r.json()["items"]) for r in answers}) == 1
    # the ranked pages are shared through Redis (recommend/cache.py), keyed by the user's events
    import redis

    from knowcast.recommend.cache import PREFIX

    assert redis.Redis.from_url(REDIS_URL).keys(PREFIX + "*")


def test_a_dashboard_session_is_honoured_by_every_worker(served: dict) -> None:
    base = served["base"]
    with httpx.Client(base_url=base, timeout=30) as c:
        page = c.get("/login")
        token = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert token, page.text[:500]
        r = c.post(
            "/login",
            data={"username": "ops", "password": "correct horse battery", "csrf": token.group(1)},
            follow_redirects=False,
        )
        assert r.status_code in (302, 303), r.text[:500]
        cookies = dict(c.cookies)
    assert cookies
    with ThreadPoolExecutor(8) as pool:
        pages = list(
            pool.map(
                lambda _: _page(base + "/creators", cookies),
                range(24),
            )
        )
    assert [p.status_code for p in pages] == [200] * 24


def test_the_rate_limit_is_one_bucket_across_workers(served: dict) -> None:
    base, key = served["base"], {"X-API-Key": served["limited"]}
    url = base + "/v1/items?limit=1"
    t0 = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        codes = [r.status_code for r in pool.map(lambda _: _fresh("GET", url, headers=key), range(80))]
    elapsed = time.monotonic() - t0
    ok, limited = codes.count(200), codes.count(429)
    assert ok + limited == len(codes), codes
    # one shared bucket: the burst plus what refills while the requests run; a bucket per process would
    # let 2 x BURST through.
    assert ok <= BURST + RATE * elapsed + 2 < 2 * BURST, (ok, elapsed)
    assert limited > 0
    r = _fresh("GET", url, headers=key)
    if r.status_code == 429:
        assert float(r.headers["Retry-After"]) > 0
