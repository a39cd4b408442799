"""Deterministic, sticky assignment of users to experiment variants.

A user's bucket is a hash of ``salt:user_id`` mapped to ``[0, 1)``: the same user always lands in the same
place, without storing anything. Variants own consecutive ranges of that line, sized by weight; coverage
(the ramp) keeps only the first ``coverage`` share of each range, exactly as GrowthBook's bucket ranges do.
Raising coverage 10 % -> 50 % -> 100 % only *grows* every range from its left end, so a user who was in a
variant stays there. Layers give experiments on the same surface disjoint slices of a second hash line,
so no user is in two of them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "hash_unit",
    "hash_units",
    "bucket_ranges",
    "choose_variant",
    "Layer",
    "evaluate_eligibility",
    "validate_eligibility",
    "Assignment",
    "assign",
]

_SCALE = float(2**64)


def hash_unit(salt: str, user_id: str | int) -> float:
    """Uniform position of ``user_id`` on ``[0, 1)`` for this salt (BLAKE2b, 64 bits)."""
    h = hashlib.blake2b(f"{salt}:{user_id}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") / _SCALE


def hash_units(salt: str, user_ids: Iterable[str | int]) -> np.ndarray:
    """:func:`hash_unit` for many users at once."""
    return np.fromiter((hash_unit(salt, u) for u in user_ids), dtype=float)


def bucket_ranges(weights: Sequence[float], coverage: float = 1.0) -> list[tuple[float, float]]:
    """Variant ``i`` owns ``[start_i, start_i + coverage * w_i)``, ``start_i = sum(w_<i)``.

    Weights are normalised to sum to 1. The start of each range depends only on the weights, never on
    coverage, which is why ramping up never moves anybody.
    """
    w = np.asarray(weights, dtype=float)
    if w.ndim != 1 or w.size < 1:
        raise ValueError("weights must be a non-empty flat sequence")
    if (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"weights must be >= 0 and not all zero, got {list(w)}")
    if not 0.0 <= coverage <= 1.0:
        raise ValueError(f"coverage must be in [0, 1], got {coverage}")
    w = w / w.sum()
    starts = np.concatenate([[0.0], np.cumsum(w)[:-1]])
    return [(float(s), float(s + coverage * wi)) for s, wi in zip(starts, w, strict=True)]


def choose_variant(u: float, ranges: Sequence[tuple[float, float]]) -> int | None:
    """Index of the range holding ``u``, or None (user outside coverage)."""
    for i, (lo, hi) in enumerate(ranges):
        if lo <= u < hi:
            return i
    return None


@dataclass
class Layer:
    """A surface (e.g. the course page) whose experiments must not overlap.

    Each experiment gets a slice ``[lo, hi)`` of the layer's own hash line; a user takes part in at most
    the one experiment whose slice holds ``hash_unit(layer salt, user)``.
    """

    name: str
    salt: str = ""
    slices: dict[str, tuple[float, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("Layer.name must not be empty")
        if not self.salt:
            self.salt = f"layer:{self.name}"
        for key, (lo, hi) in self.slices.items():
            self._check(key, lo, hi)

    def _check(self, key: str, lo: float, hi: float) -> None:
        if not 0.0 <= lo < hi <= 1.0:
            raise ValueError(f"layer {self.name!r}: slice of {key!r} must satisfy 0 <= lo < hi <= 1")
        for other, (olo, ohi) in self.slices.items():
            if other != key and lo < ohi and olo < hi:
                raise ValueError(
                    f"layer {self.name!r}: slice [{lo}, {hi}) of {key!r} overlaps {other!r} [{olo}, {ohi})"
                )

    def add(self, key: str, lo: float, hi: float) -> tuple[float, float]:
        """Give ``key`` the slice ``[lo, hi)``; refuses overlaps."""
        self._check(key, lo, hi)
        self.slices[key] = (lo, hi)
        return lo, hi

    def allocate(self, key: str, share: float) -> tuple[float, float]:
        """Give ``key`` the first free gap of width ``share``."""
        if key in self.slices:
            return self.slices[key]
        if not 0 < share <= 1:
            raise ValueError(f"share must be in (0, 1], got {share}")
        cursor = 0.0
        for lo, hi in sorted(self.slices.values()):
            if lo - cursor >= share - 1e-12:
                break
            cursor = max(cursor, hi)
        if cursor + share > 1.0 + 1e-12:
            raise ValueError(f"layer {self.name!r} has no free gap of {share:.0%} for {key!r}")
        return self.add(key, cursor, min(cursor + share, 1.0))

    def release(self, key: str) -> None:
        self.slices.pop(key, None)

    def experiment_for(self, user_id: str | int) -> str | None:
        u = hash_unit(self.salt, user_id)
        for key, (lo, hi) in self.slices.items():
            if lo <= u < hi:
                return key
        return None


# --------------------------------------------------------------------------------------------------
# eligibility
# --------------------------------------------------------------------------------------------------

_OPS = {"eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "exists"}


def validate_eligibility(rules: Mapping[str, Any]) -> None:
    """Raise ValueError naming the attribute if a rule is malformed."""
    if not isinstance(rules, Mapping):
        raise TypeError(f"eligibility must be a mapping, got {type(rules).__name__}")
    for attr, cond in rules.items():
        if isinstance(cond, Mapping):
            bad = set(cond) - _OPS
            if bad:
                raise ValueError(f"eligibility.{attr}: unknown operator(s) {sorted(bad)}; use {sorted(_OPS)}")
            for op in ("in", "not_in"):
                if op in cond and not isinstance(cond[op], list | tuple | set | frozenset):
                    raise ValueError(f"eligibility.{attr}.{op} must be a list")


_MULTI = (list, tuple, set, frozenset)


def _match(value: Any, present: bool, cond: Any) -> bool:
    if isinstance(value, _MULTI):
        # a multi-valued attribute (e.g. the segments a user belongs to): a positive rule needs one member
        # to match, a negative rule (ne, not_in) needs every member to pass
        if not isinstance(cond, Mapping):
            return any(_match(v, True, cond) for v in value)
        for op, arg in cond.items():
            if op == "exists":
                ok = present == bool(arg)
            elif op in ("ne", "not_in"):
                ok = all(_match(v, True, {op: arg}) for v in value)
            else:
                ok = any(_match(v, True, {op: arg}) for v in value)
            if not ok:
                return False
        return True
    if not isinstance(cond, Mapping):
        if isinstance(cond, list | tuple | set | frozenset):
            return present and value in cond
        return present and value == cond
    for op, arg in cond.items():
        if op == "exists":
            ok = present == bool(arg)
        elif op == "not_in":
            ok = not present or value not in arg
        elif op == "ne":
            ok = not present or value != arg
        elif not present or value is None:
            ok = False
        elif op == "eq":
            ok = value == arg
        elif op == "in":
            ok = value in arg
        else:
            try:
                ok = {"gt": value > arg, "gte": value >= arg, "lt": value < arg, "lte": value <= arg}[op]
            except TypeError:
                ok = False
        if not ok:
            return False
    return True


def evaluate_eligibility(rules: Mapping[str, Any], attributes: Mapping[str, Any]) -> bool:
    """True when the user's attributes meet every rule (AND over attributes).

    A rule is a value (``{"channel": "feed"}``), a list of allowed values (``{"country": ["CN", "SG"]}``)
    or operators: ``eq, ne, in, not_in, gt, gte, lt, lte, exists`` (``{"days_since_signup": {"lt": 7}}``).
    A missing attribute fails every positive rule and passes ``ne``/``not_in``. A list-valued attribute
    (``{"segment": ["whales", "students"]}``) matches a positive rule when one of its values does, and a
    negative rule when none of them is excluded.
    """
    for attr, cond in rules.items():
        present = attr in attributes
        if not _match(attributes.get(attr), present, cond):
            return False
    return True


# --------------------------------------------------------------------------------------------------
# one call for one user
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Assignment:
    """The answer for one user: ``variant`` is None when the user is not in the experiment (``reason``)."""

    experiment: str
    user_id: str
    variant: str | None
    variant_index: int | None
    bucket: float
    reason: str


def assign(
    key: str,
    user_id: str | int,
    variants: Sequence[str],
    weights: Sequence[float],
    salt: str | None = None,
    coverage: float = 1.0,
    eligibility: Mapping[str, Any] | None = None,
    attributes: Mapping[str, Any] | None = None,
    layer: Layer | None = None,
    running: bool = True,
) -> Assignment:
    """Assign one user: running? eligible? in this experiment's layer slice? then hash into a variant."""
    uid = str(user_id)
    if not uid:
        raise ValueError("user_id must not be empty")
    if len(variants) != len(weights):
        raise ValueError(f"experiment {key!r}: {len(variants)} variants but {len(weights)} weights")
    u = hash_unit(salt or key, uid)
    if not running:
        return Assignment(key, uid, None, None, u, "not_running")
    if eligibility and not evaluate_eligibility(eligibility, attributes or {}):
        return Assignment(key, uid, None, None, u, "not_eligible")
    if layer is not None:
        if key not in layer.slices:
            raise ValueError(f"experiment {key!r} has no slice in layer {layer.name!r}")
        if layer.experiment_for(uid) != key:
            return Assignment(key, uid, None, None, u, "other_experiment_in_layer")
    i = choose_variant(u, bucket_ranges(weights, coverage))
    if i is None:
        return Assignment(key, uid, None, None, u, "outside_coverage")
    return Assignment(key, uid, variants[i], i, u, "assigned")
