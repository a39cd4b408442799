"""Event validation on Arrow columns: the same rules as before, without a Python object per value.

Events are the one kind that arrives by the million, so their checks run as Arrow compute kernels over
whole columns (CSV strings stay in Arrow buffers from the reader to the writer). Only the rare cases that
Arrow cannot decide fall back to per-value Python: a column mixing epoch numbers and ISO strings, a number
Arrow's parser refuses, and the distinct values of ``props`` (JSON objects, parsed once per distinct text).

Inputs are columns of raw values as any reader gives them: Arrow arrays, pandas Series (typed Parquet
columns, Arrow-backed CSV strings) or Python lists (JSON records). Errors name the line and the field and
show the raw value, exactly as the pandas checkers of :mod:`knowcast.ingest.validate` do.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from knowcast.domain import EVENT_TYPES, ITEM_EVENTS, MONEY_EVENTS, EventType
from knowcast.ingest.validate import (
    CHANNELS,
    MAX_ABS_EPOCH_MS,
    MIN_TS_MS,
    RowError,
    _show,
    parse_timestamps,
)

#: Output columns, in the order of the events table.
EVENT_COLUMNS = [
    "id", "type", "ts", "user_id", "item_id", "watch_seconds", "watch_ratio", "amount", "currency",
    "channel", "source", "experiment", "variant", "device", "room_id", "props",
]  # fmt: skip
TEXT_LIMITS = (("source", 128), ("experiment", 128), ("variant", 64), ("device", 32), ("room_id", 128))
NUMBER_RANGES = (("watch_seconds", 0.0, 10 * 24 * 3600.0), ("watch_ratio", 0.0, 100.0))

Column = pa.Array | pa.ChunkedArray | pd.Series | Sequence[Any]


@dataclass
class CheckedTable:
    """Typed columns (an Arrow table) for the rows that passed, and the errors of those that did not."""

    frame: pa.Table
    lines: np.ndarray
    errors: list[RowError] = field(default_factory=list)
    rejected_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    #: ``frame``'s rows made ready for PostgreSQL's COPY ahead of writing (None: not made, or stale).
    copy_payload: pa.Buffer | None = None


def as_arrow(values: Column) -> pa.Array:
    """One raw column as an Arrow array.

    Strings stay strings and typed columns keep their type; a JSON column mixing types (a number here, a
    string there, a dict or a boolean) becomes text, which the checks then parse or refuse like any text.
    """
    if isinstance(values, pa.ChunkedArray):
        return values.combine_chunks()
    if isinstance(values, pa.Array):
        return values
    if isinstance(values, pd.Series):
        if values.dtype != object:
            try:
                arr = pa.array(values, from_pandas=True)
                arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
                if _usable(arr.type):
                    return arr
            except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError):
                pass
        values = values.tolist()
    values = list(values)
    kinds = set(map(type, values))
    if kinds <= {str, type(None)}:
        return pa.array(values, type=pa.string())
    if not kinds & {bool, np.bool_, dict, list, tuple}:  # Arrow would turn True into 1 and lists into lists
        try:
            arr = pa.array(values, from_pandas=True)
            if _usable(arr.type):
                return arr
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
            pass
    return pa.array([_as_text(v) for v in values], type=pa.string())


def _usable(t: pa.DataType) -> bool:
    # Booleans are not numbers nor ids here: they go through text, where they are refused or kept as text.
    return bool(
        pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_integer(t)
        or pa.types.is_floating(t)
        or pa.types.is_null(t)
        or pa.types.is_timestamp(t)
        or pa.types.is_dictionary(t)
    )


def _as_text(v: Any) -> str | None:
    if v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and v != v):
        return None
    if isinstance(v, str):
        return v
    if isinstance(v, dict):
        return json.dumps(v, ensure_ascii=False)
    return str(v)


def _is_text(t: pa.DataType) -> bool:
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t))


def _np(mask: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A boolean Arrow result as a NumPy mask, null counting as False."""
    if mask.null_count:
        mask = pc.fill_null(mask, False)
    return np.asarray(mask.to_numpy(zero_copy_only=False), dtype=bool)


_NULL_TEXT = {
    pa.string(): pa.scalar(None, pa.string()),
    pa.large_string(): pa.scalar(None, pa.large_string()),
}
#: Bytes that may start or end a value str.strip() would change: ASCII whitespace and separators, and any
#: byte of a multi-byte character (U+3000 and friends). A column without them needs no trimming.
_TRIM_BYTES = np.zeros(256, dtype=bool)
_TRIM_BYTES[[9, 10, 11, 12, 13, 28, 29, 30, 31, 32]] = True
_TRIM_BYTES[128:] = True


