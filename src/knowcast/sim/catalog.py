"""Creators, items, users and live sessions of the simulated platform, with their latent truth.

Generation order follows causation: creators get topics and fame; each paid item takes a topic from its
creator and a real course title of that topic; short videos and lives promote their creator's paid items and
take real captions of that topic; users get a sparse latent taste over topics, an activity level, a monthly
budget and a price sensitivity. Everything is drawn from a generator seeded by the config, so
:func:`build_catalog` is deterministic and shared by :func:`~knowcast.sim.simulate_platform` and
:func:`~knowcast.sim.iter_event_frames`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from knowcast.domain import CREATOR_COLUMNS, ITEM_COLUMNS, USER_COLUMNS, ItemKind, LiveState
from knowcast.sim.config import SimConfig
from knowcast.sim.corpora import TOPIC_LABELS_ZH, TOPICS, Corpora, load_corpora

DAY_MS = 86_400_000
#: Udemy list prices are in USD; knowledge courses in China sell at roughly half the converted price.
USD_TO_CNY = 3.5
PAID_KIND_MIX = {"course": 0.40, "column": 0.20, "ebook": 0.15, "audio": 0.15, "membership": 0.10}
OTHER_PLATFORMS = ("wechat", "xiaohongshu", "weibo", "zhihu", "bilibili")
_NAME_HEAD = ("硬核", "每日", "老王", "小林", "一起学", "听", "阿杰", "大白", "知行", "星辰", "木子", "青柠")
_NAME_TAIL = ("研究所", "小课堂", "笔记", "说", "频道", "工作室", "学院", "夜话", "实验室", "讲堂")


@dataclass
class Catalog:
    """Entity tables plus the latent arrays the event simulation needs (row order = table order)."""

    cfg: SimConfig
    corpora: Corpora
    creators: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame
    live_sessions: pd.DataFrame
    kols: pd.DataFrame
    creator_fame: np.ndarray
    item_topics: np.ndarray  # (I, K) probability vectors
    item_primary: np.ndarray  # (I,) topic index
    item_quality: np.ndarray
    item_pop: np.ndarray  # popularity weight used by the platform's candidate generator
    item_kind: np.ndarray  # str
    item_creator: np.ndarray  # creator row index
    item_price: np.ndarray  # NaN for free kinds
    item_duration: np.ndarray
    item_created_ms: np.ndarray
    item_promo: np.ndarray  # first promoted paid item row, -1 if none
    user_taste: np.ndarray  # (U, K)
    user_activity: np.ndarray  # mean sessions per day
    user_budget: np.ndarray  # CNY per month
    user_sensitivity: np.ndarray
    user_created_ms: np.ndarray
    user_device: np.ndarray  # str
    live_item: np.ndarray  # item rows of lives, aligned with live_sessions
    live_start_ms: np.ndarray  # -1 when not started within the horizon
    live_end_ms: np.ndarray  # end of broadcast, or horizon end when still on air, -1 when not started
    extra: dict = field(default_factory=dict)

    @property
    def item_ids(self) -> np.ndarray:
        return self.items["item_id"].to_numpy(dtype=object)

    @property
    def user_ids(self) -> np.ndarray:
        return self.users["user_id"].to_numpy(dtype=object)


def _charm_price(p: np.ndarray) -> np.ndarray:
    """Round to the prices Chinese platforms use: 9.9, 19.9, 29.9, then 39, 49 ... 199, 299."""
    p = np.maximum(p, 5.0)
    small = np.round(np.floor(p / 10.0) * 10 + 9.9, 1)
    large = np.floor(p / 10.0) * 10 + 9
    big = np.floor(p / 100.0) * 100 + 99
    return np.where(p < 35, small, np.where(p < 200, large, big)).astype(float)


def _ts(ms: np.ndarray) -> pd.Series:
    return pd.Series(pd.to_datetime(np.asarray(ms, dtype="int64"), unit="ms", utc=True))


def _pick_rows(
    rng: np.random.Generator,
    pools: dict[str, pd.DataFrame],
    topics: np.ndarray,
    used: dict[str, int],
    perms: dict[str, np.ndarray],
) -> list[tuple[pd.Series, int]]:
    """For each topic index, the next row of its pool in a seeded order; cycles, counting the rounds."""
    out = []
    for t in topics:
        name = TOPICS[t]
        pool = pools[name]
        if name not in perms:
            perms[name] = rng.permutation(len(pool))
        k = used.get(name, 0)
        used[name] = k + 1
        out.append((pool.iloc[perms[name][k % len(pool)]], k // len(pool)))
    return out


def build_catalog(cfg: SimConfig) -> Catalog:
    """Draw every entity of the platform for ``cfg`` (deterministic)."""
    corp = load_corpora(cfg.use_shared_data)
    ss = np.random.SeedSequence([cfg.seed, 20261001])
    rng = np.random.default_rng(ss.spawn(1)[0])
    K = len(TOPICS)
    start_ms, end_ms = cfg.start_ms, cfg.end_ms

    # ---- creators: 1-3 topics, fame (heavy-tailed)
    C = cfg.n_creators
    n_topics = rng.choice([1, 2, 3], size=C, p=[0.45, 0.4, 0.15])
    creator_topics = [rng.choice(K, size=k, replace=False) for k in n_topics]
    fame = rng.lognormal(0.0, 1.0, size=C)
    fame = fame / fame.max()
    creator_created = start_ms - rng.integers(30, 1500, size=C) * DAY_MS - rng.integers(0, DAY_MS, size=C)
    names = [
        f"{_NAME_HEAD[rng.integers(len(_NAME_HEAD))]}{TOPIC_LABELS_ZH[TOPICS[ct[0]]]}"
        f"{_NAME_TAIL[rng.integers(len(_NAME_TAIL))]}{i + 1:03d}"
        for i, ct in enumerate(creator_topics)
    ]
    creators = pd.DataFrame(
        {
            "creator_id": [f"c{i + 1:04d}" for i in range(C)],
            "name": names,
            "topics": [[TOPICS[t] for t in ct] for ct in creator_topics],
            "created_at": _ts(creator_created),
        }
    )[list(CREATOR_COLUMNS)]

    # ---- item kinds and owners
    N = cfg.n_items
    n_paid = max(C // 3 + 1, int(round(cfg.paid_share * N)))
    n_live = max(2, int(round(cfg.live_share * N)))
    n_video = N - n_paid - n_live
    if n_video < 2:
        raise ValueError(f"SimConfig.n_items={N} leaves no room for short videos")
    paid_kinds = rng.choice(list(PAID_KIND_MIX), size=n_paid, p=list(PAID_KIND_MIX.values()))
    kinds = np.concatenate([paid_kinds, np.full(n_video, "short_video"), np.full(n_live, "live")]).astype(
        object
    )
    w = np.sqrt(fame) + 0.05
    w = w / w.sum()
    first = rng.permutation(C)[: min(C, n_paid)]  # most creators own at least one paid item
    paid_owner = np.concatenate([first, rng.choice(C, size=n_paid - len(first), p=w)])
    owner = np.concatenate(
        [
            paid_owner,
            rng.choice(np.unique(paid_owner), size=n_video + n_live, p=_renorm(w[np.unique(paid_owner)])),
        ]
    )
    # topic: one of the owner's topics, the first more often
    primary = np.empty(N, dtype=np.int64)
    for i in range(N):
        ct = creator_topics[owner[i]]
        primary[i] = ct[0] if (len(ct) == 1 or rng.random() < 0.6) else ct[rng.integers(1, len(ct))]
    topic_vec = 0.3 * rng.dirichlet(np.full(K, 0.3), size=N)
    topic_vec[np.arange(N), primary] += 0.7
    quality = rng.normal(0.0, 1.0, size=N)
    pop = np.exp(0.6 * quality + 1.5 * fame[owner]) * rng.lognormal(0, 0.5, size=N)

    # ---- titles, prices, durations, timestamps
    titles = np.empty(N, dtype=object)
    descs = np.empty(N, dtype=object)
    tags: list[list[str]] = [[] for _ in range(N)]
    price = np.full(N, np.nan)
    duration = np.full(N, np.nan)
    created = np.zeros(N, dtype=np.int64)
    used: dict[str, int] = {}
    perms: dict[str, np.ndarray] = {}
    paid_rows = np.arange(n_paid)
    picks = _pick_rows(rng, corp.course_titles, primary[paid_rows], used, perms)
    kind_suffix = {
        "column": "｜专栏",
        "ebook": "（电子书）",
        "audio": "·音频课",
        "course": "",
        "membership": "",
    }
    for i, (row, rnd) in zip(paid_rows, picks, strict=True):
        k = kinds[i]
        base = str(row["title"]).strip()
        if rnd:
            base = f"{base}（第{rnd + 1}期）"
        topic_zh = TOPIC_LABELS_ZH[TOPICS[primary[i]]]
        if k == "membership":
            titles[i] = f"{names[owner[i]]}·{topic_zh}会员"
            price_i = rng.lognormal(np.log(39), 0.5)
        else:
            titles[i] = base + kind_suffix[k]
            usd = row["price_usd"]
            if k == "course":
                price_i = usd * USD_TO_CNY if usd == usd and usd > 0 else rng.lognormal(np.log(199), 0.6)
                hours = row["hours"]
                duration[i] = (hours if hours == hours and hours > 0 else rng.uniform(2, 30)) * 3600
            elif k == "column":
                price_i = rng.lognormal(np.log(99), 0.5)
            elif k == "ebook":
                price_i = rng.lognormal(np.log(29), 0.5)
            else:
                price_i = rng.lognormal(np.log(99), 0.6)
                duration[i] = rng.integers(10, 100) * rng.uniform(600, 1500)
        price[i] = price_i
        parts = [p for p in (str(row.get("org") or ""), str(row.get("level") or "")) if p and p != "nan"]
        descs[i] = f"{topic_zh}·{' · '.join(parts) if parts else '精品内容'}（{row['origin']}）"
        tags[i] = [TOPICS[primary[i]], topic_zh, k]
        created[i] = start_ms - rng.integers(5, 400) * DAY_MS - rng.integers(0, DAY_MS)
    price[:n_paid] = _charm_price(price[:n_paid])
    duration = np.where(np.isnan(duration), np.nan, np.round(duration))

    # paid items of each creator, for promotion links
    paid_by_creator: dict[int, np.ndarray] = {}
    for c in np.unique(paid_owner):
        paid_by_creator[int(c)] = paid_rows[paid_owner == c]
    promotes: list[list[int]] = [[] for _ in range(N)]
    video_rows = np.arange(n_paid, n_paid + n_video)
    vpicks = _pick_rows(rng, corp.captions, primary[video_rows], {}, {})
    for i, (row, _rnd) in zip(video_rows, vpicks, strict=True):
        titles[i] = str(row["caption"])
        descs[i] = str(row["cover"]) or None
        tags[i] = [TOPICS[primary[i]], *list(row["hashtags"])]
        duration[i] = float(np.round(np.clip(rng.lognormal(np.log(45), 0.7), 8, 600)))
        created[i] = start_ms + int(rng.uniform(-60, cfg.days - 0.5) * DAY_MS)
        own = paid_by_creator[int(owner[i])]
        if rng.random() < 0.75:
            promotes[i] = [int(rng.choice(own))]

    # ---- lives: schedule in the evening, some still on air or upcoming at the horizon's end
    live_rows = np.arange(n_paid + n_video, N)
    sched = (
        start_ms
        + rng.integers(0, cfg.days + 2, size=n_live) * DAY_MS
        + (rng.integers(18, 22, size=n_live) * 60 + rng.choice([0, 30], size=n_live)) * 60_000
        - 8 * 3_600_000
    )
    length = rng.integers(60, 181, size=n_live) * 60_000
    started = sched + rng.integers(0, 10, size=n_live) * 60_000
    ended = started + length
    state = np.where(
        started >= end_ms,
        LiveState.SCHEDULED.value,
        np.where(ended > end_ms, LiveState.LIVE.value, LiveState.ENDED.value),
    )
    for j, i in enumerate(live_rows):
        own = paid_by_creator[int(owner[i])]
        k = int(min(len(own), rng.integers(1, 4)))
        promotes[i] = [int(x) for x in rng.choice(own, size=k, replace=False)]
        titles[i] = f"直播｜{titles[promotes[i][0]]}"
        descs[i] = f"{names[owner[i]]} 的直播间"
        tags[i] = [TOPICS[primary[i]], "直播"]
        duration[i] = float(length[j] // 1000)
        created[i] = sched[j] - rng.integers(1, 4) * DAY_MS
    live_sessions = pd.DataFrame(
        {
            "item_id": None,
            "scheduled_start": _ts(sched),
            "started_at": _ts(np.where(state == "scheduled", 0, started)),
            "ended_at": _ts(np.where(state == "ended", ended, 0)),
            "state": state,
        }
    )
    live_sessions.loc[state == "scheduled", "started_at"] = pd.NaT
    live_sessions.loc[state != "ended", "ended_at"] = pd.NaT

    created = np.maximum(created, creator_created[owner] + DAY_MS)  # nothing older than its creator
    item_ids = np.array([f"i{i + 1:05d}" for i in range(N)], dtype=object)
    live_sessions["item_id"] = item_ids[live_rows]
    creator_ids = creators["creator_id"].to_numpy(dtype=object)
    items = pd.DataFrame(
        {
            "item_id": item_ids,
            "kind": kinds,
            "title": titles,
            "description": descs,
            "tags": tags,
            "creator_id": creator_ids[owner],
            "price": price,
            "currency": np.where(np.isnan(price), None, "CNY").astype(object),
            "duration_s": duration,
            "created_at": _ts(created),
            "promotes": [[item_ids[j] for j in p] for p in promotes],
        }
    )[list(ITEM_COLUMNS)]
    assert set(items["kind"]) <= {k.value for k in ItemKind}
    promo_first = np.array([p[0] if p else -1 for p in promotes], dtype=np.int64)

    # ---- users
    U = cfg.n_users
    taste = 0.9 * rng.dirichlet(np.full(K, 0.25), size=U) + 0.1 / K
    activity = cfg.sessions_per_day * rng.lognormal(-0.32, 0.8, size=U)
    age = rng.choice(["18-24", "25-34", "35-44", "45+"], size=U, p=[0.3, 0.38, 0.2, 0.12])
    budget = rng.lognormal(np.log(150), 0.9, size=U) * np.where(age == "18-24", 0.6, 1.0)
    sens = rng.lognormal(0.0, 0.35, size=U)
    device = rng.choice(["android", "ios", "mini_program", "web"], size=U, p=[0.55, 0.3, 0.1, 0.05]).astype(
        object
    )
    u_created = np.where(
        rng.random(U) < 0.1,
        start_ms + rng.uniform(0, cfg.days, size=U) * DAY_MS,
        start_ms - rng.uniform(1, 720, size=U) * DAY_MS,
    ).astype(np.int64)
    tier = rng.choice([1, 2, 3, 4, 5], size=U, p=[0.2, 0.3, 0.25, 0.15, 0.1])
    gender = rng.choice(["f", "m", "unknown"], size=U, p=[0.47, 0.45, 0.08])
    country = rng.choice(["CN", "SG", "MY", "US", "CA"], size=U, p=[0.92, 0.03, 0.02, 0.02, 0.01])
    signup = rng.choice(
        ["organic", "kol", "ad", "referral", "other_platform"], size=U, p=[0.45, 0.15, 0.2, 0.1, 0.1]
    )
    users = pd.DataFrame(
        {
            "user_id": [f"u{i + 1:06d}" for i in range(U)],
            "created_at": _ts(u_created),
            "attributes": [
                {
                    "city_tier": int(a),
                    "age_band": str(b),
                    "device": str(c),
                    "gender": str(d),
                    "country": str(e),
                    "signup_channel": str(f),
                }
                for a, b, c, d, e, f in zip(tier, age, device, gender, country, signup, strict=True)
            ],
        }
    )[list(USER_COLUMNS)]

    n_kol = max(3, C // 10)
    kols = pd.DataFrame(
        {
            "kol_id": [f"kol_{i + 1:03d}" for i in range(n_kol)],
            "topic": [TOPICS[t] for t in rng.integers(0, K, size=n_kol)],
        }
    )

    live_start = np.where(state == "scheduled", -1, started).astype(np.int64)
    live_end = np.where(state == "scheduled", -1, np.minimum(ended, end_ms)).astype(np.int64)
    return Catalog(
        cfg,
        corp,
        creators,
        items,
        users,
        live_sessions,
        kols,
        fame,
        topic_vec,
        primary,
        quality,
        pop,
        kinds,
        owner,
        price,
        duration,
        created,
        promo_first,
        taste,
        activity,
        budget,
        sens,
        u_created,
        device,
        live_rows,
        live_start,
        live_end,
    )


def _renorm(w: np.ndarray) -> np.ndarray:
    return w / w.sum()
