"""User segments: learnt clusters over profile vectors, and rule-based segments a marketer writes.

Learnt segments (:class:`Segmenter`): each user is a row of interest weights (L2-normalised, so a heavy user
and a light user with the same taste look alike) next to standardised log activity and log spend (so that
"big spenders who like finance" can separate from "browsers who like finance"). KMeans is fitted for each k
in ``k_range`` and the k with the best silhouette score wins (silhouette: how much closer a user is to its
own cluster than to the next one, -1..1). The density-based alternative is HDBSCAN, which finds the number
of clusters itself and leaves outliers unassigned (label -1, described as "unassigned").

Each segment is described in words: size and share, top interests, spend level, activity level, e.g.
"1,204 users (24%): mostly 理财, 英语; high spend; medium activity".

Rule segments (:class:`RuleSegment`): a JSON-able spec combining event conditions ("bought a course in the
last 30 days", "joined a live") and profile conditions ("spend >= 100") with ``all`` / ``any`` / ``not``::

    {"all": [{"event": "purchase", "item_kind": "course", "within_days": 30},
             {"event": "live_join", "within_days": 30}]}

``members()`` gives the set of user ids, usable as experiment eligibility or a recommendation filter.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.cluster import HDBSCAN, KMeans
from sklearn.metrics import silhouette_score

from knowcast.profiles.interest import to_epoch_ms

__all__ = ["Segmenter", "RuleSegment", "segment_features"]


def segment_features(
    interests: pd.DataFrame, activity: pd.DataFrame | None = None, activity_weight: float = 0.5
) -> pd.DataFrame:
    """The matrix segments are learnt on: normalised interests + scaled log activity/spend columns."""
    x = interests.clip(lower=0).astype(float)
    norms = np.linalg.norm(x.to_numpy(), axis=1, keepdims=True)
    x = pd.DataFrame(
        np.divide(x.to_numpy(), norms, out=np.zeros(x.shape), where=norms > 0),
        index=x.index,
        columns=[f"interest:{c}" for c in x.columns],
    )
    if activity is not None:
        a = activity.reindex(x.index)
        extra = pd.DataFrame(index=x.index)
        for col in ("events_per_day", "spend"):
            if col in a.columns:
                v = np.log1p(pd.to_numeric(a[col], errors="coerce").fillna(0).clip(lower=0))
                sd = v.std()
                extra[col] = activity_weight * (v - v.mean()) / (sd if sd > 0 else 1.0)
        x = x.join(extra)
    return x


class Segmenter:
    """Cluster users into segments; k chosen by silhouette (KMeans) or found by density (HDBSCAN).

    Parameters
    ----------
    method: ``"kmeans"`` or ``"hdbscan"``.
    k_range: candidate numbers of clusters for KMeans (inclusive bounds).
    sample_size: users used to compute each silhouette (it is quadratic); clustering uses all users.
    min_cluster_size: HDBSCAN's smallest cluster.
    random_state: seed for KMeans and the silhouette sample.
    """

    def __init__(
        self,
        method: str = "kmeans",
        k_range: tuple[int, int] = (2, 10),
        sample_size: int = 3000,
        min_cluster_size: int = 20,
        random_state: int = 0,
    ) -> None:
        self.method = method
        self.k_range = k_range
        self.sample_size = sample_size
        self.min_cluster_size = min_cluster_size
        self.random_state = random_state

    def fit(self, features: pd.DataFrame) -> Segmenter:
        """``features``: users x columns (see :func:`segment_features`)."""
        if self.method not in {"kmeans", "hdbscan"}:
            raise ValueError(f"method must be 'kmeans' or 'hdbscan', got {self.method!r}")
        x = features.to_numpy(dtype=float)
        if not np.isfinite(x).all():
            bad = int(np.flatnonzero(~np.isfinite(x).all(axis=1))[0])
            raise ValueError(f"features row {bad} (user {features.index[bad]!r}) has NaN or infinite values")
        n = len(x)
        if n < 3:
            raise ValueError(f"need at least 3 users to segment, got {n}")
        rng = np.random.default_rng(self.random_state)
        sample = rng.choice(n, size=min(n, self.sample_size), replace=False)
        self.scores_: dict[int, float] = {}
        if self.method == "kmeans":
            lo, hi = self.k_range
            if lo < 2 or hi < lo:
                raise ValueError(f"k_range must be (lo, hi) with 2 <= lo <= hi, got {self.k_range}")
            best = None
            for k in range(lo, min(hi, n - 1) + 1):
                km = KMeans(n_clusters=k, n_init=3, random_state=self.random_state).fit(x)
                lab = km.labels_[sample]
                if len(set(lab)) < 2:
                    continue
                s = float(silhouette_score(x[sample], lab))
                self.scores_[k] = s
                if best is None or s > best[0]:
                    best = (s, k, km)
            if best is None:
                raise ValueError("no k in k_range gave at least two non-empty clusters")
            self.silhouette_, self.k_, model = best
            self.labels_ = model.labels_.astype(int)
            self.model_ = model
        else:
            model = HDBSCAN(min_cluster_size=self.min_cluster_size, copy=True).fit(x)
            self.labels_ = model.labels_.astype(int)
            self.k_ = int(len(set(self.labels_) - {-1}))
            lab = self.labels_[sample]
            ok = lab >= 0
            self.silhouette_ = (
                float(silhouette_score(x[sample][ok], lab[ok])) if len(set(lab[ok])) >= 2 else float("nan")
            )
            self.model_ = model
        self.user_ids_ = list(features.index)
        self.columns_ = list(features.columns)
        return self

    def assignments(self) -> pd.Series:
        """Segment id per user (-1: left unassigned by HDBSCAN)."""
        return pd.Series(self.labels_, index=pd.Index(self.user_ids_, name="user_id"), name="segment")

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        """Segment of new users (KMeans: nearest centre; HDBSCAN cannot place new points)."""
        if self.method != "kmeans":
            raise NotImplementedError("HDBSCAN segments cannot assign new users; refit instead")
        return self.model_.predict(features[self.columns_].to_numpy(dtype=float))

    def describe(
        self, interests: pd.DataFrame, activity: pd.DataFrame | None = None, top: int = 3
    ) -> list[dict]:
        """One description per segment: id, size, share, top interests, spend and activity level, text."""
        labels = self.assignments()
        n = len(labels)
        out = []
        for seg in sorted(set(labels)):
            members = labels.index[labels == seg]
            tops = self._top_interests(interests, members, top)
            d: dict[str, Any] = {
                "segment": int(seg),
                "size": int(len(members)),
                "share": round(len(members) / n, 4),
                "top_interests": tops,
            }
            if activity is not None:
                a = activity.reindex(members)
                for col in ("spend_level", "activity_level"):
                    if col in a.columns and a[col].notna().any():
                        d[col] = str(a[col].mode().iloc[0])
                if "spend" in a.columns:
                    d["mean_spend"] = round(float(a["spend"].mean()), 2)
                if "events_per_day" in a.columns:
                    d["mean_events_per_day"] = round(float(a["events_per_day"].mean()), 3)
            name = "unassigned (outliers)" if seg == -1 else f"segment {seg}"
            parts = [f"{name}: {len(members):,} users ({100 * len(members) / n:.0f}%)"]
            parts.append("mostly " + ", ".join(tops) if tops else "no clear interest")
            if "spend_level" in d:
                parts.append(f"{d['spend_level']} spend" if d["spend_level"] != "no spend" else "no spend")
            if "activity_level" in d:
                parts.append(f"{d['activity_level']} activity")
            d["description"] = "; ".join(parts)
            out.append(d)
        return out

    @staticmethod
    def _top_interests(interests: pd.DataFrame, members: pd.Index, top: int) -> list[str]:
        """Interests that distinguish the segment: highest lift over the population among those that
        hold at least 5% of the segment's interest mass (so a rare interest of two users does not win)."""
        x = interests.clip(lower=0)
        seg = x.reindex(members).mean()
        pop = x.mean()
        share = seg / seg.sum() if seg.sum() > 0 else seg
        lift = (seg / pop.replace(0, np.nan)).fillna(0)
        cand = lift[share >= 0.05].sort_values(ascending=False, kind="stable")
        return [str(t) for t in cand.index[:top]]


