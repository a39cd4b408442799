"""Online interest profiles: one vector per user over tags or topics, updated as events arrive.

The rule (a least-mean-squares / delta-rule step, applied per event in time order)::

    u <- u * 2 ** (-(t - t_last) / half_life)        # time decay: old interests fade
    u <- u + alpha * (b - u . v) * v                  # move u so that u . v approaches b

``v`` is the item's feature vector (tags or topic mixture, L2-normalised so steps are comparable across
items), ``b`` the strength of the behaviour (a view weighs its watch ratio, a like, comment, share or
purchase weigh more; see :data:`DEFAULT_WEIGHTS`), ``alpha`` the learning rate. ``u . v`` is the profile's
current prediction of how strongly the user reacts to the item; the step corrects it by the error, along
the item's own direction, so interests the user keeps acting on grow towards ``b`` and saturate there
instead of growing without bound, as a plain sum would.

Vectorised form, and why it equals the sequential one: the update of user A never reads user B's vector, so
the events of different users commute; only the order *within* a user matters. :meth:`InterestProfiler.update`
sorts a batch by (user, time, arrival order), numbers each user's events 0, 1, 2, ... and then runs step k for
every user at once with NumPy (gather the k-th event of every user that has one, apply decay and the delta
step to those rows, scatter back). Each user therefore sees exactly the same sequence of floating-point
operations as in :meth:`InterestProfiler.update_sequential`, a plain per-event loop kept as the reference;
the tests check the two agree to 1e-12. The Python loop runs ``max events per user in the batch`` times
instead of ``number of events`` times.

Incremental use: the profiler keeps ``u`` and ``t_last`` per user, so ``update(new_events)`` continues where
the last batch ended (no rebuild). An event older than the user's ``t_last`` (late arrival) is applied with
no decay rather than rewinding history.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "DEFAULT_WEIGHTS",
    "ItemFeatures",
    "InterestProfiler",
    "behaviour_strength",
    "to_epoch_ms",
]

#: Behaviour strength ``b`` per event type. ``view`` is multiplied by the watch ratio (clipped to [0, 1];
#: 0.5 when unknown). Types not listed (impression, exposure, live_leave ...) do not move interests.
DEFAULT_WEIGHTS: dict[str, float] = {
    "view": 1.0,
    "click": 0.5,
    "like": 2.0,
    "comment": 2.5,
    "share": 3.0,
    "follow": 2.0,
    "add_to_cart": 2.5,
    "purchase": 4.0,
    "subscribe": 4.0,
    "tip": 3.0,
    "live_join": 1.0,
    "refund": -2.0,
}

_MS_PER_DAY = 86_400_000.0


def to_epoch_ms(ts: Any, field: str = "ts") -> np.ndarray:
    """Timestamps as float epoch milliseconds from ints (ms), floats, datetimes or ISO strings."""
    s = pd.Series(ts) if not isinstance(ts, pd.Series) else ts
    if pd.api.types.is_datetime64_any_dtype(s):
        if getattr(s.dt, "tz", None) is not None:
            s = s.dt.tz_convert("UTC").dt.tz_localize(None)
        out = s.astype("datetime64[ms]").astype("int64").to_numpy(dtype=np.float64)
        if s.isna().any():
            raise ValueError(
                f"{field} has missing values at rows {list(np.flatnonzero(s.isna().to_numpy())[:5])}"
            )
        return out
    if pd.api.types.is_numeric_dtype(s):
        arr = s.to_numpy(dtype=np.float64)
        bad = ~np.isfinite(arr)
        if bad.any():
            raise ValueError(
                f"{field} has missing or non-finite values at rows {list(np.flatnonzero(bad)[:5])}"
            )
        return arr
    parsed = pd.to_datetime(s, errors="coerce", utc=True)
    bad = parsed.isna().to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{field} row {i}: cannot parse {s.iloc[i]!r} as a timestamp")
    return parsed.dt.tz_localize(None).astype("datetime64[ms]").astype("int64").to_numpy(dtype=np.float64)


def behaviour_strength(events: pd.DataFrame, weights: Mapping[str, float] = DEFAULT_WEIGHTS) -> np.ndarray:
    """``b`` per event (NaN for types that carry no interest signal)."""
    if "type" not in events.columns:
        raise ValueError("events need a 'type' column")
    types = events["type"].astype(str)
    b = types.map(dict(weights)).to_numpy(dtype=np.float64)
    if "watch_ratio" in events.columns:
        wr = pd.to_numeric(events["watch_ratio"], errors="coerce").to_numpy(dtype=np.float64)
    else:
        wr = np.full(len(events), np.nan)
    is_view = (types == "view").to_numpy()
    ratio = np.where(np.isnan(wr), 0.5, np.clip(wr, 0.0, 1.0))
    b = np.where(is_view, b * ratio, b)
    return b


class ItemFeatures:
    """Item feature vectors for profiles: a dense ``(n_items, d)`` matrix, row-aligned with ``item_ids``.

    Build it from tag lists (:meth:`from_tags`: multi-hot over the tag vocabulary), from a topic mixture or
    from any embedding (:meth:`from_matrix`). Rows are L2-normalised by default so that ``u . v`` is on the
    same scale whatever the number of tags of an item.
    """

    def __init__(
        self,
        item_ids: Sequence[Any],
        matrix: np.ndarray,
        feature_names: Sequence[str],
        normalize: bool = True,
    ) -> None:
        m = np.asarray(matrix, dtype=np.float64)
        if m.ndim != 2 or m.shape[0] != len(item_ids) or m.shape[1] != len(feature_names):
            raise ValueError(
                f"matrix shape {m.shape} does not match {len(item_ids)} items x {len(feature_names)} features"
            )
        if normalize:
            norms = np.linalg.norm(m, axis=1, keepdims=True)
            m = np.divide(m, norms, out=np.zeros_like(m), where=norms > 0)
        self.item_ids = list(item_ids)
        self.matrix = m
        self.feature_names = [str(f) for f in feature_names]
        self.index = pd.Index(self.item_ids)
        if not self.index.is_unique:
            dup = self.index[self.index.duplicated()][0]
            raise ValueError(f"item_ids must be unique; {dup!r} appears twice")

    @classmethod
    def from_tags(
        cls,
        item_ids: Sequence[Any],
        tags: Sequence[Sequence[str]],
        min_count: int = 1,
        normalize: bool = True,
        extra_features: Sequence[str] = (),
    ) -> ItemFeatures:
        """Multi-hot tag vectors; tags seen on fewer than ``min_count`` items are dropped.

        ``extra_features``: more (all-zero) columns, e.g. the tags a stored profile already holds.
        """
        if len(item_ids) != len(tags):
            raise ValueError(f"{len(item_ids)} item_ids but {len(tags)} tag lists")
        counts: dict[str, int] = {}
        for i, ts in enumerate(tags):
            if isinstance(ts, str):
                raise TypeError(f"tags row {i} must be a list of tags, got a string {ts!r}")
            for t in set(ts or ()):
                counts[str(t)] = counts.get(str(t), 0) + 1
        names = sorted({*(t for t, c in counts.items() if c >= min_count), *map(str, extra_features)})
        col = {t: j for j, t in enumerate(names)}
        m = np.zeros((len(item_ids), len(names)))
        for i, ts in enumerate(tags):
            for t in ts or ():
                j = col.get(str(t))
                if j is not None:
                    m[i, j] = 1.0
        return cls(item_ids, m, names, normalize=normalize)

    @classmethod
    def from_matrix(
        cls,
        item_ids: Sequence[Any],
        matrix: np.ndarray,
        feature_names: Sequence[str] | None = None,
        normalize: bool = True,
    ) -> ItemFeatures:
        m = np.asarray(matrix, dtype=np.float64)
        names = feature_names if feature_names is not None else [f"f{j}" for j in range(m.shape[1])]
        return cls(item_ids, m, names, normalize=normalize)

    def rows(self, item_ids: Sequence[Any]) -> np.ndarray:
        """Row index of each item id; -1 where the item is unknown."""
        return self.index.get_indexer(pd.Index(item_ids))


class InterestProfiler:
    """Per-user interest vectors with the online delta rule (see the module docstring).

    Parameters
    ----------
    items: the item feature space.
    alpha: learning rate of the delta step (0 < alpha <= 1; with unit item vectors alpha = 1 jumps straight
        to ``u . v = b``).
    half_life_days: interests halve after this many days without reinforcement; None disables decay.
    weights: behaviour strength per event type (defaults to :data:`DEFAULT_WEIGHTS`).
    """

    def __init__(
        self,
        items: ItemFeatures,
        alpha: float = 0.1,
        half_life_days: float | None = 30.0,
        weights: Mapping[str, float] | None = None,
    ) -> None:
        self.items = items
        self.alpha = alpha
        self.half_life_days = half_life_days
        self.weights = weights

    # --------------------------------------------------------------- state
    def _init_state(self) -> None:
        if not (0 < self.alpha <= 1):
            raise ValueError(f"alpha must be in (0, 1], got {self.alpha}")
        if self.half_life_days is not None and self.half_life_days <= 0:
            raise ValueError(f"half_life_days must be > 0 or None, got {self.half_life_days}")
        d = self.items.matrix.shape[1]
        self.user_index_: dict[Any, int] = {}
        self.user_ids_: list[Any] = []
        self.U_ = np.zeros((0, d))
        self.t_last_ = np.zeros(0)
        self.n_events_ = 0
        self.n_skipped_ = 0

    def _ensure_users(self, users: np.ndarray) -> np.ndarray:
        """Row of each user id in ``U_``, adding new users with a zero vector."""
        new = [u for u in pd.unique(users) if u not in self.user_index_]
        if new:
            start = len(self.user_ids_)
            for k, u in enumerate(new):
                self.user_index_[u] = start + k
            self.user_ids_.extend(new)
            d = self.U_.shape[1]
            self.U_ = np.vstack([self.U_, np.zeros((len(new), d))])
            self.t_last_ = np.concatenate([self.t_last_, np.full(len(new), -np.inf)])
        return pd.Index(self.user_ids_).get_indexer(pd.Index(users))

    def _prepare(self, events: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(user rows, ts ms, b, item rows) of the events that move interests, sorted by user/time/arrival."""
        for col in ("user_id", "item_id", "type", "ts"):
            if col not in events.columns:
                raise ValueError(f"events need a {col!r} column")
        if not hasattr(self, "U_"):
            self._init_state()
        b = behaviour_strength(events, self.weights or DEFAULT_WEIGHTS)
        irow = self.items.rows(events["item_id"].to_numpy())
        keep = ~np.isnan(b) & (irow >= 0) & events["user_id"].notna().to_numpy()
        self.n_skipped_ += int((~keep).sum())
        ev = events.loc[keep]
        ts = to_epoch_ms(ev["ts"].reset_index(drop=True))
        urow = self._ensure_users(ev["user_id"].to_numpy())
        b, irow = b[keep], irow[keep]
        order = np.lexsort((np.arange(len(ts)), ts, urow))  # user, then time, then arrival
        return urow[order], ts[order], b[order], irow[order]

    # --------------------------------------------------------------- updates
    def fit(self, events: pd.DataFrame) -> InterestProfiler:
        """Forget everything and build profiles from ``events``."""
        self._init_state()
        return self.update(events)

    def update(self, events: pd.DataFrame) -> InterestProfiler:
        """Apply a batch of events, vectorised across users (see the module docstring)."""
        urow, ts, b, irow = self._prepare(events)
        n = len(urow)
        if n == 0:
            return self
        # rank of each event within its user (events are grouped by user already)
        starts = np.r_[0, np.flatnonzero(np.diff(urow)) + 1]
        lengths = np.diff(np.r_[starts, n])
        rank = np.arange(n) - np.repeat(starts, lengths)
        by_rank = np.argsort(rank, kind="stable")
        bounds = np.r_[0, np.cumsum(np.bincount(rank))]
        # lay the events out step by step so each step reads contiguous slices
        urow, ts, b, Vr = urow[by_rank], ts[by_rank], b[by_rank], self.items.matrix[irow[by_rank]]
        U, T = self.U_, self.t_last_
        alpha = self.alpha
        inv_half = None if self.half_life_days is None else 1.0 / (self.half_life_days * _MS_PER_DAY)
        for k in range(len(bounds) - 1):
            lo, hi = bounds[k], bounds[k + 1]
            rows = urow[lo:hi]
            u = U[rows]
            t = ts[lo:hi]
            if inv_half is not None:
                dt = np.maximum(t - T[rows], 0.0)  # -inf t_last (new user) gives inf dt: u is zero anyway
                u *= np.exp2(-dt * inv_half)[:, None]
            v = Vr[lo:hi]
            err = b[lo:hi] - np.einsum("ij,ij->i", u, v)
            u += (alpha * err)[:, None] * v
            U[rows] = u
            T[rows] = np.maximum(T[rows], t)
        self.n_events_ += n
        return self

    def update_sequential(self, events: pd.DataFrame) -> InterestProfiler:
        """The same rule as :meth:`update`, one event at a time: the reference the tests compare against."""
        urow, ts, b, irow = self._prepare(events)
        V, U, T = self.items.matrix, self.U_, self.t_last_
        inv_half = None if self.half_life_days is None else 1.0 / (self.half_life_days * _MS_PER_DAY)
        for r, t, bb, i in zip(urow, ts, b, irow, strict=True):
            u = U[r].copy()
            if inv_half is not None:
                u *= np.exp2(-max(t - T[r], 0.0) * inv_half)
            v = V[i]
            u += self.alpha * (bb - float(np.einsum("j,j->", u, v))) * v
            U[r] = u
            T[r] = max(T[r], t)
        self.n_events_ += len(urow)
        return self

    # --------------------------------------------------------------- persistence
    def set_state(
        self, user_ids: Sequence[Any], vectors: Sequence[Mapping[str, float]], t_last: Sequence[float | None]
    ) -> InterestProfiler:
        """Start from stored profiles instead of zero: ``vectors`` maps feature name to weight per user.

        Why by name: a service keeps profiles as ``{tag: weight}`` and builds the item feature space only
        for the items a new batch touches; weights on features outside ``items`` are dropped here, so the
        caller makes ``items`` span the union of stored and new features (see ``ItemFeatures.from_tags``
        with ``extra_features``). ``t_last`` (epoch ms, None for never) is where decay continues from.
        """
        if not (len(user_ids) == len(vectors) == len(t_last)):
            raise ValueError(
                f"user_ids ({len(user_ids)}), vectors ({len(vectors)}) and t_last ({len(t_last)}) differ"
            )
        self._init_state()
        rows = self._ensure_users(np.asarray(list(user_ids), dtype=object))
        col = {f: j for j, f in enumerate(self.items.feature_names)}
        for r, vec, t in zip(rows, vectors, t_last, strict=True):
            for f, w in (vec or {}).items():
                j = col.get(str(f))
                if j is not None:
                    self.U_[r, j] = float(w)
            self.t_last_[r] = -np.inf if t is None else float(t)
        return self

    def state(self, min_abs: float = 1e-6) -> dict[Any, tuple[dict[str, float], float | None]]:
        """Per user ``({feature: weight}, t_last)`` with weights below ``min_abs`` dropped (undecayed)."""
        self._check()
        names = self.items.feature_names
        out: dict[Any, tuple[dict[str, float], float | None]] = {}
        for u, r in self.user_index_.items():
            row = self.U_[r]
            nz = np.flatnonzero(np.abs(row) >= min_abs)
            t = self.t_last_[r]
            out[u] = ({names[j]: float(row[j]) for j in nz}, None if not np.isfinite(t) else float(t))
        return out

    # --------------------------------------------------------------- reading
    def _check(self) -> None:
        if not hasattr(self, "U_"):
            raise RuntimeError("InterestProfiler is not fitted: call fit() or update() first")

    def vectors(self, as_of: Any = None, user_ids: Sequence[Any] | None = None) -> pd.DataFrame:
        """Interest vectors (users x features) decayed to ``as_of`` (epoch ms or datetime; None: no decay)."""
        self._check()
        if user_ids is None:
            rows = np.arange(len(self.user_ids_))
            index = list(self.user_ids_)
        else:
            rows = pd.Index(self.user_ids_).get_indexer(pd.Index(user_ids))
            if (rows < 0).any():
                missing = [u for u, r in zip(user_ids, rows, strict=True) if r < 0][:5]
                raise KeyError(f"unknown user ids: {missing}")
            index = list(user_ids)
        U = self.U_[rows].copy()
        if as_of is not None and self.half_life_days is not None:
            t = float(to_epoch_ms([as_of], field="as_of")[0])
            dt = np.maximum(t - self.t_last_[rows], 0.0)
            U *= np.exp2(-dt / (self.half_life_days * _MS_PER_DAY))[:, None]
        return pd.DataFrame(U, index=pd.Index(index, name="user_id"), columns=self.items.feature_names)

    def top_interests(self, user_id: Any, k: int = 5, as_of: Any = None) -> list[tuple[str, float]]:
        """The user's ``k`` strongest positive interests as ``(feature, weight)``."""
        row = self.vectors(as_of, [user_id]).iloc[0]
        row = row[row > 0].sort_values(ascending=False, kind="stable")[:k]
        return [(str(f), round(float(w), 4)) for f, w in row.items()]

    def predict_top(self, k: int = 3, as_of: Any = None) -> pd.DataFrame:
        """Top-``k`` features per user (columns ``top1..topk``); where fewer are positive, None."""
        V = self.vectors(as_of)
        arr = V.to_numpy()
        order = np.argsort(-arr, axis=1, kind="stable")[:, :k]
        names = np.asarray(self.items.feature_names, dtype=object)
        top = names[order]
        vals = np.take_along_axis(arr, order, axis=1)
        top[vals <= 0] = None
        return pd.DataFrame(top, index=V.index, columns=[f"top{j + 1}" for j in range(k)])
