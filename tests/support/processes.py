"""Real worker processes for the services tests and the benchmarks.

`manage.py rundramatiq` runs in its own process group, so one SIGKILL to the group takes the
Dramatiq main process and its forked worker processes down at once, as a machine dying would.
Its output goes to a file (a pipe nobody reads could fill up and stall the worker). Its database
connections carry an `application_name`, so a caller can wait until PostgreSQL has let go of
them (a killed worker's transaction must be rolled back before the test database is flushed).
Every wait here is bounded.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

ROOT = Path(__file__).resolve().parents[2]
READY_LINE = "Worker process is ready for action."
# The loopback vendor's connector must be registered inside the worker too.
LOOPBACK_CONNECTORS = "tests.support.loopback"

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """A bounded wait ran out; an AssertionError so a test reports it as a failure, not an error."""


def wait_for(predicate: Callable[[], T], *, timeout: float, what: str, interval: float = 0.05) -> T:
    """Call `predicate` until it returns something truthy (and return that), at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"gave up after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def postgres_url(settings_dict: dict[str, Any], *, application_name: str) -> str:
    """A DATABASE_URL for the database Django is connected to now (under pytest-django, the test
    database), tagged with `application_name` so its sessions can be found in pg_stat_activity."""
    if settings_dict["ENGINE"] != "django.db.backends.postgresql":
        raise ValueError(f"worker processes need PostgreSQL; the database is {settings_dict['ENGINE']}")
    user = quote(settings_dict.get("USER") or "", safe="")
    password = quote(settings_dict.get("PASSWORD") or "", safe="")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or 5432
    return f"postgres://{auth}{host}:{port}/{quote(settings_dict['NAME'], safe='')}?{urlencode({'application_name': application_name})}"


def database_sessions(application_name: str) -> int:
    """How many PostgreSQL sessions (of any database) carry this application_name."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [application_name])
        return cursor.fetchone()[0]


def clear_broker(url: str) -> None:
    """Forget queued messages and rate-limit windows left in this Redis database by an earlier run.

    Only Dramatiq's keys and ours are deleted, never the whole database."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        for pattern in ("dramatiq:*", "switchboard:ratelimit:*"):
            keys = list(client.scan_iter(match=pattern, count=1000))
            for start in range(0, len(keys), 1000):
                client.delete(*keys[start : start + 1000])
    finally:
        client.close()


@dataclass
class WorkerProcess:
    """One `manage.py rundramatiq` and its process group."""

    name: str
    process: subprocess.Popen
    log_path: Path
    application_name: str
    terminated: bool = False  # SIGTERM sent to the main process

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.process.poll() is None

    def wait_ready(self, *, processes: int = 1, timeout: float = 60.0) -> None:
        """Wait until every worker process has said it is ready (it then consumes its queues)."""

        def ready() -> bool:
            if not self.alive():
                raise AssertionError(f"worker {self.name} exited with {self.process.returncode}:\n{self.log()[-4000:]}")
            return self.log().count(READY_LINE) >= processes

        try:
            wait_for(ready, timeout=timeout, what=f"worker {self.name} to be ready", interval=0.1)
        except WaitTimeout as exc:
            raise WaitTimeout(f"{exc}; its log ends:\n{self.log()[-4000:]}") from None

    def kill(self, *, timeout: float = 15.0) -> None:
        """SIGKILL the whole group: no shutdown hooks, no acks, no rollback but PostgreSQL's own."""
        self._signal_group(signal.SIGKILL)
        self.process.wait(timeout=timeout)

    def terminate(self) -> None:
        """Ask for a clean shutdown without waiting (`stop` waits). Only the main process is told:
        it passes SIGTERM on to its workers, and a second SIGTERM would make them exit at once."""
        if self.alive() and not self.terminated:
            self.process.send_signal(signal.SIGTERM)
            self.terminated = True

    def stop(self, *, timeout: float = 15.0) -> None:
        """SIGTERM the group and wait; SIGKILL what is still running after `timeout` seconds."""
        if not self.alive():
            self._signal_group(signal.SIGKILL)  # forked children may outlive a dead main process
            return
        self.terminate()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        self._signal_group(signal.SIGKILL)
        self.process.wait(timeout=timeout)

    def wait_disconnected(self, *, timeout: float = 15.0) -> None:
        """Wait until PostgreSQL has closed every session the worker opened."""
        wait_for(lambda: database_sessions(self.application_name) == 0, timeout=timeout,
                 what=f"PostgreSQL to close worker {self.name}'s sessions", interval=0.1)

    def _signal_group(self, signum: int) -> None:
        try:
            os.killpg(self.process.pid, signum)  # the group id is the main process's pid (start_new_session)
        except ProcessLookupError:
            pass


def start_worker(
    *,
    name: str,
    database_settings: dict[str, Any],
    broker_url: str,
    log_dir: Path,
    processes: int = 1,
    threads: int = 2,
    env: dict[str, str] | None = None,
) -> WorkerProcess:
    """Start `manage.py rundramatiq` against the database Django is connected to and `broker_url`."""
    application_name = f"switchboard-worker-{name}-{os.getpid()}"
    environment = {
        **os.environ,
        "DATABASE_URL": postgres_url(database_settings, application_name=application_name),
        "DRAMATIQ_BROKER_URL": broker_url,
        "HUB_EXTRA_CONNECTORS": LOOPBACK_CONNECTORS,
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    environment.pop("RATE_LIMIT_REDIS_URL", None)  # the limits live in the broker's Redis, as in production
    log_path = log_dir / f"worker-{name}.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(  # noqa: S603 (our own manage.py)
            [sys.executable, "manage.py", "rundramatiq", "--processes", str(processes), "--threads", str(threads),
             "--worker-shutdown-timeout", "5000"],
            cwd=ROOT, env=environment, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return WorkerProcess(name=name, process=process, log_path=log_path, application_name=application_name)


@contextmanager
def running_worker(**kwargs: Any) -> Iterator[WorkerProcess]:
    """start_worker(**kwargs), stopped (and its database sessions gone) when the block ends."""
    worker = start_worker(**kwargs)
    try:
        yield worker
    finally:
        worker.stop()
        worker.wait_disconnected()
