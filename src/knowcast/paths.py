"""Where knowcast finds the shared public datasets (never copied into the repository)."""

from __future__ import annotations

import os
from pathlib import Path


def shared_data_dir() -> Path | None:
    """``$KNOWCAST_SHARED_DATA``, else the first ``shared/data`` above the cwd or the package."""
    env = os.environ.get("KNOWCAST_SHARED_DATA")
    if env:
        p = Path(env)
        return p if p.is_dir() else None
    starts = [Path.cwd(), Path(__file__).resolve()]
    for start in starts:
        for parent in [start, *start.parents]:
            cand = parent / "shared" / "data"
            if cand.is_dir():
                return cand
    return None


def shared_data(*parts: str) -> Path:
    """A path inside shared/data; raises FileNotFoundError with a clear message if absent."""
    base = shared_data_dir()
    if base is None:
        raise FileNotFoundError(
            "shared/data not found: set KNOWCAST_SHARED_DATA or run from a checkout next to ../shared/data"
        )
    p = base.joinpath(*parts)
    if not p.exists():
        raise FileNotFoundError(f"{p} does not exist")
    return p
