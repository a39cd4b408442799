"""Sentiment of short Chinese comments: positive / negative / neutral with a score.

The model is knowcast's own (trained by ``python -m knowcast.text.train_sentiment`` on the ChnSentiCorp hotel
and waimai corpora in shared/data/sentiment, with a fixed seeded split so the held-out rows stay unseen):

* features: character 1–3-grams of the normalised text and word 1–2-grams of its jieba tokens, each hashed
  (CRC-32, stable across processes, unlike Python's ``hash``) into 2**20 buckets, weighted by sublinear tf ×
  idf and L2-normalised per family (the TfidfVectorizer recipe, re-implemented so no sklearn object is
  pickled);
* a logistic regression on those features; the file ``data/sentiment.npz`` holds only the buckets seen in
  training (index, idf, coefficient), a couple of MB, loaded with ``np.load(allow_pickle=False)``;
* a small slang/emoji lexicon for live comments (666, yyds, 绝了, 退钱, 👍 …) added to the logit, because
  review corpora never say "awsl";
* a neutral band: ``p(positive)`` within ``neutral_band`` of 0.5, or no usable feature at all, is neutral.
"""

from __future__ import annotations

import math
import zlib
from array import array
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from knowcast.text.normalize import normalize
from knowcast.text.tokenize import tokenize

MODEL_PATH = Path(__file__).resolve().parent / "data" / "sentiment.npz"
N_BUCKETS = 1 << 20
CHAR_NGRAMS = (1, 2, 3)

#: Live-comment slang and emoji the review corpora never contain: (term, logit bonus).
SLANG: dict[str, float] = {
    "666": 1.5, "yyds": 2.0, "awsl": 1.5, "xswl": 1.0, "nb": 1.0, "牛啊": 1.5, "绝了": 1.5, "爱了": 1.5,
    "太强了": 1.5, "厉害": 1.0, "赞": 1.0, "支持": 1.0, "加油": 1.0, "谢谢老师": 1.5, "干货": 1.5,
    "学到了": 1.5,
    "哈哈": 0.8, "😂": 0.8, "🤣": 0.8, "好评": 1.5, "👍": 1.5, "❤": 1.2, "🥰": 1.2, "😍": 1.2,
    "👏": 1.2, "🎉": 0.8,
    "垃圾": -2.0, "退钱": -2.0, "骗子": -2.0, "割韭菜": -2.0, "智商税": -2.0, "无聊": -1.5, "失望": -1.5,
    "难听": -1.2, "恶心": -1.5, "太贵": -1.2, "坑人": -1.5, "差评": -1.5, "呵呵": -0.8, "👎": -1.5,
    "😡": -1.5,
    "💩": -1.5, "取关": -1.5, "卡了": -1.0, "听不清": -1.0,
}  # fmt: skip


_BUCKETS: dict[str, int] = {}


def _bucket(s: str) -> int:
    """Stable hash bucket of a feature string (memoised: CRC-32 of UTF-8 costs more than a dict hit)."""
    b = _BUCKETS.get(s)
    if b is None:
        if len(_BUCKETS) > 2_000_000:
            _BUCKETS.clear()
        b = _BUCKETS[s] = zlib.crc32(s.encode("utf-8")) & (N_BUCKETS - 1)
    return b


def char_grams(text: str) -> list[str]:
    """Character n-grams (n in ``CHAR_NGRAMS``) of normalised text, spaces removed."""
    s = text.replace(" ", "")
    out: list[str] = []
    for n in CHAR_NGRAMS:
        out.extend(s[i : i + n] for i in range(len(s) - n + 1))
    return out


def word_grams(tokens: list[str]) -> list[str]:
    return tokens + [a + "\x01" + b for a, b in zip(tokens, tokens[1:], strict=False)]


def featurize(text: str, tokens: list[str] | None = None) -> tuple[dict[int, float], dict[int, float]]:
    """Raw term counts per bucket for the char family and the word family (``text`` already normalised)."""
    chars: dict[int, float] = {}
    for g in char_grams(text):
        b = _bucket("c" + g)
        chars[b] = chars.get(b, 0.0) + 1.0
    words: dict[int, float] = {}
    toks = tokens if tokens is not None else tokenize(text, stopwords=False, normalized=True)
    for g in word_grams(toks):
        b = _bucket("w" + g)
        words[b] = words.get(b, 0.0) + 1.0
    return chars, words


@dataclass(frozen=True, slots=True)
class Sentiment:
    label: str  # "positive" | "negative" | "neutral"
    score: float  # 2 * p(positive) - 1, in [-1, 1]
    p_positive: float

    def to_dict(self) -> dict[str, object]:
        return {"label": self.label, "score": round(self.score, 4), "p_positive": round(self.p_positive, 4)}


