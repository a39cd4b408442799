"""File readers: formats, encodings, structural errors with exact line numbers."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from knowcast.ingest.readers import FileFormatError, detect_encoding, read_chunks


def lines_of(path: Path, **kw) -> tuple[list[int], list[str], dict]:  # type: ignore[no-untyped-def]
    lines: list[int] = []
    errors: list[str] = []
    cols: dict = {}
    for ch in read_chunks(path, **kw):
        lines += list(ch.lines)
        errors += [str(e) for e in ch.errors]
        for k, v in ch.columns.items():
            cols.setdefault(k, []).extend(list(v))
    return lines, errors, cols


def test_csv_line_numbers_survive_multiline_values_blank_lines_and_bad_rows(tmp_path: Path) -> None:
    p = tmp_path / "x.csv"
    p.write_text('a,b,c\n1,2,3\n4,5\n6,7,8,9\n\n10,"x\ny",12\n13,14,15\n')
    lines, errors, cols = lines_of(p)
    assert lines == [2, 6, 8]
    assert cols["a"] == ["1", "10", "13"] and cols["b"][1] == "x\ny"
    assert errors == [
        "line 3: field '<row>': expected 3 columns as in the header, found 2",
        "line 4: field '<row>': expected 3 columns as in the header, found 4",
    ]


def test_unclosed_quote_is_reported_at_its_line(tmp_path: Path) -> None:
    p = tmp_path / "x.csv"
    p.write_text('a,b\n1,2\n3,"oops\n5,6\n')
    lines, errors, _ = lines_of(p)
    assert lines == [2]
    assert errors == ["line 3: field '<row>': malformed CSV: a quoted value is not closed"]


def test_line_numbers_across_many_chunks(tmp_path: Path) -> None:
    rows = ["a,b"]
    for i in range(30_000):
        rows.append("bad" if i % 9_000 == 5 else (f'{i},"two\nlines"' if i % 7_000 == 3 else f"{i},x"))
    p = tmp_path / "big.csv"
    p.write_text("\n".join(rows) + "\n")
    lines, errors, cols = lines_of(p, chunk_rows=1000)
    multi = [i for i in range(30_000) if i % 7_000 == 3 and i % 9_000 != 5]
    for a, line in zip(cols["a"], lines, strict=True):
        i = int(a)
        assert line == i + 2 + sum(1 for m in multi if m < i)
    assert len(errors) == len([i for i in range(30_000) if i % 9_000 == 5])


def test_gbk_is_detected(tmp_path: Path) -> None:
    p = tmp_path / "gbk.csv"
    p.write_bytes("user_id,city\nu1,北京\n".encode("gbk"))
    assert detect_encoding(p) == "gb18030"
    _, errors, cols = lines_of(p)
    assert cols["city"] == ["北京"] and not errors


def test_binary_garbage_is_named(tmp_path: Path) -> None:
    p = tmp_path / "bin.csv"
    p.write_bytes(b"a,b\n" + bytes(range(128, 256)) * 50)
    with pytest.raises(FileFormatError, match="not UTF-8"):
        list(read_chunks(p))


def test_empty_and_missing_files(tmp_path: Path) -> None:
    empty = tmp_path / "e.csv"
    empty.write_text("")
    with pytest.raises(FileFormatError, match="empty"):
        list(read_chunks(empty))
    with pytest.raises(FileFormatError, match="does not exist"):
        list(read_chunks(tmp_path / "nope.csv"))
    with pytest.raises(FileFormatError, match="format"):
        list(read_chunks(empty.with_suffix(".xls").resolve() if False else _touch(tmp_path / "f.xls")))


def _touch(p: Path) -> Path:
    p.write_text("x")
    return p


def test_jsonl_bad_lines_are_row_errors(tmp_path: Path) -> None:
    p = tmp_path / "x.jsonl"
    p.write_text('{"a": 1}\nnot json\n\n[1, 2]\n{"a": 2, "b": "z"}\n')
    lines, errors, cols = lines_of(p)
    assert lines == [1, 5] and cols["a"] == [1, 2] and cols["b"] == [None, "z"]
    assert errors[0].startswith("line 2: field '<row>': not valid JSON")
    assert errors[1] == "line 4: field '<row>': expected a JSON object per line"


def test_parquet_reads_and_broken_parquet_is_named(tmp_path: Path) -> None:
    p = tmp_path / "x.parquet"
    pd.DataFrame({"a": ["1", "2"], "b": [1.5, None]}).to_parquet(p)
    lines, _, cols = lines_of(p)
    assert lines == [1, 2] and list(cols["a"]) == ["1", "2"]
    broken = tmp_path / "b.parquet"
    broken.write_bytes(p.read_bytes()[:40])
    with pytest.raises(FileFormatError, match="not a readable Parquet"):
        list(read_chunks(broken))
