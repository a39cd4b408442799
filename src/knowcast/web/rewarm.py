"""Keep the dashboard warm after writes that skip the post-import hook (HTTP ingest, live rooms, other tools).

``knowcast import`` refreshes the rollups and fills the result caches when it ends (``web.warm``), so the
first page view after it costs its warm time. Events posted through the API have no such end: without this,
the first person to open the attribution page after a burst of API writes waits for the whole-log
computation (seconds on the demo). A :class:`Rewarmer` thread looks at the cheap data token every
``interval`` seconds and, once the token has stopped moving (writes have paused), runs the same refresh and
warm. With several workers on PostgreSQL one of them does it at a time (an advisory lock); the results are
shared through the store's ``kv`` table.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from sqlalchemy import Engine, text

log = logging.getLogger(__name__)

LOCK_ID = 0x6B63_7761  # "kcwa": the advisory lock the workers take to warm one at a time


def _refresh_and_warm(engine: Engine) -> None:
    from knowcast.services.rollups import refresh
    from knowcast.web.warm import warm

    refresh(engine)
    warm(engine)


class Rewarmer:
    """Warms the dashboard once the event log has changed and then stayed still for one check interval."""

    def __init__(
        self,
        engine: Engine,
        interval: float = 30.0,
        work: Callable[[Engine], None] = _refresh_and_warm,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if interval <= 0:
            raise ValueError("interval must be > 0 seconds")
        self.engine, self.interval, self.work, self.clock = engine, interval, work, clock
        self.warmed: str | None = None  # token the caches were last filled for
        self.seen: str | None = None  # token at the previous check
        self.runs = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _token(self) -> str:
        from knowcast.services.rollups import data_token

        return data_token(self.engine)

    def step(self) -> bool:
        """One check; True when it warmed. Warms only when the token differs from the warmed one and equals
        the one seen at the previous check (a burst of writes is warmed once, after it)."""
        token = self._token()
        if self.warmed is None:
            self.warmed = self.seen = token  # at start: the import hook or a page view warmed this version
            return False
        previous, self.seen = self.seen, token
        if token == self.warmed or token != previous:
            return False
        if not self._locked_work():
            return False
        self.warmed = token
        self.runs += 1
        return True

    def _locked_work(self) -> bool:
        if self.engine.dialect.name != "postgresql":  # one process per SQLite store
            self.work(self.engine)
            return True
        with self.engine.connect() as c:
            if not c.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": LOCK_ID}).scalar():
                return False  # another worker is warming; its results land in the shared kv table
            try:
                self.work(self.engine)
            finally:
                c.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": LOCK_ID})
                c.commit()
        return True

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            t = time.perf_counter()
            try:
                if self.step():
                    log.info("dashboard re-warmed after new events in %.1fs", time.perf_counter() - t)
            except Exception as exc:  # noqa: BLE001 - a failed warm only means slower first page views
                log.warning("dashboard re-warm failed: %s", exc)

    def start(self) -> Rewarmer:
        self._thread = threading.Thread(target=self._run, name="knowcast-rewarm", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
