"""Corpus loading: real text when shared/data is present, built-in fallback otherwise."""

import pytest

from knowcast.paths import shared_data_dir
from knowcast.sim import SimConfig, simulate_platform
from knowcast.sim.corpora import TOPICS, load_corpora, topic_of


def test_topic_rules():
    assert topic_of("Learn Python Programming") == "programming"
    assert topic_of("机器学习实战") == "data_ai"
    assert topic_of("Piano for Beginners") == "music"
    assert topic_of("IPO Fundamentals") is None


def test_builtin_fallback_runs_everywhere():
    c = load_corpora(False)
    assert c.source == "builtin"
    assert all(len(c.course_titles[t]) and len(c.captions[t]) for t in TOPICS)
    p = simulate_platform(SimConfig(n_creators=10, n_items=120, n_users=100, days=3, use_shared_data=False))
    assert p.truth["corpus_source"] == "builtin"
    assert len(p.events) > 0


@pytest.mark.skipif(shared_data_dir() is None, reason="shared/data not present")
def test_real_text_is_used(small_platform):
    c = load_corpora(True)
    assert c.source == "shared"
    assert c.counts["course_titles"] > 1000 and c.counts["livechat"] > 10_000
    paid = small_platform.items[small_platform.items["kind"] == "course"]
    real = set()
    for t in TOPICS:
        real |= set(c.course_titles[t]["title"])
    assert paid["title"].str.replace(r"（第\d+期）$", "", regex=True).isin(real).mean() > 0.9
    live_comments = small_platform.comments[small_platform.comments["room_id"].notna()]["text"]
    pool = set(c.livechat) | set(c.reviews["review"])
    assert live_comments.isin(pool).all()
