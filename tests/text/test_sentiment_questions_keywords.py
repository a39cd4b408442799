"""Sentiment model, question detection/clustering and keywords."""

from __future__ import annotations

import numpy as np
import pytest

from knowcast.text.keywords import keywords
from knowcast.text.questions import QuestionClusterer, is_question
from knowcast.text.sentiment import (
    MODEL_PATH,
    SentimentModel,
    analyze_sentiment,
    char_grams,
    default_model,
    word_grams,
)
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
        SentimentModel(["好"], [0], [1.0], np.zeros((2, 1)), np.zeros((1, 1)), [0.0])
    with pytest.raises(ValueError):
        SentimentModel(["好"], [0], [1.0], np.zeros((1, 1)), np.zeros((1, 1)), [0.0], neutral_band=0.7)
    with pytest.raises(ValueError):
        SentimentModel(["好"], [0], [1.0], np.zeros((1, 1)), np.zeros((1, 1)), [0.0], domains=["hotel"])


def _tiny_model() -> SentimentModel:
    # "好" (char) positive, "差" (char) negative; a second domain column that flips "好"
    coef = np.array([[2.0, -2.0], [-2.0, -2.0]])
    return SentimentModel(["好", "差"], [0, 0], [1.0, 1.0], coef, np.zeros((2, 2)), [0.0, 0.0],
                          ["general", "other"])  # fmt: skip


def test_tiny_model_scores_by_hand_and_domains(tmp_path):
    m = _tiny_model()
    # one known char gram, unit norm: logit = 2 (no shrink in predict_proba)
    assert m.predict_proba(["好"])[0] == pytest.approx(1 / (1 + np.exp(-2.0)))
    assert m.predict_proba(["好"], domain="other")[0] < 0.5
    assert m.predict_proba(["好差"])[0] == pytest.approx(0.5)  # (2 - 2) / sqrt(2)
    with pytest.raises(ValueError, match="domain"):
        m.analyze("好", domain="cinema")
    m.save(tmp_path / "t.npz")
    m2 = SentimentModel.load(tmp_path / "t.npz")
    assert m2.domains == ["general", "other"] and m2.predict_proba(["好差好"])[0] == pytest.approx(
        m.predict_proba(["好差好"])[0], abs=1e-3
    )


def test_char_and_word_grams_match_the_plain_definition():
    s = "房间 很脏ab"
    t = s.replace(" ", "")
    naive = [t[i : i + n] for n in (1, 2, 3, 4) for i in range(len(t) - n + 1)]
    assert char_grams(s) == naive
    assert char_grams("") == [] and char_grams("好") == ["好"]
    assert word_grams(["房间", "很", "脏"]) == ["房间", "很", "脏", "房间\x01很", "很\x01脏"]


def _reference_family(m: SentimentModel, fam: int, grams: list[str], col: int) -> float | None:
    """The textbook computation: sparse sublinear-tf-idf and binary-idf vectors, L2-normalised, dotted."""
    from collections import Counter

    cnt = {g: c for g, c in Counter(grams).items() if g in m._index[fam]}
    if not cnt:
        return None
    rows = np.array([m._index[fam][g] for g in cnt])
    idf = m.idf[rows]
    tfidf = (1.0 + np.log(np.array(list(cnt.values()), dtype=float))) * idf
    return float(tfidf @ m.coef_tfidf[rows, col]) / np.sqrt(tfidf @ tfidf) + float(
        idf @ m.coef_binary[rows, col]
    ) / np.sqrt(idf @ idf)


@needs_model
@pytest.mark.parametrize(
    "text",
    ["房间很脏，服务差，不会再来", "哈哈哈哈哈 好好好 太好了太好了", "送餐很快😂味道不错👍", "a\x00b 好的",
     "𠀀好吃", "yyds!!! 老师讲得太好了", "", "!!!"],
)  # fmt: skip
def test_fast_scoring_equals_the_sparse_vector_computation(text):
    from knowcast.text.tokenize import tokenize

    m = default_model()
    toks = tokenize(text, stopwords=False, normalized=True)
    cg, wg = char_grams(text), word_grams(toks)
    assert sorted(m._char_rows(text.replace(" ", ""))) == sorted(
        m._index[0][g] for g in cg if g in m._index[0]
    )
    for col in range(len(m.domains)):
        for fam, got in ((0, m._rows_score(m._char_rows(text.replace(" ", "")), col)),
                         (1, m._family_score(1, wg, col))):  # fmt: skip
            want = _reference_family(m, fam, cg if fam == 0 else wg, col)
            assert (got is None) == (want is None)
            if want is not None:
                assert got == pytest.approx(want, abs=1e-9)


@needs_model
def test_shipped_model_has_corpus_columns():
    m = default_model()
    assert m.domains[0] == "general" and {"hotel", "waimai"} <= set(m.domains)
    assert m.analyze("房间很脏，服务差，不会再来", domain="hotel").label == "negative"
    assert m.analyze("送餐很快，味道不错", domain="waimai").label == "positive"


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


def test_question_clusters_find_the_best_cluster_like_brute_force():
    import random

    from knowcast.text.questions import shingles

    rng = random.Random(3)
    stems = ["这个课多少钱", "有回放吗", "几点开始", "怎么报名", "老师用的什么软件", "能开发票吗"]
    q = QuestionClusterer(threshold=0.45, window_s=1e9)
    for i in range(300):
        s = rng.choice(stems)
        cut = rng.randint(0, len(s))
        text = s[:cut] + rng.choice(["", "啊", "呢", "老师", "？？", "请问"]) + s[cut:]
        g = shingles(text)
        best = None
        for c in q._clusters.values():  # brute force over every cluster, ties to the oldest
            sim = len(g & c.grams) / len(g | c.grams)
            if sim >= 0.45 and (best is None or sim > best[0]):
                best = (sim, c.cid)
        cid = q.add(text, float(i))
        if best is not None:
            assert cid == best[1]
        else:
            assert cid == max(q._clusters)


def test_training_features_match_the_scorer():
    # the trainer's matrices and the shipped scorer must see the same n-grams with the same weights
    from knowcast.text.train_sentiment import Features, gram_lists

    texts = ["房间很脏，服务差，不会再来", "送餐很快 味道不错 好评好评", "味道不错，房间很脏", "好评好评好评"]
    chars, words = gram_lists(texts)
    feats = Features(min_df=2).fit(chars, words)
    Xs, Xb = feats.transform(chars, words)
    rng = np.random.default_rng(0)
    n = len(feats.vocab_)
    ct, cb = rng.normal(size=(n, 1)), rng.normal(size=(n, 1))
    model = SentimentModel(feats.vocab_, np.asarray(feats.family_), feats.idf_, ct, cb, [0.3])
    for i, t in enumerate(texts):
        expected = float((Xs[i] @ ct[:, 0] + Xb[i] @ cb[:, 0])[0]) + 0.3
        assert model.logit(t, slang=False, shrink=False) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize(
    "text",
    ["这个课多少钱？😂", "老师 [emot:dy105] 有回放吗", "???", "what is this 👍", "哈哈哈哈哈", "", "請問"],
)
def test_is_question_on_normalized_text_gives_the_same_answer(text):
    from knowcast.text.normalize import normalize

    assert is_question(normalize(text), normalized=True) == is_question(text)
