"""``knowcast train`` killed with SIGKILL while it writes the new model's artifact, then rerun.

A model version is active and served by the API. ``knowcast train`` runs as a real subprocess; a small
wrapper makes its artifact writer pause after the first file (so the kill lands on a half-written
artifact every time, not by luck of timing) and the test SIGKILLs it there. Then:

- the previous version is still the only registered one, still active, and the API still answers with it;
- the half-written artifact stays in its ``.tmp-*`` folder: no version folder, nothing served from it, and
  a fresh process (the model cache emptied) loads the old version;
- rerunning ``knowcast train`` finishes, registers and activates the next version, sweeps the dead
  writer's ``.tmp-*`` folder, and the running API switches to it without a restart.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from fastapi.testclient import TestClient

from knowcast.recommend import service as svc
from knowcast.store import Store

from .conftest import recommend_page, top_user

#: Runs the real CLI with the artifact writer slowed down after its first file (the kill target).
SLOW_WRITER = """
import sys, time
from knowcast.recommend import service as svc
real = svc._write_artifact
def paused(tmp, files):
    items = list(files.items())
    real(tmp, dict(items[:1]))
    print("KC-PARTIAL-WRITTEN", file=sys.stderr, flush=True)
    time.sleep(120)
    real(tmp, dict(items[1:]))
svc._write_artifact = paused
from knowcast.cli import app
app(sys.argv[1:], prog_name="knowcast")
"""


def test_killed_training_keeps_the_served_model_and_the_rerun_activates_a_new_one(
    served: tuple[Store, TestClient, Path],
) -> None:
    store, client, artifacts = served
    user = top_user(store)
    before = recommend_page(client, user)
    assert before["model"]["version"] == 1
    env = {**os.environ, "KNOWCAST_DATABASE_URL": store.url, "KNOWCAST_ARTIFACTS": str(artifacts)}
    cmd = [sys.executable, "-c", SLOW_WRITER, "train", "--algorithm", "item_knn", "--no-validate"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        lines: list[str] = []
        for line in proc.stderr:  # the CLI's progress lines, then our marker
            lines.append(line)
            if "KC-PARTIAL-WRITTEN" in line:
                break
        assert "KC-PARTIAL-WRITTEN" in lines[-1], "".join(lines)[-3000:]
        # the API keeps serving v1 while the trainer writes
        assert recommend_page(client, user)["model"]["version"] == 1
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == -signal.SIGKILL

    root = artifacts / "models" / "default"
    leftovers = [p for p in root.iterdir() if p.name.startswith(".tmp-")]
    assert len(leftovers) == 1 and len(list(leftovers[0].iterdir())) == 1  # one file of several: half-written
    assert sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) == ["1"]
    assert [(m["version"], m["active"]) for m in svc.list_models(store.engine)] == [(1, True)]
    time.sleep(0.3)  # past CHECK_SECONDS: the API has looked at the registry again
    assert recommend_page(client, user) == before
    svc.invalidate()  # as a freshly started process would: loads v1, not the half-written folder
    assert svc.served_model(store.engine).version == 1
    assert recommend_page(client, user) == before

    # the rerun finishes and the running API switches to it
    out = subprocess.run(
        [sys.executable, "-m", "knowcast.cli", "train", "--algorithm", "item_knn", "--no-validate", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout[out.stdout.index("{") :])
    assert report["version"] == 2 and report["active"]
    assert sorted((m["version"], m["active"]) for m in svc.list_models(store.engine)) == [
        (1, False),
        (2, True),
    ]
    assert sorted(p.name for p in root.iterdir()) == ["1", "2"]  # the killed writer's folder is swept
    deadline = time.monotonic() + 10
    while (page := recommend_page(client, user))["model"]["version"] != 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert page["model"] == {"name": "default", "version": 2, "algorithm": "item_knn"}
