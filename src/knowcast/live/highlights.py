"""Highlight candidates: moments where the room spikes against its own baseline.

Signals are bucketed (``bucket_s`` seconds): comments, gifts, purchases, joins. For each signal the room's
baseline is an exponentially weighted mean of past buckets (``baseline_alpha``) with a floor
(``min_baseline``) so a quiet start does not make every comment a spike. A bucket is *hot* when some signal
reaches ``ratio`` × baseline and at least ``min_events``; consecutive hot buckets (gaps up to
``merge_gap_buckets``) form one highlight with start/end offsets and a reason such as
``"comment rate ×4.2, purchases ×3.0, top words: 价格, 怎么买"`` that a creator can cut into a short video.
Hot buckets do not feed the baseline, so a long spike does not raise its own bar.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

SIGNALS: tuple[str, ...] = ("comments", "gifts", "purchases", "joins")
_LABEL = {"comments": "comment rate", "gifts": "gifts", "purchases": "purchases", "joins": "joins"}


@dataclass
class Highlight:
    start_s: float
    end_s: float
    reason: str
    peak_ratio: float
    signals: dict[str, float]
    top_words: list[str]
    counts: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {
            "start_s": self.start_s,
            "end_s": self.end_s,
            "reason": self.reason,
            "peak_ratio": round(self.peak_ratio, 2),
            "signals": {k: round(v, 2) for k, v in self.signals.items()},
            "top_words": self.top_words,
            "counts": self.counts,
        }


class HighlightDetector:
    """Online spike detection over bucketed room signals (offsets in seconds from the stream start)."""

    def __init__(
        self,
        bucket_s: float = 10.0,
        ratio: float = 3.0,
        min_events: int = 5,
        baseline_alpha: float = 0.1,
        min_baseline: float = 1.0,
        warmup_buckets: int = 3,
        merge_gap_buckets: int = 1,
    ) -> None:
        if bucket_s <= 0 or ratio <= 1:
            raise ValueError("bucket_s must be > 0 and ratio > 1")
        self.bucket_s = bucket_s
        self.ratio = ratio
        self.min_events = min_events
        self.baseline_alpha = baseline_alpha
        self.min_baseline = min_baseline
        self.warmup_buckets = warmup_buckets
        self.merge_gap_buckets = merge_gap_buckets
        self._bucket: int | None = None
        self._cur: Counter[str] = Counter()
        self._words: Counter[str] = Counter()
        self._base: dict[str, float] = {s: 0.0 for s in SIGNALS}
        self._seen = 0
        self._open: Highlight | None = None
        self._open_words: Counter[str] = Counter()
        self._open_last = -1
        self.highlights: list[Highlight] = []

    def add(self, signal: str, offset_s: float, n: int = 1, words: Iterable[str] = ()) -> None:
        """Count ``n`` events of ``signal`` (comments/gifts/purchases/joins) at ``offset_s``."""
        if signal not in SIGNALS:
            raise ValueError(f"signal must be one of {SIGNALS}, got {signal!r}")
        b = int(offset_s // self.bucket_s)
        if self._bucket is None:
            self._bucket = b
        while b > self._bucket:
            self._close_bucket()
        self._cur[signal] += n
        self._words.update(words)

    def flush(self, offset_s: float | None = None) -> list[Highlight]:
        """Close buckets up to ``offset_s`` (or the current one) and any open highlight; returns all."""
        if self._bucket is not None:
            end_b = int(offset_s // self.bucket_s) if offset_s is not None else self._bucket + 1
            while self._bucket < end_b:
                self._close_bucket()
        self._finish()
        return self.highlights

    def _close_bucket(self) -> None:
        assert self._bucket is not None
        b = self._bucket
        ratios: dict[str, float] = {}
        if self._seen >= self.warmup_buckets:
            for s in SIGNALS:
                base = max(self._base[s], self.min_baseline)
                if self._cur[s] >= self.min_events and self._cur[s] >= self.ratio * base:
                    ratios[s] = self._cur[s] / base
        if ratios:
            if self._open is None or b - self._open_last > self.merge_gap_buckets + 1:
                self._finish()
                self._open = Highlight(b * self.bucket_s, (b + 1) * self.bucket_s, "", 0.0, {}, [])
                self._open_words = Counter()
            h = self._open
            h.end_s = (b + 1) * self.bucket_s
            for s, r in ratios.items():
                h.signals[s] = max(h.signals.get(s, 0.0), r)
            for s in SIGNALS:
                h.counts[s] = h.counts.get(s, 0) + self._cur[s]
            h.peak_ratio = max(h.peak_ratio, *ratios.values())
            self._open_words.update(self._words)
            self._open_last = b
        else:
            if self._open is not None and b - self._open_last > self.merge_gap_buckets:
                self._finish()
            for s in SIGNALS:  # only calm buckets teach the baseline
                if self._seen == 0:
                    self._base[s] = float(self._cur[s])
                else:
                    self._base[s] += self.baseline_alpha * (self._cur[s] - self._base[s])
            self._seen += 1
        self._cur = Counter()
        self._words = Counter()
        self._bucket = b + 1

    def _finish(self) -> None:
        h = self._open
        if h is None:
            return
        h.top_words = [w for w, _ in self._open_words.most_common(3)]
        parts = [f"{_LABEL[s]} ×{r:.1f}" for s, r in sorted(h.signals.items(), key=lambda kv: -kv[1])]
        if h.top_words:
            parts.append("top words: " + ", ".join(h.top_words))
        h.reason = ", ".join(parts)
        self.highlights.append(h)
        self._open = None

    def current(self) -> list[dict[str, object]]:
        """Finished highlights plus the open one (as dicts), without closing anything."""
        out = [h.to_dict() for h in self.highlights]
        if self._open is not None:
            d = self._open.to_dict()
            d["top_words"] = [w for w, _ in self._open_words.most_common(3)]
            d["open"] = True
            out.append(d)
        return out


__all__ = ["SIGNALS", "Highlight", "HighlightDetector"]
