"""``knowcast recommend``: train, serve-side administration and offline evaluation of recommendations.

* ``train``: fit an algorithm on the store's events, write a versioned artifact, activate it (running API
  processes pick it up within seconds); ``models``, ``activate``, ``rollback`` manage the versions;
* ``show``: a user's recommendations, as the API answers them; ``block`` / ``unblock``: the blocked list;
* ``evaluate``: the offline protocol on public datasets or on the store (``--dataset store``).

A thin face over :mod:`knowcast.recommend.service` and :mod:`knowcast.recommend.evaluation`.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Train, evaluate and query recommendations.", no_args_is_help=True)
console = Console(width=None if sys.stdout.isatty() else 140)
err = Console(stderr=True)

DbOption = Annotated[str | None, typer.Option("--db", help="database URL (overrides KNOWCAST_DATABASE_URL)")]
NameOption = Annotated[str, typer.Option("--name", help="model name (several can be served side by side)")]
JsonOption = Annotated[bool, typer.Option("--json", help="print JSON")]

METRIC_COLS = [
    "ndcg@{k}",
    "recall@{k}",
    "precision@{k}",
    "map@{k}",
    "mrr@{k}",
    "hit@{k}",
    "coverage",
    "novelty",
    "ild",
    "fit_s",
]


def _parse_params(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p in pairs:
        if "=" not in p:
            raise typer.BadParameter(f"--param must be name=value, got {p!r}")
        key, value = p.split("=", 1)
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


@app.command("algorithms")
def algorithms() -> None:
    """List the algorithm names ``evaluate`` accepts."""
    from knowcast.recommend.algorithms import ALGORITHMS

    for name, cls in ALGORITHMS.items():
        print(f"{name:<20} {cls.__name__}")


@app.command("evaluate")
def evaluate_cmd(
    algorithm: Annotated[list[str], typer.Option("--algorithm", "-a", help="algorithm name (repeatable)")],
    dataset: Annotated[str, typer.Option(help="ml-100k, ml-latest-small, sim or store")] = "ml-100k",
    split: Annotated[str, typer.Option(help="random, leave_last_out or time")] = "random",
    k: Annotated[int, typer.Option(help="list length for the metrics")] = 10,
    seed: Annotated[int, typer.Option(help="split seed")] = 0,
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="name=value for every algorithm")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
    db: DbOption = None,
) -> None:
    """Fit each algorithm on train+validation and score the test part with full ranking."""
    from knowcast.recommend.algorithms import ALGORITHMS
    from knowcast.recommend.datasets import load_movielens_100k, load_movielens_latest_small, load_simulation
    from knowcast.recommend.evaluation import evaluate, make_split

    unknown = [a for a in algorithm if a not in ALGORITHMS]
    if unknown:
        err.print(f"[bold red]error:[/] unknown algorithm {unknown[0]!r}; known: {', '.join(ALGORITHMS)}")
        raise typer.Exit(2)
    loaders = {
        "ml-100k": load_movielens_100k,
        "ml-latest-small": load_movielens_latest_small,
        "sim": lambda: load_simulation(n_users=2000, n_items=1000, n_creators=100),
        "store": lambda: _store_dataset(db),
    }
    if dataset not in loaders:
        err.print(f"[bold red]error:[/] unknown dataset {dataset!r}; known: {', '.join(loaders)}")
        raise typer.Exit(2)
    try:
        data = loaders[dataset]()
        sp_ = make_split(data, kind=split, seed=seed)
    except (FileNotFoundError, ValueError) as exc:
        err.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(1) from None
    params = _parse_params(param or [])
    rows = []
    for name in algorithm:
        err.print(f"evaluating {name} on {dataset} ({split} split)...")
        rows.append(evaluate(lambda n=name: ALGORITHMS[n](**params), sp_, k=k) | {"algorithm": name})
    if as_json:
        print(json.dumps(rows, indent=2, default=str))
        return
    table = Table(title=f"{dataset}, {split} split, full ranking @{k}")
    cols = [c.format(k=k) for c in METRIC_COLS]
    for c in ["algorithm", *cols]:
        table.add_column(c)
    for r in rows:
        table.add_row(
            r["algorithm"], *(f"{r[c]:.4f}" if isinstance(r[c], float) else str(r[c]) for c in cols)
        )
    console.print(table)


# ------------------------------------------------------------------------------- store-backed commands
def _store(db: str | None):  # type: ignore[no-untyped-def]
    from knowcast.config import get_settings
    from knowcast.store import Store

    return Store(db or get_settings().database_url).migrate()


def _store_dataset(db: str | None):  # type: ignore[no-untyped-def]
    from knowcast.recommend import service as svc

    store = _store(db)
    try:
        return svc.store_dataset(store.engine)
    finally:
        store.dispose()


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


def _run(fn, *args: Any, **kwargs: Any) -> Any:  # type: ignore[no-untyped-def]
    """Service errors as exit codes: 1 unknown / no model / an OS error, 2 bad input (naming the field)."""
    from knowcast.recommend import service as svc

    try:
        return fn(*args, **kwargs)
    except (svc.NotFound, svc.ModelUnavailable) as exc:
        raise _fail(str(exc), 1) from None
    except svc.RecommendError as exc:
        raise _fail(f"{exc} (field: {exc.field})", 2) from None
    except OSError as exc:  # a full disk, an unreadable artifact: what failed, not a traceback
        where = f" ({exc.filename})" if exc.filename else ""
        raise _fail(f"{exc.strerror or exc}{where}; the served model is unchanged", 1) from None


def _print_json(data: Any) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2, default=str))


@app.command("train")
def train_cmd(
    algorithm: Annotated[
        str, typer.Option("--algorithm", "-a", help="auto (EASE up to 20k items, else ALS), als, ease, ...")
    ] = "auto",
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="name=value for the algorithm (repeatable)")
    ] = None,
    name: NameOption = "default",
    validate: Annotated[bool, typer.Option(help="measure on a 10% hold-out before the final fit")] = True,
    next_purchase: Annotated[
        bool | None, typer.Option("--next-purchase/--no-next-purchase", help="default: when the data allows")
    ] = None,
    activate: Annotated[bool, typer.Option(help="serve the new version at once")] = True,
    engine: Annotated[
        str, typer.Option("--engine", help="local (in process) or spark (ALS on Apache Spark)")
    ] = "local",
    spark_master: Annotated[
        str | None, typer.Option("--spark-master", help="Spark master URL (default local[2])")
    ] = None,
    from_parquet: Annotated[
        str | None,
        typer.Option(
            "--from-parquet", help="with --engine spark: events from a Parquet export (path or URL)"
        ),
    ] = None,
    json_out: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Train a model on the store's events and store a new, versioned artifact (served at once)."""
    from knowcast.recommend import service as svc

    store = _store(db)
    report = _run(
        svc.train,
        store.engine,
        algorithm,
        _parse_params(param or []),
        name,
        validate=validate,
        next_purchase=next_purchase,
        activate_new=activate,
        progress=None if json_out else (lambda msg: err.print(msg)),
        compute=engine,
        spark_master=spark_master,
        from_parquet=from_parquet,
    )
    if json_out:
        _print_json(report.as_dict())
        return
    m = report.metrics
    on_spark = " on Spark" if report.params.get("engine") == "spark" else ""
    console.print(
        f"stored [bold]{report.name} v{report.version}[/] ({report.algorithm}{on_spark}) at {report.path}"
        f"{' - active' if report.active else ''}"
    )
    if "model_ndcg@10" in m:
        console.print(
            f"hold-out NDCG@10 {m['model_ndcg@10']:.4f} (popular {m['popular_ndcg@10']:.4f}), "
            f"Recall@10 {m['model_recall@10']:.4f} (popular {m['popular_recall@10']:.4f}), "
            f"{m['validation_users']:,} users"
        )
    console.print(
        f"{m['users']:,} users x {m['items']:,} items, {m['interactions']:,} interactions; "
        f"fit {m['fit_s']:.1f}s, total {m['total_s']:.1f}s; next purchase: {m.get('next_purchase', 'off')}"
    )


