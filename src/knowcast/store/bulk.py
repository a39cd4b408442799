"""Fast bulk writes that keep the store's guarantees: idempotent inserts and upserts, per backend.

SQLite gets ``executemany`` of ``INSERT ... ON CONFLICT`` inside the caller's transaction; PostgreSQL gets
``COPY`` into a temporary staging table followed by one ``INSERT ... SELECT ... ON CONFLICT``, which is
several times faster than row inserts and still deduplicates against what is stored.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Connection

#: Rows per multi-row ``INSERT ... VALUES`` on SQLite: one statement step per row costs more than binding.
SQLITE_ROWS_PER_STATEMENT = 256


def frame_rows(frame: pd.DataFrame, columns: Sequence[str]) -> list[tuple[Any, ...]]:
    """Rows of plain Python values with None for missing, the shape every DBAPI driver accepts.

    Datetimes become naive-UTC strings in SQLAlchemy's SQLite format; PostgreSQL parses them as UTC too
    because knowcast sessions run with ``timezone=UTC``.
    """
    arrays: list[list[Any]] = []
    for c in columns:
        s = frame[c]
        if s.dtype.kind == "f":
            vals = s.to_numpy()
            obj = vals.astype(object)
            obj[np.isnan(vals)] = None
            arrays.append(obj.tolist())
        elif s.dtype.kind in "iub":
            arrays.append(s.to_numpy().tolist())
        elif isinstance(s.dtype, pd.DatetimeTZDtype) or s.dtype.kind == "M":
            utc = pd.to_datetime(s, utc=True).dt.tz_localize(None)
            arrays.append([None if pd.isna(v) else v.strftime("%Y-%m-%d %H:%M:%S.%f") for v in utc])
        else:
            arrays.append(s.astype(object).where(s.notna(), None).tolist())
    return list(zip(*arrays, strict=True)) if arrays else []


def _pg_raw(conn: Connection) -> Any:
    return conn.connection.dbapi_connection


def insert_ignore(
    conn: Connection, table: str, key: Sequence[str], columns: Sequence[str], rows: list[tuple]
) -> int:
    """Insert rows, skipping those whose key already exists; returns how many were inserted."""
    if not rows:
        return 0
    cols = ", ".join(columns)
    keys = ", ".join(key)
    if conn.dialect.name == "postgresql":
        return _pg_copy_merge(conn, table, columns, rows, f"ON CONFLICT ({keys}) DO NOTHING")
    marks = ", ".join("?" for _ in columns)
    cur = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cur.executemany(
            f"INSERT INTO {table} ({cols}) VALUES ({marks}) ON CONFLICT ({keys}) DO NOTHING", rows
        )
        return max(cur.rowcount, 0)
    finally:
        cur.close()


def upsert(
    conn: Connection,
    table: str,
    key: Sequence[str],
    columns: list[str],
    rows: list[tuple],
    where: str | None = None,
) -> int:
    """Insert rows, updating the non-key columns of those that exist (optionally only ``where`` holds)."""
    if not rows:
        return 0
    # Last row per key wins; PostgreSQL refuses to update one row twice in a statement.
    pos = [columns.index(k) for k in key]
    rows = list({tuple(r[p] for p in pos): r for r in rows}.values())
    cols = ", ".join(columns)
    keys = ", ".join(key)
    sets = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in key)
    clause = f"ON CONFLICT ({keys}) DO UPDATE SET {sets}" + (f" WHERE {where}" if where else "")
    if conn.dialect.name == "postgresql":
        return _pg_copy_merge(conn, table, columns, rows, clause)
    marks = ", ".join("?" for _ in columns)
    cur = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cur.executemany(f"INSERT INTO {table} ({cols}) VALUES ({marks}) {clause}", rows)
        return max(cur.rowcount, 0)
    finally:
        cur.close()


def _pg_copy_merge(
    conn: Connection, table: str, columns: Sequence[str], rows: list[tuple], clause: str
) -> int:
    raw = _pg_raw(conn)
    stage = f"_kc_stage_{table}"
    cols = ", ".join(columns)
    with raw.cursor() as cur:
        cur.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {stage} (LIKE {table} INCLUDING DEFAULTS) ON COMMIT DROP"
        )
        cur.execute(f"TRUNCATE {stage}")
        with cur.copy(f"COPY {stage} ({cols}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        cur.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {stage} {clause}")
        return max(cur.rowcount, 0)


def insert_ignore_table(
    conn: Connection,
    table: str,
    key: str,
    data: pa.Table,
    *,
    probe: bool = True,
    payload: pa.Buffer | None = None,
) -> int:
    """Insert an Arrow table's rows, skipping keys already stored or seen earlier in ``data``.

    Returns how many rows were inserted. Column names of ``data`` are the table's; columns left out, and
    nulls, are stored as NULL, so this suits tables without server defaults (events, comments).
    PostgreSQL: see :func:`_pg_copy_table`; ``probe=False`` says the keys are very likely new (the table
    was empty when a load began), so they are not looked up first; ``payload``, when given, is
    :func:`copy_payload` of ``data`` made ahead (it is used only if no row of ``data`` is dropped here).
    SQLite: see :func:`_sqlite_insert_table`.
    """
    if not data.num_rows:
        return 0
    unique = first_per_key(data, key)
    if conn.dialect.name == "postgresql":
        ready = payload if unique is data else None  # made before repeated keys were dropped
        return _pg_copy_table(conn, table, key, unique, probe=probe, payload=ready)
    return _sqlite_insert_table(conn, table, key, unique)


def first_per_key(data: pa.Table, key: str) -> pa.Table:
    """The first row of each key value, in the original order (the file's first occurrence wins)."""
    ids = data.column(key)
    n = data.num_rows
    if n < 2 or pc.all(pc.less(ids.slice(0, n - 1), ids.slice(1))).as_py():
        return data  # strictly increasing (generated ids usually are): no repeats, found without hashing
    if pc.count_distinct(ids, mode="all").as_py() == n:
        return data
    pos = pa.table({"k": ids, "i": pa.array(np.arange(data.num_rows, dtype=np.int64))})
    first = pos.group_by("k", use_threads=False).aggregate([("i", "min")]).column("i_min")
    return data.take(np.sort(first.to_numpy()))


def _sqlite_insert_table(conn: Connection, table: str, key: str, data: pa.Table) -> int:
    """Multi-row ``INSERT OR IGNORE`` (see :func:`_sqlite_ignore_is_exact`) with rows grouped by which
    columns are null.

    The Python sqlite3 driver's cost is per bound value and per statement step, not in SQLite: grouping
    rows by their null pattern binds only present values (a None costs more to bind than a string), and
    a few hundred rows per statement amortise the step. Values come from Arrow columns in bulk
    (``to_pylist``), never row by row.
    """
    names = data.column_names
    n = data.num_rows
    present = np.zeros(n, dtype=np.int64)
    for i, col in enumerate(data.columns):
        if col.null_count == 0:
            present |= 1 << i
        elif col.null_count < n:
            valid = np.asarray(col.is_valid().to_numpy(zero_copy_only=False), dtype=np.int64)
            present |= valid << i
    raw = conn.connection.dbapi_connection
    try:
        max_vars = raw.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)  # type: ignore[union-attr]
    except (AttributeError, sqlite3.Error):
        max_vars = 999
    if (present == present[0]).all():
        groups = [(int(present[0]), data)]
    else:  # one reordering take, then zero-copy slices per pattern
        order = np.argsort(present, kind="stable")
        patterns = present[order]
        data = data.take(order)
        cuts = [0, *(np.flatnonzero(np.diff(patterns)) + 1).tolist(), n]
        groups = [(int(patterns[a]), data.slice(a, b - a)) for a, b in zip(cuts, cuts[1:], strict=False)]
    ignore_ok, not_null = _sqlite_ignore_is_exact(raw, table, key)
    cur = raw.cursor()  # type: ignore[union-attr]
    written = 0
    try:
        for mask, part in groups:
            idx = [i for i in range(len(names)) if mask >> i & 1]
            # A group missing a NOT NULL column must fail loudly, as ON CONFLICT (key) makes it.
            ignore = ignore_ok and not_null <= {names[i] for i in idx}
            k = len(idx)
            m = part.num_rows
            flat: list[Any] = [None] * (m * k)
            for j, i in enumerate(idx):
                flat[j::k] = part.column(i).to_pylist()
            per = max(1, min(SQLITE_ROWS_PER_STATEMENT, max_vars // k))
            cols = ", ".join(names[i] for i in idx)
            one = "(" + ", ".join("?" * k) + ")"

            def sql(rows: int, cols: str = cols, one: str = one, ignore: bool = ignore) -> str:
                values = ", ".join([one] * rows)
                if ignore:
                    return f"INSERT OR IGNORE INTO {table} ({cols}) VALUES {values}"
                return f"INSERT INTO {table} ({cols}) VALUES {values} ON CONFLICT ({key}) DO NOTHING"

            done = 0  # rows bound so far; statement sizes come from a short ladder so they stay cached
            for size in (per, 64, 16, 4, 1):
                count = (m - done) // size if size <= per else 0
                if not count:
                    continue
                step = size * k
                start = done * k
                cur.executemany(
                    sql(size), [flat[s : s + step] for s in range(start, start + count * step, step)]
                )
                written += max(cur.rowcount, 0)
                done += count * size
    finally:
        cur.close()
    return written


def _sqlite_ignore_is_exact(raw: Any, table: str, key: str) -> tuple[bool, set[str]]:
    """Whether ``INSERT OR IGNORE`` skips exactly the rows whose ``key`` is stored, and the NOT NULL columns.

    ``INSERT ... ON CONFLICT (key) DO NOTHING`` leaves every other constraint at ABORT, so SQLite must be
    able to undo a half-done statement: it opens a statement journal and copies there each page the
    statement touches first. For a batch of events that is one page per index per user or item (hundreds
    of pages for 1,000 rows), written to a temporary file and thrown away at the end of the statement:
    about a quarter of an HTTP batch's time. With ``OR IGNORE`` no constraint can abort, so there is no
    journal. The result is the same when ``key`` is the table's only unique constraint, the table has no
    CHECK constraint, and every NOT NULL column has a value (the caller checks that per row group). A
    foreign key still aborts the statement, journal and all: ``OR`` clauses do not apply to foreign keys.
    """
    unique = [
        r[1] for r in raw.execute(f"PRAGMA index_list({table})").fetchall() if r[2]
    ]  # rows of index_list: (seq, name, unique, origin, partial)
    for name in unique:
        if [r[2] for r in raw.execute(f"PRAGMA index_info('{name}')").fetchall()] != [key]:
            return False, set()
    sql = raw.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone()
    if not unique or sql is None or "CHECK" in str(sql[0]).upper():
        return False, set()
    not_null = {r[1] for r in raw.execute(f"PRAGMA table_info({table})").fetchall() if r[3]}
    return True, not_null


def _pg_copy_table(
    conn: Connection, table: str, key: str, data: pa.Table, *, probe: bool, payload: pa.Buffer | None = None
) -> int:
    """Rows whose key is not stored yet go straight in with ``COPY``; the rest are counted as duplicates.

    The stored keys are looked up first (one index probe each, which ``ON CONFLICT`` would do anyway;
    skipped with ``probe=False``), so the new rows are written once instead of via a staging table.
    Should a key be stored after all (another writer, or an unprobed repeat), the ``COPY`` fails on the
    primary key: it is undone to a savepoint and the chunk goes through the staging table and
    ``ON CONFLICT DO NOTHING`` instead.
    """
    import psycopg

    raw = _pg_raw(conn)
    if probe:
        ids = data.column(key)
        with raw.cursor() as cur:
            cur.execute(f"SELECT {key} FROM {table} WHERE {key} = ANY(%s)", (ids.to_pylist(),))
            stored = [r[0] for r in cur.fetchall()]
        if stored:
            seen = pc.is_in(ids, value_set=pa.array(stored, type=ids.type))
            data = data.filter(pc.invert(pc.fill_null(seen, False)))
            payload = None  # made for the rows before the stored ones were dropped
        if not data.num_rows:
            return 0
    if payload is None:
        payload = copy_payload(data)
    cols = ", ".join(data.column_names)
    with raw.cursor() as cur:
        cur.execute("SAVEPOINT kc_copy")
        try:
            _pg_copy(cur, f"COPY {table} ({cols}) FROM STDIN (FORMAT csv)", payload)
        except psycopg.errors.UniqueViolation:
            cur.execute("ROLLBACK TO SAVEPOINT kc_copy")
        else:
            cur.execute("RELEASE SAVEPOINT kc_copy")
            return data.num_rows
        stage = f"_kc_stage_{table}"
        cur.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {stage} (LIKE {table} INCLUDING DEFAULTS) ON COMMIT DROP"
        )
        cur.execute(f"TRUNCATE {stage}")
        _pg_copy(cur, f"COPY {stage} ({cols}) FROM STDIN (FORMAT csv)", payload)
        cur.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {stage} ON CONFLICT ({key}) DO NOTHING")
        return max(cur.rowcount, 0)


def copy_payload(data: pa.Table) -> pa.Buffer:
    """The rows as CSV for ``COPY ... (FORMAT csv)``, written by Arrow's C++ writer.

    Strings are always quoted and nulls left empty, which is exactly how PostgreSQL tells NULL from ''.
    Pure work: an import makes it for the next chunk (in its read-ahead thread) while this one is copied.
    """
    import pyarrow.csv as pacsv

    sink = pa.BufferOutputStream()
    pacsv.write_csv(data, sink, pacsv.WriteOptions(include_header=False, quoting_style="needed"))
    return sink.getvalue()


def _pg_copy(cur: Any, sql: str, payload: pa.Buffer) -> None:
    view = memoryview(payload)
    with cur.copy(sql) as copy:
        for start in range(0, len(view), 8 << 20):
            copy.write(view[start : start + (8 << 20)])


#: WAL pages (about 40 MB) a writing connection lets accumulate before it checkpoints (SQLite's default
#: is 1,000, about 4 MB).
WAL_AUTOCHECKPOINT_PAGES = 10_000
#: Private page cache (KiB) of an importing connection: the index rebuild and the dedup lookups touch far
#: more pages than a serving connection (whose default is small, see ``store.db``).
BULK_CACHE_KIB = 131_072


def tune_writer(conn: Connection) -> Callable[[], None]:
    """Settings for an import on this SQLite connection; returns the function that restores them.

    Call it outside a transaction (SQLite refuses to change temp_store inside one). No-op on PostgreSQL.

    - ``wal_autocheckpoint``: a batch of events dirties hundreds of index pages (users and items are
      spread over the indexes), so with the default limit nearly every commit ends in a checkpoint that
      copies those pages into the database file and syncs it, again for the next batch. Checkpointing
      every ~40 MB copies each hot page once per many batches; durability is the same.
    - ``cache_size``: 128 MiB for this connection while it imports (serving connections keep 16 MiB).
    - ``temp_store = FILE``: with MEMORY, SQLite's sorter allocates every key of a ``CREATE INDEX`` on its
      own and merge-sorts them scattered over the heap; with FILE it packs them in one buffer (spilling to
      a temporary file only past the cache size), which rebuilds the event indexes ~1.5x faster.
    """
    if conn.dialect.name != "sqlite":
        return lambda: None
    raw = conn.connection.dbapi_connection
    before = [
        (name, raw.execute(f"PRAGMA {name}").fetchone()[0])  # type: ignore[union-attr]
        for name in ("wal_autocheckpoint", "temp_store", "cache_size")
    ]
    raw.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}")  # type: ignore[union-attr]
    raw.execute(f"PRAGMA cache_size = -{BULK_CACHE_KIB}")  # type: ignore[union-attr]
    raw.execute("PRAGMA temp_store = FILE")  # type: ignore[union-attr]

    def restore() -> None:
        for name, value in before:
            try:
                raw.execute(f"PRAGMA {name} = {int(value)}")  # type: ignore[union-attr]
            except sqlite3.Error:  # still inside a failed transaction: the pool's reset will do
                pass

    return restore


