"""The live-comment pipeline and the in-memory state of one room.

``CommentPipeline.analyze`` runs the six steps for one comment, in order: normalise → moderate (lexicon,
evasions, contacts; flood control when the pipeline belongs to a room) → sentiment → question → keywords.
Steps 5 and 6 (trending, highlights) are room-level and live in :class:`RoomState`, which feeds every
analysed comment and every gift/purchase/join into sliding windows and keeps what the console shows:
moderated stream, top questions now, trending words, sentiment over time, highlight candidates and live
metrics. ``RoomState.snapshot()`` is a JSON-able dict the lead's WebSocket pushes; ``RoomState.record()``
is everything the room saw (comments with verdicts, metrics per minute, highlights) for replay and
after-the-fact analysis.
"""

from __future__ import annotations

from collections import Counter, OrderedDict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from knowcast.live.highlights import HighlightDetector
from knowcast.live.metrics import RoomMetrics
from knowcast.live.trending import TrendDetector
from knowcast.text.keywords import is_keyword_token, keywords
from knowcast.text.moderation import PASS, FloodGuard, Moderator, Verdict, default_moderator
from knowcast.text.normalize import normalize, to_text
from knowcast.text.questions import QuestionClusterer, is_question
from knowcast.text.sentiment import Sentiment, SentimentModel, default_model
from knowcast.text.tokenize import remove_stopwords, tokenize

MAX_COMMENT_CHARS = 10_000
_CACHE_MAX_CHARS = 512  # longer texts are analysed afresh (bounds the caches' memory)
_NEUTRAL = Sentiment("neutral", 0.0, 0.5)
#: What the pipeline derives from a normalised text: (sentiment, is_question, tokens without stop words,
#: keywords).
TextAnalysis = tuple[Sentiment, bool, tuple[str, ...], tuple[str, ...]]
#: One comment of a batch: (text, ts, user_id, comment_id).
CommentItem = tuple[str | bytes, float, str | None, str | None]


@dataclass(slots=True)
class AnalyzedComment:
    """One comment after the pipeline (what moderators and the console see)."""

    text: str
    normalized: str
    ts: float
    user_id: str | None
    verdict: Verdict
    sentiment: Sentiment
    is_question: bool
    keywords: list[str]
    tokens: list[str] = field(default_factory=list)
    question_id: int | None = None
    comment_id: str | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "comment_id": self.comment_id,
            "ts": self.ts,
            "user_id": self.user_id,
            "text": self.text,
            "normalized": self.normalized,
            "moderation": self.verdict.to_dict(),
            "sentiment": self.sentiment.to_dict(),
            "is_question": self.is_question,
            "question_id": self.question_id,
            "keywords": self.keywords,
        }


