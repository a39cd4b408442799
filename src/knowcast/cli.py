"""The ``knowcast`` command line: one entry point that serves, imports, exports and administers."""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from knowcast.config import Settings, get_settings

app = typer.Typer(
    name="knowcast",
    help="Growth engine for knowledge-commerce. Database: --db or KNOWCAST_DATABASE_URL (default sqlite:///knowcast.db).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
keys_app = typer.Typer(help="API keys: create (secret shown once), list, revoke.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
console = Console()
err = Console(stderr=True)

DbOption = Annotated[str | None, typer.Option("--db", help="database URL (overrides KNOWCAST_DATABASE_URL)")]


class ImportKind(StrEnum):
    users = "users"
    creators = "creators"
    items = "items"
    events = "events"
    comments = "comments"


class Fmt(StrEnum):
    csv = "csv"
    jsonl = "jsonl"
    parquet = "parquet"


def _settings(db: str | None) -> Settings:
    s = get_settings()
    if db:
        s.database_url = db
    return s


def _store(db: str | None):  # type: ignore[no-untyped-def]
    from knowcast.store import Store

    return Store(_settings(db).database_url).migrate()


def fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


@app.command()
def migrate(db: DbOption = None) -> None:
    """Create or upgrade the schema to the newest migration."""
    store = _store(db)
    console.print(f"schema up to date on {store.dialect}")


@app.command("import")
def import_(
    kind: Annotated[ImportKind, typer.Argument(help="what the file holds")],
    file: Annotated[Path, typer.Argument(help="CSV, JSONL or Parquet file")],
    fmt: Annotated[
        Fmt | None, typer.Option("--format", help="file format (default: from the extension)")
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="check every row, report all errors, write nothing")] = False,
    on_error: Annotated[
        str, typer.Option(help="abort: write nothing if any row is bad; skip: write good rows")
    ] = "abort",
    rejects: Annotated[
        Path | None, typer.Option(help="with --on-error skip: CSV of rejected rows and reasons")
    ] = None,
    create_missing: Annotated[
        bool, typer.Option(help="create unknown users/items/creators on the fly")
    ] = False,
    encoding: Annotated[str | None, typer.Option(help="text encoding (default: UTF-8, GBK detected)")] = None,
    pseudonymize: Annotated[
        bool, typer.Option(help="replace user ids by a keyed hash (KNOWCAST_PSEUDONYM_KEY)")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
    db: DbOption = None,
) -> None:
    """Import a file of users, creators, items, events or comments (validated, idempotent)."""
    from knowcast.ingest.readers import FileFormatError
    from knowcast.ingest.service import ImportRejected, import_file

    if on_error not in ("abort", "skip"):
        raise fail(f"--on-error must be 'abort' or 'skip', got {on_error!r}", 2)
    settings = _settings(db)
    if pseudonymize and not settings.pseudonym_key:
        raise fail("--pseudonymize needs KNOWCAST_PSEUDONYM_KEY to be set", 2)
    if not file.exists():
        raise fail(f"{file} does not exist", 2)
    if on_error == "skip" and rejects is None:
        rejects = file.with_name(file.stem + ".rejects.csv")
    store = _store(db)
    size = file.stat().st_size
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=json_out or not err.is_terminal,
    ) as bar:
        task = bar.add_task(f"import {kind.value}", total=size)
        try:
            report = import_file(
                store.engine,
                kind.value,
                file,
                fmt=fmt.value if fmt else None,
                dry_run=dry_run,
                on_error=on_error,
                rejects_path=rejects,
                create_missing=create_missing,  # type: ignore[arg-type]
                pseudonym_key=settings.pseudonym_key if pseudonymize else None,
                encoding=encoding,
                progress=lambda rows, done: bar.update(task, completed=done),
            )
        except ImportRejected as exc:
            report = exc.report
        except FileFormatError as exc:
            raise fail(str(exc), 2) from None
    _print_report(report, json_out)
    if report.rows_written and not dry_run:
        after_import(store)
    if report.error_count and (dry_run or on_error == "abort"):
        raise typer.Exit(1)


def _print_report(report, json_out: bool) -> None:  # type: ignore[no-untyped-def]
    if json_out:
        console.print_json(json.dumps(report.as_dict(), ensure_ascii=False))
        return
    for e in report.errors[:50]:
        err.print(f"[red]{e}[/]", markup=True, highlight=False)
    if report.error_count > 50:
        err.print(f"... and {report.error_count - 50} more errors")
    table = Table(title=f"import {report.kind}" + (" (dry run)" if report.dry_run else ""))
    for col in ("rows read", "written", "duplicates", "rejected", "created", "seconds", "rows/s"):
        table.add_column(col, justify="right")
    table.add_row(
        f"{report.rows_read:,}",
        f"{report.rows_written:,}",
        f"{report.duplicates:,}",
        f"{report.rejected:,}",
        f"{report.created_missing:,}",
        f"{report.seconds:.2f}",
        f"{report.rate:,.0f}",
    )
    console.print(table)
    if report.error_count and not report.dry_run and not report.committed:
        err.print("[bold red]nothing was written[/] (fix the rows above, or use --on-error skip)")
    if report.rejects_path:
        console.print(f"rejected rows and reasons: {report.rejects_path}")


@app.command()
def export(
    table: Annotated[
        str, typer.Argument(help="users, creators, items, promotes, live_sessions, events, comments, ...")
    ],
    out: Annotated[Path, typer.Argument(help="output file (.csv, .jsonl or .parquet)")],
    fmt: Annotated[Fmt | None, typer.Option("--format")] = None,
    db: DbOption = None,
) -> None:
    """Write a table back out as CSV, JSONL or Parquet (streamed, any size)."""
    from knowcast.services.export import ExportError, export_table

    store = _store(db)
    try:
        n = export_table(store.engine, table, out, fmt.value if fmt else None)
    except ExportError as exc:
        raise fail(str(exc), 2) from None
    console.print(f"wrote {n:,} rows of {table} to {out}")


@app.command("import-dataset")
def import_dataset_cmd(
    name: Annotated[
        str, typer.Argument(help="movielens-100k, ml-latest-small, kuairec, udacity, cookie_cats")
    ],
    path: Annotated[
        Path | None, typer.Argument(help="folder with the dataset files (default: ../shared/data/...)")
    ] = None,
    db: DbOption = None,
) -> None:
    """Load a public dataset into the knowcast schema."""
    from knowcast.ingest.service import ImportRejected
    from knowcast.services.datasets import DATASETS, import_dataset

    store = _store(db)
    t = time.perf_counter()
    try:
        reports = import_dataset(store.engine, name, path, progress=lambda k, n: err.print(f"  {k}: +{n:,}"))
    except ImportRejected as exc:
        _print_report(exc.report, False)
        raise typer.Exit(1) from None
    except (ValueError, FileNotFoundError) as exc:
        known = "\n".join(f"  {k}: {v[2]}" for k, v in DATASETS.items())
        raise fail(f"{exc}\nknown datasets:\n{known}", 2) from None
    _summary(reports, time.perf_counter() - t)
    after_import(store)


def _summary(reports, seconds: float) -> None:  # type: ignore[no-untyped-def]
    table = Table(title=f"loaded in {seconds:.1f}s")
    for col in ("kind", "rows", "written", "duplicates"):
        table.add_column(col, justify="right")
    for kind, r in reports.items():
        table.add_row(kind, f"{r.rows_read:,}", f"{r.rows_written:,}", f"{r.duplicates:,}")
    console.print(table)


@app.command()
def demo(
    size: Annotated[
        str, typer.Option(help="tiny, small or default (200 creators, 2,000 items, 5,000 users, 30 days)")
    ] = "default",
    seed: Annotated[int, typer.Option(help="random seed (same seed, same platform)")] = 0,
    users: Annotated[int | None, typer.Option(help="override the number of users")] = None,
    items: Annotated[int | None, typer.Option(help="override the number of items")] = None,
    creators: Annotated[int | None, typer.Option(help="override the number of creators")] = None,
    days: Annotated[int | None, typer.Option(help="override the number of days")] = None,
    db: DbOption = None,
) -> None:
    """Fill the store with a simulated knowledge-commerce platform (reproducible by seed)."""
    from knowcast.services.demo import SIZES, seed_demo
    from knowcast.sim import SimConfig

    if size not in SIZES:
        raise fail(f"--size must be one of {', '.join(SIZES)}", 2)
    params = dict(SIZES[size])
    for k, v in (("n_users", users), ("n_items", items), ("n_creators", creators), ("days", days)):
        if v is not None:
            if v <= 0:
                raise fail(f"--{k.removeprefix('n_')} must be positive", 2)
            params[k] = v
    store = _store(db)
    t = time.perf_counter()
    err.print(f"simulating {params} (seed {seed}) ...")
    result = seed_demo(
        store.engine,
        SimConfig(seed=seed, **params),
        progress=lambda k, n: err.print(f"  {k}: +{n:,}") if n else None,
    )
    _summary(result.reports, time.perf_counter() - t)
    after_import(store)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 8000,
    workers: Annotated[int, typer.Option(help="worker processes (use PostgreSQL for more than one)")] = 1,
    seed: Annotated[
        bool, typer.Option("--demo/--no-demo", help="seed the demo platform if the store is empty")
    ] = True,
    demo_size: Annotated[str, typer.Option(help="demo size when seeding")] = "default",
    worker_timeout: Annotated[
        int, typer.Option(help="seconds a worker may miss the supervisor's health ping before a restart")
    ] = 60,
    rewarm_seconds: Annotated[
        float, typer.Option(help="re-warm the dashboard this often after API writes pause (0: off)")
    ] = 30.0,
    db: DbOption = None,
) -> None:
    """Run the API and dashboard (migrates first; seeds the demo platform on first run)."""
    import uvicorn

    from knowcast.services.demo import SIZES, seed_demo, store_is_empty
    from knowcast.sim import SimConfig

    settings = _settings(db)
    store = _store(db)
    if seed and store_is_empty(store.engine):
        err.print(f"empty store: seeding the demo platform ({demo_size}) ...")
        t = time.perf_counter()
        result = seed_demo(store.engine, SimConfig(seed=0, **SIZES[demo_size]))
        _summary(result.reports, time.perf_counter() - t)
        after_import(store)
    bootstrap_admin(store)
    store.dispose()
    os.environ["KNOWCAST_DATABASE_URL"] = settings.database_url
    os.environ["KNOWCAST_REWARM_SECONDS"] = str(rewarm_seconds)
    console.print(f"knowcast on http://{host}:{port}  (API docs: http://{host}:{port}/docs)")
    uvicorn.run(
        "knowcast.api.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="info",
        # uvicorn's default (5 s) kills workers that are still importing and warming up on a busy machine
        timeout_worker_healthcheck=worker_timeout,
    )


