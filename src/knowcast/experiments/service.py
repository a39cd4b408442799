"""Experiments as a service: the store-backed life cycle, assignment, exposure logging and results.

This is the one module of ``knowcast.experiments`` that touches the database. It ties the pure pieces
together:

* **life cycle** (create / update / start / ramp / stop): load the spec, apply the pure
  :class:`~knowcast.experiments.spec.ExperimentSpec` method, write the new spec and one
  ``experiment_audit`` row (who, what, the diff) in the same transaction. Illegal moves raise
  :class:`Conflict` (HTTP 409), bad specs :class:`SpecError` (422, naming the field), unknown keys
  :class:`NotFound` (404).
* **assignment**: the parsed spec (and its layer slice) is cached per engine in process, invalidated by
  every change made here and re-read after a few seconds at most (changes made by another process), so
  a call is a hash and a range lookup: a few microseconds unless eligibility needs the user's stored
  attributes or segments.
* **exposures** are events (``type = exposure``) written through the normal validated ingestion; the
  importer keeps each user's first exposure in ``exposures``.
* **results** read with SQL only what the metrics need: the exposed users (``exposures``) and their events
  from the CUPED pre-period on, joined on ``exposures``; then :mod:`metrics` and :mod:`report` do the
  statistics.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import numbers
import re
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import Engine, bindparam, func, select, text
from sqlalchemy.orm import Session

from knowcast.domain import EVENT_TYPES, Channel, EventType, ExperimentState
from knowcast.experiments.assignment import Assignment, Layer
from knowcast.experiments.metrics import (
    DAY_MS,
    HOUR_MS,
    MetricDef,
    compute_metric,
    daily_exposures,
    metric_by_name,
)
from knowcast.experiments.report import build_report
from knowcast.experiments.spec import FROZEN_WHILE_RUNNING, TRANSITIONS, ExperimentSpec
from knowcast.store.models import Experiment, ExperimentAudit, Exposure, SegmentMember, User

__all__ = [
    "ExperimentError",
    "NotFound",
    "Conflict",
    "SpecError",
    "create_experiment",
    "get_experiment",
    "list_experiments",
    "update_experiment",
    "start_experiment",
    "stop_experiment",
    "ramp_experiment",
    "audit_trail",
    "assign",
    "log_exposure",
    "results",
    "report_csv",
    "analyze_real",
    "REAL_EXPERIMENTS",
    "invalidate",
    "NEW_USER_DAYS",
]

#: A user whose account is younger than this many days counts as ``new_user`` for eligibility.
NEW_USER_DAYS = 7
#: How long an in-process cached spec is trusted before it is re-read (changes by other processes).
CACHE_TTL_S = 2.0
_CHANNELS = frozenset(c.value for c in Channel)
_SPEC_FIELDS = tuple(ExperimentSpec.__dataclass_fields__)


# --------------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------------


class ExperimentError(Exception):
    """Base of the errors the faces turn into HTTP statuses / CLI exit codes."""


class NotFound(ExperimentError, LookupError):
    """Unknown experiment key (404)."""


class Conflict(ExperimentError):
    """A change the experiment's current state forbids (409): illegal transition, key taken, ..."""


