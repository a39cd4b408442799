"""``knowcast recommend``: offline evaluation of the recommender algorithms on public datasets.

A thin face over :mod:`knowcast.recommend.evaluation`; the store-backed ``train`` / ``evaluate`` commands
of the lead use the same functions on the platform's own events.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Recommender evaluation on public datasets.", no_args_is_help=True)
console = Console(width=None if sys.stdout.isatty() else 140)
err = Console(stderr=True)

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
    dataset: Annotated[str, typer.Option(help="ml-100k, ml-latest-small or sim")] = "ml-100k",
    split: Annotated[str, typer.Option(help="random, leave_last_out or time")] = "random",
    k: Annotated[int, typer.Option(help="list length for the metrics")] = 10,
    seed: Annotated[int, typer.Option(help="split seed")] = 0,
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="name=value for every algorithm")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
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
    }
    if dataset not in loaders:
        err.print(f"[bold red]error:[/] unknown dataset {dataset!r}; known: {', '.join(loaders)}")
        raise typer.Exit(2)
    try:
        data = loaders[dataset]()
        sp_ = make_split(data, kind=split, seed=seed)
    except (FileNotFoundError, ValueError) as exc:
        err.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(1) from exc
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
