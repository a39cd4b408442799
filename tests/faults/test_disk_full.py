"""The disk fills up while ``knowcast train`` writes a model: the old model is still served.

tests/recommend_service/test_versions.py::test_full_disk_while_writing_keeps_the_served_model makes the
artifact writer raise ENOSPC in process (after one file has landed). This one lets the operating system
refuse the write in a real ``knowcast train`` process: the file size limit (``RLIMIT_FSIZE``, what
``ulimit -f`` sets; Python ignores SIGXFSZ, so the write fails with EFBIG instead of killing the process)
is set below the size of the model file, so numpy's own writer fails partway through it. Then:

- the command fails with exit code 1 and one line naming the OS error (no traceback);
- no partial file is left: neither a version folder nor a ``.tmp-*`` folder;
- the registry still has only the old version, active, and the API serves it unchanged;
- with space again, the same command trains and activates the next version.
"""

from __future__ import annotations

import errno
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from fastapi.testclient import TestClient

from knowcast.recommend import service as svc
from knowcast.store import Store

from .conftest import recommend_page, top_user

LIMIT_BYTES = 16 * 1024  # the tiny demo's EASE model.npz is ~60 KB


def _limit_file_size() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT_BYTES, LIMIT_BYTES))


def test_full_disk_during_a_real_train_keeps_the_served_model(
    served: tuple[Store, TestClient, Path],
) -> None:
    store, client, artifacts = served
    root = artifacts / "models" / "default"
    assert (root / "1" / "model.npz").stat().st_size > 2 * LIMIT_BYTES  # the limit bites inside that file
    user = top_user(store)
    before = recommend_page(client, user)
    env = {
        **os.environ,
        "KNOWCAST_DATABASE_URL": store.url,
        "KNOWCAST_ARTIFACTS": str(artifacts),
        "COLUMNS": "250",
    }
    cmd = [sys.executable, "-m", "knowcast.cli", "train", "--algorithm", "ease", "--no-validate"]
    out = subprocess.run(
        cmd, env=env, capture_output=True, text=True, timeout=600, preexec_fn=_limit_file_size
    )
    assert out.returncode == 1, (out.returncode, out.stderr[-2000:])  # an error exit, not killed by SIGXFSZ
    assert f"error: {os.strerror(errno.EFBIG)}" in out.stderr, out.stderr[-3000:]  # one line, no traceback
    assert "the served model is unchanged" in out.stderr and "Traceback" not in out.stderr

    assert sorted(p.name for p in root.iterdir()) == ["1"]  # no .tmp-* folder, no version folder
    assert [(m["version"], m["active"]) for m in svc.list_models(store.engine)] == [(1, True)]
    time.sleep(0.3)  # past CHECK_SECONDS: the API has looked at the registry again
    assert recommend_page(client, user) == before
    svc.invalidate()  # a fresh process loads the same version
    assert recommend_page(client, user) == before

    out = subprocess.run([*cmd, "--json"], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert sorted((m["version"], m["active"]) for m in svc.list_models(store.engine)) == [
        (1, False),
        (2, True),
    ]
    deadline = time.monotonic() + 10
    while (page := recommend_page(client, user))["model"]["version"] != 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert page["model"]["version"] == 2
