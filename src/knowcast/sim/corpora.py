"""Real text for the simulator: course titles, short-video captions and comments.

The simulated platform borrows its words from the public corpora in ``shared/data`` so that titles, captions
and comments look like the real thing (text analysis, moderation and search are then exercised on real
language). Everything here falls back to a small built-in list when the shared data is absent, so
``simulate_platform`` works in any checkout; :attr:`Corpora.source` says which one was used.

Titles are sorted into the simulator's knowledge topics by keyword rules (English and Chinese) and, for
KuaiRec captions, by their manual category, so a creator's topic drives the words of its items.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

import pandas as pd

from knowcast.paths import shared_data_dir

#: The knowledge topics of the simulated platform, with a Chinese label used in creator names and tags.
TOPICS: tuple[str, ...] = (
    "programming",
    "data_ai",
    "finance",
    "business",
    "design",
    "music",
    "language",
    "health",
    "psychology",
    "science",
    "humanities",
    "parenting",
)
TOPIC_LABELS_ZH: dict[str, str] = {
    "programming": "编程",
    "data_ai": "数据智能",
    "finance": "理财",
    "business": "商业",
    "design": "设计",
    "music": "音乐",
    "language": "外语",
    "health": "健康",
    "psychology": "心理",
    "science": "科学",
    "humanities": "人文",
    "parenting": "育儿",
}

# Keyword rules: the first topic whose pattern matches a title wins (order matters: data before programming).
_TOPIC_RULES: tuple[tuple[str, str, str], ...] = (
    # (topic, English word prefixes matched at a word start, Chinese substrings)
    (
        "data_ai",
        r"data|machine learning|deep learning|ai\b|artificial intel|analytics|statistic|tensorflow|neural",
        r"数据|人工智能|机器学习|深度学习|统计|智能",
    ),
    (
        "programming",
        r"python|java|javascript|web|html|css|php|coding|programming|developer|software|app\b|"
        r"android|ios\b|react|angular|sql|wordpress|jquery|node\.?js|ruby|c\+\+|cloud|cyber|computer",
        r"程序|编程|计算机|软件|算法|数据结构|网络|操作系统|编译",
    ),
    (
        "finance",
        r"financ|invest|stock|trading|forex|accounting|bitcoin|crypto|tax\b|money|economic",
        r"金融|经济|会计|投资|财务|证券|税|理财|股",
    ),
    (
        "business",
        r"business|management|marketing|entrepreneur|leadership|sales\b|excel\b|strateg|"
        r"negotiat|brand",
        r"管理|营销|商业|创业|市场|企业|领导",
    ),
    (
        "design",
        r"design|photoshop|illustrator|graphic|logo\b|ui\b|drawing|painting|photograph|animation",
        r"设计|艺术|美术|绘画|书法|摄影|建筑",
    ),
    ("music", r"guitar|piano|music|drum|singing|violin|ukulele|chord|jazz", r"音乐|乐器|声乐|钢琴|唱歌"),
    (
        "language",
        r"english|spanish|chinese language|french|german|japanese|language|writing|grammar",
        r"英语|法语|德语|日语|语言|写作|文学|汉语|语音|翻译",
    ),
    (
        "health",
        r"health|medic|nutrition|fitness|yoga|clinical|disease|workout",
        r"医学|健康|营养|护理|健身|"
        r"体育|临床|疾病|中药|养生",
    ),
    ("psychology", r"psycholog|happiness|philosoph|well-being|mental health|mindful", r"心理|哲学|情绪|幸福"),
    (
        "science",
        r"physics|chemistry|biology|math|calculus|engineering|astronom|climate|genom",
        r"物理|化学|"
        r"生物|数学|工程|力学|天文|地理|材料|电路",
    ),
    (
        "humanities",
        r"history|law\b|legal|politic|culture|society|religio|ancient",
        r"历史|法律|法学|政治|文化|"
        r"社会|思想|考古",
    ),
    (
        "parenting",
        r"parent|child|kids?\b|family|teaching|education",
        r"育儿|儿童|家庭|教育|教学|幼儿|亲子|宝宝",
    ),
)
_UDEMY_SUBJECT_TOPIC = {
    "Web Development": "programming",
    "Business Finance": "finance",
    "Musical Instruments": "music",
    "Graphic Design": "design",
}
# KuaiRec first/second-level category names that fit a knowledge topic (captions for promo videos).
_KUAIREC_CATEGORY_TOPIC = {
    "高新数码": "programming",
    "游戏": "programming",
    "科学": "data_ai",
    "财经": "finance",
    "房产家居": "finance",
    "营销售卖": "business",
    "职业生活": "business",
    "汽车": "business",
    "艺术": "design",
    "摄影": "design",
    "美妆": "design",
    "音乐": "music",
    "读书": "language",
    "文学赏析": "language",
    "健康": "health",
    "健身": "health",
    "运动": "health",
    "美食": "health",
    "情感": "psychology",
    "星座命理": "psychology",
    "科学与法律": "science",
    "三农": "science",
    "人文": "humanities",
    "时政资讯": "humanities",
    "军事": "humanities",
    "旅游": "humanities",
    "亲子": "parenting",
    "教育": "parenting",
    "学业教育": "parenting",
}

_FALLBACK_TITLES = {
    "programming": ["Python 从入门到实战", "Complete Web Developer Bootcamp", "JavaScript 核心原理"],
    "data_ai": ["机器学习实战 30 讲", "Data Science with Python", "深度学习入门"],
    "finance": ["普通人的理财课", "Stock Trading Fundamentals", "财务报表分析"],
    "business": ["从零开始做品牌", "Project Management Essentials", "市场营销学"],
    "design": ["Photoshop 设计入门", "Graphic Design Masterclass", "手绘插画课"],
    "music": ["零基础学吉他", "Piano for Beginners", "声乐发声训练"],
    "language": ["英语口语 30 天", "Spanish for Travelers", "写作训练营"],
    "health": ["科学健身指南", "Nutrition and Health", "睡眠医学"],
    "psychology": ["心理学与生活", "The Science of Well-Being", "情绪管理课"],
    "science": ["大学物理", "Introduction to Calculus", "生物学的奥秘"],
    "humanities": ["中国历史二十讲", "Introduction to Law", "西方文化导论"],
    "parenting": ["科学育儿课", "Teaching Kids to Code", "儿童心理与教育"],
}
_FALLBACK_CAPTIONS = [
    "三分钟讲清楚一个知识点",
    "干货分享，记得收藏",
    "今天聊聊这个问题",
    "新手必看的技巧",
    "Quick tip you need to know # learning",
    "坚持学习的第 30 天",
]
_FALLBACK_DANMAKU = ["哈哈哈哈", "学到了", "666", "讲得太好了", "前排", "收藏了", "没听懂", "老师好"]
_FALLBACK_LIVECHAT = [
    "主播好",
    "666666",
    "来了来了",
    "怎么买",
    "有回放吗",
    "哈哈哈",
    "这个课多少钱",
    "讲得清楚",
]
_FALLBACK_REVIEWS = [
    (1, "很好，很实用"),
    (1, "老师讲得很清楚"),
    (0, "太贵了，不值"),
    (0, "内容太水了"),
    (1, "物超所值"),
    (0, "听不懂，失望"),
]


def topic_of(text: str) -> str | None:
    """The first knowledge topic whose keyword rule matches ``text`` (case-insensitive), or None."""
    low = text.lower()
    for topic, pattern in _TOPIC_RULES_COMPILED:
        if pattern.search(low):
            return topic
    return None


_TOPIC_RULES_COMPILED = tuple((t, re.compile(rf"\b(?:{en})|{zh}")) for t, en, zh in _TOPIC_RULES)


@dataclass(frozen=True)
class Corpora:
    """Text pools the simulator draws from.

    ``course_titles`` maps a topic to a DataFrame with columns title, price_usd (NaN if unknown), hours
    (NaN if unknown), level, org, origin. ``captions`` maps a topic to a DataFrame with caption, cover,
    hashtags (list[str]), origin. Comments: ``danmaku`` and ``livechat`` (lists of str) and ``reviews``
    (DataFrame label, review).
    """

    source: str
    course_titles: dict[str, pd.DataFrame]
    captions: dict[str, pd.DataFrame]
    danmaku: list[str]
    livechat: list[str]
    reviews: pd.DataFrame
    counts: dict[str, int] = field(default_factory=dict)


def _parse_hashtags(raw: object) -> list[str]:
    if not isinstance(raw, str) or len(raw) <= 2:
        return []
    tags = [t.strip() for t in raw.strip("[]").split(",") if t.strip()]
    # drop the platform's "please promote me" boilerplate tags, which say nothing about the content
    return [t for t in tags if "热门" not in t and "快手" not in t and len(t) <= 12][:3]


def _load_courses(base) -> pd.DataFrame:
    frames = []
    p = base / "courses" / "udemy_courses.csv"
    if p.exists():
        u = pd.read_csv(p).drop_duplicates("course_id")
        u = u[u["is_paid"].astype(str) == "True"]
        topic = [
            topic_of(t) or _UDEMY_SUBJECT_TOPIC.get(s)
            for t, s in zip(u["course_title"], u["subject"], strict=True)
        ]
        frames.append(
            pd.DataFrame(
                {
                    "title": u["course_title"].astype(str),
                    "price_usd": u["price"].astype(float),
                    "hours": u["content_duration"].astype(float),
                    "level": u["level"],
                    "org": "",
                    "origin": "udemy",
                    "topic": topic,
                }
            )
        )
    p = base / "courses" / "coursera_courses.csv"
    if p.exists():
        c = pd.read_csv(p)
        frames.append(
            pd.DataFrame(
                {
                    "title": c["course_title"].astype(str),
                    "price_usd": float("nan"),
                    "hours": float("nan"),
                    "level": c["course_difficulty"],
                    "org": c["course_organization"],
                    "origin": "coursera",
                    "topic": [topic_of(t) for t in c["course_title"].astype(str)],
                }
            )
        )
    p = base / "courses" / "icourse163_mooc_courses.csv"
    if p.exists():
        m = pd.read_csv(p)
        frames.append(
            pd.DataFrame(
                {
                    "title": m["course_name"].astype(str),
                    "price_usd": float("nan"),
                    "hours": float("nan"),
                    "level": "",
                    "org": m["school_name"],
                    "origin": "icourse163",
                    "topic": [topic_of(t) for t in m["course_name"].astype(str)],
                }
            )
        )
    if not frames:
        return pd.DataFrame(columns=["title", "price_usd", "hours", "level", "org", "origin", "topic"])
    out = pd.concat(frames, ignore_index=True)
    return out[out["topic"].notna()].reset_index(drop=True)


def _load_captions(base) -> pd.DataFrame:
    rows = []
    p = base / "kuairec" / "kuairec_caption_category.csv"
    if p.exists():
        k = pd.read_csv(p, keep_default_na=False)
        for cap, cover, tags, c1, c2 in zip(
            k["caption"],
            k["manual_cover_text"],
            k["topic_tag"],
            k["first_level_category_name"],
            k["second_level_category_name"],
            strict=True,
        ):
            topic = _KUAIREC_CATEGORY_TOPIC.get(c2) or _KUAIREC_CATEGORY_TOPIC.get(c1)
            cap = str(cap).strip()
            if topic is None or not cap or len(cap) > 80 or cap.startswith("#") or "热门" in cap:
                continue
            rows.append(
                (cap, "" if cover == "UNKNOWN" else str(cover), _parse_hashtags(tags), "kuairec", topic)
            )
    p = base / "microlens" / "MicroLens-50k_titles.csv"
    if p.exists():
        m = pd.read_csv(p, keep_default_na=False)
        for title in m["title"].astype(str):
            if len(title) > 120 or title.startswith("#"):
                continue
            topic = topic_of(title)
            if topic is None:
                continue
            tags = [t.strip() for t in title.split("#")[1:] if t.strip()][:3]
            rows.append((title, "", tags, "microlens", topic))
    return pd.DataFrame(rows, columns=["caption", "cover", "hashtags", "origin", "topic"])


def _load_comments(base) -> tuple[list[str], list[str], pd.DataFrame]:
    danmaku: list[str] = []
    p = base / "danmaku" / "bilibili_av80976236.csv"
    if p.exists():
        d = pd.read_csv(p, keep_default_na=False)
        d = d[(d["mode"] != 7) & (d["text"].str.len().between(1, 60))]
        danmaku = d["text"].astype(str).tolist()
    livechat: list[str] = []
    p = base / "livechat" / "douyu_rooms_2018.csv"
    if p.exists():
        lc = pd.read_csv(p, keep_default_na=False)
        livechat = [t for t in lc["text"].astype(str) if 0 < len(t.strip()) <= 50]
    frames = []
    for name in ("waimai_10k.csv", "ChnSentiCorp_htl_all.csv"):
        p = base / "sentiment" / name
        if p.exists():
            r = pd.read_csv(p, keep_default_na=False)
            r = r[r["review"].astype(str).str.len().between(4, 60)]
            frames.append(r[["label", "review"]].astype({"label": int, "review": str}))
    reviews = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["label", "review"])
    return danmaku, livechat, reviews


def _fallback_courses() -> pd.DataFrame:
    rows = [
        (t, float("nan"), float("nan"), "", "", "builtin", topic)
        for topic, titles in _FALLBACK_TITLES.items()
        for t in titles
    ]
    return pd.DataFrame(rows, columns=["title", "price_usd", "hours", "level", "org", "origin", "topic"])


@lru_cache(maxsize=2)
def load_corpora(use_shared: bool = True) -> Corpora:
    """Load (once per process) the text pools, from shared/data when present, else the built-in lists."""
    base = shared_data_dir() if use_shared else None
    courses = caps = None
    danmaku: list[str] = []
    livechat: list[str] = []
    reviews = pd.DataFrame(columns=["label", "review"])
    if base is not None:
        courses = _load_courses(base)
        caps = _load_captions(base)
        danmaku, livechat, reviews = _load_comments(base)
    used_shared = courses is not None and len(courses) > 0
    if courses is None or len(courses) == 0:
        courses = _fallback_courses()
    if caps is None or len(caps) == 0:
        caps = pd.DataFrame(
            [(c, "", [], "builtin", t) for t in TOPICS for c in _FALLBACK_CAPTIONS],
            columns=["caption", "cover", "hashtags", "origin", "topic"],
        )
    danmaku = danmaku or list(_FALLBACK_DANMAKU)
    livechat = livechat or list(_FALLBACK_LIVECHAT)
    if len(reviews) == 0:
        reviews = pd.DataFrame(_FALLBACK_REVIEWS, columns=["label", "review"])
    course_titles = {}
    captions = {}
    for t in TOPICS:
        ct = courses[courses["topic"] == t].reset_index(drop=True)
        course_titles[t] = ct if len(ct) else _fallback_courses().query("topic == @t").reset_index(drop=True)
        cp = caps[caps["topic"] == t].reset_index(drop=True)
        captions[t] = (
            cp if len(cp) else caps.sample(min(len(caps), 20), random_state=0).reset_index(drop=True)
        )
    counts = {
        "course_titles": int(len(courses)),
        "captions": int(len(caps)),
        "danmaku": len(danmaku),
        "livechat": len(livechat),
        "reviews": int(len(reviews)),
    }
    return Corpora(
        "shared" if used_shared else "builtin", course_titles, captions, danmaku, livechat, reviews, counts
    )
