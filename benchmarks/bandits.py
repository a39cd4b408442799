"""Bandits vs a fixed A/B split vs mabwiser's Thompson sampling, on the simulator's bandit environments.

Usage: python benchmarks/bandits.py [--horizon 100000] [--seeds 3] [--batch 100] [--users 500]
                                    [--out docs/benchmarks/bandits.md]

The arms come from ``knowcast.sim``: a simulated platform (``simulate_platform``, seeded) and
``BanditEnv.from_platform(platform, kind=...)`` for its best-selling paid item:
  cover2   two cover images (purchase rates drawn around the item's true purchase propensity)
  cover4   four cover images
  title4   the real title against three other titles of the same kind
  price4   four price tags (0.6x .. 1.4x the list price); conversion falls with price through the users'
           price sensitivity and the reward is the revenue, so the best arm is not the cheapest
Every policy plays ``--horizon`` rounds against its own copy of the environment (same seed, so the same
random stream); regret is the environment's expected (pseudo-)regret: best arm's expected reward minus
the played arm's, in purchases (price4: in money). Revenue is purchases times the item's price (price4:
the revenue drawn). The "A/B test" splits traffic evenly over the arms for the whole horizon.
mabwiser's Thompson sampling is too slow to call once per round at this horizon (~0.3 ms per
predict + partial_fit), so it runs in batches of ``--batch`` rounds (predict a batch, then learn from
it) and our Thompson sampler is run in the same batches for a like-for-like comparison. On price4 the
Bernoulli samplers learn conversion; ours scores a draw by its price (draw x price), mabwiser cannot.
A last section keeps a contextual case (price tag by user segment) with stated rates: the simulator has
no contextual bandit environment.
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
from knowcast.sim import SimConfig, simulate_platform
from knowcast.sim.environment import BanditEnv

SCENARIOS = {"cover2": ("cover", 2), "cover4": ("cover", 4), "title4": ("title", 4), "price4": ("price", 4)}
# contextual: rows segment (student / professional / hobbyist), columns price-tag arm
SEGMENT_RATES = np.array([[0.080, 0.050, 0.030], [0.030, 0.050, 0.070], [0.040, 0.065, 0.045]])
SEGMENT_PRICE = 99.0


class PricedThompson(ThompsonBernoulli):
    """Thompson sampling on conversion whose draws are scored by the arm's value (price): revenue-optimal."""

    def __init__(self, values: list[float], seed: int | None = None) -> None:
        super().__init__(len(values), seed=seed)
        self.values = np.asarray(values, dtype=float)

    def select(self, context=None) -> int:  # type: ignore[no-untyped-def, override]
        draws = self.rng.beta(self.alpha + self.sums, self.beta + self.counts - self.sums)
        return self._argmax(draws * self.values)


def make_env(platform, kind: str, n_arms: int, seed: int, item_id: str) -> BanditEnv:  # type: ignore[no-untyped-def]
    return BanditEnv.from_platform(platform, item_id=item_id, kind=kind, n_arms=n_arms, seed=seed)


def play(policy: Bandit, env: BanditEnv, horizon: int, value: np.ndarray) -> None:
    """One pull per round; the policy learns 0/1 purchases (or the revenue for a Gaussian sampler)."""
    binary = isinstance(policy, ThompsonBernoulli)
    for _ in range(horizon):
        a = policy.select()
        r = env.pull(env.arms[a])
        policy.update(a, (1.0 if r > 0 else 0.0) if binary else r / value.max())


def play_batched(select: Callable[[int], list[int]], learn: Callable[[list[int], list[float]], None],
                 env: BanditEnv, horizon: int, batch: int) -> None:
    t = 0
    while t < horizon:
        k = min(batch, horizon - t)
        arms = select(k)
        rew = [1.0 if env.pull(env.arms[a]) > 0 else 0.0 for a in arms]
        learn(arms, rew)
        t += k


def ab_test(env: BanditEnv, horizon: int, seed: int) -> None:
    arms = np.arange(horizon) % len(env.arms)
    np.random.default_rng(seed).shuffle(arms)
    for a in arms:
        env.pull(env.arms[int(a)])


def ours_batched(env: BanditEnv, horizon: int, batch: int, seed: int, priced: bool) -> None:
    n = len(env.arms)
    pol = PricedThompson(list(env._values), seed=seed) if priced else ThompsonBernoulli(n, seed=seed)

    def select(k: int) -> list[int]:
        return [pol.select() for _ in range(k)]

    def learn(arms: list[int], rew: list[float]) -> None:
        for a, r in zip(arms, rew, strict=True):
            pol.update(a, r)

    play_batched(select, learn, env, horizon, batch)


