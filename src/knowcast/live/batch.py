"""Batch analysis of a table of comments (what ``knowcast analyze comments FILE`` writes).

For each row: the normalised text, moderation verdict, category, matched span and word, sentiment label and
score, is_question and keywords. Works on a pandas DataFrame; the CLI reads and writes the files.
"""

from __future__ import annotations

from collections.abc import Callable

from knowcast.live.pipeline import CommentPipeline

_CHUNK = 1000

OUTPUT_COLUMNS: tuple[str, ...] = (
    "normalized",
    "moderation",
    "category",
    "span_start",
    "span_end",
    "matched",
    "reason",
    "sentiment",
    "sentiment_score",
    "is_question",
    "keywords",
)


def analyze_frame(
    df,
    text_column: str = "text",
    pipeline: CommentPipeline | None = None,
    progress: Callable[[int, int], None] | None = None,
):
    """A copy of ``df`` with the analysis columns appended (``keywords`` joined by ``|``).

    Non-string cells (numbers) are analysed as their text; missing cells as empty comments.
    """
    import pandas as pd

    if text_column not in df.columns:
        raise ValueError(f"text column {text_column!r} not in the file; columns are {list(df.columns)}")
    # a table of comments is analysed in full: blocked comments get their sentiment and keywords too
    pipe = pipeline if pipeline is not None else CommentPipeline(analyze_blocked=True)
    rows = []
    n = len(df)
    values = []
    for v in df[text_column].tolist():
        if v is None or (isinstance(v, float) and pd.isna(v)):
            v = ""
        elif not isinstance(v, (str, bytes)):
            v = str(v)
        values.append(v)
    # batches of _CHUNK through the batch path (moderation of the chunk at once, each distinct text once)
    analyzed = (a for i in range(0, n, _CHUNK) for a in pipe.analyze_many(values[i : i + _CHUNK]))
    for i, a in enumerate(analyzed):
        span = a.verdict.span
        rows.append(
            (
                a.normalized,
                a.verdict.action,
                a.verdict.category or "",
                span[0] if span else None,
                span[1] if span else None,
                a.verdict.matched or "",
                a.verdict.reason,
                a.sentiment.label,
                round(a.sentiment.score, 4),
                a.is_question,
                "|".join(a.keywords),
            )
        )
        if progress is not None and (i + 1) % 1000 == 0:
            progress(i + 1, n)
    out = df.copy()
    res = pd.DataFrame(rows, columns=list(OUTPUT_COLUMNS), index=df.index)
    for c in OUTPUT_COLUMNS:
        out[c] = res[c].astype("Int64") if c.startswith("span_") else res[c]
    return out


__all__ = ["OUTPUT_COLUMNS", "analyze_frame"]