def bootstrap_admin(store) -> None:  # type: ignore[no-untyped-def]
    """First run: create an admin API key and a dashboard admin account, and say how to use them once."""
    from sqlalchemy import func, select

    from knowcast.api.security import create_api_key
    from knowcast.store.models import ApiKey

    with store.sessions() as s:
        has_keys = (s.scalar(select(func.count()).select_from(ApiKey)) or 0) > 0
        if not has_keys:
            _, secret = create_api_key(s, "bootstrap admin", ["admin"])
            s.commit()
    if not has_keys:
        path = Path("knowcast-admin-key.txt")
        path.write_text(secret + "\n")
        path.chmod(0o600)
        err.print(
            f"created an admin API key; it is in {path} (readable only by you). Revoke it with "
            "'knowcast keys revoke' once you have your own."
        )
    # Dashboard accounts are created once (bootstrap_accounts does nothing when any exist).
    web = _optional("knowcast.web.accounts")
    if web is not None and hasattr(web, "bootstrap_accounts"):
        web.bootstrap_accounts(store)


@keys_app.command("create")
def keys_create(
    scope: Annotated[list[str], typer.Option("--scope", help="ingest, read or admin (repeatable)")],
    name: Annotated[str, typer.Option(help="a label for the key")] = "",
    db: DbOption = None,
) -> None:
    """Create an API key; the secret is printed once and stored only as a hash."""
    from knowcast.api.security import create_api_key

    store = _store(db)
    with store.sessions() as s:
        try:
            row, secret = create_api_key(s, name, scope)
        except ValueError as exc:
            raise fail(str(exc), 2) from None
        s.commit()
        console.print(f"key id {row.id} scopes {','.join(row.scopes)}")
    print(secret)


