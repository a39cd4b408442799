"""Property-based tests (hypothesis) for the parsers that take outside input and for the A/B statistics.

Parsers must never crash on any input: each value is either understood or reported as a row error.
Statistics must keep their invariants (ranges, symmetry, additivity) and agree with SciPy.
"""

from __future__ import annotations

import csv
import json
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi import HTTPException
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from knowcast.api.routers.catalog import _cursor_decode
from knowcast.experiments.stats import SampleStats, adjust_p_values, frequentist_test, srm_p_value
from knowcast.ingest.readers import read_chunks
from knowcast.ingest.validate import (
    MAX_ABS_EPOCH_MS,
    _parse_list,
    check_events,
    check_items,
    check_users,
    parse_timestamps,
)

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
NOW_MS = 1_900_000_000_000

# Anything JSON can carry, as an API client might send it.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=5), kids, max_size=3),
    max_leaves=8,
)
instants = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
).map(lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000))


def _ms(d: datetime) -> int:
    return int(round(d.timestamp() * 1000))


# ----------------------------------------------------------------------------------------- timestamps
@FAST
@given(instants, st.sampled_from(["Z", "+00:00", "+08:00", "-05:30", ""]))
def test_iso_timestamps_round_trip(d: datetime, suffix: str) -> None:
    offset = {"Z": 0, "+00:00": 0, "": 0, "+08:00": 480, "-05:30": -330}[suffix]
    local = d + timedelta(minutes=offset)
    text = local.replace(tzinfo=None).isoformat(timespec="milliseconds") + suffix
    ts, bad = parse_timestamps(pd.Series([text], dtype=object))
    assert not bad[0]
    assert ts[0] == _ms(d)


