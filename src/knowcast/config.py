"""One settings object, read from the environment (``KNOWCAST_*``) and overridable by CLI flags."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be a number, got {raw!r}") from exc


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from exc


@dataclass
class Settings:
    database_url: str = field(
        default_factory=lambda: os.environ.get("KNOWCAST_DATABASE_URL", "sqlite:///knowcast.db")
    )
    redis_url: str | None = field(default_factory=lambda: os.environ.get("KNOWCAST_REDIS_URL") or None)
    artifacts_dir: Path = field(
        default_factory=lambda: Path(os.environ.get("KNOWCAST_ARTIFACTS", "knowcast-artifacts"))
    )
    #: Largest request body the API accepts (bytes); larger ones get 413.
    max_body_bytes: int = field(default_factory=lambda: _int("KNOWCAST_MAX_BODY_BYTES", 20 * 1024 * 1024))
    #: Largest batch (rows) one request or import chunk may carry; larger ones get 413.
    max_batch_rows: int = field(default_factory=lambda: _int("KNOWCAST_MAX_BATCH_ROWS", 50_000))
    #: With auth off every request is admin: for the local quick start only.
    auth_enabled: bool = field(default_factory=lambda: os.environ.get("KNOWCAST_AUTH", "on") != "off")
    #: Secret for keyed pseudonymisation of user ids at ingest (only when asked for).
    pseudonym_key: str | None = field(
        default_factory=lambda: os.environ.get("KNOWCAST_PSEUDONYM_KEY") or None
    )
    #: Requests per second each API key (or client IP without a key) may make on average; 0 turns the
    #: limit off. Generous by default: it stops floods, not the test suite or the benchmarks.
    rate_limit: float = field(default_factory=lambda: _float("KNOWCAST_RATE_LIMIT", 1000.0))
    #: How many requests a key may make in one burst before the average rate applies.
    rate_burst: int = field(default_factory=lambda: _int("KNOWCAST_RATE_BURST", 2000))
    #: Seconds between the server's checks for new events to re-warm the dashboard's caches after (0: off;
    #: ``knowcast serve`` turns it on with 30).
    rewarm_seconds: float = field(default_factory=lambda: _float("KNOWCAST_REWARM_SECONDS", 0.0))
    #: Events whose timestamp is further than this in the future are rejected.
    max_future_skew_ms: int = 24 * 3600 * 1000


def get_settings() -> Settings:
    return Settings()
