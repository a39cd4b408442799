"""Content service through the CLI and the API: tag, show, similar items, transcripts, video."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from knowcast.cli import app as cli
from knowcast.content import service as svc
from knowcast.paths import shared_data

TAXONOMY = """
音乐: [音乐, music, 吉他, piano]
理财: [理财, 金融, finance, 基金]
编程: [编程, programming, python]
育儿: [育儿, parenting]
"""
SRT = """1
00:00:01,000 --> 00:00:03,500
今天我们讲 Python 编程 的装饰器

2
00:00:04,000 --> 00:00:06,000
装饰器 让 函数 更加 灵活
"""

runner = CliRunner()


def _cli(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(cli, list(args))


def test_tag_show_similar_transcript(store, api, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    client = api
    # before tagging: features exist as an empty shell, similar items come from tags
    r = client.get("/v1/items/i00001/features")
    assert r.status_code == 200 and r.json()["tagged"] is False
    before = client.get("/v1/items/i00001/similar?n=5").json()
    assert before["source"] == "tags" and len(before["similar"]) == 5

    tax = tmp_path / "tax.yaml"
    tax.write_text(TAXONOMY, encoding="utf-8")
    res = _cli("content", "tag", "--taxonomy", str(tax), "--topics", "5", "--json", "--db", store.url)
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    assert report["n_items"] == 120 and report["n_topics"] == 5 and report["dim"] > 0
    assert "taxonomy" in report["category_source"]

    res = _cli("content", "show", "i00001", "--json", "--db", store.url)
    assert res.exit_code == 0, res.output
    shown = json.loads(res.output)
    api_f = client.get("/v1/items/i00001/features").json()
    assert shown["keywords"] == api_f["keywords"] and len(api_f["keywords"]) > 0
    assert api_f["tagged"] and api_f["category"] == "音乐"  # the item is tagged music / 音乐
    assert api_f["embedding_dim"] == report["dim"]
    assert abs(sum(t["share"] for t in api_f["topics"]) - 1) < 0.05 and api_f["topics"][0]["words"]
    with_emb = client.get("/v1/items/i00001/features?embedding=true").json()
    assert len(with_emb["embedding"]) == report["dim"]
    res = _cli("content", "show", "i00001", "--db", store.url)
    assert res.exit_code == 0 and "keywords" in res.output
    assert _cli("content", "show", "nope", "--db", store.url).exit_code == 1
    assert client.get("/v1/items/nope/features").status_code == 404

    # similar items: shape, order, and items sharing tags first
    sim = client.get("/v1/items/i00001/similar?n=8").json()
    assert sim["source"] == "content" and sim["item_id"] == "i00001"
    rows = sim["similar"]
    assert len(rows) == 8 and "i00001" not in [s["item_id"] for s in rows]
    scores = [s["score"] for s in rows]
    assert scores == sorted(scores, reverse=True)
    assert set(rows[0]) >= {"item_id", "score", "kind", "title", "shared_tags"}
    content_tags = {"music", "音乐"}
    assert all(content_tags & set(s["shared_tags"]) for s in rows[:5]), rows
    # items sharing a tag outrank those sharing none
    sharing = [bool(content_tags & set(s["shared_tags"])) for s in rows]
    assert sharing == sorted(sharing, reverse=True)
    only = client.get("/v1/items/i00001/similar?n=3&kind=course").json()["similar"]
    assert only and all(s["kind"] == "course" for s in only)
    assert client.get("/v1/items/i00001/similar?n=0").status_code == 422
    assert client.get("/v1/items/i00001/similar?kind=podcast").status_code == 422
    assert client.get("/v1/items/nope/similar").status_code == 404
    res = _cli("content", "similar", "i00001", "-n", "3", "--db", store.url)
    assert res.exit_code == 0 and "source: content" in res.output

    # a transcript is analysed like a caption with the fitted models
    srt = tmp_path / "talk.srt"
    srt.write_text(SRT, encoding="utf-8")
    res = _cli("content", "transcript", "i00002", str(srt), "--json", "--db", store.url)
    assert res.exit_code == 0, res.output
    f = json.loads(res.output)
    assert f["reanalysed"] and f["transcript"]["n_cues"] == 2
    assert "装饰" in f["keywords"] and "python" in f["keywords"], f["keywords"]
    bad = tmp_path / "bad.srt"
    bad.write_text("1\n00:00:01,000 --> later\nhello\n", encoding="utf-8")
    res = _cli("content", "transcript", "i00002", str(bad), "--db", store.url)
    assert res.exit_code == 1 and "line 2" in res.output


def test_tag_learns_categories_from_labelled_items(store) -> None:  # type: ignore[no-untyped-def]
    """Without a taxonomy, the tags that name a category (here the English topic tags) label items and a
    classifier learnt from them categorises the rest."""
    import pandas as pd

    items = pd.read_sql("SELECT id, tags FROM items", store.engine)
    first = {i: (t if isinstance(t, list) else json.loads(t))[0]
             for i, t in zip(items["id"], items["tags"], strict=True)}
    names = sorted({"business", "music", "parenting", "psychology"})
    rep = svc.tag_items(store.engine, category_names=names, n_topics=5)
    assert rep.category_source == "labels+classifier" and rep.n_labelled > 50
    feats = pd.read_sql("SELECT item_id, category FROM item_features", store.engine)
    cat = dict(zip(feats["item_id"], feats["category"], strict=True))
    labelled = [i for i in first if first[i] in names]
    assert all(cat[i] == first[i] for i in labelled)  # own labels kept
    assert {c for c in cat.values() if isinstance(c, str)} <= set(names)


VIDEO = shared_data("video", "archery.mp4")


@pytest.mark.skipif(not VIDEO.exists(), reason=f"{VIDEO} is absent (shared/data not mounted)")
def test_video_features_stored_and_shown(store, api, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    kf = tmp_path / "out" / "cover.png"
    res = _cli("content", "video", str(VIDEO), "--item", "i00003", "--keyframe", str(kf), "--json",
               "--db", store.url)
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["summary"]["width"] == 320 and abs(out["summary"]["duration_s"] - 10.0) < 0.2
    assert kf.is_file() and kf.read_bytes()[:4] == b"\x89PNG"
    assert not list(kf.parent.glob(".*tmp*"))  # the temporary keyframe was renamed
    f = api.get("/v1/items/i00003/features").json()
    assert f["video"]["summary"]["fps"] == pytest.approx(29.97, abs=0.01)
    assert f["video"]["keyframe"] == str(kf.resolve())
    res = _cli("content", "show", "i00003", "--db", store.url)
    assert res.exit_code == 0 and "duration_s=10" in res.output
    # not stored without --item
    res = _cli("content", "video", str(VIDEO), "--json", "--db", store.url)
    assert res.exit_code == 0 and "item_id" not in json.loads(res.output)

    broken = tmp_path / "broken.mp4"
    broken.write_bytes(VIDEO.read_bytes()[:3000])
    res = _cli("content", "video", str(broken), "--item", "i00004", "--db", store.url)
    assert res.exit_code == 1 and "cannot analyse video" in res.output
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"this is not a video" * 100)
    res = _cli("content", "video", str(garbage), "--db", store.url)
    assert res.exit_code == 1 and "garbage.mp4" in res.output
    assert api.get("/v1/items/i00004/features").json()["video"] is None
    res = _cli("content", "video", str(VIDEO), "--item", "nope", "--db", store.url)
    assert res.exit_code == 1 and "unknown item_id" in res.output
