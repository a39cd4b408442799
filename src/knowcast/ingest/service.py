"""Import users, creators, items, events and comments: one path for files, HTTP batches and library calls.

The rules (docs/data-formats.md):
- every error names the line and the field; ``dry_run`` reports all of them and writes nothing;
- ``on_error="abort"`` (default): the whole file or batch is one transaction, written whole or not at all;
- ``on_error="skip"``: good rows are written chunk by chunk (each chunk committed), rejected rows go to a
  rejects file with their reasons;
- events and comments are idempotent by id (a second import stores nothing new); users, creators and
  items are upserts (a second import updates them);
- ids that events, items and comments refer to must exist, unless ``create_missing`` is set.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Connection, Engine

from knowcast.domain import PAID_KINDS
from knowcast.ingest.events_arrow import CheckedTable, check_events_table
from knowcast.ingest.prefetch import prefetch
from knowcast.ingest.readers import RawChunk, read_chunks, records_chunk
from knowcast.ingest.validate import CHECKERS, Checked, RowError
from knowcast.store.bulk import (
    approx_rows,
    copy_payload,
    drop_secondary_indexes,
    ensure_indexes,
    existing_ids,
    frame_rows,
    insert_ignore,
    insert_ignore_table,
    table_is_empty,
    tune_writer,
    upsert,
)

Kind = Literal["users", "creators", "items", "events", "comments"]
KINDS: tuple[str, ...] = ("users", "creators", "items", "events", "comments")
OnError = Literal["abort", "skip"]
#: Event loads at least this big (and half the table) drop and rebuild the secondary indexes, when a
#: sample of their first chunk is mostly new rows (a re-import of stored events keeps the indexes).
BULK_MIN_ROWS = 200_000
#: How many errors a report keeps in full (the count is always exact).
MAX_REPORTED_ERRORS = 1000

EVENT_DB_COLUMNS = [
    "id", "type", "ts", "user_id", "item_id", "watch_seconds", "watch_ratio", "amount", "currency",
    "channel", "source", "experiment", "variant", "device", "room_id", "props",
]  # fmt: skip
COMMENT_DB_COLUMNS = ["id", "ts", "user_id", "item_id", "room_id", "text", "offset_s"]


class ImportRejected(Exception):
    """A batch had invalid rows and ``on_error='abort'``: nothing was written."""

    def __init__(self, report: ImportReport) -> None:
        self.report = report
        first = report.errors[0] if report.errors else None
        super().__init__(
            f"{report.error_count} invalid row(s); nothing written" + (f". First: {first}" if first else "")
        )


@dataclass
class ImportReport:
    kind: str
    source: str = ""
    rows_read: int = 0
    rows_written: int = 0
    duplicates: int = 0
    rejected: int = 0
    created_missing: int = 0
    errors: list[RowError] = field(default_factory=list)
    error_count: int = 0
    seconds: float = 0.0
    dry_run: bool = False
    committed: bool = False
    rejects_path: str | None = None

    @property
    def rate(self) -> float:
        return self.rows_read / self.seconds if self.seconds > 0 else 0.0

    def add_errors(self, errors: Sequence[RowError]) -> None:
        self.error_count += len(errors)
        room = MAX_REPORTED_ERRORS - len(self.errors)
        if room > 0:
            self.errors.extend(errors[:room])

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "source": self.source,
            "rows_read": self.rows_read,
            "rows_written": self.rows_written,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "created_missing": self.created_missing,
            "error_count": self.error_count,
            "errors": [e.as_dict() for e in self.errors],
            "seconds": round(self.seconds, 3),
            "rows_per_second": round(self.rate, 1),
            "dry_run": self.dry_run,
            "committed": self.committed,
            "rejects_path": self.rejects_path,
        }


def pseudonymize(user_id: str, key: str) -> str:
    """Keyed hash of a user id (HMAC-SHA256, 32 hex chars): stable per key, not reversible without it."""
    return hmac.new(key.encode(), user_id.encode(), hashlib.sha256).hexdigest()[:32]


@dataclass
class _Options:
    kind: str
    dry_run: bool
    on_error: OnError
    create_missing: bool
    pseudonym_key: str | None
    now_ms: int
    #: Make each event chunk's COPY payload while checking it (PostgreSQL file imports).
    copy_ahead: bool = False


class _RefCache:
    """Ids known to exist, so a million events need only a few existence queries."""

    def __init__(self) -> None:
        self.known: dict[str, set[str]] = {"users": set(), "items": set(), "creators": set()}


def import_file(
    engine: Engine,
    kind: str,
    path: str | Path,
    *,
    fmt: str | None = None,
    dry_run: bool = False,
    on_error: OnError = "abort",
    rejects_path: str | Path | None = None,
    create_missing: bool = False,
    pseudonym_key: str | None = None,
    chunk_rows: int = 50_000,
    encoding: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ImportReport:
    """Import a CSV / JSONL / Parquet file; in abort mode invalid rows raise ImportRejected."""
    path = Path(path)
    chunks = read_chunks(path, fmt, chunk_rows=chunk_rows, encoding=encoding)
    return _run(
        engine,
        chunks,
        _options(kind, dry_run, on_error, create_missing, pseudonym_key),
        source=str(path),
        rejects_path=Path(rejects_path) if rejects_path else None,
        progress=progress,
        expected_rows=path.stat().st_size // 80,
        read_ahead=True,
    )


def import_records(
    engine: Engine,
    kind: str,
    records: Sequence[dict[str, Any]] | pd.DataFrame,
    *,
    dry_run: bool = False,
    on_error: OnError = "abort",
    create_missing: bool = False,
    pseudonym_key: str | None = None,
    source: str = "api",
) -> ImportReport:
    """Import in-memory records (an HTTP batch or a library call); 'line' in errors is the 1-based row."""
    if isinstance(records, pd.DataFrame):
        n = len(records)
        cols = {c: records[c].reset_index(drop=True) for c in records.columns}
        chunk = RawChunk(cols, list(range(1, n + 1)))  # type: ignore[arg-type]
    else:
        chunk = records_chunk(list(records))
    opts = _options(kind, dry_run, on_error, create_missing, pseudonym_key)
    return _run(engine, [chunk], opts, source=source, expected_rows=len(chunk))


def _options(kind: str, dry_run: bool, on_error: str, create_missing: bool, key: str | None) -> _Options:
    if kind not in KINDS:
        raise ValueError(f"unknown import kind {kind!r}; expected one of {', '.join(KINDS)}")
    if on_error not in ("abort", "skip"):
        raise ValueError(f"on_error must be 'abort' or 'skip', got {on_error!r}")
    return _Options(kind, dry_run, on_error, create_missing, key, int(time.time() * 1000))  # type: ignore[arg-type]


def _run(
    engine: Engine,
    chunks: Iterable[RawChunk],
    opt: _Options,
    *,
    source: str,
    rejects_path: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    expected_rows: int = 0,
    read_ahead: bool = False,
) -> ImportReport:
    report = ImportReport(kind=opt.kind, source=source, dry_run=opt.dry_run)
    t0 = time.perf_counter()
    cache = _RefCache()
    rejects = _RejectsWriter(rejects_path) if (rejects_path and opt.on_error == "skip") else None
    atomic = opt.on_error == "abort"
    conn = engine.connect()
    restore_settings = tune_writer(conn) if not opt.dry_run else None
    tx = conn.begin()
    bulk = False
    # Big load relative to the table: rebuild indexes once instead of updating them row by row.
    may_bulk = (
        opt.kind == "events"
        and not opt.dry_run
        and expected_rows >= BULK_MIN_ROWS
        and expected_rows >= approx_rows(conn, "events") // 2
    )
    # Into an empty table, event ids need no lookup before writing (the write still refuses repeats).
    probe = not (may_bulk and table_is_empty(conn, "events"))
    if read_ahead:  # the next chunk is read and checked (pure work) while this one is written
        opt.copy_ahead = opt.kind == "events" and not opt.dry_run and conn.dialect.name == "postgresql"
        checked_chunks = prefetch(_checked(chunks, opt))
    else:
        checked_chunks = _checked(chunks, opt)
    try:
        for raw, checked in checked_chunks:
            report.rows_read += len(raw) + sum(1 for e in raw.errors if e.field == "<row>")
            errors = list(raw.errors) + checked.errors
            checked, ref_errors, created = _check_references(conn, opt, checked, cache)
            errors.extend(ref_errors)
            report.created_missing += created
            errors.sort(key=lambda e: e.line)
            report.add_errors(errors)
            bad_lines = {e.line for e in errors}
            report.rejected += len(bad_lines)
            if rejects is not None and errors:
                rejects.write(raw, errors)
            stop_writing = opt.dry_run or (atomic and report.error_count > 0)
            if not stop_writing and _nrows(checked.frame):
                if may_bulk:  # decided once, on the first chunk to write
                    may_bulk = False
                    if _mostly_new(conn, checked.frame):
                        drop_secondary_indexes(conn, "events")
                        bulk = True
                payload = checked.copy_payload if isinstance(checked, CheckedTable) else None
                written = _write(conn, opt.kind, checked.frame, probe=probe, payload=payload)
                probe = probe or written < _nrows(checked.frame)  # repeats seen: look up from now on
                report.rows_written += written
                report.duplicates += _nrows(checked.frame) - written
                if not atomic and not bulk:
                    tx.commit()
                    tx = conn.begin()
            if progress is not None:
                progress(len(raw), raw.bytes_read)
        if opt.dry_run or report.error_count and atomic:
            tx.rollback()
            if atomic and report.error_count and not opt.dry_run:
                report.rows_written = 0
                report.duplicates = 0
                report.seconds = time.perf_counter() - t0
                raise ImportRejected(report)
        else:
            if bulk:
                ensure_indexes(conn, "events")
            tx.commit()
            report.committed = True
    except BaseException:
        if tx.is_active:
            tx.rollback()
        raise
    finally:
        if restore_settings is not None:
            restore_settings()
        conn.close()
        if rejects is not None:
            rejects.close()
            report.rejects_path = str(rejects.path) if rejects.count else None
    if bulk and report.committed and engine.dialect.name == "postgresql":
        _vacuum_analyze(engine, "events")
    report.seconds = time.perf_counter() - t0
    return report


def _vacuum_analyze(engine: Engine, table: str) -> None:
    """PostgreSQL, after a bulk load: ``VACUUM ANALYZE`` the table, outside any transaction.

    ANALYZE gives the planner the new row counts and value distributions (plans made for a near-empty
    table scan where an index serves); VACUUM marks the new pages all-visible, without which an index-only
    scan (the funnel's, analytics.queries) still reads every row from the table. Autovacuum does both in
    time when it is on; it may be off, and it starts late. A few seconds at 10M rows, against minutes of
    loading.
    """
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.exec_driver_sql(f"VACUUM ANALYZE {table}")  # a fixed table name from this module


Frame = pd.DataFrame | pa.Table


def _nrows(frame: Frame) -> int:
    return frame.num_rows if isinstance(frame, pa.Table) else len(frame)


def _pseudonymized(frame: Frame, col: str, key: str) -> Frame:
    """Replace ``col`` by its keyed hashes, hashing each distinct id once."""
    names = frame.column_names if isinstance(frame, pa.Table) else list(frame.columns)
    if col not in names:
        return frame
    if isinstance(frame, pa.Table):
        values = frame.column(col)
        distinct = pc.unique(values)
        hashed = pa.array([None if u is None else pseudonymize(u, key) for u in distinct.to_pylist()])
        mapped = pc.take(hashed, pc.index_in(values, value_set=distinct))
        return frame.set_column(frame.column_names.index(col), col, mapped)
    frame[col] = [pseudonymize(u, key) for u in frame[col]]
    return frame


def _distinct_present(frame: Frame, col: str) -> set[str]:
    if isinstance(frame, pa.Table):
        return set(pc.unique(frame.column(col)).drop_null().to_pylist())
    values = frame[col]
    return set(values[values.notna()].unique())


def _in_mask(frame: Frame, col: str, values: set[str]) -> np.ndarray:
    """Rows whose ``col`` is one of ``values`` (null never is)."""
    if isinstance(frame, pa.Table):
        vs = pa.array(sorted(values), type=pa.string())
        hit = pc.is_in(frame.column(col), value_set=vs.cast(frame.column(col).type))
        return np.asarray(pc.fill_null(hit, False).to_numpy(zero_copy_only=False), dtype=bool)
    v = frame[col]
    return v.notna().to_numpy() & v.isin(values).to_numpy()


def _mostly_new(conn: Connection, frame: Frame, sample: int = 1000) -> bool:
    """Whether most events of ``frame`` are not stored yet, judged on an evenly spread sample of ids."""
    ids = frame.column("id").to_pylist() if isinstance(frame, pa.Table) else list(frame["id"])
    picked = ids[:: max(1, len(ids) // sample)][:sample]
    return len(existing_ids(conn, "events", "id", picked)) * 2 < len(picked)


def _checked(chunks: Iterable[RawChunk], opt: _Options) -> Iterator[tuple[RawChunk, Checked | CheckedTable]]:
    """Each chunk with its checked rows (pseudonymised when asked): pure work, no database."""
    # Events, the bulk of any load, are checked and written as Arrow columns end to end.
    checker = check_events_table if opt.kind == "events" else CHECKERS[opt.kind]
    for raw in chunks:
        checked = checker(raw.columns, raw.lines, now_ms=opt.now_ms)
        if opt.pseudonym_key and _nrows(checked.frame):
            col = "id" if opt.kind == "users" else "user_id"
            checked.frame = _pseudonymized(checked.frame, col, opt.pseudonym_key)
        if opt.copy_ahead and isinstance(checked, CheckedTable) and checked.frame.num_rows:
            checked.copy_payload = copy_payload(checked.frame.select(EVENT_DB_COLUMNS))
        yield raw, checked


def _check_references(
    conn: Connection, opt: _Options, checked: Checked | CheckedTable, cache: _RefCache
) -> tuple[Checked | CheckedTable, list[RowError], int]:
    """Reject (or create, with create_missing) rows that point at unknown users, items or creators."""
    frame = checked.frame
    if not _nrows(frame):
        return checked, [], 0
    refs: list[tuple[str, str, str]] = []  # (frame column, table, error field)
    if opt.kind in ("events", "comments"):
        refs = [("user_id", "users", "user_id"), ("item_id", "items", "item_id")]
    elif opt.kind == "items":
        refs = [("creator_id", "creators", "creator_id")]
    bad = np.zeros(_nrows(frame), dtype=bool)
    errors: list[RowError] = []
    created = 0
    for col, table, fname in refs:
        uniq = _distinct_present(frame, col) - cache.known[table]
        if uniq:
            found = existing_ids(conn, table, "id", sorted(uniq))
            cache.known[table] |= found
            missing = uniq - found
            if missing:
                if opt.create_missing and not opt.dry_run:
                    created += _create_placeholders(conn, table, sorted(missing))
                    cache.known[table] |= missing
                elif opt.create_missing:
                    cache.known[table] |= missing  # dry run: would be created
                else:
                    mask = _in_mask(frame, col, missing)
                    hint = {"users": "import users", "items": "import items", "creators": "import creators"}[
                        table
                    ]
                    positions = np.flatnonzero(mask)
                    shown = _values_at(frame, col, positions)
                    for pos, value in zip(positions, shown, strict=True):
                        errors.append(
                            RowError(
                                int(checked.lines[pos]),
                                fname,
                                f"unknown {fname}; {hint} first or pass --create-missing",
                                str(value),
                            )
                        )
                    bad |= mask
    if opt.kind == "items":
        bad |= _check_promotes(conn, frame, checked.lines, errors)
    if bad.any():
        keep = ~bad
        if isinstance(frame, pa.Table):
            checked = CheckedTable(frame.filter(pa.array(keep)), checked.lines[keep], checked.errors)
        else:
            checked = Checked(frame[keep].reset_index(drop=True), checked.lines[keep], checked.errors)
    return checked, errors, created


def _values_at(frame: Frame, col: str, positions: np.ndarray) -> list[Any]:
    if isinstance(frame, pa.Table):
        return frame.column(col).take(positions).to_pylist()
    return [frame[col].iat[p] for p in positions]


def _check_promotes(
    conn: Connection, frame: pd.DataFrame, lines: np.ndarray, errors: list[RowError]
) -> np.ndarray:
    """A promoted item must be a paid item, already stored or in this same batch."""
    bad = np.zeros(len(frame), dtype=bool)
    targets = sorted({t for p in frame["promotes"] for t in p})
    if not targets:
        return bad
    kinds = dict(zip(frame["id"], frame["kind"], strict=True))
    unknown = [t for t in targets if t not in kinds]
    if unknown:
        for start in range(0, len(unknown), 5000):
            part = unknown[start : start + 5000]
            if conn.dialect.name == "postgresql":
                res = conn.exec_driver_sql("SELECT id, kind FROM items WHERE id = ANY(%s)", (part,))
            else:
                marks = ", ".join("?" for _ in part)
                res = conn.exec_driver_sql(f"SELECT id, kind FROM items WHERE id IN ({marks})", tuple(part))
            kinds.update({r[0]: r[1] for r in res})
    for pos, prom in enumerate(frame["promotes"]):
        for t in prom:
            if t not in kinds:
                errors.append(RowError(int(lines[pos]), "promotes", "promotes an unknown item_id", t))
                bad[pos] = True
            elif kinds[t] not in PAID_KINDS:
                errors.append(
                    RowError(
                        int(lines[pos]), "promotes", f"promoted item is a {kinds[t]}, not a paid item", t
                    )
                )
                bad[pos] = True
    return bad


def _create_placeholders(conn: Connection, table: str, ids: list[str]) -> int:
    now = pd.Timestamp.now(tz="UTC").to_pydatetime()
    if table == "users":
        return insert_ignore(
            conn, "users", ["id"], ["id", "created_at", "attributes"], [(i, now, "{}") for i in ids]
        )
    if table == "creators":
        return insert_ignore(
            conn,
            "creators",
            ["id"],
            ["id", "name", "topics", "created_at"],
            [(i, "", "[]", now) for i in ids],
        )
    rows = [(i, "short_video", "", "", "[]", now) for i in ids]
    return insert_ignore(
        conn, "items", ["id"], ["id", "kind", "title", "description", "tags", "created_at"], rows
    )


def _json_list(values: pd.Series) -> list[str]:
    return [json.dumps(v, ensure_ascii=False) for v in values]


def _write(
    conn: Connection, kind: str, frame: Frame, *, probe: bool = True, payload: pa.Buffer | None = None
) -> int:
    if isinstance(frame, pa.Table):  # events
        data = frame.select(EVENT_DB_COLUMNS)
        written = insert_ignore_table(conn, "events", "id", data, probe=probe, payload=payload)
        exposures = frame.filter(pc.equal(frame.column("type"), "exposure"))
        if exposures.num_rows:
            _record_exposures(conn, exposures.to_pandas())
        return written
    if kind == "comments":
        return insert_ignore(
            conn, "comments", ["id"], COMMENT_DB_COLUMNS, frame_rows(frame, COMMENT_DB_COLUMNS)
        )
    if kind == "users":
        cols = ["id", "created_at", "attributes"]
        return upsert(conn, "users", ["id"], cols, frame_rows(frame, cols))
    if kind == "creators":
        f = frame.assign(topics=_json_list(frame["topics"]))
        cols = ["id", "name", "topics", "created_at"]
        return upsert(conn, "creators", ["id"], cols, frame_rows(f, cols))
    # items, then their promotes links and live sessions
    f = frame.assign(tags=_json_list(frame["tags"]))
    cols = [
        "id",
        "kind",
        "title",
        "description",
        "tags",
        "creator_id",
        "price",
        "currency",
        "duration_s",
        "created_at",
    ]
    written = upsert(conn, "items", ["id"], cols, frame_rows(f, cols))
    links = [(p, t) for p, prom in zip(frame["id"], frame["promotes"], strict=True) for t in prom]
    ids = list(frame["id"][frame["promotes"].map(len) > 0])
    if ids:
        _delete_promotes(conn, ids)
    insert_ignore(conn, "promotes", ["promoter_id", "item_id"], ["promoter_id", "item_id"], links)
    lives = [(i, "scheduled") for i in frame["id"][frame["kind"] == "live"]]
    insert_ignore(conn, "live_sessions", ["item_id"], ["item_id", "state"], lives)
    return written


def _delete_promotes(conn: Connection, promoter_ids: list[str]) -> None:
    for start in range(0, len(promoter_ids), 5000):
        part = promoter_ids[start : start + 5000]
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("DELETE FROM promotes WHERE promoter_id = ANY(%s)", (part,))
        else:
            marks = ", ".join("?" for _ in part)
            conn.exec_driver_sql(f"DELETE FROM promotes WHERE promoter_id IN ({marks})", tuple(part))


def _record_exposures(conn: Connection, frame: pd.DataFrame) -> None:
    """Keep each user's first exposure per experiment, which is what analysis counts from."""
    exp = frame[frame["type"] == "exposure"]
    if not len(exp):
        return
    first = exp.sort_values("ts").drop_duplicates(["experiment", "user_id"])
    cols = ["experiment", "user_id", "variant", "ts"]
    rows = frame_rows(first, cols)
    upsert(
        conn,
        "exposures",
        ["experiment_key", "user_id"],
        ["experiment_key", "user_id", "variant", "first_ts"],
        rows,
        where="excluded.first_ts < exposures.first_ts",
    )


class _RejectsWriter:
    """Rejected rows with their reasons, as CSV: line, field, message, then the row's own columns."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.count = 0
        self._fh = open(path, "w", newline="", encoding="utf-8")  # noqa: SIM115
        self._writer = csv.writer(self._fh)
        self._header: list[str] | None = None

    def write(self, raw: RawChunk, errors: list[RowError]) -> None:
        by_line: dict[int, list[RowError]] = {}
        for e in errors:
            by_line.setdefault(e.line, []).append(e)
        cols = list(raw.columns)
        if self._header is None:
            self._header = ["line", "errors", *cols]
            self._writer.writerow(self._header)
        pos = {ln: i for i, ln in enumerate(raw.lines)}
        for line, errs in sorted(by_line.items()):
            reason = "; ".join(f"{e.field}: {e.message}" for e in errs)
            i = pos.get(line)
            values = [_cell(raw.columns[c][i]) for c in cols] if i is not None else []
            self._writer.writerow([line, reason, *values])
            self.count += 1

    def close(self) -> None:
        self._fh.close()


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, dict | list):
        return json.dumps(v, ensure_ascii=False)
    return str(v)
