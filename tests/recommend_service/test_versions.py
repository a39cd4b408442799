"""Model versions: artifacts on disk, hot swap under load, rollback, failed writes, ALS fold-in."""

from __future__ import annotations

import errno
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import text, update

from knowcast.recommend import service as svc
from knowcast.store.models import ModelVersion

from .conftest import active_users


def test_artifact_is_npz_and_json_only(store, artifacts: Path) -> None:  # type: ignore[no-untyped-def]
    rep = svc.train(store.engine, "als", {"factors": 8, "iterations": 3}, validate=False)
    path = Path(rep.path)
    assert path.parent == artifacts / "models" / "default" and path.name == "1"
    assert sorted(p.name for p in path.iterdir()) == ["catalog.npz", "meta.json", "model.npz"]
    for f in ("catalog.npz", "model.npz"):
        with np.load(path / f, allow_pickle=False) as z:  # nothing in it needs unpickling
            assert all(z[k].dtype != object for k in z.files)
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".tmp")]


def test_als_fold_in_matches_the_closed_form(store) -> None:  # type: ignore[no-untyped-def]
    """Served ALS scores a user's current row with Hu-Koren-Volinsky's least squares from the stored item
    factors (implicit's engine rebuilt from the npz): check against the formula written out. implicit
    (>= 0.5) takes the confidence of an observed item as ``alpha * r`` and 1 elsewhere."""
    params = {"factors": 8, "iterations": 5, "regularization": 0.1, "alpha": 2.0}
    svc.train(store.engine, "als", params, validate=False)
    served = svc.served_model(store.engine)
    y = served.model.item_factors_.astype(np.float64)
    row = np.zeros(served.n_items)
    row[[3, 10, 42]] = [1.0, 0.5, 2.0]
    c = np.where(row > 0, params["alpha"] * row, 1.0)  # confidence
    p = (row > 0).astype(float)
    a = (y.T * c) @ y + params["regularization"] * np.eye(y.shape[1])
    x = np.linalg.solve(a, (y.T * c) @ p)
    import scipy.sparse as sp

    got = served.model.score(np.array([served.model.n_users_]), sp.csr_matrix(row[None, :]))[0]
    np.testing.assert_allclose(got, y @ x, rtol=2e-3, atol=2e-4)


