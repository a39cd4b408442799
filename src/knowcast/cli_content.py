"""``knowcast content``: tag the catalog, show an item's features, similar items, video, transcripts."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

app = typer.Typer(
    help="Content understanding: tags, topics, embeddings, video features.", no_args_is_help=True
)
console = Console(width=None if sys.stdout.isatty() else 140)
err = Console(stderr=True)

DbOption = Annotated[str | None, typer.Option("--db", help="database URL (overrides KNOWCAST_DATABASE_URL)")]
JsonOption = Annotated[bool, typer.Option("--json", help="print JSON instead of tables")]


def _store(db: str | None):  # type: ignore[no-untyped-def]
    from knowcast.config import get_settings
    from knowcast.store import Store

    return Store(db or get_settings().database_url).migrate()


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


def _print_json(data: Any) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2, default=str))


def _progress(disable: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description:<10}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=disable or not err.is_terminal,
    )


@app.command()
def tag(
    taxonomy: Annotated[
        Path | None, typer.Option(help="YAML of category -> seed words (categories for unlabelled items)")
    ] = None,
    labels: Annotated[Path | None, typer.Option(help="CSV with item_id,category: labelled items")] = None,
    category_tags: Annotated[
        Path | None,
        typer.Option(help="file of category names, one a line: items carrying one as a tag are labelled"),
    ] = None,
    keywords: Annotated[str, typer.Option(help="keyword method: tfidf or textrank")] = "tfidf",
    top_k: Annotated[int, typer.Option(help="keywords per item", min=1, max=50)] = 8,
    embedder: Annotated[
        str, typer.Option(help="tfidf (default, offline), use or e5 ([embeddings] extra)")
    ] = "tfidf",
    dim: Annotated[int, typer.Option(help="TF-IDF+SVD dimensions", min=2, max=1024)] = 64,
    topics: Annotated[
        str, typer.Option(help="number of topics, or auto (chosen by NPMI coherence)")
    ] = "auto",
    json_out: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Keywords, category, topics and an embedding for every item; stored in item_features."""
    from knowcast.content import service as svc

    try:
        tax = svc.load_taxonomy(taxonomy) if taxonomy else None
        lab = svc.load_labels(labels) if labels else None
        names = None
        if category_tags:
            if not category_tags.is_file():
                raise svc.ContentError(f"category tags file {category_tags} does not exist")
            lines = category_tags.read_text(encoding="utf-8").splitlines()
            names = [ln.strip() for ln in lines if ln.strip()]
        n_topics: int | str = "auto" if topics == "auto" else int(topics)
    except ValueError as exc:
        raise _fail(str(exc) if isinstance(exc, svc.ContentError) else f"--topics: {exc}", 2) from None
    store = _store(db)
    with _progress(json_out) as bar:
        tasks: dict[str, Any] = {}

        def step(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=max(total, 1))
            bar.update(tasks[stage], completed=done)

        try:
            report = svc.tag_items(
                store.engine, taxonomy=tax, labels=lab, category_names=names, keyword_method=keywords,
                top_k=top_k, embedder=embedder, dim=dim, n_topics=n_topics, progress=step,
            )
        except svc.ContentError as exc:
            raise _fail(str(exc), 2) from None
    if json_out:
        _print_json(report.as_dict())
        return
    t = Table(title=f"content tag: {report.n_items:,} items in {report.seconds:.1f} s", show_header=False)
    t.add_column("what", style="bold")
    t.add_column("result")
    t.add_row("items with text", f"{report.n_with_text:,}")
    t.add_row("keywords", f"{report.keyword_method}, top {top_k}")
    cats = ", ".join(f"{c} {n}" for c, n in list(report.categories.items())[:8])
    t.add_row("categories", f"{report.category_source} ({report.n_labelled:,} labelled): {cats or '-'}")
    coh = ", ".join(f"k={k}: {v:.3f}" for k, v in report.topic_coherence.items())
    t.add_row("topics", f"k = {report.n_topics} (NPMI {coh})" if report.n_topics else "-")
    for i, label in enumerate(report.topics[:10]):
        t.add_row(f"  topic {i}", label)
    t.add_row("embedding", f"{report.embedder}, {report.dim} dims")
    t.add_row("models", f"version {report.model_version}")
    for note in report.notes:
        t.add_row("note", note)
    console.print(t)


