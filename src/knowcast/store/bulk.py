"""Fast bulk writes that keep the store's guarantees: idempotent inserts and upserts, per backend.

SQLite gets ``executemany`` of ``INSERT ... ON CONFLICT`` inside the caller's transaction; PostgreSQL gets
``COPY`` into a temporary staging table followed by one ``INSERT ... SELECT ... ON CONFLICT``, which is
several times faster than row inserts and still deduplicates against what is stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection


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


def existing_ids(
    conn: Connection, table: str, column: str, ids: Sequence[str], batch: int = 5000
) -> set[str]:
    """Which of ``ids`` are present in ``table.column`` (batched to respect parameter limits)."""
    found: set[str] = set()
    ids = list(ids)
    for start in range(0, len(ids), batch):
        part = ids[start : start + batch]
        if conn.dialect.name == "postgresql":
            res = conn.exec_driver_sql(f"SELECT {column} FROM {table} WHERE {column} = ANY(%s)", (part,))
        else:
            marks = ", ".join("?" for _ in part)
            res = conn.exec_driver_sql(
                f"SELECT {column} FROM {table} WHERE {column} IN ({marks})", tuple(part)
            )
        found.update(r[0] for r in res)
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
    for ix in secondary_indexes(table):
        cols = ", ".join(c.name for c in ix.columns)
        conn.exec_driver_sql(f"CREATE INDEX IF NOT EXISTS {ix.name} ON {table} ({cols})")


def approx_rows(conn: Connection, table: str) -> int:
    """A cheap row-count estimate (no full scan)."""
    if conn.dialect.name == "postgresql":
        res = conn.exec_driver_sql(
            f"SELECT reltuples::bigint FROM pg_class WHERE relname = '{table}'"
        ).scalar()
        return max(int(res or 0), 0)
    return int(conn.exec_driver_sql(f"SELECT COALESCE(MAX(rowid), 0) FROM {table}").scalar() or 0)
