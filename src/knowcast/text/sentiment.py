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
coefficients, a few MB, read with ``np.load(allow_pickle=False)``. Scoring a comment builds no string per
character n-gram: one Aho–Corasick pass over the text finds the vocabulary rows of all of them, the word
n-grams are dict look-ups run in C (``map``), and each family is one NumPy gather of precomputed per-row
terms plus a few sums (see :meth:`SentimentModel._rows_score`).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import chain, repeat
from operator import add, itemgetter
from pathlib import Path

import ahocorasick
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
_SECOND = itemgetter(1)


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


class _TwoUnits(dict):
    """``str.translate`` table writing each character as two units, 0x100 + (code point >> 8) then the low
    byte, filled on first sight of a character.

    Why: pyahocorasick walks a node's children one by one, and a vocabulary of Chinese n-grams gives the
    root thousands of children; two units keep every node under ~300 children (about twice as fast). High
    units (>= 0x100) and low units (< 0x100) never mix, so a key can only match at a character start."""

    def __missing__(self, cp: int) -> str:
        v = self[cp] = chr(0x100 + (cp >> 8)) + chr(cp & 0xFF)
        return v


_TWO_UNITS = _TwoUnits()


def word_grams(tokens: Sequence[str]) -> list[str]:
    """Word unigrams and bigrams (joined by ``WORD_JOIN``)."""
    toks = list(tokens)
    return toks + list(map(add, map(add, toks, repeat(WORD_JOIN)), toks[1:]))


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
        self._char_auto: ahocorasick.Automaton | None = None  # built on first use (a second or two)
        self._weights: dict[int, np.ndarray] = {}

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

    def _column_weights(self, col: int) -> np.ndarray:
        """(n-grams + 1) × 3 per-row terms of the score for one domain column: idf·coef_tfidf,
        idf·coef_binary, idf², side by side so one row is one memory fetch. The extra last row (zeros)
        stands for "not in the vocabulary", so look-ups need no filtering. Built once per column."""
        w = self._weights.get(col)
        if w is None:
            w = np.zeros((len(self.vocab) + 1, 3))
            w[:-1, 0] = self.idf * self.coef_tfidf[:, col]
            w[:-1, 1] = self.idf * self.coef_binary[:, col]
            w[:-1, 2] = self.idf * self.idf
            self._weights[col] = w
        return w

    def _char_rows(self, s: str) -> list[int]:
        """Vocabulary rows of every character n-gram occurrence in ``s`` (spaces already removed).

        One Aho–Corasick pass over the text finds every vocabulary n-gram at every position, which is the
        same multiset as looking up all 1–4-grams (n-grams outside the vocabulary are simply not found), but
        builds no Python string per n-gram."""
        auto = self._char_auto
        if auto is None:
            auto = ahocorasick.Automaton(ahocorasick.STORE_INTS)
            for g, row in self._index[0].items():
                auto.add_word(g.translate(_TWO_UNITS), row)
            if len(auto):
                auto.make_automaton()
            self._char_auto = auto
        if not len(auto):
            return []
        return list(map(_SECOND, auto.iter(s.translate(_TWO_UNITS))))

    def _rows_score(self, rows: list[int], col: int) -> float | None:
        """One family's share of the log-odds from the vocabulary rows of its n-gram occurrences (repeats
        included; row ``len(vocab)`` = unknown, weight 0): the sublinear-tf-idf view and the binary-idf view,
        each L2-normalised, dotted with the coefficients. The same numbers as building the two sparse vectors
        and multiplying, without building them: the distinct rows are counted in C (``Counter``), their
        weights fetched with one NumPy gather and summed."""
        if not rows:
            return None
        cnt = Counter(rows)
        k = len(cnt)
        m = self._column_weights(col)[np.fromiter(cnt, np.intp, k)]
        if k == len(rows):  # no repeated n-gram: tf = 1 everywhere, both views share the norm
            st, sb, si = m.sum(axis=0).tolist()
            return (st + sb) / math.sqrt(si) if si > 0.0 else None
        sb, si = m[:, 1:].sum(axis=0).tolist()
        if si <= 0.0:
            return None  # no known n-gram
        tf = 1.0 + np.log(np.fromiter(cnt.values(), np.float64, k))  # sublinear tf
        return float(tf @ m[:, 0]) / math.sqrt(float((tf * tf) @ m[:, 2])) + sb / math.sqrt(si)

    def _family_score(self, fam: int, grams: list[str], col: int) -> float | None:
        """One family's share of the log-odds from its n-gram strings (None when none is known)."""
        return self._rows_score(list(map(self._index[fam].get, grams, repeat(len(self.vocab)))), col)

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
        toks = tokens if tokens is not None else tokenize(s, stopwords=False, normalized=True)
        return self._finish(
            s,
            col,
            (
                self._rows_score(self._char_rows(s.replace(" ", "")), col),
                self._family_score(1, word_grams(toks), col),
            ),
            slang,
            shrink,
        )

    def _finish(
        self, s: str, col: int, parts: tuple[float | None, float | None], slang: bool, shrink: bool
    ) -> float | None:
        """The log-odds from the two families' shares (None: no known n-gram in that family)."""
        z = float(self.intercept[col])
        known = False
        for part in parts:
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

    def logit_many(
        self,
        texts: Sequence[str],
        tokens: Sequence[Sequence[str]],
        *,
        slang: bool = True,
        domain: str | None = None,
        shrink: bool = True,
    ) -> list[float | None]:
        """:meth:`logit` of many normalised texts with their tokens (stop words kept): the same numbers up
        to float rounding (sums taken in the same order; a dot product may round its last bit differently).

        Why: scoring one text is a handful of NumPy calls on arrays of a few dozen rows, so their fixed cost
        dominates; here each family's rows of all texts are counted per text (``Counter``, in C), laid end
        to end and scored with one gather and four ``bincount`` sums for the whole batch."""
        col = self._column(domain)
        if len(texts) != len(tokens):
            raise ValueError(f"{len(texts)} texts but {len(tokens)} token lists")
        unknown = len(self.vocab)
        chars = self._rows_score_many([Counter(self._char_rows(s.replace(" ", ""))) for s in texts], col)
        get = self._index[1].get
        words = self._rows_score_many(
            [Counter(map(get, word_grams(t), repeat(unknown))) for t in tokens], col
        )
        return [
            self._finish(s, col, (c, w), slang, shrink) if s else None
            for s, c, w in zip(texts, chars, words, strict=True)
        ]

    def _rows_score_many(self, counts: list[Counter[int]], col: int) -> list[float | None]:
        """:meth:`_rows_score` of many texts, each given as the Counter of its rows."""
        n = len(counts)
        sizes = np.fromiter(map(len, counts), np.intp, n)
        total = int(sizes.sum())
        if total == 0:
            return [None] * n
        rows = np.fromiter(chain.from_iterable(counts), np.intp, total)
        tf = np.fromiter(chain.from_iterable(c.values() for c in counts), np.float64, total)
        tid = np.repeat(np.arange(n), sizes)
        m = self._column_weights(col)[rows]
        repeats = np.bincount(tid, tf, n) > sizes  # some n-gram occurs more than once
        tf = 1.0 + np.log(tf)
        st = np.bincount(tid, tf * m[:, 0], n)
        stt = np.bincount(tid, tf * tf * m[:, 2], n)
        sb = np.bincount(tid, m[:, 1], n)
        si = np.bincount(tid, m[:, 2], n)
        with np.errstate(divide="ignore", invalid="ignore"):
            score = np.where(repeats, st / np.sqrt(stt) + sb / np.sqrt(si), (st + sb) / np.sqrt(si))
        ok = (sizes > 0) & (si > 0.0)
        return [float(v) if k else None for v, k in zip(score.tolist(), ok.tolist(), strict=True)]

    def analyze_many(
        self, texts: Sequence[str], tokens: Sequence[Sequence[str]], *, domain: str | None = None
    ) -> list[Sentiment]:
        """:meth:`analyze` of many normalised texts with their tokens (stop words kept), via
        :meth:`logit_many`."""
        return [self._sentiment(z) for z in self.logit_many(texts, tokens, domain=domain)]

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
        return self._sentiment(self.logit(text, tokens, normalized=normalized, domain=domain))

    def _sentiment(self, z: float | None) -> Sentiment:
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
