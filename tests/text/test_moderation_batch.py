"""Batch moderation (``Moderator.moderate_many``) gives exactly the verdicts of ``moderate`` one by one: on
the real danmaku and Douyu chat, on the evasion evaluation set of benchmarks/live.py, and on odd input."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import numpy as np
import pytest

from knowcast.text.moderation import Moderator, pinyin_table
from knowcast.text.moderation_batch import NgramSet, window_values

try:
    from knowcast.paths import shared_data

    DANMAKU = shared_data("danmaku", "bilibili_av80976236.csv")
    CHAT = shared_data("livechat", "douyu_rooms_2018.csv")
    shared_data("lexicons", "words_zh.txt")
    HAVE_DATA = True
except FileNotFoundError:
    HAVE_DATA = False

needs_data = pytest.mark.skipif(not HAVE_DATA, reason="shared/data (lexicons, danmaku, livechat) not present")


def _same(mod: Moderator, texts: list[str]) -> None:
    mod.cache_clear()
    one = [mod.moderate(t) for t in texts]
    mod.cache_clear()
    many = mod.moderate_many(texts)
    bad = [(t, a, b) for t, a, b in zip(texts, one, many, strict=True) if a != b]
    assert not bad, bad[:3]
    assert len(many) == len(texts)


@needs_data
def test_same_verdicts_on_real_danmaku(mod):
    from knowcast.live.replay import read_chat_log

    texts = [r.text for r in read_chat_log(DANMAKU)]
    _same(mod, texts)
    flagged = sum(v.flagged for v in mod.moderate_many(texts))
    assert flagged > 300  # the file holds raid spam and insults: the batch path really flags


@needs_data
def test_same_verdicts_on_real_douyu_chat(mod):
    import pandas as pd

    texts = pd.read_csv(CHAT)["text"].fillna("").astype(str).tolist()[:20000]
    _same(mod, texts)


@needs_data
def test_same_verdicts_on_the_evasion_set(mod):
    """The evasions of benchmarks/live.py (spacing, symbols, zero-width, traditional, pinyin, homophones),
    each inside a real danmaku, plus the danmaku alone."""
    import opencc

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    try:
        import live as bench  # benchmarks/live.py
    finally:
        sys.path.pop(0)
    from knowcast.live.replay import read_chat_log

    rng = random.Random(11)
    ctx = [r.text for r in read_chat_log(DANMAKU)][:400]
    s2t = opencc.OpenCC("s2t").convert
    homo = bench._homophone_map()
    words = rng.sample([w for w in bench._lexicon() if len(w) >= 2], 400)
    texts = []
    for w in words:
        c = rng.choice(ctx)
        cut = rng.randint(0, len(c))
        texts += [c[:cut] + " " + ev + " " + c[cut:] for ev in bench.evasions(w, rng, s2t, homo).values()]
    _same(mod, texts + ctx)
    assert sum(v.flagged for v in mod.moderate_many(texts)) > 0.9 * len(texts)


def test_same_verdicts_on_odd_input(mod):
    texts = [
        "",
        " ",
        "微 信 abc12345",
        "加v：abc12345",
        "电话 13812345678",
        "１３８１２３４５６７８",
        "① ② ③ ④ ⑤ ⑥ ⑦ ⑧ ⑨ ⑩",  # ⑩ folds to two characters
        "½ price www.example.com",
        "法轮功",
        "fa lun gong",
        "fa轮gong",
        "割韭菜",
        "冰毒检测",
        "冰毒",
        "😀😀😀",
        "[emot:dy105]",
        "\U000e0041\U000e0042 tag characters",
        "\U00031350 extension G",
        "a" * 600,
        "打倒恶俗！" * 50,
        "\ufffftext with U+FFFF",
        "\u0400 cyrillic",
        "\x00 nul",
    ]
    texts += [f"正常评论 {i}" for i in range(40)]  # a batch large enough for the vectorised path
    _same(mod, texts)
    _same(mod, [t.encode("utf-8") for t in texts])  # type: ignore[misc]


def test_small_batches_and_repeats(mod):
    assert mod.moderate_many([]) == []
    out = mod.moderate_many(["加v：abc12345", "你好", "加v：abc12345"])
    assert out[0] == out[2] == mod.moderate("加v：abc12345")
    assert out[0].action == "block"
    assert out[1].action == "pass"


def test_moderator_without_lexicon_or_pinyin():
    m = Moderator(use_lexicon=False, block_words=["割韭菜", "坏"], pinyin=False)
    texts = ["割 韭 菜", "坏人", "你好", "加v：abc12345", "www.example.com"] * 10 + [
        str(i) for i in range(40)
    ]
    _same(m, texts)


def test_window_values_are_the_windows():
    """A window's value depends on its symbols alone, wherever it is (keys and text agree)."""
    rng = np.random.default_rng(3)
    for dtype, n in (
        (np.uint32, 1),
        (np.uint32, 2),
        (np.uint32, 5),
        (np.uint8, 3),
        (np.uint8, 8),
        (np.uint8, 14),
    ):
        sym = np.concatenate([rng.integers(1, 40, 200).astype(dtype), np.zeros(32, dtype)])
        v = window_values(sym, n)
        pos = np.arange(150)
        assert np.array_equal(window_values(sym, n, pos), v[:150])
        for i in range(0, 150, 7):
            j = int(
                np.flatnonzero((np.lib.stride_tricks.sliding_window_view(sym, n) == sym[i : i + n]).all(1))[0]
            )
            assert v[i] == v[j]


def test_ngram_set_never_misses():
    keys = [np.array([5, 6, 7, 8, 9], np.uint32), np.array([3, 4], np.uint32), np.array([11], np.uint32)]
    s = NgramSet(keys, (1, 2, 3, 4), np.uint32, 2)
    text = np.array([1, 2, 5, 6, 7, 8, 9, 1, 3, 4, 2, 11, 2] + [0] * 32, np.uint32)
    hits = set(s.hit_positions(text).tolist())
    assert {2, 8, 11} <= hits


def test_pinyin_table_is_used_by_the_gate(mod):
    if not pinyin_table():
        pytest.skip("pypinyin has no table")
    texts = ["今天 fa lun gong 了", "今天天气不错哈哈哈"] * 20
    out = mod.moderate_many(texts)
    assert out[0].flagged and out[0] == mod.moderate(texts[0])
    assert out[1].action == "pass"
