"""Figures for the sync engine (issue 4): a paginated loopback vendor → a real worker → PostgreSQL.

    .venv/bin/python bench/sync_throughput.py [--records 100000] [--page-size 1000]
        [--broker-url redis://127.0.0.1:6379/14] [--profile]

On one run, against a scratch PostgreSQL database (`switchboard_bench_sync`, dropped and created
here, migrated) and a scratch Redis database (only Dramatiq's and the rate limiter's keys in it
are cleared), with the loopback vendor serving N records in its own process
(`python -m tests.support.loopback_server`) and a real `manage.py rundramatiq` worker:

(a) first sync: `records_all` (full_diff) of N records in pages of --page-size, timed from
    `enqueue_runs` to the SyncRun's finished_at; canonical records/s;
(b) the upsert engine alone on the same records: the dicts LoopbackConnector.normalize makes of
    them, `upsert_records` in batches of --page-size (one transaction each, as the sync's pages),
    into a fresh connection of another tenant (so the sync's identity matching finds no twins);
    ratio = engine time / sync time (goal >= 0.5: HTTP, raw payload storage, identity matching
    and job overhead at most double the time). It runs before (a), on the same tables, so the
    sync writes into the bigger indexes: the ratio errs low, never high;
(c) a no-change re-sync in full_diff mode; speedup = first sync / re-sync, each run's own
    duration from its start to its finish (goal >= 5x; from enqueue to finish printed too);
(d) identity matching, the job that follows a patient sync run: from (a)'s end until every
    synced patient has a master patient (printed; no goal in the issue).

With --profile, the same first sync and re-sync also run in this process under cProfile (on a
third connection, against the same vendor), and the top functions by cumulative time print.
Record the figures in bench/README.md.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_SERVER = "postgres://postgres@127.0.0.1:5432"
POSTGRES_DATABASE = "switchboard_bench_sync"
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/14"
SEED = 20260401
RATIO_GOAL = 0.5  # engine-alone time / sync time
SPEEDUP_GOAL = 5.0  # first sync time / no-change re-sync time
RESOURCE = "records_all"  # full_diff, for the first sync and the re-sync alike


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _environment(scratch: Path, broker_url: str) -> None:
    """Settings for this process and the processes it starts: the scratch database and Redis,
    the embedded profile with DEBUG off (no query log), the loopback connector registered."""
    for name in ("HUB_PROFILE", "SECRET_KEY", "RATE_LIMIT_REDIS_URL", "CACHE_URL"):
        os.environ.pop(name, None)
    os.environ.update({
        "DJANGO_SETTINGS_MODULE": "hub.settings",
        "HUB_VAR_DIR": str(scratch),
        "DEBUG": "false",
        "DATABASE_URL": f"{POSTGRES_SERVER}/{POSTGRES_DATABASE}",
        "DRAMATIQ_BROKER_URL": broker_url,
        "HUB_EXTRA_CONNECTORS": "tests.support.loopback",
    })


def _recreate_database() -> None:
    import psycopg

    with psycopg.connect(f"{POSTGRES_SERVER}/postgres", autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {POSTGRES_DATABASE} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {POSTGRES_DATABASE}")


def _drop_database() -> None:
    import psycopg

    with psycopg.connect(f"{POSTGRES_SERVER}/postgres", autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {POSTGRES_DATABASE} WITH (FORCE)")


def _start_vendor(records: int, port: int, log_dir: Path) -> tuple[subprocess.Popen, str]:
    from tests.support.processes import wait_for

    log = (log_dir / "vendor.log").open("ab")
    process = subprocess.Popen(  # noqa: S603 (our own module)
        [sys.executable, "-m", "tests.support.loopback_server", "--port", str(port), "--seed", str(SEED), "--records", str(records)],
        cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    log.close()

    def listening() -> bool:
        if process.poll() is not None:
            raise SystemExit(f"the loopback vendor exited with {process.returncode}: {(log_dir / 'vendor.log').read_text()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            return False
        return True

    wait_for(listening, timeout=180, what="the loopback vendor to listen", interval=0.2)
    return process, f"http://127.0.0.1:{port}"


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


def _normalized_pages(records: int, page_size: int, tenant, connection) -> list[list[dict[str, Any]]]:
    """The records as the vendor serves them (a Store seeded alike, in (updated_at, id) order),
    normalized by the connector the sync uses, in pages."""
    from canonical.codes import CodeMapper
    from connectors.registry import connector_for
    from tests.support.loopback import Store

    store = Store()
    store.seed(records, seed=SEED)
    connector = connector_for(connection)
    spec = connector.resource(RESOURCE)
    mapper = CodeMapper(tenant)
    raws = sorted(store.live().values(), key=lambda r: (r["updated_at"], r["id"]))
    normalized = [connector.normalize(spec, raw, mapper) for raw in raws]
    return [normalized[i : i + page_size] for i in range(0, len(normalized), page_size)]


def _engine_alone(pages: Sequence[Sequence[dict]], tenant, connection) -> tuple[float, tuple[int, int, int, int]]:
    from django.db import transaction

    from canonical.upsert import upsert_records
    from connectors.sync import tables_of
    from hub.bulk import StatisticsKeeper

    totals = [0, 0, 0, 0]
    statistics = StatisticsKeeper(tables_of("patient"))  # as the sync keeps them, so both plan alike
    started = time.perf_counter()
    for page in pages:
        with transaction.atomic():
            result = upsert_records("patient", page, tenant=tenant, connection=connection)
        statistics.grew(result.created)
        totals[0] += result.created
        totals[1] += result.updated
        totals[2] += result.unchanged
        totals[3] += len(result.rejected)
    return time.perf_counter() - started, tuple(totals)


def _sync_via_worker(connection, timeout: float) -> tuple[float, float, Any]:
    """(enqueue → finished seconds, started → finished seconds, the finished SyncRun)."""
    from connectors.models import SyncRun
    from connectors.tasks import enqueue_runs
    from tests.support.processes import wait_for

    enqueued = time.time()
    (run,) = enqueue_runs(connection, resources=[RESOURCE])
    run = wait_for(lambda: SyncRun.objects.filter(pk=run.pk, finished_at__isnull=False).first(), timeout=timeout,
                   what=f"sync run {run.pk} to finish", interval=0.05)
    return run.finished_at.timestamp() - enqueued, (run.finished_at - run.started_at).total_seconds(), run


def _identity_after(run, connection, timeout: float) -> float:
    """Seconds from the run's end until every patient it stored has a master patient: the
    identity job that follows a patient sync (it runs before the re-sync starts, so the two do
    not share the worker)."""
    from canonical.models import Patient
    from tests.support.processes import wait_for

    unlinked = Patient.objects.filter(source_connection=connection, master__isnull=True)
    wait_for(lambda: not unlinked.exists(), timeout=timeout, what="identity matching after the first sync", interval=0.1)
    return time.time() - run.finished_at.timestamp()


def _profiled_sync(connection, top: int) -> tuple[float, Any, str]:
    from connectors.sync import create_runs, run_sync

    (run,) = create_runs(connection, resources=[RESOURCE])
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    run = run_sync(run.pk)
    profiler.disable()
    seconds = time.perf_counter() - started
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)
    return seconds, run, out.getvalue()


def _check_run(label: str, run, expected: tuple[int, ...]) -> None:
    got = (run.status, run.fetched, run.created, run.updated, run.unchanged, run.deleted, run.failed)
    if got != expected:
        raise SystemExit(f"{label}: unexpected run {got}, wanted {expected} (status, fetched, created, updated, unchanged, deleted, failed)")


def run_bench(records: int, page_size: int, broker_url: str, profile: bool, keep: bool) -> int:
    with tempfile.TemporaryDirectory(prefix="sb-bench-sync-") as scratch_dir:
        scratch = Path(scratch_dir)
        _environment(scratch, broker_url)
        sys.path.insert(0, str(ROOT))
        _recreate_database()
        import django

        django.setup()
        from django.core.management import call_command
        from django.db import connection as db

        from canonical.models import ChangeEvent, Patient, SourceRecord
        from connectors.choices import RunStatus
        from tests.factories import ConnectionFactory, CredentialFactory, EntitlementFactory, TenantFactory
        from tests.support.processes import clear_broker, start_worker

        call_command("migrate", verbosity=0)
        clear_broker(broker_url)
        vendor = worker = None
        try:
            port = _free_port()
            vendor_started = time.perf_counter()
            vendor, vendor_url = _start_vendor(records, port, scratch)
            worker = start_worker(name="bench", database_settings=db.settings_dict, broker_url=broker_url, log_dir=scratch, threads=2)
            worker.wait_ready(timeout=180)
            setup_seconds = time.perf_counter() - vendor_started

            # The engine's copy lives in a tenant of its own: in the sync's tenant, identity
            # matching would find a twin for every synced patient, work no real first sync has.
            tenant, engine_tenant = TenantFactory(slug="bench"), TenantFactory(slug="bench-engine")
            EntitlementFactory(tenant=tenant, capability="patients.read")
            options = {"page_size": page_size}

            def loopback(name: str, owner=tenant):
                connection = ConnectionFactory(tenant=owner, vendor="loopback", base_url=vendor_url, display_name=name, options=options)
                CredentialFactory(connection=connection, username="ops", password="pw-123", totp_secret="")
                return connection

            engine_connection = loopback("engine alone", engine_tenant)
            sync_connection = loopback("worker sync")
            normalize_started = time.perf_counter()
            pages = _normalized_pages(records, page_size, engine_tenant, engine_connection)
            normalize_seconds = time.perf_counter() - normalize_started

            engine_seconds, engine_counts = _engine_alone(pages, engine_tenant, engine_connection)
            if engine_counts != (records, 0, 0, 0):
                raise SystemExit(f"engine alone: unexpected counts {engine_counts} (created, updated, unchanged, rejected)")
            timeout = max(600.0, records / 50)
            first_seconds, first_worker_seconds, first = _sync_via_worker(sync_connection, timeout)
            _check_run("first sync", first, (RunStatus.SUCCEEDED, records, records, 0, 0, 0, 0))
            link_seconds = _identity_after(first, sync_connection, timeout)
            second_seconds, second_worker_seconds, second = _sync_via_worker(sync_connection, timeout)
            _check_run("re-sync", second, (RunStatus.SUCCEEDED, records, 0, 0, records, 0, 0))

            # The figures count only if the sync stored what the engine stored.
            for connection in (engine_connection, sync_connection):
                stored = Patient.objects.filter(source_connection=connection, deleted_at__isnull=True).count()
                if stored != records:
                    raise SystemExit(f"{connection.display_name}: {stored} patients stored for {records}")
            sources = SourceRecord.objects.filter(connection=sync_connection).count()
            events = [ChangeEvent.objects.filter(tenant=owner).count() for owner in (engine_tenant, tenant)]
            if (sources, events) != (records, [records, records]):
                raise SystemExit(f"{sources} source records and {events} change events (engine, sync); wanted {records} and {records} each")

            ratio = engine_seconds / first_seconds
            # The runs' own durations (SyncRun started -> finished, what the admin shows): enqueue ->
            # finished adds the idle worker's poll of Redis (Dramatiq backs off up to 1 s), noise
            # that weighs five times more on the short re-sync. Both are printed.
            speedup = first_worker_seconds / second_worker_seconds
            pages_count = -(-records // page_size)
            print(f"\nPostgreSQL {db.pg_version}, Redis {broker_url}: {records:,} loopback records in {pages_count} pages of {page_size:,}, "
                  f"full_diff ({RESOURCE}), one worker process (2 threads)")
            print(f"  setup: vendor seeded and worker ready in {setup_seconds:.1f} s; records normalized in {normalize_seconds:.1f} s (not timed)")
            print(f"  {'phase':<46}{'seconds':>9}{'records/s':>12}{'in job':>9}")
            for label, seconds, job in (
                ("(a) first sync, enqueue -> finished", first_seconds, first_worker_seconds),
                ("(b) upsert engine alone, same records", engine_seconds, None),
                ("(c) no-change re-sync, enqueue -> finished", second_seconds, second_worker_seconds),
                ("(d) identity matching after (a), its own job", link_seconds, None),
            ):
                print(f"  {label:<46}{seconds:>9.2f}{records / seconds:>12,.0f}{'' if job is None else f'{job:>9.2f}'}")
            print(f"  first sync {records / first_seconds:,.0f} canonical records/s; engine alone / sync = {ratio:.2f} "
                  f"(goal >= {RATIO_GOAL}) {_verdict(ratio >= RATIO_GOAL)}")
            print(f"  no-change re-sync {speedup:.1f}x faster than the first, run start to finish (goal >= {SPEEDUP_GOAL:.0f}x) "
                  f"{_verdict(speedup >= SPEEDUP_GOAL)}; {first_seconds / second_seconds:.1f}x from enqueue to finish")
            sys.stdout.flush()

            if profile:
                worker.stop()
                worker.wait_disconnected()
                profiled = loopback("profiled in process")
                seconds, run, report = _profiled_sync(profiled, 30)
                _check_run("profiled first sync", run, (RunStatus.SUCCEEDED, records, records, 0, 0, 0, 0))
                print(f"\n--- cProfile: first sync in this process, {seconds:.2f} s ---\n{report}")
                seconds, run, report = _profiled_sync(profiled, 30)
                _check_run("profiled re-sync", run, (RunStatus.SUCCEEDED, records, 0, 0, records, 0, 0))
                print(f"\n--- cProfile: no-change re-sync in this process, {seconds:.2f} s ---\n{report}")
        finally:
            if worker is not None:
                worker.stop()
            if vendor is not None:
                _stop(vendor)
            clear_broker(broker_url)
            db.close()
            if not keep:
                _drop_database()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000, help="records the vendor serves (default 100000)")
    parser.add_argument("--page-size", type=int, default=1000, help="records per page, 1-1000 (default 1000)")
    parser.add_argument("--broker-url", default=DEFAULT_BROKER_URL, help=f"a scratch Redis database (default {DEFAULT_BROKER_URL})")
    parser.add_argument("--profile", action="store_true", help="then profile the same syncs in this process (cProfile)")
    parser.add_argument("--keep", action="store_true", help=f"keep the {POSTGRES_DATABASE} database afterwards")
    args = parser.parse_args(argv)
    if args.records < 1 or not 1 <= args.page_size <= 1000:
        parser.error("--records must be positive and --page-size 1-1000")
    if not args.broker_url.startswith("redis://"):
        parser.error("--broker-url must be a redis:// URL")
    # SIGTERM unwinds like Ctrl-C, so the worker, the vendor and the scratch database are cleaned up.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    return run_bench(args.records, args.page_size, args.broker_url, args.profile, args.keep)


if __name__ == "__main__":
    sys.exit(main())