class SpecError(ExperimentError, ValueError):
    """An invalid spec or argument (422); ``field`` names the offending field where known."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field if field is not None else _guess_field(message)


def _guess_field(message: str) -> str | None:
    """The spec field an error message is about (messages from spec.py start with or quote it)."""
    m = re.search(r"missing required field '(\w+)'", message) or re.search(r"unknown field\(s\) \['(\w+)'",
                                                                          message)
    if m:
        return m.group(1)
    m = re.match(r"^(?:experiment spec: )?([a-z_]+(?:\[\d+\])?(?:\.[\w]+)*)", message)
    if m and m.group(1).split("[")[0].split(".")[0] in _SPEC_FIELDS:
        return m.group(1)
    for f in _SPEC_FIELDS:
        if re.search(rf"\b{f}\b", message):
            return f
    return None


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------


def now_ms() -> int:
    return int(time.time() * 1000)


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _parse(spec: Mapping[str, Any] | str | ExperimentSpec, actor: str, ts: int) -> ExperimentSpec:
    if isinstance(spec, ExperimentSpec):
        return spec
    try:
        if isinstance(spec, str | bytes):
            text_ = spec.decode() if isinstance(spec, bytes) else spec
            return ExperimentSpec.from_yaml(text_, actor=actor, ts=ts)
        return ExperimentSpec.from_dict(spec, actor=actor, ts=ts)
    except (ValueError, TypeError) as exc:
        raise SpecError(str(exc)) from None


def _check_metrics(spec: ExperimentSpec) -> None:
    try:
        metric_by_name(spec.decision_metric)
    except (ValueError, TypeError) as exc:
        raise SpecError(f"decision_metric: {exc}", "decision_metric") from None
    for i, g in enumerate(spec.guardrails):
        try:
            metric_by_name(g)
        except (ValueError, TypeError) as exc:
            raise SpecError(f"guardrails[{i}]: {exc}", f"guardrails[{i}]") from None


def _load(session: Session, key: str, lock: bool = False) -> tuple[Experiment, ExperimentSpec]:
    stmt = select(Experiment).where(Experiment.key == key)
    if lock:
        stmt = stmt.with_for_update()
    row = session.scalar(stmt)
    if row is None:
        raise NotFound(f"unknown experiment {key!r}")
    return row, ExperimentSpec.from_dict(row.spec)


def _stored(spec: ExperimentSpec) -> dict[str, Any]:
    return spec.to_dict(audit=False)


def _layer_of(session: Session, spec: ExperimentSpec) -> Layer:
    """The layer with the slices of the other live (not stopped) experiments on the same surface."""
    assert spec.layer is not None
    layer = Layer(spec.layer)
    rows = session.execute(
        select(Experiment.key, Experiment.spec, Experiment.state).where(Experiment.key != spec.key)
    ).all()
    for key, data, state in rows:
        if state == ExperimentState.STOPPED or data.get("layer") != spec.layer or not data.get("layer_slice"):
            continue
        lo, hi = data["layer_slice"]
        layer.slices[key] = (float(lo), float(hi))
    return layer


def _place_in_layer(session: Session, spec: ExperimentSpec) -> ExperimentSpec:
    """Give the experiment its own slice of the layer (or check the one it asked for)."""
    if spec.layer is None:
        return spec
    layer = _layer_of(session, spec)
    try:
        if spec.layer_slice is not None:
            layer.add(spec.key, *spec.layer_slice)
            return spec
        lo, hi = layer.allocate(spec.key, spec.layer_share)
    except ValueError as exc:
        raise Conflict(str(exc)) from None
    return replace(spec, layer_slice=(lo, hi))


def _write_audit(session: Session, key: str, spec: ExperimentSpec) -> None:
    entry = spec.audit[-1]
    session.add(
        ExperimentAudit(
            experiment_key=key,
            at=_dt(entry.ts),
            actor=entry.actor,
            action=entry.action,
            detail=_jsonable(entry.changes),
        )
    )


def _jsonable(value: Any) -> Any:
    """Plain JSON: str keys, lists, Python numbers, NaN/inf as None (strict JSON has no NaN)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        f = float(value)
        return f if math.isfinite(f) else None
    return value


# --------------------------------------------------------------------------------------------------
# life cycle
# --------------------------------------------------------------------------------------------------


def create_experiment(
    engine: Engine, spec: Mapping[str, Any] | str | ExperimentSpec, actor: str, now: int | None = None
) -> ExperimentSpec:
    """Validate and store a new experiment (state draft) with a ``create`` audit row.

    ``spec`` is a dict, a YAML string or a spec. Raises SpecError (bad field, unknown metric), Conflict
    (key taken, no room left in the layer).
    """
    ts = now_ms() if now is None else int(now)
    if isinstance(spec, Mapping):
        for f in ("state", "audit"):
            if f in spec and not (f == "state" and spec[f] == ExperimentState.DRAFT):
                raise SpecError(f"{f}: a new experiment starts as a draft with an empty audit trail", f)
    parsed = _parse(spec, actor, ts)
    if parsed.state != ExperimentState.DRAFT:
        raise SpecError("state: a new experiment starts as a draft; use start/stop", "state")
    _check_metrics(parsed)
    with Session(engine) as session, session.begin():
        if session.get(Experiment, parsed.key) is not None:
            raise Conflict(f"experiment {parsed.key!r} already exists")
        parsed = _place_in_layer(session, parsed)
        parsed = replace(parsed, audit=parsed.audit[-1:])  # the create entry, with the final spec
        session.add(
            Experiment(
                key=parsed.key,
                name=parsed.name,
                state=parsed.state,
                spec=_stored(parsed),
                created_at=_dt(ts),
                updated_at=_dt(ts),
            )
        )
        session.flush()
        session.add(
            ExperimentAudit(
                experiment_key=parsed.key, at=_dt(ts), actor=actor, action="create",
                detail={"spec": _jsonable(_stored(parsed))},
            )
        )
    invalidate(engine, parsed.key)
    return parsed


