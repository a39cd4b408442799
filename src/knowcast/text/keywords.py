"""Keywords of one comment or title: tokens ranked by tf × idf.

The idf comes from jieba's bundled table (``jieba/analyse/idf.txt``, general Chinese text), so words that
say something (价格, 报名, 回放) rank above words every comment has; unknown words get the median idf, and
stop words, single Han characters and one-letter tokens never count. Hashtags are always kept.
"""

from __future__ import annotations

from collections import Counter
from functools import lru_cache
from pathlib import Path

from knowcast.text.tokenize import tokenize


@lru_cache(maxsize=1)
def idf_table() -> tuple[dict[str, float], float]:
    """(word → idf, median idf) from jieba's table; empty table and 10.0 if jieba's file is missing."""
    try:
        import jieba

        path = Path(jieba.__file__).resolve().parent / "analyse" / "idf.txt"
        table: dict[str, float] = {}
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                w, _, v = line.strip().rpartition(" ")
                if w:
                    table[w] = float(v)
    except (ImportError, OSError, ValueError):
        return {}, 10.0
    vals = sorted(table.values())
    return table, vals[len(vals) // 2] if vals else 10.0


@lru_cache(maxsize=65536)
def is_keyword_token(tok: str) -> bool:
    """Tokens that can be keywords: hashtags, Chinese words of 2+ characters, English words of 2+ letters,
    and meme numbers like 666 (3+ digits of one digit). Cached: the live room asks for every token of
    every comment, and a room's vocabulary is small."""
    if tok.startswith("#"):
        return len(tok) > 1
    if tok.isdigit():
        return len(tok) >= 3 and len(set(tok)) == 1
    if tok.isascii():
        return len(tok) >= 2
    return len(tok) >= 2


def keywords(text: str | bytes, k: int = 5, tokens: list[str] | None = None) -> list[str]:
    """Up to ``k`` keywords of a text, best first (``tokens``: already-tokenised text, stop words removed)."""
    if k <= 0:
        return []
    toks = tokens if tokens is not None else tokenize(text)
    cands = [t for t in toks if is_keyword_token(t)]
    if not cands:
        return []
    idf, median = idf_table()
    tf = Counter(cands)
    first = {}
    for i, t in enumerate(cands):
        first.setdefault(t, i)
    ranked = sorted(tf, key=lambda t: (-(tf[t] * idf.get(t, median) + (100.0 if t.startswith("#") else 0.0)),
                                       first[t]))  # fmt: skip
    return ranked[:k]


__all__ = ["idf_table", "is_keyword_token", "keywords"]