def _valid(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Which values are present, read from the validity bitmap."""
    n = len(arr)
    if arr.null_count == 0:
        return np.ones(n, dtype=bool)
    if arr.null_count == n:
        return np.zeros(n, dtype=bool)
    if isinstance(arr, pa.ChunkedArray) or arr.buffers()[0] is None:
        return _np(pc.is_valid(arr))
    bits = np.unpackbits(np.frombuffer(arr.buffers()[0], dtype=np.uint8), bitorder="little")
    return bits[arr.offset : arr.offset + n].astype(bool)


def _offsets(arr: pa.Array) -> np.ndarray:
    width = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    return np.frombuffer(arr.buffers()[1], dtype=width)[arr.offset : arr.offset + len(arr) + 1]


def _text(arr: pa.Array) -> pa.Array:
    """Strings, stripped, null for missing or blank."""
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    if pa.types.is_null(arr.type) or arr.null_count == len(arr):
        return pa.nulls(len(arr), pa.string())
    if not _is_text(arr.type):
        arr = pc.cast(arr, pa.string())
    offsets = _offsets(arr)
    data = arr.buffers()[2]
    chars = np.frombuffer(data, dtype=np.uint8)[offsets[0] : offsets[-1]] if data is not None else None
    if chars is not None and _TRIM_BYTES[chars].any():
        arr = pc.utf8_trim_whitespace(arr)
        offsets = _offsets(arr)
    if (np.diff(offsets) == 0).any():  # blanks (and nulls, which stay null) become null
        arr = pc.if_else(pc.equal(arr, ""), _NULL_TEXT[arr.type], arr)
    return arr


def _holds_nul(arr: pa.Array) -> bool:
    """Whether any value may hold a NUL character: one scan of the character buffer."""
    data = arr.buffers()[2]
    if data is None:
        return False
    offsets = _offsets(arr)
    return bool((np.frombuffer(data, dtype=np.uint8)[offsets[0] : offsets[-1]] == 0).any())


def _too_long(arr: pa.Array, limit: int) -> np.ndarray:
    """Values longer than ``limit`` characters; no value can be when none is longer in bytes."""
    if arr.null_count == len(arr) or np.diff(_offsets(arr)).max(initial=0) <= limit:
        return np.zeros(len(arr), dtype=bool)
    return _np(pc.greater(pc.utf8_length(arr), limit))


def _lower(arr: pa.Array) -> pa.Array:
    return pc.utf8_lower(arr)


class _Collector:
    """Bad-row mask plus errors, with the raw value shown as it came in."""

    def __init__(self, n: int, lines: np.ndarray, raw: dict[str, Column]) -> None:
        self.bad = np.zeros(n, dtype=bool)
        self.lines = lines
        self.raw = raw
        self.errors: list[RowError] = []

    def flag(self, mask: np.ndarray, field_name: str, message: str) -> None:
        if not mask.any():
            return
        self.bad |= mask
        raw = self.raw.get(field_name)
        for pos in np.flatnonzero(mask):
            value = "" if raw is None else _show(_raw_at(raw, int(pos)))
            self.errors.append(RowError(int(self.lines[pos]), field_name, message, value))


def _raw_at(raw: Column, pos: int) -> Any:
    if isinstance(raw, pa.Array | pa.ChunkedArray):
        return raw[pos].as_py()
    if isinstance(raw, pd.Series):
        return raw.iat[pos]
    return raw[pos]


def _number(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Floats with NaN for missing, and the mask of present values that are not numbers."""
    n = len(arr)
    t = arr.type
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        vals = pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False)
        return np.asarray(vals, dtype=float), np.zeros(n, dtype=bool)
    if pa.types.is_null(t):
        return np.full(n, np.nan), np.zeros(n, dtype=bool)
    txt = _text(arr)
    present = _valid(txt)
    try:
        vals = np.asarray(pc.cast(txt, pa.float64()).to_numpy(zero_copy_only=False), dtype=float)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        # Some value is not a number Arrow reads: let pandas decide value by value, as before.
        vals = pd.to_numeric(pd.Series(txt.to_pylist(), dtype=object), errors="coerce").to_numpy(dtype=float)
    bad = present & np.isnan(vals)  # "nan" is not a number either
    vals = np.where(bad, np.nan, vals)
    return vals, bad


