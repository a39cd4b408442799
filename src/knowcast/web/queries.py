"""SQL aggregates behind the dashboard pages (one small function per question a page asks).

Everything heavy is a GROUP BY in the database, bounded by a time range that an index can serve
(``ix_events_type_ts``: queries name the event types they need) or by an item/user id
(``ix_events_item_ts``, ``ix_events_user_ts``), so pages stay fast on the demo data set. Days are bucketed
in the viewer's time zone: ``(ts + offset_ms) / 86400000``. ``creator`` arguments restrict to one
creator's items (what a creator account sees).
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from sqlalchemy import Engine, text

from knowcast.domain import EVENT_TYPES
from knowcast.services.rollups import ACTIVE_TYPES, ensure_fresh

DAY_MS = 86_400_000
MONEY = ("purchase", "subscribe", "tip", "refund")
#: Rollups can be switched off (tests compare both paths; a store without migration 0003 falls back alone).
USE_ROLLUPS = True


def _rows(engine: Engine, sql: str, **params: Any) -> list[dict[str, Any]]:
    with engine.connect() as c:
        res = c.execute(text(sql), params)
        return [dict(r._mapping) for r in res]


def _in(name: str, values: tuple[str, ...] | list[str]) -> tuple[str, dict[str, Any]]:
    """``:name0, :name1, ...`` placeholders and their parameters (portable IN lists)."""
    keys = [f"{name}{i}" for i in range(len(values))]
    return ", ".join(f":{k}" for k in keys), dict(zip(keys, values, strict=True))


def _creator_clause(creator: str | None, col: str = "item_id") -> str:
    return f" AND {col} IN (SELECT id FROM items WHERE creator_id = :creator)" if creator else ""


def _rollup_days(engine: Engine, start_ms: int, end_ms: int, off_ms: int) -> tuple[int, int, int] | None:
    """(offset minutes, first day, last day) when [start, end) is whole local days and the rollups of that
    offset are current; None means "use the event log" (rollups off, missing, or a partial-day range)."""
    if not USE_ROLLUPS or off_ms % 60_000 or (start_ms + off_ms) % DAY_MS or (end_ms + off_ms) % DAY_MS:
        return None
    off_min = off_ms // 60_000
    if ensure_fresh(engine, off_min) is None:
        return None
    return off_min, (start_ms + off_ms) // DAY_MS, (end_ms + off_ms) // DAY_MS - 1


def rollups_on(engine: Engine) -> bool:
    """Whether the offset-0 rollups can answer (all-time and per-user questions use offset 0)."""
    return USE_ROLLUPS and ensure_fresh(engine, 0) is not None


#: Creator-scoped queries join from the creator's items and hide ``type`` from the planner (``type || ''``)
#: so that SQLite walks the (item_id, ts) index of those few items instead of a whole event type.
def _creator_events(creator_param: str = ":creator") -> str:
    return f"items ci CROSS JOIN events e WHERE e.item_id = ci.id AND ci.creator_id = {creator_param}"


# ----------------------------------------------------------------------------- bounds
def data_bounds(engine: Engine) -> tuple[int | None, int | None]:
    """Earliest and latest event time; per-type MIN and MAX as separate statements, so each is one seek
    at an end of the (type, ts) index (SQLite scans the range when one statement asks for both)."""
    lo, hi = None, None
    with engine.connect() as c:
        for t in ("impression", "view", "purchase", "comment", "live_join", "exposure", "click"):
            a = c.execute(text("SELECT MIN(ts) FROM events WHERE type = :t"), {"t": t}).scalar()
            if a is not None:
                b = c.execute(text("SELECT MAX(ts) FROM events WHERE type = :t"), {"t": t}).scalar()
                lo = a if lo is None else min(lo, a)
                hi = b if hi is None else max(hi, b)
    return lo, hi


def counts(engine: Engine) -> dict[str, int]:
    out = {}
    with engine.connect() as c:
        for t in ("items", "users", "creators", "comments", "experiments", "segments", "model_versions"):
            out[t] = c.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar() or 0  # noqa: S608 (fixed names)
    return out


# ----------------------------------------------------------------------------- overview
def _kpi_finish(rows: list[dict]) -> list[dict]:
    for r in rows:
        r["revenue"] = (r["gmv"] or 0) + (r["subscriptions"] or 0) + (r["tips"] or 0) - abs(r["refunds"] or 0)
        r["conversion"] = (r["paying_users"] / r["active_users"]) if r["active_users"] else 0.0
        r["day"] = int(r["day"])
    return rows


def daily_kpis(
    engine: Engine, start_ms: int, end_ms: int, off_ms: int = 0, creator: str | None = None
) -> list[dict]:
    """Per day (viewer's time zone): active users, views, watch hours, GMV, revenue by stream, payers."""
    r = None if creator else _rollup_days(engine, start_ms, end_ms, off_ms)
    if r is not None:
        o, d0, d1 = r
        sums = _rows(
            engine,
            """SELECT day, SUM(views) AS views, SUM(watch_s) / 3600.0 AS watch_hours, SUM(gmv) AS gmv,
                      SUM(sub_amount) AS subscriptions, SUM(tip_amount) AS tips, SUM(refund_amount) AS refunds
               FROM rollup_item_day WHERE off_min = :o AND day >= :d0 AND day <= :d1 GROUP BY day""",
            o=o, d0=d0, d1=d1,
        )  # fmt: skip
        users = {
            int(u["day"]): u
            for u in _rows(
                engine,
                """SELECT day, COUNT(*) AS active_users, SUM(paying) AS paying_users FROM rollup_user_day
                   WHERE off_min = :o AND day >= :d0 AND day <= :d1 GROUP BY day""",
                o=o, d0=d0, d1=d1,
            )  # fmt: skip
        }
        rows = []
        for x in sorted(sums, key=lambda x: x["day"]):
            u = users.get(int(x["day"]), {})
            money = any(x[k] for k in ("gmv", "subscriptions", "tips", "refunds"))
            if not u and not x["views"] and not money:
                continue  # only impressions/exposures that day: the event log query has no row either
            rows.append(
                {**x, "active_users": u.get("active_users", 0), "paying_users": u.get("paying_users") or 0}
            )
        return _kpi_finish(rows)
    ph, params = _in("t", ACTIVE_TYPES)
    if creator:
        src = _creator_events()
        type_col = "(e.type || '')"
    else:
        src, type_col = "events e WHERE 1 = 1", "e.type"
    sql = f"""
        SELECT (e.ts + :off) / {DAY_MS} AS day,
               COUNT(DISTINCT e.user_id) AS active_users,
               SUM(CASE WHEN e.type = 'view' THEN 1 ELSE 0 END) AS views,
               SUM(CASE WHEN e.type = 'view' THEN COALESCE(e.watch_seconds, 0) ELSE 0 END) / 3600.0
                 AS watch_hours,
               SUM(CASE WHEN e.type = 'purchase' THEN COALESCE(e.amount, 0) ELSE 0 END) AS gmv,
               SUM(CASE WHEN e.type = 'subscribe' THEN COALESCE(e.amount, 0) ELSE 0 END) AS subscriptions,
               SUM(CASE WHEN e.type = 'tip' THEN COALESCE(e.amount, 0) ELSE 0 END) AS tips,
               SUM(CASE WHEN e.type = 'refund' THEN COALESCE(e.amount, 0) ELSE 0 END) AS refunds,
               COUNT(DISTINCT CASE WHEN e.type IN ('purchase', 'subscribe', 'tip') THEN e.user_id END)
                 AS paying_users
        FROM {src} AND {type_col} IN ({ph}) AND e.ts >= :lo AND e.ts < :hi
        GROUP BY (e.ts + :off) / {DAY_MS}
        ORDER BY day
    """
    rows = _rows(engine, sql, lo=start_ms, hi=end_ms, off=off_ms, creator=creator, **params)
    return _kpi_finish(rows)


def window_totals(
    engine: Engine, start_ms: int, end_ms: int, creator: str | None = None, off_ms: int = 0
) -> dict[str, Any]:
    """Distinct users over a whole window (not the sum of daily actives)."""
    r = None if creator else _rollup_days(engine, start_ms, end_ms, off_ms)
    if r is not None:
        o, d0, d1 = r
        return _rows(
            engine,
            """SELECT COUNT(DISTINCT user_id) AS active_users,
                      COUNT(DISTINCT CASE WHEN paying = 1 THEN user_id END) AS paying_users
               FROM rollup_user_day WHERE off_min = :o AND day >= :d0 AND day <= :d1""",
            o=o, d0=d0, d1=d1,
        )[0]  # fmt: skip
    ph, params = _in("t", ACTIVE_TYPES)
    src, type_col = (_creator_events(), "(e.type || '')") if creator else ("events e WHERE 1 = 1", "e.type")
    sql = f"""
        SELECT COUNT(DISTINCT e.user_id) AS active_users,
               COUNT(DISTINCT CASE WHEN e.type IN ('purchase', 'subscribe', 'tip') THEN e.user_id END)
                 AS paying_users
        FROM {src} AND {type_col} IN ({ph}) AND e.ts >= :lo AND e.ts < :hi
    """
    return _rows(engine, sql, lo=start_ms, hi=end_ms, creator=creator, **params)[0]


def top_items(
    engine: Engine, start_ms: int, end_ms: int, creator: str | None = None, n: int = 10, off_ms: int = 0
) -> list[dict]:
    cf = "AND i.creator_id = :creator" if creator else ""
    r = _rollup_days(engine, start_ms, end_ms, off_ms)
    if r is not None:
        o, d0, d1 = r
        sql = f"""
            SELECT r.item_id, i.title, i.kind, i.creator_id, SUM(r.views) AS views,
                   SUM(r.purchases) AS orders, SUM(r.gmv) AS gmv
            FROM rollup_item_day r JOIN items i ON i.id = r.item_id
            WHERE r.off_min = :o AND r.day >= :d0 AND r.day <= :d1 AND (r.views > 0 OR r.purchases > 0) {cf}
            GROUP BY r.item_id, i.title, i.kind, i.creator_id
            ORDER BY gmv DESC, views DESC, r.item_id LIMIT :n
        """
        return _rows(engine, sql, o=o, d0=d0, d1=d1, creator=creator, n=n)
    sql = f"""
        SELECT e.item_id, i.title, i.kind, i.creator_id,
               SUM(CASE WHEN e.type = 'view' THEN 1 ELSE 0 END) AS views,
               SUM(CASE WHEN e.type = 'purchase' THEN 1 ELSE 0 END) AS orders,
               SUM(CASE WHEN e.type = 'purchase' THEN COALESCE(e.amount, 0) ELSE 0 END) AS gmv
        FROM events e JOIN items i ON i.id = e.item_id
        WHERE e.type IN ('view', 'purchase') AND e.ts >= :lo AND e.ts < :hi {cf}
        GROUP BY e.item_id, i.title, i.kind, i.creator_id
        ORDER BY gmv DESC, views DESC, e.item_id LIMIT :n
    """
    return _rows(engine, sql, lo=start_ms, hi=end_ms, creator=creator, n=n)


def top_creators(engine: Engine, start_ms: int, end_ms: int, n: int = 10, off_ms: int = 0) -> list[dict]:
    """Creators by GMV then views over the window, with their distinct audience (viewers and buyers)."""
    r = _rollup_days(engine, start_ms, end_ms, off_ms)
    if r is None:
        sql = """
            SELECT i.creator_id, c.name,
                   SUM(CASE WHEN e.type = 'view' THEN 1 ELSE 0 END) AS views,
                   SUM(CASE WHEN e.type = 'purchase' THEN COALESCE(e.amount, 0) ELSE 0 END) AS gmv,
                   COUNT(DISTINCT e.user_id) AS audience
            FROM events e JOIN items i ON i.id = e.item_id LEFT JOIN creators c ON c.id = i.creator_id
            WHERE e.type IN ('view', 'purchase') AND e.ts >= :lo AND e.ts < :hi
            GROUP BY i.creator_id, c.name ORDER BY gmv DESC, views DESC, i.creator_id LIMIT :n
        """
        return _rows(engine, sql, lo=start_ms, hi=end_ms, n=n)
    o, d0, d1 = r
    # Ranking from the rollup; the audience (distinct users: not additive over items) from the event log of
    # the top creators' items only.
    top = _rows(
        engine,
        """SELECT i.creator_id, c.name, SUM(r.views) AS views, SUM(r.gmv) AS gmv
           FROM rollup_item_day r JOIN items i ON i.id = r.item_id LEFT JOIN creators c ON c.id = i.creator_id
           WHERE r.off_min = :o AND r.day >= :d0 AND r.day <= :d1 AND (r.views > 0 OR r.purchases > 0)
           GROUP BY i.creator_id, c.name ORDER BY gmv DESC, views DESC, i.creator_id LIMIT :n""",
        o=o, d0=d0, d1=d1, n=n,
    )  # fmt: skip
    ids = [t["creator_id"] for t in top if t["creator_id"] is not None]
    aud: dict[str, int] = {}
    if ids:
        ph, params = _in("c", ids)
        aud = {
            a["creator_id"]: a["audience"]
            for a in _rows(
                engine,
                f"""SELECT ci.creator_id, COUNT(DISTINCT e.user_id) AS audience
                    FROM items ci CROSS JOIN events e
                    WHERE e.item_id = ci.id AND ci.creator_id IN ({ph})
                          AND (e.type || '') IN ('view', 'purchase') AND e.ts >= :lo AND e.ts < :hi
                    GROUP BY ci.creator_id""",
                lo=start_ms, hi=end_ms, **params,
            )  # fmt: skip
        }
    for t in top:
        t["audience"] = aud.get(t["creator_id"], 0)
    return top


def anomalies(days: list[dict], metrics: tuple[str, ...], z: float = 3.0, min_rel: float = 0.5) -> list[dict]:
    """Today's value against the previous 7 days: flagged when |z| > 3 and it moved by more than 50 %."""
    if len(days) < 4:
        return []
    today, hist = days[-1], days[-8:-1]
    out = []
    for m in metrics:
        vals = [float(d.get(m) or 0.0) for d in hist]
        mean = sum(vals) / len(vals)
        var = sum((v - mean) ** 2 for v in vals) / max(len(vals) - 1, 1)
        sd = var**0.5
        cur = float(today.get(m) or 0.0)
        zscore = (cur - mean) / sd if sd > 0 else (0.0 if cur == mean else float("inf"))
        rel = (cur - mean) / mean if mean else (0.0 if cur == 0 else float("inf"))
        if abs(zscore) > z and abs(rel) > min_rel:
            finite = [x if x not in (float("inf"), float("-inf")) else None for x in (zscore, rel)]
            out.append({"metric": m, "value": cur, "mean": mean, "z": finite[0], "change": finite[1]})
    return out


# ----------------------------------------------------------------------------- content
def filter_options(engine: Engine, creator: str | None = None) -> dict[str, list]:
    kinds = [r["kind"] for r in _rows(engine, "SELECT DISTINCT kind FROM items ORDER BY kind")]
    creators = _rows(
        engine,
        "SELECT id, name FROM creators" + (" WHERE id = :creator" if creator else "") + " ORDER BY id",
        creator=creator,
    )
    tag_count: Counter[str] = Counter()
    for r in _rows(
        engine,
        "SELECT tags FROM items" + (" WHERE creator_id = :creator" if creator else ""),
        creator=creator,
    ):
        tag_count.update(_json_list(r["tags"]))
    topics = [
        r["category"]
        for r in _rows(
            engine, "SELECT DISTINCT category FROM item_features WHERE category IS NOT NULL ORDER BY 1"
        )
    ]
    return {
        "kinds": kinds,
        "creators": creators,
        "tags": [t for t, _ in tag_count.most_common(60)],
        "topics": topics,
    }


def _json_list(v: Any) -> list[str]:
    if v is None:
        return []
    if isinstance(v, list):
        return [str(x) for x in v]
    try:
        out = json.loads(v)
    except (TypeError, ValueError):
        return []
    return [str(x) for x in out] if isinstance(out, list) else []


def list_items(
    engine: Engine,
    kind: str | None = None,
    creator: str | None = None,
    tag: str | None = None,
    topic: str | None = None,
    q: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[dict], int]:
    where, params = ["1 = 1"], {}
    if kind:
        where.append("i.kind = :kind")
        params["kind"] = kind
    if creator:
        where.append("i.creator_id = :creator")
        params["creator"] = creator
    if tag:
        # tags is a JSON list; match the quoted element so "ai" does not match "chair".
        where.append("i.tags LIKE :tag")
        params["tag"] = f'%"{tag}"%'
    if topic:
        where.append("i.id IN (SELECT item_id FROM item_features WHERE category = :topic)")
        params["topic"] = topic
    if q:
        where.append("(i.title LIKE :q OR i.id = :qid)")
        params["q"] = f"%{q}%"
        params["qid"] = q
    w = " AND ".join(where)
    total = _rows(engine, f"SELECT COUNT(*) AS n FROM items i WHERE {w}", **params)[0]["n"]
    rows = _rows(
        engine,
        f"""SELECT i.id, i.kind, i.title, i.tags, i.creator_id, c.name AS creator_name, i.price, i.currency
            FROM items i LEFT JOIN creators c ON c.id = i.creator_id WHERE {w}
            ORDER BY i.id LIMIT :limit OFFSET :offset""",
        limit=limit,
        offset=offset,
        **params,
    )
    stats = item_stats(engine, [r["id"] for r in rows])
    for r in rows:
        r["tags"] = _json_list(r["tags"])
        r.update(stats.get(r["id"], {"views": 0, "orders": 0, "gmv": 0.0}))
    return rows, total


def item_stats(engine: Engine, ids: list[str]) -> dict[str, dict]:
    if not ids:
        return {}
    ph, params = _in("i", ids)
    if rollups_on(engine):
        sql = f"""SELECT item_id, SUM(views) AS views, SUM(purchases) AS orders, SUM(gmv) AS gmv
                  FROM rollup_item_day WHERE off_min = 0 AND item_id IN ({ph}) GROUP BY item_id"""
        return {r["item_id"]: r for r in _rows(engine, sql, **params) if r["views"] or r["orders"]}
    sql = f"""
        SELECT item_id, SUM(CASE WHEN type = 'view' THEN 1 ELSE 0 END) AS views,
               SUM(CASE WHEN type = 'purchase' THEN 1 ELSE 0 END) AS orders,
               SUM(CASE WHEN type = 'purchase' THEN COALESCE(amount, 0) ELSE 0 END) AS gmv
        FROM events WHERE item_id IN ({ph}) AND type IN ('view', 'purchase') GROUP BY item_id
    """
    return {r["item_id"]: r for r in _rows(engine, sql, **params)}


def item(engine: Engine, item_id: str) -> dict | None:
    rows = _rows(
        engine,
        """SELECT i.*, c.name AS creator_name FROM items i LEFT JOIN creators c ON c.id = i.creator_id
           WHERE i.id = :id""",
        id=item_id,
    )
    if not rows:
        return None
    r = rows[0]
    r["tags"] = _json_list(r["tags"])
    feats = _rows(engine, "SELECT * FROM item_features WHERE item_id = :id", id=item_id)
    f = feats[0] if feats else None
    if f:
        for k in ("keywords", "topics", "video", "embedding"):
            if isinstance(f.get(k), str):
                try:
                    f[k] = json.loads(f[k])
                except ValueError:
                    pass
    r["features"] = f
    r["promotes"] = _rows(
        engine,
        """SELECT i.id, i.title, i.kind, i.price FROM promotes p JOIN items i ON i.id = p.item_id
           WHERE p.promoter_id = :id ORDER BY i.id""",
        id=item_id,
    )
    r["promoted_by"] = _rows(
        engine,
        """SELECT i.id, i.title, i.kind FROM promotes p JOIN items i ON i.id = p.promoter_id
           WHERE p.item_id = :id ORDER BY i.id LIMIT 50""",
        id=item_id,
    )
    return r


def similar_items(engine: Engine, it: dict, n: int = 8) -> list[dict]:
    """Nearest items: cosine of stored embeddings when content understanding has run, else tag overlap."""
    f = it.get("features") or {}
    emb = f.get("embedding") if f else None
    if emb:
        import numpy as np

        rows = _rows(
            engine,
            "SELECT f.item_id, f.embedding, i.title, i.kind FROM item_features f "
            "JOIN items i ON i.id = f.item_id WHERE f.embedding IS NOT NULL",
        )
        ids, mat = [], []
        for r in rows:
            e = r["embedding"] if isinstance(r["embedding"], list) else json.loads(r["embedding"])
            if r["item_id"] != it["id"] and len(e) == len(emb):
                ids.append(r)
                mat.append(e)
        if mat:
            m = np.asarray(mat, dtype=float)
            v = np.asarray(emb, dtype=float)
            sims = m @ v / (np.linalg.norm(m, axis=1) * (np.linalg.norm(v) or 1.0) + 1e-12)
            order = np.argsort(-sims)[:n]
            return [{**_pick(ids[i]), "score": float(sims[i]), "why": "embedding"} for i in order]
    mine = set(t for t in it["tags"] if t != it["kind"])
    if not mine:
        return []
    out = []
    for r in _rows(engine, "SELECT id, title, kind, tags FROM items WHERE id != :id", id=it["id"]):
        tags = set(_json_list(r["tags"])) - {r["kind"]}
        inter = len(mine & tags)
        if inter:
            out.append(
                {
                    "id": r["id"],
                    "title": r["title"],
                    "kind": r["kind"],
                    "score": inter / len(mine | tags),
                    "why": "tags",
                }
            )
    out.sort(key=lambda d: (-d["score"], d["id"]))
    return out[:n]


def _pick(r: dict) -> dict:
    return {"id": r["item_id"], "title": r["title"], "kind": r["kind"]}


def item_event_counts(engine: Engine, item_id: str) -> dict[str, int]:
    rows = _rows(
        engine,
        "SELECT type, COUNT(DISTINCT user_id) AS users FROM events WHERE item_id = :id GROUP BY type",
        id=item_id,
    )
    return {r["type"]: r["users"] for r in rows}


def promoter_attribution(engine: Engine, item_id: str, window_ms: int = 7 * DAY_MS) -> dict[str, Any]:
    """Purchases of the items this video/live promotes, by users who watched it in the 7 days before."""
    sql = """
        SELECT p.item_id, COUNT(*) AS orders, SUM(COALESCE(p.amount, 0)) AS revenue
        FROM events p
        WHERE p.type = 'purchase'
          AND p.item_id IN (SELECT item_id FROM promotes WHERE promoter_id = :id)
          AND EXISTS (SELECT 1 FROM events v WHERE v.item_id = :id AND v.type IN ('view', 'live_join')
                      AND v.user_id = p.user_id AND v.ts <= p.ts AND v.ts > p.ts - :w)
        GROUP BY p.item_id ORDER BY revenue DESC
    """
    rows = _rows(engine, sql, id=item_id, w=window_ms)
    return {
        "rows": rows,
        "orders": sum(r["orders"] for r in rows),
        "revenue": sum(r["revenue"] or 0 for r in rows),
    }


def paid_item_drivers(engine: Engine, item_id: str, window_ms: int = 7 * DAY_MS) -> dict[str, Any]:
    """A paid item's revenue, split by the promoting video/live its buyers watched last (7-day window)."""
    total = _rows(
        engine,
        "SELECT COUNT(*) AS orders, SUM(COALESCE(amount, 0)) AS revenue FROM events "
        "WHERE item_id = :id AND type = 'purchase'",
        id=item_id,
    )[0]
    sql = """
        SELECT v.item_id AS promoter_id, COUNT(DISTINCT p.id) AS orders, SUM(COALESCE(p.amount, 0)) AS revenue
        FROM events p JOIN events v ON v.user_id = p.user_id AND v.type IN ('view', 'live_join')
             AND v.ts <= p.ts AND v.ts > p.ts - :w
             AND v.item_id IN (SELECT promoter_id FROM promotes WHERE item_id = :id)
        WHERE p.item_id = :id AND p.type = 'purchase'
        GROUP BY v.item_id ORDER BY revenue DESC LIMIT 10
    """
    return {
        "orders": total["orders"] or 0,
        "revenue": total["revenue"] or 0.0,
        "rows": _rows(engine, sql, id=item_id, w=window_ms),
    }


# ----------------------------------------------------------------------------- users and segments
def segments(engine: Engine) -> list[dict]:
    return _rows(engine, "SELECT id, name, description, kind, size FROM segments ORDER BY size DESC, id")


def activity_tiers(engine: Engine, end_ms: int) -> list[dict]:
    """Built-in segments when none were computed yet: payers, engaged viewers, casual, dormant (7 days)."""
    sql = f"""
        SELECT tier, COUNT(*) AS size FROM ({tier_users_sql(engine)}) t
        GROUP BY tier ORDER BY size DESC, tier
    """
    return _rows(engine, sql, recent=end_ms - 7 * DAY_MS)


def tier_users_sql(engine: Engine) -> str:
    """``SELECT user_id, tier`` for the built-in tiers (parameter ``:recent``): from the per-user-day rollup
    when it is current, else from the event log (one GROUP BY over all views and payments)."""
    if rollups_on(engine):
        return """SELECT user_id,
                 CASE WHEN MAX(pays) > 0 THEN 'payers' WHEN MAX(last_ts) < :recent THEN 'dormant'
                      WHEN SUM(views) >= 10 THEN 'engaged' ELSE 'casual' END AS tier
          FROM rollup_user_day WHERE off_min = 0 AND (views > 0 OR pays > 0) GROUP BY user_id"""
    return """SELECT user_id,
                 CASE WHEN MAX(CASE WHEN type IN ('purchase', 'subscribe') THEN 1 ELSE 0 END) = 1
                        THEN 'payers'
                      WHEN MAX(ts) < :recent THEN 'dormant'
                      WHEN SUM(CASE WHEN type = 'view' THEN 1 ELSE 0 END) >= 10 THEN 'engaged'
                      ELSE 'casual' END AS tier
          FROM events WHERE type IN ('view', 'purchase', 'subscribe') GROUP BY user_id"""


TIER_TEXT = {
    "payers": "bought or subscribed at least once",
    "engaged": "10+ views, never paid: the best audience to convert",
    "casual": "a few views, active in the last 7 days",
    "dormant": "no view in the last 7 days",
}


def segment(engine: Engine, seg_id: str) -> dict | None:
    rows = _rows(engine, "SELECT * FROM segments WHERE id = :id", id=seg_id)
    return rows[0] if rows else None


def segment_profile(engine: Engine, member_sql: str, params: dict[str, Any]) -> dict[str, Any]:
    """Interests (tags of watched items), spend, activity and channels of a set of users (a sub-select)."""
    spend = _rows(
        engine,
        f"""SELECT COUNT(DISTINCT user_id) AS payers, SUM(COALESCE(amount, 0)) AS spend, COUNT(*) AS orders
            FROM events WHERE type IN ('purchase', 'subscribe', 'tip') AND user_id IN ({member_sql})""",
        **params,
    )[0]
    # Counts by type read only the (type, user_id, ts) index (type named explicitly, no table lookups).
    tph, tparams = _in("ty", tuple(sorted(t for t in EVENT_TYPES if t != "impression")))
    activity = _rows(
        engine,
        f"""SELECT type, COUNT(*) AS n FROM events WHERE type IN ({tph}) AND user_id IN ({member_sql})
            GROUP BY type ORDER BY n DESC, type""",
        **params,
        **tparams,
    )
    # Channels and interests from one pass over the members' views: (channel, item) counts, then the items'
    # tags in Python (no GROUP BY on the JSON tags column, which PostgreSQL cannot compare).
    pairs = _rows(
        engine,
        f"""SELECT COALESCE(channel, 'unknown') AS channel, item_id, COUNT(*) AS n FROM events
            WHERE type = 'view' AND user_id IN ({member_sql})
            GROUP BY COALESCE(channel, 'unknown'), item_id""",
        **params,
    )
    by_channel: Counter[str] = Counter()
    by_item: Counter[str] = Counter()
    for r in pairs:
        by_channel[r["channel"]] += r["n"]
        if r["item_id"] is not None:
            by_item[r["item_id"]] += r["n"]
    ranked = sorted(by_channel.items(), key=lambda kv: (-kv[1], kv[0]))
    channels = [{"channel": c, "views": n} for c, n in ranked]
    tags: Counter[str] = Counter()
    if by_item:
        ph, iparams = _in("it", sorted(by_item))
        for r in _rows(engine, f"SELECT id, tags, kind FROM items WHERE id IN ({ph}) ORDER BY id", **iparams):
            for t in _json_list(r["tags"]):
                if t != r["kind"]:
                    tags[t] += by_item[r["id"]]
    return {"spend": spend, "channels": channels, "activity": activity, "interests": tags.most_common(15)}


def user_exists(engine: Engine, user_id: str) -> bool:
    return bool(_rows(engine, "SELECT 1 AS x FROM users WHERE id = :u", u=user_id)) or bool(
        _rows(engine, "SELECT 1 AS x FROM events WHERE user_id = :u LIMIT 1", u=user_id)
    )


def user_events(engine: Engine, user_id: str, limit: int = 100) -> list[dict]:
    return _rows(
        engine,
        """SELECT e.ts, e.type, e.item_id, i.title, e.channel, e.watch_seconds, e.amount, e.variant
           FROM events e LEFT JOIN items i ON i.id = e.item_id
           WHERE e.user_id = :u AND e.type != 'impression' ORDER BY e.ts DESC LIMIT :n""",
        u=user_id,
        n=limit,
    )


def user_profile(engine: Engine, user_id: str) -> dict[str, Any]:
    stored = _rows(
        engine, "SELECT interests, stats, segment, last_ts FROM user_profiles WHERE user_id = :u", u=user_id
    )
    agg = segment_profile(engine, ":u", {"u": user_id})
    members = _rows(engine, "SELECT segment_id FROM segment_members WHERE user_id = :u", u=user_id)
    return {"stored": stored[0] if stored else None, "segments": [m["segment_id"] for m in members], **agg}


def seen_items(engine: Engine, user_id: str) -> set[str]:
    return {
        r["item_id"]
        for r in _rows(
            engine,
            "SELECT DISTINCT item_id FROM events WHERE user_id = :u AND type IN "
            "('view', 'purchase', 'subscribe') AND item_id IS NOT NULL",
            u=user_id,
        )
    }


def popular_items(engine: Engine, since_ms: int, n: int = 200) -> list[dict]:
    """Most viewed items since ``since_ms`` (from the rollup: whole UTC days from the one holding it)."""
    if rollups_on(engine):
        return _rows(
            engine,
            """SELECT r.item_id AS id, i.title, i.kind, i.tags, i.creator_id, r.views
               FROM (SELECT item_id, SUM(views) AS views FROM rollup_item_day
                     WHERE off_min = 0 AND day >= :d AND views > 0 GROUP BY item_id) r
               JOIN items i ON i.id = r.item_id ORDER BY r.views DESC, r.item_id LIMIT :n""",
            d=since_ms // DAY_MS,
            n=n,
        )
    return _rows(
        engine,
        """SELECT v.item_id AS id, i.title, i.kind, i.tags, i.creator_id, v.views
           FROM (SELECT item_id, COUNT(*) AS views FROM events WHERE type = 'view' AND ts >= :lo
                 GROUP BY item_id) v
           JOIN items i ON i.id = v.item_id ORDER BY v.views DESC, v.item_id LIMIT :n""",
        lo=since_ms,
        n=n,
    )


def model_versions(engine: Engine) -> list[dict]:
    rows = _rows(
        engine,
        "SELECT id, name, version, created_at, params, metrics, active FROM model_versions "
        "ORDER BY name, version DESC",
    )
    for r in rows:
        for k in ("params", "metrics"):
            if isinstance(r[k], str):
                r[k] = json.loads(r[k] or "{}")
    return rows


# ----------------------------------------------------------------------------- live
def rooms(engine: Engine, creator: str | None = None) -> list[dict]:
    return _rows(
        engine,
        f"""SELECT l.item_id AS room_id, i.title, i.creator_id, c.name AS creator_name, l.state,
                   l.scheduled_start, l.started_at, l.ended_at
            FROM live_sessions l JOIN items i ON i.id = l.item_id LEFT JOIN creators c ON c.id = i.creator_id
            {"WHERE i.creator_id = :creator" if creator else ""}
            ORDER BY CASE l.state WHEN 'live' THEN 0 WHEN 'scheduled' THEN 1 ELSE 2 END, l.started_at DESC""",
        creator=creator,
    )


def room(engine: Engine, room_id: str) -> dict | None:
    rows = _rows(
        engine,
        """SELECT i.id AS room_id, i.title, i.creator_id, i.kind, l.state, l.started_at, l.ended_at
           FROM items i LEFT JOIN live_sessions l ON l.item_id = i.id WHERE i.id = :r""",
        r=room_id,
    )
    return rows[0] if rows else None


def room_comments(engine: Engine, room_id: str, limit: int = 200) -> list[dict]:
    return _rows(
        engine,
        """SELECT id, ts, user_id, text, offset_s, moderation, category, matched, sentiment, sentiment_score,
                  is_question FROM comments WHERE room_id = :r OR (room_id IS NULL AND item_id = :r)
           ORDER BY ts DESC LIMIT :n""",
        r=room_id,
        n=limit,
    )


def room_minutes(engine: Engine, room_id: str) -> list[dict]:
    return _rows(engine, "SELECT * FROM room_minutes WHERE room_id = :r ORDER BY minute_ts", r=room_id)


def room_event_minutes(engine: Engine, room_id: str) -> list[dict]:
    """Per-minute joins, leaves, tips and GMV from the event log (when the live pipeline stored none)."""
    return _rows(
        engine,
        """SELECT ts / 60000 AS minute,
                  SUM(CASE WHEN type = 'live_join' THEN 1 ELSE 0 END) AS joins,
                  SUM(CASE WHEN type = 'live_leave' THEN 1 ELSE 0 END) AS leaves,
                  SUM(CASE WHEN type = 'tip' THEN COALESCE(amount, 0) ELSE 0 END) AS gifts,
                  SUM(CASE WHEN type = 'purchase' THEN COALESCE(amount, 0) ELSE 0 END) AS gmv
           FROM events WHERE (room_id = :r OR item_id = :r)
                 AND type IN ('live_join', 'live_leave', 'tip', 'purchase')
           GROUP BY ts / 60000 ORDER BY minute""",
        r=room_id,
    )


# ----------------------------------------------------------------------------- experiments
def experiments(engine: Engine) -> list[dict]:
    """Experiments from the registry plus any key seen only in exposure data (imported logs)."""
    rows = _rows(
        engine,
        "SELECT key, name, state, spec, created_at, updated_at FROM experiments ORDER BY created_at DESC",
    )
    known = {r["key"] for r in rows}
    for r in rows:
        if isinstance(r["spec"], str):
            r["spec"] = json.loads(r["spec"] or "{}")
    seen = _rows(
        engine,
        "SELECT experiment_key AS key, COUNT(*) AS users, MIN(first_ts) AS first_ts, "
        "MAX(first_ts) AS last_ts FROM exposures GROUP BY experiment_key",
    )
    if not seen:
        seen = _rows(
            engine,
            "SELECT experiment AS key, COUNT(DISTINCT user_id) AS users, MIN(ts) AS first_ts, "
            "MAX(ts) AS last_ts FROM events WHERE type = 'exposure' AND experiment IS NOT NULL "
            "GROUP BY experiment",
        )
    by_key = {s["key"]: s for s in seen}
    for r in rows:
        r.update({k: by_key.get(r["key"], {}).get(k) for k in ("users", "first_ts", "last_ts")})
    for s in seen:
        if s["key"] not in known:
            rows.append({"key": s["key"], "name": s["key"], "state": "observed (no spec)", "spec": {}, **s})
    return rows


def experiment_arm_stats(engine: Engine, key: str, window_ms: int = 3 * DAY_MS) -> list[dict]:
    """Per variant: exposed users, converters (a purchase within the window after first exposure), and
    revenue sum and sum of squares per user: the sufficient statistics the report needs."""
    src = _rows(engine, "SELECT COUNT(*) AS n FROM exposures WHERE experiment_key = :k", k=key)[0]["n"]
    if src:
        expo = "SELECT user_id, variant, first_ts FROM exposures WHERE experiment_key = :k"
    else:
        expo = (
            "SELECT user_id, MIN(variant) AS variant, MIN(ts) AS first_ts FROM events "
            "WHERE type = 'exposure' AND experiment = :k GROUP BY user_id"
        )
    sql = f"""
        SELECT x.variant, COUNT(*) AS n, SUM(CASE WHEN u.rev > 0 THEN 1 ELSE 0 END) AS converters,
               SUM(u.rev) AS rev_sum, SUM(u.rev * u.rev) AS rev_sq
        FROM ({expo}) x
        JOIN (SELECT x2.user_id,
                     COALESCE((SELECT SUM(COALESCE(p.amount, 0)) FROM events p WHERE p.user_id = x2.user_id
                               AND p.type = 'purchase' AND p.ts >= x2.first_ts
                               AND p.ts < x2.first_ts + :w), 0)
                     AS rev
              FROM ({expo}) x2) u ON u.user_id = x.user_id
        GROUP BY x.variant ORDER BY x.variant
    """
    return _rows(engine, sql, k=key, w=window_ms)


def experiment_daily(engine: Engine, key: str) -> list[dict]:
    return _rows(
        engine,
        f"""SELECT first_ts / {DAY_MS} AS day, variant, COUNT(*) AS users FROM exposures
            WHERE experiment_key = :k GROUP BY first_ts / {DAY_MS}, variant ORDER BY day""",
        k=key,
    )


# ----------------------------------------------------------------------------- revenue and creators
def revenue_daily(
    engine: Engine, start_ms: int, end_ms: int, off_ms: int = 0, creator: str | None = None
) -> list[dict]:
    """Revenue per day and stream: course sales by paid kind, subscriptions, tips, refunds.

    From the event log, not the rollup: money events are few (the (type, ts) index reads only them), fewer
    than the rollup's item-day rows of the same window."""
    sql = f"""
        SELECT (e.ts + :off) / {DAY_MS} AS day,
               CASE WHEN e.type = 'purchase' THEN COALESCE(i.kind, 'purchase') ELSE e.type END AS stream,
               SUM(CASE WHEN e.type = 'refund' THEN -ABS(COALESCE(e.amount, 0))
                        ELSE COALESCE(e.amount, 0) END) AS amount,
               COUNT(*) AS orders
        FROM events e LEFT JOIN items i ON i.id = e.item_id
        WHERE e.type IN ('purchase', 'subscribe', 'tip', 'refund') AND e.ts >= :lo AND e.ts < :hi
              {"AND i.creator_id = :creator" if creator else ""}
        GROUP BY (e.ts + :off) / {DAY_MS}, CASE WHEN e.type = 'purchase' THEN COALESCE(i.kind, 'purchase')
                 ELSE e.type END
        ORDER BY day
    """
    return _rows(engine, sql, lo=start_ms, hi=end_ms, off=off_ms, creator=creator)


def creators(engine: Engine, creator: str | None = None) -> list[dict]:
    return _rows(
        engine,
        # counts per creator in a subquery: topics is JSON, which PostgreSQL cannot GROUP BY
        f"""SELECT c.id, c.name, c.topics,
                   COALESCE(n.items, 0) AS items, COALESCE(n.promoters, 0) AS promoters
            FROM creators c LEFT JOIN (
                SELECT creator_id, COUNT(*) AS items,
                       SUM(CASE WHEN kind IN ('short_video', 'live') THEN 1 ELSE 0 END) AS promoters
                FROM items GROUP BY creator_id) n ON n.creator_id = c.id
            {"WHERE c.id = :creator" if creator else ""}
            ORDER BY c.id""",
        creator=creator,
    )


def creator_row(engine: Engine, creator_id: str) -> dict | None:
    rows = _rows(engine, "SELECT id, name, topics FROM creators WHERE id = :c", c=creator_id)
    if rows:
        rows[0]["topics"] = _json_list(rows[0]["topics"])
    return rows[0] if rows else None


def creator_events(engine: Engine, creator_id: str) -> Any:
    """The creator's events except impressions (ts, type, user_id, item_id, device, channel, watch_ratio,
    amount): one walk of the (item_id, ts) index over the creator's items, shared by the creator page's
    day, hour and audience charts."""
    import pandas as pd

    cols = ["ts", "type", "user_id", "item_id", "device", "channel", "watch_ratio", "amount"]
    rows = _rows(
        engine,
        f"""SELECT e.ts, e.type, e.user_id, e.item_id, e.device, e.channel, e.watch_ratio, e.amount
            FROM {_creator_events(":c")} AND (e.type || '') != 'impression'""",
        c=creator_id,
    )
    return pd.DataFrame(rows, columns=cols)


def creator_daily(engine: Engine, creator_id: str, off_ms: int = 0, ev: Any = None) -> list[dict]:
    """Per local day: views, engagements (like, comment, share), follows, GMV, distinct audience."""
    ev = creator_events(engine, creator_id) if ev is None else ev
    ev = ev[ev["type"].isin(("view", "like", "comment", "share", "follow", "purchase"))]
    if not len(ev):
        return []
    t = ev["type"]
    d = ev.assign(
        day=(ev["ts"].astype("int64") + off_ms) // DAY_MS,
        views=(t == "view").astype(int),
        engagements=t.isin(("like", "comment", "share")).astype(int),
        follows=(t == "follow").astype(int),
        gmv=ev["amount"].fillna(0.0).astype(float).where(t == "purchase", 0.0),
    )
    g = d.groupby("day").agg(
        views=("views", "sum"), engagements=("engagements", "sum"), follows=("follows", "sum"),
        gmv=("gmv", "sum"), audience=("user_id", "nunique"),
    )  # fmt: skip
    return [
        {"day": int(r["day"]), "views": int(r["views"]), "engagements": int(r["engagements"]),
         "follows": int(r["follows"]), "gmv": float(r["gmv"]), "audience": int(r["audience"])}
        for r in g.reset_index().to_dict("records")
    ]  # fmt: skip


def creator_hours(engine: Engine, creator_id: str, off_ms: int = 0, ev: Any = None) -> list[dict]:
    """Views and mean watch ratio by local hour of day."""
    ev = creator_events(engine, creator_id) if ev is None else ev
    v = ev[ev["type"] == "view"]
    if not len(v):
        return []
    h = v.assign(
        hour=((v["ts"].astype("int64") + off_ms) // 3_600_000) % 24,
        ratio=v["watch_ratio"].fillna(0.0).astype(float),
    )
    g = h.groupby("hour").agg(views=("ts", "size"), avg_ratio=("ratio", "mean"))
    return [
        {"hour": int(k), "views": int(r["views"]), "avg_ratio": float(r["avg_ratio"])}
        for k, r in g.iterrows()
    ]


def creator_items(engine: Engine, creator_id: str) -> list[dict]:
    # Aggregate per item id first, then join the items: PostgreSQL cannot GROUP BY the JSON tags column.
    sql = """
        SELECT i.id, i.title, i.kind, i.tags, COALESCE(a.views, 0) AS views,
               COALESCE(a.engagements, 0) AS engagements, COALESCE(a.gmv, 0) AS gmv
        FROM items i LEFT JOIN (
            SELECT e.item_id,
                   SUM(CASE WHEN e.type = 'view' THEN 1 ELSE 0 END) AS views,
                   SUM(CASE WHEN e.type IN ('like', 'comment', 'share') THEN 1 ELSE 0 END) AS engagements,
                   SUM(CASE WHEN e.type = 'purchase' THEN COALESCE(e.amount, 0) ELSE 0 END) AS gmv
            FROM items ci CROSS JOIN events e
            WHERE e.item_id = ci.id AND ci.creator_id = :c
                  AND (e.type || '') IN ('view', 'like', 'comment', 'share', 'purchase')
            GROUP BY e.item_id) a ON a.item_id = i.id
        WHERE i.creator_id = :c ORDER BY views DESC, i.id
    """
    rows = _rows(engine, sql, c=creator_id)
    for r in rows:
        r["tags"] = _json_list(r["tags"])
    return rows


def creator_video_value(engine: Engine, creator_id: str, window_ms: int = 7 * DAY_MS) -> list[dict]:
    """Commercial value of each video/live: purchases of what it promotes by its viewers (7-day window)."""
    sql = """
        SELECT pr.promoter_id AS id, COUNT(DISTINCT p.id) AS orders, SUM(COALESCE(p.amount, 0)) AS revenue
        FROM promotes pr
        JOIN items i ON i.id = pr.promoter_id AND i.creator_id = :c
        JOIN events p ON p.item_id = pr.item_id AND p.type = 'purchase'
        WHERE EXISTS (SELECT 1 FROM events v WHERE v.item_id = pr.promoter_id
                      AND v.type IN ('view', 'live_join')
                      AND v.user_id = p.user_id AND v.ts <= p.ts AND v.ts > p.ts - :w)
        GROUP BY pr.promoter_id ORDER BY revenue DESC LIMIT 15
    """
    return _rows(engine, sql, c=creator_id, w=window_ms)


def creator_audience(engine: Engine, creator_id: str, ev: Any = None) -> dict[str, list]:
    """Distinct viewers by device and by channel."""
    ev = creator_events(engine, creator_id) if ev is None else ev
    v = ev[ev["type"] == "view"]
    out: dict[str, list] = {}
    for col in ("device", "channel"):
        g = v.assign(k=v[col].fillna("unknown")).groupby("k")["user_id"].nunique()
        pairs = sorted(((str(k), int(n)) for k, n in g.items()), key=lambda p: (-p[1], p[0]))
        out[col + "s"] = [{col: k, "users": n} for k, n in pairs]
    return out


# ----------------------------------------------------------------------------- data
def import_runs(engine: Engine, limit: int = 50) -> list[dict]:
    return _rows(engine, "SELECT * FROM import_runs ORDER BY id DESC LIMIT :n", n=limit)


def api_keys(engine: Engine) -> list[dict]:
    rows = _rows(
        engine,
        "SELECT id, name, prefix, scopes, created_at, last_used_at, revoked_at FROM api_keys ORDER BY id",
    )
    for r in rows:
        r["scopes"] = _json_list(r["scopes"])
    return rows


# ----------------------------------------------------------------------------- analytics from rollups
def view_retention(engine: Engine, period: str = "day") -> tuple[Any, Any] | None:
    """First-time retention of viewers (cohort = period of a user's first view, returns = later periods
    with a view), from the per-user-day rollup at offset 0. The same numbers as
    ``analytics.queries.retention_counts(start_types=("view",), return_types=("view",))`` (UTC periods:
    ``ts // period``), which groups the whole event log instead. None when the rollups cannot answer.
    ``ix_rollup_user_day_user`` covers both statements."""
    if not rollups_on(engine):
        return None
    import pandas as pd

    k = 1 if period == "day" else 7
    first = f"""SELECT user_id, MIN(day) / {k} AS cp FROM rollup_user_day WHERE off_min = 0 AND views > 0
                GROUP BY user_id"""
    sizes = _rows(engine, f"SELECT cp AS cohort, COUNT(*) AS users FROM ({first}) c GROUP BY cp ORDER BY cp")
    ret = _rows(
        engine,
        f"""SELECT c.cp AS cohort, a.day / {k} - c.cp AS k_off, COUNT(DISTINCT a.user_id) AS users
            FROM ({first}) c JOIN rollup_user_day a
                 ON a.off_min = 0 AND a.user_id = c.user_id AND a.views > 0 AND a.day / {k} > c.cp
            GROUP BY c.cp, a.day / {k} - c.cp ORDER BY 1, 2""",
    )
    return (
        pd.DataFrame(sizes, columns=["cohort", "users"]),
        pd.DataFrame(ret, columns=["cohort", "k_off", "users"]).rename(columns={"k_off": "offset"}),
    )


def item_funnel_events(engine: Engine, item_ids: list[str], types: tuple[str, ...]) -> Any:
    """The events of a few items (user_id, type, ts, item_id) for an in-memory funnel: read through the
    (item_id, ts) index, with the type hidden from the planner so it never walks a whole event type."""
    import pandas as pd

    ph, params = _in("i", item_ids)
    tph, tparams = _in("t", types)
    rows = _rows(
        engine,
        f"""SELECT user_id, type, ts, item_id FROM events
            WHERE item_id IN ({ph}) AND (type || '') IN ({tph})""",
        **params,
        **tparams,
    )
    return pd.DataFrame(rows, columns=["user_id", "type", "ts", "item_id"])


def ordered_funnel_times(ev: Any, steps: list[dict], window_ms: int) -> Any:
    """Per-user step times (user_id, group, t1..tn) of an ordered funnel over a small events frame, for
    ``analytics.funnel.summarize_funnel``: step 1 is a user's first matching event; step k the first
    matching event at or after step k-1 and within ``window_ms`` of step 1. The semantics of the analytics
    area's SQL funnel and of its ``ordered_funnel_pandas`` (which currently fails on read-only arrays under
    pandas copy-on-write), for steps filtered by ``item_id`` / ``item_id__in`` only."""
    import numpy as np
    import pandas as pd

    def match(st: dict) -> Any:
        m = np.array(ev["type"].to_numpy() == st["type"], dtype=bool)
        for k, v in (st.get("where") or {}).items():
            col = k.removesuffix("__in")
            vals = list(v) if k.endswith("__in") else [v]
            m = m & np.asarray(ev[col].isin(vals).to_numpy(), dtype=bool)
        return m

    first = ev.loc[match(steps[0]), ["user_id", "ts"]].sort_values("ts", kind="stable")
    out = first.drop_duplicates("user_id").rename(columns={"ts": "t1"}).reset_index(drop=True)
    cur, prev = out[["user_id", "t1"]], "t1"
    for k in range(2, len(steps) + 1):
        cand = ev.loc[match(steps[k - 1]), ["user_id", "ts"]].merge(cur, on="user_id", how="inner")
        ok = (cand["ts"] >= cand[prev]) & (cand["ts"] <= cand["t1"] + window_ms)
        got = cand[ok].groupby("user_id", sort=False)["ts"].min().rename(f"t{k}").reset_index()
        cur = cur.merge(got, on="user_id", how="inner")
        prev = f"t{k}"
        out = out.merge(got, on="user_id", how="left")
    out.insert(1, "group", None)
    for k in range(1, len(steps) + 1):
        out[f"t{k}"] = pd.to_numeric(out[f"t{k}"], errors="coerce").astype(float)
    return out
