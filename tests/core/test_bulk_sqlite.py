"""SQLite bulk inserts use ``INSERT OR IGNORE`` only where it skips exactly the rows whose key is stored."""

from __future__ import annotations

import sqlite3

import pyarrow as pa
import pytest
from sqlalchemy import create_engine

from knowcast.store.bulk import _sqlite_ignore_is_exact, insert_ignore_table


def _conn(tmp_path, ddl: str):  # type: ignore[no-untyped-def]
    engine = create_engine(f"sqlite:///{tmp_path / 'b.db'}")
    with engine.begin() as c:
        c.exec_driver_sql(ddl)
    return engine


def test_ignore_is_exact_only_for_a_lone_unique_key(tmp_path) -> None:
    raw = sqlite3.connect(tmp_path / "t.db")
    raw.execute("CREATE TABLE a (id TEXT PRIMARY KEY NOT NULL, v TEXT NOT NULL, w TEXT)")
    raw.execute("CREATE TABLE b (id TEXT PRIMARY KEY, v TEXT UNIQUE)")
    raw.execute("CREATE TABLE c (id TEXT PRIMARY KEY, v INTEGER CHECK (v > 0))")
    raw.execute("CREATE TABLE d (id INTEGER PRIMARY KEY, v TEXT)")
    assert _sqlite_ignore_is_exact(raw, "a", "id") == (True, {"id", "v"})
    assert _sqlite_ignore_is_exact(raw, "b", "id")[0] is False  # a second unique constraint
    assert _sqlite_ignore_is_exact(raw, "c", "id")[0] is False  # a CHECK would be skipped silently
    assert _sqlite_ignore_is_exact(raw, "d", "id")[0] is False  # no unique index to read: stay safe


def test_duplicates_skipped_and_counted(tmp_path) -> None:
    engine = _conn(tmp_path, "CREATE TABLE t (id TEXT PRIMARY KEY NOT NULL, v TEXT NOT NULL, w TEXT)")
    with engine.begin() as c:
        first = insert_ignore_table(
            c, "t", "id", pa.table({"id": ["a", "b"], "v": ["1", "2"], "w": [None, "x"]})
        )
        again = insert_ignore_table(
            c, "t", "id", pa.table({"id": ["b", "c", "c"], "v": ["9", "3", "4"], "w": ["y", None, None]})
        )
        rows = c.exec_driver_sql("SELECT id, v, w FROM t ORDER BY id").fetchall()
    assert (first, again) == (2, 1)
    assert rows == [("a", "1", None), ("b", "2", "x"), ("c", "3", None)]  # stored rows are not replaced


def test_missing_not_null_value_still_fails_loudly(tmp_path) -> None:
    engine = _conn(tmp_path, "CREATE TABLE t (id TEXT PRIMARY KEY NOT NULL, v TEXT NOT NULL)")
    with engine.begin() as c, pytest.raises(sqlite3.IntegrityError, match="NOT NULL"):
        insert_ignore_table(c, "t", "id", pa.table({"id": ["a", "b"], "v": ["1", None]}))
