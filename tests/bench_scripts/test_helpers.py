"""The benchmark scripts' own logic: fitted slopes, report links, per-child peak memory, the traffic mix."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))

import _common  # noqa: E402
import collect  # noqa: E402
import load  # noqa: E402
import scale  # noqa: E402


def test_slope_recovers_a_power_law_and_size_for_inverts_it() -> None:
    pts = [(n, 3e-4 * n**1.5) for n in (1e5, 1e6, 1e7)]
    assert scale.slope(pts) == pytest.approx(1.5)
    rows = [{"size": n, "seconds": s, "engine": "postgresql"} for n, s in pts]
    n5 = scale.size_for(rows, 5.0)
    assert 3e-4 * n5**1.5 == pytest.approx(5.0)
    value, s = scale.at_size(rows, 1e8)
    assert s == pytest.approx(1.5) and value == pytest.approx(3e-4 * 1e12)
    assert scale.slope([(1e5, 2.0)]) is None  # one size: no slope


def test_extrapolation_is_at_least_linear_and_uses_cpu_time_on_sqlite() -> None:
    # wall time nearly flat (fixed costs, load swings), CPU time exactly linear
    rows = [
        {"size": 1e5, "seconds": 10.0, "cpu_s": 1.0, "engine": "sqlite", "peak_rss_mb": 200.0},
        {"size": 1e6, "seconds": 12.0, "cpu_s": 10.0, "engine": "sqlite", "peak_rss_mb": 290.0},
    ]
    value, s = scale.at_size(rows, 1e7)
    assert s == pytest.approx(1.0) and value == pytest.approx(120.0)
    for r in rows:
        r["engine"] = "postgresql"  # wall time there; its slope (0.08) is floored at 1
    assert scale.growth(rows) == 1.0
    mem, per_million = scale.memory_at(rows, 1e7)
    assert per_million == pytest.approx(100.0) and mem == pytest.approx(290.0 + 900.0)


def test_relink_points_report_links_at_the_benchmarks_folder() -> None:
    line = "see [ops](../operations.md#x), ![plot](scale.png), [web](https://a.b/c) and [top](#top)"
    assert collect.relink(line) == (
        "see [ops](benchmarks/../operations.md#x), ![plot](benchmarks/scale.png), [web](https://a.b/c) "
        "and [top](#top)"
    )


def test_a_child_reports_its_own_peak_memory() -> None:
    prelude = f"import sys; sys.path.insert(0, {str(BENCH)!r}); import _common; "
    grow = "b = bytearray(150 * 2**20); b[::4096] = b'x' * len(b[::4096]); "
    big = _common.run_measured([sys.executable, "-c", prelude + grow + "print(_common.peak_rss_self_mb())"])
    small = _common.run_measured([sys.executable, "-c", prelude + "print(_common.peak_rss_self_mb())"])
    assert big.returncode == 0 and small.returncode == 0
    assert float(big.stdout) >= 150
    assert float(small.stdout) < 100
    assert big.wall_s > 0


def test_traffic_mix_and_event_bodies() -> None:
    fx = load.Fixtures(users=[f"u{i}" for i in range(50)], items=[f"i{i}" for i in range(20)], end_ms=10**12)
    t = load.Traffic(fx, seed=1)
    draws = [t.next() for _ in range(20_000)]
    share = Counter(d[0] for d in draws)
    for endpoint, p in zip(load.ENDPOINTS, load.MIX, strict=True):
        assert share[endpoint] / len(draws) == pytest.approx(p, abs=0.01)
    events = [d for d in draws if d[0] == "event ingest"]
    assert all(m == "POST" and p == "/v1/events" and len(b) == 1 for _, m, p, b in events)
    ids = [b[0]["event_id"] for *_, b in events]
    assert len(set(ids)) == len(ids)  # every posted event is new
    assert {b[0]["user_id"] for *_, b in events} <= set(fx.users)
    reads = {(m, p) for e, m, p, _ in draws if e == "analytics"}
    assert reads == {("POST", "/v1/analytics/funnel"), ("GET", "/v1/analytics/subscriptions")}


def test_phase_passes_only_with_low_interactive_p99_no_errors_and_the_rate_answered() -> None:
    ph = load.Phase(rate=10, seconds=10, elapsed=10.0)
    ph.lat["recommendations"] = [5.0] * 90
    ph.lat["event ingest"] = [8.0] * 9
    ph.lat["analytics"] = [900.0]  # analytics is reported, not held to the target
    assert ph.ok(100)
    ph.lat["recommendations"][:5] = [500.0] * 5
    assert not ph.ok(100)
    ph.lat["recommendations"][:5] = [5.0] * 5
    ph.errors["analytics"] = 1
    assert not ph.ok(100)
    ph.errors["analytics"] = 0
    ph.elapsed = 20.0  # only half the offered rate answered
    assert not ph.ok(100)