def mabwiser_batched(env: BanditEnv, horizon: int, batch: int, seed: int) -> None:
    from mabwiser.mab import MAB, LearningPolicy

    arms = list(range(len(env.arms)))
    mab = MAB(arms=arms, learning_policy=LearningPolicy.ThompsonSampling(), seed=seed)
    mab.fit(arms, [0] * len(arms))  # mabwiser needs a first fit: one failure per arm

    def select(k: int) -> list[int]:
        p = mab.predict([[0]] * k) if k > 1 else [mab.predict()]
        return [int(x) for x in p]

    def learn(a: list[int], r: list[float]) -> None:
        mab.partial_fit(a, [int(x) for x in r])

    play_batched(select, learn, env, horizon, batch)


def scenario_runs(kind: str, n_arms: int, env_of: Callable[[], BanditEnv], s: int, horizon: int, batch: int
                  ) -> dict[str, Callable[[BanditEnv], None]]:
    """Every policy of one scenario and seed, each given a fresh environment."""
    probe = env_of()
    value = np.asarray(probe._values, dtype=float)
    priced = kind == "price"
    ts_name = "Thompson Beta-Bernoulli" + (" (draw x price)" if priced else "")

    def ts(env: BanditEnv) -> None:
        pol = PricedThompson(list(value), seed=s) if priced else ThompsonBernoulli(n_arms, seed=s)
        play(pol, env, horizon, value)

    runs: dict[str, Callable[[BanditEnv], None]] = {
        "A/B test (even split)": lambda env: ab_test(env, horizon, s),
        ts_name: ts,
        "Thompson Gaussian (on reward)": lambda env: play(
            ThompsonGaussian(n_arms, mu0=0.05, prior_variance=0.05, seed=s), env, horizon, value),
        "UCB1": lambda env: play(UCB1(n_arms, seed=s), env, horizon, value),
        "epsilon-greedy 0.1": lambda env: play(EpsilonGreedy(n_arms, 0.1, seed=s), env, horizon, value),
        f"Thompson (ours, batches of {batch})": lambda env: ours_batched(env, horizon, batch, s, priced),
        f"mabwiser ThompsonSampling (batches of {batch})": lambda env: mabwiser_batched(
            env, horizon, batch, s),
    }
    return runs


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
            revenue += r * SEGMENT_PRICE
        out[name] = (regret, revenue, time.perf_counter() - t0)
    arms = rng.integers(0, 3, horizon)
    p = SEGMENT_RATES[seg, arms]
    ab_revenue = float((u < p).sum() * SEGMENT_PRICE)
    out["A/B test (uniform split)"] = (float((best[seg] - p).sum()), ab_revenue, 0.0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--horizon", type=int, default=100_000)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=100, help="batch size for the batched runs (mabwiser)")
    ap.add_argument("--users", type=int, default=500, help="simulated platform size (users)")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated subset of scenarios")
    ap.add_argument("--no-contextual", action="store_true", help="skip the contextual (LinUCB) section")
    ap.add_argument("--out", default="docs/benchmarks/bandits.md")
    args = ap.parse_args()

    t0 = time.perf_counter()
    cfg = SimConfig(seed=0, n_users=args.users, n_items=max(100, args.users // 2), n_creators=20, days=3)
    platform = simulate_platform(cfg)
    prop = platform.truth["item_purchase_propensity"]
    item_id = str(prop.sort_values(ascending=False).index[0])
    price = float(platform.items.set_index("item_id").at[item_id, "price"])
    print(f"simulated platform in {time.perf_counter() - t0:.1f}s; item {item_id} at {price:g}")

    cmd = (f"python benchmarks/bandits.py --horizon {args.horizon} --seeds {args.seeds} --batch {args.batch} "
           f"--users {args.users}")
    lines = [
        "# Bandits benchmark",
        "",
        f"`{cmd}`",
        "",
        f"Machine: 2 cores, no GPU. Date: {dt.date.today().isoformat()}. Environments: "
        f"`knowcast.sim.environment.BanditEnv.from_platform` on `simulate_platform({cfg})`, paid item "
        f"`{item_id}` (price {price:g}, the platform's highest true purchase propensity, "
        f"{float(prop[item_id]):.4f}). Mean over {args.seeds} seeds (the seed draws the arms' rates and "
        f"the reward stream). Regret: expected purchases lost against always playing the best arm "
        f"(price4: expected money lost); revenue: purchases x price (price4: money drawn).",
        "",
    ]
    summary = []
    for scen in args.scenarios.split(","):
        kind, n_arms = SCENARIOS[scen]
        res: dict[str, list[tuple[float, float, float]]] = {}
        rates_seen = []
        for s in range(args.seeds):
            # title arms draw their rates like cover arms: offset the seed so the two scenarios differ
            env_seed = s + (1000 if kind == "title" else 0)

            def env_of(kind: str = kind, n_arms: int = n_arms, env_seed: int = env_seed) -> BanditEnv:
                return make_env(platform, kind, n_arms, env_seed, item_id)

            rates_seen.append(env_of().expected_rewards)
            for name, fn in scenario_runs(kind, n_arms, env_of, s, args.horizon, args.batch).items():
                env = env_of()
                t = time.perf_counter()
                fn(env)
                sec = time.perf_counter() - t
                rev = env.total_reward * (1.0 if kind == "price" else price)
                res.setdefault(name, []).append((env.cumulative_regret, rev, sec))
                assert env.n_pulls == args.horizon, (name, env.n_pulls)
        ab = float(np.mean([x[0] for x in res["A/B test (even split)"]]))
        arms_txt = "; ".join(
            ", ".join(f"{k} {v:.4f}" for k, v in r.items()) for r in rates_seen[:1]
        )
        lines += [
            f"## {scen}: {kind}, {n_arms} arms",
            "",
            f"Expected reward per arm (seed 0): {arms_txt}.",
            "",
            "| policy | regret | regret / A/B | revenue | seconds per run |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for name, vals in res.items():
            reg, rev, sec = (float(np.mean([v[i] for v in vals])) for i in range(3))
            lines.append(f"| {name} | {reg:,.1f} | {reg / ab:.3f} | {rev:,.0f} | {sec:.2f} |")
        ts_key = next(k for k in res if k.startswith("Thompson Beta-Bernoulli"))
        ts = float(np.mean([x[0] for x in res[ts_key]]))
        ours_b = float(np.mean([x[0] for x in res[f"Thompson (ours, batches of {args.batch})"]]))
        peer = float(np.mean([x[0] for x in res[f"mabwiser ThompsonSampling (batches of {args.batch})"]]))
        t_ours = float(np.mean([x[2] for x in res[f"Thompson (ours, batches of {args.batch})"]]))
        t_peer = float(np.mean([x[2] for x in res[f"mabwiser ThompsonSampling (batches of {args.batch})"]]))
        lines += [
            "",
            f"Thompson sampling regret / A/B regret: **{ts / ab:.3f}** (target <= 0.333). "
            f"Batched: ours / mabwiser regret = {ours_b / peer:.2f}, time ours / mabwiser = "
            f"{t_ours / t_peer:.2f}.",
            "",
        ]
        summary.append((scen, ts / ab, ours_b / peer, t_ours / t_peer))
    if not args.no_contextual:
        ctx: dict[str, list[tuple[float, float, float]]] = {}
        for s in range(args.seeds):
            for k, v in contextual(args.horizon, s).items():
                ctx.setdefault(k, []).append(v)
        ab = float(np.mean([v[0] for v in ctx["A/B test (uniform split)"]]))
        lines += [
            "## segments: price tag by user segment (contextual, stated rates)",
            "",
            f"Purchase rates by segment (rows) and tag (columns): {SEGMENT_RATES.tolist()}; price "
            f"{SEGMENT_PRICE:g}. The simulator has no contextual environment, so these rates are stated "
            "here.",
            "",
            "| policy | regret | regret / A/B | revenue | seconds per run |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for name, vals in ctx.items():
            reg, rev, sec = (float(np.mean([v[i] for v in vals])) for i in range(3))
            lines.append(f"| {name} | {reg:,.1f} | {reg / ab:.3f} | {rev:,.0f} | {sec:.2f} |")
        lines.append("")
    lines += ["## Summary", "", "| scenario | Thompson / A/B regret | ours / mabwiser regret (batched) | "
              "ours / mabwiser time (batched) |", "| --- | ---: | ---: | ---: |"]
    lines += [f"| {s} | {a:.3f} | {b:.2f} | {c:.2f} |" for s, a, b, c in summary]
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
