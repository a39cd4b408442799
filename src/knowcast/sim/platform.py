"""Day-by-day simulation of the knowledge-commerce platform: sessions, slates, funnels, lives, money.

Each simulated day:

1. every active user opens Poisson(activity) sessions at a believable hour (evening peak, Beijing time),
   each on one channel: feed (a 6-item slate ranked by a noisy taste model), search (a query on one of the
   user's topics), push (one popular item), a KOL's link (an item of the KOL's topic) or another platform;
2. each impression is answered by :mod:`knowcast.sim.behaviour`: view with watch ratio, like / comment /
   share / follow, a click on the promoted paid item (or on a paid card), add to cart, purchase;
3. lives that start that day draw an audience (taste-weighted), who join, stay, comment, tip and buy;
4. every click is a *touch* of a (user, paid item) pair. A touch "fires" when its own cart and pay draws
   succeed; the first firing touch buys (or subscribes, for memberships). Firing touches after that are kept
   in the truth: they say which channels would have sold the item anyway (see ``truth``);
5. tastes move toward what was watched and bought (:func:`~knowcast.sim.behaviour.update_taste`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from knowcast.domain import COMMENT_COLUMNS, EVENT_COLUMNS, EventType
from knowcast.sim import behaviour as bh
from knowcast.sim.catalog import DAY_MS, OTHER_PLATFORMS, Catalog, build_catalog
from knowcast.sim.config import SimConfig
from knowcast.sim.corpora import TOPIC_LABELS_ZH, TOPICS

#: Event-type codes (index into this tuple); the order is also the tie-break for equal timestamps.
TYPES: tuple[str, ...] = tuple(e.value for e in EventType)
T = {t: i for i, t in enumerate(TYPES)}
#: Share of sessions per channel: feed, search, push, kol, other_platform.
SESSION_CHANNEL_MIX = np.array([0.70, 0.12, 0.08, 0.05, 0.05])
#: Beijing-time hourly activity profile (night low, lunch bump, evening peak).
HOUR_PROFILE = np.array(
    [2, 1, 0.5, 0.3, 0.3, 0.5, 1, 2, 3, 3.5, 3.5, 4, 5, 4.5, 3.5, 3.5, 3.5, 4, 5, 6.5, 8, 8.5, 7, 4.5]
)
HOUR_PROFILE = HOUR_PROFILE / HOUR_PROFILE.sum()
EXPERIMENT_NAME = "checkout_v2"
TIP_AMOUNTS = np.array([1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 520.0])
TIP_P = np.array([0.25, 0.15, 0.2, 0.15, 0.1, 0.07, 0.05, 0.02, 0.01])
REFUND_REASONS = ("not_as_described", "too_hard", "bought_by_mistake", "duplicate", "other")


@dataclass
class Platform:
    """A simulated platform: entity tables, the event and comment logs, and the latent truth."""

    config: SimConfig
    creators: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame
    live_sessions: pd.DataFrame
    events: pd.DataFrame
    comments: pd.DataFrame
    truth: dict = field(default_factory=dict)
    catalog: Catalog | None = field(default=None, repr=False)


class _Buffer:
    """Column buffer for events; integer codes until the end, when strings are built once."""

    _cols = ("type", "ts", "user", "item", "watch", "ratio", "amount", "channel", "source", "room", "props")

    def __init__(self) -> None:
        self.parts: dict[str, list[np.ndarray]] = {c: [] for c in self._cols}

    def add(
        self,
        type_: str,
        ts,
        user,
        item=-1,
        watch=np.nan,
        ratio=np.nan,
        amount=np.nan,
        channel=0,
        source=-1,
        room=-1,
        props=None,
    ) -> None:
        ts = np.asarray(ts, dtype=np.int64)
        n = len(ts)
        if n == 0:
            return

        def arr(v, dtype):
            a = np.asarray(v, dtype=dtype)
            return np.full(n, a, dtype=dtype) if a.ndim == 0 else a

        self.parts["type"].append(np.full(n, T[type_], dtype=np.int8))
        self.parts["ts"].append(ts)
        self.parts["user"].append(arr(user, np.int64))
        self.parts["item"].append(arr(item, np.int64))
        self.parts["watch"].append(arr(watch, float))
        self.parts["ratio"].append(arr(ratio, float))
        self.parts["amount"].append(arr(amount, float))
        self.parts["channel"].append(arr(channel, np.int8))
        self.parts["source"].append(arr(source, np.int64))
        self.parts["room"].append(arr(room, np.int64))
        if props is None:
            self.parts["props"].append(np.full(n, None, dtype=object))
        else:
            p = np.empty(n, dtype=object)
            p[:] = list(props)
            self.parts["props"].append(p)

    def arrays(self) -> dict[str, np.ndarray]:
        return {c: np.concatenate(v) if v else np.array([]) for c, v in self.parts.items()}


def _sample_weighted(rng: np.random.Generator, pool: np.ndarray, cumw: np.ndarray, size) -> np.ndarray:
    """Draw pool members with probability proportional to weights (cumw = cumulative weights)."""
    u = rng.random(size) * cumw[-1]
    return pool[np.minimum(np.searchsorted(cumw, u, side="right"), len(pool) - 1)]


def _unit(x: np.ndarray) -> np.ndarray:
    return x / (np.linalg.norm(x, axis=-1, keepdims=True) + 1e-12)


class _Sim:
    """State of one simulation run (kept in one object so the day loop reads plainly)."""

    def __init__(self, cfg: SimConfig, cat: Catalog) -> None:
        self.cfg, self.cat = cfg, cat
        self.rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 424242]))
        self.N, self.U, self.K = len(cat.items), len(cat.users), len(TOPICS)
        self.taste = cat.user_taste.copy()
        self.topics_unit = _unit(cat.item_topics)
        self.buf = _Buffer()
        self.item_ids = cat.item_ids
        self.promo_rows = [
            np.array([int(x[1:]) - 1 for x in p], dtype=np.int64) for p in cat.items["promotes"]
        ]
        self.comments: list[tuple] = []
        self.comment_meta: list[tuple] = []
        self.owned: set[int] = set()
        self.follows: set[int] = set()
        self.exposed = np.zeros(self.U, dtype=bool)
        self.variant = self.rng.integers(0, 2, size=self.U) if cfg.experiment else np.zeros(self.U, int)
        self.spent = np.zeros(self.U)
        self.fires: list[tuple[np.ndarray, np.ndarray]] = []
        self.conv: list[dict] = []
        self.exposure_probs: list[np.ndarray] = []
        # sources vocabulary: kols, other platforms, search queries, push campaigns
        kol_ids = cat.kols["kol_id"].tolist()
        self.sources = (
            kol_ids
            + list(OTHER_PLATFORMS)
            + [f"query:{TOPIC_LABELS_ZH[t]}" for t in TOPICS]
            + ["push:daily_pick", "push:live_start"]
        )
        self.src_kol0 = 0
        self.src_other0 = len(kol_ids)
        self.src_query0 = self.src_other0 + len(OTHER_PLATFORMS)
        self.src_push = self.src_query0 + self.K
        kol_topic = np.array([TOPICS.index(t) for t in cat.kols["topic"]])
        self.kols_by_topic = [np.flatnonzero(kol_topic == t) for t in range(self.K)]
        self.kol_topic = kol_topic
        is_live = cat.item_kind == "live"
        self.is_video = cat.item_kind == "short_video"
        self.is_paid = ~self.is_video & ~is_live
        self.danmaku = np.array(cat.corpora.danmaku, dtype=object)
        self.livechat = np.array(cat.corpora.livechat, dtype=object)
        rv = cat.corpora.reviews
        self.reviews_pos = rv.loc[rv["label"] == 1, "review"].to_numpy(dtype=object)
        self.reviews_neg = rv.loc[rv["label"] == 0, "review"].to_numpy(dtype=object)

    # ---------------------------------------------------------------- helpers
    def aff(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return np.einsum("ij,ij->i", _unit(self.taste[users]), self.topics_unit[items])

    def _pools(self, avail: np.ndarray) -> None:
        """Per-topic, per-group (video / paid) candidate pools with cumulative popularity."""
        pop = self.cat.item_pop
        self.pool = {}
        for g, mask in (("video", self.is_video & avail), ("paid", self.is_paid & avail)):
            idx = np.flatnonzero(mask)
            self.pool[(g, -1)] = (idx, np.cumsum(pop[idx]))
            for t in range(self.K):
                sub = idx[self.cat.item_primary[idx] == t]
                if len(sub) == 0:
                    sub = idx
                self.pool[(g, t)] = (sub, np.cumsum(pop[sub]))

    def _draw(self, group: str, topic: np.ndarray | None, n_per: int, n: int) -> np.ndarray:
        if topic is None:
            return _sample_weighted(self.rng, *self.pool[(group, -1)], (n, n_per))
        out = np.empty((n, n_per), dtype=np.int64)
        for t in np.unique(topic):
            rows = np.flatnonzero(topic == t)
            out[rows] = _sample_weighted(self.rng, *self.pool[(group, int(t))], (len(rows), n_per))
        return out

    def _mixed(self, topic: np.ndarray | None, paid_p: float, n_per: int, n: int) -> np.ndarray:
        paid = self.rng.random((n, n_per)) < paid_p
        return np.where(paid, self._draw("paid", topic, n_per, n), self._draw("video", topic, n_per, n))

    def _rank(
        self, users: np.ndarray, cand: np.ndarray, k: int, sharp: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Platform ranking: noisy taste match + quality, duplicates removed; returns (items, valid)."""
        a = np.einsum("nk,nmk->nm", _unit(self.taste[users]), self.topics_unit[cand])
        score = sharp * a + 0.5 * self.cat.item_quality[cand] + self.rng.gumbel(size=cand.shape)
        order = np.argsort(cand, axis=1)
        srt = np.take_along_axis(cand, order, axis=1)
        dup = np.zeros_like(cand, dtype=bool)
        np.put_along_axis(dup, order[:, 1:], srt[:, 1:] == srt[:, :-1], axis=1)
        score[dup] = -np.inf
        top = np.argsort(-score, axis=1)[:, :k]
        return np.take_along_axis(cand, top, axis=1), np.isfinite(np.take_along_axis(score, top, axis=1))

    def _taste_topic(self, users: np.ndarray, flat: float = 0.0) -> np.ndarray:
        p = (1 - flat) * self.taste[users] + flat / self.K
        c = np.cumsum(p, axis=1)
        return np.minimum((self.rng.random(len(users))[:, None] * c[:, -1:] > c).sum(axis=1), self.K - 1)

    # ---------------------------------------------------------------- one day
    def day(self, d: int) -> None:
        cfg, cat, rng = self.cfg, self.cat, self.rng
        D0 = cfg.start_ms + d * DAY_MS
        avail = cat.item_created_ms < D0
        self._pools(avail)
        active = cat.user_created_ms < D0 + DAY_MS
        weekend = pd.Timestamp(D0, unit="ms").day_of_week >= 5
        ns = rng.poisson(cat.user_activity * active * (1.25 if weekend else 1.0))
        su = np.repeat(np.arange(self.U), ns)
        local_hour = rng.choice(24, size=len(su), p=HOUR_PROFILE)
        sts = D0 + ((local_hour - 8) % 24) * 3_600_000 + rng.integers(0, 3_600_000, size=len(su))
        sts = np.maximum(sts, cat.user_created_ms[su] + 60_000)
        sch = rng.choice(5, size=len(su), p=SESSION_CHANNEL_MIX)

        imp_u, imp_i, imp_ch, imp_src, imp_pos, imp_ts = [], [], [], [], [], []

        def emit(sess: np.ndarray, items: np.ndarray, valid: np.ndarray, ch: int, src: np.ndarray) -> None:
            k = items.shape[1]
            pos = np.broadcast_to(np.arange(k), items.shape)
            gap = np.cumsum(rng.integers(3_000, 25_000, size=items.shape), axis=1)
            imp_u.append(np.repeat(su[sess], k)[valid.ravel()])
            imp_i.append(items.ravel()[valid.ravel()])
            imp_ch.append(np.full(valid.sum(), ch, dtype=np.int8))
            imp_src.append(np.repeat(src, k)[valid.ravel()])
            imp_pos.append(pos.ravel()[valid.ravel()])
            imp_ts.append((sts[sess][:, None] + gap).ravel()[valid.ravel()])

        s = np.flatnonzero(sch == 0)  # feed
        if len(s):
            items, ok = self._rank(su[s], self._mixed(None, 0.15, 20, len(s)), cfg.feed_slate, 3.0)
            emit(s, items, ok, bh.CH["feed"], np.full(len(s), -1))
        s = np.flatnonzero(sch == 1)  # search
        if len(s):
            q = self._taste_topic(su[s])
            items, ok = self._rank(su[s], self._mixed(q, 0.5, 8, len(s)), 4, 2.0)
            emit(s, items, ok, bh.CH["search"], self.src_query0 + q)
        s = np.flatnonzero(sch == 2)  # push: popular, not personalised
        if len(s):
            items = self._mixed(None, 0.4, 1, len(s))
            emit(s, items, np.ones_like(items, bool), bh.CH["push"], np.full(len(s), self.src_push))
        s = np.flatnonzero(sch == 3)  # kol link
        if len(s):
            q = self._taste_topic(su[s])
            kol = np.empty(len(s), dtype=np.int64)
            for t in range(self.K):
                rows = np.flatnonzero(q == t)
                cands = self.kols_by_topic[t]
                kol[rows] = (
                    rng.choice(cands, size=len(rows))
                    if len(cands)
                    else rng.integers(0, len(self.kol_topic), size=len(rows))
                )
            q = self.kol_topic[kol]
            items = self._mixed(q, 0.7, 1, len(s))
            emit(s, items, np.ones_like(items, bool), bh.CH["kol"], self.src_kol0 + kol)
        s = np.flatnonzero(sch == 4)  # other platform
        if len(s):
            q = self._taste_topic(su[s], flat=0.5)
            items = self._mixed(q, 0.5, 1, len(s))
            src = self.src_other0 + rng.integers(0, len(OTHER_PLATFORMS), size=len(s))
            emit(s, items, np.ones_like(items, bool), bh.CH["other_platform"], src)

        iu, ii = np.concatenate(imp_u), np.concatenate(imp_i)
        ich, isrc = np.concatenate(imp_ch), np.concatenate(imp_src)
        ipos, its = np.concatenate(imp_pos), np.concatenate(imp_ts)
        self.buf.add(
            "impression", its, iu, ii, channel=ich, source=isrc, props=[{"position": int(p)} for p in ipos]
        )
        touches = self._impressions(iu, ii, ich, isrc, ipos, its)
        live_touches, consumed_live = self._lives(D0, active)
        self._touches(d, touches, live_touches)
        self._update_taste(consumed_live)

    def _impressions(self, iu, ii, ich, isrc, ipos, its) -> dict:
        cat, rng = self.cat, self.rng
        q = cat.item_quality
        aff = self.aff(iu, ii)
        vid = self.is_video[ii]
        v = vid & (rng.random(len(ii)) < bh.p_view(aff, q[ii], ich, ipos))
        vu, vi, vch, vsrc, vaff = iu[v], ii[v], ich[v], isrc[v], aff[v]
        ratio = bh.sample_watch_ratio(rng, vaff, q[vi])
        wsec = np.round(ratio * cat.item_duration[vi], 1)
        vts = its[v] + rng.integers(500, 2_000, size=len(vi))
        self.buf.add("view", vts, vu, vi, watch=wsec, ratio=ratio, channel=vch, source=vsrc)
        self._consumed = (vu, vi, np.minimum(ratio, 1.0))
        end_ts = vts + (wsec * 1000).astype(np.int64)
        pe = bh.p_engage(ratio, vaff)
        for kind in ("like", "share"):
            m = rng.random(len(vi)) < pe[kind]
            self.buf.add(
                kind,
                vts[m] + 1000 + (rng.random(m.sum()) * wsec[m] * 1000).astype(np.int64),
                vu[m],
                vi[m],
                channel=vch[m],
                source=vsrc[m],
            )
        m = rng.random(len(vi)) < pe["comment"]
        if m.any():
            off = np.round(rng.random(m.sum()) * wsec[m], 1)
            pos_p = bh.sigmoid(4.0 * (np.minimum(ratio[m], 1) * 0.5 + vaff[m] - 0.6))
            self._add_comments(
                vts[m] + 1000 + (off * 1000).astype(np.int64),
                vu[m],
                vi[m],
                -1,
                off,
                vch[m],
                vsrc[m],
                pos_p,
                corpus="danmaku",
            )
        m = rng.random(len(vi)) < pe["follow"]
        if m.any():
            fu, fi, fts = vu[m], vi[m], end_ts[m] + 500
            key = fu * len(cat.creators) + cat.item_creator[fi]
            keep = np.array([k not in self.follows for k in key])
            _, first = np.unique(key, return_index=True)
            keep &= np.isin(np.arange(len(key)), first)
            self.follows.update(key[keep].tolist())
            cids = cat.creators["creator_id"].to_numpy(dtype=object)[cat.item_creator[fi[keep]]]
            self.buf.add(
                "follow",
                fts[keep],
                fu[keep],
                fi[keep],
                channel=vch[m][keep],
                source=vsrc[m][keep],
                props=[{"creator_id": c} for c in cids],
            )
        # click on the promoted paid item after watching
        promo = cat.item_promo[vi]
        has = promo >= 0
        pu, pj, pch = vu[has], promo[has], vch[has]
        pc = rng.random(has.sum()) < bh.p_click_promoted(ratio[has], self.aff(pu, pj), q[pj], pch)
        t1 = dict(
            u=pu[pc],
            j=pj[pc],
            ch=pch[pc],
            src=vsrc[has][pc],
            ts=end_ts[has][pc] + 2_000,
            via=vi[has][pc],
            room=np.full(pc.sum(), -1),
        )
        # click on a paid card
        paid = ~vid
        cu, cj, cch = iu[paid], ii[paid], ich[paid]
        cc = rng.random(paid.sum()) < bh.p_click_paid(aff[paid], q[cj], cch, ipos[paid])
        t2 = dict(
            u=cu[cc],
            j=cj[cc],
            ch=cch[cc],
            src=isrc[paid][cc],
            ts=its[paid][cc] + rng.integers(2_000, 20_000, size=cc.sum()),
            via=np.full(cc.sum(), -1),
            room=np.full(cc.sum(), -1),
        )
        return {k: np.concatenate([t1[k], t2[k]]) for k in t1}

    def _add_comments(self, ts, users, items, room, offset, ch, src, pos_p, corpus: str) -> None:
        """Comment events plus comment rows; text from danmaku/livechat, or a labelled review (30%)."""
        rng = self.rng
        n = len(ts)
        pool = self.danmaku if corpus == "danmaku" else self.livechat
        use_review = rng.random(n) < 0.3
        positive = rng.random(n) < pos_p
        texts = pool[rng.integers(0, len(pool), size=n)]
        label = np.full(n, -1)
        for flag, arr in ((1, self.reviews_pos), (0, self.reviews_neg)):
            m = use_review & (positive == bool(flag))
            if m.any() and len(arr):
                texts[m] = arr[rng.integers(0, len(arr), size=m.sum())]
                label[m] = flag
        base = len(self.comments)
        fp = self.cfg.fingerprint()
        rooms = np.broadcast_to(np.asarray(room), (n,))
        cids = [f"m{fp}-{base + k:07d}" for k in range(n)]
        for k in range(n):
            self.comments.append(
                (cids[k], int(ts[k]), int(users[k]), int(items[k]), int(rooms[k]), texts[k], float(offset[k]))
            )
            self.comment_meta.append((cids[k], corpus if label[k] < 0 else "review", int(label[k])))
        self.buf.add(
            "comment",
            ts,
            users,
            items,
            channel=ch,
            source=src,
            room=rooms,
            props=[{"comment_id": c} for c in cids],
        )

    def _lives(self, D0: int, active: np.ndarray) -> tuple[dict, tuple]:
        cat, rng, cfg = self.cat, self.rng, self.cfg
        today = np.flatnonzero((cat.live_start_ms >= D0) & (cat.live_start_ms < D0 + DAY_MS))
        parts = []
        cons = []
        scale = cfg.n_users / 5000
        for li in today:
            it = int(cat.live_item[li])
            st, en = int(cat.live_start_ms[li]), int(cat.live_end_ms[li])
            still_on = en >= cfg.end_ms
            a_all = _unit(self.taste) @ self.topics_unit[it]
            w = cat.user_activity * active * np.exp(3.0 * a_all)
            n_a = int(
                min(rng.poisson(scale * (15 + 250 * cat.creator_fame[cat.item_creator[it]])), (w > 0).sum())
            )
            if n_a == 0 or en - st < 120_000:
                continue
            aud = rng.choice(self.U, size=n_a, replace=False, p=w / w.sum())
            a = a_all[aud]
            join = st + np.minimum(rng.exponential(20 * 60_000, size=n_a), en - st - 60_000).astype(np.int64)
            stay = (rng.exponential(8 * 60_000 * (0.5 + 2 * a)) + 30_000).astype(np.int64)
            leave = np.minimum(join + stay, en)
            ch = rng.choice(
                np.array([bh.CH[c] for c in ("feed", "push", "kol", "other_platform", "direct")]),
                size=n_a,
                p=[0.45, 0.3, 0.05, 0.05, 0.15],
            )
            src = np.where(ch == bh.CH["push"], self.src_push + 1, -1)
            f = ch == bh.CH["feed"]
            self.buf.add("impression", join[f] - 3_000, aud[f], it, channel=bh.CH["feed"], room=it)
            self.buf.add("live_join", join, aud, it, channel=ch, source=src, room=it)
            lv = ~(still_on & (join + stay >= cfg.end_ms))
            self.buf.add(
                "live_leave",
                leave[lv],
                aud[lv],
                it,
                watch=np.round((leave - join)[lv] / 1000, 1),
                channel=ch[lv],
                source=src[lv],
                room=it,
            )
            stay_min = (leave - join) / 60_000
            cons.append((aud, np.full(n_a, it), np.minimum(stay_min / 30, 1.0)))
            nc = rng.poisson(stay_min * 0.12 * (0.5 + a))
            if nc.sum():
                cu = np.repeat(np.arange(n_a), nc)
                cts = join[cu] + (rng.random(len(cu)) * (leave - join)[cu]).astype(np.int64)
                cts = np.sort(cts)  # keep the arrival order of the room
                self._add_comments(
                    cts,
                    aud[cu],
                    np.full(len(cu), it),
                    it,
                    np.round((cts - st) / 1000, 1),
                    ch[cu],
                    src[cu],
                    bh.sigmoid(4.0 * (a[cu] - 0.4)),
                    corpus="livechat",
                )
            tip = rng.random(n_a) < 0.03 * (0.5 + 2 * a)
            if tip.any():
                amt = rng.choice(TIP_AMOUNTS, size=tip.sum(), p=TIP_P)
                tts = join[tip] + (rng.random(tip.sum()) * (leave - join)[tip]).astype(np.int64)
                self.buf.add(
                    "tip",
                    tts,
                    aud[tip],
                    it,
                    amount=amt,
                    channel=bh.CH["live"],
                    room=it,
                    props=[{"gift": "rocket" if x >= 100 else "flower"} for x in amt],
                )
            promos = self.promo_rows[it]
            pj = promos[rng.integers(0, len(promos), size=n_a)]
            p = bh.sigmoid(
                -3.2
                + 2.5 * self.aff(aud, pj)
                + 0.25 * np.minimum(stay_min / 10, 3)
                + bh.CHANNEL_EFFECTS["live"][1]
            )
            c = rng.random(n_a) < p
            parts.append(
                dict(
                    u=aud[c],
                    j=pj[c],
                    ch=np.full(c.sum(), bh.CH["live"], dtype=np.int8),
                    src=np.full(c.sum(), -1),
                    via=np.full(c.sum(), it, dtype=np.int64),
                    ts=join[c]
                    + (rng.random(c.sum()) * np.maximum(leave - join - 1_000, 1)[c]).astype(np.int64),
                    room=np.full(c.sum(), it),
                )
            )
        if not parts:
            e = np.array([], dtype=np.int64)
            return dict(u=e, j=e, ch=e.astype(np.int8), src=e, via=e, ts=e, room=e), ()
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}, tuple(cons)

    def _touches(self, d: int, t1: dict, t2: dict) -> None:
        cat, rng, cfg = self.cat, self.rng, self.cfg
        t = {k: np.concatenate([t1[k], t2[k]]) for k in t1}
        n = len(t["u"])
        if n == 0:
            return
        u, j, ch, ts = t["u"], t["j"], t["ch"].astype(np.int64), t["ts"]
        props = [{"via": self.item_ids[v]} if v >= 0 else None for v in t["via"]]
        self.buf.add("click", ts, u, j, channel=ch, source=t["src"], room=t["room"], props=props)
        a = self.aff(u, j)
        price = cat.item_price[j]
        treated = self.variant[u].astype(float) if cfg.experiment else None
        p_cart = bh.p_cart(a, cat.item_quality[j], ch)
        p_buy = bh.p_buy(a, price, cat.user_budget[u], cat.user_sensitivity[u], ch, treated)
        cart = rng.random(n) < p_cart
        buy = rng.random(n) < p_buy
        afford = price <= cat.user_budget[u] * (1.5 + d / 30) - self.spent[u]
        fire = cart & buy & afford
        key = u * self.N + j
        self.fires.append((key[fire], ch[fire]))
        owned_before = np.array([k in self.owned for k in key], dtype=bool)
        cand = fire & ~owned_before
        first_ts = np.full(n, np.iinfo(np.int64).max)
        purchase = np.zeros(n, dtype=bool)
        if cand.any():
            df = pd.DataFrame({"key": key[cand], "ts": ts[cand], "row": np.flatnonzero(cand)})
            df = df.sort_values(["key", "ts", "row"]).drop_duplicates("key")
            purchase[df["row"].to_numpy()] = True
            m = dict(zip(df["key"].tolist(), df["ts"].tolist(), strict=True))
            first_ts = np.array([m.get(k, np.iinfo(np.int64).max) for k in key], dtype=np.int64)
        emit_cart = cart & ~owned_before & (ts <= first_ts)
        cart_ts = ts + rng.integers(5_000, 60_000, size=n)
        # experiment: exposure when a user first reaches the checkout (their first add-to-cart)
        exp_col = np.full(n, -1)
        if cfg.experiment:
            cu = u[emit_cart]
            order = np.argsort(cart_ts[emit_cart], kind="stable")
            _, first = np.unique(cu[order], return_index=True)
            new = order[first][~self.exposed[cu[order][first]]]
            rows = np.flatnonzero(emit_cart)[new]
            self.exposed[u[rows]] = True
            self.exposure_probs.append(np.stack([p_buy[rows], self.variant[u[rows]]], axis=1))
            self.buf.add(
                "exposure",
                cart_ts[rows] - 500,
                u[rows],
                channel=ch[rows],
                source=t["src"][rows],
                props=[
                    {"experiment": EXPERIMENT_NAME, "variant": ("control", "treatment")[v]}
                    for v in self.variant[u[rows]]
                ],
            )
            exp_col = np.where(self.exposed[u], self.variant[u], -1)
        ec = emit_cart
        self.buf.add(
            "add_to_cart",
            cart_ts[ec],
            u[ec],
            j[ec],
            channel=ch[ec],
            source=t["src"][ec],
            room=t["room"][ec],
            props=[{"experiment": int(x)} if x >= 0 else None for x in exp_col[ec]],
        )
        if not purchase.any():
            return
        pr = np.flatnonzero(purchase)
        self.owned.update(key[pr].tolist())
        np.add.at(self.spent, u[pr], price[pr])
        pts = cart_ts[pr] + rng.integers(30_000, 600_000, size=len(pr))
        member = cat.item_kind[j[pr]] == "membership"
        for typ, m in (("purchase", ~member), ("subscribe", member)):
            rows = pr[m]
            props = [
                ({"via": self.item_ids[v]} if v >= 0 else {})
                | ({"plan": "monthly", "renewal": False} if typ == "subscribe" else {})
                for v in t["via"][rows]
            ]
            props = [
                (p | {"experiment": int(exp_col[r])}) if exp_col[r] >= 0 else (p or None)
                for p, r in zip(props, rows, strict=True)
            ]
            self.buf.add(
                typ,
                pts[m],
                u[rows],
                j[rows],
                amount=price[rows],
                channel=ch[rows],
                source=t["src"][rows],
                room=t["room"][rows],
                props=props,
            )
        for r, pt in zip(pr, pts, strict=True):
            self.conv.append(
                {
                    "key": int(key[r]),
                    "user": int(u[r]),
                    "item": int(j[r]),
                    "ts": int(pt),
                    "channel": int(ch[r]),
                    "amount": float(price[r]),
                }
            )
        # renewals of memberships, monthly, while the horizon lasts
        for r, pt in zip(pr[member], pts[member], strict=True):
            nxt = pt + 30 * DAY_MS
            while nxt < cfg.end_ms and rng.random() < 0.8:
                self.buf.add(
                    "subscribe",
                    [nxt],
                    [u[r]],
                    [j[r]],
                    amount=[price[r]],
                    channel=bh.CH["direct"],
                    props=[{"plan": "monthly", "renewal": True}],
                )
                nxt += 30 * DAY_MS
        # refunds (not for memberships)
        nr = pr[~member]
        rf = rng.random(len(nr)) < bh.p_refund(a[nr])
        rts = pts[~member][rf] + rng.integers(3_600_000, 7 * DAY_MS, size=rf.sum())
        ok = rts < cfg.end_ms
        rows = nr[rf][ok]
        self.buf.add(
            "refund",
            rts[ok],
            u[rows],
            j[rows],
            amount=price[rows],
            channel=ch[rows],
            source=t["src"][rows],
            props=[
                {"reason": REFUND_REASONS[k]} for k in rng.integers(0, len(REFUND_REASONS), size=ok.sum())
            ],
        )
        self._bought = (u[pr], j[pr])

    def _update_taste(self, consumed_live: tuple) -> None:
        us, its, ws = [self._consumed[0]], [self._consumed[1]], [self._consumed[2]]
        for cu, ci, cw in consumed_live:
            us.append(cu)
            its.append(ci)
            ws.append(cw)
        bought = getattr(self, "_bought", None)
        if bought is not None:
            us.append(bought[0])
            its.append(bought[1])
            ws.append(np.full(len(bought[0]), 3.0))
            self._bought = None
        u, i, w = np.concatenate(us), np.concatenate(its), np.concatenate(ws)
        W = np.zeros((self.U, self.K))
        np.add.at(W, u, w[:, None] * self.cat.item_topics[i])
        wsum = np.bincount(u, weights=w, minlength=self.U)
        has = wsum > 0
        self.taste[has] = bh.update_taste(self.taste[has], W[has] / wsum[has, None], wsum[has])


