"""Speed: tag and embed KuaiRec captions, and update interest + activity profiles from many events.

Peers in the same run: tagging is compared with the plain per-item loop (tokenize + TF-IDF + classify one by
one); the vectorised profile update with the sequential per-event reference rule on a 20,000-event sample.

    python benchmarks/content_profiles.py [--items 10000] [--events 1000000] [--out ...]
"""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from knowcast.content.embeddings import TfidfSvdEmbedder
from knowcast.content.tagging import CategoryClassifier, KeywordExtractor
from knowcast.content.text import item_document, tokenize_many
from knowcast.paths import shared_data
from knowcast.profiles.activity import ActivityProfiler
from knowcast.profiles.interest import InterestProfiler, ItemFeatures


def _rss() -> int:
    """Peak resident memory of this process so far, in bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _events(n: int, n_users: int, n_items: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    act = rng.lognormal(0, 1.0, n_users)
    return pd.DataFrame(
        {
            "user_id": rng.choice(n_users, n, p=act / act.sum()),
            "item_id": rng.integers(0, n_items, n),
            "type": rng.choice(
                ["view", "like", "comment", "purchase", "impression"], n, p=[0.6, 0.15, 0.05, 0.05, 0.15]
            ),
            "ts": np.sort(rng.integers(0, 30 * 86_400_000, n)),
            "watch_ratio": rng.random(n),
            "amount": rng.integers(1, 200, n).astype(float),
            "channel": rng.choice(["feed", "search", "push", "kol"], n),
            "device": rng.choice(["ios", "android", "web"], n),
        }
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=10_000)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--users", type=int, default=50_000)
    ap.add_argument("--out", default="docs/benchmarks/content_profiles.md")
    args = ap.parse_args(argv)
    rows = []
    df = pd.read_csv(shared_data("kuairec", "kuairec_caption_category.csv"), keep_default_na=False)
    df = df[df.first_level_category_name != "UNKNOWN"].iloc[: args.items]
    docs = [
        item_document(c, None, t, v)
        for c, t, v in zip(df.caption, df.topic_tag, df.manual_cover_text, strict=True)
    ]
    labels = df.first_level_category_name.to_numpy()
    clf = CategoryClassifier().fit(docs, labels)  # model training is not part of the tagging speed

    t0 = time.perf_counter()
    toks = tokenize_many(docs)
    kw = KeywordExtractor(top_k=5).fit(tokens=toks).transform(tokens=toks)
    cats = clf.predict(docs, tokens=toks)
    t_tag = time.perf_counter() - t0
    peak_tag = _rss()
    assert len(kw) == len(cats) == len(docs)
    rows.append(("tag (tokenize + keywords + category), batch", len(docs), t_tag, peak_tag, "items"))

    n_loop = min(1000, len(docs))
    t0 = time.perf_counter()
    kx = KeywordExtractor(top_k=5).fit(tokens=toks)
    for d in docs[:n_loop]:
        t = tokenize_many([d])
        kx.transform(tokens=t)
        clf.predict([d], tokens=t)
    t_loop = time.perf_counter() - t0
    rows.append(("tag one item at a time (peer)", n_loop, t_loop, 0, "items"))

    t0 = time.perf_counter()
    TfidfSvdEmbedder(dim=128).fit_transform(docs, toks)
    t_emb = time.perf_counter() - t0
    peak_emb = _rss()
    rows.append(("embed (TF-IDF + SVD, fit + transform)", len(docs), t_emb, peak_emb, "items"))

    rng = np.random.default_rng(0)
    n_items = 5000
    tag_lists = [
        list(rng.choice(64, size=rng.integers(1, 4), replace=False).astype(str)) for _ in range(n_items)
    ]
    items = ItemFeatures.from_tags(range(n_items), tag_lists)
    ev = _events(args.events, args.users, n_items)
    t0 = time.perf_counter()
    InterestProfiler(items).fit(ev)
    t_int = time.perf_counter() - t0
    peak_int = _rss()
    rows.append(("interest profile update (vectorised)", len(ev), t_int, peak_int, "events"))
    small = ev.iloc[:20_000]
    seq = InterestProfiler(items)
    seq._init_state()
    t0 = time.perf_counter()
    seq.update_sequential(small)
    t_seq = time.perf_counter() - t0
    rows.append(("interest profile update (sequential reference, peer)", len(small), t_seq, 0, "events"))
    t0 = time.perf_counter()
    ActivityProfiler().fit(ev)
    t_act = time.perf_counter() - t0
    peak_act = _rss()
    rows.append(("activity/RFM profile update", len(ev), t_act, peak_act, "events"))

    rate = {name: n / s for name, n, s, _, _ in rows}
    lines = [
        "# Content and profiles: speed",
        "",
        f"Command: `python benchmarks/content_profiles.py --items {args.items} --events {args.events} "
        f"--users {args.users}`",
        "",
        f"Machine: 2 cores, no GPU (shared with other jobs); date {dt.date.today().isoformat()}",
        "",
        "Events: synthetic, lognormal user activity over "
        f"{args.users} users, 5,000 items with 1-3 of 64 tags. Peak MiB: process peak RSS after the step.",
        "",
        "| step | n | seconds | per second | peak MiB |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, n, s, peak, unit in rows:
        lines.append(f"| {name} | {n:,} | {s:.2f} | {n / s:,.0f} {unit}/s | {peak / 2**20:.0f} |")
    lines += [
        "",
        f"Batch tagging vs one at a time: {rate[rows[0][0]] / rate[rows[1][0]]:.1f}x. "
        f"Vectorised vs sequential profile rule: {rate[rows[3][0]] / rate[rows[4][0]]:.1f}x.",
        "Targets: tagging >= 2,000 items/s; profile updates >= 200,000 events/s.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1:])
