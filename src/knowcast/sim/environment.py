"""Environments for evaluating policies against the simulated users' latent truth.

* :class:`RecommendationEnv`: show a user a slate of item ids, get sampled responses (view + watch ratio,
  click, purchase) from the same response model that generated the demo events, and the user's taste moves
  toward what they consumed, so a policy that keeps showing one topic shifts its users (feedback loops and
  filter bubbles can be measured). ``expected_response`` gives the true probabilities for oracle baselines.
* :class:`BanditEnv`: arms with true conversion rates (cover images, titles, price tags of a paid item),
  ``pull(arm) -> reward``, with the best arm known and regret kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from knowcast.sim import behaviour as bh
from knowcast.sim.platform import Platform


def _unit(x: np.ndarray) -> np.ndarray:
    return x / (np.linalg.norm(x, axis=-1, keepdims=True) + 1e-12)


class RecommendationEnv:
    """Simulated users answering recommendation slates; seeded, with tastes that respond to exposure.

    Parameters: ``platform`` (from ``simulate_platform``), ``seed``, ``taste_rate`` (how far one unit of
    consumption moves a taste, see :func:`~knowcast.sim.behaviour.update_taste`), ``use_final_taste``
    (start from the tastes at the end of the simulated period, default, or from the initial ones).
    """

    def __init__(
        self, platform: Platform, seed: int = 0, taste_rate: float = 0.04, use_final_taste: bool = True
    ) -> None:
        if not isinstance(platform, Platform):
            raise TypeError(f"platform must be a Platform, got {type(platform).__name__}")
        self.platform = platform
        self.seed = seed
        self.taste_rate = taste_rate
        self.use_final_taste = use_final_taste
        tr = platform.truth
        self.user_ids = np.asarray(tr["user_ids"], dtype=object)
        self.item_ids = np.asarray(tr["item_ids"], dtype=object)
        self._u = {u: k for k, u in enumerate(self.user_ids)}
        self._i = {i: k for k, i in enumerate(self.item_ids)}
        self._topics = np.asarray(tr["item_topics"], dtype=float)
        self._topics_unit = _unit(self._topics)
        self._quality = np.asarray(tr["item_quality"], dtype=float)
        items = platform.items
        self._kind = items["kind"].to_numpy(dtype=object)
        self._price = items["price"].to_numpy(dtype=float)
        self._duration = items["duration_s"].to_numpy(dtype=float)
        self._promo = np.array([self._i[p[0]] if len(p) else -1 for p in items["promotes"]], dtype=np.int64)
        self._budget = np.asarray(tr["user_budget"], dtype=float)
        self._sens = np.asarray(tr["user_price_sensitivity"], dtype=float)
        self.reset()

    def reset(self) -> RecommendationEnv:
        """Restore the starting tastes and the random stream."""
        key = "user_taste" if self.use_final_taste else "user_taste_initial"
        self.taste = np.array(self.platform.truth[key], dtype=float, copy=True)
        self.rng = np.random.default_rng(self.seed)
        self.n_steps = 0
        return self

    def _rows(self, user_id: str, item_ids: Sequence[str]) -> tuple[int, np.ndarray]:
        if user_id not in self._u:
            raise ValueError(f"user_id {user_id!r} is not a user of this platform")
        rows = []
        for pos, it in enumerate(item_ids):
            if it not in self._i:
                raise ValueError(f"item_ids[{pos}] = {it!r} is not an item of this platform")
            rows.append(self._i[it])
        return self._u[user_id], np.asarray(rows, dtype=np.int64)

    def affinity(self, user_id: str, item_ids: Sequence[str]) -> np.ndarray:
        """True taste match (cosine, 0..1) of the user with each item, for the current taste."""
        u, rows = self._rows(user_id, item_ids)
        return self._topics_unit[rows] @ _unit(self.taste[u])

    def expected_response(
        self, user_id: str, item_ids: Sequence[str], channel: str = "feed", same_position: bool = False
    ) -> pd.DataFrame:
        """True probabilities for each slate position: p_view, p_click, p_purchase, expected_revenue.

        For a short video: p_view, then a click on its promoted item at the mean watch ratio; for a paid
        item: a click on its card. p_purchase = p_click * P(cart) * P(pay). No sampling, no taste update.
        ``same_position=True`` scores every item as if shown first (no position bias).
        """
        if channel not in bh.CH:
            raise ValueError(f"channel must be one of {list(bh.CH)}, got {channel!r}")
        u, rows = self._rows(user_id, item_ids)
        n = len(rows)
        ch = np.full(n, bh.CH[channel], dtype=np.int64)
        pos = np.zeros(n, dtype=np.int64) if same_position else np.arange(n)
        a = self._topics_unit[rows] @ _unit(self.taste[u])
        q = self._quality[rows]
        video = self._kind[rows] == "short_video"
        pv = np.where(video | (self._kind[rows] == "live"), bh.p_view(a, q, ch, pos), 0.0)
        target = np.where(video, self._promo[rows], np.where(self._kind[rows] == "live", -1, rows))
        has = target >= 0
        tgt = np.where(has, target, 0)
        at = self._topics_unit[tgt] @ _unit(self.taste[u])
        mean_ratio = np.clip(0.2 + 0.55 * a + 0.08 * q, 0.05, 0.95)
        pc = np.where(
            video,
            pv * bh.p_click_promoted(mean_ratio, at, self._quality[tgt], ch),
            bh.p_click_paid(a, q, ch, pos),
        )
        pc = np.where(has, pc, 0.0)
        price = np.nan_to_num(self._price[tgt])
        pb = bh.p_cart(at, self._quality[tgt], ch) * bh.p_buy(
            at, price, np.full(n, self._budget[u]), np.full(n, self._sens[u]), ch
        )
        pp = pc * pb
        return pd.DataFrame(
            {
                "item_id": list(item_ids),
                "position": pos,
                "p_view": pv,
                "p_click": pc,
                "p_purchase": pp,
                "expected_revenue": pp * price,
            }
        )

    def step(self, user_id: str, item_ids: Sequence[str], channel: str = "feed") -> pd.DataFrame:
        """Show ``item_ids`` (a slate, in order) to ``user_id``; sample the answers; update the taste.

        Returns one row per slate item: item_id, position, viewed, watch_ratio (NaN if not viewed),
        clicked, purchased, purchased_item_id (the paid item bought, e.g. the one a video promotes), revenue.
        """
        exp = self.expected_response(user_id, item_ids, channel)
        u, rows = self._rows(user_id, item_ids)
        n = len(rows)
        rng = self.rng
        a = self._topics_unit[rows] @ _unit(self.taste[u])
        viewed = rng.random(n) < exp["p_view"].to_numpy()
        ratio = np.full(n, np.nan)
        if viewed.any():
            ratio[viewed] = bh.sample_watch_ratio(rng, a[viewed], self._quality[rows[viewed]])
        p_click = exp["p_click"].to_numpy()
        p_buy_given_click = np.divide(
            exp["p_purchase"].to_numpy(), p_click, out=np.zeros(n), where=p_click > 0
        )
        video = self._kind[rows] == "short_video"
        clicked = rng.random(n) < np.where(
            video,
            np.divide(p_click, exp["p_view"].to_numpy(), out=np.zeros(n), where=exp["p_view"].to_numpy() > 0),
            p_click,
        )
        clicked &= viewed | ~video
        purchased = clicked & (rng.random(n) < p_buy_given_click)
        bought = np.where(video, self._promo[rows], rows)
        revenue = np.where(purchased, np.nan_to_num(self._price[np.maximum(bought, 0)]), 0.0)
        # taste moves toward what was watched (weight = watch ratio) and bought (weight 3)
        w = np.where(viewed, np.minimum(np.nan_to_num(ratio), 1.0), 0.0) + 0.3 * (clicked & ~video)
        wb = 3.0 * purchased
        total = w.sum() + wb.sum()
        if total > 0:
            consumed = (w[:, None] * self._topics[rows]).sum(0) + (
                wb[:, None] * self._topics[np.maximum(bought, 0)]
            ).sum(0)
            self.taste[u] = bh.update_taste(
                self.taste[u][None, :], (consumed / total)[None, :], np.array([total]), rate=self.taste_rate
            )[0]
        self.n_steps += 1
        return pd.DataFrame(
            {
                "item_id": list(item_ids),
                "position": np.arange(n),
                "viewed": viewed,
                "watch_ratio": ratio,
                "clicked": clicked,
                "purchased": purchased,
                "purchased_item_id": [
                    self.item_ids[b] if p else None for b, p in zip(bought, purchased, strict=True)
                ],
                "revenue": revenue,
            }
        )

    def best_items(
        self, user_id: str, n: int = 10, candidates: Sequence[str] | None = None, by: str = "p_purchase"
    ) -> list[str]:
        """The oracle's top ``n`` items for the user by a true expected metric (ignoring position bias)."""
        if by not in ("p_view", "p_click", "p_purchase", "expected_revenue"):
            raise ValueError(f"by must be p_view, p_click, p_purchase or expected_revenue, got {by!r}")
        cands = (
            list(candidates)
            if candidates is not None
            else [i for i, k in zip(self.item_ids, self._kind, strict=True) if k != "live"]
        )
        e = self.expected_response(user_id, cands, same_position=True)
        return e.sort_values(by, ascending=False, kind="stable")["item_id"].head(n).tolist()