@app.command("models")
def models_cmd(
    name: Annotated[str | None, typer.Option("--name")] = None,
    json_out: JsonOption = False,
    db: DbOption = None,
) -> None:
    """List stored model versions (the active one is marked)."""
    from knowcast.recommend import service as svc

    rows = _run(svc.list_models, _store(db).engine, name)
    if json_out:
        _print_json(rows)
        return
    table = Table()
    for col in (
        "name",
        "version",
        "active",
        "algorithm",
        "engine",
        "ndcg@10",
        "interactions",
        "created",
        "on disk",
    ):
        table.add_column(col)
    for r in rows:
        m = r["metrics"] or {}
        table.add_row(
            r["name"],
            str(r["version"]),
            "*" if r["active"] else "",
            str((r["params"] or {}).get("algorithm")),
            str((r["params"] or {}).get("engine", "local")),
            f"{m['model_ndcg@10']:.4f}" if "model_ndcg@10" in m else "",
            f"{m.get('interactions', 0):,}",
            str(r["created_at"])[:19],
            "yes" if r["exists"] else "missing",
        )
    console.print(table)


@app.command("activate")
def activate_cmd(version: int, name: NameOption = "default", db: DbOption = None) -> None:
    """Serve a given version (running servers switch within seconds)."""
    from knowcast.recommend import service as svc

    out = _run(svc.activate, _store(db).engine, name, version)
    console.print(f"serving {out['name']} v{out['version']}")


