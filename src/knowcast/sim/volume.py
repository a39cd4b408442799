"""Event volume for benchmarks: millions of funnel events, fast, over the entities of ``simulate_platform``.

:func:`iter_event_frames` trades the day-by-day bookkeeping of :mod:`knowcast.sim.platform` (ownership,
budgets, taste drift, the experiment) for speed: each chunk draws impressions in one vectorised pass and
expands them through the same response model (:mod:`knowcast.sim.behaviour`) into views, likes, comments,
shares, follows, clicks, carts, purchases / subscriptions, refunds, live joins / leaves and tips. Chunks cover
consecutive time windows, so the stream is sorted by ``ts`` across chunks; ids are unique across the run.
Within a chain every step is later than the one before, so funnel order holds per user and item.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pandas as pd

from knowcast.sim import behaviour as bh
from knowcast.sim.catalog import OTHER_PLATFORMS, build_catalog
from knowcast.sim.config import SimConfig
from knowcast.sim.platform import SESSION_CHANNEL_MIX, TIP_AMOUNTS, TIP_P, T, _event_frame, _unit


def iter_event_frames(
    cfg: SimConfig | None = None,
    n_events: int = 1_000_000,
    chunk_size: int = 100_000,
) -> Iterator[pd.DataFrame]:
    """Yield DataFrames with EVENT_COLUMNS totalling exactly ``n_events`` rows, ``chunk_size`` at a time.

    Users and items are those of ``simulate_platform(cfg)`` (same config, same ids), so the events can be
    written to a store that holds that platform. Deterministic for a config and sizes.
    """
    cfg = cfg or SimConfig()
    if not isinstance(cfg, SimConfig):
        raise TypeError(f"cfg must be a SimConfig, got {type(cfg).__name__}")
    for name, v in (("n_events", n_events), ("chunk_size", chunk_size)):
        if not isinstance(v, int | np.integer) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    cat = build_catalog(cfg)
    gen = _Volume(
        cfg, cat, np.random.default_rng(np.random.SeedSequence([cfg.seed, 99, n_events, chunk_size]))
    )
    n_chunks = math.ceil(n_events / chunk_size)
    prefix = f"v{cfg.fingerprint()}-"
    window = (cfg.end_ms - cfg.start_ms) / n_chunks
    done = 0
    for c in range(n_chunks):
        need = min(chunk_size, n_events - done)
        w0 = int(cfg.start_ms + c * window)
        w1 = int(cfg.start_ms + (c + 1) * window)
        arrays = gen.chunk(need, w0, w1)
        yield _event_frame(arrays, cat, gen.sources, prefix, done)
        done += need


class _Volume:
    def __init__(self, cfg: SimConfig, cat, rng: np.random.Generator) -> None:
        self.cfg, self.cat, self.rng = cfg, cat, rng
        self.rate = 1.6  # events per impression, refined after each chunk
        self.taste_unit = _unit(cat.user_taste)
        self.topics_unit = _unit(cat.item_topics)
        kol_ids = cat.kols["kol_id"].tolist()
        self.sources = kol_ids + list(OTHER_PLATFORMS) + ["push:daily_pick", "push:live_start"]
        self.n_kol = len(kol_ids)
        self.is_video = cat.item_kind == "short_video"
        self.is_paid = ~self.is_video & (cat.item_kind != "live")
        self.is_member = cat.item_kind == "membership"
        self.promo_rows = [
            np.array([int(x[1:]) - 1 for x in p], dtype=np.int64) for p in cat.items["promotes"]
        ]
        self.danmaku = np.array(cat.corpora.danmaku, dtype=object)
        self.livechat = np.array(cat.corpora.livechat, dtype=object)

    def chunk(self, need: int, w0: int, w1: int) -> dict[str, np.ndarray]:
        n_imp = int(need / self.rate * 1.15) + 64
        while True:
            out = self._generate(n_imp, w0, w1)
            n = len(out["ts"])
            if n >= need:
                break
            n_imp = int(n_imp * 1.5) + 64
        self.rate = n / n_imp
        order = np.lexsort((out["type"], out["ts"]))[:need]
        return {k: v[order] for k, v in out.items()}

    def _generate(self, n: int, w0: int, w1: int) -> dict[str, np.ndarray]:
        cat, rng = self.cat, self.rng
        cols: dict[str, list] = {
            k: []
            for k in (
                "type",
                "ts",
                "user",
                "item",
                "watch",
                "ratio",
                "amount",
                "channel",
                "source",
                "room",
                "props",
            )
        }

        def add(type_, ts, user, item, ch, src, watch=None, ratio=None, amount=None, room=None, props=None):
            m = len(ts)
            cols["type"].append(np.full(m, T[type_], dtype=np.int8))
            cols["ts"].append(np.asarray(ts, dtype=np.int64))
            cols["user"].append(np.asarray(user, dtype=np.int64))
            cols["item"].append(np.asarray(item, dtype=np.int64))
            cols["channel"].append(np.asarray(ch, dtype=np.int8))
            cols["source"].append(np.asarray(src, dtype=np.int64))
            for k, v in (("watch", watch), ("ratio", ratio), ("amount", amount)):
                cols[k].append(np.full(m, np.nan) if v is None else np.asarray(v, dtype=float))
            cols["room"].append(
                np.full(m, -1, dtype=np.int64) if room is None else np.asarray(room, np.int64)
            )
            p = np.full(m, None, dtype=object)
            if props is not None:
                p[:] = props
            cols["props"].append(p)

        # users active in the window, weighted by activity
        uok = np.flatnonzero(cat.user_created_ms < w1)
        cu = np.cumsum(cat.user_activity[uok])
        u = uok[np.minimum(np.searchsorted(cu, rng.random(n) * cu[-1], side="right"), len(uok) - 1)]
        ts = w0 + (rng.random(n) * (w1 - w0)).astype(np.int64)
        ts = np.clip(np.maximum(ts, cat.user_created_ms[u] + 1_000), w0, w1 - 1)
        ch = rng.choice(5, size=n, p=SESSION_CHANNEL_MIX).astype(np.int8)
        src = np.full(n, -1, dtype=np.int64)
        src[ch == bh.CH["kol"]] = rng.integers(0, self.n_kol, size=(ch == bh.CH["kol"]).sum())
        m = ch == bh.CH["other_platform"]
        src[m] = self.n_kol + rng.integers(0, len(OTHER_PLATFORMS), size=m.sum())
        src[ch == bh.CH["push"]] = self.n_kol + len(OTHER_PLATFORMS)
        # candidates: popular items available in the window; keep the best of 3 by noisy taste match
        pool = np.flatnonzero((self.is_video | self.is_paid) & (cat.item_created_ms < w0 + 1))
        if len(pool) == 0:
            pool = np.flatnonzero(self.is_video | self.is_paid)
        cw = np.cumsum(cat.item_pop[pool])
        cand = pool[np.minimum(np.searchsorted(cw, rng.random((n, 3)) * cw[-1], side="right"), len(pool) - 1)]
        a3 = np.einsum("nk,nmk->nm", self.taste_unit[u], self.topics_unit[cand])
        best = np.argmax(3 * a3 + rng.gumbel(size=a3.shape), axis=1)
        i = cand[np.arange(n), best]
        aff = a3[np.arange(n), best]
        pos = rng.integers(0, 6, size=n)
        q = cat.item_quality
        add("impression", ts, u, i, ch, src)

        vid = self.is_video[i]
        v = vid & (rng.random(n) < bh.p_view(aff, q[i], ch, pos))
        vu, vi, vch, vsrc, va = u[v], i[v], ch[v], src[v], aff[v]
        ratio = bh.sample_watch_ratio(rng, va, q[vi])
        wsec = np.round(ratio * cat.item_duration[vi], 1)
        vts = ts[v] + rng.integers(500, 2_000, size=len(vi))
        add("view", vts, vu, vi, vch, vsrc, watch=wsec, ratio=ratio)
        vend = vts + (wsec * 1000).astype(np.int64)
        pe = bh.p_engage(ratio, va)
        for kind in ("like", "comment", "share", "follow"):
            mm = rng.random(len(vi)) < pe[kind]
            t_k = vts[mm] + 1000 + (rng.random(mm.sum()) * wsec[mm] * 1000).astype(np.int64)
            props = None
            if kind == "comment":
                props = [{"text": x} for x in self.danmaku[rng.integers(0, len(self.danmaku), size=mm.sum())]]
            elif kind == "follow":
                cids = cat.creators["creator_id"].to_numpy(dtype=object)[cat.item_creator[vi[mm]]]
                props = [{"creator_id": c} for c in cids]
                t_k = vend[mm] + 500
            add(kind, t_k, vu[mm], vi[mm], vch[mm], vsrc[mm], props=props)
        promo = cat.item_promo[vi]
        has = promo >= 0
        pu, pj = vu[has], promo[has]
        pc = rng.random(has.sum()) < bh.p_click_promoted(
            ratio[has], np.einsum("ij,ij->i", self.taste_unit[pu], self.topics_unit[pj]), q[pj], vch[has]
        )
        paid = ~vid
        cc = rng.random(paid.sum()) < bh.p_click_paid(aff[paid], q[i[paid]], ch[paid], pos[paid])
        tu = np.concatenate([pu[pc], u[paid][cc]])
        tj = np.concatenate([pj[pc], i[paid][cc]])
        tch = np.concatenate([vch[has][pc], ch[paid][cc]])
        tsrc = np.concatenate([vsrc[has][pc], src[paid][cc]])
        tts = np.concatenate(
            [vend[has][pc] + 2_000, ts[paid][cc] + rng.integers(2_000, 20_000, size=cc.sum())]
        )
        via = np.concatenate([vi[has][pc], np.full(cc.sum(), -1)])
        add(
            "click",
            tts,
            tu,
            tj,
            tch,
            tsrc,
            props=[{"via": self.cat_item_id(x)} if x >= 0 else None for x in via],
        )
        ta = np.einsum("ij,ij->i", self.taste_unit[tu], self.topics_unit[tj])
        cart = rng.random(len(tu)) < bh.p_cart(ta, q[tj], tch)
        cts = tts + rng.integers(5_000, 60_000, size=len(tu))
        add("add_to_cart", cts[cart], tu[cart], tj[cart], tch[cart], tsrc[cart])
        price = cat.item_price[tj]
        buy = cart & (
            rng.random(len(tu)) < bh.p_buy(ta, price, cat.user_budget[tu], cat.user_sensitivity[tu], tch)
        )
        pts = cts + rng.integers(30_000, 600_000, size=len(tu))
        mem = self.is_member[tj]
        for typ, mm in (("purchase", buy & ~mem), ("subscribe", buy & mem)):
            props = [{"plan": "monthly", "renewal": False}] * int(mm.sum()) if typ == "subscribe" else None
            add(typ, pts[mm], tu[mm], tj[mm], tch[mm], tsrc[mm], amount=price[mm], props=props)
        rf = buy & ~mem & (rng.random(len(tu)) < bh.p_refund(ta))
        add(
            "refund",
            pts[rf] + rng.integers(3_600_000, 3 * 86_400_000, size=rf.sum()),
            tu[rf],
            tj[rf],
            tch[rf],
            tsrc[rf],
            amount=price[rf],
            props=[{"reason": "other"}] * int(rf.sum()),
        )
        self._lives(add, n, w0, w1, uok, cu)
        out = {k: np.concatenate(v) for k, v in cols.items()}
        keep = out["ts"] < w1  # late steps of chains that straddle the window end are dropped
        return {k: v[keep] for k, v in out.items()}

    def cat_item_id(self, row: int) -> str:
        return f"i{row + 1:05d}"

    def _lives(self, add, n: int, w0: int, w1: int, uok: np.ndarray, cu: np.ndarray) -> None:
        """About 2% of the window's traffic joins lives on air in the window (join, comments, tips, leave)."""
        cat, rng = self.cat, self.rng
        on = np.flatnonzero((cat.live_start_ms >= 0) & (cat.live_start_ms < w1) & (cat.live_end_ms > w0))
        if len(on) == 0:
            return
        m = max(1, n // 50)
        li = on[rng.integers(0, len(on), size=m)]
        it = cat.live_item[li]
        u = uok[np.minimum(np.searchsorted(cu, rng.random(m) * cu[-1], side="right"), len(uok) - 1)]
        st = np.maximum(cat.live_start_ms[li], w0)
        en = np.minimum(cat.live_end_ms[li], w1)
        ok = en - st > 120_000
        li, it, u, st, en = li[ok], it[ok], u[ok], st[ok], en[ok]
        m = len(li)
        if m == 0:
            return
        join = st + (rng.random(m) * (en - st - 60_000)).astype(np.int64)
        a = np.einsum("ij,ij->i", self.taste_unit[u], self.topics_unit[it])
        stay = (rng.exponential(8 * 60_000 * (0.5 + 2 * a)) + 30_000).astype(np.int64)
        leave = np.minimum(join + stay, en - 1)
        ch = rng.choice(
            np.array([bh.CH["feed"], bh.CH["push"], bh.CH["direct"]]), size=m, p=[0.55, 0.3, 0.15]
        )
        src = np.where(ch == bh.CH["push"], self.n_kol + len(OTHER_PLATFORMS) + 1, -1)
        add("live_join", join, u, it, ch, src, room=it)
        add("live_leave", leave, u, it, ch, src, watch=np.round((leave - join) / 1000, 1), room=it)
        nc = rng.poisson((leave - join) / 60_000 * 0.12 * (0.5 + a))
        r = np.repeat(np.arange(m), nc)
        cts = join[r] + (rng.random(len(r)) * (leave - join)[r]).astype(np.int64)
        add(
            "comment",
            cts,
            u[r],
            it[r],
            ch[r],
            src[r],
            room=it[r],
            props=[{"text": x} for x in self.livechat[rng.integers(0, len(self.livechat), size=len(r))]],
        )
        tip = rng.random(m) < 0.03 * (0.5 + 2 * a)
        tts = join[tip] + (rng.random(tip.sum()) * (leave - join)[tip]).astype(np.int64)
        add(
            "tip",
            tts,
            u[tip],
            it[tip],
            np.full(tip.sum(), bh.CH["live"]),
            np.full(tip.sum(), -1),
            amount=rng.choice(TIP_AMOUNTS, size=tip.sum(), p=TIP_P),
            room=it[tip],
        )