def _event_frame(buf: dict, cat: Catalog, sources: list[str], prefix: str, n0: int = 0) -> pd.DataFrame:
    """Turn integer-coded event arrays into a DataFrame with EVENT_COLUMNS, sorted by ts, ids assigned."""
    order = np.lexsort((buf["type"], buf["ts"]))
    n = len(order)
    b = {k: v[order] for k, v in buf.items()}
    item_ids = cat.item_ids
    user_ids = cat.user_ids
    src_arr = np.array(list(sources) + [None], dtype=object)
    types = np.array(TYPES, dtype=object)
    chans = np.array(bh.CHANNELS, dtype=object)
    item = b["item"]
    room = b["room"]
    exp = np.full(n, None, dtype=object)
    var = np.full(n, None, dtype=object)
    props = b["props"]
    # experiment / variant columns come from the props marker set during the simulation
    for k in np.flatnonzero([isinstance(p, dict) and "experiment" in p for p in props]):
        p = dict(props[k])
        v = p.pop("experiment")
        exp[k] = EXPERIMENT_NAME
        var[k] = p.pop("variant", None) or ("control", "treatment")[int(v)]
        props[k] = p or None
    amount = b["amount"]
    currency = np.where(np.isnan(amount), None, "CNY").astype(object)
    return pd.DataFrame(
        {
            "event_id": [f"{prefix}{n0 + k:09d}" for k in range(n)],
            "type": types[b["type"]],
            "ts": b["ts"].astype(np.int64),
            "user_id": user_ids[b["user"]],
            "item_id": np.where(item >= 0, item_ids[np.maximum(item, 0)], None).astype(object),
            "watch_seconds": b["watch"].astype(float),
            "watch_ratio": b["ratio"].astype(float),
            "amount": amount.astype(float),
            "currency": currency,
            "channel": chans[b["channel"]],
            "source": src_arr[np.where(b["source"] >= 0, b["source"], len(sources))],
            "experiment": exp,
            "variant": var,
            "device": cat.user_device[b["user"]],
            "room_id": np.where(room >= 0, item_ids[np.maximum(room, 0)], None).astype(object),
            "props": props,
        },
        columns=list(EVENT_COLUMNS),
    )


