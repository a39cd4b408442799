"""Sentiment accuracy on held-out rows: knowcast's own model vs SnowNLP, same rows, same run.

    python benchmarks/sentiment.py [--limit N] [--out docs/benchmarks/sentiment.md]

The held-out rows are exactly those ``knowcast.text.train_sentiment.split`` keeps out of training (fixed
seed), so the model never saw them. SnowNLP's built-in sentiment (trained on its own product reviews) is the
peer: p >= 0.5 means positive for both. knowcast is measured with the corpus's own coefficient column
(``domain="hotel"`` / ``"waimai"``, the texts' source being known) and, for reference, with the ``general``
column that live comments use.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path

import numpy as np

from knowcast.text.sentiment import MODEL_PATH, default_model
from knowcast.text.train_sentiment import CORPORA, SEED, load_corpus, split


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--limit", type=int, default=0, help="at most N held-out rows per corpus (0 = all)")
    ap.add_argument("--out", type=Path, default=Path("docs/benchmarks/sentiment.md"))
    args = ap.parse_args(argv)
    from snownlp import SnowNLP

    load = os.getloadavg()
    model = default_model()
    rows = []
    for name in CORPORA:
        df = load_corpus(name)
        y = df["label"].to_numpy()
        _, te = split(y, seed=SEED)
        if args.limit:
            te = te[: args.limit]
        texts = df["review"].astype(str).iloc[te].tolist()
        yt = y[te]
        t0 = time.perf_counter()
        ours = model.predict_proba(texts, domain=name) >= 0.5
        t_ours = time.perf_counter() - t0
        general = model.predict_proba(texts) >= 0.5
        t0 = time.perf_counter()
        snow = np.array([SnowNLP(t).sentiments >= 0.5 for t in texts])
        t_snow = time.perf_counter() - t0
        acc_o = float((ours.astype(int) == yt).mean())
        acc_s = float((snow.astype(int) == yt).mean())
        acc_g = float((general.astype(int) == yt).mean())
        rows.append((name, len(te), acc_o, acc_g, acc_s, len(te) / t_ours, len(te) / t_snow))
        print(f"{name:8s} n={len(te):5d} knowcast={acc_o:.4f} general={acc_g:.4f} snownlp={acc_s:.4f} "
              f"({len(te) / t_ours:.0f} vs {len(te) / t_snow:.0f} texts/s)", flush=True)  # fmt: skip
    lines = [
        "# Sentiment: held-out accuracy, knowcast vs SnowNLP",
        "",
        f"Command: `python benchmarks/sentiment.py{' --limit ' + str(args.limit) if args.limit else ''}`  ",
        "Machine: 2 cores (shared with other jobs; load average "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} over 1 / 5 / 15 min at the start), no GPU. "
        f"Date: {dt.date.today().isoformat()}.  ",
        f"Model: `{MODEL_PATH.name}`, {MODEL_PATH.stat().st_size / 1e6:.1f} MB, {len(model.vocab):,} "
        f"n-grams, columns {', '.join(model.domains)}.  ",
        f"Held-out: 20% of each corpus, stratified, seed {SEED} (`knowcast.text.train_sentiment.split`); "
        "the model was trained on the other 80% only.",
        "",
        "| corpus | held-out rows | knowcast accuracy (corpus column) | knowcast, general column "
        "| SnowNLP accuracy | difference (points) | knowcast texts/s | SnowNLP texts/s | speed ratio |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, n, a, g, s, so, ss in rows:
        lines.append(
            f"| {name} | {n} | {a:.2%} | {g:.2%} | {s:.2%} | {100 * (a - s):+.1f} | {so:.0f} | {ss:.0f} "
            f"| {so / ss:.1f}× |"
        )
    lines += [
        "",
        "Target: ≥ 90% on each corpus and ≥ 5 points above SnowNLP. The difference column compares the "
        "corpus column with SnowNLP on the same rows; texts/s are one core, same run (they move with the "
        "machine's load, the ratio less so).",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
