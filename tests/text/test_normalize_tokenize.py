"""Normalisation and tokenisation: the shared front door of every text feature."""

from __future__ import annotations

import pytest

from knowcast.paths import shared_data_dir
from knowcast.text.normalize import collapse_repeats, fold, is_emoji_only, normalize, to_text
from knowcast.text.tokenize import load_stopwords, tokenize


def test_traditional_fullwidth_case_repeats():
    assert normalize("這個課程ＶＥＲＹ好！！！！哈哈哈哈哈") == "这个课程very好!!!哈哈哈"


def test_phrase_level_t2s():
    assert normalize("我不瞭解") == "我不了解"


def test_zero_width_removed_and_spaces_collapsed():
    assert normalize("微\u200b信\ufeff  号 ") == "微信 号"


def test_emoji_modes():
    assert normalize("好😂😂") == "好😂😂"
    assert normalize("好😂😂", emoji="remove") == "好"
    assert normalize("好😂", emoji="tag") == "好 <emoji>"
    assert normalize("[emot:dy105]厉害", emoji="remove") == "厉害"
    with pytest.raises(ValueError, match="emoji"):
        normalize("x", emoji="drop")  # type: ignore[arg-type]


def test_emoji_only_and_empty():
    assert is_emoji_only("😂😂 !")
    assert not is_emoji_only("好😂")
    assert normalize("") == ""
    assert normalize(None) == ""  # type: ignore[arg-type]


def test_invalid_utf8_bytes_are_decoded_not_fatal():
    assert normalize(b"\xff\xfe\xe5\xa5\xbdabc") == "好abc"
    with pytest.raises(TypeError, match="text must be str or bytes"):
        to_text(123)  # type: ignore[arg-type]


def test_circled_digits_and_collapse():
    assert fold("①②③") == "123"
    assert collapse_repeats("66666666", 3) == "666"
    with pytest.raises(ValueError):
        collapse_repeats("x", 0)


def test_long_input():
    s = normalize("好" * 10_000)
    assert s == "好好好"
    assert len(normalize("ab" * 5_000)) == 10_000


def test_tokenize_mixed_language_and_hashtags():
    toks = tokenize("這門Python課程真的很好 #知识付费# #study")
    assert toks == ["这门", "python", "课程", "真的", "#知识付费", "#study"]


NO_DATA = pytest.mark.skipif(shared_data_dir() is None, reason="shared/data (stop-word lists) not present")


@NO_DATA
def test_domain_words_kept_whole():
    assert tokenize("知识付费直播间今天有福利") == ["知识付费", "直播间", "福利"]


def test_english_tokens_and_stopwords():
    assert tokenize("I don't like C++ and C# courses", stopwords=False) == [
        "i",
        "don't",
        "like",
        "c++",
        "and",
        "c#",
        "courses",
    ]
    assert "the" not in tokenize("the course", stopwords=True)
    assert tokenize("a b", stopwords={"a"}) == ["b"]


@NO_DATA
def test_stopwords_loaded():
    sw = load_stopwords()
    assert "的" in sw and "the" in sw and len(sw) > 1000


def test_tokenize_bad_and_empty_input():
    assert tokenize("") == []
    assert tokenize("😂😂") == []
    assert tokenize(b"\xff\xfe") == []
    assert tokenize("[emot:dy105]哈哈哈哈哈哈") == ["哈哈哈"]
    assert len(tokenize("课程" * 5000)) >= 1


def test_add_words_clears_the_token_caches():
    from knowcast.text.tokenize import add_words

    text = "小鹅通深潜训练营开课"
    before = tokenize(text, stopwords=False)
    assert tokenize(text, stopwords=False) == before  # cached, same answer
    add_words(["小鹅通深潜训练营"])
    assert "小鹅通深潜训练营" in tokenize(text, stopwords=False)


def test_repeated_runs_tokenize_like_single_runs():
    once = tokenize("打倒邪恶势力", stopwords=False)
    assert tokenize("打倒邪恶势力！打倒邪恶势力！", stopwords=False) == once + once


def test_normalize_is_idempotent_through_folding_chains():
    # ㉄ folds to 問 (NFKC), which is itself traditional: one pass must reach 问
    assert normalize("㉄") == "问" and normalize("薴") == "苎"
    for s in ["㉄㊖薴", "這個課程ＶＥＲＹ好！！！！哈哈哈哈哈", "微\u200b信 ①②③ ＡＢＣ", "瞭解 乾淨😂😂"]:
        n = normalize(s)
        assert normalize(n) == n
