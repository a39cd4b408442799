"""``knowcast export``: stream any table out as CSV, JSONL or Parquet, in constant memory.

Column names follow the import formats (``id`` becomes ``event_id``, ``user_id`` ...), so an export of
events, users, items or comments imports back unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from sqlalchemy import Engine, select

from knowcast.ingest.readers import FileFormatError, detect_format
from knowcast.store.models import Base

#: Tables that hold secrets never leave through export.
PRIVATE = {"api_keys", "alembic_version"}
RENAME = {
    "events": "event_id",
    "users": "user_id",
    "items": "item_id",
    "creators": "creator_id",
    "comments": "comment_id",
}


class ExportError(ValueError):
    pass


def export_table(
    engine: Engine, table: str, out: str | Path, fmt: str | None = None, chunk_rows: int = 50_000
) -> int:
    tables = {t: v for t, v in Base.metadata.tables.items() if t not in PRIVATE}
    if table not in tables:
        raise ExportError(f"unknown table {table!r}; one of {', '.join(sorted(tables))}")
    out = Path(out)
    try:
        fmt = detect_format(out, fmt)
    except FileFormatError as exc:
        raise ExportError(str(exc)) from None
    t = tables[table]
    order = list(t.primary_key.columns)
    stmt = select(t).order_by(*order)
    n = 0
    writer = None
    tmp = out.with_name(out.name + ".part")
    try:
        with engine.connect() as conn, open(tmp, "wb") as fh:
            result = conn.execution_options(stream_results=True, yield_per=chunk_rows).execute(stmt)
            for part in result.partitions(chunk_rows):
                frame = pd.DataFrame(part, columns=list(result.keys()))
                frame = _for_export(table, frame, fmt)
                if fmt == "csv":
                    frame.to_csv(fh, header=(n == 0), index=False)
                elif fmt == "jsonl":
                    for rec in frame.astype(object).where(frame.notna(), None).to_dict("records"):
                        fh.write((json.dumps(rec, ensure_ascii=False, default=str) + "\n").encode())
                else:
                    import pyarrow as pa
                    import pyarrow.parquet as pq

                    tbl = pa.Table.from_pandas(frame, preserve_index=False)
                    if writer is None:
                        writer = pq.ParquetWriter(fh, tbl.schema)
                    writer.write_table(tbl.cast(writer.schema))
                n += len(frame)
            if n == 0 and fmt == "csv":
                fh.write(
                    (
                        ",".join(
                            _for_export(table, pd.DataFrame(columns=[c.name for c in t.columns]), fmt).columns
                        )
                        + "\n"
                    ).encode()
                )
            if writer is not None:
                writer.close()
        tmp.replace(out)  # never leave a half-written file under the real name
    finally:
        tmp.unlink(missing_ok=True)
    return n


def _for_export(table: str, frame: pd.DataFrame, fmt: str) -> pd.DataFrame:
    if table in RENAME:
        frame = frame.rename(columns={"id": RENAME[table]})
    for c in frame.columns:
        if fmt != "jsonl" and frame[c].map(lambda v: isinstance(v, dict | list)).any():
            frame[c] = frame[c].map(
                lambda v: json.dumps(v, ensure_ascii=False) if isinstance(v, dict | list) else v
            )
        elif isinstance(frame[c].dtype, pd.DatetimeTZDtype) or frame[c].dtype.kind == "M":
            frame[c] = pd.to_datetime(frame[c], utc=True).map(lambda v: None if pd.isna(v) else v.isoformat())
    return frame
