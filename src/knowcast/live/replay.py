"""Replay a recorded chat log through a room, at a chosen speed.

Parsers turn the real formats into timed :class:`ChatRecord` rows:

* Bilibili danmaku XML (``<d p="offset,mode,size,colour,sent_at,pool,user_hash,row_id">text</d>``) and the
  parsed CSV (``video_time_s``, ``mode``, ``sent_at_unix``, ``text``); mode-7 "advanced" comments carry a
  JSON-like array whose fifth field is the text, which is extracted;
* Douyu live-chat CSVs: ``douyu_rooms_2018.csv`` (``seq``, ``room_id``, ``user``, ``text``; no timestamps, so
  messages are spaced ``gap_s`` apart in arrival order) and ``douyu_dytools.csv`` (ISO ``timestamp``).

:func:`replay` is a pure generator: it feeds each record to a :class:`~knowcast.live.pipeline.RoomState` and
yields ``(record, analyzed_comment)``. With ``speed > 0`` it asks the injected ``sleep`` to wait
``Δt / speed`` between records (``speed=1`` real time, ``10`` ten times faster, ``0`` as fast as possible);
the CLI passes ``time.sleep``, tests pass nothing.
"""

from __future__ import annotations

import ast
import json
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from knowcast.live.pipeline import AnalyzedComment, RoomState


@dataclass(frozen=True, slots=True)
class ChatRecord:
    offset_s: float  # seconds from the start of the stream
    text: str
    user_id: str | None = None
    room_id: str | None = None
    sent_at: float | None = None  # wall-clock Unix seconds when known
    mode: int | None = None


def _mode7_text(text: str) -> str:
    """The visible text of a Bilibili mode-7 comment (a JSON-like array; field 5 is the text)."""
    s = text.strip()
    if not s.startswith("["):
        return text
    for parse in (json.loads, ast.literal_eval):
        try:
            arr = parse(s)
        except (ValueError, SyntaxError):
            continue
        if isinstance(arr, list) and len(arr) >= 5 and isinstance(arr[4], str):
            return arr[4].replace("\\n", "\n").strip()
    return text


def parse_danmaku_xml(xml_text: str) -> list[ChatRecord]:
    """Bilibili comment XML → records sorted by video offset."""
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError as e:
        raise ValueError(f"danmaku XML does not parse: {e}") from e
    out = []
    for i, d in enumerate(root.iter("d")):
        p = (d.get("p") or "").split(",")
        if len(p) < 5:
            raise ValueError(
                f"danmaku XML <d> #{i}: attribute p needs 8 comma-separated fields, got {d.get('p')!r}"
            )
        try:
            off, mode, sent = float(p[0]), int(p[1]), float(p[4])
        except ValueError as e:
            raise ValueError(f"danmaku XML <d> #{i}: bad number in p={d.get('p')!r}") from e
        user = p[6] if len(p) > 6 and p[6] not in ("", "0") else None
        text = d.text or ""
        out.append(ChatRecord(off, _mode7_text(text) if mode == 7 else text, user, None, sent, mode))
    out.sort(key=lambda r: r.offset_s)
    return out


def records_from_frame(df, *, gap_s: float = 1.0) -> list[ChatRecord]:
    """Records from a DataFrame in any of the known layouts (danmaku CSV, Douyu CSVs, or a generic one with
    ``text`` and one of ``offset_s`` / ``ts`` / ``timestamp``)."""
    import pandas as pd

    if "text" not in df.columns:
        raise ValueError(f"chat log needs a 'text' column; columns are {list(df.columns)}")
    text = df["text"].fillna("").astype(str)
    user = df["user"] if "user" in df.columns else df["user_id"] if "user_id" in df.columns else None
    room = df["room_id"] if "room_id" in df.columns else None
    mode = df["mode"] if "mode" in df.columns else None
    sent = None
    if "video_time_s" in df.columns:
        off = pd.to_numeric(df["video_time_s"], errors="coerce")
        if "sent_at_unix" in df.columns:
            sent = pd.to_numeric(df["sent_at_unix"], errors="coerce")
    elif "offset_s" in df.columns:
        off = pd.to_numeric(df["offset_s"], errors="coerce")
    elif "timestamp" in df.columns or "ts" in df.columns:
        col = "timestamp" if "timestamp" in df.columns else "ts"
        raw = df[col]
        num = pd.to_numeric(raw, errors="coerce")
        if num.notna().all():
            sent = num
        else:
            dt = pd.to_datetime(raw, errors="coerce")
            sent = (dt - pd.Timestamp(0)).dt.total_seconds()
        off = sent - sent.min()
    else:  # arrival order only
        order = df["seq"] if "seq" in df.columns else pd.Series(range(len(df)), index=df.index)
        off = (pd.to_numeric(order) - pd.to_numeric(order).min()) * gap_s
    bad = off.isna()
    if bad.any():
        i = int(bad.to_numpy().nonzero()[0][0])
        raise ValueError(f"chat log row {i}: time is missing or not a number")
    out = []
    for i in range(len(df)):
        m = int(mode.iat[i]) if mode is not None and not pd.isna(mode.iat[i]) else None
        t = text.iat[i]
        out.append(
            ChatRecord(
                float(off.iat[i]),
                _mode7_text(t) if m == 7 else t,
                None if user is None or pd.isna(user.iat[i]) else str(user.iat[i]),
                None if room is None or pd.isna(room.iat[i]) else str(room.iat[i]),
                None if sent is None or pd.isna(sent.iat[i]) else float(sent.iat[i]),
                m,
            )
        )
    out.sort(key=lambda r: r.offset_s)
    return out


def read_chat_log(path: str | Path, *, gap_s: float = 1.0, room_id: str | None = None) -> list[ChatRecord]:
    """Read a danmaku XML or a chat CSV file into records (``room_id`` keeps one room of a multi-room log)."""
    import pandas as pd

    p = Path(path)
    if p.suffix.lower() == ".xml":
        recs = parse_danmaku_xml(p.read_text(encoding="utf-8", errors="replace"))
    else:
        recs = records_from_frame(pd.read_csv(p, dtype={"user": str, "room_id": str}), gap_s=gap_s)
    if room_id is not None:
        recs = [r for r in recs if r.room_id == str(room_id)]
    return recs


def replay(
    records: Iterable[ChatRecord],
    room: RoomState | None = None,
    *,
    speed: float = 0.0,
    sleep: Callable[[float], None] | None = None,
    limit: int | None = None,
) -> Iterator[tuple[ChatRecord, AnalyzedComment]]:
    """Feed records to ``room`` in time order; yields each record with its analysis."""
    if speed < 0:
        raise ValueError(f"speed must be >= 0, got {speed}")
    room = room if room is not None else RoomState()
    prev: float | None = None
    for n, r in enumerate(records):
        if limit is not None and n >= limit:
            break
        if speed > 0 and sleep is not None and prev is not None and r.offset_s > prev:
            sleep((r.offset_s - prev) / speed)
        prev = r.offset_s
        yield r, room.add_comment(r.text, r.offset_s, r.user_id)


__all__ = ["ChatRecord", "parse_danmaku_xml", "read_chat_log", "records_from_frame", "replay"]
