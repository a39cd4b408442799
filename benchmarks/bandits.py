"""Bandits vs a fixed A/B split vs mabwiser's Thompson sampling, on simulated cover-image tests.

Usage: python benchmarks/bandits.py [--horizon 100000] [--seeds 3] [--out docs/benchmarks/bandits.md]

Scenarios (Bernoulli purchase per impression, price 99 per purchase):
  covers2   two cover images, purchase rates 5.0 % vs 6.0 %
  covers4   four cover images, 4.0 / 4.5 / 5.0 / 6.0 %
  segments  three price tags whose best choice depends on the user's segment (student / professional /
            hobbyist, uniform): LinUCB on one-hot segment features vs context-free policies
The "A/B test" splits traffic evenly over the arms for the whole horizon. Regret is the expected
(pseudo-)regret: sum over rounds of best rate minus played arm's rate, in purchases. knowcast.sim has no
bandit environment yet (checked when this was written), so the arms come from the rates above.
mabwiser's Thompson sampling is too slow to call once per round at this horizon (~0.3 ms per
predict+partial_fit), so it runs in batches of --batch rounds (predict a batch, then learn from it); our
Thompson sampling is run both per round and in the same batches for a like-for-like comparison.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from knowcast.experiments.bandits import (
    UCB1,
    Bandit,
    EpsilonGreedy,
    LinUCB,
    ThompsonBernoulli,
    ThompsonGaussian,
)

PRICE = 99.0
SCENARIOS = {"covers2": [0.050, 0.060], "covers4": [0.040, 0.045, 0.050, 0.060]}
# rows: segment, columns: price tag arm
SEGMENT_RATES = np.array(
    [
        [0.080, 0.050, 0.030],  # student: cheapest tag converts best
        [0.030, 0.050, 0.070],  # professional: premium tag
        [0.040, 0.065, 0.045],
    ]
)  # hobbyist: middle tag


def run_policy(
    policy: Bandit, rates: np.ndarray, horizon: int, rng: np.random.Generator
) -> tuple[float, float]:
    best = rates.max()
    regret = revenue = 0.0
    u = rng.random(horizon)
    for t in range(horizon):
        a = policy.select()
        r = 1.0 if u[t] < rates[a] else 0.0
        policy.update(a, r)
        regret += best - rates[a]
        revenue += r * PRICE
    return regret, revenue


def run_batched(
    select_batch: Callable[[int], list[int]],
    learn: Callable[[list[int], list[float]], None],
    rates: np.ndarray,
    horizon: int,
    batch: int,
    rng: np.random.Generator,
) -> tuple[float, float]:
    best = rates.max()
    regret = revenue = 0.0
    u = rng.random(horizon)
    t = 0
    while t < horizon:
        k = min(batch, horizon - t)
        arms = np.asarray(select_batch(k), dtype=int)
        rew = (u[t : t + k] < rates[arms]).astype(float)
        learn(arms.tolist(), rew.tolist())
        regret += float((best - rates[arms]).sum())
        revenue += float(rew.sum() * PRICE)
        t += k
    return regret, revenue


def ab_test(rates: np.ndarray, horizon: int, rng: np.random.Generator) -> tuple[float, float]:
    arms = np.arange(horizon) % rates.size
    rng.shuffle(arms)
    rew = rng.random(horizon) < rates[arms]
    return float((rates.max() - rates[arms]).sum()), float(rew.sum() * PRICE)


def ours_batched(rates: np.ndarray, horizon: int, batch: int, seed: int) -> tuple[float, float]:
    pol = ThompsonBernoulli(rates.size, seed=seed)

    def select(k: int) -> list[int]:
        return [pol.select() for _ in range(k)]

    def learn(arms: list[int], rew: list[float]) -> None:
        for a, r in zip(arms, rew, strict=True):
            pol.update(a, r)

    return run_batched(select, learn, rates, horizon, batch, np.random.default_rng(seed + 1000))


def mabwiser_ts(rates: np.ndarray, horizon: int, batch: int, seed: int) -> tuple[float, float]:
    from mabwiser.mab import MAB, LearningPolicy

    arms = list(range(rates.size))
    mab = MAB(arms=arms, learning_policy=LearningPolicy.ThompsonSampling(), seed=seed)
    mab.fit(arms, [0] * len(arms))  # mabwiser needs a first fit: one failure per arm

    def select(k: int) -> list[int]:
        p = mab.predict([[0]] * k) if k > 1 else [mab.predict()]
        return [int(x) for x in p]

    def learn(a: list[int], r: list[float]) -> None:
        mab.partial_fit(a, [int(x) for x in r])

    return run_batched(select, learn, rates, horizon, batch, np.random.default_rng(seed + 1000))


def contextual(horizon: int, seed: int) -> dict[str, tuple[float, float, float]]:
    rng = np.random.default_rng(seed)
    seg = rng.integers(0, 3, horizon)
    u = rng.random(horizon)
    best = SEGMENT_RATES.max(axis=1)
    eye = np.eye(3)
    out = {}
    pols: dict[str, Bandit] = {
        "LinUCB (segment one-hot)": LinUCB(3, 3, alpha=0.5, seed=seed),
        "Thompson Beta-Bernoulli (no context)": ThompsonBernoulli(3, seed=seed),
    }
    for name, pol in pols.items():
        t0 = time.perf_counter()
        regret = revenue = 0.0
        for t in range(horizon):
            x = eye[seg[t]]
            a = pol.select(x)
            r = 1.0 if u[t] < SEGMENT_RATES[seg[t], a] else 0.0
            pol.update(a, r, x)
            regret += best[seg[t]] - SEGMENT_RATES[seg[t], a]
            revenue += r * PRICE
        out[name] = (regret, revenue, time.perf_counter() - t0)
    arms = rng.integers(0, 3, horizon)
    p = SEGMENT_RATES[seg, arms]
    out["A/B test (uniform split)"] = (float((best[seg] - p).sum()), float((u < p).sum() * PRICE), 0.0)
    return out


def scenario_runs(
    rates: np.ndarray, s: int, horizon: int, batch: int
) -> dict[str, Callable[[], tuple[float, float]]]:
    """Every policy of one scenario and seed; all see the same reward draws (seed + 1000)."""

    def rng() -> np.random.Generator:
        return np.random.default_rng(s + 1000)

    k = rates.size
    return {
        "A/B test (even split)": lambda: ab_test(rates, horizon, rng()),
        "Thompson Beta-Bernoulli": lambda: run_policy(ThompsonBernoulli(k, seed=s), rates, horizon, rng()),
        "Thompson Gaussian": lambda: run_policy(
            ThompsonGaussian(k, mu0=0.05, prior_variance=0.05, seed=s), rates, horizon, rng()
        ),
        "UCB1": lambda: run_policy(UCB1(k, seed=s), rates, horizon, rng()),
        "epsilon-greedy 0.1": lambda: run_policy(EpsilonGreedy(k, 0.1, seed=s), rates, horizon, rng()),
        f"Thompson (ours, batches of {batch})": lambda: ours_batched(rates, horizon, batch, s),
        f"mabwiser ThompsonSampling (batches of {batch})": lambda: mabwiser_ts(rates, horizon, batch, s),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--horizon", type=int, default=100_000)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=100, help="batch size for the batched runs (mabwiser)")
    ap.add_argument("--out", default="docs/benchmarks/bandits.md")
    args = ap.parse_args()

    lines = [
        "# Bandits benchmark",
        "",
        f"`python benchmarks/bandits.py --horizon {args.horizon} --seeds {args.seeds} --batch {args.batch}`",
        "",
        f"Machine: 2 cores, no GPU. Date: {dt.date.today().isoformat()}. "
        f"Mean over {args.seeds} seeds; regret in expected purchases lost, "
        f"revenue at {PRICE:.0f} per purchase.",
        "",
    ]
    summary = []
    for scen, r in SCENARIOS.items():
        rates = np.asarray(r)
        res: dict[str, list[tuple[float, float, float]]] = {}
        for s in range(args.seeds):
            runs = scenario_runs(rates, s, args.horizon, args.batch)
            for name, fn in runs.items():
                t0 = time.perf_counter()
                reg, rev = fn()
                res.setdefault(name, []).append((reg, rev, time.perf_counter() - t0))
        ab = np.mean([x[0] for x in res["A/B test (even split)"]])
        lines += [
            f"## {scen}: purchase rates {r}",
            "",
            "| policy | regret | regret / A/B | revenue | seconds per run |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for name, vals in res.items():
            reg, rev, sec = (float(np.mean([v[i] for v in vals])) for i in range(3))
            lines.append(f"| {name} | {reg:,.1f} | {reg / ab:.3f} | {rev:,.0f} | {sec:.2f} |")
        ts = np.mean([x[0] for x in res["Thompson Beta-Bernoulli"]])
        ours_b = np.mean([x[0] for x in res[f"Thompson (ours, batches of {args.batch})"]])
        peer = np.mean([x[0] for x in res[f"mabwiser ThompsonSampling (batches of {args.batch})"]])
        t_ours = np.mean([x[2] for x in res[f"Thompson (ours, batches of {args.batch})"]])
        t_peer = np.mean([x[2] for x in res[f"mabwiser ThompsonSampling (batches of {args.batch})"]])
        lines += [
            "",
            f"Thompson sampling regret / A/B regret: **{ts / ab:.3f}** (target <= 0.333). "
            f"Batched: ours / mabwiser regret = {ours_b / peer:.2f}, time ours / mabwiser = "
            f"{t_ours / t_peer:.2f}.",
            "",
        ]
        summary.append((scen, ts / ab))
    ctx: dict[str, list[tuple[float, float, float]]] = {}
    for s in range(args.seeds):
        for k, v in contextual(args.horizon, s).items():
            ctx.setdefault(k, []).append(v)
    ab = np.mean([v[0] for v in ctx["A/B test (uniform split)"]])
    lines += [
        "## segments: price tag by user segment (contextual)",
        "",
        "| policy | regret | regret / A/B | revenue | seconds per run |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, vals in ctx.items():
        reg, rev, sec = (float(np.mean([v[i] for v in vals])) for i in range(3))
        lines.append(f"| {name} | {reg:,.1f} | {reg / ab:.3f} | {rev:,.0f} | {sec:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    for scen, ratio in summary:
        print(f"{scen}: Thompson/AB regret = {ratio:.3f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