@app.command()
def show(
    item: Annotated[str, typer.Argument(help="item id")],
    json_out: JsonOption = False,
    db: DbOption = None,
) -> None:
    """An item's stored features: keywords, category, topics, embedding size, video, transcript."""
    from knowcast.content import service as svc

    try:
        f = svc.item_features(_store(db).engine, item)
    except svc.NotFound as exc:
        raise _fail(str(exc), 1) from None
    if json_out:
        _print_json(f)
        return
    t = Table(title=f"{f['item_id']} ({f['kind']}): {f['title']}", show_header=False)
    t.add_column("field", style="bold")
    t.add_column("value")
    t.add_row("tags", ", ".join(f["tags"]) or "-")
    if not f["tagged"]:
        t.add_row("features", "not tagged yet: run `knowcast content tag`")
    t.add_row("keywords", ", ".join(f["keywords"]) or "-")
    t.add_row("category", f["category"] or "-")
    for tp in f["topics"][:5]:
        t.add_row(f"topic {tp['topic']}", f"{tp['share']:.2f}  {', '.join(tp['words'])}")
    t.add_row("embedding", f"{f['embedding_dim']} dims")
    if f["video"]:
        s = f["video"].get("summary", {})
        t.add_row("video", ", ".join(f"{k}={v}" for k, v in s.items() if v is not None))
        if f["video"].get("keyframe"):
            t.add_row("keyframe", f["video"]["keyframe"])
    if f["transcript"]:
        tr = f["transcript"]
        t.add_row("transcript", f"{tr['n_cues']} cues, {tr['duration_s']} s: {tr['excerpt'][:80]}")
    console.print(t)


@app.command()
def similar(
    item: Annotated[str, typer.Argument(help="item id")],
    n: Annotated[int, typer.Option("-n", help="how many", min=1, max=100)] = 10,
    kind: Annotated[str | None, typer.Option(help="only items of this kind")] = None,
    json_out: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Items most similar in content (text, tags, topics, creator, video)."""
    from knowcast.content import service as svc

    try:
        r = svc.similar_items(_store(db).engine, item, n, kind)
    except svc.NotFound as exc:
        raise _fail(str(exc), 1) from None
    if json_out:
        _print_json(r)
        return
    t = Table(title=f"similar to {item} (source: {r['source']})")
    for c in ("item", "score", "kind", "title", "shared tags"):
        t.add_column(c)
    for s in r["similar"]:
        t.add_row(s["item_id"], f"{s['score']:.3f}", s["kind"], s["title"][:50], ", ".join(s["shared_tags"]))
    console.print(t)


@app.command()
def video(
    file: Annotated[Path, typer.Argument(help="a video file (anything FFmpeg decodes)")],
    item: Annotated[str | None, typer.Option(help="store the features on this item")] = None,
    keyframe: Annotated[Path | None, typer.Option(help="write the keyframe here (.png or .jpg)")] = None,
    json_out: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Video features with PyAV (duration, shots, brightness, colour, loudness, silences, keyframe)."""
    from knowcast.content import service as svc

    engine = _store(db).engine if item else None
    spin = err.is_terminal and not json_out
    with err.status(f"analysing {file.name}", spinner="dots") if spin else _null():
        try:
            r = svc.analyze_video_file(engine, file, item_id=item, keyframe=keyframe)
        except svc.NotFound as exc:
            raise _fail(str(exc), 1) from None
        except svc.ContentError as exc:
            raise _fail(f"cannot analyse video: {exc}", 1) from None
    if json_out:
        _print_json(r)
        return
    t = Table(title=f"{file.name}" + (f" -> item {item}" if item else " (not stored: pass --item)"),
              show_header=False)
    t.add_column("feature", style="bold")
    t.add_column("value")
    for k, v in r["summary"].items():
        t.add_row(k, "-" if v is None else str(v))
    t.add_row("shot cuts (s)", ", ".join(f"{x:.2f}" for x in r["shot_cuts"][:20]) or "-")
    t.add_row("silences (s)", ", ".join(f"{a:.1f}-{b:.1f}" for a, b in r["silences"][:10]) or "-")
    t.add_row("keyframe", r["keyframe"] or "-")
    console.print(t)


@app.command()
def transcript(
    item: Annotated[str, typer.Argument(help="item id")],
    file: Annotated[Path, typer.Argument(help=".srt or .vtt transcript")],
    json_out: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Import a transcript; the item is re-analysed with the fitted content models, like its caption."""
    from knowcast.content import service as svc

    try:
        f = svc.import_transcript(_store(db).engine, item, file)
    except svc.NotFound as exc:
        raise _fail(str(exc), 1) from None
    except svc.ContentError as exc:
        raise _fail(str(exc), 1) from None
    if json_out:
        _print_json(f)
        return
    tr = f["transcript"]
    console.print(f"imported {tr['n_cues']} cues ({tr['duration_s']} s) for {item}")
    if f["reanalysed"]:
        console.print(f"keywords: {', '.join(f['keywords'])}; category: {f['category'] or '-'}")
    else:
        console.print("no fitted content models yet: run `knowcast content tag` to analyse it")


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *a: object) -> None:
        return None
