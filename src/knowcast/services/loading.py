"""Write whole DataFrames (a simulated platform, a converted dataset) into the store through ingestion."""

from __future__ import annotations

import json
from collections.abc import Callable

import pandas as pd
from sqlalchemy import Engine

from knowcast.ingest.service import ImportReport, import_records
from knowcast.store.bulk import frame_rows, upsert


def _jsonable(frame: pd.DataFrame) -> pd.DataFrame:
    """Timestamps to ISO strings and dict/list cells kept as is, so validation sees its usual inputs."""
    out = frame.copy()
    for c in out.columns:
        if isinstance(out[c].dtype, pd.DatetimeTZDtype) or out[c].dtype.kind == "M":
            out[c] = out[c].map(lambda v: None if pd.isna(v) else pd.Timestamp(v).isoformat())
    return out


def load_frames(
    engine: Engine,
    frames: dict[str, pd.DataFrame],
    *,
    chunk_rows: int = 100_000,
    create_missing: bool = False,
    progress: Callable[[str, int], None] | None = None,
) -> dict[str, ImportReport]:
    """Import frames in dependency order (creators, items, users, events, comments), chunked."""
    reports: dict[str, ImportReport] = {}
    for kind in ("creators", "items", "users", "events", "comments"):
        frame = frames.get(kind)
        if frame is None or not len(frame):
            continue
        total: ImportReport | None = None
        for start in range(0, len(frame), chunk_rows):
            part = _jsonable(frame.iloc[start : start + chunk_rows].reset_index(drop=True))
            if kind == "events" and "props" in part:
                part["props"] = [
                    json.dumps(v, ensure_ascii=False) if isinstance(v, dict) else None for v in part["props"]
                ]
            rep = import_records(engine, kind, part, create_missing=create_missing, source=f"frame:{kind}")
            if total is None:
                total = rep
            else:
                total.rows_read += rep.rows_read
                total.rows_written += rep.rows_written
                total.duplicates += rep.duplicates
                total.seconds += rep.seconds
            if progress:
                progress(kind, len(part))
        if total is not None:
            reports[kind] = total
    return reports


def load_live_sessions(engine: Engine, sessions: pd.DataFrame) -> int:
    if not len(sessions):
        return 0
    cols = ["item_id", "scheduled_start", "started_at", "ended_at", "state"]
    frame = sessions[cols].copy()
    for c in ("scheduled_start", "started_at", "ended_at"):
        frame[c] = pd.to_datetime(frame[c], utc=True)
    with engine.begin() as conn:
        return upsert(conn, "live_sessions", ["item_id"], cols, frame_rows(frame, cols))
