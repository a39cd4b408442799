"""Trending words in a live room: terms bursting in a sliding window against the room's own baseline.

Raw counts would always crown "哈哈哈" and "666". Instead each term's count in the last ``window_s`` seconds
is compared with what the room's baseline predicts for a window of this size and volume:

    expected_t = share_t × N_window,   share_t = (B_t + α) / (B + α·V)

where ``B_t`` is the term's exponentially decayed count in the baseline (everything that has left the
window, half-life ``halflife_s``), ``B`` the decayed total, ``V`` the baseline vocabulary size and ``α`` a
smoothing prior. The burst score is a Poisson z-score ``(c_t − expected_t) / sqrt(expected_t + 1)``; a term
trends when it is seen at least ``min_count`` times and ``z ≥ min_z``. New words (never in the baseline)
trend as soon as several people use them; words the room always says need a real jump.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Iterable


class TrendDetector:
    """Sliding-window burst detection per term. Timestamps in seconds, non-decreasing."""

    def __init__(
        self,
        window_s: float = 60.0,
        halflife_s: float = 600.0,
        min_count: int = 3,
        min_z: float = 3.0,
        alpha: float = 0.5,
    ) -> None:
        if window_s <= 0 or halflife_s <= 0:
            raise ValueError("window_s and halflife_s must be > 0")
        self.window_s = window_s
        self.halflife_s = halflife_s
        self.min_count = min_count
        self.min_z = min_z
        self.alpha = alpha
        self._window: deque[tuple[float, tuple[str, ...]]] = deque()
        self._counts: Counter[str] = Counter()
        self._n_window = 0
        self._base: dict[str, float] = {}
        self._base_total = 0.0
        self._base_ts: float | None = None
        self._now = 0.0

    def add(self, terms: Iterable[str], ts: float) -> None:
        """Record the (deduplicated) terms of one comment at time ``ts``."""
        uniq = tuple(dict.fromkeys(terms))
        self._advance(ts)
        self._window.append((ts, uniq))
        self._counts.update(uniq)
        self._n_window += 1

    # Decay without touching every term: baseline values are stored multiplied by 2**((t - t_ref)/h), so
    # adding at time t costs O(1); reading divides by the current factor. Rebased when the factor grows.
    def _grow(self, ts: float) -> float:
        if self._base_ts is None:
            self._base_ts = ts
        e = (ts - self._base_ts) / self.halflife_s
        if e > 40:
            f = 2.0**-e
            for k in list(self._base):
                v = self._base[k] * f
                if v < 1e-6:
                    del self._base[k]
                else:
                    self._base[k] = v
            self._base_total *= f
            self._base_ts = ts
            e = 0.0
        return 2.0**e

    def _advance(self, now: float) -> None:
        self._now = max(self._now, now)
        cutoff = self._now - self.window_s
        while self._window and self._window[0][0] < cutoff:
            ts, terms = self._window.popleft()
            g = self._grow(ts)
            for t in terms:
                self._counts[t] -= 1
                if self._counts[t] <= 0:
                    del self._counts[t]
                self._base[t] = self._base.get(t, 0.0) + g
            self._base_total += g
            self._n_window -= 1

    def trending(self, n: int = 10, now: float | None = None) -> list[dict[str, float | str | int]]:
        """Top ``n`` bursting terms: term, count in window, expected count, z-score (highest z first)."""
        if now is not None:
            self._advance(now)
        if not self._counts:
            return []
        vocab = max(len(self._base), 1)
        g = self._grow(self._now) if self._base_ts is not None else 1.0
        alpha = self.alpha * g  # the prior in the same scaled units as the stored baseline
        denom = self._base_total + alpha * vocab
        out = []
        for term, c in self._counts.items():
            if c < self.min_count:
                continue
            share = (self._base.get(term, 0.0) + alpha) / denom if denom > 0 else 0.0
            expected = share * self._n_window if self._base_total > 0 else 0.0
            z = (c - expected) / math.sqrt(expected + 1.0)
            if z >= self.min_z:
                out.append({"term": term, "count": c, "expected": round(expected, 3), "z": round(z, 3)})
        out.sort(key=lambda d: (-float(d["z"]), -int(d["count"])))
        return out[:n]

    def top_counts(self, n: int = 10) -> list[tuple[str, int]]:
        """Plain most frequent terms in the current window (for reasons and dashboards)."""
        return self._counts.most_common(n)


__all__ = ["TrendDetector"]
