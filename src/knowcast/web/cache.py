"""Results of expensive page computations, kept until the event log changes.

Some page numbers come from other areas' whole-log computations (attribution journeys and models, a
segment's profile) that take seconds on the demo data set. They only change when events change, so they are
cached under the data token of ``services.rollups`` (which moves on every write): in process memory first,
and in the store's ``kv`` table, so other workers and restarts reuse a result instead of recomputing it.
Values must be JSON-serialisable.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, delete, insert, select

from knowcast.services.rollups import data_token, ensure_fresh
from knowcast.store.models import KeyValue

MAX_ENTRIES = 256
_mem: OrderedDict[tuple[str, str], tuple[str, Any]] = OrderedDict()
_lock = threading.Lock()


def _plain(x: Any) -> Any:
    """NumPy scalars and arrays (pandas results) as plain Python values for JSON."""
    if hasattr(x, "tolist"):
        return x.tolist()
    if hasattr(x, "item"):
        return x.item()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def _kv_key(name: str, key: str) -> str:
    k = f"web.cache.{name}.{key}"
    if len(k) <= 128:
        return k
    import hashlib

    # Long keys (funnel specs) are hashed: truncating them could make two specs share an entry.
    return f"web.cache.{name}.#" + hashlib.sha256(key.encode()).hexdigest()


def cached(engine: Engine, name: str, key: str, compute: Callable[[], Any], persist: bool = True) -> Any:
    """``compute()``'s value for (name, key) as of the current data token; computed at most once per token
    (per process, and per store when ``persist``)."""
    token = ensure_fresh(engine, 0)
    if token is None:  # no rollup state to key on: still key on the cheap token
        token = data_token(engine)
    mk = (str(engine.url), f"{name}:{key}")
    with _lock:
        hit = _mem.get(mk)
        if hit is not None and hit[0] == token:
            _mem.move_to_end(mk)
            return hit[1]
    value: Any = None
    found = False
    if persist:
        try:
            with engine.connect() as c:
                raw = c.execute(select(KeyValue.value).where(KeyValue.key == _kv_key(name, key))).scalar()
            if isinstance(raw, dict) and raw.get("token") == token:
                value, found = raw.get("value"), True
        except Exception:  # noqa: BLE001,S110 (a cache miss, never an error page)
            pass
    if not found:
        value = compute()
        if persist:
            try:
                with engine.begin() as c:
                    c.execute(delete(KeyValue).where(KeyValue.key == _kv_key(name, key)))
                    # JSON round trip first: the stored value and the in-memory one must be equal.
                    value = json.loads(json.dumps(value, default=_plain))
                    c.execute(
                        insert(KeyValue).values(
                            key=_kv_key(name, key), value={"token": token, "value": value}
                        )
                    )
            except Exception:  # noqa: BLE001,S110 (read-only store or a concurrent writer: keep it in memory)
                pass
    with _lock:
        _mem[mk] = (token, value)
        _mem.move_to_end(mk)
        while len(_mem) > MAX_ENTRIES:
            _mem.popitem(last=False)
    return value


def clear() -> None:
    """Forget the in-process entries (tests)."""
    with _lock:
        _mem.clear()