@app.command("rollback")
def rollback_cmd(name: NameOption = "default", db: DbOption = None) -> None:
    """Serve the version before the active one (running servers switch within seconds)."""
    from knowcast.recommend import service as svc

    out = _run(svc.rollback, _store(db).engine, name)
    console.print(f"rolled back {out['name']} from v{out['previous']} to v{out['version']}")


@app.command("show")
def show_cmd(
    user_id: str,
    n: Annotated[int, typer.Option(help="how many items", min=1, max=100)] = 10,
    surface: Annotated[str, typer.Option(help="feed, live or next_course")] = "feed",
    name: NameOption = "default",
    json_out: JsonOption = False,
    db: DbOption = None,
) -> None:
    """A user's recommendations with their reasons, as the API serves them."""
    from knowcast.recommend import service as svc

    out = _run(svc.recommend, _store(db).engine, user_id, n, surface, name)
    if json_out:
        _print_json(out)
        return
    mdl = out["model"]
    table = Table(
        title=f"{user_id} / {surface} ({'cold start, ' if out['cold_start'] else ''}{out['source']}; "
        f"{mdl['name']} v{mdl['version']} {mdl['algorithm']})"
    )
    for col in ("#", "item", "kind", "title", "price", "reason"):
        table.add_column(col)
    for k, it in enumerate(out["items"], 1):
        table.add_row(
            str(k),
            it["item_id"],
            it["kind"],
            it["title"][:40],
            "" if it["price"] is None else f"{it['price']:g}",
            it["reason"][:60],
        )
    console.print(table)


def _block(items: list[str] | None, creators: list[str] | None, unblock: bool, db: str | None) -> None:
    from knowcast.recommend import service as svc

    if not items and not creators:
        raise _fail("give --item and/or --creator", 2)
    out = _run(svc.set_blocked, _store(db).engine, items or [], creators or [], unblock=unblock)
    console.print(
        f"blocked items: {', '.join(out['items']) or '-'}; creators: {', '.join(out['creators']) or '-'}"
    )


@app.command("block")
def block_cmd(
    item: Annotated[list[str] | None, typer.Option("--item", help="item id (repeatable)")] = None,
    creator: Annotated[list[str] | None, typer.Option("--creator", help="creator id (repeatable)")] = None,
    db: DbOption = None,
) -> None:
    """Never recommend these items / creators (every server applies it within seconds)."""
    _block(item, creator, False, db)


@app.command("unblock")
def unblock_cmd(
    item: Annotated[list[str] | None, typer.Option("--item", help="item id (repeatable)")] = None,
    creator: Annotated[list[str] | None, typer.Option("--creator", help="creator id (repeatable)")] = None,
    db: DbOption = None,
) -> None:
    """Remove items / creators from the blocked list."""
    _block(item, creator, True, db)
