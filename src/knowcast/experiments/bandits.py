"""Multi-armed bandits for choosing among cover images, titles or price tags while learning.

An A/B test keeps sending half the traffic to the worse arm until it ends; a bandit shifts traffic to
the arm that looks best as evidence accumulates, so it loses less on the way (regret). All policies
share one interface::

    policy.select(context=None) -> arm index
    policy.update(arm, reward, context=None) -> policy

and take a ``seed`` so runs are reproducible. Nothing is learned before the first ``update``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np

__all__ = ["Bandit", "ThompsonBernoulli", "ThompsonGaussian", "UCB1", "LinUCB", "EpsilonGreedy"]


class Bandit(ABC):
    """Base class: ``n_arms`` arms, pull counts and reward sums per arm, a seeded generator."""

    def __init__(self, n_arms: int, seed: int | None = None) -> None:
        if not isinstance(n_arms, int) or n_arms < 2:
            raise ValueError(f"n_arms must be an int >= 2, got {n_arms!r}")
        self.n_arms = n_arms
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.counts = np.zeros(n_arms, dtype=np.int64)
        self.sums = np.zeros(n_arms)

    @abstractmethod
    def select(self, context: Sequence[float] | np.ndarray | None = None) -> int: ...

    def update(self, arm: int, reward: float, context: Sequence[float] | np.ndarray | None = None) -> Bandit:
        if not 0 <= arm < self.n_arms:
            raise ValueError(f"arm must be in [0, {self.n_arms}), got {arm}")
        if not math.isfinite(reward):
            raise ValueError(f"reward must be finite, got {reward}")
        self.counts[arm] += 1
        self.sums[arm] += reward
        self._update(arm, float(reward), context)
        return self

    def _update(self, arm: int, reward: float, context: Sequence[float] | np.ndarray | None) -> None:
        """Extra bookkeeping of a subclass (none by default)."""
        return None

    @property
    def means(self) -> np.ndarray:
        return np.divide(self.sums, self.counts, out=np.zeros(self.n_arms), where=self.counts > 0)

    def _argmax(self, scores: np.ndarray) -> int:
        """Argmax with random tie-breaking (otherwise arm 0 gets a head start)."""
        best = np.flatnonzero(scores == scores.max())
        return int(best[0] if best.size == 1 else self.rng.choice(best))


class ThompsonBernoulli(Bandit):
    """Thompson sampling for 0/1 rewards (a click, a purchase): Beta(alpha + wins, beta + losses) per arm.

    Each round draws one conversion rate per arm from its posterior and plays the largest draw, so an arm
    is played with the probability that it is the best one.
    """

    def __init__(self, n_arms: int, alpha: float = 1.0, beta: float = 1.0, seed: int | None = None) -> None:
        super().__init__(n_arms, seed)
        if alpha <= 0 or beta <= 0:
            raise ValueError(f"alpha and beta must be > 0, got {alpha}, {beta}")
        self.alpha, self.beta = alpha, beta

    def select(self, context: Sequence[float] | np.ndarray | None = None) -> int:
        wins = self.sums
        draws = self.rng.beta(self.alpha + wins, self.beta + self.counts - wins)
        return self._argmax(draws)

    def _update(self, arm: int, reward: float, context: Sequence[float] | np.ndarray | None) -> None:
        if reward not in (0.0, 1.0):
            raise ValueError(f"ThompsonBernoulli needs 0/1 rewards, got {reward}")


class ThompsonGaussian(Bandit):
    """Thompson sampling for real rewards (revenue, watch time).

    The mean of arm ``k`` has posterior ``N(mean_k, s^2 / (n_k + kappa))`` around a prior mean ``mu0``
    worth ``kappa`` pseudo-observations, where ``s^2`` is the pooled sample variance of all rewards seen
    (``prior_variance`` until two rewards are in): a plug-in Normal model that is quick and robust.
    """

    def __init__(self, n_arms: int, mu0: float = 0.0, kappa: float = 1.0, prior_variance: float = 1.0,
                 seed: int | None = None) -> None:
        super().__init__(n_arms, seed)
        if kappa <= 0 or prior_variance <= 0:
            raise ValueError("kappa and prior_variance must be > 0")
        self.mu0, self.kappa, self.prior_variance = mu0, kappa, prior_variance
        self.sum_squares = np.zeros(n_arms)

    def _update(self, arm: int, reward: float, context: Sequence[float] | np.ndarray | None) -> None:
        self.sum_squares[arm] += reward * reward

    def _pooled_variance(self) -> float:
        n = self.counts.sum()
        if n < 2:
            return self.prior_variance
        ss = self.sum_squares - np.divide(self.sums**2, self.counts, out=np.zeros(self.n_arms),
                                          where=self.counts > 0)
        dof = n - np.count_nonzero(self.counts)
        return float(max(ss.sum() / dof, 1e-12)) if dof > 0 else self.prior_variance

    def select(self, context: Sequence[float] | np.ndarray | None = None) -> int:
        n = self.counts + self.kappa
        post_mean = (self.sums + self.kappa * self.mu0) / n
        draws = self.rng.normal(post_mean, np.sqrt(self._pooled_variance() / n))
        return self._argmax(draws)


class UCB1(Bandit):
    """UCB1 (Auer et al. 2002): play ``argmax mean_k + c sqrt(2 ln t / n_k)`` after each arm once.

    Rewards are assumed in ``[0, reward_scale]``; the bonus is scaled accordingly.
    """

    def __init__(self, n_arms: int, c: float = 1.0, reward_scale: float = 1.0,
                 seed: int | None = None) -> None:
        super().__init__(n_arms, seed)
        if c < 0 or reward_scale <= 0:
            raise ValueError("c must be >= 0 and reward_scale > 0")
        self.c, self.reward_scale = c, reward_scale

    def select(self, context: Sequence[float] | np.ndarray | None = None) -> int:
        untried = np.flatnonzero(self.counts == 0)
        if untried.size:
            return int(untried[0])
        t = self.counts.sum()
        bonus = self.c * self.reward_scale * np.sqrt(2 * math.log(t) / self.counts)
        return self._argmax(self.means + bonus)


class EpsilonGreedy(Bandit):
    """Explore a random arm with probability ``epsilon``, else exploit the best mean (a baseline)."""

    def __init__(self, n_arms: int, epsilon: float = 0.1, seed: int | None = None) -> None:
        super().__init__(n_arms, seed)
        if not 0 <= epsilon <= 1:
            raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
        self.epsilon = epsilon

    def select(self, context: Sequence[float] | np.ndarray | None = None) -> int:
        if self.rng.random() < self.epsilon or self.counts.min() == 0:
            return int(self.rng.integers(self.n_arms))
        return self._argmax(self.means)


class LinUCB(Bandit):
    """Disjoint LinUCB (Li et al. 2010): a ridge regression of reward on context features per arm.

    Score ``x.theta_k + alpha sqrt(x' A_k^-1 x)`` with ``A_k = lambda I + sum x x'`` and
    ``theta_k = A_k^-1 sum r x``; ``A_k^-1`` is kept up to date by Sherman–Morrison (O(d^2) a round).
    Use it when the best cover or price depends on the user's segment.
    """

    def __init__(self, n_arms: int, n_features: int, alpha: float = 1.0, ridge: float = 1.0,
                 seed: int | None = None) -> None:
        super().__init__(n_arms, seed)
        if n_features < 1:
            raise ValueError(f"n_features must be >= 1, got {n_features}")
        if alpha < 0 or ridge <= 0:
            raise ValueError("alpha must be >= 0 and ridge > 0")
        self.n_features, self.alpha, self.ridge = n_features, alpha, ridge
        self.A_inv = np.stack([np.eye(n_features) / ridge for _ in range(n_arms)])
        self.b = np.zeros((n_arms, n_features))

    def _x(self, context: Sequence[float] | np.ndarray | None) -> np.ndarray:
        if context is None:
            raise ValueError("LinUCB needs a context vector")
        x = np.asarray(context, dtype=float).ravel()
        if x.size != self.n_features:
            raise ValueError(f"context has {x.size} features, expected {self.n_features}")
        return x

    def select(self, context: Sequence[float] | np.ndarray | None = None) -> int:
        x = self._x(context)
        theta = np.einsum("kij,kj->ki", self.A_inv, self.b)
        ax = self.A_inv @ x  # (k, d)
        width = np.sqrt(np.maximum(ax @ x, 0.0))
        return self._argmax(theta @ x + self.alpha * width)

    def _update(self, arm: int, reward: float, context: Sequence[float] | np.ndarray | None) -> None:
        x = self._x(context)
        ai = self.A_inv[arm]
        ax = ai @ x
        self.A_inv[arm] = ai - np.outer(ax, ax) / (1.0 + x @ ax)
        self.b[arm] += reward * x