def _truth(sim: _Sim) -> dict:
    cat, cfg = sim.cat, sim.cfg
    conv = pd.DataFrame(sim.conv, columns=["key", "user", "item", "ts", "channel", "amount"])
    fk = np.concatenate([f[0] for f in sim.fires]) if sim.fires else np.array([], dtype=np.int64)
    fc = np.concatenate([f[1] for f in sim.fires]) if sim.fires else np.array([], dtype=np.int64)
    fires = pd.DataFrame({"key": fk, "channel": fc}).drop_duplicates()
    firing = fires.groupby("key")["channel"].apply(lambda s: sorted(int(x) for x in s))
    conv["firing"] = conv["key"].map(firing)
    conv["firing"] = [
        f if isinstance(f, list) else [c] for f, c in zip(conv["firing"], conv["channel"], strict=True)
    ]
    incr = dict.fromkeys(bh.CHANNELS, 0)
    shap = dict.fromkeys(bh.CHANNELS, 0.0)
    shap_rev = dict.fromkeys(bh.CHANNELS, 0.0)
    for f, amt in zip(conv["firing"], conv["amount"], strict=True):
        if len(f) == 1:
            incr[bh.CHANNELS[f[0]]] += 1
        for c in f:
            shap[bh.CHANNELS[c]] += 1 / len(f)
            shap_rev[bh.CHANNELS[c]] += amt / len(f)
    conversions = pd.DataFrame(
        {
            "user_id": cat.user_ids[conv["user"].to_numpy(dtype=np.int64)],
            "item_id": cat.item_ids[conv["item"].to_numpy(dtype=np.int64)],
            "ts": conv["ts"].astype(np.int64),
            "channel": [bh.CHANNELS[c] for c in conv["channel"]],
            "amount": conv["amount"].astype(float),
            "firing_channels": [[bh.CHANNELS[c] for c in f] for f in conv["firing"]],
        }
    ).sort_values("ts", ignore_index=True)
    # per-paid-item purchase propensity: P(cart) * P(pay) after a feed click, averaged over all users
    paid = np.flatnonzero(sim.is_paid)
    tu = _unit(cat.user_taste)
    A = tu @ sim.topics_unit[paid].T
    feed = np.zeros(A.shape, dtype=np.int64)
    pc = bh.p_cart(A, cat.item_quality[paid][None, :], feed)
    pb = bh.p_buy(
        A, cat.item_price[paid][None, :], cat.user_budget[:, None], cat.user_sensitivity[:, None], feed
    )
    propensity = pd.Series((pc * pb).mean(axis=0), index=cat.item_ids[paid], name="p_purchase_given_click")
    exp = {}
    if cfg.experiment and sim.exposure_probs:
        ep = np.concatenate(sim.exposure_probs)
        logit = np.log(ep[:, 0] / (1 - ep[:, 0])) - bh.EXPERIMENT_LOGIT_LIFT * ep[:, 1]
        exp = {
            "name": EXPERIMENT_NAME,
            "variants": ["control", "treatment"],
            "unit": "user",
            "logit_lift": bh.EXPERIMENT_LOGIT_LIFT,
            "true_rate_control": float(bh.sigmoid(logit).mean()),
            "true_rate_treatment": float(bh.sigmoid(logit + bh.EXPERIMENT_LOGIT_LIFT).mean()),
            "metric": "P(pay | add_to_cart) at the first checkout",
        }
    return {
        "topics": list(TOPICS),
        "user_ids": cat.user_ids.copy(),
        "item_ids": cat.item_ids.copy(),
        "user_taste_initial": cat.user_taste.copy(),
        "user_taste": sim.taste.copy(),
        "item_topics": cat.item_topics.copy(),
        "item_quality": cat.item_quality.copy(),
        "item_popularity": cat.item_pop.copy(),
        "user_activity": cat.user_activity.copy(),
        "user_budget": cat.user_budget.copy(),
        "user_price_sensitivity": cat.user_sensitivity.copy(),
        "user_variant": np.where(sim.exposed, sim.variant, -1) if cfg.experiment else None,
        "channel_effects": {
            c: dict(zip(("view", "click", "cart", "pay"), v, strict=True))
            for c, v in bh.CHANNEL_EFFECTS.items()
        },
        "conversions": conversions,
        "channel_incremental_purchases": incr,
        "channel_shapley_purchases": shap,
        "channel_shapley_revenue": shap_rev,
        "item_purchase_propensity": propensity,
        "experiment": exp,
        "kols": cat.kols.copy(),
        "comment_labels": pd.DataFrame(sim.comment_meta, columns=["comment_id", "corpus", "label"]),
        "corpus_source": cat.corpora.source,
    }


