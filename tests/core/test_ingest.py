"""Ingestion against the real stores: atomic batches, skip mode, idempotency, references, exposures."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from knowcast.ingest.readers import read_chunks
from knowcast.ingest.service import ImportRejected, import_file, import_records, pseudonymize
from knowcast.store import Store
from knowcast.store.models import Event, Exposure, Item, Promotes, User


def count(store: Store, model) -> int:  # type: ignore[no-untyped-def]
    with store.engine.connect() as c:
        return int(c.execute(select(func.count()).select_from(model)).scalar() or 0)


def seed_catalog(store: Store) -> None:
    import_records(store.engine, "users", [{"user_id": f"u{i}"} for i in range(5)])
    import_records(store.engine, "creators", [{"creator_id": "c1", "name": "Li", "topics": ["python"]}])
    import_records(
        store.engine,
        "items",
        [
            {
                "item_id": "course1",
                "kind": "course",
                "price": 199,
                "creator_id": "c1",
                "title": "Python 入门",
            },
            {"item_id": "vid1", "kind": "short_video", "creator_id": "c1", "promotes": ["course1"]},
        ],
    )


def ev(i: int, **kw) -> dict:  # type: ignore[no-untyped-def]
    row = {
        "event_id": f"e{i}",
        "type": "view",
        "ts": 1767323045 + i,
        "user_id": f"u{i % 5}",
        "item_id": "vid1",
        "watch_ratio": 0.5,
    }
    row.update(kw)
    return row


def test_good_batch_is_written_whole_and_twice_is_once(store: Store) -> None:
    seed_catalog(store)
    rows = [ev(i) for i in range(100)]
    r1 = import_records(store.engine, "events", rows)
    r2 = import_records(store.engine, "events", rows)
    assert (r1.rows_written, r1.duplicates) == (100, 0)
    assert (r2.rows_written, r2.duplicates) == (0, 100)
    assert count(store, Event) == 100


def test_bad_batch_writes_nothing(store: Store) -> None:
    seed_catalog(store)
    rows = [ev(i) for i in range(10)] + [ev(10, type="bogus")]
    with pytest.raises(ImportRejected) as info:
        import_records(store.engine, "events", rows)
    assert info.value.report.error_count == 1 and info.value.report.errors[0].line == 11
    assert count(store, Event) == 0


def test_unknown_references_rejected_unless_create_missing(store: Store) -> None:
    seed_catalog(store)
    with pytest.raises(ImportRejected) as info:
        import_records(store.engine, "events", [ev(1, user_id="ghost"), ev(2, item_id="nothing")])
    assert {(e.line, e.field) for e in info.value.report.errors} == {(1, "user_id"), (2, "item_id")}
    rep = import_records(
        store.engine, "events", [ev(1, user_id="ghost"), ev(2, item_id="nothing")], create_missing=True
    )
    assert rep.rows_written == 2 and rep.created_missing == 2
    assert count(store, User) == 6 and count(store, Item) == 3


def test_skip_mode_writes_good_rows_and_rejects_file(store: Store, tmp_path: Path) -> None:
    seed_catalog(store)
    src = tmp_path / "ev.csv"
    with open(src, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["event_id", "type", "ts", "user_id", "item_id", "amount"])
        w.writerow(["a", "view", "2026-01-01T00:00:00Z", "u1", "vid1", ""])
        w.writerow(["b", "purchase", "2026-01-01T00:01:00Z", "u1", "course1", "-5"])
        w.writerow(["c", "view", "not-a-time", "u1", "vid1", ""])
        w.writerow(["d", "purchase", "2026-01-01T00:02:00Z", "u2", "course1", "199"])
    rejects = tmp_path / "rejects.csv"
    rep = import_file(store.engine, "events", src, on_error="skip", rejects_path=rejects)
    assert rep.rows_written == 2 and rep.rejected == 2
    assert count(store, Event) == 2
    rej = list(csv.DictReader(open(rejects)))
    assert [r["line"] for r in rej] == ["3", "4"]
    assert "amount: must not be negative" in rej[0]["errors"] and rej[0]["event_id"] == "b"
    # the same file again: nothing new, nothing lost
    rep2 = import_file(store.engine, "events", src, on_error="skip", rejects_path=rejects)
    assert rep2.rows_written == 0 and rep2.duplicates == 2 and count(store, Event) == 2


def test_dry_run_reports_all_errors_and_writes_nothing(store: Store, tmp_path: Path) -> None:
    seed_catalog(store)
    src = tmp_path / "ev.jsonl"
    src.write_text(
        '{"event_id":"a","type":"view","ts":1767323045,"user_id":"u1","item_id":"vid1"}\n'
        '{"event_id":"b","type":"fly","ts":1767323045,"user_id":"u1"}\n'
        '{"event_id":"c","type":"view","ts":"yesterday","user_id":"u1","item_id":"vid1"}\n'
    )
    rep = import_file(store.engine, "events", src, dry_run=True)
    assert rep.error_count == 2 and {e.line for e in rep.errors} == {2, 3}
    assert count(store, Event) == 0


def test_upserts_users_and_items_and_promotes(store: Store) -> None:
    seed_catalog(store)
    import_records(store.engine, "users", [{"user_id": "u1", "attributes": {"tier": "gold"}}])
    import_records(
        store.engine, "items", [{"item_id": "course1", "kind": "course", "price": 99, "creator_id": "c1"}]
    )
    with store.sessions() as s:
        assert s.get(User, "u1").attributes == {"tier": "gold"}
        assert s.get(Item, "course1").price == 99
        assert s.scalars(select(Promotes.item_id).where(Promotes.promoter_id == "vid1")).all() == ["course1"]
    with pytest.raises(ImportRejected) as info:
        import_records(store.engine, "items", [{"item_id": "v2", "kind": "live", "promotes": ["vid1"]}])
    assert "not a paid item" in info.value.report.errors[0].message


def test_exposures_keep_the_first(store: Store) -> None:
    seed_catalog(store)
    rows = [
        {
            "event_id": "x2",
            "type": "exposure",
            "ts": 1767323100,
            "user_id": "u1",
            "experiment": "t",
            "variant": "b",
        },
        {
            "event_id": "x1",
            "type": "exposure",
            "ts": 1767323000,
            "user_id": "u1",
            "experiment": "t",
            "variant": "a",
        },
    ]
    import_records(store.engine, "events", rows[:1])
    import_records(store.engine, "events", rows[1:])
    with store.sessions() as s:
        exp = s.get(Exposure, ("t", "u1"))
        assert (exp.variant, exp.first_ts) == ("a", 1767323000000)


def test_pseudonymized_ids(store: Store) -> None:
    seed_catalog(store)
    import_records(store.engine, "users", [{"user_id": "alice"}], pseudonym_key="k")
    with store.sessions() as s:
        assert s.get(User, "alice") is None
        assert s.get(User, pseudonymize("alice", "k")) is not None


def test_bulk_load_rebuilds_indexes(store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import knowcast.ingest.service as svc

    monkeypatch.setattr(svc, "BULK_MIN_ROWS", 10)
    seed_catalog(store)
    import_records(store.engine, "events", [ev(i) for i in range(50)])
    with store.engine.connect() as c:
        if store.dialect == "sqlite":
            names = {r[0] for r in c.execute(text("SELECT name FROM sqlite_master WHERE type='index'"))}
        else:
            names = {
                r[0] for r in c.execute(text("SELECT indexname FROM pg_indexes WHERE tablename='events'"))
            }
    assert {"ix_events_type_ts", "ix_events_user_ts", "ix_events_item_ts"} <= names
    assert count(store, Event) == 50
    if store.dialect == "postgresql":  # vacuumed and analysed after the bulk load: counted, all-visible
        with store.engine.connect() as c:
            tuples, visible = c.execute(
                text("SELECT reltuples, relallvisible FROM pg_class WHERE relname = 'events'")
            ).one()
        assert (tuples, visible) == (50, 1)


def _events_csv(path: Path, ids: list[str]) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["event_id", "type", "ts", "user_id", "item_id", "watch_ratio", "props"])
        for n, i in enumerate(ids):
            # Null patterns vary by row, so the SQLite writer groups (reorders) rows within a chunk.
            w.writerow(
                [i, "view", 1767323045 + n, f"u{n % 5}", "vid1", "" if n % 3 else "0.5", f'{{"n": {n}}}']
            )


def test_repeated_ids_keep_their_first_row_within_and_across_chunks(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bulk load into an empty table writes without looking ids up; repeats still count once."""
    import knowcast.ingest.service as svc

    monkeypatch.setattr(svc, "BULK_MIN_ROWS", 10)
    seed_catalog(store)
    ids = [f"e{i:04d}" for i in range(3000)] + ["e0005", "e0007", "x1", "x1", "e2999"]
    src = tmp_path / "ev.csv"
    _events_csv(src, ids)
    assert len(list(read_chunks(src, chunk_rows=1000))) >= 2  # repeats of an earlier chunk's ids, too
    rep = import_file(store.engine, "events", src, chunk_rows=1000)
    assert (rep.rows_read, rep.rows_written, rep.duplicates) == (3005, 3001, 4)
    with store.engine.connect() as c:
        props = dict(c.execute(text("SELECT id, props FROM events WHERE id IN ('e0005', 'x1')")).all())
        ratio = c.execute(text("SELECT watch_ratio FROM events WHERE id = 'e0003'")).scalar()
    assert props == {"e0005": '{"n":5}', "x1": '{"n":3002}'}  # the first occurrence of each id won
    assert ratio == 0.5
    again = import_file(store.engine, "events", src, chunk_rows=1000)
    assert (again.rows_written, again.duplicates) == (0, 3005)
    assert count(store, Event) == 3001