class CommentPipeline:
    """Stateless per-comment analysis (flood control is added by :class:`RoomState`).

    ``moderator`` and ``sentiment`` default to the shared, built-once instances; comments longer than
    ``MAX_COMMENT_CHARS`` are cut before the costly steps (moderation always sees the whole text).

    Speed: live chat repeats itself (raids paste one slogan hundreds of times, viewers copy questions), so
    the text steps (normalise; tokens, sentiment, question, keywords of the normalised text) are cached in
    LRU caches of ``cache_size`` entries keyed by the text; each is a pure function of the text, so a cache
    hit returns exactly what a fresh analysis would. Comments the lexicon blocks skip sentiment, question
    and keywords (the room never uses them: neutral, not a question, no keywords) unless
    ``analyze_blocked`` is set, as the batch analysis does.
    """

    def __init__(
        self,
        moderator: Moderator | None = None,
        sentiment: SentimentModel | None = None,
        n_keywords: int = 5,
        cache_size: int = 32768,
        analyze_blocked: bool = False,
    ) -> None:
        if cache_size < 0:
            raise ValueError(f"cache_size must be >= 0, got {cache_size}")
        self.moderator = moderator if moderator is not None else default_moderator()
        self.sentiment = sentiment if sentiment is not None else default_model()
        self.n_keywords = n_keywords
        self.cache_size = cache_size
        self.analyze_blocked = analyze_blocked
        if cache_size:
            self._norm = lru_cache(maxsize=cache_size)(normalize)
        else:
            self._norm = normalize
        self._texts: OrderedDict[str, TextAnalysis] = OrderedDict()  # LRU of _analyze_text results

    def _analyze_text(self, norm: str) -> TextAnalysis:
        """(sentiment, is_question, tokens without stop words, keywords) of normalised text."""
        all_toks = tokenize(norm, stopwords=False, normalized=True) if norm else []
        return self._finish_text(norm, all_toks, self.sentiment.analyze(norm, all_toks, normalized=True))

    def _finish_text(self, norm: str, all_toks: list[str], senti: Sentiment) -> TextAnalysis:
        toks = remove_stopwords(all_toks)
        q = is_question(norm, normalized=True)
        kws = keywords(norm, self.n_keywords, tokens=toks)
        return senti, q, tuple(toks), tuple(kws)

    def _text(self, norm: str) -> TextAnalysis:
        """:meth:`_analyze_text` through the LRU cache (texts up to ``_CACHE_MAX_CHARS``)."""
        t = self._texts.get(norm)
        if t is not None:
            self._touch(norm)
            return t
        t = self._analyze_text(norm)
        self._remember(norm, t)
        return t

    def _touch(self, norm: str) -> None:
        try:
            self._texts.move_to_end(norm)
        except KeyError:  # evicted by another thread in between (the API analyses in worker threads)
            pass

    def _remember(self, norm: str, t: TextAnalysis) -> None:
        if self.cache_size and len(norm) <= _CACHE_MAX_CHARS:
            self._texts[norm] = t
            if len(self._texts) > self.cache_size:
                try:
                    self._texts.popitem(last=False)
                except KeyError:  # emptied by another thread
                    pass

    def _analyze_texts(self, norms: list[str]) -> list[TextAnalysis]:
        """:meth:`_analyze_text` of distinct texts, cache misses together: sentiment scores them in one
        vectorised pass (:meth:`SentimentModel.analyze_many`, when the model has it)."""
        out: list[TextAnalysis | None] = []
        miss: list[int] = []
        for k, norm in enumerate(norms):
            t = self._texts.get(norm)
            if t is not None:
                self._touch(norm)
            else:
                miss.append(k)
            out.append(t)
        batch = getattr(self.sentiment, "analyze_many", None)
        if miss and batch is not None:
            texts = [norms[k] for k in miss]
            toks = [tokenize(n, stopwords=False, normalized=True) if n else [] for n in texts]
            for k, norm, all_toks, senti in zip(miss, texts, toks, batch(texts, toks), strict=True):
                out[k] = t = self._finish_text(norm, all_toks, senti)
                self._remember(norm, t)
        else:
            for k in miss:
                out[k] = self._text(norms[k])
        return out  # type: ignore[return-value]

    def analyze(
        self,
        text: str | bytes,
        ts: float = 0.0,
        user_id: str | None = None,
        comment_id: str | None = None,
        flood: FloodGuard | None = None,
    ) -> AnalyzedComment:
        raw = to_text(text)
        verdict = self.moderator.moderate(raw)
        if flood is not None:
            fv = flood.check(raw, user_id, ts)
            if fv.flagged and (not verdict.flagged or (verdict.action == "review" and fv.action == "block")):
                verdict = fv
        head = raw[:MAX_COMMENT_CHARS]
        short = len(head) <= _CACHE_MAX_CHARS
        norm = self._norm(head) if short else normalize(head)
        if verdict.action == "block" and not self.analyze_blocked:
            return AnalyzedComment(head, norm, ts, user_id, verdict, _NEUTRAL, False, [], [], None,
                                   comment_id)  # fmt: skip
        senti, q, toks, kws = self._text(norm)
        return AnalyzedComment(head, norm, ts, user_id, verdict, senti, q, list(kws), list(toks), None,
                               comment_id)  # fmt: skip

    def cache_clear(self) -> None:
        """Forget cached text analyses (benchmarks start cold; a retrained model should too)."""
        if hasattr(self._norm, "cache_clear"):
            self._norm.cache_clear()
        self._texts.clear()

    def analyze_many(self, texts: Iterable[str | bytes]) -> list[AnalyzedComment]:
        """:meth:`analyze` of each text (time 0, anonymous), through the batch path."""
        return self.analyze_batch([(t, 0.0, None, None) for t in texts])

    def analyze_batch(
        self, items: Sequence[CommentItem], flood: FloodGuard | None = None
    ) -> list[AnalyzedComment]:
        """:meth:`analyze` of each ``(text, ts, user_id, comment_id)`` item, in order, with the same results
        (``flood`` sees the comments in order, as one-by-one calls would feed it), but batched: moderation
        runs once over the batch (:meth:`Moderator.moderate_many`) and each distinct text is normalised and
        analysed (tokens, sentiment, question, keywords) once, however often the batch repeats it."""
        raws = [to_text(it[0]) for it in items]
        verdicts = self.moderator.moderate_many(raws)
        if flood is not None:
            for k, (raw, it) in enumerate(zip(raws, items, strict=True)):
                fv = flood.check(raw, it[2], it[1])
                v = verdicts[k]
                if fv.flagged and (not v.flagged or (v.action == "review" and fv.action == "block")):
                    verdicts[k] = fv
        heads = [raw[:MAX_COMMENT_CHARS] for raw in raws]
        norm_of: dict[str, str] = {}
        for head in heads:
            if head not in norm_of:
                norm_of[head] = self._norm(head) if len(head) <= _CACHE_MAX_CHARS else normalize(head)
        wanted = {
            norm_of[head]: None
            for head, v in zip(heads, verdicts, strict=True)
            if v.action != "block" or self.analyze_blocked
        }
        text_of = dict(zip(wanted, self._analyze_texts(list(wanted)), strict=True))
        out: list[AnalyzedComment] = []
        for head, v, it in zip(heads, verdicts, items, strict=True):
            norm = norm_of[head]
            t = text_of.get(norm)
            if t is None or (v.action == "block" and not self.analyze_blocked):
                out.append(AnalyzedComment(head, norm, it[1], it[2], v, _NEUTRAL, False, [], [], None, it[3]))
            else:
                senti, q, toks, kws = t
                out.append(
                    AnalyzedComment(head, norm, it[1], it[2], v, senti, q, list(kws), list(toks), None, it[3])
                )
        return out


