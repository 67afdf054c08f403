"""Figures for issue 8: Welkin ping-and-pull latency, a change in the simulator to the canonical record updated.

    .venv/bin/python bench/welkin_latency.py [--scale 20000] [--changes 1000] [--interval 0.05]
        [--broker-url redis://127.0.0.1:6379/9] [--threads 4] [--web-threads 8] [--keep-db]

On one run, against a scratch PostgreSQL database (`switchboard_bench_welkin`, dropped and created
here, migrated), a scratch Redis database (db 9: Dramatiq's keys and the rate limiter's cleared;
the hub's cache lives there too), the vendor sandbox in its own process (`manage.py sandbox --seed 1
--scale N`), the hub's web server in its own process (gunicorn `hub.wsgi`, one process, gthread)
and one real `manage.py rundramatiq` worker:

(a) a tenant with every entitlement, a Welkin connection to the sandbox's `northwind` tenant (v8 API
    client, webhook secret in the credential's extra); the initial full load of coaches and
    patients (`enqueue_runs`), waited for, then identity matching waited for;
(b) the tenant's webhook URL in the simulator is set to the live hub's
    `/hooks/welkin/<connection public id>/`;
(c) `--changes` changes to patients, one `POST /_sandbox/mutate {"changes": 1, "resource": "patients"}`
    every `--interval` seconds (steady state, not a burst); the change time of each is the wall
    clock just before its call (the simulator pings from a thread once the change is made);
(d) the canonical Patient rows are polled: a change has landed when its record's update
    ChangeEvent (written in the upsert's transaction, occurred_at) appears after the change time.
    For a record changed more than once, the k-th change lands at the first update event after
    its change time that follows the event the (k-1)-th change landed at (pulls of the same
    record coalesce: a later change may be covered by one pull, then both land at that event).
    The "visible" latency (the poll that first saw the record's row at a new version) is printed
    too: it adds the commit and at most one poll interval.

Prints median, p90, p99 and max latency, how many of the changes arrived, and the command.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.sync_throughput import POSTGRES_SERVER, _free_port, _stop  # noqa: E402
from bench.wellsky_sync import _sandbox, _start_sandbox  # noqa: E402

POSTGRES_DATABASE = "switchboard_bench_welkin"
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/9"
ACCOUNT = "northwind"


def _environment(scratch: Path, broker_url: str) -> None:
    for name in ("HUB_PROFILE", "SECRET_KEY", "RATE_LIMIT_REDIS_URL", "CACHE_URL", "HUB_EXTRA_CONNECTORS", "ALLOWED_HOSTS"):
        os.environ.pop(name, None)
    os.environ.update({
        "DJANGO_SETTINGS_MODULE": "hub.settings",
        "HUB_VAR_DIR": str(scratch),  # the Fernet key: shared with the worker and the web server
        "DEBUG": "false",
        "DATABASE_URL": f"{POSTGRES_SERVER}/{POSTGRES_DATABASE}",
        "DRAMATIQ_BROKER_URL": broker_url,
        "HUB_ALLOW_PRIVATE_VENDOR_HOSTS": "true",
        "HUB_REQUIRE_HTTPS_VENDOR_URLS": "false",
    })


def _admin_execute(*statements: str) -> None:
    import psycopg

    with psycopg.connect(f"{POSTGRES_SERVER}/postgres", autocommit=True) as admin:
        for statement in statements:
            admin.execute(statement)


def _start_web(threads: int, log_dir: Path) -> tuple[subprocess.Popen, str]:
    import httpx

    port = _free_port()
    log_path = log_dir / "web.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(  # noqa: S603 (our own WSGI app)
            [sys.executable, "-m", "gunicorn", "hub.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "1",
             "--worker-class", "gthread", "--threads", str(threads), "--access-logfile", "-"],
            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        if process.poll() is not None:
            raise SystemExit(f"the web server exited with {process.returncode}: {log_path.read_text()[-2000:]}")
        try:
            httpx.get(f"{url}/hooks/welkin/00000000-0000-0000-0000-000000000000/", timeout=5)  # 405: it answers
            return process, url
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                _stop(process)
                raise SystemExit("the web server did not answer within 120 s") from None
            time.sleep(0.2)


def _set_up(sandbox_url: str, account: dict):
    from django.db import transaction

    from tenants.choices import Capability
    from tenants.models import Connection, Credential, Entitlement
    from tenants.services import create_tenant

    with transaction.atomic():
        tenant = create_tenant(slug="bench-welkin", name="Welkin latency bench")
        for capability in Capability.values:
            Entitlement.objects.get_or_create(tenant=tenant, connection=None, capability=capability)
        connection = Connection.objects.create(
            tenant=tenant, vendor="welkin", display_name="Welkin northwind", base_url=f"{sandbox_url}/welkin", enabled=True,
            options={"tenant_name": account["username"], "instance_name": account["instance"]},
        )
        Credential.objects.create(connection=connection, client_id=account["client_id"], client_secret=account["client_secret"],
                                  extra=json.dumps({"webhook_secret": account["webhook_secret"]}))
    return tenant, connection


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = share * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _summary(label: str, values: list[float]) -> str:
    if not values:
        return f"  {label:<38} none"
    ms = [v * 1000 for v in values]
    return (f"  {label:<38} median {statistics.median(ms):8.1f} ms  p90 {_percentile(ms, 0.9):8.1f} ms  "
            f"p99 {_percentile(ms, 0.99):8.1f} ms  max {max(ms):8.1f} ms  min {min(ms):7.1f} ms  (n={len(ms)})")


def run_bench(scale: int, changes: int, interval: float, broker_url: str, threads: int, web_threads: int, settle: float,
              keep: bool) -> int:
    scratch = Path(tempfile.mkdtemp(prefix="sb-bench-welkin-"))
    _environment(scratch, broker_url)
    _admin_execute(f"DROP DATABASE IF EXISTS {POSTGRES_DATABASE} WITH (FORCE)", f"CREATE DATABASE {POSTGRES_DATABASE}")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection as db

    from canonical.models import ChangeEvent, Patient
    from connectors.choices import RunStatus
    from connectors.models import SyncRun
    from connectors.tasks import enqueue_runs
    from connectors.welkin.connector import webhook_path
    from tests.support.processes import clear_broker, start_worker

    call_command("migrate", verbosity=0)
    postgres = f"PostgreSQL {db.pg_version // 10000}.{db.pg_version % 10000}"
    clear_broker(broker_url)
    sandbox = worker = web = None
    ok = True
    try:
        setup_started = time.perf_counter()
        sandbox, sandbox_url = _start_sandbox(scale, scratch)
        worker = start_worker(name="welkin", database_settings=db.settings_dict, broker_url=broker_url, log_dir=scratch, threads=threads)
        web, web_url = _start_web(web_threads, scratch)
        account = next(a for a in _sandbox("GET", f"{sandbox_url}/_sandbox/accounts")["welkin"] if a["username"] == ACCOUNT)
        tenant, connection = _set_up(sandbox_url, account)
        worker.wait_ready(timeout=180)
        print(f"{postgres}, Redis {broker_url}; sandbox seed 1 scale {scale:,} at {sandbox_url}; hub web {web_url} "
              f"(gunicorn, 1 process, {web_threads} threads); one worker process ({threads} threads); "
              f"ready in {time.perf_counter() - setup_started:.1f} s; logs in {scratch}", flush=True)

        # (a) the initial full load
        load_started = time.time()
        ids = [run.pk for run in enqueue_runs(connection, resources=["coaches", "patients"])]
        while True:
            runs = list(SyncRun.objects.filter(pk__in=ids).order_by("pk"))
            if all(r.finished_at is not None for r in runs):
                break
            if time.time() - load_started > 1800:
                raise SystemExit("the full load did not finish in 1800 s")
            time.sleep(0.25)
        for run in runs:
            print(f"  full load {run.resource:<9} {run.status:<10} fetched {run.fetched:>7,} created {run.created:>7,} "
                  f"failed {run.failed:>4,} in {(run.finished_at - run.started_at).total_seconds():6.1f} s"
                  + (f"  error: {run.error[:200]}" if run.error else ""))
        if not all(r.status == RunStatus.SUCCEEDED for r in runs):
            raise SystemExit("the full load did not succeed")
        unlinked = Patient.objects.filter(source_connection=connection, deleted_at__isnull=True, master__isnull=True)
        while unlinked.exists():
            if time.time() - load_started > 2400:
                raise SystemExit("identity matching did not finish")
            time.sleep(0.5)
        print(f"  full load and identity matching done {time.time() - load_started:.1f} s after the enqueue", flush=True)
        baseline = {external_id: (public_id, version) for external_id, public_id, version in
                    Patient.objects.filter(source_connection=connection).values_list("external_id", "public_id", "version")}
        by_public = {public_id: external_id for external_id, (public_id, _) in baseline.items()}

        # (b) subscribe the hub
        hook = f"{web_url}{webhook_path(connection)}"
        _sandbox("POST", f"{sandbox_url}/_sandbox/accounts", {"vendor": "welkin", "username": ACCOUNT, "webhook_url": hook})

        # (c) the changes, one at a time, spaced
        import httpx

        made: list[tuple[str, float]] = []  # (external id, change time)
        visible: dict[int, float] = {}  # change index -> when a poll first saw the record past its previous version
        watch_from = datetime.now(UTC)
        client = httpx.Client(timeout=30)
        versions_seen = {external_id: version for external_id, (_, version) in baseline.items()}
        pending_visible: dict[str, list[int]] = {}

        def poll() -> None:
            wanted = list(pending_visible)
            if not wanted:
                return
            now = time.time()
            for external_id, version in Patient.objects.filter(source_connection=connection, external_id__in=wanted).values_list(
                    "external_id", "version"):
                if version > versions_seen[external_id]:
                    versions_seen[external_id] = version
                    for index in pending_visible.pop(external_id, []):
                        visible[index] = now

        started = time.perf_counter()
        next_at = time.perf_counter()
        for index in range(changes):
            while time.perf_counter() < next_at:
                poll()
                time.sleep(min(0.01, max(0.0, next_at - time.perf_counter())))
            next_at += interval
            t0 = time.time()
            answer = client.post(f"{sandbox_url}/_sandbox/mutate", json={"vendor": "welkin", "changes": 1, "resource": "patients",
                                                                       "tenant": ACCOUNT})
            answer.raise_for_status()
            (changed,) = answer.json()["changed"]["patients"]
            made.append((changed, t0))
            pending_visible.setdefault(changed, []).append(index)
        changing_seconds = time.perf_counter() - started
        last_change = time.time()
        print(f"  {changes:,} changes made in {changing_seconds:.1f} s ({changes / changing_seconds:.1f}/s); "
              f"{len({e for e, _ in made}):,} distinct patients", flush=True)

        # (d) wait for the rest to land
        while pending_visible and time.time() - last_change < settle:
            poll()
            time.sleep(0.02)
        time.sleep(1.0)  # let in-flight transactions commit before reading the events
        events: dict[str, list[float]] = {}
        for record_id, occurred_at in (ChangeEvent.objects.filter(tenant=tenant, action="update", occurred_at__gte=watch_from)
                                       .order_by("occurred_at").values_list("record_id", "occurred_at")):
            external_id = by_public.get(record_id)
            if external_id is not None:
                events.setdefault(external_id, []).append(occurred_at.timestamp())
        landed: list[float] = []
        after: dict[str, float] = {}  # the event the record's previous change landed at
        for external_id, t0 in made:
            floor = max(t0, after.get(external_id, float("-inf")))
            hit = next((t for t in events.get(external_id, []) if t >= floor), None)
            if hit is not None:
                after[external_id] = hit
                landed.append(hit - t0)
        seen = [visible[i] - made[i][1] for i in sorted(visible)]
        deliveries = _sandbox("GET", f"{sandbox_url}/_sandbox/state")["welkin"]["deliveries"]
        pulls = SyncRun.objects.filter(connection=connection).count()

        repeats = changes - len({e for e, _ in made})
        print(f"\nSummary: Welkin ping-and-pull, {changes:,} patient changes one every {interval * 1000:.0f} ms "
              f"(scale {scale:,}, {postgres})")
        print(_summary("change -> canonical update (event)", landed))
        print(_summary("change -> row visible to a poll", seen))
        print(f"  arrived: {len(landed):,} of {changes:,} changes ({repeats} were repeat changes of a patient already changed); "
              f"visible to the poll: {len(seen):,}; pings sent by the simulator {deliveries:,}; sync runs {pulls} (the load's)")
        ok = len(landed) == changes
        if not ok:
            print("  SOME CHANGES DID NOT ARRIVE within the settle time")
        print(f"  command: {' '.join([Path(sys.executable).name, *sys.argv])}")
        sys.stdout.flush()
    finally:
        if worker is not None:
            worker.stop()
        for process in (web, sandbox):
            if process is not None:
                _stop(process)
        clear_broker(broker_url)
        db.close()
        if keep:
            print(f"kept the {POSTGRES_DATABASE} database and {scratch}")
        else:
            _admin_execute(f"DROP DATABASE IF EXISTS {POSTGRES_DATABASE} WITH (FORCE)")
            shutil.rmtree(scratch, ignore_errors=True)
    return 0 if ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=20_000, help="sandbox patients per tenant (default 20000)")
    parser.add_argument("--changes", type=int, default=1000, help="patient changes (default 1000)")
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between changes (default 0.05)")
    parser.add_argument("--broker-url", default=DEFAULT_BROKER_URL, help=f"a scratch Redis database (default {DEFAULT_BROKER_URL})")
    parser.add_argument("--threads", type=int, default=4, help="worker threads (default 4)")
    parser.add_argument("--web-threads", type=int, default=8, help="web server threads (default 8)")
    parser.add_argument("--settle", type=float, default=120, help="seconds to wait after the last change (default 120)")
    parser.add_argument("--keep-db", action="store_true", help=f"keep the {POSTGRES_DATABASE} database afterwards")
    args = parser.parse_args(argv)
    if args.broker_url.rstrip("/").rsplit("/", 1)[-1] in ("12", "13", "15"):
        parser.error("Redis databases 12, 13 and 15 belong to other benches and test runs")
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    return run_bench(args.scale, args.changes, args.interval, args.broker_url, args.threads, args.web_threads, args.settle, args.keep_db)


if __name__ == "__main__":
    sys.exit(main())
