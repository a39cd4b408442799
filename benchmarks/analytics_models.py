"""Quality of the analytics models on a time split of a seeded simulator run, next to trivial baselines.

    python benchmarks/analytics_models.py --users 5000 --items 2000 --days 30 --seed 0
    python benchmarks/analytics_models.py --db sqlite:////tmp/kc.db     # a store already seeded

Models (all ``knowcast.analytics``): the commercial-value score of each short video and live (did it drive a
purchase of what it promotes within the horizon, from first-hour signals), churn (no activity in the next
7 days) and buy propensity (a purchase in them). Each is trained on the earlier period and evaluated on the
later one; in the same run and on the same cases, the trivial baselines: ``base_rate`` (everyone gets the
training positive rate: AUC 0.5, the Brier score to beat) and a one-column heuristic (first-hour views;
recency of the last visit; number of views). Writes docs/benchmarks/analytics_models.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def _markdown(df: pd.DataFrame) -> str:
    head = "| " + " | ".join(str(c) for c in df.columns) + " |"
    sep = (
        "| "
        + " | ".join("---:" if pd.api.types.is_numeric_dtype(df[c]) else "---" for c in df.columns)
        + " |"
    )
    body = [
        "| " + " | ".join("–" if isinstance(v, float) and v != v else f"{v:.3f}" if isinstance(v, float)
                          else str(v) for v in row) + " |"
        for row in df.itertuples(index=False)
    ]  # fmt: skip
    return "\n".join([head, sep, *body])


def _load() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return "n/a"


def commercial_on_seed(args: argparse.Namespace, seed: int) -> list[dict[str, object]]:
    """Simulate one more seed and score commercial value on it (both horizons): model vs one-column AUCs."""
    from knowcast.analytics import service
    from knowcast.services.demo import seed_demo
    from knowcast.sim import SimConfig
    from knowcast.store import Store

    tmp = tempfile.mkdtemp(prefix=f"kc_models_{seed}_")
    store = Store(f"sqlite:///{tmp}/sim.db").migrate()
    cfg = SimConfig(seed=seed, n_creators=args.creators, n_items=args.items, n_users=args.users,
                    days=args.days)  # fmt: skip
    seed_demo(store.engine, cfg)
    rows: list[dict[str, object]] = []
    for horizon in (args.horizon, 1.0):
        rep = service.commercial_value(store.engine, horizon_days=horizon, lookback_days=horizon)["report"]
        m = rep.model
        rows.append({"seed": seed, "horizon_days": horizon, "test": m.n,
                     "positives": round(m.n * m.base_rate), "model_auc": m.auc,
                     "first_hour_views_auc": rep.baselines["first_hour_views"].auc,
                     "first_hour_clicks_auc": rep.baselines["first_hour_clicks"].auc, "brier": m.brier,
                     "base_rate_brier": rep.baselines["base_rate"].brier})  # fmt: skip
        print(rows[-1], flush=True)
    store.dispose()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=5000)
    ap.add_argument("--items", type=int, default=2000)
    ap.add_argument("--creators", type=int, default=200)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--db", default=None, help="an already seeded store (skips the simulation)")
    ap.add_argument("--horizon", type=float, default=3.0, help="days, commercial value")
    ap.add_argument("--churn-horizon", type=int, default=7, help="days, churn and buy")
    ap.add_argument(
        "--check-seeds",
        type=int,
        nargs="*",
        default=[],
        help="further simulator seeds on which to score commercial value only (a check on fresh runs)",
    )
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks" / "analytics_models.md"))
    args = ap.parse_args()

    from knowcast.analytics import service
    from knowcast.store import Store

    load_start = _load()
    t0 = time.perf_counter()
    if args.db:
        store = Store(args.db)
        source = f"store `{args.db}`"
    else:
        from knowcast.services.demo import seed_demo
        from knowcast.sim import SimConfig

        tmp = tempfile.mkdtemp(prefix="kc_models_")
        store = Store(f"sqlite:///{tmp}/sim.db").migrate()
        cfg = SimConfig(seed=args.seed, n_creators=args.creators, n_items=args.items, n_users=args.users,
                        days=args.days)  # fmt: skip
        seed_demo(store.engine, cfg)
        source = (f"simulator seed {args.seed}: {args.creators} creators, {args.items} items, "
                  f"{args.users} users, {args.days} days, loaded into SQLite")  # fmt: skip
    t_seed = time.perf_counter() - t0
    with store.engine.connect() as c:
        n_events = c.exec_driver_sql("SELECT COUNT(*) FROM events").scalar()

    sections = []
    summary = []
    runs = [
        ("commercial value", lambda: service.commercial_value(store.engine, horizon_days=args.horizon,
                                                              lookback_days=args.horizon)),
        ("commercial value, 1-day horizon", lambda: service.commercial_value(store.engine, horizon_days=1.0,
                                                                             lookback_days=1.0)),
        ("churn", lambda: service.user_scores(store.engine, target="churn", horizon_days=args.churn_horizon)),
        ("buy propensity", lambda: service.user_scores(store.engine, target="buy",
                                                       horizon_days=args.churn_horizon)),
    ]  # fmt: skip
    for name, fn in runs:
        t = time.perf_counter()
        out = fn()
        secs = time.perf_counter() - t
        rep = out["report"]
        tab = rep.summary()
        print(name, f"{secs:.1f}s\n", tab.to_string(index=False))
        m = rep.model
        best_base = max((v.auc for v in rep.baselines.values()), default=float("nan"))
        summary.append({"model": name, "train": rep.n_train, "test": m.n, "positive_rate": m.base_rate,
                        "auc": m.auc, "brier": m.brier, "base_rate_brier": rep.baselines["base_rate"].brier,
                        "best_baseline_auc": best_base, "seconds": secs})  # fmt: skip
        cal = m.calibration.copy()
        sections += [f"### {name}", "", f"Train on {rep.n_train} cases before the cutoff "
                     f"({pd.Timestamp(rep.cutoff, unit='ms'):%Y-%m-%d %H:%M} UTC), test on {m.n} after it "
                     f"(positive rate {m.base_rate:.3f}); {secs:.1f} s including the SQL features.", "",
                     _markdown(tab), "", "Reliability bins of the model (deciles of its probability):",
                     "", _markdown(cal), ""]  # fmt: skip

    checks = [commercial_on_seed(args, seed) for seed in args.check_seeds]
    check_lines = []
    if checks:
        tab = pd.DataFrame([r for rows in checks for r in rows])
        wins = int(
            (tab["model_auc"] > tab[["first_hour_views_auc", "first_hour_clicks_auc"]].max(axis=1)).sum()
        )
        check_lines = [
            "## Commercial value on further seeds",
            "",
            f"Seeds {', '.join(map(str, args.check_seeds))}: same sizes, simulated and scored in this run;",
            "none was used to choose the features or settings (seeds 1-4 were). The model's AUC is above",
            f"both one-column baselines in {wins} of {len(tab)} cases.",
            "",
            _markdown(tab),
            "",
        ]

    cmd = "python benchmarks/analytics_models.py " + " ".join(sys.argv[1:])
    lines = [
        "# Analytics models: commercial value, churn, buy propensity (AUC / Brier on a time split)",
        "",
        f"Command: `{cmd.strip()}`  ",
        f"Data: {source}; {n_events:,} events (seeded in {t_seed:.0f} s).  ",
        f"Machine: {os.cpu_count()} cores, no GPU, shared; load at start `{load_start}`; "
        f"date {datetime.now(UTC):%Y-%m-%d %H:%M UTC}.",
        "",
        "Every model is trained on the earlier period and scored on the later one; the baselines are",
        "scored on the same cases in the same run: `base_rate` (the training positive rate for everyone:",
        "AUC 0.5 and the Brier score to beat) and one column used as a score (`first_hour_views` and",
        "`first_hour_clicks` for commercial value, `recency_days` for churn, `n_view` for buying); the best",
        "baseline AUC is the higher of the one-column scores. ECE = expected calibration error over the",
        "deciles.",
        "",
        _markdown(pd.DataFrame(summary)),
        "",
        "Reading: "
        + " ".join(
            f"{r['model']}: AUC {r['auc']:.3f} vs {r['best_baseline_auc']:.3f} for the best baseline, Brier "
            f"{r['brier']:.3f} vs {r['base_rate_brier']:.3f} for the base rate."
            for r in summary
        ),
        "",
        "Why views alone were hard to beat, and what was added. In the simulator a short video has one view",
        "in its first hour (the median; lives have dozens), so the first-hour signals that the model had",
        "(views, watch ratio, likes, comments, intent comments) barely separate the short videos, and the",
        "model with them alone scored about as well as first-hour views on development seeds (mean AUC",
        "0.784 vs 0.767 over seeds 1-4, below it on two). The features now added carry information views do",
        "not: the click-through (clicks and add-to-carts of the promoted item by the window's viewers,",
        "clicks per view) and how the promoted items sold before t0 (clicks, purchases by any path: no",
        "label leak). They were chosen on seeds 1-4 (3-day horizon: mean test AUC 0.825, above first-hour",
        "views on each of the four), never on this run's test items; the creator's own history (views,",
        "sales, follows, conversion before t0) is computed too but left out of the model: it helped on two",
        "development seeds and hurt on two. The test sets are ~100 items with ~20 positives, so a single",
        "run's AUC moves by about ±0.05; the figure to trust is the model against both one-column baselines",
        "across seeds (the further seeds below, when run with `--check-seeds`). The simulator writes almost",
        "no purchase-intent comments, so that feature is idle here (it is tested on a hand-built log).",
        "",
        *check_lines,
        *sections,
    ]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
