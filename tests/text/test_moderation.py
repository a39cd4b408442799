"""Moderation: lexicon hits, evasions, allow lists, contact spam, flood control, bad input."""

from __future__ import annotations

import pytest

from knowcast.text.moderation import (
    FloodGuard,
    Moderator,
    category_codes,
    flood_key,
    self_repetition,
    skeleton,
)

try:
    from knowcast.paths import shared_data

    shared_data("lexicons", "words_zh.txt")
    HAVE_LEXICON = True
except FileNotFoundError:
    HAVE_LEXICON = False

needs_lexicon = pytest.mark.skipif(not HAVE_LEXICON, reason="shared/data/lexicons not present")


def test_skeleton_drops_separators():
    assert skeleton("微 信") == "微信"
    assert skeleton("v❤x") == "vx"
    assert skeleton("薇*信") == "薇信"
    assert skeleton("機\u2063巴") == "机巴"


def test_category_codes_from_source_md():
    md = "`word,categories`; categories `;`-separated: 0 politics, 1 drugs, 2 porn, 3 gambling, 4 illegal"
    assert category_codes(md) == {"0": "politics", "1": "drugs", "2": "porn", "3": "gambling", "4": "illegal"}
    assert category_codes(None)["3"] == "gambling"


@needs_lexicon
@pytest.mark.parametrize("text", ["微 信", "v❤x", "薇*信", "加微"])
def test_contact_cues_are_reviewed(mod, text):
    v = mod.moderate(text)
    assert v.action == "review" and v.category == "ads"
    assert v.span == (0, len(text))


@needs_lexicon
@pytest.mark.parametrize(
    "text,digits",
    [
        ("加V 一三八一二三四五六七八", "13812345678"),
        ("我的电话13812345678", "13812345678"),
        ("手机 138 1234 5678", "13812345678"),
        ("手机幺三八幺二三四五六七八", "13812345678"),
    ],
)
def test_phone_numbers_blocked(mod, text, digits):
    v = mod.moderate(text)
    assert v.action == "block" and v.category == "ads" and v.matched == digits


@needs_lexicon
def test_cue_plus_id_blocked(mod):
    v = mod.moderate("加v：abc12345")
    assert v.action == "block" and v.matched == "加vabc12345" and v.span == (0, 11)
    assert mod.moderate("扣扣 12345678").action == "block"


@needs_lexicon
@pytest.mark.parametrize(
    "text", ["法輪功", "fa lun gong", "F A L U N G O N G", "傻 逼", "傻\u200b逼", "冰-毒"]
)
def test_evasions_caught(mod, text):
    assert mod.moderate(text).flagged


@needs_lexicon
def test_homophone_reviewed_with_reason(mod):
    v = mod.moderate("法仑功")
    assert v.flagged and v.span == (0, 3)


@needs_lexicon
def test_category_and_span(mod):
    v = mod.moderate("买点冰毒吗")
    assert v.action == "block" and v.category == "drugs" and v.span == (2, 4) and v.matched == "冰毒"
    assert "drugs" in v.reason


@needs_lexicon
@pytest.mark.parametrize(
    "text", ["共和国万岁", "情人节快乐", "配不上你", "新的生活好", "usb接口", "幸运儿", "坐火车回家"]
)
def test_known_false_positives_pass(mod, text):
    assert mod.moderate(text).action == "pass", mod.moderate(text)


@needs_lexicon
def test_room_lists(mod):
    v = mod.moderate("这就是割韭菜")
    assert v.action == "block" and v.category == "room" and v.span == (3, 6)
    assert mod.moderate("冰毒检测").action == "pass"  # the room's allow list wins over the lexicon


def test_room_lists_without_lexicon():
    m = Moderator(use_lexicon=False, block_words=["割韭菜"], pinyin=False)
    assert m.moderate("割 韭 菜").action == "block"
    assert m.moderate("微信 13812345678").action == "block"
    assert m.moderate("你好").action == "pass"


@needs_lexicon
def test_url_reviewed(mod):
    assert mod.moderate("看www.example.com").category == "ads"
    assert mod.moderate("访问 abc点com").flagged


