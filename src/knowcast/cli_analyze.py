"""``knowcast analyze comments FILE``: the live pipeline over a table of comments, one output row per row."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Batch analysis of files.", no_args_is_help=True)


@app.command("comments")
def comments_cmd(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="CSV, JSONL or Parquet file.")],
    text_column: Annotated[str, typer.Option("--text-column", help="The column holding the comment text.")],
    out: Annotated[Path, typer.Option("--out", help="Output CSV (input columns + analysis columns).")],
    limit: Annotated[int | None, typer.Option(help="Analyse only the first N rows.")] = None,
    encoding: Annotated[str, typer.Option(help="Input text encoding (CSV/JSONL).")] = "utf-8",
) -> None:
    """Write, for each row: normalised text, moderation verdict, category, matched span and word, sentiment
    label and score, is_question and keywords (joined by '|')."""
    import time

    import pandas as pd

    from knowcast.live.batch import OUTPUT_COLUMNS, analyze_frame

    suffix = file.suffix.lower()
    try:
        if suffix == ".parquet":
            df = pd.read_parquet(file)
        elif suffix in (".jsonl", ".ndjson"):
            df = pd.read_json(file, lines=True, encoding=encoding, dtype=False)
        else:
            df = pd.read_csv(
                file, dtype=str, keep_default_na=False, encoding=encoding, encoding_errors="replace"
            )
    except (ValueError, OSError, UnicodeError) as exc:
        typer.echo(f"error: cannot read {file}: {exc}", err=True)
        raise typer.Exit(2) from None
    if limit is not None:
        df = df.head(limit)
    t0 = time.perf_counter()

    def progress(done: int, total: int) -> None:
        rate = done / max(time.perf_counter() - t0, 1e-9)
        typer.echo(f"  {done}/{total} rows ({rate:.0f}/s)", err=True)

    try:
        res = analyze_frame(df, text_column, progress=progress)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    out.parent.mkdir(parents=True, exist_ok=True)
    res.to_csv(out, index=False)
    counts = res["moderation"].value_counts().to_dict()
    elapsed = time.perf_counter() - t0
    typer.echo(
        f"analysed {len(res)} rows in {elapsed:.1f}s → {out} (columns added: {', '.join(OUTPUT_COLUMNS)}); "
        + "verdicts: "
        + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    )


__all__ = ["app"]
