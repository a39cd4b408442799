"""Turning an item's text fields into one analysable document.

Why one helper: titles, descriptions, captions, cover text, hashtags and imported transcripts all say what an
item is about, and every content model (keywords, categories, topics, embeddings) must read them the same
way, or a similarity computed from one would not match a category learnt from another.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from knowcast.text.normalize import normalize
from knowcast.text.tokenize import tokenize

__all__ = ["item_document", "tokenize_many", "parse_tag_list", "is_keyword_token"]

#: Placeholders that mean "no text" in public datasets (KuaiRec writes UNKNOWN).
_EMPTY = {"", "unknown", "nan", "none", "null"}


def _clean(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return ""
    s = str(value).strip()
    return "" if s.lower() in _EMPTY else s


def parse_tag_list(value: Any) -> list[str]:
    """Tags as a list from a list, a JSON/Python-looking ``"[a, b]"`` string, or ``"a,b"`` / ``"a|b"``."""
    if value is None:
        return []
    if isinstance(value, float) and math.isnan(value):
        return []
    if isinstance(value, list | tuple | set):
        items: Iterable[Any] = value
    else:
        s = str(value).strip().strip("[]")
        for sep in ("|", "，", ";"):
            s = s.replace(sep, ",")
        items = s.split(",")
    out = []
    for t in items:
        t = _clean(t).strip("'\"# ")
        if t:
            out.append(t)
    return out


def item_document(
    title: Any = None,
    description: Any = None,
    tags: Any = None,
    *extra: Any,
) -> str:
    """One text for an item: title, description, extra fields (cover text, transcript) and ``#tags``.

    Hashtags are written ``#tag#`` so the tokenizer keeps each as one token whatever language it is in.
    """
    parts = [_clean(title), _clean(description), *(_clean(e) for e in extra)]
    tag_part = " ".join(f"#{t}#" for t in parse_tag_list(tags))
    return " ".join(p for p in [*parts, tag_part] if p)


def tokenize_many(docs: Sequence[str], stopwords: bool = True) -> list[list[str]]:
    """Tokenize each document (normalised once) with knowcast's Chinese/English tokenizer."""
    out = []
    for i, d in enumerate(docs):
        if d is None:
            out.append([])
            continue
        if not isinstance(d, str):
            raise TypeError(f"document at row {i} must be a str, got {type(d).__name__}")
        out.append(tokenize(normalize(d), stopwords=stopwords, normalized=True))
    return out


def is_keyword_token(tok: str) -> bool:
    """Tokens worth showing as keywords: hashtags, Chinese words of 2+ characters, English words of 3+.

    Single Chinese characters and bare numbers are kept for models (they carry signal) but are poor
    keywords for a person to read.
    """
    if tok.startswith("#"):
        return len(tok) > 1
    if tok.replace(".", "", 1).rstrip("%").isdigit():
        return False
    if tok.isascii():
        return len(tok) >= 3
    return len(tok) >= 2
