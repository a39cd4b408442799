"""Text normalisation for Chinese/English user text (comments, titles, search queries).

Why one function: every later step (moderation, tokenising, sentiment, trending) must see "學習", "学习",
"ＡＢＣ" and "abc" as the same thing, and must not be fooled by zero-width characters people insert to dodge
filters. Doing the work once, in a fixed order, keeps all consumers consistent.

The heavy lifting is one ``str.translate`` pass over a table built once at import time (full-width →
half-width, compatibility forms via NFKC, traditional → simplified per character from OpenCC's ``t2s``
character dictionary, lower case, zero-width characters deleted). ``str.translate`` runs in C, which is what
lets the live pipeline normalise tens of thousands of comments a second. OpenCC's phrase-level rules (a few
hundred phrases such as 瞭解 → 了解) are applied afterwards only when a phrase's first character occurs.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from pathlib import Path
from typing import Literal

EmojiMode = Literal["keep", "remove", "tag"]

#: Characters with no width that people insert between letters to split a banned word ("微\u200b信").
ZERO_WIDTH: frozenset[str] = frozenset(
    "\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b\u180c\u180d\u180e"
    "\u200b\u200c\u200d\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
    "\u2060\u2061\u2062\u2063\u2064\u2066\u2067\u2068\u2069\u206a\u206b\u206c\u206d\u206e\u206f"
    "\u3164\ufeff\uffa0"
    + "".join(chr(c) for c in range(0xFE00, 0xFE10))  # variation selectors (emoji VS16 etc.)
)

#: Emoji and pictographs (a union of the Unicode blocks they live in; good enough for chat text).
EMOJI_RE = re.compile(
    "["
    "\U0001f000-\U0001faff"  # mahjong .. symbols and pictographs extended-A
    "\u2600-\u27bf"  # misc symbols, dingbats (❤ ✂ ☺)
    "\u2b00-\u2bff"  # arrows, stars
    "\u2300-\u23ff"  # misc technical (⌚ ⏰)
    "\u3030\u303d\u3297\u3299"
    "\U000e0020-\U000e007f"  # tag characters (flag sequences)
    "]+"
)
#: Douyu/Bilibili emote codes such as ``[emot:dy105]`` behave like emoji.
EMOTE_CODE_RE = re.compile(r"\[emot:[^\]\s]{1,20}\]")

_WS_RE = re.compile(r"\s+")


def _opencc_dir() -> Path | None:
    try:
        import opencc  # opencc-python-reimplemented
    except ImportError:  # pragma: no cover - it is a declared dependency
        return None
    d = Path(opencc.__file__).resolve().parent / "dictionary"
    return d if d.is_dir() else None


@lru_cache(maxsize=1)
def t2s_char_map() -> dict[str, str]:
    """Traditional → simplified per character (first candidate of OpenCC's TSCharacters.txt)."""
    d = _opencc_dir()
    out: dict[str, str] = {}
    if d is None:  # pragma: no cover
        return out
    for line in (d / "TSCharacters.txt").read_text(encoding="utf-8").splitlines():
        parts = line.split("\t")
        if len(parts) >= 2 and len(parts[0]) == 1:
            cand = parts[1].split(" ")[0]
            if len(cand) == 1 and cand != parts[0]:
                out[parts[0]] = cand
    return out


@lru_cache(maxsize=1)
def _t2s_phrases() -> tuple[dict[str, str], re.Pattern[str] | None]:
    """Phrase rules whose result differs from the per-character mapping (keys already char-mapped)."""
    d = _opencc_dir()
    if d is None:  # pragma: no cover
        return {}, None
    cmap = t2s_char_map()
    rules: dict[str, str] = {}
    for line in (d / "TSPhrases.txt").read_text(encoding="utf-8").splitlines():
        parts = line.split("\t")
        if len(parts) < 2:
            continue
        src, dst = parts[0], parts[1].split(" ")[0]
        src_s = "".join(cmap.get(c, c) for c in src)
        if src_s != dst:
            rules.setdefault(src_s, dst)
    if not rules:
        return {}, None
    pat = re.compile("|".join(re.escape(k) for k in sorted(rules, key=len, reverse=True)))
    return rules, pat


def _build_table() -> dict[int, str | None]:
    """One translation table: NFKC width/compat folding, t2s, lower case, zero-width deletion."""
    table: dict[int, str | None] = {}
    cmap = t2s_char_map()
    # Full-width ASCII, half-width katakana/hangul, ideographic space, circled/enclosed digits and letters.
    ranges = [(0xFF01, 0xFF5F), (0x3000, 0x3001), (0x2460, 0x24FF), (0x3220, 0x325F), (0x3280, 0x32BF)]
    ranges += [(0x2070, 0x209F), (0x00B2, 0x00BA), (0x1D400, 0x1D7FF), (0x2100, 0x214F), (0xFE50, 0xFE6F)]
    for lo, hi in ranges:
        for cp in range(lo, hi + 1):
            ch = chr(cp)
            folded = unicodedata.normalize("NFKC", ch)
            if folded != ch and folded.strip():
                table[cp] = folded.lower()
            elif folded != ch and not folded.strip():
                table[cp] = " "
    table[0x3000] = " "
    for cp in range(ord("A"), ord("Z") + 1):
        table[cp] = chr(cp + 32)
    for src, dst in cmap.items():
        table[ord(src)] = dst
    for ch in ZERO_WIDTH:
        table[ord(ch)] = None
    # A few compatibility forms fold to a traditional character (㉄ → 問 → 问, 薴 → 苧 → 苎): compose the
    # table with itself until nothing changes, so one pass gives the final form and normalising is
    # idempotent (the pipeline relies on normalize(normalize(x)) == normalize(x)).
    for _ in range(4):  # chains are at most two steps long; a bound guards against a cycle
        changed = False
        for cp, out in table.items():
            if out and any(ord(c) in table for c in out):
                new = "".join(table.get(ord(c), c) or "" for c in out)
                if new != out:
                    table[cp] = new
                    changed = True
        if not changed:
            break
    return table


_TABLE = _build_table()


def fold(text: str) -> str:
    """The cheap part of :func:`normalize`: width, t2s per character, lower case, zero-width removal.

    One C-speed pass; use it on hot paths (the moderator) where the rest is done differently.
    """
    return text.translate(_TABLE).lower()


def to_text(text: str | bytes, *, field: str = "text") -> str:
    """Coerce input to ``str``; bytes are decoded as UTF-8 with invalid sequences replaced (then dropped).

    Live chat arrives from many clients; one undecodable byte must not kill a room, but a wrong type is a
    programming error and gets a clear ``TypeError``.
    """
    if isinstance(text, str):
        return text
    if isinstance(text, (bytes, bytearray, memoryview)):
        return bytes(text).decode("utf-8", errors="replace").replace("\ufffd", "")
    if text is None:
        return ""
    raise TypeError(f"{field} must be str or bytes, got {type(text).__name__}")


def collapse_repeats(text: str, max_repeat: int = 3) -> str:
    """Shorten runs of one character longer than ``max_repeat`` ("哈哈哈哈哈" → "哈哈哈", "6666" → "666").

    Why: "哈哈哈" and "哈哈哈哈哈哈" are the same reaction; counting them apart splits trending words.
    """
    if max_repeat < 1:
        raise ValueError(f"max_repeat must be >= 1, got {max_repeat}")
    return _repeat_re(max_repeat).sub(lambda m: m.group(1) * max_repeat, text)


@lru_cache(maxsize=8)
def _repeat_re(n: int) -> re.Pattern[str]:
    return re.compile(r"(.)\1{" + str(n) + ",}", re.S)


def normalize(
    text: str | bytes,
    *,
    emoji: EmojiMode = "keep",
    max_repeat: int = 3,
    phrases: bool = True,
) -> str:
    """Normalise one piece of user text.

    Steps, in order: decode bytes (invalid UTF-8 dropped), Unicode width/compatibility folding (full-width →
    half-width, ① → 1), traditional → simplified, lower case, zero-width characters removed, emoji kept /
    removed / replaced by ``" <emoji> "`` (``emoji=``), runs of the same character cut to ``max_repeat``,
    whitespace collapsed to single spaces and stripped.

    >>> normalize("這個課程ＶＥＲＹ好！！！！哈哈哈哈哈")
    '这个课程very好!!!哈哈哈'
    """
    s = to_text(text)
    if not s:
        return ""
    s = s.translate(_TABLE)
    if not s.isascii():
        s = s.lower()  # Greek/Cyrillic etc.; ASCII already lowered by the table
        if phrases:
            rules, pat = _t2s_phrases()
            if pat is not None:
                s = pat.sub(lambda m: rules[m.group(0)], s)
        if emoji == "remove":
            s = EMOTE_CODE_RE.sub(" ", EMOJI_RE.sub(" ", s))
        elif emoji == "tag":
            s = EMOTE_CODE_RE.sub(" <emoji> ", EMOJI_RE.sub(" <emoji> ", s))
        elif emoji != "keep":
            raise ValueError(f"emoji must be 'keep', 'remove' or 'tag', got {emoji!r}")
    elif emoji in ("remove", "tag"):
        s = EMOTE_CODE_RE.sub(" " if emoji == "remove" else " <emoji> ", s)
    elif emoji != "keep":
        raise ValueError(f"emoji must be 'keep', 'remove' or 'tag', got {emoji!r}")
    if max_repeat:
        s = collapse_repeats(s, max_repeat)
    return _WS_RE.sub(" ", s).strip()


def is_emoji_only(text: str) -> bool:
    """True when the text has emoji/emote codes and nothing else but spaces and punctuation."""
    s = to_text(text)
    if not EMOJI_RE.search(s) and not EMOTE_CODE_RE.search(s):
        return False
    rest = EMOTE_CODE_RE.sub("", EMOJI_RE.sub("", s.translate(_TABLE)))
    return not any(ch.isalnum() for ch in rest)


__all__ = [
    "EMOJI_RE",
    "EMOTE_CODE_RE",
    "ZERO_WIDTH",
    "collapse_repeats",
    "fold",
    "is_emoji_only",
    "normalize",
    "t2s_char_map",
    "to_text",
]