def get_experiment(engine: Engine, key: str) -> ExperimentSpec:
    with Session(engine) as session:
        return _load(session, key)[1]


def experiment_dict(engine: Engine, key: str) -> dict[str, Any]:
    """The stored spec plus created/updated times, for the faces."""
    with Session(engine) as session:
        row, spec = _load(session, key)
        return {
            **_stored(spec),
            "created_at": row.created_at.isoformat() if row.created_at else None,
            "updated_at": row.updated_at.isoformat() if row.updated_at else None,
        }


def list_experiments(engine: Engine, state: str | None = None) -> list[dict[str, Any]]:
    """Every experiment (newest first): key, name, state, variants, metric, coverage, layer, times."""
    if state is not None and state not in TRANSITIONS:
        raise SpecError(f"state must be one of {sorted(TRANSITIONS)}, got {state!r}", "state")
    with Session(engine) as session:
        stmt = select(Experiment).order_by(Experiment.created_at.desc(), Experiment.key)
        if state:
            stmt = stmt.where(Experiment.state == state)
        out = []
        for row in session.scalars(stmt):
            s = row.spec
            out.append(
                {
                    "key": row.key,
                    "name": row.name,
                    "state": row.state,
                    "variants": [v["key"] for v in s.get("variants", [])],
                    "weights": [v["weight"] for v in s.get("variants", [])],
                    "decision_metric": s.get("decision_metric"),
                    "guardrails": s.get("guardrails", []),
                    "coverage": s.get("coverage"),
                    "layer": s.get("layer"),
                    "start": s.get("start"),
                    "stop": s.get("stop"),
                    "created_at": row.created_at.isoformat() if row.created_at else None,
                    "updated_at": row.updated_at.isoformat() if row.updated_at else None,
                }
            )
        return out


def _change(
    engine: Engine,
    key: str,
    actor: str,
    now: int | None,
    fn: Callable[[ExperimentSpec, int, Session], ExperimentSpec],
) -> ExperimentSpec:
    """Load (row-locked on PostgreSQL), apply one pure change, store the spec and its audit row."""
    ts = now_ms() if now is None else int(now)
    with Session(engine) as session, session.begin():
        row, spec = _load(session, key, lock=True)
        new = fn(spec, ts, session)
        if new is spec:
            return spec
        row.spec = _stored(new)
        row.state = new.state
        row.name = new.name
        row.updated_at = _dt(ts)
        _write_audit(session, key, new)
    invalidate(engine, key)
    return new


def start_experiment(engine: Engine, key: str, actor: str, now: int | None = None) -> ExperimentSpec:
    """draft -> running (Conflict otherwise)."""

    def fn(spec: ExperimentSpec, ts: int, session: Session) -> ExperimentSpec:
        if ExperimentState.RUNNING not in TRANSITIONS[spec.state]:
            raise Conflict(f"experiment {key!r} is {spec.state}: cannot start it")
        return spec.start_running(actor, ts)

    return _change(engine, key, actor, now, fn)


def stop_experiment(engine: Engine, key: str, actor: str, now: int | None = None) -> ExperimentSpec:
    """draft/running -> stopped (Conflict when already stopped); a stopped experiment frees its slice."""

    def fn(spec: ExperimentSpec, ts: int, session: Session) -> ExperimentSpec:
        if ExperimentState.STOPPED not in TRANSITIONS[spec.state]:
            raise Conflict(f"experiment {key!r} is {spec.state}: cannot stop it")
        if spec.start is not None and ts <= spec.start:
            ts = spec.start + 1  # stop must come after start (a start time in the future)
        return spec.stop_running(actor, ts)

    return _change(engine, key, actor, now, fn)


