"""Keywords, categories, topics, embeddings, similar items and transcripts on small real-looking data."""

from __future__ import annotations

import numpy as np
import pytest

from knowcast.content.embeddings import TfidfSvdEmbedder, neighbour_agreement
from knowcast.content.similar import SimilarItems
from knowcast.content.tagging import CategoryClassifier, KeywordExtractor, KeywordTaxonomyTagger, textrank
from knowcast.content.text import item_document, parse_tag_list, tokenize_many
from knowcast.content.topics import TopicModel
from knowcast.content.transcripts import parse_transcript, transcript_text

FOOD = ["今天做红烧肉 家常菜教程", "麻辣火锅的做法 美食分享", "红烧排骨 家常菜 美食", "蛋糕烘焙教程 甜品美食"]
MONEY = ["基金定投入门 理财课程", "股票投资技巧 理财知识", "理财规划 基金 收益", "如何存钱理财 投资入门"]
DOCS = FOOD * 3 + MONEY * 3
LABELS = ["美食"] * 12 + ["财经"] * 12


def test_item_document_and_tags():
    assert parse_tag_list("[五爱市场,搞笑]") == ["五爱市场", "搞笑"]
    assert parse_tag_list(["a", " ", "b"]) == ["a", "b"]
    doc = item_document("标题", "UNKNOWN", "[美食, 教程]", "封面")
    assert doc == "标题 封面 #美食# #教程#"
    toks = tokenize_many([doc])[0]
    assert "#美食" in toks and "#教程" in toks
    with pytest.raises(TypeError, match="row 1"):
        tokenize_many(["ok", 3])  # type: ignore[list-item]


def test_keywords_tfidf_and_textrank():
    kx = KeywordExtractor(top_k=3).fit(DOCS)
    kw = kx.transform(["红烧肉 家常菜 红烧肉"])[0]
    assert kw[0][0] == "红烧肉"
    assert all(s > 0 for _, s in kw)
    tr = textrank(["a", "b", "c", "a", "b", "a"])
    assert max(tr, key=tr.get) == "a"
    kt = KeywordExtractor(method="textrank", top_k=2).fit(DOCS).transform([MONEY[0]])[0]
    assert len(kt) == 2
    with pytest.raises(RuntimeError, match="not fitted"):
        KeywordExtractor().transform(["x"])


def test_category_classifier_and_taxonomy():
    clf = CategoryClassifier(min_df=1).fit(DOCS, LABELS)
    assert list(clf.predict(["红烧鱼 家常菜做法", "基金理财 投资"])) == ["美食", "财经"]
    top = clf.predict_top(["理财"], k=2)[0]
    assert top[0][0] == "财经" and abs(sum(p for _, p in top) - 1) < 1e-6
    with pytest.raises(ValueError, match="row 1"):
        CategoryClassifier().fit(["a", "b"], ["x", ""])
    tax = KeywordTaxonomyTagger({"美食": ["美食", "火锅"], "财经": ["理财", "基金"]}, default="其他").fit()
    assert tax.predict(["火锅真好吃", "基金怎么买", "今天天气"]) == ["美食", "财经", "其他"]


def test_topics_pick_k_by_coherence():
    toks = tokenize_many(DOCS * 2)
    tm = TopicModel(candidates=(2, 3, 4), min_df=2, max_df=0.6).fit(toks)
    assert tm.n_topics_ in (2, 3, 4)
    assert set(tm.coherence_by_k_) == {2, 3, 4}
    assert tm.coherence_ == pytest.approx(max(tm.coherence_by_k_.values()), abs=1e-4)
    mix = tm.transform(toks[:2])
    assert mix.shape == (2, tm.n_topics_)
    assert np.allclose(mix.sum(axis=1), 1.0)


def test_embedding_neighbours_agree_with_labels_and_similar_items():
    emb = TfidfSvdEmbedder(dim=8, min_df=1).fit(DOCS)
    x = emb.transform(DOCS)
    assert x.shape == (24, 8)
    assert np.allclose(np.linalg.norm(x, axis=1), 1.0)
    assert neighbour_agreement(x, LABELS, k=5) > 0.9
    sim = SimilarItems().fit(list(range(24)), {"text": x, "one": np.ones((24, 1))})
    res = sim.similar_items(0, n=5)
    assert len(res) == 5 and 0 not in [i for i, _ in res]
    assert all(LABELS[i] == "美食" for i, _ in res)
    only = sim.similar_items(0, n=3, candidates=[20, 21])
    assert [i for i, _ in only] in ([20, 21], [21, 20])
    with pytest.raises(KeyError):
        sim.similar_items("nope")


def test_transcripts_srt_vtt_and_errors():
    srt = "1\n00:00:01,000 --> 00:00:02,500\n大家好\n\n2\n00:00:03,000 --> 00:00:04,000\n<i>今天讲理财</i>\n"
    cues = parse_transcript(srt)
    assert [c.start_s for c in cues] == [1.0, 3.0] and cues[1].text == "今天讲理财"
    vtt = "WEBVTT\n\n00:01.000 --> 00:02.000\nhello\n\n00:02.500 --> 00:03.000\nworld\n"
    assert transcript_text(parse_transcript(vtt)) == "hello world"
    with pytest.raises(ValueError, match="line 2"):
        parse_transcript("1\n00:00:0x,000 --> 00:00:02,000\nbad\n")
    with pytest.raises(ValueError, match="before it starts"):
        parse_transcript("1\n00:00:05,000 --> 00:00:02,000\nbad\n")