_OPS = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
    "==": operator.eq,
    "!=": operator.ne,
}


class RuleSegment:
    """A segment defined by rules over events and profile columns (see the module docstring).

    Conditions:
    - ``{"event": TYPE, "within_days": N, "item_kind": KIND, "min_count": M, "channel": C}``: the user has at
      least M (default 1) events of TYPE (a type or a list of types) in the last N days (default: ever),
      optionally on items of KIND (needs ``items`` with ``item_id`` and ``kind``) or via channel C.
    - ``{"profile": COLUMN, "op": ">=", "value": V}``: a column of the profile table (e.g. ``spend``).
    - ``{"all": [...]}``, ``{"any": [...]}``, ``{"not": {...}}``.
    """

    def __init__(self, spec: Mapping[str, Any], name: str | None = None) -> None:
        self.spec = spec
        self.name = name
        self._validate(spec, "spec")

    def _validate(self, node: Any, where: str) -> None:
        if not isinstance(node, Mapping):
            raise TypeError(f"{where} must be a mapping, got {type(node).__name__}")
        keys = set(node)
        if keys & {"all", "any"}:
            key = "all" if "all" in node else "any"
            if not isinstance(node[key], Sequence) or isinstance(node[key], str) or not node[key]:
                raise ValueError(f"{where}.{key} must be a non-empty list of conditions")
            for i, child in enumerate(node[key]):
                self._validate(child, f"{where}.{key}[{i}]")
        elif "not" in node:
            self._validate(node["not"], f"{where}.not")
        elif "event" in node:
            unknown = keys - {"event", "within_days", "item_kind", "min_count", "channel"}
            if unknown:
                raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
        elif "profile" in node:
            if node.get("op") not in _OPS:
                raise ValueError(f"{where}.op must be one of {sorted(_OPS)}, got {node.get('op')!r}")
            if "value" not in node:
                raise ValueError(f"{where} needs a 'value'")
        else:
            raise ValueError(f"{where}: expected one of all/any/not/event/profile, got keys {sorted(keys)}")

    def members(
        self,
        events: pd.DataFrame,
        profiles: pd.DataFrame | None = None,
        items: pd.DataFrame | None = None,
        as_of: Any = None,
    ) -> set[Any]:
        """User ids matching the rule. ``as_of`` defaults to the latest event."""
        ts = to_epoch_ms(events["ts"].reset_index(drop=True)) if len(events) else np.zeros(0)
        now = float(ts.max()) if as_of is None and len(ts) else float(to_epoch_ms([as_of], field="as_of")[0])
        universe = set(events["user_id"].dropna().unique())
        if profiles is not None:
            universe |= set(profiles.index)
        kinds = None
        if items is not None:
            kinds = pd.Series(items["kind"].to_numpy(), index=items["item_id"].to_numpy())
        ctx = {
            "events": events.reset_index(drop=True),
            "ts": ts,
            "now": now,
            "profiles": profiles,
            "kinds": kinds,
        }
        return self._eval(self.spec, ctx, universe)

    def _eval(self, node: Mapping[str, Any], ctx: dict[str, Any], universe: set[Any]) -> set[Any]:
        if "all" in node:
            out = universe
            for child in node["all"]:
                out = out & self._eval(child, ctx, universe)
            return set(out)
        if "any" in node:
            out: set[Any] = set()
            for child in node["any"]:
                out |= self._eval(child, ctx, universe)
            return out
        if "not" in node:
            return universe - self._eval(node["not"], ctx, universe)
        if "event" in node:
            ev = ctx["events"]
            types = node["event"] if isinstance(node["event"], list | tuple) else [node["event"]]
            mask = ev["type"].isin(types).to_numpy().copy()
            if node.get("within_days") is not None:
                mask &= ctx["ts"] >= ctx["now"] - float(node["within_days"]) * 86_400_000
            if node.get("channel") is not None:
                mask &= (ev["channel"] == node["channel"]).to_numpy() if "channel" in ev.columns else False
            if node.get("item_kind") is not None:
                if ctx["kinds"] is None:
                    raise ValueError("a rule with item_kind needs items (item_id, kind)")
                mask &= (ev["item_id"].map(ctx["kinds"]) == node["item_kind"]).to_numpy()
            counts = ev.loc[mask, "user_id"].value_counts()
            return set(counts.index[counts >= int(node.get("min_count", 1))])
        prof = ctx["profiles"]
        if prof is None:
            raise ValueError("a rule with a profile condition needs the profile table")
        col = node["profile"]
        if col not in prof.columns:
            raise ValueError(
                f"profile condition names unknown column {col!r}; have {sorted(prof.columns)[:20]}"
            )
        ok = _OPS[node["op"]](prof[col], node["value"]).fillna(False).to_numpy(dtype=bool)
        return set(prof.index[ok])