def ramp_experiment(
    engine: Engine, key: str, coverage: float, actor: str, now: int | None = None
) -> ExperimentSpec:
    """Set the share of traffic in the experiment; while running it may only grow (nobody moves)."""
    if isinstance(coverage, bool) or not isinstance(coverage, int | float) or not 0.0 <= coverage <= 1.0:
        raise SpecError(f"coverage must be a number in [0, 1], got {coverage!r}", "coverage")

    def fn(spec: ExperimentSpec, ts: int, session: Session) -> ExperimentSpec:
        if spec.state == ExperimentState.STOPPED:
            raise Conflict(f"experiment {key!r} is stopped: cannot ramp it")
        if spec.state == ExperimentState.RUNNING and coverage < spec.coverage:
            raise Conflict(
                f"experiment {key!r} is running: coverage can only grow ({spec.coverage} -> {coverage}); "
                "lowering it would take users out of their variant"
            )
        return spec.ramp(float(coverage), actor, ts)

    return _change(engine, key, actor, now, fn)


def update_experiment(
    engine: Engine, key: str, changes: Mapping[str, Any], actor: str, now: int | None = None
) -> ExperimentSpec:
    """Change fields of a draft (or the unfrozen fields of a running experiment), audited with the diff."""
    if not isinstance(changes, Mapping) or not changes:
        raise SpecError("changes must be a non-empty mapping of spec fields")
    bad = [k for k in changes if k not in _SPEC_FIELDS]
    if bad:
        raise SpecError(f"unknown field(s) {sorted(bad)} in experiment spec", bad[0])
    for f in ("key", "state", "audit"):
        if f in changes:
            raise SpecError(f"{f} cannot be updated (use start/stop for the state)", f)

    def fn(spec: ExperimentSpec, ts: int, session: Session) -> ExperimentSpec:
        if spec.state == ExperimentState.STOPPED:
            raise Conflict(f"experiment {key!r} is stopped and cannot change")
        if spec.state == ExperimentState.RUNNING:
            frozen = sorted(set(changes) & (FROZEN_WHILE_RUNNING | {"layer_share"}))
            if frozen:
                raise Conflict(f"experiment {key!r} is running: {frozen} cannot change")
            if "coverage" in changes and isinstance(changes["coverage"], int | float) \
                    and changes["coverage"] < spec.coverage:
                raise Conflict(f"experiment {key!r} is running: coverage can only grow")
        ch = dict(changes)
        if ("layer" in ch or "layer_share" in ch) and "layer_slice" not in ch:
            ch["layer_slice"] = None  # re-allocated below
        try:
            new = spec.update(ch, actor, ts)
        except (ValueError, TypeError) as exc:
            raise SpecError(str(exc)) from None
        _check_metrics(new)
        if new.layer is not None and (new.layer_slice is None or "layer_slice" in changes):
            new = _place_in_layer(session, new)
        return new

    return _change(engine, key, actor, now, fn)


def audit_trail(engine: Engine, key: str) -> list[dict[str, Any]]:
    """Every change, oldest first: ``at`` (ISO), ``ts`` (epoch ms), actor, action, detail."""
    with Session(engine) as session:
        if session.get(Experiment, key) is None:
            raise NotFound(f"unknown experiment {key!r}")
        rows = session.scalars(
            select(ExperimentAudit).where(ExperimentAudit.experiment_key == key).order_by(ExperimentAudit.id)
        ).all()
        out = []
        for r in rows:
            at = r.at if r.at.tzinfo else r.at.replace(tzinfo=UTC)
            out.append({"at": at.isoformat(), "ts": int(at.timestamp() * 1000), "actor": r.actor,
                        "action": r.action, "detail": r.detail})
        return out


# --------------------------------------------------------------------------------------------------
# assignment
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Cached:
    spec: ExperimentSpec
    layer: Layer | None
    loaded: float
    needs_user: bool  # eligibility reads stored attributes / segments
    needs_segments: bool