@keys_app.command("list")
def keys_list(db: DbOption = None) -> None:
    """List keys (id, name, prefix, scopes, revoked); never the secrets."""
    from sqlalchemy import select

    from knowcast.store.models import ApiKey

    store = _store(db)
    table = Table()
    for col in ("id", "name", "prefix", "scopes", "created", "revoked"):
        table.add_column(col)
    with store.sessions() as s:
        for k in s.scalars(select(ApiKey).order_by(ApiKey.id)):
            table.add_row(
                str(k.id),
                k.name,
                k.prefix,
                ",".join(k.scopes),
                f"{k.created_at:%Y-%m-%d}",
                "yes" if k.revoked_at else "",
            )
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: int, db: DbOption = None) -> None:
    """Revoke a key by id."""
    from knowcast.api.security import revoke_api_key

    store = _store(db)
    with store.sessions() as s:
        if not revoke_api_key(s, key_id):
            raise fail(f"unknown key id {key_id}", 1)
        s.commit()
    console.print(f"revoked key {key_id}")


def after_import(store) -> None:  # type: ignore[no-untyped-def]
    """Bring the dashboard's daily rollups and cached reports up to date after new data (seconds)."""
    rollups = _optional("knowcast.services.rollups")
    warm = _optional("knowcast.web.warm")
    if rollups is None or warm is None:
        return
    t = time.perf_counter()
    rollups.refresh(store.engine)
    warm.warm(store.engine)
    err.print(f"dashboard rollups and reports refreshed in {time.perf_counter() - t:.1f}s")


