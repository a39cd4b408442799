"""Row validation shared by the CLI importer, the HTTP batch endpoints and the Python API.

Pure logic: it takes columns of raw values (strings from CSV, JSON values from JSONL/HTTP, typed values
from Parquet) and returns typed columns plus a list of errors that each name the row (line number) and
the field and say what was expected. Vectorised with pandas so a million rows validate in about a second.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from knowcast.domain import (
    PAID_KINDS,
    PROMOTER_KINDS,
    Channel,
    ItemKind,
)

#: Timestamps at or before the epoch are mistakes (an unset field), not history.
MIN_TS_MS = 1
CHANNELS = frozenset(c.value for c in Channel)
KINDS = frozenset(k.value for k in ItemKind)


@dataclass(frozen=True)
class RowError:
    line: int
    field: str
    message: str
    value: str = ""

    def __str__(self) -> str:
        shown = f" (got {self.value!r})" if self.value != "" else ""
        return f"line {self.line}: field '{self.field}': {self.message}{shown}"

    def as_dict(self) -> dict[str, Any]:
        return {"line": self.line, "field": self.field, "message": self.message, "value": self.value}


@dataclass
class Checked:
    """Typed columns for the rows that passed, and the errors of those that did not."""

    frame: pd.DataFrame  # only valid rows, typed
    lines: np.ndarray  # line number of each valid row
    errors: list[RowError] = field(default_factory=list)
    rejected_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # positions


class _Collector:
    def __init__(self, n: int, lines: np.ndarray, raw: dict[str, pd.Series]) -> None:
        self.bad = np.zeros(n, dtype=bool)
        self.lines = lines
        self.raw = raw
        self.errors: list[RowError] = []

    def flag(self, mask: np.ndarray | pd.Series, field_name: str, message: str) -> None:
        mask = np.asarray(mask, dtype=bool)
        if not mask.any():
            return
        self.bad |= mask
        raw = self.raw.get(field_name)
        for pos in np.flatnonzero(mask):
            value = "" if raw is None else _show(raw.iat[pos])
            self.errors.append(RowError(int(self.lines[pos]), field_name, message, value))


def _show(v: Any) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return ""
    s = str(v)
    return s if len(s) <= 80 else s[:77] + "..."


def _missing(s: pd.Series) -> np.ndarray:
    """None, NaN and blank strings count as missing."""
    if s.dtype == object:
        return np.asarray(s.isna() | (s.astype(str).str.strip() == ""), dtype=bool)
    if pd.api.types.is_string_dtype(s.dtype):
        return np.asarray((s.str.strip() == "").fillna(True), dtype=bool)
    return np.asarray(s.isna(), dtype=bool)


def _text(s: pd.Series) -> pd.Series:
    """Strings, stripped, with None for missing (object dtype, which is what the drivers take)."""
    if pd.api.types.is_string_dtype(s.dtype) and s.dtype != object:
        st = s.str.strip()
        return st.astype(object).where((st != "").fillna(False).to_numpy(dtype=bool), None)
    if s.dtype != object:
        s = s.astype(object)
    out = s.where(s.isna(), s.astype(str).str.strip())
    return out.where(out != "", None)


def _number(s: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Floats with NaN for missing, and the mask of present values that are not numbers."""
    if s.dtype.kind in "fiu":
        num = s.astype(float)
        return num, np.zeros(len(s), dtype=bool)
    num = pd.to_numeric(s, errors="coerce")
    bad = ~_missing(s) & np.asarray(num.isna(), dtype=bool)
    if s.dtype != object:
        return num.astype(float), bad
    # booleans are not numbers
    if s.dtype == object:
        isbool = np.fromiter((isinstance(v, bool) for v in s), dtype=bool, count=len(s))
        bad |= isbool
        num = num.where(~isbool, np.nan)
    return num.astype(float), bad