_CACHE: weakref.WeakKeyDictionary[Engine, dict[str, _Cached]] = weakref.WeakKeyDictionary()
_CACHE_LOCK = threading.Lock()


def invalidate(engine: Engine | None = None, key: str | None = None) -> None:
    """Forget cached specs: one key of one engine, every key of an engine, or everything."""
    with _CACHE_LOCK:
        if engine is None:
            _CACHE.clear()
        elif key is None:
            _CACHE.pop(engine, None)
        else:
            _CACHE.get(engine, {}).pop(key, None)


def _cached(engine: Engine, key: str) -> _Cached:
    per = _CACHE.get(engine)
    hit = per.get(key) if per is not None else None
    if hit is not None and time.monotonic() - hit.loaded < CACHE_TTL_S:
        return hit
    spec = get_experiment(engine, key)
    layer = None
    if spec.layer is not None and spec.layer_slice is not None:
        layer = Layer(spec.layer, slices={spec.key: spec.layer_slice})
    rules = spec.eligibility
    entry = _Cached(spec, layer, time.monotonic(), bool(rules), "segment" in rules)
    with _CACHE_LOCK:
        _CACHE.setdefault(engine, {})[key] = entry
    return entry


def user_attributes(engine: Engine, user_id: str, segments: bool = True, now: int | None = None
                    ) -> dict[str, Any]:
    """Stored attributes of a user plus what eligibility rules may ask about.

    ``new_user`` (account younger than NEW_USER_DAYS; a user the store does not know yet is new),
    ``days_since_signup`` and ``segment`` (the list of segment ids the user is a member of).
    """
    ts = now_ms() if now is None else now
    with engine.connect() as conn:
        row = conn.execute(select(User.attributes, User.created_at).where(User.id == user_id)).first()
        segs = (
            list(conn.scalars(select(SegmentMember.segment_id).where(SegmentMember.user_id == user_id)))
            if segments
            else []
        )
    attrs: dict[str, Any] = {}
    if row is None:
        attrs.update(new_user=True, days_since_signup=0.0)
    else:
        attrs.update(row[0] or {})
        created = row[1]
        if created is not None:
            if created.tzinfo is None:
                created = created.replace(tzinfo=UTC)
            days = max(0.0, (ts - created.timestamp() * 1000) / DAY_MS)
            attrs.setdefault("days_since_signup", round(days, 3))
            attrs.setdefault("new_user", days < NEW_USER_DAYS)
    if segments:
        attrs["segment"] = segs
    return attrs


def assign(
    engine: Engine,
    key: str,
    user_id: str | int,
    attributes: Mapping[str, Any] | None = None,
    *,
    now: int | None = None,
    log: bool = False,
) -> Assignment:
    """Which variant ``user_id`` sees now: deterministic, sticky, from the cached spec.

    ``attributes`` (channel, country, device, ...) come with the request and win over stored ones; the
    store is read only when the eligibility rules need something the caller did not send. ``log=True``
    also writes the exposure event when the user is in a variant.
    """
    entry = _cached(engine, key)
    uid = str(user_id)
    attrs: Mapping[str, Any] = attributes or {}
    rules = entry.spec.eligibility
    if entry.needs_user and any(r not in attrs for r in rules):
        stored = user_attributes(engine, uid, segments=entry.needs_segments, now=now)
        attrs = {**stored, **attrs}
    ts = now_ms() if now is None else now
    try:
        result = entry.spec.assign(uid, attrs, layer=entry.layer, now=ts)
    except ValueError as exc:
        raise SpecError(str(exc), "user_id") from None
    if log and result.variant is not None:
        log_exposure(engine, key, uid, result.variant, ts=ts, channel=attrs.get("channel"),
                     device=attrs.get("device"), check=False)
    return result


def _exposure_id(key: str, user_id: str, variant: str) -> str:
    eid = f"exposure:{key}:{user_id}:{variant}"
    if len(eid) <= 128:
        return eid
    return "exposure:" + hashlib.blake2b(eid.encode(), digest_size=16).hexdigest()


