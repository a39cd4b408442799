"""``knowcast experiments``: define, start, ramp, stop, assign and report experiments from the terminal."""

from __future__ import annotations

import getpass
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Experiments: define, ramp, stop, report.", no_args_is_help=True)
# wide enough for the report table when piped (rich assumes 80 columns without a terminal)
console = Console(width=None if sys.stdout.isatty() else 140)
err = Console(stderr=True)

DbOption = Annotated[str | None, typer.Option("--db", help="database URL (overrides KNOWCAST_DATABASE_URL)")]
JsonOption = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]
ActorOption = Annotated[str | None, typer.Option("--actor", help="who makes the change (default: cli:$USER)")]


def _store(db: str | None):  # type: ignore[no-untyped-def]
    from knowcast.config import get_settings
    from knowcast.store import Store

    s = get_settings()
    return Store(db or s.database_url).migrate()


def _actor(actor: str | None) -> str:
    if actor:
        return actor
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = os.environ.get("USER", "unknown")
    return f"cli:{user}"


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


def _run(fn, *args: Any, **kwargs: Any) -> Any:  # type: ignore[no-untyped-def]
    """Call the service; its errors become exit codes (1 unknown key, 3 conflict, 2 bad input)."""
    from knowcast.experiments import service as svc

    try:
        return fn(*args, **kwargs)
    except svc.NotFound as exc:
        raise _fail(str(exc), 1) from None
    except svc.Conflict as exc:
        raise _fail(str(exc), 3) from None
    except svc.SpecError as exc:
        field = f" (field: {exc.field})" if exc.field else ""
        raise _fail(f"{exc}{field}", 2) from None


def _print_json(data: Any) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2, default=str))


def _show_spec(spec: Any, title: str) -> None:
    t = Table(title=title, show_header=False)
    t.add_column("field", style="bold")
    t.add_column("value")
    d = spec.to_dict(audit=False)
    for k in ("key", "name", "state", "decision_metric", "guardrails", "coverage", "layer", "layer_slice",
              "eligibility", "start", "stop", "salt"):
        v = d.get(k)
        if v in (None, "", [], {}):
            continue
        if k in ("start", "stop"):
            v = datetime.fromtimestamp(v / 1000, UTC).isoformat(timespec="seconds")
        t.add_row(k, json.dumps(v, ensure_ascii=False) if isinstance(v, list | dict) else str(v))
    t.add_row("variants", ", ".join(f"{v['key']} ({v['weight']:g})" for v in d["variants"]))
    console.print(t)


