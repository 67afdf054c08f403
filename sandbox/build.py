"""Assemble the sandbox: every simulated vendor behind one server."""

from __future__ import annotations

from sandbox.clearinghouse.vendor import Clearinghouse
from sandbox.ecw.vendor import EClinicalWorks
from sandbox.server import Faults, Sandbox
from sandbox.welkin import Welkin
from sandbox.wellsky.vendor import WellSky


def build_sandbox(*, host: str = "127.0.0.1", port: int = 0, seed: int = 1, scale: int = 120, faults: Faults | None = None) -> Sandbox:
    """A sandbox listening on host:port (0: a free port); call `.start()` or `.serve_forever()`."""
    clearinghouse = Clearinghouse(seed=seed)
    vendors = [WellSky(seed=seed, scale=scale), clearinghouse, EClinicalWorks(seed=seed, scale=scale, clearinghouse=clearinghouse),
               Welkin(seed=seed, scale=scale)]
    return Sandbox(vendors, host=host, port=port, faults=faults, seed=seed)
