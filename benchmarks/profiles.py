"""Profile usefulness: predict the tags of each user's next items from the profile built on earlier events.

Data: MovieLens ml-latest-small (real ratings; genres as tags; a rating >= 4 becomes a ``like``, a lower one a
``view`` with watch ratio rating/5) and a knowcast simulator run (``knowcast.sim``; items' tags). KuaiRec is
not used here: shared/data holds its captions and categories but not its interaction matrices, so there are
no real KuaiRec events to build profiles from.

Hit rate@k: share of each user's last ``n_next`` events whose item carries one of the predicted k tags;
baseline: the k globally most common tags in history, on the same events (same run). Predictors: the top-k
weights of the delta-rule interest vector ("interest vector"), and ``NextTagPredictor`` (recency-weighted,
popularity-smoothed profile over the tag sets of the user's items, k tags chosen for coverage), whose
parameters are tuned on a validation split of earlier events only (each user's last n_next *history*
events); the test events are never used for tuning. "popularity, coverage-chosen" is the same predictor
with the profile switched off, to show what the profile itself adds.

    python benchmarks/profiles.py [--k 3] [--n-next 5] [--sim-users 2000] [--out docs/benchmarks/profiles.md]
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

import pandas as pd

from knowcast.paths import shared_data
from knowcast.profiles.evaluate import next_tag_hit_rate
from knowcast.profiles.interest import ItemFeatures


def movielens_events() -> tuple[pd.DataFrame, ItemFeatures, dict]:
    folder = shared_data("movielens", "ml-latest-small")
    movies = pd.read_csv(folder / "movies.csv")
    ratings = pd.read_csv(folder / "ratings.csv")
    tags = {
        m: [g for g in s.split("|") if g != "(no genres listed)"]
        for m, s in zip(movies.movieId, movies.genres, strict=False)
    }
    items = ItemFeatures.from_tags(list(tags), list(tags.values()))
    ev = pd.DataFrame(
        {
            "user_id": ratings.userId,
            "item_id": ratings.movieId,
            "type": ["like" if r >= 4 else "view" for r in ratings.rating],
            "watch_ratio": ratings.rating / 5.0,
            "ts": ratings.timestamp * 1000,
        }
    )
    return ev, items, tags


def sim_events(n_users: int) -> tuple[pd.DataFrame, ItemFeatures, dict]:
    from knowcast.sim import SimConfig, simulate_platform

    p = simulate_platform(SimConfig(n_users=n_users, n_items=1000, days=30, seed=1))
    tags = {i: list(t) for i, t in zip(p.items.item_id, p.items.tags, strict=False)}
    return p.events, ItemFeatures.from_tags(list(tags), list(tags.values())), tags


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--n-next", type=int, default=5)
    ap.add_argument("--alpha", type=float, default=0.1)
    ap.add_argument("--half-life-days", type=float, default=30.0)
    ap.add_argument("--sim-users", type=int, default=2000, help="0 skips the simulator run")
    ap.add_argument("--out", default="docs/benchmarks/profiles.md")
    args = ap.parse_args(argv)
    rows = []
    sources = [("MovieLens ml-latest-small (real)", movielens_events)]
    if args.sim_users:
        sources.append(
            (f"knowcast simulator ({args.sim_users} users, 30 days)", lambda: sim_events(args.sim_users))
        )
    for name, load in sources:
        try:
            ev, items, tags = load()
        except (ImportError, FileNotFoundError, AttributeError, TypeError) as exc:
            print(f"skipping {name}: {exc}")
            continue
        t0 = time.perf_counter()
        r = next_tag_hit_rate(
            ev,
            items,
            tags,
            k=args.k,
            n_next=args.n_next,
            alpha=args.alpha,
            half_life_days=args.half_life_days,
        )
        r["seconds"] = time.perf_counter() - t0
        rows.append((name, r))
    lines = [
        "# Profiles: next-item tag prediction",
        "",
        f"Command: `python benchmarks/profiles.py --k {args.k} --n-next {args.n_next} --alpha {args.alpha} "
        f"--half-life-days {args.half_life_days} --sim-users {args.sim_users}`",
        "",
        f"Machine: 2 cores, no GPU; date {dt.date.today().isoformat()}",
        "",
        "KuaiRec: not measured, shared/data has no KuaiRec interaction matrix (only captions, categories and",
        "user features), so there are no real KuaiRec events to build profiles from.",
        "",
        f"| data | users | history events | future events | profile predictor hit@{args.k} "
        f"| interest vector hit@{args.k} | popularity, coverage-chosen | popularity hit@{args.k} (baseline) "
        "| predictor / baseline | seconds |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in rows:
        lines.append(
            f"| {name} | {int(r['users'])} | {int(r['history_events'])} | {int(r['future_events'])} "
            f"| **{r['predictor']:.4f}** | {r['profile']:.4f} | {r['popularity_coverage']:.4f} "
            f"| {r['popularity']:.4f} | {r['predictor'] / r['popularity']:.3f}x | {r['seconds']:.1f} |"
        )
    lines += ["", "Parameters chosen on the validation split (earlier events):", ""]
    for name, r in rows:
        lines.append(f"- {name}: {r['predictor_params']} (validation hit@{args.k} "
                     f"{r['predictor_validation']:.4f})")
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1:])
