"""Questions in a live room: is a comment a question to the host, and which questions many people ask.

``is_question`` looks for Chinese and English interrogative cues, not only "?": 吗/呢 at the end, 怎么,
多少钱, 能不能, 有没有, 请问, 求 ..., and English wh-words or auxiliaries at the start. A question mark alone
counts too, but a pure reaction ("???", "啊？") does not.

``QuestionClusterer`` merges near-duplicate questions ("这个课多少钱" / "课程多少钱啊" / "多少钱？？") so a
host can answer the question 200 people asked. Each question becomes a set of characters and character bigrams
(after normalising and removing question particles and function characters); a new question joins
the cluster whose representative has Jaccard similarity ≥ ``threshold``, found through an inverted
index from n-gram to clusters with prefix filtering (exact Jaccard on the few candidates that share an
indexed n-gram, which at live-room sizes is cheaper and more accurate than MinHash).
Counts are kept per time window, so "top questions now" fades as the room moves on.
"""

from __future__ import annotations

import math
import re
from collections import deque
from dataclasses import dataclass, field
from functools import lru_cache

from knowcast.text.normalize import EMOJI_RE, EMOTE_CODE_RE, normalize

_ZH_CUES = (
    "什么", "怎么", "怎样", "如何", "为什么", "为啥", "干嘛", "多少", "几点", "几个", "几天", "几次",
    "哪里", "哪个",
    "哪儿", "哪些", "在哪", "是否", "能不能", "可不可以", "可以吗", "有没有", "是不是", "会不会", "要不要",
    "行不行", "好不好", "对不对", "请问", "求问", "问一下", "问下", "想问", "咋", "啥", "多久", "多大",
    "多长",
    "何时", "谁", "求推荐", "求链接", "求资料", "怎么办",
)  # fmt: skip
_ZH_CUE_RE = re.compile("|".join(map(re.escape, _ZH_CUES)))
_ZH_END_RE = re.compile(r"(?:吗|嘛|呢|么|没|不)[?？~～!！。.\s]*$")
_EN_START_RE = re.compile(
    r"^(?:what|how|why|when|where|who|whom|which|whose|can|could|is|are|am|do|does|did|will|would|should|"
    r"shall|may|might|has|have|any|anyone)\b",
    re.I,
)
_QMARK_RE = re.compile(r"[?？]")
_WS_RE = re.compile(r"\s+")
_PARTICLES_RE = re.compile(r"[吗呢吧啊呀么嘛哦噢哈这那个的了是就也还都我你]|请问|想问|问一下|老师|主播|[^\w]")


def is_question(text: str | bytes, *, normalized: bool = False) -> bool:
    """True when the comment asks something (Chinese or English cues, or a question mark after words).

    ``normalized=True``: ``text`` is already :func:`normalize`-d (emoji kept), so only the emoji are removed
    here instead of normalising a second time (normalising is idempotent, so the answer is the same)."""
    if normalized and isinstance(text, str):
        s = _WS_RE.sub(" ", EMOTE_CODE_RE.sub(" ", EMOJI_RE.sub(" ", text))).strip()
    else:
        s = normalize(text, emoji="remove")
    if not s:
        return False
    words = re.sub(r"[?？!！.。,，~～\s]", "", s)
    if not words:
        return False  # "???" alone is a reaction
    if _ZH_END_RE.search(s) and len(words) >= 2:
        return True
    if _ZH_CUE_RE.search(s):
        return True
    if _EN_START_RE.search(s):
        return bool(_QMARK_RE.search(s)) or len(s.split()) >= 3
    return bool(_QMARK_RE.search(s)) and len(words) >= 2


def question_key(text: str) -> str:
    """The part of a question that carries meaning: normalised, particles and punctuation removed."""
    return _PARTICLES_RE.sub("", normalize(text, emoji="remove", max_repeat=1))


def _gram_order(g: str) -> tuple[bool, str]:
    return (len(g) == 1, g)


