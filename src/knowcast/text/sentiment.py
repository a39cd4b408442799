"""Sentiment of short Chinese comments: positive / negative / neutral with a score.

The model is knowcast's own (trained by ``python -m knowcast.text.train_sentiment`` on the ChnSentiCorp hotel
and waimai corpora in shared/data/sentiment, with a fixed seeded split so the held-out rows stay unseen):

* features: character 1–4-grams of the normalised text (spaces removed) and word 1–2-grams of its jieba
  tokens, looked up in the training vocabulary (n-grams seen in at least two training reviews);
* two views of those features, each L2-normalised per family (characters, words): sublinear tf × idf (the
  TfidfVectorizer recipe) and binary × idf (for the NB-weighted model);
* an averaged ensemble of linear models on those views — logistic regression on tf-idf and NB-LR (binary
  features scaled by the log-count ratio, Wang & Manning 2012) — which, being linear, folds into one
  coefficient per n-gram and view;
* one coefficient column per *domain*: ``general`` (trained on both corpora; what live comments use) and
  one per corpus (``hotel``, ``waimai``), where that corpus's own models join the average; pass
  ``domain=`` when the text is known to come from one of them;
* a small slang/emoji lexicon for live comments (666, yyds, 绝了, 退钱, 👍 …) added to the log-odds, because
  review corpora never say "awsl"; short texts have their log-odds shrunk by ``len/(len+6)`` (one n-gram is
  weak evidence) and digit-only text is neutral;
* a neutral band: ``p(positive)`` within ``neutral_band`` of 0.5, or no usable feature at all, is neutral.

The file ``data/sentiment.npz`` holds the vocabulary (UTF-8, one n-gram a line), idf and the float16
coefficients, a few MB, read with ``np.load(allow_pickle=False)``. Scoring a comment is a couple of dict
look-ups per n-gram done in C (``map``) and a handful of NumPy dot products.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import repeat
from operator import add
from pathlib import Path

import numpy as np

from knowcast.text.normalize import normalize
from knowcast.text.tokenize import tokenize

MODEL_PATH = Path(__file__).resolve().parent / "data" / "sentiment.npz"
CHAR_NGRAMS = (1, 2, 3, 4)
WORD_JOIN = "\x01"
FAMILIES = ("char", "word")
GENERAL = "general"

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

_LETTER_RE = re.compile(r"[^\W\d_]")
_MISSING = repeat(-1)


def char_grams(text: str) -> list[str]:
    """Character n-grams (n in ``CHAR_NGRAMS``) of normalised text, spaces removed.

    Built with ``map(operator.add, …)`` over shifted copies of the string, so the loop runs in C.
    """
    s = text.replace(" ", "")
    out: list[str] = []
    grams: Sequence[str] = s
    for n in CHAR_NGRAMS:
        if n > 1:
            grams = list(map(add, grams, s[n - 1 :]))
        if not grams:
            break
        out.extend(grams)
    return out


def word_grams(tokens: Sequence[str]) -> list[str]:
    """Word unigrams and bigrams (joined by ``WORD_JOIN``)."""
    toks = list(tokens)
    return toks + [a + WORD_JOIN + b for a, b in zip(toks, toks[1:], strict=False)]


def featurize(text: str, tokens: Sequence[str] | None = None) -> tuple[list[str], list[str]]:
    """(character n-grams, word n-grams) of normalised text; ``tokens`` are its jieba tokens if known."""
    toks = tokens if tokens is not None else tokenize(text, stopwords=False, normalized=True)
    return char_grams(text), word_grams(toks)


@dataclass(frozen=True, slots=True)
class Sentiment:
    label: str  # "positive" | "negative" | "neutral"
    score: float  # 2 * p(positive) - 1, in [-1, 1]
    p_positive: float

    def to_dict(self) -> dict[str, object]:
        return {"label": self.label, "score": round(self.score, 4), "p_positive": round(self.p_positive, 4)}


class SentimentModel:
    """The shipped linear sentiment model (see module docstring); :meth:`load` or :func:`default_model`.

    ``vocab``: n-gram strings; ``family``: 0 (character) or 1 (word) per n-gram; ``idf`` per n-gram;
    ``coef_tfidf`` and ``coef_binary``: (n-grams × domains) coefficients on the sublinear tf-idf view and on
    the binary-idf view; ``intercept``: one per domain; ``domains``: their names, ``general`` first.
    ``neutral_band``: half-width of the neutral zone around p = 0.5 (0.15 → neutral for p in (0.35, 0.65)).
    """

    def __init__(
        self,
        vocab: Sequence[str],
        family: np.ndarray,
        idf: np.ndarray,
        coef_tfidf: np.ndarray,
        coef_binary: np.ndarray,
        intercept: np.ndarray | Sequence[float],
        domains: Sequence[str] = (GENERAL,),
        neutral_band: float = 0.15,
    ) -> None:
        n = len(vocab)
        family = np.asarray(family, dtype=np.int8)
        idf = np.asarray(idf, dtype=np.float64)
        domains = list(domains)
        d = len(domains)
        ct = np.asarray(coef_tfidf, dtype=np.float64).reshape(n, -1) if n else np.zeros((0, d))
        cb = np.asarray(coef_binary, dtype=np.float64).reshape(n, -1) if n else np.zeros((0, d))
        intercept = np.asarray(intercept, dtype=np.float64).reshape(-1)
        if family.shape != (n,) or idf.shape != (n,):
            raise ValueError(f"family and idf must have one value per vocabulary entry ({n})")
        if ct.shape != (n, d) or cb.shape != (n, d) or intercept.shape != (d,):
            raise ValueError(f"coefficients must be ({n}, {d}) and intercept ({d},) for domains {domains}")
        if not domains or domains[0] != GENERAL or len(set(domains)) != d:
            raise ValueError(f"domains must be distinct and start with {GENERAL!r}, got {domains}")
        if not 0 <= neutral_band < 0.5:
            raise ValueError(f"neutral_band must be in [0, 0.5), got {neutral_band}")
        self.vocab = list(vocab)
        self.family = family
        self.idf = idf
        self.coef_tfidf = ct
        self.coef_binary = cb
        self.intercept = intercept
        self.domains = domains
        self.neutral_band = neutral_band
        # per family: n-gram → row (dict look-ups through map() run in C)
        self._index: tuple[dict[str, int], dict[str, int]] = ({}, {})
        for i, (g, f) in enumerate(zip(self.vocab, family.tolist(), strict=True)):
            self._index[f][g] = i

    # ------------------------------------------------------------------ io
    @classmethod
    def load(cls, path: str | Path = MODEL_PATH, neutral_band: float = 0.15) -> SentimentModel:
        with np.load(path, allow_pickle=False) as z:
            vocab = bytes(z["vocab"]).decode("utf-8").split("\n") if len(z["vocab"]) else []
            return cls(
                vocab,
                z["family"],
                z["idf"].astype(np.float64),
                z["coef_tfidf"].astype(np.float64),
                z["coef_binary"].astype(np.float64),
                z["intercept"].astype(np.float64),
                [str(d) for d in z["domains"]],
                neutral_band,
            )

    def save(self, path: str | Path) -> None:
        if any("\n" in g for g in self.vocab):
            raise ValueError("vocabulary entries must not contain a newline")
        np.savez_compressed(
            path,
            vocab=np.frombuffer("\n".join(self.vocab).encode("utf-8"), dtype=np.uint8),
            family=self.family.astype(np.int8),
            idf=self.idf.astype(np.float16),
            coef_tfidf=self.coef_tfidf.astype(np.float16),
            coef_binary=self.coef_binary.astype(np.float16),
            intercept=self.intercept,
            domains=np.array(self.domains),
        )

    # ------------------------------------------------------------------ scoring
    def _column(self, domain: str | None) -> int:
        if domain is None:
            return 0
        try:
            return self.domains.index(domain)
        except ValueError:
            raise ValueError(f"domain must be one of {self.domains} or None, got {domain!r}") from None

    def _family_score(self, fam: int, grams: list[str], col: int) -> float | None:
        if not grams:
            return None
        cnt = Counter(grams)
        ids = np.fromiter(map(self._index[fam].get, cnt, _MISSING), dtype=np.int64, count=len(cnt))
        known = ids >= 0
        if not known.any():
            return None
        rows = ids[known]
        idf = self.idf[rows]
        tfidf = idf
        if len(grams) != len(cnt):  # some n-gram repeats: sublinear tf = 1 + ln(count)
            tf = np.fromiter(cnt.values(), dtype=np.float64, count=len(cnt))[known]
            tfidf = (1.0 + np.log(tf)) * idf
        return float(tfidf @ self.coef_tfidf[rows, col]) / math.sqrt(float(tfidf @ tfidf)) + float(
            idf @ self.coef_binary[rows, col]
        ) / math.sqrt(float(idf @ idf))

    def logit(
        self,
        text: str | bytes,
        tokens: Sequence[str] | None = None,
        *,
        slang: bool = True,
        normalized: bool = False,
        domain: str | None = None,
        shrink: bool = True,
    ) -> float | None:
        """The model's log-odds of positive, or None when the text has no known feature and no slang.

        ``normalized=True``: ``text`` is already :func:`normalize`-d; ``tokens``: its jieba tokens (stop
        words kept) if the caller has them; ``domain``: a coefficient column (None = general).
        """
        col = self._column(domain)
        s = text if normalized and isinstance(text, str) else normalize(text)
        if not s:
            return None
        cg, wg = featurize(s, tokens)
        z = float(self.intercept[col])
        known = False
        for fam, grams in ((0, cg), (1, wg)):
            part = self._family_score(fam, grams, col)
            if part is not None:
                z += part
                known = True
        # Very short texts carry little evidence, but per-family L2 normalisation gives even one n-gram a
        # unit-length vector: shrink the model's log-odds (sign unchanged) so "123" or "多少钱" are not sure.
        if shrink:
            z *= len(s) / (len(s) + 6.0)
        if _LETTER_RE.search(s) is None:
            known = False  # digits and punctuation alone say nothing about mood
        if slang:
            bonus = sum(v for k, v in SLANG.items() if k in s)
            if bonus:
                known = True
                z += bonus
        return z if known else None

    def predict_proba(self, texts: Sequence[str], domain: str | None = None) -> np.ndarray:
        """p(positive) for each text (0.5 when nothing is known); no slang bonus, no short-text shrink —
        the plain model, as measured on the review corpora."""
        out = np.empty(len(texts))
        for i, t in enumerate(texts):
            z = self.logit(t, slang=False, domain=domain, shrink=False)
            out[i] = 0.5 if z is None else 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))
        return out

    def analyze(
        self,
        text: str | bytes,
        tokens: Sequence[str] | None = None,
        *,
        normalized: bool = False,
        domain: str | None = None,
    ) -> Sentiment:
        z = self.logit(text, tokens, normalized=normalized, domain=domain)
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


def analyze_sentiment(text: str | bytes, domain: str | None = None) -> Sentiment:
    """Sentiment of one text with the shipped model (``domain``: None for live comments)."""
    return default_model().analyze(text, domain=domain)


__all__ = [
    "GENERAL",
    "SLANG",
    "Sentiment",
    "SentimentModel",
    "analyze_sentiment",
    "char_grams",
    "default_model",
    "featurize",
    "word_grams",
]
