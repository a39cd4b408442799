"""Run an iterator one step ahead in a background thread.

An import alternates between reading and checking a chunk (Arrow C++ code that releases the GIL) and
writing it (the database driver, which also releases the GIL while the engine works). Preparing the next
chunk while the current one is written keeps both cores busy; memory stays bounded because at most
``depth`` prepared chunks wait in the queue.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

_DONE = object()


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def prefetch(items: Iterable[T], depth: int = 1) -> Iterator[T]:
    """Yield what ``items`` yields, computing up to ``depth`` items ahead in a daemon thread.

    Exceptions raised by ``items`` are re-raised in the consumer at the point they occurred; when the
    consumer stops early (an error, a break), the producer thread is told to stop and is not waited on
    longer than its current item.
    """
    q: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(obj: object) -> bool:
        while not stop.is_set():
            try:
                q.put(obj, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which re-raises it
            put(_Failure(exc))
            return
        put(_DONE)

    worker = threading.Thread(target=produce, name="knowcast-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            obj = q.get()
            if obj is _DONE:
                return
            if isinstance(obj, _Failure):
                raise obj.exc
            yield obj  # type: ignore[misc]
    finally:
        stop.set()
        worker.join(timeout=5)