def simulate_platform(cfg: SimConfig | None = None) -> Platform:
    """Simulate the whole platform for ``cfg`` (default :class:`SimConfig`). Deterministic for a config."""
    cfg = cfg or SimConfig()
    if not isinstance(cfg, SimConfig):
        raise TypeError(f"cfg must be a SimConfig, got {type(cfg).__name__}")
    cat = build_catalog(cfg)
    sim = _Sim(cfg, cat)
    for d in range(cfg.days):
        sim.day(d)
    arrays = sim.buf.arrays()
    keep = arrays["ts"] < cfg.end_ms
    arrays = {k: v[keep] for k, v in arrays.items()}
    events = _event_frame(arrays, cat, sim.sources, prefix=f"e{cfg.fingerprint()}-")
    cm = pd.DataFrame(sim.comments, columns=["comment_id", "ts", "user", "item", "room", "text", "offset_s"])
    cm = cm[cm["ts"] < cfg.end_ms].sort_values(["ts", "comment_id"], ignore_index=True)
    comments = pd.DataFrame(
        {
            "comment_id": cm["comment_id"].astype(object),
            "ts": cm["ts"].astype(np.int64),
            "user_id": cat.user_ids[cm["user"].to_numpy(dtype=np.int64)],
            "item_id": cat.item_ids[cm["item"].to_numpy(dtype=np.int64)],
            "room_id": np.where(cm["room"] >= 0, cat.item_ids[np.maximum(cm["room"].to_numpy(), 0)], None),
            "text": cm["text"].astype(object),
            "offset_s": cm["offset_s"].astype(float),
        },
        columns=list(COMMENT_COLUMNS),
    )
    truth = _truth(sim)
    return Platform(cfg, cat.creators, cat.items, cat.users, cat.live_sessions, events, comments, truth, cat)