def _epoch_ms(v: np.ndarray, present: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Epoch seconds (below 1e11) or milliseconds to int64 ms; absent and out-of-range values are bad."""
    out = np.zeros(len(v), dtype=np.int64)
    bad = ~present
    with np.errstate(over="ignore", invalid="ignore"):
        ms = np.where(np.abs(v) < 1e11, v * 1000.0, v)
        out_of_range = present & (~np.isfinite(ms) | (np.abs(ms) > MAX_ABS_EPOCH_MS))
    bad = bad | out_of_range
    ok = ~bad
    out[ok] = np.round(ms[ok]).astype(np.int64)
    return out, bad


def _timestamps(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Epoch ms and the bad mask (missing counts as bad), like :func:`validate.parse_timestamps`."""
    n = len(arr)
    t = arr.type
    if pa.types.is_timestamp(t):
        # Naive times are taken as UTC, so their epoch numbers are already right.
        ms = pc.cast(pc.cast(arr, pa.timestamp("ms", tz=t.tz), safe=False), pa.int64())
        bad = ~_valid(ms)
        return np.asarray(pc.fill_null(ms, 0).to_numpy(zero_copy_only=False), dtype=np.int64), bad
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        present = _valid(arr)
        v = np.asarray(pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False), dtype=float)
        return _epoch_ms(v, present & ~np.isnan(v))
    if pa.types.is_null(t):
        return np.zeros(n, dtype=np.int64), np.ones(n, dtype=bool)
    txt = _text(arr)
    present = _valid(txt)
    try:
        v = np.asarray(pc.cast(txt, pa.float64()).to_numpy(zero_copy_only=False), dtype=float)
        return _epoch_ms(v, present & ~np.isnan(v))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    for target in (pa.timestamp("ns", tz="UTC"), pa.timestamp("ns")):
        try:
            ns = pc.cast(pc.cast(txt, target), pa.int64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
        out = np.asarray(pc.fill_null(ns, 0).to_numpy(zero_copy_only=False), dtype=np.int64) // 1_000_000
        return out, ~present
    # Mixed forms in one column (epoch numbers and ISO strings), or values Arrow refuses: pandas decides.
    return parse_timestamps(pd.Series(txt.to_pylist(), dtype=object))


def _compact_json_object(text: str) -> tuple[str | None, bool]:
    if not text.strip():
        return None, True
    try:
        obj = json.loads(text)
    except ValueError:
        return None, False
    if not isinstance(obj, dict):
        return None, False
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")), True


def _json_objects(c: _Collector, arr: pa.Array, name: str) -> pa.Array:
    """JSON objects as compact text; each distinct text is parsed once (props repeat a lot)."""
    n = len(arr)
    if pa.types.is_null(arr.type) or arr.null_count == n:
        return pa.nulls(n, pa.string())
    if not _is_text(arr.type):
        arr = pc.cast(arr, pa.string())
    distinct = pc.unique(arr).drop_null()
    parsed = [_compact_json_object(s) for s in distinct.to_pylist()]
    pos = pc.index_in(arr, value_set=distinct)
    ok = pa.array([good for _, good in parsed], type=pa.bool_())
    c.flag(~_np(pc.take(ok, pos)) & _valid(arr), name, "expected a JSON object")
    return pc.take(pa.array([text for text, _ in parsed], type=pa.string()), pos)


def _id(c: _Collector, arr: pa.Array, name: str, required: bool) -> pa.Array:
    txt = _text(arr)
    if required:
        c.flag(~_valid(txt), name, "is required")
    c.flag(_too_long(txt, 128), name, "must be at most 128 characters")
    return txt


_VALUE_SETS: dict[tuple[frozenset[str], pa.DataType], pa.Array] = {}


def _isin(arr: pa.Array, values: frozenset[str]) -> np.ndarray:
    """Present values that are in ``values`` (the Arrow value set is built once per set and type)."""
    if arr.null_count == len(arr):
        return np.zeros(len(arr), dtype=bool)
    key = (values, arr.type)
    vs = _VALUE_SETS.get(key)
    if vs is None:
        vs = _VALUE_SETS[key] = pa.array(sorted(str(v) for v in values), type=arr.type)
    return _np(pc.is_in(arr, value_set=vs))


def check_events_table(
    raw: dict[str, Column],
    lines: Sequence[int] | np.ndarray,
    *,
    now_ms: int,
    max_future_skew_ms: int = 24 * 3600 * 1000,
    default_currency: str = "CNY",
) -> CheckedTable:
    """Validate event rows (docs/data-formats.md has every rule); valid rows come back as an Arrow table."""
    lines = np.asarray(lines, dtype=np.int64)
    n = len(lines)
    cols = {k: as_arrow(v) for k, v in raw.items()}
    for k, v in cols.items():
        if len(v) != n:
            raise ValueError(f"column {k!r} has {len(v)} values for {n} lines")

    def col(name: str) -> pa.Array:
        return cols.get(name, pa.nulls(n, pa.string()))

    c = _Collector(n, lines, raw)
    out: dict[str, pa.Array] = {}
    out["id"] = _id(c, col("event_id"), "event_id", True)
    typ = _text(col("type"))
    typ = _lower(typ)
    type_ok = _valid(typ)
    c.flag(~type_ok, "type", "is required")
    c.flag(
        type_ok & ~_isin(typ, EVENT_TYPES),
        "type",
        "unknown event type; expected one of " + ", ".join(sorted(EVENT_TYPES)),
    )
    out["type"] = typ
    ts_raw = col("ts")
    ts, bad_ts = _timestamps(ts_raw)
    missing_ts = _missing(ts_raw)
    c.flag(missing_ts, "ts", "is required (ISO 8601 or epoch seconds/milliseconds)")
    c.flag(bad_ts & ~missing_ts, "ts", "expected ISO 8601 or epoch seconds/milliseconds")
    ok_ts = ~bad_ts
    c.flag(ok_ts & (ts > now_ms + max_future_skew_ms), "ts", "is more than a day in the future")
    c.flag(ok_ts & (ts < MIN_TS_MS), "ts", "is not after 1970-01-01; expected a real event time")
    out["ts"] = pa.array(ts, type=pa.int64())
    out["user_id"] = _id(c, col("user_id"), "user_id", True)
    item = _id(c, col("item_id"), "item_id", False)
    c.flag(_isin(typ, ITEM_EVENTS) & ~_valid(item), "item_id", "is required for this event type")
    out["item_id"] = item
    for name, lo, hi in NUMBER_RANGES:
        num, bad = _number(col(name))
        c.flag(bad, name, "expected a number")
        with np.errstate(invalid="ignore"):
            c.flag((num < lo) | (num > hi), name, f"must be between {lo:g} and {hi:g}")
        out[name] = pa.array(num, type=pa.float64(), from_pandas=True)
    amount, bad = _number(col("amount"))
    c.flag(bad, "amount", "expected a number")
    with np.errstate(invalid="ignore"):
        c.flag(amount < 0, "amount", "must not be negative")
    c.flag(_isin(typ, MONEY_EVENTS) & np.isnan(amount) & ~bad, "amount", "is required for this event type")
    out["amount"] = pa.array(amount, type=pa.float64(), from_pandas=True)
    cur = pc.utf8_upper(_text(col("currency")))
    c.flag(
        _np(pc.invert(pc.match_substring_regex(cur, "^[A-Z]{3}$"))),
        "currency",
        "expected a 3-letter ISO 4217 code such as CNY or USD",
    )
    needs_default = ~_valid(cur) & ~np.isnan(amount)
    out["currency"] = pc.if_else(pa.array(needs_default), pa.scalar(default_currency, cur.type), cur)
    chan = _lower(_text(col("channel")))
    c.flag(
        _valid(chan) & ~_isin(chan, CHANNELS),
        "channel",
        "unknown channel; expected one of " + ", ".join(sorted(CHANNELS)),
    )
    out["channel"] = chan
    for name, limit in TEXT_LIMITS:
        txt = _text(col(name))
        c.flag(_too_long(txt, limit), name, f"must be at most {limit} characters")
        out[name] = txt
    exposure = _np(pc.equal(typ, EventType.EXPOSURE.value))
    c.flag(exposure & ~_valid(out["experiment"]), "experiment", "is required for exposure")
    c.flag(exposure & ~_valid(out["variant"]), "variant", "is required for exposure")
    out["props"] = _json_objects(c, col("props"), "props")
    for name, arr in out.items():
        if _is_text(arr.type) and arr.null_count < len(arr) and _holds_nul(arr):
            c.flag(
                _np(pc.match_substring(arr, "\x00")),
                name,
                "contains a NUL character (\\0), which cannot be stored",
            )
    table = pa.table({k: out[k] for k in EVENT_COLUMNS})
    keep = ~c.bad
    if c.bad.any():
        table = table.filter(pa.array(keep))
    c.errors.sort(key=lambda e: (e.line, e.field))
    return CheckedTable(table, lines[keep], c.errors, np.flatnonzero(c.bad))


def _missing(arr: pa.Array) -> np.ndarray:
    """Null, NaN and blank strings count as missing."""
    if _is_text(arr.type) or pa.types.is_dictionary(arr.type):
        return ~_valid(_text(arr))
    if pa.types.is_floating(arr.type):
        return ~_valid(arr) | _np(pc.is_nan(arr))
    return ~_valid(arr)