@lru_cache(maxsize=32768)
def shingles(text: str) -> frozenset[str]:
    """Characters and character bigrams of :func:`question_key` (word order matters little in short
    questions: 有回放吗 / 回放有吗)."""
    k = question_key(text)
    return frozenset(k) | frozenset(k[i : i + 2] for i in range(len(k) - 1))


@dataclass
class _Cluster:
    cid: int
    text: str
    grams: frozenset[str]
    times: deque[float] = field(default_factory=deque)
    total: int = 0
    last_ts: float = 0.0
    variants: dict[str, int] = field(default_factory=dict)


class QuestionClusterer:
    """Merges near-duplicate questions and counts them in a sliding window of ``window_s`` seconds."""

    def __init__(self, threshold: float = 0.45, window_s: float = 300.0, max_clusters: int = 5000) -> None:
        if not 0 < threshold <= 1:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        if window_s <= 0:
            raise ValueError(f"window_s must be > 0, got {window_s}")
        self.threshold = threshold
        self.window_s = window_s
        self.max_clusters = max_clusters
        self._clusters: dict[int, _Cluster] = {}
        self._index: dict[str, set[int]] = {}
        self._next = 0

    def _prefix(self, grams: frozenset[str]) -> list[str]:
        """The grams a set is indexed and looked up by (prefix filtering): in a fixed global order (bigrams
        before single characters, then by text), the first ``|A| - ceil(t·|A|) + 1``. Two sets with Jaccard
        ≥ t always share one of these, so looking up only the prefix finds every cluster that can match,
        while common single characters (多, 么) stay out of most lookups."""
        order = sorted(grams, key=_gram_order)
        return order[: len(order) - math.ceil(self.threshold * len(order) - 1e-9) + 1]

    def add(self, text: str, ts: float) -> int | None:
        """Add one question; returns its cluster id (None when nothing meaningful is left)."""
        grams = shingles(text)
        if not grams:
            return None
        prefix = self._prefix(grams)
        best, best_sim = None, 0.0
        cands: set[int] = set()
        for g in prefix:
            posting = self._index.get(g)
            if posting:
                cands |= posting
        n = len(grams)
        for cid in sorted(cands):
            c = self._clusters[cid]
            inter = len(grams & c.grams)
            sim = inter / (n + len(c.grams) - inter)
            if sim > best_sim:
                best, best_sim = c, sim
        key = normalize(text)
        if best is None or best_sim < self.threshold:
            best = _Cluster(self._next, key, grams)
            self._clusters[best.cid] = best
            for g in prefix:
                self._index.setdefault(g, set()).add(best.cid)
            self._next += 1
            if len(self._clusters) > self.max_clusters:
                self._evict()
        best.times.append(ts)
        best.total += 1
        best.last_ts = ts
        best.variants[key] = best.variants.get(key, 0) + 1
        # the most asked wording represents the cluster
        if best.variants[key] > best.variants.get(best.text, 0):
            best.text = key
        return best.cid

    def _evict(self) -> None:
        oldest = min(self._clusters.values(), key=lambda c: (len(c.times), c.last_ts))
        for g in self._prefix(oldest.grams):
            s = self._index.get(g)
            if s is not None:
                s.discard(oldest.cid)
                if not s:
                    del self._index[g]
        del self._clusters[oldest.cid]

    def top(self, n: int = 10, now: float | None = None) -> list[dict[str, object]]:
        """The ``n`` questions asked most in the last ``window_s`` seconds (as of ``now``)."""
        out = []
        for c in self._clusters.values():
            if now is not None:
                while c.times and c.times[0] < now - self.window_s:
                    c.times.popleft()
            if c.times:
                out.append(c)
        out.sort(key=lambda c: (-len(c.times), -c.last_ts))
        return [
            {"id": c.cid, "text": c.text, "count": len(c.times), "total": c.total, "last_ts": c.last_ts}
            for c in out[:n]
        ]

    def __len__(self) -> int:
        return len(self._clusters)


__all__ = ["QuestionClusterer", "is_question", "question_key", "shingles"]
