"""The live room: pipeline, trending, highlights, metrics, replay, batch."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from knowcast.live.batch import OUTPUT_COLUMNS, analyze_frame
from knowcast.live.highlights import HighlightDetector
from knowcast.live.metrics import RoomMetrics
from knowcast.live.pipeline import CommentPipeline, RoomState
from knowcast.live.replay import ChatRecord, parse_danmaku_xml, read_chat_log, records_from_frame, replay
from knowcast.live.trending import TrendDetector
from knowcast.paths import shared_data_dir
from knowcast.text.moderation import Moderator

DATA = shared_data_dir()
needs_data = pytest.mark.skipif(DATA is None or not (DATA / "lexicons").is_dir(), reason="shared/data absent")


@pytest.fixture(scope="module")
def pipeline() -> CommentPipeline:
    return CommentPipeline()


def test_trending_is_burst_not_count():
    t = TrendDetector(window_s=10, halflife_s=100, min_count=3, min_z=2)
    ts = 0.0
    for _ in range(200):  # baseline: 哈哈 every comment
        t.add(["哈哈"], ts)
        ts += 0.5
    for i in range(8):  # burst: 价格 appears, 哈哈 continues at its usual rate
        t.add(["价格", "哈哈"], ts + i * 0.5)
    top = t.trending(5, now=ts + 4)
    assert top and top[0]["term"] == "价格"
    assert all(d["term"] != "哈哈" for d in top)


def test_highlight_on_comment_spike_with_reason():
    h = HighlightDetector(bucket_s=10, ratio=3, min_events=5)
    for s in range(0, 300):  # 1 comment every 2 s
        if s % 2 == 0:
            h.add("comments", s)
    for i in range(60):  # 60 comments in 20 s
        h.add("comments", 300 + i / 3, words=["价格", "怎么买"] if i % 2 else ["价格"])
    for s in range(320, 400, 2):
        h.add("comments", s)
    hl = h.flush(400)
    assert len(hl) == 1
    assert 295 <= hl[0].start_s <= 300 and 320 <= hl[0].end_s <= 330
    assert hl[0].reason.startswith("comment rate ×") and "价格" in hl[0].reason
    with pytest.raises(ValueError):
        h.add("likes", 1)


def test_metrics():
    m = RoomMetrics()
    m.promote("c1", "Python 课", 99.0)
    m.on_join("a", 0)
    m.on_join("b", 10)
    m.on_join("c", 20)
    m.on_leave("a", 60)
    m.on_comment("b", 30)
    m.on_gift("b", 35, 5.0)
    m.on_purchase("b", 40, 99.0, "c1")
    assert m.peak == 3 and m.concurrent == 2
    assert m.gmv == 99.0 and m.conversion() == pytest.approx(1 / 3)
    assert m.avg_watch_s(now=120) == pytest.approx((60 + 110 + 100) / 3)
    assert m.items()[0] == {"item_id": "c1", "title": "Python 课", "price": 99.0, "units": 1, "revenue": 99.0}
    pm = m.per_minute()
    assert pm[0]["joins"] == 3 and pm[0]["purchases"] == 1 and pm[0]["gmv"] == 99.0 and pm[1]["leaves"] == 1
    with pytest.raises(ValueError, match="amount"):
        m.on_purchase("c", 50, float("nan"))


@needs_data
def test_pipeline_one_comment(pipeline):
    a = pipeline.analyze("老师，這個課程多少錢？", ts=1.0, user_id="u1")
    assert a.normalized == "老师,这个课程多少钱?"
    assert a.verdict.action == "pass" and a.is_question and "多少钱" in a.keywords
    d = a.to_dict()
    assert json.dumps(d, ensure_ascii=False) and d["moderation"]["action"] == "pass"
    b = pipeline.analyze("加V 一三八一二三四五六七八")
    assert b.verdict.action == "block" and b.verdict.category == "ads"


@needs_data
@pytest.mark.parametrize("text", ["", "😂😂😂", b"\xff\xfe\xfa", "好" * 10_000, 12])
def test_pipeline_bad_input(pipeline, text):
    if isinstance(text, int):
        with pytest.raises(TypeError):
            pipeline.analyze(text)  # type: ignore[arg-type]
        return
    a = pipeline.analyze(text)
    assert a.verdict.action == "pass" and len(a.text) <= 10_000


@needs_data
def test_room_state_snapshot_and_record(pipeline):
    room = RoomState("r1", pipeline=pipeline)
    room.add_event("join", 0, "u1")
    room.add_event("join", 1, "u2")
    for i in range(6):
        room.add_comment("这个课多少钱？", 2 + i, f"u{i}")
    room.add_comment("加V 13812345678", 9, "spam")
    room.add_event("purchase", 10, "u1", 99.0, "c1")
    room.add_event("gift", 11, "u2", 1.0)
    snap = room.snapshot()
    json.dumps(snap, ensure_ascii=False)
    assert snap["top_questions"][0]["count"] >= 5
    assert snap["metrics"]["gmv"] == 99.0 and snap["metrics"]["peak_viewers"] == 2
    assert snap["verdicts"]["block"] == 1
    rec = room.finish()
    assert len(rec["comments"]) == 7 and rec["metrics_per_minute"][0]["comments"] == 7
    with pytest.raises(ValueError, match="kind"):
        room.add_event("like", 12)


def test_flood_in_room():
    room = RoomState(pipeline=CommentPipeline(moderator=Moderator(use_lexicon=False, pinyin=False)))
    acts = [room.add_comment("来了来了", i, "u1").verdict.action for i in range(5)]
    assert acts[-1] == "block" and acts[0] == "pass"


def test_parse_danmaku_xml_and_mode7():
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?><i><chatid>1</chatid>'
        '<d p="12.5,1,25,16777215,1577752211,0,0,1">第二条</d>'
        '<d p="3.0,7,25,16777215,1577752200,0,0,2">[0,0,"1-1",4.5,"高级弹幕","0","10",0]</d></i>'
    )
    recs = parse_danmaku_xml(xml)
    assert [r.text for r in recs] == ["高级弹幕", "第二条"] and recs[0].offset_s == 3.0 and recs[0].mode == 7
    with pytest.raises(ValueError, match="p needs"):
        parse_danmaku_xml('<i><d p="1,2">x</d></i>')
    with pytest.raises(ValueError, match="does not parse"):
        parse_danmaku_xml("<i><d>")


def test_records_from_frame_layouts():
    recs = records_from_frame(
        pd.DataFrame({"seq": [1, 2, 3], "user": ["a", "b", "a"], "text": ["x", None, "z"]})
    )
    assert [r.offset_s for r in recs] == [0.0, 1.0, 2.0] and recs[1].text == ""
    iso = pd.DataFrame({"timestamp": ["2026-03-02T13:50:48", "2026-03-02T13:50:58"], "text": ["a", "b"]})
    assert [r.offset_s for r in records_from_frame(iso)] == [0.0, 10.0]
    with pytest.raises(ValueError, match="text"):
        records_from_frame(pd.DataFrame({"x": [1]}))
    with pytest.raises(ValueError, match="row 1"):
        records_from_frame(pd.DataFrame({"offset_s": [1, "bad"], "text": ["a", "b"]}))


def test_replay_speed_uses_injected_sleep():
    slept: list[float] = []
    recs = [ChatRecord(0.0, "你好"), ChatRecord(2.0, "课程多少钱"), ChatRecord(6.0, "谢谢老师")]
    room = RoomState(pipeline=CommentPipeline(moderator=Moderator(use_lexicon=False, pinyin=False)))
    out = list(replay(recs, room, speed=2.0, sleep=slept.append))
    assert slept == [1.0, 2.0] and len(out) == 3 and out[1][1].is_question
    with pytest.raises(ValueError):
        list(replay(recs, room, speed=-1))


@needs_data
def test_replay_real_danmaku_file(pipeline):
    recs = read_chat_log(DATA / "danmaku" / "bilibili_av80976236.xml")
    assert len(recs) == 4832 and recs[0].offset_s <= recs[-1].offset_s
    room = RoomState(pipeline=pipeline)
    n = sum(1 for _ in replay(recs, room, limit=300))
    assert n == 300 and sum(room.verdict_counts.values()) == 300


def test_batch_frame():
    df = pd.DataFrame({"c": ["这个课多少钱？", "加V 13812345678", None, 123, "😂"]})
    pipe = CommentPipeline(moderator=Moderator(use_lexicon=False, pinyin=False))
    out = analyze_frame(df, "c", pipeline=pipe)
    assert list(out.columns) == ["c", *OUTPUT_COLUMNS]
    assert out.loc[0, "is_question"] and "多少钱" in out.loc[0, "keywords"]
    assert out.loc[1, "moderation"] == "block" and out.loc[1, "span_start"] == 3
    assert out.loc[2, "moderation"] == "pass" and out.loc[2, "sentiment"] == "neutral"
    with pytest.raises(ValueError, match="text column"):
        analyze_frame(df, "nope", pipeline=pipe)


@needs_data
def test_pipeline_cache_gives_the_uncached_analysis():
    cached = CommentPipeline(cache_size=1024)
    plain = CommentPipeline(cache_size=0)
    texts = ["这个课多少钱？", "老师讲得太好了 666", "这个课多少钱？", "房间很脏", "", "加V 13812345678"] * 2
    for t in texts:
        a, b = cached.analyze(t, 1.0, "u"), plain.analyze(t, 1.0, "u")
        assert a.to_dict() == b.to_dict() and a.tokens == b.tokens
    # the cached keyword list is a fresh list each time: a caller mutating it cannot poison the cache
    first = cached.analyze("这个课多少钱？")
    first.keywords.append("x")
    assert "x" not in cached.analyze("这个课多少钱？").keywords
    with pytest.raises(ValueError, match="cache_size"):
        CommentPipeline(cache_size=-1)


@needs_data
def test_blocked_comments_skip_text_analysis_unless_asked():
    text = "加V 13812345678 老师讲得太好了"
    a = CommentPipeline().analyze(text)
    assert a.verdict.action == "block" and a.sentiment.label == "neutral" and a.keywords == []
    b = CommentPipeline(analyze_blocked=True).analyze(text)
    assert b.verdict.action == "block" and b.keywords


def _room_view(room: RoomState) -> tuple[dict, dict]:
    rec, snap = room.record(), room.snapshot(20)
    return rec, snap


@needs_data
@pytest.mark.parametrize("batch", [1, 37, 500])
def test_add_comments_gives_the_same_room_as_add_comment(batch):
    """The batch path (moderation of the whole batch, each distinct text analysed once, vectorised sentiment)
    leaves the room exactly as one add_comment per comment does: verdicts (flood included), sentiment,
    questions, trending, highlights, metrics, the record."""
    recs = read_chat_log(DATA / "danmaku" / "bilibili_av80976236.csv")[:1500]
    items = [(r.text, r.offset_s, r.user_id, f"c{i}") for i, r in enumerate(recs)]
    one = RoomState(pipeline=CommentPipeline())
    for it in items:
        one.add_comment(*it)
    many = RoomState(pipeline=CommentPipeline())
    out = []
    for i in range(0, len(items), batch):
        out += many.add_comments(items[i : i + batch])
    assert [a.comment_id for a in out] == [it[3] for it in items]
    assert _room_view(one) == _room_view(many)
    assert one.verdict_counts["block"] > 50 and one.questions.top(5)


@needs_data
def test_analyze_many_matches_analyze(pipeline):
    texts = ["这个课程怎么买？", "主播讲得太好了666", "加v：abc12345", "", "打倒恶俗！" * 3, "垃圾 退钱"] * 8
    many = pipeline.analyze_many(texts)
    for t, b in zip(texts, many, strict=True):
        a = pipeline.analyze(t)
        assert (a.normalized, a.verdict, a.is_question, a.keywords, a.tokens) == (
            b.normalized,
            b.verdict,
            b.is_question,
            b.keywords,
            b.tokens,
        )
        assert a.sentiment.label == b.sentiment.label
        assert abs(a.sentiment.score - b.sentiment.score) < 1e-9


@needs_data
def test_sentiment_analyze_many_matches_analyze():
    from knowcast.text.normalize import normalize
    from knowcast.text.sentiment import default_model
    from knowcast.text.tokenize import tokenize

    model = default_model()
    texts = [normalize(r.text) for r in read_chat_log(DATA / "danmaku" / "bilibili_av80976236.csv")[:2000]]
    toks = [tokenize(t, stopwords=False, normalized=True) for t in texts]
    many = model.analyze_many(texts, toks)
    for t, k, b in zip(texts, toks, many, strict=True):
        a = model.analyze(t, k, normalized=True)
        assert a.label == b.label, t
        assert abs(a.score - b.score) < 1e-9
        assert abs(a.p_positive - b.p_positive) < 1e-9
