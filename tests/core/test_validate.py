"""Row validation rules, independent of any store."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from knowcast.ingest.validate import check_events, check_items, check_users, parse_timestamps

NOW = int(time.time() * 1000)


def events(rows: list[dict]) -> tuple[dict, list[int]]:
    keys = sorted({k for r in rows for k in r})
    return {k: [r.get(k) for r in rows] for k in keys}, list(range(2, len(rows) + 2))


def good(**kw) -> dict:  # type: ignore[no-untyped-def]
    row = {"event_id": "e1", "type": "view", "ts": "2026-01-02T03:04:05Z", "user_id": "u1", "item_id": "i1"}
    row.update(kw)
    return row


def test_timestamps_iso_and_epoch_seconds_and_ms_are_utc_ms() -> None:
    ts, bad = parse_timestamps(
        pd.Series(
            ["2026-01-02T03:04:05Z", "2026-01-02T11:04:05+08:00", "1767323045", 1767323045000, "x", ""],
            dtype=object,
        )
    )
    assert list(ts[:4]) == [1767323045000] * 4
    assert list(bad) == [False, False, False, False, True, True]


def test_valid_event_is_typed() -> None:
    raw, lines = events([good(watch_ratio="0.5", watch_seconds="12", props='{"a": 1}', channel="Feed")])
    ch = check_events(raw, lines, now_ms=NOW)
    assert not ch.errors
    row = ch.frame.iloc[0]
    assert row["ts"] == 1767323045000 and row["watch_ratio"] == 0.5 and row["channel"] == "feed"
    assert row["props"] == '{"a":1}'


def test_each_error_names_line_field_and_expectation() -> None:
    future = NOW + 3 * 86_400_000
    rows = [
        good(type="teleport"),
        good(ts=future),
        good(watch_ratio="lots"),
        good(type="purchase"),  # amount missing
        good(type="purchase", amount="-3"),
        good(channel="fax"),
        good(user_id=""),
        good(type="exposure", item_id=None),  # experiment/variant missing
        good(props="[1,2]"),
        good(currency="yuan", type="tip", amount="1"),
    ]
    raw, lines = events(rows)
    ch = check_events(raw, lines, now_ms=NOW)
    got = {(e.line, e.field) for e in ch.errors}
    assert got >= {
        (2, "type"),
        (3, "ts"),
        (4, "watch_ratio"),
        (5, "amount"),
        (6, "amount"),
        (7, "channel"),
        (8, "user_id"),
        (9, "experiment"),
        (9, "variant"),
        (10, "props"),
        (11, "currency"),
    }
    assert len(ch.frame) == 0
    msg = {e.field: e.message for e in ch.errors}
    assert "expected one of" in msg["type"] and "future" in msg["ts"]
    assert "teleport" in str([e for e in ch.errors if e.field == "type"][0])


def test_money_event_defaults_currency() -> None:
    raw, lines = events([good(type="purchase", amount="99.5")])
    ch = check_events(raw, lines, now_ms=NOW)
    assert ch.frame.iloc[0]["currency"] == "CNY" and ch.frame.iloc[0]["amount"] == 99.5


def test_items_negative_price_unknown_kind_and_promotes_rules() -> None:
    raw = {
        "item_id": ["c1", "c2", "v1", "x1", "c3"],
        "kind": ["course", "course", "short_video", "hologram", "course"],
        "price": ["-1", "", "", "", "abc"],
        "promotes": ["", "", "c1|c2", "", "v1"],
    }
    ch = check_items(raw, [2, 3, 4, 5, 6], now_ms=NOW)
    got = {(e.line, e.field) for e in ch.errors}
    assert got == {(2, "price"), (3, "price"), (5, "kind"), (6, "price"), (6, "promotes")}
    assert list(ch.frame["id"]) == ["v1"]
    assert ch.frame.iloc[0]["promotes"] == ["c1", "c2"]


def test_users_extra_columns_become_attributes() -> None:
    ch = check_users({"user_id": ["u1"], "city": ["bj"], "age": [30]}, [2], now_ms=NOW)
    assert ch.frame.iloc[0]["attributes"] == '{"city":"bj","age":30}'


def test_wrong_types_from_json_are_rejected() -> None:
    raw, lines = events([good(watch_ratio=True), good(watch_seconds=[1]), good(ts={"a": 1})])
    ch = check_events(raw, lines, now_ms=NOW)
    fields = sorted(e.field for e in ch.errors)
    assert fields == ["ts", "watch_ratio", "watch_seconds"]
    assert np.array_equal(ch.rejected_rows, [0, 1, 2])
