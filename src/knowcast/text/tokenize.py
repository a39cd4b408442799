"""Tokenising mixed Chinese/English text (comments, titles, captions, hashtags).

Why not just ``jieba.lcut``: titles and comments mix Chinese runs, English words, numbers, hashtags and emote
codes. We split the normalised text into runs with one regular expression, send only the Chinese runs to a
private ``jieba.Tokenizer`` (with a domain dictionary: 知识付费, 直播间, 训练营 ...; the global jieba
instance is left untouched for other code), keep English words with a regex word tokenizer (``c++``/``c#``
and ``don't`` stay whole), and keep hashtags (Weibo style ``#话题#`` and ``#tag``) as single tokens written
``#话题`` / ``#tag``, so both styles count as the same tag.

Stop words come from ``shared/data/lexicons/stopwords_*.txt`` (cn, HIT, Baidu lists) plus a short English
list; when the shared folder is missing a built-in fallback list is used.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Collection, Iterable
from functools import lru_cache
from pathlib import Path

from knowcast.text.normalize import EMOTE_CODE_RE, normalize

_DATA = Path(__file__).resolve().parent / "data"
USER_DICT = _DATA / "userdict.txt"

_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
TOKEN_RE = re.compile(
    rf"#([^#\s]{{1,40}})#"  # 1: #话题# (Weibo style)
    rf"|(?<![0-9a-z_{_HAN}])#([0-9a-z_{_HAN}]{{1,40}})"  # 2: #tag
    rf"|([{_HAN}]+)"  # 3: a Chinese run -> jieba
    r"|([a-z][a-z0-9]*(?:\+\+|#(?![0-9a-z_]))?(?:['’][a-z]+)*)"  # 4: English word, c++, c#, don't
    r"|(\d+(?:\.\d+)?%?)"  # 5: number
)

#: English stop words (a compact list; the Chinese lists rarely cover English).
EN_STOPWORDS: frozenset[str] = frozenset(
    """a about above after again against all am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has have having
    he her here hers herself him himself his how i if in into is it its itself just let me more most my myself
    no nor not of off on once only or other our ours ourselves out over own same she should so some such than
    that the their theirs them themselves then there these they this those through to too under until up very
    was we were what when where which while who whom why will with would you your yours yourself yourselves
    s t don't i'm it's can't won't isn't aren't didn't doesn't i've you're we're they're
    that's there's""".split()
)

#: Fallback Chinese stop words when the shared lists are absent (the most frequent function words).
ZH_FALLBACK_STOPWORDS: frozenset[str] = frozenset(
    (
        "的 了 是 在 我 有 和 就 不 人 都 一 一个 上 也 很 到 说 要 去 "
        "你 会 着 没有 看 好 自己 这 那 他 她 它 们 我们 你们 他们 这个 那个 吗 呢 "
        "吧 啊 呀 哦 嗯 哈 么 之 与 及 等 而 但 并 或 被 把 让 给 对 "
        "从 向 于 为 以 因为 所以 如果 虽然 但是 然后 还是 就是 只是 可以 这样 那样 什么 怎么 这么 "
        "那么 哪 哪里 谁 还 又 再 才 已经 啦 嘛 "
    ).split()
)

_log = logging.getLogger(__name__)
_lock = threading.Lock()
_tokenizer = None


def _jieba():
    """The private jieba tokenizer, built once (about a second: jieba loads its prefix dictionary)."""
    global _tokenizer
    if _tokenizer is None:
        with _lock:
            if _tokenizer is None:
                import jieba

                logging.getLogger("jieba").setLevel(logging.WARNING)
                jieba.setLogLevel(logging.WARNING)
                tk = jieba.Tokenizer()
                tk.initialize()
                if USER_DICT.exists():
                    tk.load_userdict(str(USER_DICT))
                _tokenizer = tk
    return _tokenizer


def add_words(words: Iterable[str]) -> None:
    """Teach the tokenizer extra domain words (course names, brand names) so jieba keeps them whole."""
    tk = _jieba()
    for w in words:
        w = normalize(w)
        if w:
            tk.add_word(w, freq=2000)
    _cut.cache_clear()
    _tokens.cache_clear()


@lru_cache(maxsize=1)
def load_stopwords() -> frozenset[str]:
    """Chinese stop words from the shared lexicons (normalised) plus English ones; fallback if absent."""
    words: set[str] = set(EN_STOPWORDS)
    try:
        from knowcast.paths import shared_data

        folder = shared_data("lexicons")
        files = sorted(folder.glob("stopwords_*.txt"))
    except FileNotFoundError:
        files = []
    if not files:
        _log.info("shared stop-word lists not found; using the built-in fallback list")
        words |= ZH_FALLBACK_STOPWORDS
    for f in files:
        for line in f.read_text(encoding="utf-8", errors="replace").splitlines():
            w = normalize(line.strip(), max_repeat=0)
            if w:
                words.add(w)
    return frozenset(words)


def tokenize(
    text: str | bytes,
    *,
    stopwords: bool | Collection[str] = True,
    normalized: bool = False,
    keep_numbers: bool = True,
) -> list[str]:
    """Split text into lower-case tokens: Chinese words (jieba), English words, numbers and hashtags.

    ``stopwords``: True removes the shared stop-word lists, a collection removes those words, False keeps
    everything. ``normalized=True`` skips :func:`~knowcast.text.normalize.normalize` when the caller already
    did it. Punctuation, emoji and emote codes never become tokens.

    >>> tokenize("這門Python課程真的很好 #知识付费# #study")
    ['这门', 'python', '课程', '真的', '#知识付费', '#study']
    """
    s = text if normalized and isinstance(text, str) else normalize(text)
    if not s:
        return []
    if "[emot:" in s:
        s = EMOTE_CODE_RE.sub(" ", s)
    if stopwords is True:
        stop: Collection[str] = load_stopwords()
    elif stopwords is False or stopwords is None:
        stop = ()
    else:
        stop = stopwords
    out = list(_tokens(s, keep_numbers))
    if stop:
        out = [t for t in out if t not in stop]
    return out


@lru_cache(maxsize=65536)
def _tokens(s: str, keep_numbers: bool) -> tuple[str, ...]:
    """Tokens of normalised text, stop words kept (cached: live chat repeats itself a lot)."""
    out: list[str] = []
    for m in TOKEN_RE.finditer(s):
        tag = m.group(1) or m.group(2)
        if tag:
            tag = tag.strip()
            if tag:
                out.append("#" + tag)
            continue
        han = m.group(3)
        if han:
            if len(han) == 1:
                out.append(han)
            else:
                out.extend(_cut(han))
            continue
        word = m.group(4)
        if word:
            out.append(word.replace("’", "'"))
            continue
        if keep_numbers and m.group(5):
            out.append(m.group(5))
    return tuple(out)


@lru_cache(maxsize=131072)
def _cut(han: str) -> tuple[str, ...]:
    """jieba's words of one Chinese run, cached by the run: live chat repeats phrases inside a comment (raid
    spam pastes one slogan ten times) and across comments that differ only in punctuation or appended
    letters, so most runs are cut once. jieba is deterministic for a fixed dictionary; :func:`add_words`
    clears this cache."""
    return tuple(w for w in _jieba().cut(han, HMM=True) if w.strip())


def remove_stopwords(tokens: list[str], stopwords: Collection[str] | None = None) -> list[str]:
    """Tokens without stop words (the shared lists by default)."""
    stop = load_stopwords() if stopwords is None else stopwords
    return [t for t in tokens if t not in stop]


__all__ = ["remove_stopwords", "EN_STOPWORDS", "USER_DICT", "add_words", "load_stopwords", "tokenize"]