def log_exposure(
    engine: Engine,
    key: str,
    user_id: str,
    variant: str,
    *,
    ts: int | None = None,
    channel: str | None = None,
    device: str | None = None,
    source: str | None = None,
    check: bool = True,
) -> bool:
    """Write an ``exposure`` event through validated ingestion; True if new, False if already logged.

    The event id is ``exposure:<key>:<user>:<variant>``, so logging the same exposure again stores
    nothing and the user's first exposure time stays the first.
    """
    from knowcast.ingest.service import ImportRejected, import_records

    if check:
        spec = _cached(engine, key).spec
        if variant not in spec.variant_keys:
            raise SpecError(f"variant {variant!r} is not one of {spec.variant_keys}", "variant")
    chan = str(channel).lower() if channel is not None else None
    rec = {
        "event_id": _exposure_id(key, str(user_id), variant),
        "type": EventType.EXPOSURE.value,
        "ts": now_ms() if ts is None else int(ts),
        "user_id": str(user_id),
        "experiment": key,
        "variant": variant,
        "channel": chan if chan in _CHANNELS else None,
        "device": None if device is None else str(device)[:32],
        "source": source,
    }
    try:
        report = import_records(engine, "events", [rec], create_missing=True, source="experiments")
    except ImportRejected as exc:
        raise SpecError(str(exc)) from None
    return report.rows_written > 0


# --------------------------------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------------------------------


def _metric_defs(spec: ExperimentSpec) -> dict[str, MetricDef]:
    names = [spec.decision_metric, *[g for g in spec.guardrails if g != spec.decision_metric]]
    return {n: metric_by_name(n) for n in names}


def exposed_users(engine: Engine, key: str) -> tuple[pd.DataFrame, int]:
    """``(user_id, variant, exposure_ts)`` of the exposed users, and how many saw several variants.

    Users logged in more than one variant are dropped (their exposure is ambiguous), as
    :func:`~knowcast.experiments.metrics.first_exposures` does.
    """
    with engine.connect() as conn:
        rows = conn.execute(
            select(Exposure.user_id, Exposure.variant, Exposure.first_ts).where(
                Exposure.experiment_key == key
            )
        ).all()
        multi = [
            r[0]
            for r in conn.execute(
                text(
                    "SELECT user_id FROM events WHERE type = :t AND experiment = :k "
                    "GROUP BY user_id HAVING COUNT(DISTINCT variant) > 1"
                ),
                {"t": EventType.EXPOSURE.value, "k": key},
            )
        ]
    ex = pd.DataFrame(rows, columns=["user_id", "variant", "exposure_ts"])
    if multi:
        ex = ex[~ex["user_id"].isin(set(multi))]
    ex = ex.sort_values("user_id", kind="stable").reset_index(drop=True)
    ex["exposure_ts"] = ex["exposure_ts"].astype("int64")
    return ex, len(multi)


def experiment_events(
    engine: Engine, key: str, metrics: Mapping[str, MetricDef], pre_days: float | None
) -> pd.DataFrame:
    """The events the metrics need: exposed users only, types the metrics count, from the pre-period on."""
    types: set[str] = set()
    ends: list[float | None] = []
    for m in metrics.values():
        for d in (m, m.denominator):
            if d is not None:
                types.update(d.event_types)
                ends.append(d.end_hours)
    types &= EVENT_TYPES - {EventType.EXPOSURE.value}
    sql = (
        "SELECT e.user_id, e.type, e.ts, e.amount, e.watch_seconds FROM events e "
        "JOIN exposures x ON x.user_id = e.user_id AND x.experiment_key = :key "
        "WHERE e.type IN :types AND e.ts >= x.first_ts - :pre"
    )
    params: dict[str, Any] = {"key": key, "types": sorted(types), "pre": int((pre_days or 0) * DAY_MS)}
    if ends and all(e is not None for e in ends):
        sql += " AND e.ts < x.first_ts + :post"
        params["post"] = int(max(e for e in ends if e is not None) * HOUR_MS)
    stmt = text(sql).bindparams(bindparam("types", expanding=True))
    cols = ["user_id", "type", "ts", "amount", "watch_seconds"]
    with engine.connect() as conn:
        rows = conn.execute(stmt, params).all()
    ev = pd.DataFrame(rows, columns=cols)
    ev["ts"] = ev["ts"].astype("int64")
    for c in ("amount", "watch_seconds"):
        ev[c] = pd.to_numeric(ev[c], errors="coerce")
    return ev


