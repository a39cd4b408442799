"""Policy environments: responses, taste feedback, oracle, bandit regret bookkeeping."""

import numpy as np
import pytest

from knowcast.sim.environment import BanditEnv, RecommendationEnv


def test_step_shapes_and_determinism(small_platform):
    env = RecommendationEnv(small_platform, seed=5)
    u = env.user_ids[0]
    slate = [i for i, k in zip(env.item_ids, small_platform.items["kind"], strict=True) if k != "live"][:8]
    r1 = env.step(u, slate)
    assert list(r1.columns) == [
        "item_id",
        "position",
        "viewed",
        "watch_ratio",
        "clicked",
        "purchased",
        "purchased_item_id",
        "revenue",
    ]
    assert (
        r1["watch_ratio"][r1["viewed"]].between(0, 1.5).all()
        and r1["watch_ratio"][~r1["viewed"]].isna().all()
    )
    assert (r1["revenue"][~r1["purchased"]] == 0).all()
    r2 = env.reset().step(u, slate)
    assert r1.equals(r2)
    with pytest.raises(ValueError, match="item_ids\\[1\\]"):
        env.step(u, [slate[0], "nope"])
    with pytest.raises(ValueError, match="user_id"):
        env.step("nobody", slate)


def test_taste_moves_toward_what_is_shown(small_platform):
    env = RecommendationEnv(small_platform, seed=0, taste_rate=0.1)
    tr = small_platform.truth
    videos = np.flatnonzero(small_platform.items["kind"].to_numpy() == "short_video")
    primary = tr["item_topics"][videos].argmax(1)
    u = env.user_ids[1]
    uk = 1
    target = int(np.argmin(env.taste[uk]))  # the topic this user cares least about
    slate = list(env.item_ids[videos[primary == target]][:6])
    assert slate
    before = env.taste[uk, target]
    aff_before = env.affinity(u, slate).mean()
    for _ in range(40):
        env.step(u, slate)
    assert env.taste[uk, target] > before + 0.1
    assert env.affinity(u, slate).mean() > aff_before
    assert np.isclose(env.taste[uk].sum(), 1)


def test_oracle_beats_random(small_platform):
    env = RecommendationEnv(small_platform, seed=0)
    u = env.user_ids[2]
    best = env.best_items(u, 10)
    rng = np.random.default_rng(0)
    cands = [i for i, k in zip(env.item_ids, small_platform.items["kind"], strict=True) if k != "live"]
    rand = list(rng.choice(cands, 10, replace=False))
    e_best = env.expected_response(u, best, same_position=True)["p_purchase"].sum()
    e_rand = env.expected_response(u, rand, same_position=True)["p_purchase"].sum()
    assert e_best > e_rand


def test_bandit_regret_bookkeeping():
    b = BanditEnv(["a", "b", "c"], [0.1, 0.3, 0.2], seed=1)
    assert b.best_arm == "b"
    for _ in range(10):
        b.pull("a")
    for _ in range(5):
        b.pull("b")
    assert b.n_pulls == 15 and list(b.counts) == [10, 5, 0]
    assert b.cumulative_regret == pytest.approx(10 * 0.2)
    assert b.regret_curve[-1] == pytest.approx(b.cumulative_regret)
    assert np.all(np.diff(b.regret_curve) >= 0)
    # rewards follow the true rates
    c = BanditEnv(["x", "y"], [0.05, 0.5], seed=2)
    mean_y = np.mean([c.pull("y") for _ in range(4000)])
    assert abs(mean_y - 0.5) < 0.03
    with pytest.raises(ValueError, match="arm"):
        c.pull("z")
    with pytest.raises(ValueError, match="rates\\[1\\]"):
        BanditEnv(["a", "b"], [0.1, 1.5])


def test_bandit_from_platform(small_platform):
    for kind in ("cover", "title", "price"):
        b = BanditEnv.from_platform(small_platform, kind=kind, n_arms=4, seed=0)
        assert len(b.arms) >= 2
        assert b.best_arm in b.arms
        assert all(0 <= r <= 1 for r in b._rates)
    p = BanditEnv.from_platform(small_platform, kind="price", n_arms=5)
    rates = np.array(p._rates)
    assert np.all(np.diff(rates) < 0)  # dearer tags convert less
