"""`python manage.py sandbox`: serve the simulated vendors on loopback until interrupted."""

from __future__ import annotations

import signal
import sys

from django.core.management.base import BaseCommand, CommandError

from sandbox.build import build_sandbox
from sandbox.server import Faults


class Command(BaseCommand):
    help = "Serve the simulated vendors (WellSky, …) on loopback, seeded and fault-injectable."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8700)
        parser.add_argument("--seed", type=int, default=1, help="the same seed gives the same records")
        parser.add_argument("--scale", type=int, default=120, help="patients per vendor (tens to 100,000+)")
        for name, default in Faults().__dict__.items():
            parser.add_argument(f"--{name.replace('_', '-')}", type=type(default), default=default, dest=name)

    def handle(self, host, port, seed, scale, **options):
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise CommandError("The sandbox serves on loopback only (it hands out its accounts' passwords).")
        faults = Faults()
        try:
            faults.update({name: options[name] for name in Faults().__dict__})
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        try:
            sandbox = build_sandbox(host=host, port=port, seed=seed, scale=scale, faults=faults)
        except OSError as exc:
            raise CommandError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        self.stdout.write(f"Sandbox serving {', '.join('/' + p + '/' for p in sandbox.vendors)} at {sandbox.url} "
                          f"(seed {seed}, scale {scale}); state at {sandbox.url}/_sandbox/state", ending="\n")
        self.stdout.flush()
        try:
            sandbox.serve_forever()
        except (KeyboardInterrupt, SystemExit):
            pass
        finally:
            sandbox.server_close()
