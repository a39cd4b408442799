"""``sweep_stale_tmp``: half-written artifact folders of dead trainings go, live or foreign ones stay."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from knowcast.recommend.service import STALE_TMP_SECONDS, sweep_stale_tmp


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _folder(root: Path, name: str, age_s: float = 0.0) -> Path:
    path = root / name
    path.mkdir()
    (path / "model.npz").write_bytes(b"half")
    if age_s:
        t = time.time() - age_s
        os.utime(path, (t, t))
    return path


def test_sweeps_only_folders_whose_writer_is_gone(tmp_path: Path) -> None:
    host = socket.gethostname()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        _folder(tmp_path, "1")  # a finished version: never touched
        dead = f".tmp-{host}-{_dead_pid()}-aa"
        _folder(tmp_path, dead)
        _folder(tmp_path, f".tmp-{host}-{live.pid}-bb")  # still writing
        _folder(tmp_path, f".tmp-{host}-{os.getpid()}-cc")  # this process's own
        _folder(tmp_path, ".tmp-other-host-123-dd")  # another host, recent: cannot tell, kept
        _folder(tmp_path, ".tmp-other-host-456-ee", age_s=STALE_TMP_SECONDS + 60)  # another host, old
        _folder(tmp_path, ".tmp-0123abcd", age_s=STALE_TMP_SECONDS + 60)  # the older name form, old
        _folder(tmp_path, ".tmp-4567ef01")  # the older name form, recent
        removed = sweep_stale_tmp(tmp_path)
    finally:
        live.kill()
        live.wait()
    assert sorted(removed) == sorted([dead, ".tmp-other-host-456-ee", ".tmp-0123abcd"])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [
            "1",
            f".tmp-{host}-{live.pid}-bb",
            f".tmp-{host}-{os.getpid()}-cc",
            ".tmp-other-host-123-dd",
            ".tmp-4567ef01",
        ]
    )


def test_missing_root_is_fine(tmp_path: Path) -> None:
    assert sweep_stale_tmp(tmp_path / "nope") == []