@FAST
@given(instants.filter(lambda d: d >= datetime(1973, 3, 4, tzinfo=UTC)))
def test_epoch_seconds_and_milliseconds(d: datetime) -> None:
    """Numbers below 1e11 are seconds (documented), so milliseconds are unambiguous from March 1973."""
    ms = _ms(d)
    ts, bad = parse_timestamps(pd.Series([ms // 1000, ms, str(ms)], dtype=object))
    assert not bad.any()
    assert list(ts) == [ms // 1000 * 1000, ms, ms]


@FAST
@given(st.lists(json_values, min_size=1, max_size=10))
def test_timestamps_never_crash_nor_overflow(values: list) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. "invalid value encountered in cast": silent garbage
        ts, bad = parse_timestamps(pd.Series(values, dtype=object))
    assert ts.shape == bad.shape == (len(values),)
    assert ts.dtype == np.int64
    assert (np.abs(ts[~bad]) <= MAX_ABS_EPOCH_MS).all()


def test_out_of_range_epochs_are_bad_not_garbage() -> None:
    ts, bad = parse_timestamps(pd.Series([1e300, float("inf"), "1e30", -1e20, 1_700_000_000], dtype=object))
    assert list(bad) == [True, True, True, True, False]
    assert ts[-1] == 1_700_000_000_000


# ----------------------------------------------------------------------------------------- lists, cursors
@FAST
@given(st.lists(st.text(min_size=1, max_size=10).filter(lambda s: s.strip()), max_size=6))
def test_tag_lists_json_form_round_trip(tags: list[str]) -> None:
    got, ok = _parse_list(json.dumps(tags))
    assert ok and got == [t.strip() for t in tags]


@FAST
@given(st.lists(st.text(alphabet="abcxyz 0123中文", min_size=1, max_size=8).filter(str.strip), max_size=6))
def test_tag_lists_pipe_form_round_trip(tags: list[str]) -> None:
    got, ok = _parse_list("|".join(tags))
    assume(not "|".join(tags).strip().startswith("["))
    assert ok and got == [t.strip() for t in tags]


@FAST
@given(json_values)
def test_tag_lists_never_crash(value: object) -> None:
    got, ok = _parse_list(value)
    assert isinstance(got, list) and isinstance(ok, bool)


@FAST
@given(st.text(max_size=60))
def test_cursor_is_either_decoded_or_422(cursor: str) -> None:
    try:
        ts, eid = _cursor_decode(cursor)
    except HTTPException as exc:
        assert exc.status_code == 422
    else:
        assert isinstance(ts, int) and isinstance(eid, str)


# ----------------------------------------------------------------------------------------- row validation
FIELDS = ["event_id", "type", "ts", "user_id", "item_id", "amount", "watch_seconds", "watch_ratio", "props",
          "title", "kind", "tags", "price", "creator_id", "attributes", "created_at"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
@given(st.lists(st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=8), min_size=1, max_size=6))
def test_validation_accounts_for_every_row(rows: list[dict]) -> None:
    """Any JSON rows: no exception; every row is kept or named (by its line) in at least one error."""
    keys = sorted({k for r in rows for k in r})
    raw = {k: [r.get(k) for r in rows] for k in keys}
    lines = np.arange(1, len(rows) + 1)
    for check in (check_events, check_users, check_items):
        out = check(raw, lines, now_ms=NOW_MS)
        rejected = set(out.rejected_rows.tolist())
        assert len(out.frame) + len(rejected) == len(rows)
        assert {e.line for e in out.errors} == {int(lines[i]) for i in rejected}
        assert all(1 <= e.line <= len(rows) and e.field and e.message for e in out.errors)


# ----------------------------------------------------------------------------------------- CSV reader
cell = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\r"), max_size=12
)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(
    st.lists(st.tuples(cell.filter(str.strip), cell), min_size=1, max_size=8),
    st.sampled_from([",", "\t", ";"]),
)
def test_csv_round_trip(
    tmp_path_factory: pytest.TempPathFactory, rows: list[tuple[str, str]], delim: str
) -> None:
    """Whatever text a cell holds (quotes, delimiters, newlines, CJK), the reader gives it back (stripped)."""
    path = Path(tmp_path_factory.mktemp("csv")) / "rows.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, delimiter=delim, quoting=csv.QUOTE_MINIMAL)
        w.writerow(["user_id", "note"])
        w.writerows(rows)
    got: list[tuple[str, str]] = []
    for ch in read_chunks(path, "csv", delimiter=delim):
        assert not ch.errors, ch.errors
        for a, b in zip(ch.columns["user_id"], ch.columns["note"], strict=True):
            got.append(("" if a is None or a != a else str(a), "" if b is None or b != b else str(b)))
    assert [(a.strip(), b.strip()) for a, b in got] == [(a.strip(), b.strip()) for a, b in rows]


# ----------------------------------------------------------------------------------------- statistics
samples = st.lists(st.floats(min_value=-1e3, max_value=1e3, allow_nan=False), min_size=3, max_size=40)


@FAST
@given(samples, samples)
def test_sample_stats_are_additive(a: list[float], b: list[float]) -> None:
    joined = SampleStats.from_values(a) + SampleStats.from_values(b)
    direct = SampleStats.from_values(a + b)
    assert joined.n == direct.n
    assert joined.mean == pytest.approx(direct.mean, rel=1e-9, abs=1e-9)
    assert joined.variance == pytest.approx(direct.variance, rel=1e-6, abs=1e-6)


@FAST
@given(samples, samples)
def test_welch_matches_scipy_and_is_symmetric(a: list[float], b: list[float]) -> None:
    sa, sb = SampleStats.from_values(a), SampleStats.from_values(b)
    assume(sa.variance > 1e-6 and sb.variance > 1e-6)
    res = frequentist_test(sa, sb, relative=False)
    assert 0.0 <= res.p_value <= 1.0
    assert res.ci[0] <= res.expected <= res.ci[1]
    ref = sps.ttest_ind_from_stats(
        sb.mean, np.sqrt(sb.variance), sb.n, sa.mean, np.sqrt(sa.variance), sa.n, equal_var=False
    )
    assert res.p_value == pytest.approx(ref.pvalue, rel=1e-6, abs=1e-9)
    swapped = frequentist_test(sb, sa, relative=False)
    assert swapped.expected == pytest.approx(-res.expected, abs=1e-9)
    assert swapped.p_value == pytest.approx(res.p_value, rel=1e-9, abs=1e-12)


@FAST
@given(st.lists(st.floats(min_value=0, max_value=1), min_size=1, max_size=20))
def test_adjusted_p_values_keep_order_and_range(p: list[float]) -> None:
    holm, bh = adjust_p_values(p, "holm"), adjust_p_values(p, "bh")
    for adj in (holm, bh):
        assert all(0 <= x <= 1 for x in adj)
        assert all(x >= y - 1e-12 for x, y in zip(adj, p, strict=True))
        for i in range(len(p)):
            for j in range(len(p)):
                if p[i] <= p[j]:
                    assert adj[i] <= adj[j] + 1e-12
    assert all(h >= b - 1e-12 for h, b in zip(holm, bh, strict=True))


@FAST
@given(st.lists(st.integers(min_value=1, max_value=50), min_size=2, max_size=5), st.integers(1, 1000))
def test_srm_is_a_probability_and_one_when_exact(weights: list[int], scale: int) -> None:
    counts = [w * scale for w in weights]
    assert srm_p_value(counts, weights) == pytest.approx(1.0)
    skewed = [counts[0] * 3 + 100] + counts[1:]
    p = srm_p_value(skewed, weights)
    assert 0.0 <= p < 1.0