def existing_ids(
    conn: Connection, table: str, column: str, ids: Sequence[str], batch: int = 5000
) -> set[str]:
    """Which of ``ids`` are present in ``table.column`` (batched to respect parameter limits)."""
    found: set[str] = set()
    ids = list(ids)
    # The driver's cursor directly: thousands of one-value rows need no SQLAlchemy Row objects.
    cur = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        for start in range(0, len(ids), batch):
            part = ids[start : start + batch]
            if conn.dialect.name == "postgresql":
                cur.execute(f"SELECT {column} FROM {table} WHERE {column} = ANY(%s)", (part,))
            else:
                marks = ", ".join("?" * len(part))
                cur.execute(f"SELECT {column} FROM {table} WHERE {column} IN ({marks})", part)
            found.update(r[0] for r in cur.fetchall())
    finally:
        cur.close()
    return found


def secondary_indexes(table: str) -> list[Any]:
    from knowcast.store.models import Base

    return sorted(Base.metadata.tables[table].indexes, key=lambda ix: ix.name or "")


def drop_secondary_indexes(conn: Connection, table: str) -> None:
    """Bulk loads into a big table run several times faster without secondary indexes; the caller
    rebuilds them (``ensure_indexes``) in the same transaction, so readers never see them missing."""
    for ix in secondary_indexes(table):
        conn.exec_driver_sql(f"DROP INDEX IF EXISTS {ix.name}")


