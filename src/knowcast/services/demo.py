"""``knowcast demo``: fill the store with a reproducible simulated knowledge-commerce platform."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine, func, select

from knowcast.ingest.service import ImportReport
from knowcast.services.loading import load_frames, load_live_sessions
from knowcast.sim import SimConfig, simulate_platform
from knowcast.store.models import Item

SIZES: dict[str, dict[str, int]] = {
    "tiny": {"n_creators": 10, "n_items": 120, "n_users": 300, "days": 7},
    "small": {"n_creators": 50, "n_items": 500, "n_users": 1500, "days": 14},
    "default": {"n_creators": 200, "n_items": 2000, "n_users": 5000, "days": 30},
}


@dataclass
class DemoResult:
    config: SimConfig
    reports: dict[str, ImportReport]
    live_sessions: int


def store_is_empty(engine: Engine) -> bool:
    with engine.connect() as c:
        return (c.execute(select(func.count()).select_from(Item)).scalar() or 0) == 0


def seed_demo(
    engine: Engine,
    config: SimConfig | None = None,
    progress: Callable[[str, int], None] | None = None,
) -> DemoResult:
    """Simulate a platform and import it; events and comments are idempotent, so reseeding is safe."""
    config = config or SimConfig()
    platform = simulate_platform(config)
    frames = {
        "creators": platform.creators,
        "items": platform.items,
        "users": platform.users,
        "events": platform.events,
        "comments": platform.comments,
    }
    if progress:
        progress("simulated", 0)
    reports = load_frames(engine, frames, progress=progress)
    n_live = load_live_sessions(engine, platform.live_sessions)
    return DemoResult(config, reports, n_live)
