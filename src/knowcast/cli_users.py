"""``knowcast users``: export or erase one user's data, and expire old raw events."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

app = typer.Typer(no_args_is_help=True)
console = Console()
DbOption = Annotated[str | None, typer.Option("--db", help="database URL")]


def _engine(db: str | None):  # type: ignore[no-untyped-def]
    from knowcast.cli import _store

    return _store(db).engine


@app.command("export")
def export(
    user_id: str,
    out: Annotated[Path | None, typer.Option(help="write JSON here instead of stdout")] = None,
    db: DbOption = None,
) -> None:
    """Everything knowcast holds about a user, as JSON."""
    from knowcast.services.privacy import UnknownUser, export_user

    try:
        data = export_user(_engine(db), user_id)
    except UnknownUser as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None
    text = json.dumps(data, ensure_ascii=False, indent=2, default=str)
    if out:
        out.write_text(text)
        console.print(f"wrote {out}")
    else:
        print(text)


@app.command("erase")
def erase(
    user_id: str,
    yes: Annotated[bool, typer.Option("--yes", help="do not ask for confirmation")] = False,
    db: DbOption = None,
) -> None:
    """Delete a user's events, comments, exposures, profile and segment memberships (audited)."""
    from knowcast.services.privacy import UnknownUser, erase_user

    if not yes:
        typer.confirm(f"erase every trace of {user_id}?", abort=True)
    try:
        counts = erase_user(_engine(db), user_id, actor="cli")
    except UnknownUser as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None
    console.print(f"erased {user_id}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))


@app.command("prune-events")
def prune(
    older_than_days: Annotated[int, typer.Option(help="retention period in days")],
    db: DbOption = None,
) -> None:
    """Delete raw events older than the retention period."""
    from knowcast.services.privacy import prune_events

    try:
        n = prune_events(_engine(db), older_than_days, actor="cli")
    except ValueError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    console.print(f"deleted {n:,} events older than {older_than_days} days")
