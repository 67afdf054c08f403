"""Per-connection request rate limits that hold across every worker process.

The counters live in Redis (the broker's, or RATE_LIMIT_REDIS_URL) through Dramatiq's rate
limiters; on the embedded default, with one process, they live in memory.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from django.conf import settings
from dramatiq.rate_limits import WindowRateLimiter
from dramatiq.rate_limits.backends import RedisBackend, StubBackend

from connectors.errors import RateLimited

_backend = None
_lock = threading.Lock()


def backend():
    global _backend
    with _lock:
        if _backend is None:
            url = settings.RATE_LIMIT_REDIS_URL
            _backend = RedisBackend(url=url) if url else StubBackend()
        return _backend


def reset_backend() -> None:
    """Forget the backend (tests that switch settings)."""
    global _backend
    with _lock:
        _backend = None


@dataclass(frozen=True)
class RateLimit:
    limit: int  # requests …
    window_seconds: int = 1  # … per this many seconds (sliding, one-second buckets)


def acquire(key: str, rate: RateLimit, *, max_wait: float, sleep=time.sleep, clock=time.monotonic) -> float:
    """Block until one request may go, at most `max_wait` seconds; return the seconds waited.

    Raises RateLimited (retryable) when no slot opened in time, so the job backs off instead of
    holding a worker forever.
    """
    limiter = WindowRateLimiter(backend(), f"switchboard:ratelimit:{key}", limit=rate.limit, window=rate.window_seconds)
    started = clock()
    while True:
        with limiter.acquire(raise_on_failure=False) as acquired:
            if acquired:
                return clock() - started
        if clock() - started >= max_wait:
            raise RateLimited(f"local rate limit of {rate.limit}/{rate.window_seconds}s still full after {max_wait:.0f}s")
        sleep(0.02)