def _optional(module: str):  # type: ignore[no-untyped-def]
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name == module:
            return None
        raise


#: Sub-commands each area adds in src/knowcast/cli_<area>.py (a Typer app named ``app``).
for _name, _help in (
    ("content", "Content understanding: tags, topics, embeddings, video features."),
    ("profiles", "User profiles and segments."),
    ("recommend", "Train, evaluate and query recommendations."),
    ("live", "Live rooms: replay chat logs through the pipeline."),
    ("analyze", "Batch analysis of comments."),
    ("experiments", "Experiments: define, ramp, stop, report."),
    ("analytics", "Funnels, retention, attribution, revenue, creators."),
    ("users", "User data rights: export and erase."),
):
    _mod = _optional(f"knowcast.cli_{_name}")
    if _mod is not None:
        app.add_typer(_mod.app, name=_name, help=_help)


# The issue-level names: `knowcast train` and `knowcast evaluate` are the recommend area's commands.
_rec = _optional("knowcast.cli_recommend")
if _rec is not None:
    for _cmd in ("train", "evaluate"):
        _info = next((c for c in _rec.app.registered_commands if c.name == _cmd), None)
        if _info is not None:
            app.command(_cmd, help=_info.help or (_info.callback.__doc__ if _info.callback else None))(
                _info.callback
            )


def main() -> None:  # pragma: no cover
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