def ensure_indexes(conn: Connection, table: str) -> None:
    """Create any secondary index of ``table`` that is missing (after a bulk load or an interrupted one)."""
    missing = [ix for ix in secondary_indexes(table) if not _has_index(conn, table, str(ix.name))]
    if not missing:
        return
    if conn.dialect.name == "postgresql":
        # Sorting a million keys in memory instead of on disk; reverts at the end of the transaction.
        conn.exec_driver_sql("SET LOCAL maintenance_work_mem = '256MB'")
    for ix in missing:
        cols = ", ".join(c.name for c in ix.columns)
        conn.exec_driver_sql(f"CREATE INDEX IF NOT EXISTS {ix.name} ON {table} ({cols})")


def _has_index(conn: Connection, table: str, name: str) -> bool:
    if conn.dialect.name == "postgresql":
        sql = "SELECT 1 FROM pg_indexes WHERE tablename = %s AND indexname = %s"
    else:
        sql = "SELECT 1 FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND name = ?"
    return conn.exec_driver_sql(sql, (table, name)).first() is not None


def table_is_empty(conn: Connection, table: str) -> bool:
    return conn.exec_driver_sql(f"SELECT 1 FROM {table} LIMIT 1").first() is None


def approx_rows(conn: Connection, table: str) -> int:
    """A cheap row-count estimate (no full scan)."""
    if conn.dialect.name == "postgresql":
        res = conn.exec_driver_sql(
            f"SELECT reltuples::bigint FROM pg_class WHERE relname = '{table}'"
        ).scalar()
        return max(int(res or 0), 0)
    return int(conn.exec_driver_sql(f"SELECT COALESCE(MAX(rowid), 0) FROM {table}").scalar() or 0)
