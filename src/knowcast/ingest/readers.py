"""Streaming readers for CSV, JSONL and Parquet: constant memory, chunks of columns with line numbers.

A file of any size streams through in chunks; each chunk carries the line (CSV, JSONL) or row (Parquet)
number of every record so validation errors can name it. Structural problems (an unclosed quote, a row
with the wrong number of columns, a line that is not JSON) become row errors, not crashes.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from knowcast.ingest.validate import RowError

FORMATS = ("csv", "jsonl", "parquet")


class FileFormatError(ValueError):
    """The file as a whole cannot be read (wrong encoding, empty, unknown format)."""


@dataclass
class RawChunk:
    columns: dict[str, list[Any]]
    lines: list[int]
    errors: list[RowError] = field(default_factory=list)  # structural errors of this chunk's lines
    bytes_read: int = 0

    def __len__(self) -> int:
        return len(self.lines)


def detect_format(path: Path, fmt: str | None = None) -> str:
    if fmt:
        fmt = fmt.lower()
        if fmt not in FORMATS:
            raise FileFormatError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
        return fmt
    suffixes = [s.lower() for s in path.suffixes]
    for s in reversed(suffixes):
        if s in (".csv", ".tsv"):
            return "csv"
        if s in (".jsonl", ".ndjson", ".json"):
            return "jsonl"
        if s in (".parquet", ".pq"):
            return "parquet"
    raise FileFormatError(f"cannot tell the format of {path.name} from its extension; pass --format csv|jsonl|parquet")


def detect_encoding(path: Path, encoding: str | None = None, sample_bytes: int = 1 << 20) -> str:
    """UTF-8 (with or without BOM) by default; GB18030 (a superset of GBK) is detected and named."""
    if encoding:
        return encoding
    with open(path, "rb") as fh:
        sample = fh.read(sample_bytes)
    if sample.startswith(b"\xef\xbb\xbf"):
        return "utf-8-sig"
    try:
        sample.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError as exc:
        # A multi-byte char cut by the sample boundary is fine.
        if exc.start >= len(sample) - 4:
            return "utf-8"
        try:
            sample.decode("gb18030")
        except UnicodeDecodeError:
            raise FileFormatError(
                f"{path.name} is not UTF-8 (bad byte at offset {exc.start}) and not GBK either; "
                "pass --encoding with the file's encoding"
            ) from None
        return "gb18030"


def read_chunks(
    path: str | Path,
    fmt: str | None = None,
    *,
    chunk_rows: int = 50_000,
    encoding: str | None = None,
    delimiter: str | None = None,
) -> Iterator[RawChunk]:
    path = Path(path)
    if not path.exists():
        raise FileFormatError(f"{path} does not exist")
    if path.is_dir():
        raise FileFormatError(f"{path} is a directory, not a file")
    if path.stat().st_size == 0:
        raise FileFormatError(f"{path.name} is empty: expected a header row and data")
    fmt = detect_format(path, fmt)
    if fmt == "parquet":
        yield from _parquet_chunks(path, chunk_rows)
        return
    enc = detect_encoding(path, encoding)
    if fmt == "csv":
        if delimiter is None:
            delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
        yield from _csv_chunks(path, enc, chunk_rows, delimiter)
    else:
        yield from _jsonl_chunks(path, enc, chunk_rows)


def _csv_chunks(path: Path, enc: str, chunk_rows: int, delimiter: str) -> Iterator[RawChunk]:
    with open(path, encoding=enc, newline="") as fh:
        reader = csv.reader(fh, delimiter=delimiter, strict=True)
        try:
            header = next(reader)
        except StopIteration:
            raise FileFormatError(f"{path.name} is empty: expected a header row") from None
        except UnicodeDecodeError as exc:
            raise FileFormatError(f"{path.name}: not valid {enc} text ({exc.reason})") from None
        header = [h.strip() for h in header]
        if not any(header):
            raise FileFormatError(f"{path.name}: the first line must be a header row naming the columns")
        dup = {h for h in header if header.count(h) > 1}
        if dup:
            raise FileFormatError(f"{path.name}: duplicated column names in header: {', '.join(sorted(dup))}")
        ncol = len(header)
        rows: list[list[str]] = []
        lines: list[int] = []
        errors: list[RowError] = []
        prev_line = reader.line_num
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                # An unclosed quote swallows the rest of the file: report it at the line it opened.
                errors.append(RowError(prev_line + 1, "<row>", f"malformed CSV: {exc}"))
                break
            except UnicodeDecodeError as exc:
                errors.append(RowError(prev_line + 1, "<row>", f"not valid {enc} text ({exc.reason})"))
                break
            start = prev_line + 1
            prev_line = reader.line_num
            if not row or (len(row) == 1 and row[0] == ""):
                continue  # blank line
            if len(row) != ncol:
                errors.append(
                    RowError(start, "<row>", f"expected {ncol} columns as in the header, found {len(row)}")
                )
                continue
            rows.append(row)
            lines.append(start)
            if len(rows) >= chunk_rows:
                yield RawChunk(_columns(header, rows), lines, errors, fh.buffer.tell())
                rows, lines, errors = [], [], []
        if rows or errors:
            yield RawChunk(_columns(header, rows), lines, errors, fh.buffer.tell())


def _columns(header: list[str], rows: list[list[str]]) -> dict[str, list[Any]]:
    if not rows:
        return {h: [] for h in header}
    cols = list(zip(*rows, strict=True))
    return {h: list(c) for h, c in zip(header, cols, strict=True)}


def _jsonl_chunks(path: Path, enc: str, chunk_rows: int) -> Iterator[RawChunk]:
    records: list[dict[str, Any]] = []
    lines: list[int] = []
    errors: list[RowError] = []
    keys: dict[str, None] = {}
    with open(path, encoding=enc) as fh:
        lineno = 0
        while True:
            try:
                line = fh.readline()
            except UnicodeDecodeError as exc:
                errors.append(RowError(lineno + 1, "<row>", f"not valid {enc} text ({exc.reason})"))
                break
            if not line:
                break
            lineno += 1
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as exc:
                errors.append(RowError(lineno, "<row>", f"not valid JSON: {exc.msg}"))
                continue
            if not isinstance(obj, dict):
                errors.append(RowError(lineno, "<row>", "expected a JSON object per line"))
                continue
            for k in obj:
                keys.setdefault(k, None)
            records.append(obj)
            lines.append(lineno)
            if len(records) >= chunk_rows:
                yield RawChunk(_records_to_columns(records, keys), lines, errors, fh.buffer.tell())
                records, lines, errors = [], [], []
    if records or errors:
        yield RawChunk(_records_to_columns(records, keys), lines, errors)


def _records_to_columns(records: list[dict[str, Any]], keys: dict[str, None]) -> dict[str, list[Any]]:
    return {k: [r.get(k) for r in records] for k in keys}


def records_chunk(records: list[dict[str, Any]], first_line: int = 1) -> RawChunk:
    """A chunk from in-memory records (HTTP batches, library calls); 'line' is the 1-based position."""
    keys: dict[str, None] = {}
    errors: list[RowError] = []
    good: list[dict[str, Any]] = []
    lines: list[int] = []
    for i, r in enumerate(records):
        if not isinstance(r, dict):
            errors.append(RowError(first_line + i, "<row>", "expected an object"))
            continue
        for k in r:
            keys.setdefault(k, None)
        good.append(r)
        lines.append(first_line + i)
    return RawChunk(_records_to_columns(good, keys), lines, errors)


def _parquet_chunks(path: Path, chunk_rows: int) -> Iterator[RawChunk]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for broken files
        raise FileFormatError(f"{path.name} is not a readable Parquet file: {exc}") from None
    row = 1
    for batch in pf.iter_batches(batch_size=chunk_rows):
        frame = batch.to_pandas()
        cols = {c: frame[c] for c in frame.columns}
        n = len(frame)
        yield RawChunk(cols, list(range(row, row + n)))  # type: ignore[arg-type]
        row += n
