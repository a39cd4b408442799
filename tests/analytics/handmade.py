"""Small hand-built event logs for the analytics tests: a few users, items and events whose every metric can
be worked out by hand (or independently in pandas in the test)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from knowcast.ingest.service import import_records

DAY = 86_400_000
HOUR = 3_600_000
#: Day 20,160 since the epoch (2025-03-13): a multiple of 30 and 7, so months and weeks start on it.
D0 = 20_160
assert D0 % 30 == 0 and D0 % 7 == 0


def label(day: int) -> str:
    """The date label of day ``day`` (what cohort and day tables show)."""
    return pd.Timestamp(D0 + day, unit="D").strftime("%Y-%m-%d")


def ts(day: float, hour: float = 0.0, minute: float = 0.0) -> int:
    return int((D0 + day) * DAY + hour * HOUR + minute * 60_000)


def event(eid: str, etype: str, t: int, user: str, item: str | None = None, **extra: Any) -> dict[str, Any]:
    row: dict[str, Any] = {"event_id": eid, "type": etype, "ts": t, "user_id": user, "item_id": item}
    if "amount" in extra:
        extra.setdefault("currency", "CNY")
    row.update(extra)
    return row


def load(
    engine: Any,
    *,
    events: list[dict[str, Any]],
    items: list[dict[str, Any]] | None = None,
    creators: list[dict[str, Any]] | None = None,
    comments: list[dict[str, Any]] | None = None,
) -> pd.DataFrame:
    """Import the rows (creators, items, events, comments); every import must store every row."""
    for kind, rows in (("creators", creators), ("items", items), ("events", events), ("comments", comments)):
        if not rows:
            continue
        rep = import_records(engine, kind, rows, create_missing=True)
        assert not rep.errors, (kind, rep.errors[:3])
    return pd.DataFrame(events)
