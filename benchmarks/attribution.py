"""Attribution quality: each model's channel shares against the simulator's true channel contributions.

    python benchmarks/attribution.py --users 5000 --days 30

The simulator records, for every purchase, which channels' touches would each have sold the item on their
own ("firing" touches); its truth ``channel_shapley_purchases`` splits each purchase evenly over them.
Journeys are built from the simulated event log only (views, clicks and live joins with their channel;
purchases as conversions; lookback window ``--lookback`` days), and every model is scored by the total
variation distance between its channel shares and the true shares (0 = perfect, 1 = disjoint).

The Markov model is also run by the ``channelattribution`` package (the peer) on the same path table; the
largest relative difference per channel is reported and must be under 1%.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from knowcast.analytics import attribution as at  # noqa: E402

DAY_MS = 86_400_000


def _markdown(df: pd.DataFrame) -> str:
    head = "| " + " | ".join(df.columns) + " |"
    sep = "| " + " | ".join("---" if df[c].dtype == object else "---:" for c in df.columns) + " |"
    body = [
        "| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row) + " |"
        for row in df.itertuples(index=False)
    ]
    return "\n".join([head, sep, *body])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=5000)
    ap.add_argument("--items", type=int, default=2000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lookback", type=float, default=30.0, help="days")
    ap.add_argument("--half-life", type=float, default=7.0, help="days, for time decay")
    ap.add_argument("--nsim", type=float, default=2e6, help="channelattribution simulations")
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks" / "attribution.md"))
    args = ap.parse_args()

    from knowcast.sim import SimConfig, simulate_platform

    t0 = time.perf_counter()
    cfg = SimConfig(seed=args.seed, n_users=args.users, n_items=args.items, days=args.days)
    plat = simulate_platform(cfg)
    t_sim = time.perf_counter() - t0
    ev = plat.events
    touches = ev[ev["type"].isin(["view", "click", "live_join"]) & ev["channel"].notna()][
        ["user_id", "ts", "channel"]
    ]
    convs = ev[ev["type"] == "purchase"][["user_id", "ts", "amount"]].rename(columns={"amount": "value"})
    convs = convs.assign(value=convs["value"].fillna(0.0))
    t0 = time.perf_counter()
    js = at.build_journeys(touches, convs, args.lookback * DAY_MS)
    t_paths = time.perf_counter() - t0
    truth = plat.truth["channel_shapley_purchases"]

    t0 = time.perf_counter()
    models: dict[str, pd.DataFrame] = {
        m: at.rule_based(js, m, half_life=args.half_life) for m in at.RULE_MODELS
    }
    models["markov"] = at.markov(js)
    models["shapley"] = at.shapley(js)
    t_models = time.perf_counter() - t0
    score = at.compare_to_truth(models, truth)

    # The peer: channelattribution's Markov model on the same path table.
    peer_line = "channelattribution not installed: peer not run"
    max_rel = None
    try:
        import ChannelAttribution as ca  # type: ignore[import-not-found]

        table = at.journeys_to_frame(js)
        table = table[(table["conversions"] + table["nulls"]) > 0]
        t0 = time.perf_counter()
        ref = ca.markov_model(
            table, "path", "conversions", var_value="value", var_null="nulls", order=1, out_more=False,
            verbose=0, flg_pro=False, nsim_start=args.nsim, seed=args.seed,
        ).set_index("channel_name")  # fmt: skip
        t_peer = time.perf_counter() - t0
        t0 = time.perf_counter()
        mine = at.markov(js, max_step="observed").set_index("channel")
        t_mine = time.perf_counter() - t0
        both = mine.join(ref, how="inner")
        rel = (both["conversions"] - both["total_conversions"]).abs() / both["total_conversions"]
        max_rel = float(rel.max())
        peer_line = (
            f"Markov (max_step='observed') vs channelattribution (nsim {args.nsim:.0e}): largest relative "
            f"difference per channel {max_rel:.3%} ({'within' if max_rel < 0.01 else 'NOT within'} 1%); "
            f"time knowcast {t_mine:.3f} s vs peer {t_peer:.2f} s (peer/knowcast "
            f"{t_peer / max(t_mine, 1e-9):.0f}x)."
        )
    except ImportError:
        pass

    tot = sum(truth.values())
    shares = pd.DataFrame({"channel": list(truth), "true_share": [v / tot for v in truth.values()]})
    for name, df in models.items():
        s = df.set_index("channel")["conversions"]
        shares[name] = shares["channel"].map(s / s.sum()).fillna(0.0)
    n_conv = sum(j.conversions for j in js)
    lines = [
        "# Attribution: models against the simulator's truth",
        "",
        f"Command: `python benchmarks/attribution.py --users {args.users} --items {args.items} "
        f"--days {args.days} --seed {args.seed}`  ",
        f"Machine: {os.cpu_count()} cores, no GPU, shared; date: {datetime.now(UTC):%Y-%m-%d %H:%M UTC}",
        "",
        f"Simulated {len(ev):,} events in {t_sim:.0f} s; {len(js):,} distinct journeys ({n_conv:,.0f} "
        f"purchases with a touch in the {args.lookback:g}-day lookback; {t_paths:.1f} s to build); "
        f"all models in {t_models:.2f} s.",
        "Truth: the simulator's `channel_shapley_purchases` (each purchase split over the channels whose",
        "touch would have sold it on its own).",
        "",
        "| model | total variation vs truth | mean abs. share error |",
        "| --- | ---: | ---: |",
        *[f"| {r.model} | {r.total_variation:.3f} | {r.mae_share:.3f} |" for r in score.itertuples()],
        "",
        "Channel shares:",
        "",
        _markdown(shares),
        "",
        peer_line,
        "",
    ]
    md = "\n".join(lines)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(md, encoding="utf-8")
    print(md)
    if max_rel is not None and max_rel >= 0.01:
        raise SystemExit("Markov differs from channelattribution by 1% or more")


if __name__ == "__main__":
    main()