def _to_ms(dt: pd.Series) -> np.ndarray:
    """Epoch ms whatever resolution pandas chose (ns in pandas 2, often us in pandas 3)."""
    return dt.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[ms]").astype("int64").to_numpy()


#: 9999-12-31T23:59:59.999Z: epoch numbers beyond this (either sign) are refused.
MAX_ABS_EPOCH_MS = 253_402_300_799_999


def parse_timestamps(s: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Epoch milliseconds (int64) from ISO 8601 strings or epoch seconds / milliseconds.

    Epoch numbers below 1e11 are seconds (1e11 s is the year 5138), others milliseconds. ISO strings
    without an offset are taken as UTC. Returns (ts_ms, bad_mask); missing values are bad.
    """
    n = len(s)
    out = np.zeros(n, dtype=np.int64)
    bad = np.zeros(n, dtype=bool)
    if n == 0:
        return out, bad
    if pd.api.types.is_datetime64_any_dtype(s):
        dt = pd.to_datetime(s, utc=True)
        bad = np.asarray(dt.isna(), dtype=bool)
        out[~bad] = _to_ms(dt[~bad])
        return out, bad
    num = s.astype(float) if s.dtype.kind in "fiub" else pd.to_numeric(s, errors="coerce")
    is_num = np.asarray(num.notna(), dtype=bool)
    if is_num.any():
        v = num.to_numpy(dtype=float)[is_num]
        with np.errstate(over="ignore", invalid="ignore"):  # huge values become inf, refused below
            ms = np.where(np.abs(v) < 1e11, v * 1000.0, v)
        # inf, and numbers past year 9999 either way, are not times (and would overflow int64 silently)
        out_of_range = ~np.isfinite(ms) | (np.abs(ms) > MAX_ABS_EPOCH_MS)
        idx = np.flatnonzero(is_num)
        bad[idx[out_of_range]] = True
        out[idx[~out_of_range]] = np.round(ms[~out_of_range]).astype(np.int64)
    rest = ~is_num
    if rest.any():
        strs = s[rest]
        missing = _missing(strs)
        dt = pd.to_datetime(strs.where(~missing, None), utc=True, errors="coerce", format="ISO8601")
        ok = np.asarray(dt.notna(), dtype=bool)
        idx = np.flatnonzero(rest)
        good = idx[ok]
        out[good] = _to_ms(dt[ok])
        bad[idx[~ok]] = True
    return out, bad


def _parse_json_obj(v: Any) -> tuple[str | None, bool]:
    """A JSON object as compact text; (None, ok) when missing; (None, bad) when not an object."""
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return None, True
    if isinstance(v, dict):
        return json.dumps(v, ensure_ascii=False, separators=(",", ":")), True
    if isinstance(v, str):
        if not v.strip():
            return None, True
        try:
            obj = json.loads(v)
        except ValueError:
            return None, False
        if isinstance(obj, dict):
            return json.dumps(obj, ensure_ascii=False, separators=(",", ":")), True
    return None, False


def _parse_list(v: Any) -> tuple[list[str], bool]:
    """Tags and id lists: a JSON list, or a string split on '|' (or ',' when no '|')."""
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return [], True
    if isinstance(v, list | tuple | np.ndarray):
        return [str(x).strip() for x in v if str(x).strip()], True
    if isinstance(v, str):
        t = v.strip()
        if not t:
            return [], True
        if t.startswith("["):
            try:
                obj = json.loads(t)
            except ValueError:
                return [], False
            if not isinstance(obj, list):
                return [], False
            return [str(x).strip() for x in obj if str(x).strip()], True
        sep = "|" if "|" in t else ","
        return [p.strip() for p in t.split(sep) if p.strip()], True
    return [], False


def _json_column(c: _Collector, s: pd.Series, name: str) -> pd.Series:
    if not len(s) or _missing(s).all():
        return pd.Series([None] * len(s), dtype=object)
    parsed = [_parse_json_obj(v) for v in s]
    c.flag(np.array([not ok for _, ok in parsed], dtype=bool), name, "expected a JSON object")
    return pd.Series([p for p, _ in parsed], index=s.index, dtype=object)


def _list_column(c: _Collector, s: pd.Series, name: str) -> pd.Series:
    parsed = [_parse_list(v) for v in s]
    c.flag(
        np.array([not ok for _, ok in parsed], dtype=bool),
        name,
        "expected a JSON list or values separated by '|'",
    )
    return pd.Series([p for p, _ in parsed], index=s.index, dtype=object)


def _currency_column(c: _Collector, s: pd.Series, money: pd.Series, default: str) -> pd.Series:
    """ISO 4217 codes, upper-cased; rows with an amount or price but no currency get ``default``."""
    cur = _text(s)
    cur = cur.where(cur.isna(), cur.str.upper())
    c.flag(
        np.asarray(cur.notna() & ~cur.str.fullmatch(r"[A-Z]{3}").fillna(False).astype(bool), dtype=bool),
        "currency",
        "expected a 3-letter ISO 4217 code such as CNY or USD",
    )
    return cur.where(~(cur.isna() & money.notna()), default)


def _id_column(c: _Collector, s: pd.Series, name: str, required: bool) -> pd.Series:
    txt = _text(s)
    missing = np.asarray(txt.isna(), dtype=bool)
    if required:
        c.flag(missing, name, "is required")
    too_long = np.asarray(txt.str.len().fillna(0) > 128, dtype=bool)
    c.flag(too_long, name, "must be at most 128 characters")
    return txt


def _frame(
    raw: dict[str, Sequence[Any] | pd.Series], n: int | None = None
) -> tuple[dict[str, pd.Series], int]:
    cols = {k: (v if isinstance(v, pd.Series) else pd.Series(list(v), dtype=object)) for k, v in raw.items()}
    if n is None:
        n = len(next(iter(cols.values()))) if cols else 0
    for k, v in cols.items():
        v.index = pd.RangeIndex(n)
        cols[k] = v
    return cols, n


def _col(cols: dict[str, pd.Series], name: str, n: int) -> pd.Series:
    s = cols.get(name)
    return s if s is not None else pd.Series([None] * n, dtype=object)


def _flag_nul(c: _Collector, out: dict[str, Any]) -> None:
    """Text holding a NUL character (\\0) is refused: PostgreSQL cannot store it in text, and on SQLite it
    would cut strings short in C code. Checked on each column's distinct values (hashing is done in C), so
    low-cardinality columns cost almost nothing."""
    for name, col in out.items():
        if not isinstance(col, pd.Series) or col.dtype != object:
            continue
        values = col[col.notna()]
        if values.empty:
            continue
        try:
            distinct = pd.unique(values.to_numpy())
        except TypeError:  # lists (tags): stored as JSON, where a NUL is escaped and harmless
            continue
        bad = [v for v in distinct if isinstance(v, str) and "\x00" in v]
        if bad:
            mask = col.isin(bad).to_numpy(dtype=bool)
            c.flag(mask, name, "contains a NUL character (\\0), which cannot be stored")


def _finish(c: _Collector, out: dict[str, Any], lines: np.ndarray) -> Checked:
    _flag_nul(c, out)
    frame = pd.DataFrame(out)
    keep = ~c.bad
    c.errors.sort(key=lambda e: (e.line, e.field))
    return Checked(
        frame=frame[keep].reset_index(drop=True),
        lines=lines[keep],
        errors=c.errors,
        rejected_rows=np.flatnonzero(c.bad),
    )


def check_events(
    raw: dict[str, Sequence[Any] | pd.Series],
    lines: Sequence[int] | np.ndarray,
    *,
    now_ms: int,
    max_future_skew_ms: int = 24 * 3600 * 1000,
    default_currency: str = "CNY",
) -> Checked:
    """Validate event rows; see docs/data-formats.md for every rule.

    The checks run on Arrow columns (:func:`knowcast.ingest.events_arrow.check_events_table`, which the
    importer uses directly); this wrapper hands the valid rows back as a pandas frame.
    """
    from knowcast.ingest.events_arrow import check_events_table

    ch = check_events_table(
        raw, lines, now_ms=now_ms, max_future_skew_ms=max_future_skew_ms, default_currency=default_currency
    )
    return Checked(ch.frame.to_pandas(), ch.lines, ch.errors, ch.rejected_rows)


def check_users(
    raw: dict[str, Sequence[Any] | pd.Series], lines: Sequence[int] | np.ndarray, *, now_ms: int
) -> Checked:
    lines = np.asarray(lines, dtype=np.int64)
    cols, n = _frame(raw, len(lines))
    c = _Collector(n, lines, cols)
    out: dict[str, Any] = {"id": _id_column(c, _col(cols, "user_id", n), "user_id", True)}
    out["created_at"] = _optional_time(c, _col(cols, "created_at", n), "created_at", now_ms)
    attrs = _json_column(c, _col(cols, "attributes", n), "attributes")
    # Extra columns become attributes, so a plain CSV of user features imports as is.
    extra = [k for k in cols if k not in ("user_id", "created_at", "attributes")]
    if extra:
        merged = []
        for i in range(n):
            base = json.loads(attrs.iat[i]) if attrs.iat[i] else {}
            for k in extra:
                v = cols[k].iat[i]
                if v is not None and not (isinstance(v, float) and np.isnan(v)) and v != "":
                    base.setdefault(k, v.item() if isinstance(v, np.generic) else v)
            merged.append(json.dumps(base, ensure_ascii=False, separators=(",", ":")))
        attrs = pd.Series(merged, dtype=object)
    out["attributes"] = attrs.where(attrs.notna(), "{}")
    return _finish(c, out, lines)


def check_creators(
    raw: dict[str, Sequence[Any] | pd.Series], lines: Sequence[int] | np.ndarray, *, now_ms: int
) -> Checked:
    lines = np.asarray(lines, dtype=np.int64)
    cols, n = _frame(raw, len(lines))
    c = _Collector(n, lines, cols)
    out: dict[str, Any] = {"id": _id_column(c, _col(cols, "creator_id", n), "creator_id", True)}
    name = _text(_col(cols, "name", n))
    out["name"] = name.where(name.notna(), "")
    out["topics"] = _list_column(c, _col(cols, "topics", n), "topics")
    out["created_at"] = _optional_time(c, _col(cols, "created_at", n), "created_at", now_ms)
    return _finish(c, out, lines)


def check_items(
    raw: dict[str, Sequence[Any] | pd.Series], lines: Sequence[int] | np.ndarray, *, now_ms: int
) -> Checked:
    lines = np.asarray(lines, dtype=np.int64)
    cols, n = _frame(raw, len(lines))
    c = _Collector(n, lines, cols)
    out: dict[str, Any] = {"id": _id_column(c, _col(cols, "item_id", n), "item_id", True)}
    kind = _text(_col(cols, "kind", n))
    kind = kind.where(kind.isna(), kind.str.lower())
    c.flag(np.asarray(kind.isna(), dtype=bool), "kind", "is required")
    c.flag(
        np.asarray(kind.notna() & ~kind.isin(KINDS), dtype=bool),
        "kind",
        "unknown item kind; expected one of " + ", ".join(sorted(KINDS)),
    )
    out["kind"] = kind
    title = _text(_col(cols, "title", n))
    c.flag(
        np.asarray(title.str.len().fillna(0) > 2000, dtype=bool), "title", "must be at most 2000 characters"
    )
    out["title"] = title.where(title.notna(), "")
    desc = _text(_col(cols, "description", n))
    out["description"] = desc.where(desc.notna(), "")
    out["tags"] = _list_column(c, _col(cols, "tags", n), "tags")
    out["creator_id"] = _id_column(c, _col(cols, "creator_id", n), "creator_id", False)
    price, bad = _number(_col(cols, "price", n))
    c.flag(bad, "price", "expected a number")
    c.flag(np.asarray(price < 0, dtype=bool), "price", "must not be negative")
    paid = np.asarray(kind.isin(PAID_KINDS), dtype=bool)
    c.flag(paid & np.asarray(price.isna(), dtype=bool) & ~bad, "price", "is required for paid kinds")
    out["price"] = price
    out["currency"] = _currency_column(c, _col(cols, "currency", n), price, "CNY")
    dur, bad = _number(_col(cols, "duration_s", n))
    c.flag(bad, "duration_s", "expected a number of seconds")
    c.flag(np.asarray(dur < 0, dtype=bool), "duration_s", "must not be negative")
    out["duration_s"] = dur
    out["created_at"] = _optional_time(c, _col(cols, "created_at", n), "created_at", now_ms)
    promotes = _list_column(c, _col(cols, "promotes", n), "promotes")
    has_prom = np.array([len(p) > 0 for p in promotes], dtype=bool)
    c.flag(
        has_prom & ~np.asarray(kind.isin(PROMOTER_KINDS), dtype=bool),
        "promotes",
        "only short_video and live items can promote other items",
    )
    out["promotes"] = promotes
    return _finish(c, out, lines)


def check_comments(
    raw: dict[str, Sequence[Any] | pd.Series], lines: Sequence[int] | np.ndarray, *, now_ms: int
) -> Checked:
    lines = np.asarray(lines, dtype=np.int64)
    cols, n = _frame(raw, len(lines))
    c = _Collector(n, lines, cols)
    out: dict[str, Any] = {"id": _id_column(c, _col(cols, "comment_id", n), "comment_id", True)}
    ts_raw = _col(cols, "ts", n)
    ts, bad_ts = parse_timestamps(ts_raw)
    c.flag(bad_ts, "ts", "is required: ISO 8601 or epoch seconds/milliseconds")
    c.flag(~bad_ts & (ts > now_ms + 24 * 3600 * 1000), "ts", "is more than a day in the future")
    out["ts"] = ts
    out["user_id"] = _id_column(c, _col(cols, "user_id", n), "user_id", True)
    out["item_id"] = _id_column(c, _col(cols, "item_id", n), "item_id", False)
    out["room_id"] = _id_column(c, _col(cols, "room_id", n), "room_id", False)
    c.flag(
        np.asarray(out["item_id"].isna() & out["room_id"].isna(), dtype=bool),
        "item_id",
        "a comment needs an item_id or a room_id",
    )
    text = _col(cols, "text", n)
    text = text.where(text.notna(), None).astype(object)
    text_str = text.map(lambda v: v if isinstance(v, str) else (None if v is None else str(v)))
    c.flag(np.asarray(text_str.isna(), dtype=bool), "text", "is required")
    c.flag(
        np.asarray(text_str.str.len().fillna(0) > 10_000, dtype=bool),
        "text",
        "must be at most 10000 characters",
    )
    out["text"] = text_str
    off, bad = _number(_col(cols, "offset_s", n))
    c.flag(bad, "offset_s", "expected a number of seconds")
    out["offset_s"] = off
    return _finish(c, out, lines)


def _optional_time(c: _Collector, s: pd.Series, name: str, now_ms: int) -> pd.Series:
    missing = _missing(s)
    ts, bad = parse_timestamps(s)
    c.flag(bad & ~missing, name, "expected ISO 8601 or epoch seconds/milliseconds")
    c.flag(~bad & (ts > now_ms + 24 * 3600 * 1000), name, "is more than a day in the future")
    ts = np.where(missing | bad, now_ms, ts)
    return pd.Series(pd.to_datetime(ts, unit="ms", utc=True))


CHECKERS: dict[str, Callable[..., Checked]] = {
    "events": check_events,
    "users": check_users,
    "creators": check_creators,
    "items": check_items,
    "comments": check_comments,
}