def test_reimport_keeps_indexes_and_writes_nothing(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import knowcast.ingest.service as svc

    monkeypatch.setattr(svc, "BULK_MIN_ROWS", 10)
    seed_catalog(store)
    src = tmp_path / "ev.csv"
    _events_csv(src, [f"e{i}" for i in range(40)])
    assert import_file(store.engine, "events", src).rows_written == 40
    dropped: list[str] = []
    monkeypatch.setattr(svc, "drop_secondary_indexes", lambda conn, table: dropped.append(table))
    assert import_file(store.engine, "events", src).duplicates == 40
    assert dropped == []  # nothing new to load: the indexes were not rebuilt for it


def test_typed_columns_from_a_frame_are_checked_like_text(store: Store) -> None:
    """Parquet and DataFrame inputs arrive typed (numbers, datetimes, None/NaN); same rules, same rows."""
    import pandas as pd

    seed_catalog(store)
    frame = pd.DataFrame(
        {
            "event_id": ["t1", "t2", "t3"],
            "type": ["view", "purchase", "view"],
            "ts": pd.to_datetime(["2026-01-02T03:04:05Z", "2026-01-02T03:04:06Z", None], utc=True),
            "user_id": ["u1", "u2", "u3"],
            "item_id": ["vid1", "course1", "vid1"],
            "amount": [None, 99.5, None],
            "props": [{"a": 1}, None, None],
        }
    )
    rep = import_records(store.engine, "events", frame, on_error="skip")
    assert (rep.rows_written, rep.rejected) == (2, 1)
    assert [(e.line, e.field) for e in rep.errors] == [(3, "ts")]
    with store.engine.connect() as c:
        rows = c.execute(text("SELECT id, ts, amount, currency, props FROM events ORDER BY id")).all()
    assert [tuple(r) for r in rows] == [
        ("t1", 1767323045000, None, None, '{"a":1}'),
        ("t2", 1767323046000, 99.5, "CNY", None),
    ]
