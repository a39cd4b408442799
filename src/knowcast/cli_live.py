"""``knowcast live ...``: replay a recorded chat log through the live pipeline, locally or into a server."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Live rooms: replay recorded chat logs.", no_args_is_help=True)


def _fmt_offset(s: float) -> str:
    s = max(0.0, s)
    return f"{int(s // 60):02d}:{s % 60:04.1f}"


@app.command("replay")
def replay_cmd(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Danmaku XML or chat CSV file.")],
    speed: Annotated[
        float, typer.Option(help="1 = real time, 10 = ten times faster, 0 = as fast as possible.")
    ] = 10.0,
    room: Annotated[
        str | None, typer.Option(help="The live room (item id) to post into; also names a local replay.")
    ] = None,
    post: Annotated[
        str | None, typer.Option(help="Base URL of a knowcast server, e.g. http://127.0.0.1:8000.")
    ] = None,
    log_room: Annotated[
        str | None, typer.Option(help="Keep only this room of a multi-room log (Douyu room_id column).")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Stop after this many comments.")] = None,
    gap: Annotated[float, typer.Option(help="Seconds between messages of a log without times.")] = 1.0,
    api_key: Annotated[
        str | None, typer.Option(envvar="KNOWCAST_API_KEY", help="API key (ingest scope) for --post.")
    ] = None,
    batch_ms: Annotated[
        int, typer.Option(help="With --post, gather comments for this long per request.")
    ] = 100,
    out: Annotated[
        Path | None, typer.Option(help="Write the room's record (comments with verdicts, metrics) as JSON.")
    ] = None,
    show: Annotated[
        str, typer.Option(help="Print comments: all, flagged (review/block) or none.")
    ] = "flagged",
) -> None:
    """Replay FILE at --speed: through a local room (prints the moderated stream and a summary), or with
    --post into a running server's room, where consoles watch it live."""
    from knowcast.live.replay import read_chat_log

    if speed < 0:
        raise typer.BadParameter("--speed must be >= 0")
    if show not in ("all", "flagged", "none"):
        raise typer.BadParameter("--show must be all, flagged or none")
    try:
        records = read_chat_log(file, gap_s=gap, room_id=log_room)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if limit is not None:
        records = records[:limit]
    if not records:
        typer.echo("error: the log has no comments" + (f" for room {log_room}" if log_room else ""), err=True)
        raise typer.Exit(2)
    if post:
        if not room:
            raise typer.BadParameter("--post needs --room (the live item id to post into)")
        _post(records, post.rstrip("/"), room, speed, api_key, batch_ms)
        return
    _local(records, room or file.stem, speed, out, show)


def _local(records: list, room_id: str, speed: float, out: Path | None, show: str) -> None:
    from knowcast.live.pipeline import RoomState
    from knowcast.live.replay import replay

    state = RoomState(room_id)
    t0 = time.perf_counter()
    n = 0
    for rec, a in replay(records, state, speed=speed, sleep=time.sleep):
        n += 1
        act = a.verdict.action
        if show == "all" or (show == "flagged" and act != "pass"):
            tag = act if act == "pass" else f"{act}:{a.verdict.category or ''}"
            q = " ?" if a.is_question else ""
            typer.echo(f"{_fmt_offset(rec.offset_s)} [{tag}]{q} {a.text[:120]}")
    elapsed = time.perf_counter() - t0
    record = state.finish()
    snap = state.snapshot(5)
    verdicts = record["verdicts"]
    typer.echo(
        f"\nreplayed {n} comments in {elapsed:.1f}s ({n / max(elapsed, 1e-9):.0f}/s); verdicts: "
        + ", ".join(f"{k} {v}" for k, v in sorted(verdicts.items()))  # type: ignore[union-attr]
    )
    qs = snap["top_questions"]
    if qs:
        typer.echo("top questions: " + " | ".join(f"{q['text'][:40]} ×{q['count']}" for q in qs))  # type: ignore[index,union-attr]
    tr = snap["trending"]
    if tr:
        typer.echo("trending now: " + ", ".join(str(t["term"]) for t in tr))  # type: ignore[index,union-attr]
    hl = record["highlights"]
    if hl:
        typer.echo(f"highlight candidates: {len(hl)}")  # type: ignore[arg-type]
        for h in hl[:5]:  # type: ignore[index]
            words = " ".join(h.get("top_words") or [])
            typer.echo(f"  {_fmt_offset(h['start_s'])}–{_fmt_offset(h['end_s'])} ×{h['peak_ratio']} {words}")
    if out is not None:
        out.write_text(json.dumps(record, ensure_ascii=False, default=str), encoding="utf-8")
        typer.echo(f"record written to {out}")


def _post(records: list, base: str, room: str, speed: float, api_key: str | None, batch_ms: int) -> None:
    """Post the log into a server room, keeping the log's pace (divided by ``speed``)."""
    import hashlib

    import httpx

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    url = f"{base}/v1/rooms/{room}/comments"
    # Stable comment ids: posting the same log twice stores it once.
    tag = hashlib.sha1(f"{room}".encode()).hexdigest()[:8]
    start = time.perf_counter()
    t_first = records[0].offset_s
    sent = dup = skipped = 0
    pending: list[dict] = []
    with httpx.Client(timeout=30) as client:

        def flush() -> None:
            nonlocal sent, dup, pending
            if not pending:
                return
            for attempt in range(10):
                r = client.post(url, json=pending, headers=headers)
                if r.status_code == 429:
                    time.sleep(float(r.headers.get("Retry-After", "1")))
                    continue
                if r.status_code >= 500 and attempt < 9:
                    time.sleep(0.5 * (attempt + 1))
                    continue
                break
            if r.status_code != 200:
                typer.echo(f"error: {r.status_code} from {url}: {r.text[:300]}", err=True)
                raise typer.Exit(1)
            body = r.json()
            sent += body["accepted"]
            dup += body["duplicates"]
            pending = []

        last_flush = time.perf_counter()
        for i, rec in enumerate(records):
            if speed > 0:
                due = start + (rec.offset_s - t_first) / speed
                wait = due - time.perf_counter()
                if wait > 0:
                    if pending and time.perf_counter() - last_flush >= batch_ms / 1000:
                        flush()
                        last_flush = time.perf_counter()
                        wait = due - time.perf_counter()
                    if wait > 0:
                        time.sleep(wait)
            if not rec.text.strip():
                skipped += 1  # the server refuses empty comments
                continue
            pending.append(
                {"comment_id": f"replay-{tag}-{i}", "text": rec.text, "user_id": rec.user_id or "replay"}
            )
            if len(pending) >= 1000 or time.perf_counter() - last_flush >= batch_ms / 1000:
                flush()
                last_flush = time.perf_counter()
        flush()
    elapsed = time.perf_counter() - start
    typer.echo(
        f"posted {sent} comments to room {room} in {elapsed:.1f}s "
        f"({dup} already there, {skipped} empty skipped)"
    )


__all__ = ["app"]
