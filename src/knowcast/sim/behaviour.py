"""The response model shared by the simulator, the volume generator and the policy environments.

One set of formulas decides how a user answers an item, so a policy evaluated in
:class:`~knowcast.sim.environment.RecommendationEnv` faces the same users that produced the demo events.
Every function is vectorised over NumPy arrays; probabilities are logistic in a handful of latent terms:

* ``aff``: cosine similarity of the user's taste and the item's topic vector, in [0, 1];
* ``quality``: the item's latent quality (standard normal);
* ``channel``: an index into :data:`CHANNELS`; each channel has its own TRUE logit shift per funnel stage
  (:data:`CHANNEL_EFFECTS`), so channels differ in how much they really move purchases;
* price, monthly budget and price sensitivity for the purchase decision.
"""

from __future__ import annotations

import numpy as np

from knowcast.domain import Channel

#: Channel order used by every integer channel code in the simulator.
CHANNELS: tuple[str, ...] = (
    Channel.FEED.value,
    Channel.SEARCH.value,
    Channel.PUSH.value,
    Channel.KOL.value,
    Channel.OTHER_PLATFORM.value,
    Channel.LIVE.value,
    Channel.DIRECT.value,
)
CH = {c: i for i, c in enumerate(CHANNELS)}

#: True logit shift of each channel on (view, click, add-to-cart, purchase). Search carries intent, a KOL's
#: recommendation and a live host persuade, push notifications interrupt and convert worst.
CHANNEL_EFFECTS: dict[str, tuple[float, float, float, float]] = {
    "feed": (0.0, 0.0, 0.0, 0.0),
    "search": (0.6, 0.7, 0.3, 0.3),
    "push": (-0.3, -0.4, -0.3, -0.4),
    "kol": (0.4, 0.6, 0.5, 0.8),
    "other_platform": (0.1, 0.2, 0.1, 0.2),
    "live": (0.0, 0.5, 0.6, 0.9),
    "direct": (0.3, 0.3, 0.2, 0.2),
}
_EFF = np.array([CHANNEL_EFFECTS[c] for c in CHANNELS])

#: Relative logit lift of the simulated checkout experiment's treatment on the purchase step.
EXPERIMENT_LOGIT_LIFT = 0.25


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def affinity(taste: np.ndarray, topics: np.ndarray) -> np.ndarray:
    """Row-wise cosine of taste and topic vectors (both non-negative, so the result is in [0, 1])."""
    num = np.einsum("ij,ij->i", taste, topics)
    den = np.linalg.norm(taste, axis=1) * np.linalg.norm(topics, axis=1) + 1e-12
    return num / den


def p_view(aff: np.ndarray, quality: np.ndarray, channel: np.ndarray, position: np.ndarray) -> np.ndarray:
    """Impression -> view of a short video (or opening a live). Position bias: lower slots are skipped."""
    return sigmoid(-1.0 + 3.0 * aff + 0.35 * quality + _EFF[channel, 0] - 0.12 * position)


def sample_watch_ratio(rng: np.random.Generator, aff: np.ndarray, quality: np.ndarray) -> np.ndarray:
    """Watch ratio in [0, 1.5]: a Beta draw whose mean grows with affinity and quality, plus replays."""
    mean = np.clip(0.2 + 0.55 * aff + 0.08 * quality, 0.05, 0.95)
    conc = 3.0
    r = rng.beta(mean * conc, (1 - mean) * conc)
    replay = rng.random(len(r)) < 0.12 * mean
    r = np.where(replay, 1.0 + 0.5 * rng.random(len(r)), r)
    return np.clip(r, 0.0, 1.5)


def p_engage(ratio: np.ndarray, aff: np.ndarray) -> dict[str, np.ndarray]:
    """After a view: like, comment, share and follow probabilities."""
    base = 2.2 * np.minimum(ratio, 1.2) + 1.5 * aff
    return {
        "like": sigmoid(-4.4 + base),
        "comment": sigmoid(-6.0 + base),
        "share": sigmoid(-6.3 + base),
        "follow": sigmoid(-6.4 + base),
    }


def p_click_promoted(
    ratio: np.ndarray, aff_paid: np.ndarray, quality: np.ndarray, channel: np.ndarray
) -> np.ndarray:
    """After watching a promoting video: click the promoted paid item's link."""
    return sigmoid(-4.6 + 1.6 * np.minimum(ratio, 1.2) + 2.2 * aff_paid + 0.2 * quality + _EFF[channel, 1])


def p_click_paid(
    aff: np.ndarray, quality: np.ndarray, channel: np.ndarray, position: np.ndarray
) -> np.ndarray:
    """Impression of a paid item card -> open its page (a click)."""
    return sigmoid(-4.4 + 2.6 * aff + 0.3 * quality + _EFF[channel, 1] - 0.1 * position)


def p_cart(aff: np.ndarray, quality: np.ndarray, channel: np.ndarray) -> np.ndarray:
    """Item page -> add to cart."""
    return sigmoid(-2.7 + 2.2 * aff + 0.3 * quality + _EFF[channel, 2])


def p_buy(
    aff: np.ndarray,
    price: np.ndarray,
    budget: np.ndarray,
    sensitivity: np.ndarray,
    channel: np.ndarray,
    treated: np.ndarray | None = None,
) -> np.ndarray:
    """Cart -> pay. Price is judged against the monthly budget; sensitive users drop out on dear items."""
    logit = (
        -1.0 + 1.8 * aff - sensitivity * 1.4 * np.log1p(price / np.maximum(budget, 1.0)) + _EFF[channel, 3]
    )
    if treated is not None:
        logit = logit + EXPERIMENT_LOGIT_LIFT * treated
    return sigmoid(logit)


def p_refund(aff: np.ndarray) -> np.ndarray:
    """A purchase is refunded more often when the item fits the buyer poorly."""
    return 0.025 + 0.1 * (1.0 - aff)


def update_taste(
    taste: np.ndarray,
    consumed_topics: np.ndarray,
    weight: np.ndarray,
    rate: float = 0.04,
    max_step: float = 0.25,
) -> np.ndarray:
    """Move tastes toward what was consumed: ``taste <- (1-s) taste + s * consumed`` with s = rate*weight.

    ``consumed_topics`` holds, per row, the weighted mean topic vector of what the user consumed; rows with
    weight 0 are unchanged. Tastes stay probability vectors.
    """
    s = np.minimum(rate * weight, max_step)[:, None]
    out = (1 - s) * taste + s * consumed_topics
    return out / out.sum(axis=1, keepdims=True)