class RoomState:
    """Everything one live room knows right now, fed in time order (seconds since any fixed origin).

    Comments with a blocking verdict are recorded (moderators review them) but never count toward
    questions, trending words, sentiment or highlights.
    """

    def __init__(
        self,
        room_id: str = "room",
        pipeline: CommentPipeline | None = None,
        flood: FloodGuard | None = None,
        trend: TrendDetector | None = None,
        highlights: HighlightDetector | None = None,
        questions: QuestionClusterer | None = None,
        sentiment_bucket_s: float = 60.0,
        recent: int = 50,
        keep_record: bool = True,
    ) -> None:
        self.room_id = room_id
        self.pipeline = pipeline if pipeline is not None else CommentPipeline()
        self.flood = flood if flood is not None else FloodGuard()
        self.trend = trend if trend is not None else TrendDetector()
        self.highlight = highlights if highlights is not None else HighlightDetector()
        self.questions = questions if questions is not None else QuestionClusterer()
        self.metrics = RoomMetrics()
        self.sentiment_bucket_s = sentiment_bucket_s
        self._senti: dict[int, Counter[str]] = {}
        self._senti_sum: dict[int, float] = {}
        self._recent: deque[AnalyzedComment] = deque(maxlen=recent)
        self.keep_record = keep_record
        self.comments: list[AnalyzedComment] = []
        self.verdict_counts: Counter[str] = Counter()
        self.start_ts: float | None = None
        self.now = 0.0

    def _offset(self, ts: float) -> float:
        if self.start_ts is None:
            self.start_ts = ts
        self.now = max(self.now, ts)
        return ts - self.start_ts

    # ------------------------------------------------------------------ input
    def add_comments(self, items: Sequence[CommentItem]) -> list[AnalyzedComment]:
        """:meth:`add_comment` for each ``(text, ts, user_id, comment_id)`` item in order (ts non-decreasing),
        with the same room state afterwards, through :meth:`CommentPipeline.analyze_batch` (moderation of
        the whole batch at once, each distinct text analysed once)."""
        offs = [self._offset(it[1]) for it in items]
        analyzed = self.pipeline.analyze_batch(items, flood=self.flood)
        for a, off, it in zip(analyzed, offs, items, strict=True):
            self._apply(a, off, it[1], it[2])
        return analyzed

    def add_comment(
        self, text: str | bytes, ts: float, user_id: str | None = None, comment_id: str | None = None
    ) -> AnalyzedComment:
        off = self._offset(ts)
        a = self.pipeline.analyze(text, ts, user_id, comment_id, flood=self.flood)
        self._apply(a, off, ts, user_id)
        return a

    def _apply(self, a: AnalyzedComment, off: float, ts: float, user_id: str | None) -> None:
        """The room-level steps for one analysed comment (``off``: its offset from the room's start)."""
        self.verdict_counts[a.verdict.action] += 1
        self.metrics.on_comment(user_id, ts)
        if a.verdict.action != "block":
            words = [t for t in a.tokens if is_keyword_token(t)]
            self.trend.add(words, ts)
            self.highlight.add("comments", off, words=words)
            if a.is_question:
                a.question_id = self.questions.add(a.normalized, ts)
            b = int(off // self.sentiment_bucket_s)
            self._senti.setdefault(b, Counter())[a.sentiment.label] += 1
            self._senti_sum[b] = self._senti_sum.get(b, 0.0) + a.sentiment.score
        else:
            self.highlight.add("comments", off)
        self._recent.append(a)
        if self.keep_record:
            self.comments.append(a)

    def add_event(
        self,
        kind: str,
        ts: float,
        user_id: str | None = None,
        amount: float = 0.0,
        item_id: str | None = None,
    ) -> None:
        """A non-comment event: ``join``/``live_join``, ``leave``/``live_leave``, ``gift``/``tip``,
        ``purchase``, ``refund``."""
        off = self._offset(ts)
        k = kind.lower()
        if k in ("join", "live_join"):
            self.metrics.on_join(str(user_id), ts)
            self.highlight.add("joins", off)
        elif k in ("leave", "live_leave"):
            self.metrics.on_leave(str(user_id), ts)
        elif k in ("gift", "tip"):
            self.metrics.on_gift(user_id, ts, amount)
            self.highlight.add("gifts", off)
        elif k == "purchase":
            self.metrics.on_purchase(str(user_id), ts, amount, item_id)
            self.highlight.add("purchases", off)
        elif k == "refund":
            self.metrics.on_refund(str(user_id), ts, amount, item_id)
        else:
            raise ValueError(f"kind must be join/leave/gift/tip/purchase/refund, got {kind!r}")

    # ------------------------------------------------------------------ output
    def sentiment_series(self) -> list[dict[str, object]]:
        out = []
        for b in sorted(self._senti):
            c = self._senti[b]
            n = sum(c.values())
            out.append(
                {
                    "offset_s": b * self.sentiment_bucket_s,
                    "positive": c["positive"],
                    "negative": c["negative"],
                    "neutral": c["neutral"],
                    "mean_score": round(self._senti_sum[b] / n, 4) if n else 0.0,
                }
            )
        return out

    def snapshot(self, n: int = 10) -> dict[str, object]:
        """What the live console shows now (JSON-able)."""
        return {
            "room_id": self.room_id,
            "now": self.now,
            "offset_s": (self.now - self.start_ts) if self.start_ts is not None else 0.0,
            "metrics": self.metrics.snapshot(self.now),
            "verdicts": dict(self.verdict_counts),
            "top_questions": self.questions.top(n, now=self.now),
            "trending": self.trend.trending(n, now=self.now),
            "sentiment": self.sentiment_series()[-10:],
            "highlights": self.highlight.current(),
            "recent": [a.to_dict() for a in self._recent][-n:],
        }

    def finish(self) -> dict[str, object]:
        """Close open windows (end of stream) and return :meth:`record`."""
        if self.start_ts is not None:
            self.highlight.flush(self.now - self.start_ts + self.highlight.bucket_s)
        return self.record()

    def record(self) -> dict[str, object]:
        """Everything the room saw, for storage, replay and analysis after the live ends."""
        return {
            "room_id": self.room_id,
            "start_ts": self.start_ts,
            "end_ts": self.now,
            "comments": [a.to_dict() for a in self.comments],
            "metrics_per_minute": self.metrics.per_minute(),
            "metrics": self.metrics.snapshot(self.now),
            "highlights": [h.to_dict() for h in self.highlight.highlights],
            "sentiment": self.sentiment_series(),
            "verdicts": dict(self.verdict_counts),
        }


__all__ = ["MAX_COMMENT_CHARS", "PASS", "AnalyzedComment", "CommentItem", "CommentPipeline", "RoomState"]
