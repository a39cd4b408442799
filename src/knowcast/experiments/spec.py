"""An experiment's definition and life: variants, eligibility, metrics, state machine and audit trail.

Pure data: parse from a dict or a YAML string (the CLI/API read files and bodies), validate with errors
that name the field, and change only through methods that return a new spec with an audit entry, so the
store can persist every version and nobody edits a running experiment behind its users' backs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import yaml

from knowcast.domain import ExperimentState
from knowcast.experiments.assignment import Assignment, Layer, assign, validate_eligibility

__all__ = ["Variant", "AuditEntry", "ExperimentSpec", "TRANSITIONS", "FROZEN_WHILE_RUNNING"]

_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")

#: Allowed life-cycle moves. A stopped experiment stays stopped: rerun it under a new key and salt.
TRANSITIONS: dict[str, frozenset[str]] = {
    ExperimentState.DRAFT: frozenset({ExperimentState.RUNNING, ExperimentState.STOPPED}),
    ExperimentState.RUNNING: frozenset({ExperimentState.STOPPED}),
    ExperimentState.STOPPED: frozenset(),
}
#: Fields that would re-shuffle or re-define users and results once running.
FROZEN_WHILE_RUNNING = frozenset(
    {"variants", "salt", "layer", "layer_slice", "decision_metric", "eligibility"}
)


@dataclass(frozen=True)
class Variant:
    key: str
    weight: float
    description: str = ""


@dataclass(frozen=True)
class AuditEntry:
    ts: int  # epoch ms
    actor: str
    action: str  # create | update | start | stop | ramp
    changes: dict[str, Any] = field(default_factory=dict)


def _ms(value: Any, name: str) -> int | None:
    """Epoch ms from int/float, ISO string or datetime."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a time, got {value!r}")
    if isinstance(value, int | float):
        return int(value)
    try:
        import pandas as pd

        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{name}: cannot parse time {value!r}") from exc
    if ts.tzinfo is None:
        ts = ts.tz_localize("UTC")
    return int(ts.value // 1_000_000)


def _float(value: Any, name: str) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a number, got {value!r}") from exc


@dataclass(frozen=True)
class ExperimentSpec:
    """Everything that defines an experiment. The first variant is the control."""

    key: str
    variants: tuple[Variant, ...]
    decision_metric: str
    name: str = ""
    salt: str = ""
    layer: str | None = None
    layer_share: float = 1.0
    #: This experiment's ``[lo, hi)`` slice of its layer's hash line; the store allocates it on create.
    layer_slice: tuple[float, float] | None = None
    coverage: float = 1.0
    eligibility: dict[str, Any] = field(default_factory=dict)
    guardrails: tuple[str, ...] = ()
    start: int | None = None
    stop: int | None = None
    state: str = ExperimentState.DRAFT
    description: str = ""
    audit: tuple[AuditEntry, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not _KEY_RE.match(self.key):
            raise ValueError(f"key {self.key!r}: use 1-128 letters, digits, '_', '-', '.', ':'")
        if not self.salt:
            object.__setattr__(self, "salt", self.key)
        if len(self.variants) < 2:
            raise ValueError(f"experiment {self.key!r}: variants needs at least 2 entries (control first)")
        seen: set[str] = set()
        for i, v in enumerate(self.variants):
            if not v.key:
                raise ValueError(f"variants[{i}].key must not be empty")
            if v.key in seen:
                raise ValueError(f"variants[{i}].key {v.key!r} is duplicated")
            if not v.weight >= 0:
                raise ValueError(f"variants[{i}].weight must be >= 0, got {v.weight}")
            seen.add(v.key)
        if sum(v.weight for v in self.variants) <= 0:
            raise ValueError("variants: weights must not all be zero")
        if not 0.0 <= self.coverage <= 1.0:
            raise ValueError(f"coverage must be in [0, 1], got {self.coverage}")
        if not 0.0 < self.layer_share <= 1.0:
            raise ValueError(f"layer_share must be in (0, 1], got {self.layer_share}")
        if self.layer_slice is not None:
            if self.layer is None:
                raise ValueError("layer_slice needs a layer")
            try:
                lo, hi = (float(x) for x in self.layer_slice)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"layer_slice must be [lo, hi], got {self.layer_slice!r}") from exc
            if not 0.0 <= lo < hi <= 1.0:
                raise ValueError(f"layer_slice must satisfy 0 <= lo < hi <= 1, got {self.layer_slice!r}")
            object.__setattr__(self, "layer_slice", (lo, hi))
        if not self.decision_metric:
            raise ValueError("decision_metric must not be empty")
        if self.state not in TRANSITIONS:
            raise ValueError(f"state must be one of {sorted(TRANSITIONS)}, got {self.state!r}")
        object.__setattr__(self, "state", ExperimentState(self.state).value)  # plain str for YAML/JSON
        if self.start is not None and self.stop is not None and self.stop <= self.start:
            raise ValueError("stop must be after start")
        validate_eligibility(self.eligibility)

    # ------------------------------------------------------------------ parsing
    @classmethod
    def from_dict(cls, data: Mapping[str, Any], actor: str = "system", ts: int = 0) -> ExperimentSpec:
        """Parse and validate; accepts ``variants`` as a list of {key, weight} or a {key: weight} map."""
        if not isinstance(data, Mapping):
            raise TypeError(f"experiment spec must be a mapping, got {type(data).__name__}")
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown field(s) {sorted(unknown)} in experiment spec")
        for req in ("key", "variants", "decision_metric"):
            if req not in data:
                raise ValueError(f"experiment spec: missing required field {req!r}")
        raw = data["variants"]
        if isinstance(raw, Mapping):
            raw = [{"key": k, "weight": w} for k, w in raw.items()]
        if not isinstance(raw, Sequence) or isinstance(raw, str):
            raise ValueError("variants must be a list of {key, weight} or a {key: weight} mapping")
        variants = []
        for i, v in enumerate(raw):
            if isinstance(v, str):
                v = {"key": v}
            if not isinstance(v, Mapping) or "key" not in v:
                raise ValueError(f"variants[{i}] must be a mapping with a 'key'")
            try:
                weight = float(v.get("weight", 1.0))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"variants[{i}].weight must be a number, got {v.get('weight')!r}") from exc
            variants.append(Variant(str(v["key"]), weight, str(v.get("description", ""))))
        guard = data.get("guardrails") or ()
        if isinstance(guard, str):
            guard = (guard,)
        audit = tuple(AuditEntry(**a) if isinstance(a, Mapping) else a for a in data.get("audit") or ())
        spec = cls(
            key=data["key"],
            variants=tuple(variants),
            decision_metric=str(data["decision_metric"]),
            name=str(data.get("name") or ""),
            salt=str(data.get("salt") or ""),
            layer=None if data.get("layer") in (None, "") else str(data["layer"]),
            layer_share=_float(data.get("layer_share", 1.0), "layer_share"),
            layer_slice=data.get("layer_slice"),
            coverage=_float(data.get("coverage", 1.0), "coverage"),
            eligibility=dict(data.get("eligibility") or {}),
            guardrails=tuple(str(g) for g in guard),
            start=_ms(data.get("start"), "start"),
            stop=_ms(data.get("stop"), "stop"),
            state=str(data.get("state", ExperimentState.DRAFT)),
            description=str(data.get("description") or ""),
            audit=audit,
        )
        if not spec.audit:
            created = AuditEntry(ts, actor, "create", {"spec": spec.to_dict(audit=False)})
            spec = replace(spec, audit=(created,))
        return spec

    @classmethod
    def from_yaml(cls, text: str, actor: str = "system", ts: int = 0) -> ExperimentSpec:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValueError(f"experiment YAML does not parse: {exc}") from exc
        return cls.from_dict(data, actor=actor, ts=ts)

    def to_dict(self, audit: bool = True) -> dict[str, Any]:
        d = asdict(self)
        d["variants"] = [asdict(v) for v in self.variants]
        d["guardrails"] = list(self.guardrails)
        d["layer_slice"] = list(self.layer_slice) if self.layer_slice else None
        if audit:
            d["audit"] = [asdict(a) for a in self.audit]
        else:
            d.pop("audit")
        return d

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)

    # ------------------------------------------------------------------ properties
    @property
    def control(self) -> str:
        return self.variants[0].key

    @property
    def variant_keys(self) -> list[str]:
        return [v.key for v in self.variants]

    @property
    def weights(self) -> list[float]:
        return [v.weight for v in self.variants]

    # ------------------------------------------------------------------ life cycle
    def _log(self, actor: str, ts: int, action: str, changes: dict[str, Any], **new: Any) -> ExperimentSpec:
        return replace(self, audit=(*self.audit, AuditEntry(int(ts), actor, action, changes)), **new)

    def transition(self, to: str, actor: str, ts: int) -> ExperimentSpec:
        if to not in TRANSITIONS:
            raise ValueError(f"unknown state {to!r}")
        to = ExperimentState(to).value
        if to not in TRANSITIONS[self.state]:
            raise ValueError(f"experiment {self.key!r}: cannot go from {self.state} to {to}")
        new: dict[str, Any] = {"state": to}
        if to == ExperimentState.RUNNING and self.start is None:
            new["start"] = int(ts)
        if to == ExperimentState.STOPPED:
            new["stop"] = int(ts)
        action = "start" if to == ExperimentState.RUNNING else "stop"
        return self._log(actor, ts, action, {"state": [self.state, to]}, **new)

    def start_running(self, actor: str, ts: int) -> ExperimentSpec:
        return self.transition(ExperimentState.RUNNING, actor, ts)

    def stop_running(self, actor: str, ts: int) -> ExperimentSpec:
        return self.transition(ExperimentState.STOPPED, actor, ts)

    def ramp(self, coverage: float, actor: str, ts: int) -> ExperimentSpec:
        """Change traffic coverage. While running it may only go up (ranges only grow; nobody moves)."""
        if self.state == ExperimentState.STOPPED:
            raise ValueError(f"experiment {self.key!r} is stopped")
        if self.state == ExperimentState.RUNNING and coverage < self.coverage:
            raise ValueError(
                f"experiment {self.key!r}: coverage can only grow while running "
                f"({self.coverage} -> {coverage})"
            )
        return self._log(actor, ts, "ramp", {"coverage": [self.coverage, coverage]}, coverage=coverage)

    def update(self, changes: Mapping[str, Any], actor: str, ts: int) -> ExperimentSpec:
        """Apply validated field changes; refused when stopped, and for frozen fields when running."""
        if self.state == ExperimentState.STOPPED:
            raise ValueError(f"experiment {self.key!r} is stopped and cannot change")
        if "state" in changes or "audit" in changes or "key" in changes:
            raise ValueError("use start_running/stop_running for state; key and audit cannot be updated")
        if self.state == ExperimentState.RUNNING:
            frozen = set(changes) & FROZEN_WHILE_RUNNING
            if frozen:
                raise ValueError(f"experiment {self.key!r} is running: {sorted(frozen)} cannot change")
            if "coverage" in changes and float(changes["coverage"]) < self.coverage:
                raise ValueError("coverage can only grow while running")
        data = self.to_dict(audit=False)
        before = {k: data.get(k) for k in changes}
        data.update(changes)
        data["audit"] = [asdict(a) for a in self.audit]
        new = ExperimentSpec.from_dict(data)
        after = {k: new.to_dict(audit=False).get(k) for k in changes}
        diff = {k: [before[k], after[k]] for k in changes if before[k] != after[k]}
        return new._log(actor, ts, "update", diff)

    # ------------------------------------------------------------------ assignment
    def assign(self, user_id: str | int, attributes: Mapping[str, Any] | None = None,
               layer: Layer | None = None, now: int | None = None) -> Assignment:
        """Which variant this user sees now (None outside the experiment), sticky across calls."""
        running = self.state == ExperimentState.RUNNING
        if running and now is not None and self.stop is not None and now >= self.stop:
            running = False
        if running and now is not None and self.start is not None and now < self.start:
            running = False
        if layer is not None and self.layer is not None and layer.name != self.layer:
            raise ValueError(f"experiment {self.key!r} is in layer {self.layer!r}, not {layer.name!r}")
        return assign(self.key, user_id, self.variant_keys, self.weights, salt=self.salt,
                      coverage=self.coverage, eligibility=self.eligibility, attributes=attributes,
                      layer=layer if self.layer else None, running=running)
