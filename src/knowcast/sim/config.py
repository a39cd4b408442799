"""Simulation settings: one frozen dataclass, every field defaulted and checked."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

import pandas as pd


@dataclass(frozen=True)
class SimConfig:
    """Size and seed of a simulated knowledge-commerce platform.

    The same config always gives the same platform (entities, events, ids and truth).
    """

    seed: int = 0
    n_creators: int = 200
    n_items: int = 2000
    n_users: int = 5000
    days: int = 30
    start: str = "2026-10-01"
    #: mean sessions a user opens per day (lognormal across users)
    sessions_per_day: float = 0.7
    #: impressions per feed session
    feed_slate: int = 6
    #: share of the catalog that is paid (course, column, ebook, audio, membership) and that is live
    paid_share: float = 0.3
    live_share: float = 0.05
    #: run the simulated checkout experiment (exposure events and variants)
    experiment: bool = True
    #: draw text from ../shared/data when present (False: built-in lists only)
    use_shared_data: bool = True

    def __post_init__(self) -> None:
        for name in ("n_creators", "n_items", "n_users", "days", "feed_slate"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"SimConfig.{name} must be a positive int, got {v!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"SimConfig.seed must be a non-negative int, got {self.seed!r}")
        if self.n_items < 3 * self.n_creators // 10 + 10:
            raise ValueError(
                f"SimConfig.n_items={self.n_items} is too small for n_creators={self.n_creators}"
            )
        for name in ("paid_share", "live_share"):
            v = getattr(self, name)
            if not 0.0 < v < 1.0:
                raise ValueError(f"SimConfig.{name} must be in (0, 1), got {v!r}")
        if self.paid_share + self.live_share >= 0.9:
            raise ValueError("SimConfig.paid_share + live_share must leave room for short videos (< 0.9)")
        if not self.sessions_per_day > 0:
            raise ValueError(f"SimConfig.sessions_per_day must be > 0, got {self.sessions_per_day!r}")
        try:
            ts = pd.Timestamp(self.start)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"SimConfig.start is not a date: {self.start!r}") from exc
        if ts is pd.NaT:
            raise ValueError(f"SimConfig.start is not a date: {self.start!r}")

    @property
    def start_ts(self) -> pd.Timestamp:
        ts = pd.Timestamp(self.start)
        return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")

    @property
    def start_ms(self) -> int:
        return int(self.start_ts.value // 1_000_000)

    @property
    def end_ms(self) -> int:
        return self.start_ms + self.days * 86_400_000

    def fingerprint(self) -> str:
        """Six hex digits naming this config; event and comment ids carry it, so two configs never clash."""
        return hashlib.sha1(repr(sorted(asdict(self).items())).encode()).hexdigest()[:6]
