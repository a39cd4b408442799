"""The bus (in-process and Redis), the rate limiter, input checks, and the replay / analyze CLIs."""

from __future__ import annotations

import asyncio

import pandas as pd
import pytest
from typer.testing import CliRunner

from knowcast.live.bus import InProcessBus, RedisBus
from knowcast.live.service import BadRows, RateLimited, RateLimiter, TokenBucket, check_comments, clean_text
from knowcast.paths import shared_data

from .conftest import REDIS_URL, redis_reason


def test_inprocess_bus_fanout_and_drop_oldest() -> None:
    async def run() -> tuple[list, list, int]:
        bus = InProcessBus(queue_size=3)
        a, b = bus.subscribe("r"), bus.subscribe("r")
        other = bus.subscribe("x")
        for i in range(5):
            await bus.publish("r", {"i": i})
        got_a = [a.get_nowait()["i"] for _ in range(3)]
        b.close()
        await bus.publish("r", {"i": 5})
        assert other.get_nowait() is None and bus.subscribers("r") == 1
        return got_a, [(await a.get(0.1))["i"]], a.dropped

    got, nxt, dropped = asyncio.run(run())
    assert got == [2, 3, 4] and nxt == [5] and dropped == 2


@pytest.mark.skipif(redis_reason() is not None, reason=str(redis_reason()))
def test_redis_bus_between_two_processes_in_one_loop() -> None:
    async def run() -> tuple[dict, dict, list]:
        a, b = RedisBus(REDIS_URL), RedisBus(REDIS_URL)
        seen_remote: list = []
        b.on_remote = lambda room, msg: seen_remote.append((room, msg["n"]))
        await a.start()
        await b.start()
        sub_a, sub_b = a.subscribe("room-t"), b.subscribe("room-t")
        await a.publish("room-t", {"type": "comments", "n": 1})
        local = await sub_a.get(2)
        remote = await sub_b.get(5)
        again = await sub_a.get(0.3)  # a's own message is not delivered twice
        await a.close()
        await b.close()
        assert again is None
        return local, remote, seen_remote

    local, remote, seen = asyncio.run(run())
    assert local == remote == {"type": "comments", "n": 1} and seen == [("room-t", 1)]


def test_token_bucket_and_limiter() -> None:
    b = TokenBucket(rate=10, capacity=20, now=0.0)
    assert b.take(20, 0.0) == 0 and b.take(1, 0.0) == pytest.approx(0.1)
    assert b.take(5, 0.5) == 0  # 5 tokens refilled in half a second
    t = [0.0]
    lim = RateLimiter(100, 100, clock=lambda: t[0])
    lim.check("k1", "r", 100)
    with pytest.raises(RateLimited) as e:
        lim.check("k1", "r", 50)
    assert e.value.retry_after == pytest.approx(0.5)
    lim.check("k2", "r", 100)  # another client has its own bucket
    lim.check("k1", "other-room", 1)
    t[0] = 1.0
    lim.check("k1", "r", 100)


def test_check_comments_names_rows_and_fields() -> None:
    out = check_comments(
        ["hi", {"text": "yo", "comment_id": 7, "user_id": "u", "ts": 1_700_000_000}], 2_000_000_000_000
    )
    assert (
        [c.text for c in out] == ["hi", "yo"]
        and out[1].comment_id == "7"
        and out[1].client_ts_ms == 1_700_000_000_000
    )
    assert out[0].user_id == "anonymous" and len(out[0].comment_id) == 32
    with pytest.raises(BadRows) as e:
        check_comments([{"text": "a", "user_id": "u" * 129}, 3, {"text": "b", "ts": 9e12}], 1_700_000_000_000)
    assert [(x["row"], x["field"]) for x in e.value.errors] == [(0, "user_id"), (1, "<row>"), (2, "ts")]
    with pytest.raises(BadRows, match="over the 2 limit"):
        check_comments(["a", "b", "c"], 0, max_batch=2)
    assert clean_text(b"a\xffb") == "ab" and clean_text("x\ud800y\x00") == "xy"


runner = CliRunner()


def _app():  # type: ignore[no-untyped-def]
    from knowcast.cli import app

    return app


@pytest.mark.parametrize("name", ["bilibili_av80976236.csv", "bilibili_av80976236.xml"])
def test_replay_cli_on_real_danmaku(name: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = shared_data("danmaku", name)
    if not path.exists():
        pytest.skip(f"{path} is absent")
    out = tmp_path / "rec.json"
    r = runner.invoke(
        _app(),
        ["live", "replay", str(path), "--speed", "0", "--limit", "300", "--show", "none", "--out", str(out)],
    )
    assert r.exit_code == 0, r.output
    assert "replayed 300 comments" in r.output
    import json

    rec = json.loads(out.read_text())
    assert len(rec["comments"]) == 300 and rec["metrics_per_minute"]
    assert all(c["moderation"]["action"] in ("pass", "review", "block") for c in rec["comments"])


def test_replay_cli_on_real_livechat_at_speed(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = shared_data("livechat", "douyu_dytools.csv")
    if not path.exists():
        pytest.skip(f"{path} is absent")
    # 66 messages spanning about 100 s: at speed 1000 the replay must take at least ~0.1 s of sleeps
    import time

    t0 = time.perf_counter()
    r = runner.invoke(_app(), ["live", "replay", str(path), "--speed", "1000", "--show", "all"])
    assert r.exit_code == 0, r.output
    assert "replayed 66 comments" in r.output and "top questions" in r.output
    assert time.perf_counter() - t0 >= 0.05
    bad = runner.invoke(_app(), ["live", "replay", str(path), "--post", "http://127.0.0.1:9"])
    assert bad.exit_code != 0 and "--room" in bad.output


def test_analyze_comments_cli(tmp_path) -> None:  # type: ignore[no-untyped-def]
    src = tmp_path / "in.csv"
    pd.DataFrame(
        {
            "id": [1, 2, 3, 4],
            "body": ["请问这门课多少钱？", "微信 13812345678", "太棒了，老师讲得真好", "😂😂"],
        }
    ).to_csv(src, index=False)
    out = tmp_path / "out.csv"
    r = runner.invoke(_app(), ["analyze", "comments", str(src), "--text-column", "body", "--out", str(out)])
    assert r.exit_code == 0, r.output
    df = pd.read_csv(out, keep_default_na=False)
    assert list(df.columns)[:2] == ["id", "body"]
    for col in ("normalized", "moderation", "category", "span_start", "span_end", "matched", "sentiment",
                "sentiment_score", "is_question", "keywords"):  # fmt: skip
        assert col in df.columns
    assert (
        str(df["is_question"][0]) == "True" and df["moderation"][1] == "block" and df["category"][1] == "ads"
    )
    assert df["matched"][1] == "13812345678" and int(df["span_start"][1]) == 3
    assert set(df["sentiment"]) <= {"positive", "neutral", "negative"} and df["keywords"][0]
    assert df["sentiment_score"].astype(float).between(-1, 1).all()
    assert float(df["sentiment_score"][2]) > float(df["sentiment_score"][1])  # praise above an ad
    missing = runner.invoke(
        _app(), ["analyze", "comments", str(src), "--text-column", "nope", "--out", str(out)]
    )
    assert missing.exit_code == 2 and "nope" in missing.output