@needs_lexicon
@pytest.mark.parametrize("text", ["", "😂😂😂", b"\xff\xfe\xfd", "好" * 10_000, "[emot:dy105]"])
def test_bad_input_passes_quietly(mod, text):
    assert mod.moderate(text).action == "pass"


@needs_lexicon
def test_long_comment_with_hit_at_end(mod):
    v = mod.moderate("好" * 10_000 + "冰毒")
    assert v.action == "block" and v.span == (10_000, 10_002)


def test_wrong_type_is_a_type_error():
    m = Moderator(use_lexicon=False, pinyin=False)
    with pytest.raises(TypeError):
        m.moderate(123)  # type: ignore[arg-type]


def test_flood_same_user():
    g = FloodGuard(window_s=10, max_same_user=2)
    acts = [g.check("来了来了", "u1", t).action for t in range(4)]
    assert acts == ["pass", "pass", "block", "block"]
    assert g.check("来了来了", "u1", 100).action == "pass"  # window expired


def test_flood_near_duplicates_from_many_users():
    g = FloodGuard(window_s=30, max_same_text_users=3)
    texts = [
        "打倒恶俗！人在做天在看nddm",
        "打倒恶俗！人在做天在看dbdn",
        "打倒恶俗人在做天在看。",
        "打倒恶俗！人在做天在看x",
    ]
    acts = [g.check(t, f"u{i}", i).action for i, t in enumerate(texts)]
    assert acts[:3] == ["pass", "pass", "pass"] and acts[3] == "review"
    assert flood_key(texts[0]) == flood_key(texts[1])


def test_flood_rate_and_self_repeat():
    g = FloodGuard(window_s=10, max_rate=3)
    texts = ["老师讲得好", "价格多少", "怎么报名", "有回放吗", "几点开始"]
    acts = [g.check(t, "u1", i * 0.1).action for i, t in enumerate(texts)]
    assert acts[3] == "review" and "comments" in g.check("又一条", "u1", 1).reason
    assert self_repetition("抵制触手平台，从我做起！" * 8) >= 8
    assert FloodGuard().check("抵制触手平台，从我做起！" * 8, "u9", 0).action == "review"


@needs_lexicon
def test_verdict_cache_returns_the_uncached_verdict(mod):
    texts = ["加V 一三八一二三四五六七八", "fa lun gong", "共和国万岁", "主播讲得真好", "v❤x", "傻\u200b逼",
             "点击 www.example.com 领取", "法仑功", "a" * 600]  # fmt: skip
    for t in texts:
        fresh = mod._moderate(t)
        assert mod.moderate(t) == fresh  # first call fills the cache
        assert mod.moderate(t) == fresh  # second call reads it
    mod.cache_clear()
    nocache = Moderator(cache_size=0, block_words=["割韭菜"], allow_words=["冰毒检测"])
    assert [nocache.moderate(t) for t in texts] == [mod.moderate(t) for t in texts]
    with pytest.raises(ValueError, match="cache_size"):
        Moderator(use_lexicon=False, cache_size=-1)


@needs_lexicon
@pytest.mark.parametrize(
    "text", ["电话 1 3 8 1 2 3 4 5 6 7 8", "看 abc.top 网站", "https://x.cn/a", "幺三八幺二三四五六七八"]
)
def test_contact_gate_does_not_hide_contacts(mod, text):
    # the digit-pair / link-cue gate sits in the lexicon pass; these must still reach the contact checks
    assert mod.moderate(text).category == "ads"


def test_flood_features_match_the_definitions():
    import re

    for t in ["打倒恶俗！打倒恶俗！打倒恶俗！打倒恶俗！nddm", "哈哈", "lbwnb lbwnb lbwnb lbwnb lbwnb", ""]:
        sk = skeleton(t)
        han = re.sub(r"[^\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]", "", sk)
        assert flood_key(t) == (han[:40] if len(han) >= 4 else sk[:40])
        m = re.search(r"(.{4,40}?)\1+", sk) if len(sk) >= 8 else None
        assert self_repetition(t) == (len(m.group(0)) // len(m.group(1)) if m else 1)
    assert self_repetition("abcabcabcabc", min_unit=3) == 4
