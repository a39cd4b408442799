"""User profiles as a service: full build, incremental updates, segments (learnt and rule-based).

The one module of ``knowcast.profiles`` that touches the store. Each ``user_profiles`` row holds:

* ``interests``: the user's interest vector ``{feature: weight}`` (item tags, and ``topic:<words>`` when the
  catalog was tagged), undecayed, as of the user's last interest event; readers decay it to "now";
* ``stats``: ``activity_state`` (the running totals of :class:`ActivityProfiler`), ``t_interest`` (when
  the interest vector was last moved) and ``profile`` (the derived activity / RFM / channel / hour / device
  values shown to people);
* ``last_ts``: epoch ms of the newest event applied to this row.

Incremental rule (no rebuild): a user's new events are those with ``ts > last_ts``. :func:`update_profiles`
applies them for everyone, reading only events newer than the global watermark ``kv['profiles.watermark']``;
:func:`get_profile` applies them for one user before answering, so a profile reflects events ingested a
moment ago. Only the rows of users with new events are written. Events that arrive late, with a time
older than the user's ``last_ts``, are not applied until the next ``profiles build``.

Population-relative values (R/F/M quintiles, spend and activity levels) of rows updated incrementally are
scored against the breakpoints stored by the last build (``kv['profiles.model']['thresholds']``), so one
user's update never re-scores the others. Segments are learnt by ``build`` (KMeans with k by silhouette, or
HDBSCAN) and keep their members until the next build; rule segments are materialised into
``segment_members`` when created and at every build.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine, and_, delete, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from knowcast.profiles.activity import ActivityProfiler
from knowcast.profiles.interest import InterestProfiler, ItemFeatures
from knowcast.profiles.segments import RuleSegment, Segmenter, segment_features
from knowcast.store.models import Event, Item, KeyValue, Segment, SegmentMember, User, UserProfile
from knowcast.store.models import ItemFeatures as ItemFeaturesRow

__all__ = [
    "NotFound",
    "Conflict",
    "RuleError",
    "BuildReport",
    "build_profiles",
    "update_profiles",
    "get_profile",
    "list_segments",
    "get_segment",
    "segment_members",
    "create_rule_segment",
    "refresh_rule_segments",
]

MODEL_KEY = "profiles.model"
WATERMARK_KEY = "profiles.watermark"
DEFAULTS: dict[str, Any] = {"alpha": 0.1, "half_life_days": 30.0, "tz_offset_hours": 8.0, "topic_weight": 0.5}
_MS_PER_DAY = 86_400_000
_EVENT_COLS = ["user_id", "item_id", "type", "ts", "watch_ratio", "amount", "channel", "device"]

Progress = Callable[[str, int, int], None]


class NotFound(LookupError):
    """Unknown user or segment (HTTP 404)."""


class Conflict(RuntimeError):
    """A segment with that name exists already (HTTP 409)."""


class RuleError(ValueError):
    """A bad rule or parameter (HTTP 422); ``field`` names where, e.g. ``rule.all[0].op``."""

    def __init__(self, message: str, field: str = "rule") -> None:
        super().__init__(message)
        self.field = field


# ------------------------------------------------------------------------------------------------ helpers
def _ins(conn: Any):  # type: ignore[no-untyped-def]
    return (postgresql if conn.dialect.name == "postgresql" else sqlite).insert


def _kv_get(conn: Any, key: str) -> dict[str, Any] | None:
    return conn.execute(select(KeyValue.value).where(KeyValue.key == key)).scalar()


def _kv_put(conn: Any, key: str, value: dict[str, Any]) -> None:
    stmt = _ins(conn)(KeyValue).values(key=key, value=value)
    conn.execute(stmt.on_conflict_do_update(index_elements=["key"], set_={"value": value}))


def _events(conn: Any, where: Any = None, join_profiles: bool = False) -> pd.DataFrame:
    cols = [getattr(Event, c) for c in _EVENT_COLS]
    stmt = select(*cols)
    if join_profiles:
        stmt = stmt.outerjoin(UserProfile, UserProfile.user_id == Event.user_id)
    if where is not None:
        stmt = stmt.where(where)
    rows = conn.execute(stmt.order_by(Event.ts, Event.id)).all()
    return pd.DataFrame(rows, columns=_EVENT_COLS)


def _item_space(
    conn: Any, item_ids: Sequence[str] | None, extra: Sequence[str], topic_weight: float
) -> ItemFeatures:
    """Item vectors over tags (and ``topic:<words>`` shares when the catalog was tagged).

    Built for just the items a batch touches; ``extra`` adds the features stored profiles already hold, so
    their weights survive (an item's vector is normalised on its own, whatever else is in the space).
    """
    stmt = select(Item.id, Item.tags, ItemFeaturesRow.topics).outerjoin(
        ItemFeaturesRow, ItemFeaturesRow.item_id == Item.id
    )
    if item_ids is not None:
        ids = sorted({str(i) for i in item_ids if i is not None and i == i})
        rows = []
        for lo in range(0, len(ids), 5000):
            rows += conn.execute(stmt.where(Item.id.in_(ids[lo:lo + 5000]))).all()
    else:
        rows = conn.execute(stmt).all()
    meta = _kv_get(conn, "content.models") or {}
    labels = {str(t["id"]): "topic:" + t["label"] for t in meta.get("topics", [])}
    vecs: list[dict[str, float]] = []
    names: set[str] = set(extra)
    for _, tags, topics in rows:
        v: dict[str, float] = {}
        for t in tags or []:
            if str(t).strip():
                v[str(t)] = 1.0
        for k, w in (topics or {}).items():
            if topic_weight > 0 and str(k) in labels:
                v[labels[str(k)]] = topic_weight * float(w)
        vecs.append(v)
        names |= set(v)
    cols = sorted(names)
    col = {n: j for j, n in enumerate(cols)}
    m = np.zeros((len(rows), len(cols)))
    for i, v in enumerate(vecs):
        for n, w in v.items():
            m[i, col[n]] = w
    return ItemFeatures([r[0] for r in rows], m, cols)


def _py(v: Any) -> Any:
    """Plain JSON-safe Python values (numpy scalars out, NaN/inf -> None)."""
    if isinstance(v, dict):
        return {str(k): _py(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_py(x) for x in v]
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and not np.isfinite(v):
        return None
    return v


def _profile_rows(
    interest: InterestProfiler, activity: ActivityProfiler, table: pd.DataFrame, users: Sequence[Any],
) -> list[dict[str, Any]]:
    st_i = interest.state() if hasattr(interest, "U_") else {}
    st_a = activity.state_records()
    now = datetime.now(UTC)
    out = []
    for u in users:
        vec, t_int = st_i.get(u, ({}, None))
        act = st_a.get(u, {})
        prof = table.loc[u].to_dict() if u in table.index else {}
        out.append({
            "user_id": str(u),
            "interests": {k: round(w, 6) for k, w in vec.items()},
            "stats": _py({"t_interest": t_int, "activity_state": act, "profile": prof}),
            "last_ts": int(act["last_ts"]) if "last_ts" in act else None,
            "updated_at": now,
        })
    return out


def _decayed(interests: Mapping[str, float], t_interest: float | None, as_of: float, half_life: float | None
             ) -> dict[str, float]:
    if not interests:
        return {}
    f = 1.0
    if half_life and t_interest is not None:
        f = float(2.0 ** (-max(as_of - t_interest, 0.0) / (half_life * _MS_PER_DAY)))
    return {k: w * f for k, w in interests.items()}


# ------------------------------------------------------------------------------------------------ build
@dataclass
class BuildReport:
    n_events: int = 0
    n_users: int = 0
    n_features: int = 0
    method: str = "kmeans"
    k: int = 0
    silhouette: float | None = None
    scores: dict[int, float] = field(default_factory=dict)
    segments: list[dict[str, Any]] = field(default_factory=list)
    rule_segments: int = 0
    watermark: int | None = None
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return _py(asdict(self))


def build_profiles(
    engine: Engine,
    *,
    method: str = "kmeans",
    k_range: tuple[int, int] = (2, 8),
    alpha: float = DEFAULTS["alpha"],
    half_life_days: float | None = DEFAULTS["half_life_days"],
    tz_offset_hours: float = DEFAULTS["tz_offset_hours"],
    topic_weight: float = DEFAULTS["topic_weight"],
    min_cluster_size: int | None = None,
    random_state: int = 0,
    progress: Progress | None = None,
) -> BuildReport:
    """Rebuild every profile from all events, learn segments, refresh rule segments, set the watermark."""
    if method not in ("kmeans", "hdbscan"):
        raise RuleError(f"method must be 'kmeans' or 'hdbscan', got {method!r}", "method")
    if not (0 < alpha <= 1):
        raise RuleError(f"alpha must be in (0, 1], got {alpha}", "alpha")
    t0 = time.perf_counter()
    step = progress or (lambda stage, done, total: None)
    rep = BuildReport(method=method)
    step("load events", 0, 1)
    with engine.connect() as conn:
        ev = _events(conn, Event.user_id.is_not(None))
        items = _item_space(conn, None, (), topic_weight)
    step("load events", 1, 1)
    rep.n_events = len(ev)
    if ev.empty:
        raise NotFound("no events to build profiles from: import events first")
    as_of = float(ev["ts"].max())
    step("interests", 0, len(ev))
    interest = InterestProfiler(items, alpha=alpha, half_life_days=half_life_days).fit(ev)
    step("interests", len(ev), len(ev))
    step("activity", 0, len(ev))
    activity = ActivityProfiler(tz_offset_hours=tz_offset_hours).fit(ev)
    table = activity.table(as_of=as_of)
    step("activity", len(ev), len(ev))
    users = list(table.index)
    rep.n_users = len(users)
    rep.n_features = len(items.feature_names)
    vectors = interest.vectors(as_of=as_of).reindex(users).fillna(0.0)

    step("segments", 0, 1)
    assign: pd.Series | None = None
    if len(users) >= 3:
        x = segment_features(vectors, table)
        seg = Segmenter(
            method=method, k_range=k_range, random_state=random_state,
            min_cluster_size=min_cluster_size or max(5, len(users) // 50),
        ).fit(x)
        assign = seg.assignments()
        rep.k = int(seg.k_)
        rep.silhouette = None if not np.isfinite(seg.silhouette_) else round(float(seg.silhouette_), 4)
        rep.scores = {int(k): round(float(v), 4) for k, v in seg.scores_.items()}
        rep.segments = seg.describe(vectors, table)
    step("segments", 1, 1)

    step("store", 0, len(users))
    rows = _profile_rows(interest, activity, table, users)
    seg_ids = {}
    if assign is not None:
        seg_ids = {u: _cluster_id(int(s)) for u, s in assign.items()}
    for r, u in zip(rows, users, strict=True):
        r["segment"] = seg_ids.get(u)
    thresholds = ActivityProfiler.thresholds(table)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(delete(UserProfile))
        for lo in range(0, len(rows), 2000):
            conn.execute(insert(UserProfile), rows[lo:lo + 2000])
            step("store", min(lo + 2000, len(rows)), len(users))
        old = [s for (s,) in conn.execute(select(Segment.id).where(Segment.kind == "cluster"))]
        if old:
            conn.execute(delete(SegmentMember).where(SegmentMember.segment_id.in_(old)))
            conn.execute(delete(Segment).where(Segment.id.in_(old)))
        for d in rep.segments:
            sid = _cluster_id(d["segment"])
            d["id"] = sid
            conn.execute(insert(Segment).values(
                id=sid, name=_cluster_name(d), description=d["description"], kind="cluster",
                definition=_py({"method": method, **{k: v for k, v in d.items() if k != "description"}}),
                size=d["size"], updated_at=now,
            ))
        if assign is not None:
            mem = [{"segment_id": _cluster_id(int(s)), "user_id": str(u)} for u, s in assign.items()]
            for lo in range(0, len(mem), 5000):
                conn.execute(insert(SegmentMember), mem[lo:lo + 5000])
        _kv_put(conn, MODEL_KEY, _py({
            "built_at": now.isoformat(timespec="seconds"), "alpha": alpha, "half_life_days": half_life_days,
            "tz_offset_hours": tz_offset_hours, "topic_weight": topic_weight, "method": method, "k": rep.k,
            "silhouette": rep.silhouette, "n_users": rep.n_users, "n_events": rep.n_events,
            "thresholds": thresholds, "as_of": int(as_of),
        }))
        _kv_put(conn, WATERMARK_KEY, {"ts": int(as_of), "at": now.isoformat(timespec="seconds")})
    rep.watermark = int(as_of)
    rep.rule_segments = refresh_rule_segments(engine)
    rep.seconds = round(time.perf_counter() - t0, 3)
    return rep


def _cluster_id(seg: int) -> str:
    return "cluster-outliers" if seg < 0 else f"cluster-{seg}"


def _cluster_name(d: Mapping[str, Any]) -> str:
    if d["segment"] < 0:
        return "unassigned (outliers)"
    tops = ", ".join(d.get("top_interests") or []) or "no clear interest"
    spend = d.get("spend_level", "?")
    return f"{tops} ({spend if spend == 'no spend' else spend + ' spend'})"


# ------------------------------------------------------------------------------------------------ update
@dataclass
class UpdateReport:
    n_events: int = 0
    n_users: int = 0
    new_users: int = 0
    watermark: int | None = None
    seconds: float = 0.0


def _params(conn: Any) -> dict[str, Any]:
    return {**DEFAULTS, **(_kv_get(conn, MODEL_KEY) or {})}


def _apply(conn: Any, ev: pd.DataFrame, params: Mapping[str, Any], as_of: float) -> tuple[int, int]:
    """Apply new events to the stored rows of their users; write only those rows. (users, new users)"""
    users = list(pd.unique(ev["user_id"]))
    stored = {
        r.user_id: r
        for lo in range(0, len(users), 5000)
        for r in conn.execute(select(UserProfile).where(UserProfile.user_id.in_(users[lo:lo + 5000])))
    }
    extra = sorted({k for r in stored.values() for k in (r.interests or {})})
    items = _item_space(conn, list(ev["item_id"].dropna().unique()), extra, params["topic_weight"])
    interest = InterestProfiler(items, alpha=params["alpha"], half_life_days=params["half_life_days"])
    interest.set_state(
        users,
        [dict(stored[u].interests or {}) if u in stored else {} for u in users],
        [(stored[u].stats or {}).get("t_interest") if u in stored else None for u in users],
    )
    interest.update(ev)
    activity = ActivityProfiler(tz_offset_hours=params["tz_offset_hours"]).load_state(
        {u: (stored[u].stats or {}).get("activity_state", {}) for u in users if u in stored
         and (stored[u].stats or {}).get("activity_state")}
    )
    activity.update(ev)
    table = activity.table(as_of=as_of, reference=params.get("thresholds") or None)
    rows = _profile_rows(interest, activity, table, users)
    new = 0
    for r in rows:
        old = stored.get(r["user_id"])
        if old is None:
            new += 1
            r["segment"] = None
            conn.execute(insert(UserProfile).values(**r))
        else:
            # optimistic: only if nobody applied these events meanwhile (same last_ts as read)
            lt = UserProfile.last_ts
            cond = lt.is_(None) if old.last_ts is None else lt == old.last_ts
            conn.execute(
                update(UserProfile).where(and_(UserProfile.user_id == r["user_id"], cond)).values(
                    interests=r["interests"], stats=r["stats"], last_ts=r["last_ts"],
                    updated_at=r["updated_at"],
                )
            )
    return len(users), new


def update_profiles(engine: Engine, progress: Progress | None = None) -> UpdateReport:
    """Apply every event newer than the watermark (and than its user's ``last_ts``); no rebuild."""
    t0 = time.perf_counter()
    rep = UpdateReport()
    with engine.begin() as conn:
        params = _params(conn)
        wm = (_kv_get(conn, WATERMARK_KEY) or {}).get("ts")
        cond = and_(
            Event.user_id.is_not(None),
            or_(UserProfile.last_ts.is_(None), Event.ts > UserProfile.last_ts),
        )
        if wm is not None:
            cond = and_(cond, Event.ts > int(wm))
        ev = _events(conn, cond, join_profiles=True)
        rep.watermark = wm
        if ev.empty:
            rep.seconds = round(time.perf_counter() - t0, 3)
            return rep
        as_of = float(ev["ts"].max())
        if progress:
            progress("update", 0, len(ev))
        rep.n_users, rep.new_users = _apply(conn, ev, params, as_of)
        rep.n_events = len(ev)
        rep.watermark = int(max(as_of, wm or 0))
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        _kv_put(conn, WATERMARK_KEY, {"ts": rep.watermark, "at": stamp})
        if progress:
            progress("update", len(ev), len(ev))
    rep.seconds = round(time.perf_counter() - t0, 3)
    return rep


def _user_exists(conn: Any, user_id: str) -> bool:
    if conn.execute(select(UserProfile.user_id).where(UserProfile.user_id == user_id)).first():
        return True
    if conn.execute(select(User.id).where(User.id == user_id)).first():
        return True
    return conn.execute(select(Event.id).where(Event.user_id == user_id).limit(1)).first() is not None


def get_profile(engine: Engine, user_id: str, top: int = 10, apply_new: bool = True) -> dict[str, Any]:
    """One user's profile, after applying the user's events newer than the stored ``last_ts``."""
    applied = 0
    with engine.begin() as conn:
        if not _user_exists(conn, user_id):
            raise NotFound(f"unknown user_id {user_id!r}")
        params = _params(conn)
        row = conn.execute(select(UserProfile).where(UserProfile.user_id == user_id)).first()
        if apply_new:
            cond = Event.user_id == user_id
            if row is not None and row.last_ts is not None:
                cond = and_(cond, Event.ts > int(row.last_ts))
            ev = _events(conn, cond)
            if not ev.empty:
                wm = (_kv_get(conn, WATERMARK_KEY) or {}).get("ts") or 0
                _apply(conn, ev, params, max(float(ev["ts"].max()), float(wm)))
                applied = len(ev)
                row = conn.execute(select(UserProfile).where(UserProfile.user_id == user_id)).first()
        seg_name = None
        if row is not None and row.segment:
            seg_name = conn.execute(select(Segment.name).where(Segment.id == row.segment)).scalar()
        wm = (_kv_get(conn, WATERMARK_KEY) or {}).get("ts")
    if row is None:
        return {"user_id": user_id, "profiled": False, "applied_events": 0, "interests": [],
                "activity": None, "rfm": None, "channels": None, "hours": None, "device": None,
                "segment": None, "last_ts": None, "updated_at": None}
    return _profile_dict(row, params, top, applied, seg_name, wm)


def _profile_dict(
    p: Any, params: Mapping[str, Any], top: int, applied: int, seg_name: str | None, wm: Any
) -> dict[str, Any]:
    stats = p.stats or {}
    prof = stats.get("profile", {})
    act = stats.get("activity_state", {})
    as_of = float(max(wm or 0, p.last_ts or 0))
    dec = _decayed(p.interests or {}, stats.get("t_interest"), as_of, params.get("half_life_days"))
    tops = sorted(((k, w) for k, w in dec.items() if w > 0), key=lambda kv: (-kv[1], kv[0]))[:top]

    def counts(prefix: str) -> dict[str, int]:
        return {k[len(prefix):]: int(v) for k, v in sorted(act.items()) if k.startswith(prefix) and v}

    return {
        "user_id": p.user_id,
        "profiled": True,
        "applied_events": applied,
        "segment": {"id": p.segment, "name": seg_name} if p.segment else None,
        "interests": [{"tag": k, "weight": round(w, 4)} for k, w in tops],
        "activity": {k: prof.get(k) for k in (
            "n_events", "n_active_days", "first_seen_days_ago", "recency_days", "events_per_day",
            "streak_days", "longest_streak_days", "activity_level")},
        "rfm": {k: prof.get(k) for k in (
            "R", "F", "M", "n_purchases", "spend", "purchase_recency_days", "spend_level")},
        "channels": {"preferred": prof.get("preferred_channel"), "counts": counts("channel:")},
        "hours": {"preferred": prof.get("preferred_hour"), "counts": counts("hour:"),
                  "tz_offset_hours": params.get("tz_offset_hours")},
        "device": {"preferred": prof.get("device"), "counts": counts("device:")},
        "event_types": counts("type:"),
        "last_ts": p.last_ts,
        "updated_at": p.updated_at.isoformat() if p.updated_at else None,
    }


# ------------------------------------------------------------------------------------------------ segments
def _segment_dict(s: Any) -> dict[str, Any]:
    return {"segment_id": s.id, "name": s.name, "kind": s.kind, "size": s.size, "description": s.description,
            "definition": s.definition, "updated_at": s.updated_at.isoformat() if s.updated_at else None}


def list_segments(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(select(Segment).order_by(Segment.kind, Segment.id)).all()
    return [_segment_dict(r) for r in rows]


def _segment_or_404(conn: Any, segment_id: str) -> Any:
    row = conn.execute(select(Segment).where(Segment.id == segment_id)).first()
    if row is None:
        raise NotFound(f"unknown segment_id {segment_id!r}")
    return row


def get_segment(engine: Engine, segment_id: str, top: int = 5) -> dict[str, Any]:
    """The segment and the profile of its members: top interests (by lift), spend, activity, channels."""
    with engine.connect() as conn:
        seg = _segment_or_404(conn, segment_id)
        members = select(SegmentMember.user_id).where(SegmentMember.segment_id == segment_id)
        rows = conn.execute(
            select(UserProfile.interests, UserProfile.stats).where(UserProfile.user_id.in_(members))
        ).all()
        pop = conn.execute(select(func.count()).select_from(UserProfile)).scalar() or 0
        # population mean interest for the lift (one pass over interests; cheap next to the members)
        pop_sum: dict[str, float] = {}
        for (interests,) in conn.execute(select(UserProfile.interests)):
            for k, w in (interests or {}).items():
                if w > 0:
                    pop_sum[k] = pop_sum.get(k, 0.0) + w
    out = _segment_dict(seg)
    n = len(rows)
    seg_sum: dict[str, float] = {}
    prof = []
    for interests, stats in rows:
        for k, w in (interests or {}).items():
            if w > 0:
                seg_sum[k] = seg_sum.get(k, 0.0) + w
        prof.append((stats or {}).get("profile", {}))
    tot = sum(seg_sum.values()) or 1.0
    lift = {
        k: (v / max(n, 1)) / (pop_sum.get(k, 0.0) / max(pop, 1)) for k, v in seg_sum.items()
        if pop_sum.get(k) and v / tot >= 0.02
    }
    tops = sorted(lift, key=lambda k: (-lift[k], k))[:top]
    df = pd.DataFrame(prof)

    def col(c: str) -> pd.Series:
        return pd.to_numeric(df[c], errors="coerce") if c in df.columns else pd.Series(dtype=float)

    def dist(c: str) -> dict[str, float]:
        if c not in df.columns or df[c].dropna().empty:
            return {}
        return {str(k): round(float(v), 4) for k, v in df[c].dropna().astype(str).value_counts(normalize=True)
                .items()}

    out["profile"] = _py({
        "members_profiled": n,
        "share_of_users": round(n / pop, 4) if pop else None,
        "top_interests": [{"tag": k, "lift": round(lift[k], 3), "mean_weight": round(seg_sum[k] / n, 4)}
                          for k in tops],
        "spend": {"mean": round(float(col("spend").mean()), 2) if n else None,
                  "total": round(float(col("spend").sum()), 2),
                  "payers_share": round(float((col("n_purchases") > 0).mean()), 4) if n else None,
                  "levels": dist("spend_level")},
        "activity": {"mean_events_per_day": round(float(col("events_per_day").mean()), 3) if n else None,
                     "mean_recency_days": round(float(col("recency_days").mean()), 2) if n else None,
                     "levels": dist("activity_level")},
        "channels": dist("preferred_channel"),
        "devices": dist("device"),
    })
    return out


def segment_members(engine: Engine, segment_id: str, limit: int = 100, offset: int = 0) -> dict[str, Any]:
    with engine.connect() as conn:
        seg = _segment_or_404(conn, segment_id)
        ids = conn.execute(
            select(SegmentMember.user_id).where(SegmentMember.segment_id == segment_id)
            .order_by(SegmentMember.user_id).limit(limit).offset(offset)
        ).scalars().all()
    return {"segment_id": segment_id, "size": seg.size, "limit": limit, "offset": offset,
            "members": list(ids)}


_SPEC_PATH = re.compile(r"^spec((?:\.[A-Za-z_]+|\[\d+\])*)")


def _rule(rule: Any, name: str | None = None) -> RuleSegment:
    """Validate a rule; errors name the field as ``rule.<path>``."""
    if not isinstance(rule, Mapping):
        raise RuleError(f"rule must be an object, got {type(rule).__name__}", "rule")
    try:
        seg = RuleSegment(rule, name=name)
        _check_rule_values(rule, "spec")
    except (TypeError, ValueError) as exc:
        msg = str(exc)
        m = _SPEC_PATH.match(msg)
        fld = "rule" + (m.group(1) if m else "")
        raise RuleError(msg.replace("spec", "rule", 1) if m else msg, fld.rstrip(":")) from None
    return seg


def _check_rule_values(node: Mapping[str, Any], where: str) -> None:
    """What RuleSegment leaves to evaluation time: event types, numbers."""
    from knowcast.domain import EVENT_TYPES

    for key in ("all", "any"):
        if key in node:
            for i, child in enumerate(node[key]):
                _check_rule_values(child, f"{where}.{key}[{i}]")
            return
    if "not" in node:
        _check_rule_values(node["not"], f"{where}.not")
        return
    if "event" in node:
        types = node["event"] if isinstance(node["event"], list | tuple) else [node["event"]]
        bad = [t for t in types if t not in EVENT_TYPES]
        if bad or not types:
            raise ValueError(f"{where}.event: unknown event type(s) {bad}; expected {sorted(EVENT_TYPES)}")
        for k in ("within_days", "min_count"):
            v = node.get(k)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int | float) or v < 0):
                raise ValueError(f"{where}.{k} must be a non-negative number, got {v!r}")


def _event_types(node: Mapping[str, Any]) -> set[str]:
    out: set[str] = set()
    for key in ("all", "any"):
        for child in node.get(key, []):
            out |= _event_types(child)
    if "not" in node:
        out |= _event_types(node["not"])
    if "event" in node:
        out |= set(node["event"] if isinstance(node["event"], list | tuple) else [node["event"]])
    return out


def _materialise(conn: Any, seg: RuleSegment) -> list[str]:
    types = sorted(_event_types(seg.spec))
    ev = _events(conn, Event.type.in_(types)) if types else pd.DataFrame(columns=_EVENT_COLS)
    as_of = conn.execute(select(func.max(Event.ts))).scalar()
    prof_rows = conn.execute(select(UserProfile.user_id, UserProfile.stats)).all()
    profiles = pd.DataFrame(
        [(s or {}).get("profile", {}) for _, s in prof_rows], index=pd.Index([u for u, _ in prof_rows])
    )
    items = pd.DataFrame(conn.execute(select(Item.id, Item.kind)).all(), columns=["item_id", "kind"])
    try:
        members = seg.members(ev, profiles=profiles, items=items, as_of=as_of if as_of is not None else 0)
    except ValueError as exc:
        raise RuleError(str(exc), "rule") from None
    return sorted(str(u) for u in members)


def _segment_id(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40]
    return f"rule-{slug}" if slug else f"rule-{hashlib.sha1(name.encode()).hexdigest()[:10]}"


def create_rule_segment(
    engine: Engine, name: str, rule: Any, description: str = "", replace: bool = False
) -> dict[str, Any]:
    """Create a rule segment and materialise its members (409 when the name is taken, unless ``replace``)."""
    if not isinstance(name, str) or not name.strip():
        raise RuleError("name must be a non-empty string", "name")
    seg = _rule(rule, name)
    sid = _segment_id(name.strip())
    with engine.begin() as conn:
        existing = conn.execute(select(Segment).where(Segment.id == sid)).first()
        if existing is not None and not replace:
            raise Conflict(f"segment {sid!r} ({existing.name!r}) exists already")
        members = _materialise(conn, seg)
        if existing is not None:
            conn.execute(delete(SegmentMember).where(SegmentMember.segment_id == sid))
            conn.execute(delete(Segment).where(Segment.id == sid))
        conn.execute(insert(Segment).values(
            id=sid, name=name.strip(), kind="rule", definition=dict(rule), size=len(members),
            description=description or f"rule: {_describe_rule(rule)}", updated_at=datetime.now(UTC),
        ))
        for lo in range(0, len(members), 5000):
            conn.execute(insert(SegmentMember),
                         [{"segment_id": sid, "user_id": u} for u in members[lo:lo + 5000]])
        row = conn.execute(select(Segment).where(Segment.id == sid)).first()
    return _segment_dict(row)


def refresh_rule_segments(engine: Engine) -> int:
    """Re-materialise every rule segment (events since it was created count now)."""
    with engine.begin() as conn:
        segs = conn.execute(select(Segment).where(Segment.kind == "rule")).all()
        for s in segs:
            members = _materialise(conn, RuleSegment(s.definition, name=s.name))
            conn.execute(delete(SegmentMember).where(SegmentMember.segment_id == s.id))
            for lo in range(0, len(members), 5000):
                conn.execute(insert(SegmentMember),
                             [{"segment_id": s.id, "user_id": u} for u in members[lo:lo + 5000]])
            conn.execute(update(Segment).where(Segment.id == s.id).values(
                size=len(members), updated_at=datetime.now(UTC)))
    return len(segs)


def _describe_rule(node: Mapping[str, Any]) -> str:
    for key, word in (("all", " and "), ("any", " or ")):
        if key in node:
            return "(" + word.join(_describe_rule(c) for c in node[key]) + ")"
    if "not" in node:
        return "not " + _describe_rule(node["not"])
    if "event" in node:
        s = f"{node.get('min_count', 1)}+ {node['event']}"
        if node.get("item_kind"):
            s += f" of a {node['item_kind']}"
        if node.get("channel"):
            s += f" via {node['channel']}"
        if node.get("within_days") is not None:
            s += f" in the last {node['within_days']} days"
        return s
    return f"{node.get('profile')} {node.get('op')} {node.get('value')}"