class SentimentModel:
    """The shipped linear sentiment model (see module docstring); :meth:`load` or :func:`default_model`.

    ``neutral_band``: half-width of the neutral zone around p = 0.5 (0.15 → neutral for p in (0.35, 0.65)).
    """

    def __init__(
        self, coef: np.ndarray, idf: np.ndarray, intercept: float, neutral_band: float = 0.15
    ) -> None:
        if coef.shape != (N_BUCKETS,) or idf.shape != (N_BUCKETS,):
            raise ValueError(f"coef and idf must have shape ({N_BUCKETS},)")
        if not 0 <= neutral_band < 0.5:
            raise ValueError(f"neutral_band must be in [0, 0.5), got {neutral_band}")
        self.coef = coef
        self.idf = idf
        self.intercept = float(intercept)
        self.neutral_band = neutral_band
        # array.array indexing returns Python floats ~5x faster than NumPy scalar indexing; per comment we
        # touch a few dozen buckets, where a Python loop beats NumPy's per-call overhead.
        self._coef_a = array("d", coef.astype(np.float64).tobytes())
        self._idf_a = array("d", idf.astype(np.float64).tobytes())

    # ------------------------------------------------------------------ io
    @classmethod
    def load(cls, path: str | Path = MODEL_PATH, neutral_band: float = 0.15) -> SentimentModel:
        with np.load(path, allow_pickle=False) as z:
            idx = z["index"].astype(np.int64)
            coef = np.zeros(N_BUCKETS, dtype=np.float64)
            idf = np.zeros(N_BUCKETS, dtype=np.float64)
            coef[idx] = z["coef"].astype(np.float64)
            idf[idx] = z["idf"].astype(np.float64)
            intercept = float(z["intercept"][0])
        return cls(coef, idf, intercept, neutral_band)

    def save(self, path: str | Path) -> None:
        idx = np.flatnonzero(self.idf).astype(np.int32)
        np.savez_compressed(
            path,
            index=idx,
            coef=self.coef[idx].astype(np.float16),
            idf=self.idf[idx].astype(np.float16),
            intercept=np.array([self.intercept]),
            n_buckets=np.array([N_BUCKETS]),
        )

    # ------------------------------------------------------------------ scoring
    def logit(
        self, text: str | bytes, tokens: list[str] | None = None, *, slang: bool = True
    ) -> float | None:
        """The model's log-odds of positive, or None when the text has no known feature and no slang."""
        s = normalize(text)
        if not s:
            return None
        chars, words = featurize(s, tokens)
        z = self.intercept
        known = False
        idf_a, coef_a, log = self._idf_a, self._coef_a, math.log
        for counts in (chars, words):
            dot = 0.0
            sq = 0.0
            for b, tf in counts.items():
                idf = idf_a[b]
                if idf:
                    w = (1.0 + log(tf)) * idf
                    sq += w * w
                    dot += w * coef_a[b]
            if sq > 0:
                known = True
                z += dot / math.sqrt(sq)
        # Very short texts carry little evidence, but per-family L2 normalisation gives even one n-gram a
        # unit-length vector: shrink the model's log-odds (sign unchanged) so "123" or "多少钱" are not sure.
        z *= len(s) / (len(s) + 6.0)
        if not any(ch.isalpha() for ch in s):
            known = False  # digits and punctuation alone say nothing about mood
        if slang:
            bonus = sum(v for k, v in SLANG.items() if k in s)
            if bonus:
                known = True
                z += bonus
        return z if known else None

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        """p(positive) for each text (0.5 when nothing is known)."""
        out = np.empty(len(texts))
        for i, t in enumerate(texts):
            z = self.logit(t, slang=False)
            out[i] = 0.5 if z is None else 1.0 / (1.0 + math.exp(-z))
        return out

    def analyze(self, text: str | bytes, tokens: list[str] | None = None) -> Sentiment:
        z = self.logit(text, tokens)
        if z is None:
            return Sentiment("neutral", 0.0, 0.5)
        p = 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))
        if p >= 0.5 + self.neutral_band:
            label = "positive"
        elif p <= 0.5 - self.neutral_band:
            label = "negative"
        else:
            label = "neutral"
        return Sentiment(label, 2 * p - 1, p)


@lru_cache(maxsize=1)
def default_model() -> SentimentModel:
    """The shipped model (``data/sentiment.npz``; rebuild: ``python -m knowcast.text.train_sentiment``)."""
    if not MODEL_PATH.exists():
        raise FileNotFoundError(f"{MODEL_PATH} missing: run `python -m knowcast.text.train_sentiment`")
    return SentimentModel.load(MODEL_PATH)


def analyze_sentiment(text: str | bytes) -> Sentiment:
    """Sentiment of one text with the shipped model."""
    return default_model().analyze(text)


__all__ = ["SLANG", "Sentiment", "SentimentModel", "analyze_sentiment", "default_model", "featurize"]
