"""The embedded default's in-process Dramatiq worker (the StubBroker has no separate process).

Production runs `manage.py rundramatiq` instead, and this does nothing there.
"""

from __future__ import annotations

import threading

import dramatiq
from dramatiq import Worker
from dramatiq.brokers.stub import StubBroker

_lock = threading.Lock()
_worker: Worker | None = None


def ensure_inprocess_worker(threads: int = 1) -> Worker | None:
    """Start one worker thread pool for the stub broker, once per process; None when a real broker is set.

    One thread by default: SQLite takes one writer at a time anyway.
    """
    global _worker
    broker = dramatiq.get_broker()
    if not isinstance(broker, StubBroker):
        return None
    with _lock:
        if _worker is None:
            broker.emit_after("process_boot")
            _worker = Worker(broker, worker_threads=threads, worker_timeout=100)
            _worker.start()
        return _worker


def stop_inprocess_worker() -> None:
    global _worker
    with _lock:
        if _worker is not None:
            _worker.stop()
            _worker = None