def results(
    engine: Engine,
    key: str,
    *,
    engine_name: str = "frequentist",
    alpha: float = 0.05,
    relative: bool = True,
    mde: float = 0.05,
    cuped_days: float | None = 14.0,
    max_days: float = 60.0,
    n_star: float = 5000.0,
    daily_units: float | None = None,
) -> dict[str, Any]:
    """The report of one experiment from the store (see :func:`knowcast.experiments.report.build_report`).

    Only exposed users count, each from the first exposure on; ratio metrics use the delta method;
    ``cuped_days`` (0/None: off) adds CUPED-adjusted numbers using the same metric over that many days
    before exposure. ``relative``: effects as a share of control (default) or absolute differences.
    ``daily_units`` defaults to the observed exposures per day.
    """
    if engine_name not in ("frequentist", "bayesian", "sequential"):
        raise SpecError(f"engine must be frequentist, bayesian or sequential, got {engine_name!r}", "engine")
    for name, v, lo, hi in (("alpha", alpha, 0.0, 0.5), ("mde", mde, 0.0, 10.0)):
        if not lo < v < hi:
            raise SpecError(f"{name} must be in ({lo}, {hi}), got {v}", name)
    if cuped_days is not None and cuped_days < 0:
        raise SpecError(f"cuped_days must be >= 0, got {cuped_days}", "cuped_days")
    spec = get_experiment(engine, key)
    metrics = _metric_defs(spec)
    exposures, multi = exposed_users(engine, key)
    cuped = cuped_days if cuped_days else None
    events = experiment_events(engine, key, metrics, cuped)
    stats: dict[str, dict[str, Any]] = {}
    for name, m in metrics.items():
        per = compute_metric(events, exposures, m, cuped_days=None if m.kind == "ratio" else cuped)
        stats[name] = {v: per[v] for v in spec.variant_keys if v in per}
    unknown = sorted(set(exposures["variant"]) - set(spec.variant_keys))
    base: dict[str, Any] = {
        "experiment": key,
        "name": spec.name,
        "state": spec.state,
        "coverage": spec.coverage,
        "start": spec.start,
        "stop": spec.stop,
        "exposed_users": int(len(exposures)),
        "multi_variant_users": multi,
        "unknown_variants": unknown,
        "cuped_days": cuped,
    }
    missing = [v for v in spec.variant_keys if v not in stats[spec.decision_metric]]
    if missing:
        counts = exposures["variant"].value_counts()
        return {
            **base,
            "variants": [
                {"key": v.key, "weight": v.weight, "n": int(counts.get(v.key, 0))} for v in spec.variants
            ],
            "recommendation": {
                "action": "keep_running", "variant": None, "days_left": None,
                "reason": f"no exposed users yet in {missing}",
            },
            "verdict": f"No exposed users yet in {', '.join(missing)}: nothing to analyse. Keep running.",
            "metrics": [],
            "guardrails": [],
            "srm": None,
            "figure": None,
        }  # fmt: skip
    report = build_report(
        key,
        spec.variant_keys,
        spec.weights,
        stats,
        spec.decision_metric,
        [g for g in spec.guardrails if g != spec.decision_metric],
        higher_is_better={k: m.higher_is_better for k, m in metrics.items()},
        engine=engine_name,  # type: ignore[arg-type]
        alpha=alpha,
        relative=relative,
        mde=mde,
        n_star=n_star,
        daily_units=daily_exposures(exposures) if daily_units is None else daily_units,
        max_days=max_days,
        descriptions={k: m.description for k, m in metrics.items()},
    )
    return _jsonable({**base, **report})


_CSV_COLUMNS = [
    "experiment", "metric", "role", "variant", "n", "mean", "effect", "ci_low", "ci_high", "p_value",
    "p_value_adjusted", "chance_to_win", "cuped_effect", "cuped_ci_low", "cuped_ci_high", "cuped_p_value",
    "cuped_variance_reduction",
]  # fmt: skip


