"""Live-comment figures: moderation speed and quality, whole-pipeline speed.

    python benchmarks/live.py [--repeat 3] [--naive 200] [--positives 2000] [--pipeline 4832] [--batch 500]
                              [--out docs/benchmarks/live.md]

1. Moderation speed on the real Bilibili danmaku (and Douyu live chat) with the full lexicon, one core:
   ``Moderator.moderate_many`` on batches of ``--batch`` comments in file order (what a POST of a batch
   does) and ``Moderator.moderate`` one comment at a time, and a naive Python loop
   ``any(word in text for word in lexicon)`` over the same lexicon in the same run.
2. Whole-pipeline speed (normalise, moderate + flood, sentiment, question, keywords, trending, highlights)
   through a RoomState: ``RoomState.add_comments`` on batches of ``--batch`` and ``add_comment`` one by one.
3. Moderation quality: positives are lexicon words (seeded sample) with evasions applied (spacing, symbols,
   zero-width, traditional characters, homophones, pinyin), each inside a clean real danmaku; negatives are
   the clean real danmaku: those in which a literal, case- and width-folded match of the full lexicon finds
   nothing (so the figure is the false-positive rate our evasion handling adds on text the lexicon itself
   calls clean). Also reported: how many of all danmaku each approach flags.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import sys
import time
from collections import Counter
from pathlib import Path

import ahocorasick
import pandas as pd

from knowcast.live.pipeline import CommentPipeline, RoomState
from knowcast.live.replay import read_chat_log
from knowcast.paths import shared_data
from knowcast.text.keywords import idf_table as keywords_idf_table
from knowcast.text.keywords import is_keyword_token
from knowcast.text.moderation import Moderator, _flood_features, lexicon_dir, pinyin_table
from knowcast.text.normalize import fold
from knowcast.text.questions import shingles
from knowcast.text.tokenize import _cut, _tokens

SYMBOLS = ["*", "❤", ".", "-", "_", "|", "☆", "~"]


def _lexicon() -> list[str]:
    words = (lexicon_dir() / "words_zh.txt").read_text(encoding="utf-8").splitlines()
    return [w.strip() for w in words if w.strip()]


def _homophone_map() -> dict[str, list[str]]:
    """syllable → common Han characters with that toneless reading (for homophone evasions)."""
    by_syl: dict[str, list[str]] = {}
    for cp, syl in pinyin_table().items():
        if 0x4E00 <= cp <= 0x9FA5:
            by_syl.setdefault(syl, []).append(chr(cp))
    return by_syl


def evasions(word: str, rng: random.Random, s2t, homo: dict[str, list[str]]) -> dict[str, str]:
    py = pinyin_table()
    out = {
        "plain": word,
        "spacing": " ".join(word),
        "symbols": rng.choice(SYMBOLS).join(word),
        "zero_width": "\u200b".join(word),
        "traditional": s2t(word),
        "pinyin": " ".join(py.get(ord(c), c) for c in word),
    }
    han = [i for i, c in enumerate(word) if ord(c) in py]
    if han:
        i = rng.choice(han)
        alts = [c for c in homo.get(py[ord(word[i])], []) if c != word[i]]
        if alts:
            out["homophone"] = word[:i] + rng.choice(alts[:20]) + word[i + 1 :]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=3, help="passes over the danmaku for the speed figure")
    ap.add_argument("--naive", type=int, default=200, help="comments timed with the naive loop")
    ap.add_argument("--positives", type=int, default=2000, help="lexicon words sampled for recall")
    ap.add_argument("--pipeline", type=int, default=4832, help="comments through the whole pipeline")
    ap.add_argument("--batch", type=int, default=500, help="comments per batch for the batch rows")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", type=Path, default=Path("docs/benchmarks/live.md"))
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)

    t0 = time.perf_counter()
    mod = Moderator()
    build_s = time.perf_counter() - t0
    lex = _lexicon()
    danmaku = [r.text for r in read_chat_log(shared_data("danmaku", "bilibili_av80976236.csv"))]
    chat = (
        pd.read_csv(shared_data("livechat", "douyu_rooms_2018.csv"))["text"].fillna("").astype(str).tolist()
    )
    for t in danmaku[:50]:
        mod.moderate(t)
    mod.moderate_many(danmaku[:200])  # builds the batch tables (once per moderator, ~1 s)

    # 1. speed -------------------------------------------------------------------------------------
    # Every pass starts with empty caches (the verdict LRU, flood features, jieba runs, token lists, text
    # analyses), so a repeat inside the file is the only thing a cache can help with, as in a live room.
    def cold() -> None:
        mod.cache_clear()
        _tokens.cache_clear()
        _cut.cache_clear()
        shingles.cache_clear()
        is_keyword_token.cache_clear()
        _flood_features.cache_clear()

    def timed(fn, data) -> tuple[float, float]:
        """(comments per wall second, comments per CPU second of this process) over ``repeat`` cold passes."""
        wall = cpu = 0.0
        for _ in range(args.repeat):
            cold()
            w0, c0 = time.perf_counter(), time.process_time()
            for t in data:
                fn(t)
            wall += time.perf_counter() - w0
            cpu += time.process_time() - c0
        n = len(data) * args.repeat
        return n / wall, n / cpu

    def batches(data: list) -> list[list]:
        return [data[i : i + args.batch] for i in range(0, len(data), args.batch)]

    loads = {"start": os.getloadavg()}
    speed = {}
    for name, data in (("danmaku (Bilibili)", danmaku), ("live chat (Douyu)", chat)):
        wall, cpu = timed(mod.moderate_many, batches(data))
        n_batches = len(batches(data))
        mean_len = sum(map(len, data)) / len(data)
        speed[("batch", name)] = (wall * len(data) / n_batches, cpu * len(data) / n_batches, mean_len)
        speed[("one", name)] = (*timed(mod.moderate, data), mean_len)
    nocache = timed(mod._moderate, danmaku)
    lex_folded = [fold(w) for w in lex]
    sample = danmaku[: args.naive]
    w0, c0 = time.perf_counter(), time.process_time()
    for t in sample:
        f = fold(t)
        any(w in f for w in lex_folded)
    naive_rate = (len(sample) / (time.perf_counter() - w0), len(sample) / (time.process_time() - c0))
    loads["after moderation"] = os.getloadavg()
    print(f"moderation: {speed}  no cache: {nocache}  naive: {naive_rate}  build {build_s:.1f}s  "
          f"load {loads}", flush=True)  # fmt: skip

    # 2. pipeline ----------------------------------------------------------------------------------
    recs = read_chat_log(shared_data("danmaku", "bilibili_av80976236.csv"))[: args.pipeline]
    pipe = CommentPipeline(moderator=mod)
    RoomState(pipeline=pipe).add_comment("预热", 0.0)
    keywords_idf_table()
    uniq = list(dict.fromkeys(c for c in chat if c))[: args.pipeline]
    pipe.analyze_batch([(t, 0.0, None, None) for t in danmaku[:200]])
    pipe_rates = {}
    for label, items in (("danmaku", [(r.text, r.offset_s, r.user_id, None) for r in recs]),
                         ("chat", [(t, float(i), None, None) for i, t in enumerate(uniq)])):  # fmt: skip
        for mode in ("batch", "one"):
            wall = cpu = 0.0
            for _ in range(args.repeat):
                cold()
                pipe.cache_clear()
                room = RoomState(pipeline=pipe)
                w0, c0 = time.perf_counter(), time.process_time()
                if mode == "batch":
                    for chunk in batches(items):
                        room.add_comments(chunk)
                else:
                    for text, ts, user, _ in items:
                        room.add_comment(text, ts, user)
                wall += time.perf_counter() - w0
                cpu += time.process_time() - c0
            pipe_rates[(mode, label)] = (len(items) * args.repeat / wall, len(items) * args.repeat / cpu)
    loads["after pipeline"] = os.getloadavg()
    print(f"pipeline: {pipe_rates}  load {loads}", flush=True)

    # 3. quality -----------------------------------------------------------------------------------
    auto = ahocorasick.Automaton()
    for w in set(lex_folded):
        auto.add_word(w, w)
    auto.make_automaton()
    clean = [t for t in danmaku if next(auto.iter(fold(t)), None) is None and len(t) < 60]
    naive_flag_all = sum(1 for t in danmaku if next(auto.iter(fold(t)), None) is not None)
    ours_flag_all = sum(1 for t in danmaku if mod.moderate(t).flagged)
    fp = [t for t in clean if mod.moderate(t).flagged]
    import opencc

    s2t = opencc.OpenCC("s2t").convert
    homo = _homophone_map()
    words = rng.sample([w for w in lex if len(w) >= 2], args.positives)
    hit: Counter[str] = Counter()
    tot: Counter[str] = Counter()
    miss_examples: dict[str, list[str]] = {}
    for w in words:
        ctx = rng.choice(clean)
        cut = rng.randint(0, len(ctx))
        for kind, ev in evasions(w, rng, s2t, homo).items():
            text = ctx[:cut] + " " + ev + " " + ctx[cut:]
            tot[kind] += 1
            if mod.moderate(text).flagged:
                hit[kind] += 1
            elif len(miss_examples.setdefault(kind, [])) < 3:
                miss_examples[kind].append(ev)
    rec_all = sum(hit.values()) / sum(tot.values())
    print(f"recall {rec_all:.4f} {dict(hit)} / {dict(tot)}; FP {len(fp)}/{len(clean)}", flush=True)

    # report ---------------------------------------------------------------------------------------
    dm_rate, _, dm_len = speed[("one", "danmaku (Bilibili)")]
    chat_len = sum(map(len, uniq)) / max(1, len(uniq))
    lines = [
        "# Live comments: moderation and pipeline",
        "",
        "Command: `python benchmarks/live.py"
        + "".join(
            f" --{k} {v}"
            for k, v in (
                ("repeat", args.repeat),
                ("naive", args.naive),
                ("positives", args.positives),
                ("pipeline", args.pipeline),
                ("batch", args.batch),
            )
        )
        + "`  ",
        "Machine: 2 cores (shared with other jobs, see the load averages below), no GPU, one core used. "
        f"Date: {dt.date.today().isoformat()}.  ",
        f"Lexicon: {len(lex):,} words (words_zh.txt) + categories + konsheng category lists; "
        f"{mod.n_words:,} entries in the automaton; built in {build_s:.1f} s.",
        "",
        "## Speed (one core)",
        "",
        "Load average (1 / 5 / 15 min) "
        + "; ".join(f"{k}: {v[0]:.1f} / {v[1]:.1f} / {v[2]:.1f}" for k, v in loads.items())
        + ". On this shared 2-core machine the wall-clock rate depends on the other jobs; the CPU-time rate "
        "(comments per CPU-second of the benchmark process, `time.process_time`) much less so. Every pass "
        "starts with empty caches, so a cache only helps with texts repeated inside the file.",
        "",
        "| what | data | comments/s (wall) | comments per CPU-second | mean length (chars) |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    what = {
        "batch": f"moderation, batches of {args.batch} (`Moderator.moderate_many`)",
        "one": "moderation, one by one (`Moderator.moderate`)",
    }
    for (mode, name), (rate, cpu_rate, ln) in speed.items():
        star = "**" if mode == "batch" else ""
        lines.append(f"| {what[mode]} | {name} | {rate:,.0f} | {star}{cpu_rate:,.0f}{star} | {ln:.0f} |")
    lines += [
        "| moderation, one by one, without the verdict cache | danmaku (Bilibili) | "
        f"{nocache[0]:,.0f} | {nocache[1]:,.0f} | {dm_len:.0f} |",
        f"| naive `any(w in text for w in lexicon)` | danmaku, first {len(sample)} | {naive_rate[0]:,.1f} "
        f"| {naive_rate[1]:,.1f} | {dm_len:.0f} |",
    ]
    pwhat = {
        "batch": f"whole pipeline, batches of {args.batch} (`RoomState.add_comments`)",
        "one": "whole pipeline, one by one (`RoomState.add_comment`)",
    }
    for (mode, label), (rate, cpu_rate) in pipe_rates.items():
        data = (
            f"danmaku (Bilibili), {len(recs)} in file order"
            if label == "danmaku"
            else (f"live chat (Douyu), {len(uniq)} distinct")
        )
        star = "**" if mode == "batch" else ""
        ln = dm_len if label == "danmaku" else chat_len
        lines.append(f"| {pwhat[mode]} | {data} | {rate:,.0f} | {star}{cpu_rate:,.0f}{star} | {ln:.0f} |")
    one_cpu = speed[("one", "danmaku (Bilibili)")][1]
    lines += [
        "",
        f"Moderation vs the naive loop, same run: **{dm_rate / naive_rate[0]:,.0f}×** faster on the danmaku "
        f"one comment at a time (wall; {one_cpu / naive_rate[1]:,.0f}× in CPU time); the batch path is "
        f"{speed[('batch', 'danmaku (Bilibili)')][1] / one_cpu:.1f}× the one-by-one path in CPU time, with "
        "the same verdicts (tests/text/test_moderation_batch.py).",
        "",
        "## Moderation quality",
        "",
        f"Positives: {args.positives} lexicon words of 2+ characters (seed {args.seed}), each evasion "
        "inserted "
        f"into a clean real danmaku. Negatives: {len(clean)} clean real danmaku (no literal lexicon match, "
        "shorter than 60 characters).",
        "",
        "| evasion | caught | of | recall | missed examples |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for kind in tot:
        ex = ", ".join(f"`{e}`" for e in miss_examples.get(kind, []))
        lines.append(f"| {kind} | {hit[kind]} | {tot[kind]} | {hit[kind] / tot[kind]:.1%} | {ex} |")
    lines += [
        f"| **all** | {sum(hit.values())} | {sum(tot.values())} | **{rec_all:.1%}** | |",
        "",
        f"False positives on clean danmaku: **{len(fp)} / {len(clean)} = {len(fp) / max(1, len(clean)):.2%}**"
        + (" (e.g. " + ", ".join(f"`{t[:30]}`" for t in fp[:5]) + ")" if fp else "")
        + ".",
        "",
        f"Share of all {len(danmaku)} danmaku flagged: literal lexicon match "
        f"{naive_flag_all / len(danmaku):.1%}, "
        f"knowcast {ours_flag_all / len(danmaku):.1%} (the file holds raid spam and insults; knowcast drops "
        "everyday words such as 火车, 征服, 共和国 that the raw lexicon flags).",
        "",
        "Targets: moderation ≥ 100,000 comments/s, pipeline ≥ 5,000 comments/s (both on one core: the "
        "batch rows, in CPU time), recall ≥ 95%, false positives ≤ 1%.",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
