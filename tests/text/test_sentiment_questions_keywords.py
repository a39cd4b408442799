"""Sentiment model, question detection/clustering and keywords."""

from __future__ import annotations

import numpy as np
import pytest

from knowcast.text.keywords import keywords
from knowcast.text.questions import QuestionClusterer, is_question
from knowcast.text.sentiment import MODEL_PATH, N_BUCKETS, SentimentModel, analyze_sentiment, default_model
from knowcast.text.train_sentiment import split

needs_model = pytest.mark.skipif(not MODEL_PATH.exists(), reason="sentiment.npz not trained")


@needs_model
@pytest.mark.parametrize(
    "text,label",
    [("房间很脏，服务差，不会再来", "negative"), ("垃圾课程，退钱", "negative"),
    ("好评！送餐很快，味道不错", "positive"),
     ("666", "positive"), ("yyds 老师讲得太好了", "positive"), ("123", "neutral"), ("😂", "positive"),
     ("", "neutral")],
)  # fmt: skip
def test_sentiment_labels(text, label):
    assert analyze_sentiment(text).label == label


@needs_model
def test_sentiment_bad_input_and_score_range():
    m = default_model()
    for t in [b"\xff\xfe", "好" * 10_000, "[emot:dy1]"]:
        s = m.analyze(t)
        assert -1.0 <= s.score <= 1.0
    assert m.analyze("好" * 10_000).label == "positive"


@needs_model
def test_model_file_is_small_and_roundtrips(tmp_path):
    assert MODEL_PATH.stat().st_size < 5_000_000
    m = default_model()
    m.save(tmp_path / "m.npz")
    m2 = SentimentModel.load(tmp_path / "m.npz")
    assert abs(m2.analyze("味道很好").score - m.analyze("味道很好").score) < 0.02


def test_sentiment_model_validates_shapes():
    with pytest.raises(ValueError):
        SentimentModel(np.zeros(3), np.zeros(3), 0.0)
    with pytest.raises(ValueError):
        SentimentModel(np.zeros(N_BUCKETS), np.zeros(N_BUCKETS), 0.0, neutral_band=0.7)


def test_split_is_reproducible_and_stratified():
    y = np.array([0] * 100 + [1] * 300)
    tr1, te1 = split(y)
    tr2, te2 = split(y)
    assert (te1 == te2).all() and len(set(tr1) & set(te1)) == 0 and len(tr1) + len(te1) == 400
    assert (y[te1] == 0).sum() == 20 and (y[te1] == 1).sum() == 60


@pytest.mark.parametrize(
    "text,expected",
    [("这个课多少钱", True), ("有回放吗", True), ("能不能讲慢点", True), ("How do I buy this?", True),
     ("请问老师几点开始", True), ("???", False), ("啊？", False), ("主播讲得真好", False), ("666",
     False), ("", False)],
)  # fmt: skip
def test_is_question(text, expected):
    assert is_question(text) is expected


def test_question_clusters_merge_near_duplicates():
    q = QuestionClusterer(window_s=60)
    ids = [
        q.add(t, i)
        for i, t in enumerate(
            ["这个课多少钱", "课程多少钱啊？？", "多少钱", "有回放吗", "回放有吗", "怎么买"]
        )
    ]
    assert ids[0] == ids[1] == ids[2] and ids[3] == ids[4] and len({ids[0], ids[3], ids[5]}) == 3
    top = q.top(2, now=6)
    assert top[0]["count"] == 3 and top[1]["count"] == 2
    assert q.top(5, now=1000) == []  # the window moved on
    assert q.add("？？", 7) is None


def test_keywords():
    kws = keywords("老师，这个课程的价格是多少？怎么买")
    assert "价格" in kws and "怎么买" in kws and "的" not in kws
    assert keywords("#知识付费# 课程")[0] == "#知识付费"
    assert keywords("") == [] and keywords("的了是", k=3) == [] and keywords("abc", k=0) == []