@app.command()
def create(
    file: Annotated[Path, typer.Argument(help="YAML (or JSON) file with the experiment spec")],
    actor: ActorOption = None,
    json_out: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Create a draft experiment from a YAML file (see docs/experiments.md for the fields)."""
    from knowcast.experiments import service as svc

    if not file.exists():
        raise _fail(f"{file} does not exist", 2)
    spec = _run(svc.create_experiment, _store(db).engine, file.read_text(encoding="utf-8"), _actor(actor))
    if json_out:
        _print_json(spec.to_dict(audit=False))
    else:
        _show_spec(spec, f"created {spec.key}")


@app.command("list")
def list_(
    state: Annotated[str | None, typer.Option(help="draft, running or stopped")] = None,
    json_out: JsonOption = False,
    db: DbOption = None,
) -> None:
    """List experiments, newest first."""
    from knowcast.experiments import service as svc

    rows = _run(svc.list_experiments, _store(db).engine, state)
    if json_out:
        _print_json(rows)
        return
    t = Table()
    for c in ("key", "state", "variants", "metric", "coverage", "layer", "updated"):
        t.add_column(c)
    for r in rows:
        t.add_row(r["key"], r["state"], ", ".join(r["variants"]), r["decision_metric"] or "",
                  f"{r['coverage']:.0%}", r["layer"] or "", (r["updated_at"] or "")[:19])
    console.print(t)


@app.command()
def show(key: str, json_out: JsonOption = False, db: DbOption = None) -> None:
    """One experiment's spec and its audit trail."""
    from knowcast.experiments import service as svc

    engine = _store(db).engine
    spec = _run(svc.get_experiment, engine, key)
    trail = _run(svc.audit_trail, engine, key)
    if json_out:
        _print_json({**spec.to_dict(audit=False), "audit": trail})
        return
    _show_spec(spec, key)
    t = Table(title="audit trail")
    for c in ("at", "actor", "action", "detail"):
        t.add_column(c)
    for a in trail:
        detail = a["detail"] if a["action"] != "create" else {"spec": "…"}
        t.add_row(a["at"][:19], a["actor"], a["action"], json.dumps(detail, ensure_ascii=False)[:80])
    console.print(t)


def _transition(fn_name: str, key: str, actor: str | None, db: str | None, **kw: Any) -> None:
    from knowcast.experiments import service as svc

    spec = _run(getattr(svc, fn_name), _store(db).engine, key, actor=_actor(actor), **kw)
    console.print(f"{spec.key}: {spec.state}, coverage {spec.coverage:.0%}")


@app.command()
def start(key: str, actor: ActorOption = None, db: DbOption = None) -> None:
    """draft -> running."""
    _transition("start_experiment", key, actor, db)


@app.command()
def stop(key: str, actor: ActorOption = None, db: DbOption = None) -> None:
    """draft or running -> stopped."""
    _transition("stop_experiment", key, actor, db)


@app.command()
def ramp(
    key: str,
    coverage: Annotated[float, typer.Option(help="share of eligible traffic, 0..1 (only up while running)")],
    actor: ActorOption = None,
    db: DbOption = None,
) -> None:
    """Change the share of traffic in the experiment (10% -> 50% -> 100%; nobody moves)."""
    _transition("ramp_experiment", key, actor, db, coverage=coverage)


@app.command()
def assign(
    key: str,
    user_id: str,
    attr: Annotated[
        list[str] | None, typer.Option("--attr", help="user attribute name=value (repeatable)")
    ] = None,
    log_exposure: Annotated[bool, typer.Option(help="also log the exposure event")] = False,
    json_out: JsonOption = False,
    db: DbOption = None,
) -> None:
    """The variant USER_ID sees (sticky), with the reason when not in the experiment."""
    from knowcast.experiments import service as svc

    attrs: dict[str, Any] = {}
    for a in attr or []:
        if "=" not in a:
            raise _fail(f"--attr expects name=value, got {a!r}", 2)
        k, v = a.split("=", 1)
        attrs[k.strip()] = svc.parse_attribute(v.strip())
    res = _run(svc.assign, _store(db).engine, key, user_id, attrs, log=log_exposure)
    if json_out:
        _print_json(svc.assignment_dict(res))
    else:
        console.print(f"{res.user_id} -> {res.variant or '(not in experiment)'}  [{res.reason}]")


def _print_report(report: dict[str, Any]) -> None:
    """Per metric and variant: n, mean, effect, CI, p, chance to win, CUPED; SRM, guardrails, verdict."""
    if not report.get("metrics"):
        console.print(report["verdict"])
        return
    rel = report.get("relative", True)

    def eff(x: float | None) -> str:
        return "" if x is None else (f"{x:+.2%}" if rel else f"{x:+.4g}")

    t = Table(title=f"{report['experiment']} ({report['state']}, {report['engine']})")
    cols = ("metric", "variant", "n", "mean", "effect", "95% CI", "p", "P(win)", "CUPED effect", "CUPED CI")
    for c in cols:
        t.add_column(c, justify="left" if c in ("metric", "variant") else "right")
    for m in report["metrics"]:
        label = f"{m['name']} ({m['role']})"
        for r in m["rows"]:
            if r.get("control"):
                mean = "" if r["mean"] is None else f"{r['mean']:.4g}"
                t.add_row(label, f"{r['variant']} (control)", f"{r['n']:,}", mean, "", "", "", "", "", "")
                label = ""
            elif "effect" in r:
                c = r.get("cuped") or {}
                t.add_row(
                    label, r["variant"], f"{r['n']:,}", f"{r['mean']:.4g}", eff(r["effect"]),
                    f"[{eff(r['ci'][0])}, {eff(r['ci'][1])}]", f"{r['p_value']:.3g}",
                    f"{r['chance_to_win']:.1%}", eff(c.get("effect")),
                    f"[{eff(c['ci'][0])}, {eff(c['ci'][1])}]" if c else "",
                )
                label = ""
    console.print(t)
    srm = report["srm"]
    flag = "[bold red]MISMATCH[/]" if srm["flag"] else "ok"
    console.print(f"SRM check: p = {srm['p_value']:.4g} ({flag}); counts {srm['counts']}")
    for g in report.get("guardrails", []):
        console.print(f"guardrail {g['metric']} / {g['variant']}: {g['status']}")
    rec = report["recommendation"]
    days = f", about {rec['days_left']:.0f} days left" if rec.get("days_left") else ""
    console.print(f"[bold]recommendation: {rec['action']}[/]{days}")
    console.print(report["verdict"])


@app.command()
def report(
    key: str,
    engine: Annotated[str, typer.Option(help="frequentist, bayesian or sequential")] = "frequentist",
    mde: Annotated[float, typer.Option(help="relative minimum detectable effect (for days left)")] = 0.05,
    alpha: Annotated[float, typer.Option(help="significance level")] = 0.05,
    cuped_days: Annotated[float, typer.Option(help="CUPED pre-period in days (0 = off)")] = 14.0,
    csv: Annotated[bool, typer.Option("--csv", help="print CSV (one row per metric and variant)")] = False,
    json_out: JsonOption = False,
    db: DbOption = None,
) -> None:
    """The experiment's report: effects, CIs, p-values, chance to win, CUPED, SRM, guardrails, verdict."""
    from knowcast.experiments import service as svc

    rep = _run(svc.results, _store(db).engine, key, engine_name=engine, mde=mde, alpha=alpha,
               cuped_days=cuped_days)
    if json_out:
        _print_json(rep)
    elif csv:
        print(svc.report_csv(rep), end="")
    else:
        _print_report(rep)


@app.command("analyze-real")
def analyze_real(
    name: Annotated[str, typer.Argument(help="udacity or cookie_cats")],
    data_dir: Annotated[
        Path | None, typer.Option(help="folder with the files (default: ../shared/data/experiments)")
    ] = None,
    json_out: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Import a real public A/B log through ingestion (once), record the experiment, print its report."""
    from knowcast.experiments import service as svc

    engine = _store(db).engine
    try:
        rep = _run(svc.analyze_real, engine, name, data_dir=data_dir,
                   progress=lambda k, n: err.print(f"  imported {k}: +{n:,}"))
    except FileNotFoundError as exc:
        raise _fail(f"{exc} (see ../shared/data/README.md)", 2) from None
    if json_out:
        _print_json(rep)
    else:
        _print_report(rep)
