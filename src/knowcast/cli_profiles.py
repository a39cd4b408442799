"""``knowcast profiles``: build and update user profiles, show one, list and create segments."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

app = typer.Typer(help="User profiles and segments.", no_args_is_help=True)
segment_app = typer.Typer(help="Segments: list, show, members, create from a rule.", no_args_is_help=True)
app.add_typer(segment_app, name="segment")
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


def _run(fn, *args: Any, **kwargs: Any) -> Any:  # type: ignore[no-untyped-def]
    """Service errors as exit codes: 1 unknown, 3 conflict, 2 bad input (naming the field)."""
    from knowcast.profiles import service as svc

    try:
        return fn(*args, **kwargs)
    except svc.NotFound as exc:
        raise _fail(str(exc), 1) from None
    except svc.Conflict as exc:
        raise _fail(str(exc), 3) from None
    except svc.RuleError as exc:
        raise _fail(f"{exc} (field: {exc.field})", 2) from None


@app.command()
def build(
    method: Annotated[str, typer.Option(help="segments: kmeans (k by silhouette) or hdbscan")] = "kmeans",
    k_min: Annotated[int, typer.Option(help="smallest k tried by KMeans", min=2)] = 2,
    k_max: Annotated[int, typer.Option(help="largest k tried by KMeans", min=2)] = 8,
    alpha: Annotated[float, typer.Option(help="learning rate of the interest rule")] = 0.1,
    half_life_days: Annotated[float, typer.Option(help="interest half-life in days (0: no decay)")] = 30.0,
    tz_offset: Annotated[float, typer.Option(help="local time offset for days and hours")] = 8.0,
    json_out: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Rebuild all profiles from events, learn segments and describe them, refresh rule segments."""
    from knowcast.profiles import service as svc

    store = _store(db)
    with Progress(
        TextColumn("[bold]{task.description:<14}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err, transient=True, disable=json_out or not err.is_terminal,
    ) as bar:
        tasks: dict[str, Any] = {}

        def step(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=max(total, 1))
            bar.update(tasks[stage], completed=done)

        rep = _run(
            svc.build_profiles, store.engine, method=method, k_range=(k_min, max(k_min, k_max)), alpha=alpha,
            half_life_days=half_life_days or None, tz_offset_hours=tz_offset, progress=step,
        )
    if json_out:
        _print_json(rep.as_dict())
        return
    console.print(
        f"profiles: {rep.n_users:,} users from {rep.n_events:,} events over {rep.n_features:,} features "
        f"in {rep.seconds:.1f} s; {rep.method} k = {rep.k}"
        + (f" (silhouette {rep.silhouette:.3f})" if rep.silhouette is not None else "")
    )
    _segments_table([{"segment_id": d["id"], "size": d["size"], "description": d["description"]}
                     for d in rep.segments], "segments")
    if rep.rule_segments:
        console.print(f"{rep.rule_segments} rule segment(s) refreshed")


@app.command()
def update(json_out: JsonOption = False, db: DbOption = None) -> None:
    """Apply events newer than the watermark to the profiles they concern (no rebuild)."""
    from knowcast.profiles import service as svc

    rep = _run(svc.update_profiles, _store(db).engine)
    if json_out:
        _print_json(rep.__dict__)
        return
    console.print(f"applied {rep.n_events:,} events to {rep.n_users:,} users ({rep.new_users:,} new) "
                  f"in {rep.seconds:.2f} s; watermark {rep.watermark}")


@app.command()
def show(
    user: Annotated[str, typer.Argument(help="user id")],
    top: Annotated[int, typer.Option(help="interests shown", min=1, max=100)] = 10,
    json_out: JsonOption = False,
    db: DbOption = None,
) -> None:
    """A user's profile (after applying the user's newest events)."""
    from knowcast.profiles import service as svc

    p = _run(svc.get_profile, _store(db).engine, user, top)
    if json_out:
        _print_json(p)
        return
    if not p["profiled"]:
        console.print(f"{user}: no events yet, no profile")
        return
    t = Table(title=f"profile of {user}", show_header=False)
    t.add_column("field", style="bold")
    t.add_column("value")
    t.add_row("segment", f"{p['segment']['id']}: {p['segment']['name']}" if p["segment"] else "-")
    t.add_row("interests", ", ".join(f"{i['tag']} {i['weight']:.2f}" for i in p["interests"]) or "-")
    a, r = p["activity"], p["rfm"]
    t.add_row("activity", f"{a['n_events']} events on {a['n_active_days']} days, {a['events_per_day']}/day, "
              f"last {a['recency_days']} days ago ({a['activity_level']})")
    t.add_row("RFM", f"R{r['R']} F{r['F']} M{r['M']}: {r['n_purchases']} purchases, spend {r['spend']} "
              f"({r['spend_level']})")
    t.add_row("channel", f"{p['channels']['preferred']} {p['channels']['counts']}")
    t.add_row("hour", f"{p['hours']['preferred']}")
    t.add_row("device", f"{p['device']['preferred']}")
    t.add_row("applied now", str(p["applied_events"]))
    console.print(t)


def _segments_table(segs: list[dict[str, Any]], title: str) -> None:
    t = Table(title=title)
    for c in ("segment", "size", "description"):
        t.add_column(c)
    for s in segs:
        t.add_row(s["segment_id"], f"{s['size']:,}", s["description"])
    console.print(t)


@app.command("segments")
def segments_cmd(json_out: JsonOption = False, db: DbOption = None) -> None:
    """All segments with sizes and descriptions."""
    from knowcast.profiles import service as svc

    segs = _run(svc.list_segments, _store(db).engine)
    if json_out:
        _print_json(segs)
        return
    _segments_table(segs, "segments")


@segment_app.command("list")
def segment_list(json_out: JsonOption = False, db: DbOption = None) -> None:
    """All segments with sizes and descriptions."""
    segments_cmd(json_out, db)


@segment_app.command("show")
def segment_show(
    segment_id: Annotated[str, typer.Argument(help="segment id")], json_out: JsonOption = False,
    db: DbOption = None,
) -> None:
    """A segment's member profile: top interests, spend, activity, channels."""
    from knowcast.profiles import service as svc

    s = _run(svc.get_segment, _store(db).engine, segment_id)
    if json_out:
        _print_json(s)
        return
    p = s["profile"]
    console.print(f"[bold]{s['segment_id']}[/] ({s['kind']}): {s['name']}, {s['size']:,} users")
    console.print(s["description"])
    console.print("top interests: " + ", ".join(f"{i['tag']} (lift {i['lift']})" for i in p["top_interests"]))
    console.print(f"spend: mean {p['spend']['mean']}, payers {p['spend']['payers_share']}")
    console.print(f"activity: {p['activity']['mean_events_per_day']} events/day; channels {p['channels']}")


@segment_app.command("members")
def segment_members_cmd(
    segment_id: Annotated[str, typer.Argument(help="segment id")],
    limit: Annotated[int, typer.Option(min=1, max=100_000)] = 100,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    json_out: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Member user ids of a segment."""
    from knowcast.profiles import service as svc

    m = _run(svc.segment_members, _store(db).engine, segment_id, limit, offset)
    if json_out:
        _print_json(m)
        return
    for u in m["members"]:
        print(u)


@segment_app.command("create")
def segment_create(
    name: Annotated[str, typer.Argument(help="segment name")],
    rule: Annotated[Path, typer.Option("--rule", help="JSON (or YAML) file with the rule")],
    description: Annotated[str, typer.Option(help="what the segment is for")] = "",
    replace: Annotated[bool, typer.Option(help="replace a rule segment of the same name")] = False,
    json_out: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Create a rule segment and materialise its members, e.g. a rule file holding
    {"all": [{"event": "purchase", "item_kind": "course", "within_days": 30}, {"event": "live_join"}]}."""
    from knowcast.profiles import service as svc

    if not rule.is_file():
        raise _fail(f"rule file {rule} does not exist", 2)
    text = rule.read_text(encoding="utf-8")
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as exc:
        import yaml

        try:
            spec = yaml.safe_load(text)
        except yaml.YAMLError:
            raise _fail(f"{rule}: not valid JSON ({exc})", 2) from None
    s = _run(svc.create_rule_segment, _store(db).engine, name, spec, description, replace)
    if json_out:
        _print_json(s)
        return
    console.print(f"segment {s['segment_id']}: {s['size']:,} members ({s['description']})")