def test_new_version_is_picked_up_without_restart_or_failures(store, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(svc, "CHECK_SECONDS", 0.2)
    svc.train(store.engine, "ease", validate=False)
    user = active_users(store, 1)[0]
    seen: list[int] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            try:
                page = svc.recommend(store.engine, user, 10, "feed")
                assert len(page["items"]) == 10
                seen.append(page["model"]["version"])
            except BaseException as exc:  # noqa: BLE001 - any failure is what this test looks for
                errors.append(exc)

    worker = threading.Thread(target=load)
    worker.start()
    try:
        time.sleep(0.3)
        svc.train(store.engine, "item_knn", validate=False)  # v2, activated by this process
        deadline = time.monotonic() + 5
        while (not seen or seen[-1] != 2) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert seen and seen[-1] == 2
        # another process flips the flag back (no invalidate here): picked up within CHECK_SECONDS
        with store.engine.begin() as conn:
            conn.execute(update(ModelVersion).values(active=ModelVersion.version == 1))
        n_before = len(seen)
        deadline = time.monotonic() + 5
        while seen[-1] != 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert seen[-1] == 1
        assert len(seen) > n_before
    finally:
        stop.set()
        worker.join(10)
    assert not errors, errors[:3]
    assert set(seen) == {1, 2} and len(seen) > 20
    # versions only move forward then back: no request saw a half-swapped state
    changes = [b for a, b in zip(seen, seen[1:], strict=False) if a != b]
    assert changes == [2, 1]


def test_rollback_to_the_previous_version(store) -> None:  # type: ignore[no-untyped-def]
    svc.train(store.engine, "ease", validate=False)
    svc.train(store.engine, "item_knn", validate=False)
    user = active_users(store, 1)[0]
    assert svc.recommend(store.engine, user)["model"]["version"] == 2
    out = svc.rollback(store.engine)
    assert out["version"] == 1 and out["previous"] == 2
    page = svc.recommend(store.engine, user)
    assert page["model"] == {"name": "default", "version": 1, "algorithm": "ease"}
    assert [m["active"] for m in svc.list_models(store.engine)] == [False, True]
    with pytest.raises(svc.NotFound, match="older than v1"):
        svc.rollback(store.engine)
    assert svc.activate(store.engine, "default", 2)["version"] == 2
    assert svc.recommend(store.engine, user)["model"]["version"] == 2
    with pytest.raises(svc.NotFound, match="no version 7"):
        svc.activate(store.engine, "default", 7)
    with pytest.raises(svc.NotFound, match="no model named"):
        svc.rollback(store.engine, "other")


def test_full_disk_while_writing_keeps_the_served_model(
    store, artifacts: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    svc.train(store.engine, "ease", validate=False)
    user = active_users(store, 1)[0]
    before = svc.recommend(store.engine, user)
    real = svc._write_artifact

    def full_disk(tmp: Path, files: dict) -> None:  # type: ignore[type-arg]
        first = dict(list(files.items())[:1])
        real(tmp, first)  # one file lands, then the disk is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(svc, "_write_artifact", full_disk)
    with pytest.raises(OSError) as exc:
        svc.train(store.engine, "item_knn", validate=False)
    assert exc.value.errno == errno.ENOSPC
    models = svc.list_models(store.engine)
    assert [(m["version"], m["active"]) for m in models] == [(1, True)]
    root = artifacts / "models" / "default"
    assert sorted(p.name for p in root.iterdir()) == ["1"]  # the half-written temp dir is gone
    svc.invalidate()
    assert svc.recommend(store.engine, user) == before
    monkeypatch.setattr(svc, "_write_artifact", real)
    assert svc.train(store.engine, "item_knn", validate=False).version == 2


def test_unloadable_new_version_leaves_the_old_one_serving(store, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    svc.train(store.engine, "ease", validate=False)
    user = active_users(store, 1)[0]
    assert svc.recommend(store.engine, user)["model"]["version"] == 1
    rep = svc.train(store.engine, "item_knn", validate=False, activate_new=False)
    (Path(rep.path) / "model.npz").write_bytes(b"truncated")
    with pytest.raises(ValueError):  # activate refuses an artifact that does not load
        svc.activate(store.engine, "default", 2)
    # flipped behind its back (a bad manual edit): the process logs it and keeps serving v1
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE model_versions SET active = (version = 2)"))
    svc.invalidate()
    assert svc.recommend(store.engine, user)["model"]["version"] == 1


def test_ivf_index_finds_the_exact_top_items() -> None:
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(40, 16))
    factors = (centers[rng.integers(0, 40, 6000)] + 0.3 * rng.normal(size=(6000, 16))).astype(np.float32)
    ivf = svc._IVF(factors, **svc._build_ivf(factors))
    assert sorted(ivf.order.tolist()) == list(range(6000)) and ivf.offsets[-1] == 6000
    mask = rng.random(6000) > 0.2
    hits = []
    for _ in range(20):
        u = rng.normal(size=16).astype(np.float32)
        exact_ids, exact_scores = svc._candidates(factors @ u, mask, 100)
        ids, scores = ivf.search(u, mask, 100, probe=1.0)  # every cluster: exactly the full scan
        assert ids.tolist() == exact_ids.tolist()
        np.testing.assert_allclose(scores, exact_scores, rtol=1e-5)
        ids, _ = ivf.search(u, mask, 100, probe=0.1)
        assert mask[ids].all()
        hits.append(len(set(ids.tolist()) & set(exact_ids.tolist())) / 100)
    assert np.mean(hits) >= 0.8, hits  # a tenth of the clusters keeps most of the true top 100


def test_large_factor_models_serve_the_feed_through_the_index(store, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(svc, "IVF_MIN_ITEMS", 0)
    rep = svc.train(store.engine, "als", {"factors": 8, "iterations": 3}, validate=False)
    assert (Path(rep.path) / "index.npz").exists()
    served = svc.served_model(store.engine)
    assert served.ivf is not None
    user = active_users(store, 1)[0]
    monkeypatch.setattr(svc, "IVF_PROBE", 1.0)
    exact = svc.recommend(store.engine, user, 10, "feed")
    monkeypatch.setattr(svc, "IVF_MIN_ITEMS", 10**9)
    served.ivf = None  # the same model without its index: a full scan
    assert svc.recommend(store.engine, user, 10, "feed")["items"] == exact["items"]
