"""Live-room metrics: viewers, watch time, rates per minute, GMV, conversion, items and their sales.

Everything is computed from the room's own event stream (joins, leaves, comments, gifts, purchases) with
timestamps in seconds; no clock is read, so a replay gives the same numbers as the live run.

* concurrent viewers = users joined and not yet left; peak = its maximum so far;
* average watch time = mean over viewers of their time in the room (open sessions count up to ``now``);
* comments / gifts / purchases per minute = a series over whole minutes since the first event;
* GMV = sum of purchase amounts (refunds subtract); conversion = distinct purchasers / distinct viewers;
* items promoted and their sales (units, revenue).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field


@dataclass
class _Item:
    item_id: str
    title: str | None = None
    price: float | None = None
    units: int = 0
    revenue: float = 0.0


@dataclass
class RoomMetrics:
    """Accumulates one room's metrics. Call the ``on_*`` methods in time order."""

    start_ts: float | None = None
    _open: dict[str, float] = field(default_factory=dict)
    _watched: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    _viewers: set[str] = field(default_factory=set)
    _purchasers: set[str] = field(default_factory=set)
    concurrent: int = 0
    peak: int = 0
    peak_ts: float | None = None
    gmv: float = 0.0
    n_comments: int = 0
    n_gifts: int = 0
    gift_value: float = 0.0
    n_purchases: int = 0
    _per_minute: dict[int, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    _items: dict[str, _Item] = field(default_factory=dict)
    last_ts: float = 0.0

    def _tick(self, ts: float, kind: str | None = None, amount: float = 0.0) -> None:
        if not isinstance(ts, (int, float)) or math.isnan(ts):
            raise ValueError(f"ts must be a number of seconds, got {ts!r}")
        if self.start_ts is None:
            self.start_ts = ts
        self.last_ts = max(self.last_ts, ts)
        if kind:
            m = int((ts - self.start_ts) // 60)
            self._per_minute[m][kind] += 1
            if amount:
                self._per_minute[m][kind + "_amount_cents"] += int(round(amount * 100))

    def on_join(self, user_id: str, ts: float) -> None:
        self._tick(ts, "joins")
        self._viewers.add(user_id)
        if user_id not in self._open:
            self._open[user_id] = ts
            self.concurrent += 1
            if self.concurrent > self.peak:
                self.peak, self.peak_ts = self.concurrent, ts
        m = int((ts - (self.start_ts or ts)) // 60)
        self._per_minute[m]["viewers_max"] = max(self._per_minute[m]["viewers_max"], self.concurrent)

    def on_leave(self, user_id: str, ts: float) -> None:
        self._tick(ts, "leaves")
        t0 = self._open.pop(user_id, None)
        if t0 is not None:
            self._watched[user_id] += max(0.0, ts - t0)
            self.concurrent -= 1

    def on_comment(self, user_id: str | None, ts: float) -> None:
        self._tick(ts, "comments")
        self.n_comments += 1
        if user_id is not None and user_id not in self._viewers:
            self._viewers.add(user_id)  # commenting proves presence even without a join event

    def on_gift(self, user_id: str | None, ts: float, value: float = 0.0) -> None:
        self._tick(ts, "gifts", value)
        self.n_gifts += 1
        self.gift_value += value

    def promote(self, item_id: str, title: str | None = None, price: float | None = None) -> None:
        """Declare an item promoted in the room (shown in the item list even before any sale)."""
        it = self._items.setdefault(item_id, _Item(item_id))
        it.title = title if title is not None else it.title
        it.price = price if price is not None else it.price

    def on_purchase(
        self, user_id: str, ts: float, amount: float, item_id: str | None = None, units: int = 1
    ) -> None:
        if amount is None or (isinstance(amount, float) and math.isnan(amount)):
            raise ValueError(f"purchase amount missing for user {user_id!r} at ts={ts}")
        self._tick(ts, "purchases", amount)
        self.n_purchases += 1
        self.gmv += amount
        self._purchasers.add(user_id)
        self._viewers.add(user_id)
        if item_id is not None:
            it = self._items.setdefault(item_id, _Item(item_id))
            it.units += units
            it.revenue += amount

    def on_refund(self, user_id: str, ts: float, amount: float, item_id: str | None = None) -> None:
        self._tick(ts, "refunds", amount)
        self.gmv -= abs(amount)
        if item_id is not None and item_id in self._items:
            self._items[item_id].revenue -= abs(amount)

    # ------------------------------------------------------------------ read
    def avg_watch_s(self, now: float | None = None) -> float:
        now = self.last_ts if now is None else now
        total = dict(self._watched)
        for u, t0 in self._open.items():
            total[u] = total.get(u, 0.0) + max(0.0, now - t0)
        return sum(total.values()) / len(total) if total else 0.0

    def conversion(self) -> float:
        return len(self._purchasers) / len(self._viewers) if self._viewers else 0.0

    def per_minute(self) -> list[dict[str, float]]:
        """One row per minute since the first event (minutes with nothing are zero rows)."""
        if not self._per_minute:
            return []
        out = []
        for m in range(0, max(self._per_minute) + 1):
            c = self._per_minute.get(m, Counter())
            out.append(
                {
                    "minute": m,
                    "comments": c["comments"],
                    "gifts": c["gifts"],
                    "purchases": c["purchases"],
                    "joins": c["joins"],
                    "leaves": c["leaves"],
                    "gmv": (c["purchases_amount_cents"] - c["refunds_amount_cents"]) / 100,
                    "viewers_max": c["viewers_max"],
                }
            )
        return out

    def rate_per_minute(self, kind: str, now: float | None = None, minutes: int = 1) -> float:
        """Events of ``kind`` per minute over the last ``minutes`` whole minutes before ``now``."""
        if self.start_ts is None:
            return 0.0
        now = self.last_ts if now is None else now
        m_now = int((now - self.start_ts) // 60)
        span = range(max(0, m_now - minutes + 1), m_now + 1)
        return sum(self._per_minute.get(m, Counter())[kind] for m in span) / max(1, len(span))

    def items(self) -> list[dict[str, object]]:
        return sorted(
            (
                {
                    "item_id": i.item_id,
                    "title": i.title,
                    "price": i.price,
                    "units": i.units,
                    "revenue": round(i.revenue, 2),
                }  # fmt: skip
                for i in self._items.values()
            ),
            key=lambda d: -float(d["revenue"]),  # type: ignore[arg-type]
        )

    def snapshot(self, now: float | None = None) -> dict[str, object]:
        return {
            "concurrent_viewers": self.concurrent,
            "peak_viewers": self.peak,
            "peak_ts": self.peak_ts,
            "viewers_total": len(self._viewers),
            "avg_watch_s": round(self.avg_watch_s(now), 2),
            "comments": self.n_comments,
            "gifts": self.n_gifts,
            "gift_value": round(self.gift_value, 2),
            "purchases": self.n_purchases,
            "comments_per_min": self.rate_per_minute("comments", now),
            "gifts_per_min": self.rate_per_minute("gifts", now),
            "gmv": round(self.gmv, 2),
            "conversion": round(self.conversion(), 4),
            "items": self.items(),
        }


__all__ = ["RoomMetrics"]