@dataclass
class BanditEnv:
    """Arms with true conversion rates; ``pull(arm)`` draws a Bernoulli reward and books the regret.

    ``values`` (optional, per arm) turn a conversion into revenue, e.g. for price-tag arms;
    ``best_arm`` maximises rate * value.
    """

    arms: Sequence[str]
    rates: Sequence[float]
    seed: int = 0
    values: Sequence[float] | None = None

    def __post_init__(self) -> None:
        self.arms = [str(a) for a in self.arms]
        if len(self.arms) < 2:
            raise ValueError("arms: a bandit needs at least 2 arms")
        if len(set(self.arms)) != len(self.arms):
            raise ValueError("arms: arm names must be unique")
        r = np.asarray(self.rates, dtype=float)
        if r.shape != (len(self.arms),):
            raise ValueError(f"rates: expected {len(self.arms)} rates, got {r.shape}")
        bad = np.flatnonzero((r < 0) | (r > 1) | ~np.isfinite(r))
        if len(bad):
            raise ValueError(f"rates[{bad[0]}] = {r[bad[0]]!r} is not a probability")
        self._rates = r
        v = np.ones(len(r)) if self.values is None else np.asarray(self.values, dtype=float)
        if v.shape != r.shape:
            raise ValueError(f"values: expected {len(r)} values, got {v.shape}")
        self._values = v
        self._index = {a: k for k, a in enumerate(self.arms)}
        self.reset()

    def reset(self) -> BanditEnv:
        self.rng = np.random.default_rng(self.seed)
        self.n_pulls = 0
        self.counts = np.zeros(len(self.arms), dtype=np.int64)
        self.total_reward = 0.0
        self.cumulative_regret = 0.0
        self.regret_curve: list[float] = []
        return self

    @property
    def expected_rewards(self) -> dict[str, float]:
        return dict(zip(self.arms, (self._rates * self._values).tolist(), strict=True))

    @property
    def best_arm(self) -> str:
        return self.arms[int(np.argmax(self._rates * self._values))]

    @property
    def best_expected_reward(self) -> float:
        return float(np.max(self._rates * self._values))

    def pull(self, arm: str) -> float:
        """Reward of one pull: value if converted else 0 (value 1 unless ``values`` were given)."""
        if arm not in self._index:
            raise ValueError(f"arm {arm!r} is not one of {self.arms}")
        k = self._index[arm]
        reward = float(self._values[k]) if self.rng.random() < self._rates[k] else 0.0
        self.n_pulls += 1
        self.counts[k] += 1
        self.total_reward += reward
        # expected (pseudo-)regret: independent of the reward's luck
        self.cumulative_regret += self.best_expected_reward - float(self._rates[k] * self._values[k])
        self.regret_curve.append(self.cumulative_regret)
        return reward

    @classmethod
    def from_platform(
        cls,
        platform: Platform,
        item_id: str | None = None,
        kind: str = "cover",
        n_arms: int = 4,
        spread: float = 0.35,
        seed: int = 0,
    ) -> BanditEnv:
        """Arms for one paid item, with rates drawn around its true purchase propensity.

        ``kind``: ``cover`` (cover images cover_a, cover_b ...), ``title`` (alternative real titles of the
        same topic) or ``price`` (price tags; conversion falls with price through the users' price
        sensitivity, and the reward is the revenue, so the best arm is not simply the cheapest).
        """
        if kind not in ("cover", "title", "price"):
            raise ValueError(f"kind must be cover, title or price, got {kind!r}")
        if n_arms < 2:
            raise ValueError(f"n_arms must be >= 2, got {n_arms}")
        prop: pd.Series = platform.truth["item_purchase_propensity"]
        rng = np.random.default_rng(seed)
        if item_id is None:
            item_id = str(prop.sort_values(ascending=False).index[0])
        if item_id not in prop.index:
            raise ValueError(f"item_id {item_id!r} is not a paid item of this platform")
        base = float(prop[item_id])
        items = platform.items.set_index("item_id")
        price = float(items.at[item_id, "price"])
        if kind == "price":
            mult = np.linspace(0.6, 1.4, n_arms)
            prices = np.round(price * mult, 1)
            sens = float(np.median(platform.truth["user_price_sensitivity"]))
            budget = float(np.median(platform.truth["user_budget"]))
            logit0 = np.log(base / (1 - base))
            rates = bh.sigmoid(logit0 - sens * 1.4 * (np.log1p(prices / budget) - np.log1p(price / budget)))
            return cls([f"price_{p:g}" for p in prices], rates.tolist(), seed=seed, values=prices.tolist())
        logit = np.log(base / (1 - base)) + rng.normal(0.0, spread, size=n_arms)
        rates = bh.sigmoid(logit)
        if kind == "cover":
            arms = [f"cover_{chr(97 + k)}" for k in range(n_arms)]
        else:
            title = str(items.at[item_id, "title"])
            same = platform.items[
                (platform.items["kind"] == items.at[item_id, "kind"]) & (platform.items["item_id"] != item_id)
            ]["title"].drop_duplicates()
            alts = same.sample(min(n_arms - 1, len(same)), random_state=seed).tolist()
            arms = [title, *alts]
            while len(arms) < n_arms:
                arms.append(f"{title}（版本{len(arms) + 1}）")
            arms = list(dict.fromkeys(arms))
            rates = rates[: len(arms)]
        return cls(arms, rates.tolist(), seed=seed)