def report_csv(report: Mapping[str, Any]) -> str:
    """One CSV row per metric and variant (control rows carry only n and mean)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=_CSV_COLUMNS, lineterminator="\n")
    w.writeheader()
    for m in report.get("metrics", []):
        for r in m["rows"]:
            row = {"experiment": report["experiment"], "metric": m["name"], "role": m["role"],
                   "variant": r["variant"], "n": r.get("n"), "mean": r.get("mean")}
            if "effect" in r:
                row.update(effect=r["effect"], ci_low=r["ci"][0], ci_high=r["ci"][1], p_value=r["p_value"],
                           p_value_adjusted=r.get("p_value_adjusted"), chance_to_win=r["chance_to_win"])
                c = r.get("cuped")
                if c:
                    row.update(cuped_effect=c["effect"], cuped_ci_low=c["ci"][0], cuped_ci_high=c["ci"][1],
                               cuped_p_value=c["p_value"], cuped_variance_reduction=c["variance_reduction"])
            w.writerow(row)
    return buf.getvalue()


# --------------------------------------------------------------------------------------------------
# the real public A/B logs, end to end through the store
# --------------------------------------------------------------------------------------------------

#: name -> (experiment spec, relative MDE used for the duration estimate)
REAL_EXPERIMENTS: dict[str, tuple[dict[str, Any], float]] = {
    "udacity": (
        {
            "key": "udacity_landing_page",
            "name": "Udacity landing page: old vs new",
            "description": "Real log, ../shared/data/experiments/udacity_ab_data.csv.gz",
            "variants": [{"key": "control", "weight": 0.5, "description": "old_page"},
                         {"key": "treatment", "weight": 0.5, "description": "new_page"}],
            "decision_metric": "conversion",
        },
        0.02,
    ),
    "cookie_cats": (
        {
            "key": "cookie_cats_gate",
            "name": "Cookie Cats: first gate at level 30 vs 40",
            "description": "Real log, ../shared/data/experiments/cookie_cats.csv",
            "variants": [{"key": "gate_30", "weight": 0.5}, {"key": "gate_40", "weight": 0.5}],
            "decision_metric": "retention_d7",
            "guardrails": ["retention_d1"],
        },
        0.02,
    ),
}


def analyze_real(
    engine: Engine,
    name: str,
    actor: str = "analyze-real",
    data_dir: str | Path | None = None,
    progress: Callable[[str, int], None] | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """Import a real A/B log through ingestion (once), record the experiment (once), return its report."""
    name = name.replace("-", "_")
    if name not in REAL_EXPERIMENTS:
        raise SpecError(f"unknown real experiment {name!r}; known: {sorted(REAL_EXPERIMENTS)}", "name")
    spec_dict, mde = REAL_EXPERIMENTS[name]
    key = spec_dict["key"]
    with engine.connect() as conn:
        n = conn.execute(
            select(func.count()).select_from(Exposure).where(Exposure.experiment_key == key)
        ).scalar_one()
    imported = False
    if not n:
        from knowcast.services.datasets import import_dataset

        import_dataset(engine, name, data_dir, progress=progress)
        imported = True
    with engine.connect() as conn:
        lo, hi = conn.execute(
            select(func.min(Exposure.first_ts), func.max(Exposure.first_ts)).where(
                Exposure.experiment_key == key
            )
        ).one()
    try:
        get_experiment(engine, key)
    except NotFound:
        # the record's start is the log's first exposure; the audit says when knowcast recorded it
        create_experiment(engine, {**spec_dict, "start": int(lo)}, actor)
        start_experiment(engine, key, actor)
        stop_experiment(engine, key, actor)
    kwargs.setdefault("mde", mde)
    if name == "cookie_cats":
        kwargs.setdefault("daily_units", 0.0)  # the log has no real time: no duration estimate
    report = results(engine, key, **kwargs)
    report["dataset"] = name
    report["imported_now"] = imported
    return report


def parse_attribute(value: str) -> Any:
    """A user attribute sent as text (query string, CLI): true/false, int, float, else the string."""
    low = value.lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


def assignment_dict(a: Assignment) -> dict[str, Any]:
    return asdict(a)
