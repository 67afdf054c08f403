"""The loopback vendor in a process of its own, for worker processes and benchmarks:

    python -m tests.support.loopback_server --port 8765 --seed 7 --records 100000 [--latency-ms 0]

It serves the same API as tests.support.loopback.LoopbackVendor (log in with ops / pw-123, no MFA)
over records seeded with Store.seed(records, seed), so a caller that seeds its own Store with the
same numbers holds an exact copy of the source. It runs until SIGTERM or SIGINT.

The listing (`GET /records`) is served from a sorted index rebuilt only when the store changes,
so a page costs what a real vendor's indexed query costs, not a sort of the whole store (about
0.2 s a page at 100,000 records, which would swamp the hub's own time in a benchmark).
"""

from __future__ import annotations

import argparse
import bisect
import os
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

if __name__ == "__main__":  # run as a program: the vendor module imports models, so Django first
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")
    django.setup()

from tests.support.loopback import LoopbackVendor, _Handler  # noqa: E402

_HIGHEST = "\U0010ffff"  # sorts after every id, so (stamp, _HIGHEST) is past every key with that stamp


class _IndexedHandler(_Handler):
    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path != "/records":
            return super().do_GET()
        srv = self.server
        srv.requests.append(("GET", self.path))
        srv.arrivals.append(time.time())
        if self._faulted():
            return
        token = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
        with srv.lock:
            expiry = srv.tokens.get(token)
        if expiry is None or expiry < time.monotonic():
            return self._send(401, {"code": "token_expired"})
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        limit = min(int(query.get("limit", 100)), 1000)
        since = query.get("updated_since", "")
        after = query.get("cursor", "")
        include_deleted = bool(since)  # as the stock server: an incremental feed reports deletions
        keys, rows = srv.index()
        start = bisect.bisect_right(keys, (since, _HIGHEST)) if since else 0
        if after:
            start = max(start, bisect.bisect_right(keys, tuple(after.split("|", 1))))
        page: list[dict[str, Any]] = []
        more = False
        for row in rows[start:]:  # bounded by the store; stops one row past the page
            if row["deleted"] and not include_deleted:
                continue
            if len(page) == limit:
                more = True
                break
            page.append(row)
        data = [{**r, "birth_date": "not-a-date"} if r["id"] in srv.faults.malformed_ids else dict(r) for r in page]
        next_cursor = f"{page[-1]['updated_at']}|{page[-1]['id']}" if more else None
        return self._send(200, {"data": data, "next": next_cursor})


class IndexedLoopbackVendor(LoopbackVendor):
    """LoopbackVendor on a chosen port (0: any free one) with an indexed listing."""

    bind_port: ClassVar[int] = 0

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.RequestHandlerClass = _IndexedHandler
        self._index_key: tuple[int, int] | None = None
        self._index: tuple[list[tuple[str, str]], list[dict[str, Any]]] = ([], [])

    def server_bind(self) -> None:
        self.server_address = ("127.0.0.1", self.bind_port)
        super().server_bind()

    def index(self) -> tuple[list[tuple[str, str]], list[dict[str, Any]]]:
        """(sorted (updated_at, id) keys, the records in that order), rebuilt after any change."""
        with self.lock:
            key = (self.store.clock, len(self.store.records))
            if key != self._index_key:
                rows = sorted(self.store.records.values(), key=lambda r: (r["updated_at"], r["id"]))
                self._index = ([(r["updated_at"], r["id"]) for r in rows], rows)
                self._index_key = key
            return self._index


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve the loopback test vendor in its own process.")
    parser.add_argument("--port", type=int, required=True, help="port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--seed", type=int, default=7, help="Store.seed's random seed (default 7)")
    parser.add_argument("--records", type=int, required=True, help="records to seed")
    parser.add_argument("--latency-ms", type=int, default=0, help="added to every request (default 0)")
    args = parser.parse_args(argv)
    if args.records < 0 or not 0 <= args.port <= 65535 or args.latency_ms < 0:
        parser.error("--records and --latency-ms must not be negative; --port must be 0-65535")

    IndexedLoopbackVendor.bind_port = args.port
    server = IndexedLoopbackVendor()
    server.store.seed(args.records, seed=args.seed)
    server.faults.latency_ms = args.latency_ms
    server.index()  # built before the first request, not during it

    def stop(signum, frame) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    sys.stdout.write(f"loopback vendor: {args.records} records at {server.url}\n")
    sys.stdout.flush()
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
