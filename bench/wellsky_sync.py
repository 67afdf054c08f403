"""Figures for issue 5: a full sync of the WellSky sandbox, then an incremental sync after 1% changes.

    .venv/bin/python bench/wellsky_sync.py [--scale 100000] [--broker-url redis://127.0.0.1:6379/13]
        [--timeout 3600] [--threads 2] [--keep-db]

On one run, against a scratch PostgreSQL database (`switchboard_bench_wellsky`, dropped and
created here, migrated), a scratch Redis database (only Dramatiq's and the rate limiter's keys in
it are cleared), the vendor sandbox in its own process (`manage.py sandbox --seed 1 --scale N`)
and one real `manage.py rundramatiq` worker:

(a) the tenant, its WellSky connection and credential (`sunrise.admin`: password + TOTP) are set
    up as `make demo` does (`hub.management.commands.demo.set_up_tenant`);
(b) full sync: `enqueue_runs` (one SyncRun per resource, a chain of `sync_resource` messages),
    timed from the enqueue to the last run's finished_at; records/s = records fetched / that time;
    each run's duration and counts print. The store is then checked against the source: live
    canonical records per kind vs `/_sandbox/state` (coverage vs the coverage lists of the
    sandbox's patients, generated here from the same seed);
(c) 1% of the live records change in the vendor (`POST /_sandbox/mutate` with changes only);
(d) incremental sync (every resource from its cursor, `updated_since`), measured the same way;
    fraction = incremental time / full time, on the same run (goal < 0.05). The changed records
    must have arrived: fetched per resource = distinct records changed, a new raw payload kept for
    each, and SyncRun.updated ~ the changes (a record changed twice is one update; a change that
    leaves the canonical record as it was, e.g. a care plan's goal already "Achieved", is
    unchanged). The store is checked against the source again.

Record the figures in bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.sync_throughput import POSTGRES_SERVER, _free_port, _stop, _verdict  # noqa: E402

POSTGRES_DATABASE = "switchboard_bench_wellsky"
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/13"  # not 12 or 15: other benches and test runs use them
SEED = 1
ACCOUNT = "sunrise.admin"  # TOTP MFA
FRACTION_GOAL = 0.05  # incremental sync time / full sync time
CHANGE_SHARE = 0.01
# /_sandbox/state's names -> canonical kinds (coverage has no count there: see _expected_coverage)
SOURCE_KINDS = {
    "patients": "patient", "practitioners": "practitioner", "locations": "location", "authorizations": "authorization",
    "appointments": "appointment", "encounters": "encounter", "care_plans": "care_plan", "referrals": "referral",
}


def _environment(scratch: Path, broker_url: str) -> None:
    """Settings for this process and the processes it starts (the worker, the sandbox): the
    scratch database and Redis, the embedded profile with DEBUG off, loopback vendor URLs allowed."""
    for name in ("HUB_PROFILE", "SECRET_KEY", "RATE_LIMIT_REDIS_URL", "CACHE_URL", "HUB_EXTRA_CONNECTORS"):
        os.environ.pop(name, None)
    os.environ.update({
        "DJANGO_SETTINGS_MODULE": "hub.settings",
        "HUB_VAR_DIR": str(scratch),  # the Fernet key the credential is encrypted with: shared with the worker
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


def _recreate_database() -> None:
    _admin_execute(f"DROP DATABASE IF EXISTS {POSTGRES_DATABASE} WITH (FORCE)", f"CREATE DATABASE {POSTGRES_DATABASE}")


def _drop_database() -> None:
    _admin_execute(f"DROP DATABASE IF EXISTS {POSTGRES_DATABASE} WITH (FORCE)")


# --- the sandbox ------------------------------------------------------------------------------------
def _start_sandbox(scale: int, log_dir: Path) -> tuple[subprocess.Popen, str]:
    import httpx

    port = _free_port()
    log_path = log_dir / "sandbox.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(  # noqa: S603 (our own manage.py)
            [sys.executable, "manage.py", "sandbox", "--port", str(port), "--seed", str(SEED), "--scale", str(scale)],
            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while True:
        if process.poll() is not None:
            raise SystemExit(f"the sandbox exited with {process.returncode}: {log_path.read_text()[-2000:]}")
        try:
            httpx.get(f"{url}/_sandbox/state", timeout=5).raise_for_status()
            return process, url
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                _stop(process)
                raise SystemExit("the sandbox did not answer /_sandbox/state within 300 s") from None
            time.sleep(0.2)


def _sandbox(method: str, url: str, body: dict | None = None) -> dict:
    import httpx

    response = httpx.request(method, url, json=body, timeout=300)
    response.raise_for_status()
    return response.json()


def _expected_coverage(scale: int) -> int:
    """Coverage rows the hub should hold: one per entry of each sandbox patient's coverage list.
    Generated here from the same seed (records are a pure function of (seed, index, version), and
    a change never alters a patient's coverage; only changes are made, no creates or deletes)."""
    from sandbox.wellsky.data import Agency

    patients = Agency(seed=SEED, scale=scale).table("patients")
    return sum(len(patients.fields(index)["coverage"]) for index in range(patients.count))


# --- syncing ----------------------------------------------------------------------------------------
def _sync(connection, timeout: float, label: str) -> tuple[float, list]:
    """Enqueue every resource's run; wait until all have finished. (enqueue → last finished_at seconds, runs)."""
    from connectors.models import SyncRun
    from connectors.tasks import enqueue_runs

    enqueued = time.time()
    ids = [run.pk for run in enqueue_runs(connection)]
    started = time.monotonic()
    last_report = started
    while True:
        runs = list(SyncRun.objects.filter(pk__in=ids).order_by("pk"))
        if all(run.finished_at is not None for run in runs):
            break
        now = time.monotonic()
        if now - started > timeout:
            raise SystemExit(f"{label}: gave up after {timeout:.0f} s; runs: "
                             + ", ".join(f"{r.resource} {r.status} {r.fetched:,}" for r in runs))
        if now - last_report >= 30:
            last_report = now
            current = next((r for r in runs if r.finished_at is None and r.started_at is not None), None)
            done = sum(r.fetched for r in runs)
            where = f"{current.resource}: {current.pages} pages, {current.fetched:,} fetched" if current else "waiting for the worker"
            print(f"  … {label} {now - started:5.0f} s: {done:,} records so far; {where}", flush=True)
        time.sleep(0.25)
    wall = max(run.finished_at.timestamp() for run in runs) - enqueued
    return wall, runs


def _print_runs(runs: list, enqueued_wall: float) -> None:
    print(f"  {'resource':<15}{'status':<11}{'pages':>6}{'fetched':>10}{'created':>10}{'updated':>9}{'unchanged':>10}"
          f"{'deleted':>8}{'failed':>7}{'seconds':>9}{'rec/s':>9}{'wait':>6}")
    previous = None
    for run in runs:
        seconds = (run.finished_at - run.started_at).total_seconds() if run.started_at else 0.0
        wait = (run.started_at - previous).total_seconds() if previous and run.started_at else None
        previous = run.finished_at
        rate = f"{run.fetched / seconds:,.0f}" if seconds > 0 else "-"
        print(f"  {run.resource:<15}{run.status:<11}{run.pages:>6}{run.fetched:>10,}{run.created:>10,}{run.updated:>9,}"
              f"{run.unchanged:>10,}{run.deleted:>8,}{run.failed:>7,}{seconds:>9.2f}{rate:>9}"
              f"{'' if wait is None else f'{wait:>6.2f}'}")
        if run.error:
            print(f"      error: {run.error[:300]}")
    in_runs = sum((r.finished_at - r.started_at).total_seconds() for r in runs if r.started_at)
    print(f"  sum of the runs' own durations {in_runs:.2f} s of {enqueued_wall:.2f} s from enqueue to the last finish "
          f"(the rest: the first pickup and the handovers between runs; 'wait' = since the previous run finished)")


def _check_store(connection, source: dict[str, int], coverage: int) -> bool:
    """Live canonical records of the connection per kind vs the sandbox's live counts; prints a table."""
    from canonical.kinds import get_kind

    expected = {SOURCE_KINDS[name]: count for name, count in source.items() if name in SOURCE_KINDS}
    expected["coverage"] = coverage
    unknown = sorted(set(source) - set(SOURCE_KINDS))
    ok = True
    print(f"  {'kind':<15}{'store':>10}{'source':>10}")
    for kind, want in expected.items():
        have = get_kind(kind).model.objects.filter(source_connection=connection, deleted_at__isnull=True).count()
        good = have == want
        ok &= good
        print(f"  {kind:<15}{have:>10,}{want:>10,}  {'ok' if good else f'MISMATCH ({have - want:+,})'}")
    if unknown:
        print(f"  (the sandbox also counts {', '.join(unknown)}: no canonical kind is checked for them)")
    print(f"  store vs source: {'all equal' if ok else 'MISMATCH'}")
    return ok


def _wait_identity(connection, timeout: float) -> float:
    """Seconds until every synced patient has a master patient (the identity job after the patient run)."""
    from canonical.models import Patient

    started = time.monotonic()
    unlinked = Patient.objects.filter(source_connection=connection, deleted_at__isnull=True, master__isnull=True)
    while unlinked.exists():
        if time.monotonic() - started > timeout:
            raise SystemExit(f"identity matching: {unlinked.count():,} patients still unlinked after {timeout:.0f} s")
        time.sleep(0.5)
    return time.monotonic() - started


def _arrived(connection, changed: dict[str, set[str]], since) -> dict[str, int]:
    """Per resource, how many of the changed records have a raw payload kept since `since`."""
    from canonical.models import SourceRecord

    found = {}
    for resource, ids in changed.items():
        seen: set[str] = set()
        wanted = sorted(ids)
        for start in range(0, len(wanted), 5000):
            seen.update(SourceRecord.objects.filter(connection=connection, resource_type=resource, received_at__gte=since,
                                                    external_id__in=wanted[start : start + 5000])
                        .values_list("external_id", flat=True))
        found[resource] = len(seen)
    return found


# --- the bench --------------------------------------------------------------------------------------
def run_bench(scale: int, broker_url: str, timeout: float, threads: int, keep: bool) -> int:
    scratch = Path(tempfile.mkdtemp(prefix="sb-bench-wellsky-"))
    _environment(scratch, broker_url)
    _recreate_database()
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection as db

    from connectors.choices import RunStatus
    from hub.management.commands.demo import set_up_tenant
    from tests.support.processes import clear_broker, start_worker

    call_command("migrate", verbosity=0)
    postgres = f"PostgreSQL {db.pg_version // 10000}.{db.pg_version % 10000}"
    clear_broker(broker_url)
    sandbox = worker = None
    ok = True
    try:
        setup_started = time.perf_counter()
        sandbox, sandbox_url = _start_sandbox(scale, scratch)
        worker = start_worker(name="wellsky", database_settings=db.settings_dict, broker_url=broker_url, log_dir=scratch, threads=threads)
        account = next(a for a in _sandbox("GET", f"{sandbox_url}/_sandbox/accounts")["wellsky"] if a["username"] == ACCOUNT)
        tenant, connection = set_up_tenant(sandbox_url, account)
        worker.wait_ready(timeout=180)
        source = _sandbox("GET", f"{sandbox_url}/_sandbox/state")["wellsky"]
        total_source = sum(source.values())
        print(f"{postgres}, Redis {broker_url}; sandbox seed {SEED} scale {scale:,} at {sandbox_url}: "
              f"{total_source:,} live records ({', '.join(f'{k} {v:,}' for k, v in source.items())}); "
              f"one worker process ({threads} threads); ready in {time.perf_counter() - setup_started:.1f} s; logs in {scratch}",
              flush=True)

        # (b) the full sync
        print("\nFull sync", flush=True)
        full_seconds, full_runs = _sync(connection, timeout, "full sync")
        full_fetched = sum(r.fetched for r in full_runs)
        _print_runs(full_runs, full_seconds)
        ok &= all(r.status == RunStatus.SUCCEEDED for r in full_runs)
        coverage_started = time.perf_counter()
        coverage = _expected_coverage(scale)
        print(f"  (expected coverage rows generated from the seed in {time.perf_counter() - coverage_started:.1f} s)")
        full_store_ok = _check_store(connection, source, coverage)
        identity_seconds = _wait_identity(connection, timeout)
        identity_after = time.time() - max(r.finished_at.timestamp() for r in full_runs)
        print(f"  identity matching: every patient linked {identity_after:.1f} s after the last run finished "
              f"(waited {identity_seconds:.1f} s here, before the changes)", flush=True)

        # (c) 1% of the live records change
        changes = total_source // round(1 / CHANGE_SHARE)
        mutate_started = time.perf_counter()
        done = _sandbox("POST", f"{sandbox_url}/_sandbox/mutate", {"vendor": "wellsky", "changes": changes})
        changed = {resource.replace("-", "_"): set(ids) for resource, ids in done["changed"].items()}
        change_counts = {resource.replace("-", "_"): len(ids) for resource, ids in done["changed"].items()}
        distinct = sum(len(ids) for ids in changed.values())
        print(f"\n{changes:,} changes (1% of {total_source:,}) made in the sandbox in {time.perf_counter() - mutate_started:.1f} s: "
              f"{distinct:,} distinct records ("
              + ", ".join(f"{r} {change_counts[r]:,}/{len(ids):,}" for r, ids in changed.items())
              + " changes/records)", flush=True)

        # (d) the incremental sync
        print("\nIncremental sync", flush=True)
        from django.utils import timezone

        incremental_since = timezone.now()
        incremental_seconds, incremental_runs = _sync(connection, timeout, "incremental sync")
        _print_runs(incremental_runs, incremental_seconds)
        ok &= all(r.status == RunStatus.SUCCEEDED for r in incremental_runs)
        by_resource = {r.resource: r for r in incremental_runs}
        arrived = _arrived(connection, changed, incremental_since)
        print(f"  {'resource':<15}{'changes':>9}{'records':>9}{'fetched':>9}{'updated':>9}{'unchanged':>10}{'new raw':>9}")
        arrival_ok = True
        for resource, ids in changed.items():
            run = by_resource[resource]
            good = run.fetched == len(ids) and arrived[resource] == len(ids) and run.updated + run.unchanged == len(ids)
            arrival_ok &= good
            print(f"  {resource:<15}{change_counts[resource]:>9,}"
                  f"{len(ids):>9,}{run.fetched:>9,}{run.updated:>9,}{run.unchanged:>10,}{arrived[resource]:>9,}"
                  f"  {'ok' if good else 'MISSING'}")
        unchanged_resources = [r for r in incremental_runs if r.resource not in changed and r.resource != "coverage"]
        for run in unchanged_resources:
            if run.fetched:
                arrival_ok = False
                print(f"  {run.resource}: {run.fetched:,} fetched though none changed")
        updated_total = sum(r.updated for r in incremental_runs if r.resource != "coverage")
        coverage_run = by_resource.get("coverage")
        print(f"  SyncRun.updated {updated_total:,} for {changes:,} changes to {distinct:,} distinct records"
              + (f" (coverage, re-read with the changed patients: {coverage_run.fetched:,} fetched, {coverage_run.updated:,} updated)"
                 if coverage_run else "")
              + f"; every changed record arrived: {'yes' if arrival_ok else 'NO'}")
        incremental_store_ok = _check_store(connection, _sandbox("GET", f"{sandbox_url}/_sandbox/state")["wellsky"], coverage)

        # figures
        full_in_runs = sum((r.finished_at - r.started_at).total_seconds() for r in full_runs if r.started_at)
        incremental_in_runs = sum((r.finished_at - r.started_at).total_seconds() for r in incremental_runs if r.started_at)
        fraction = incremental_seconds / full_seconds
        print(f"\nSummary (scale {scale:,}, {total_source:,} live vendor records, {postgres})")
        print(f"  full sync:        {full_fetched:,} records fetched ({full_fetched - sum(r.fetched for r in full_runs if r.resource == 'coverage'):,} "
              f"vendor records + coverage rows) in {full_seconds:.1f} s = {full_fetched / full_seconds:,.0f} records/s "
              f"(enqueue -> last finish; runs' own durations {full_in_runs:.1f} s)")
        print(f"  incremental sync: {sum(r.fetched for r in incremental_runs):,} records fetched in {incremental_seconds:.2f} s "
              f"(runs' own durations {incremental_in_runs:.2f} s)")
        print(f"  incremental / full = {incremental_seconds:.2f} / {full_seconds:.1f} = {fraction:.4f} "
              f"(goal < {FRACTION_GOAL}) {_verdict(fraction < FRACTION_GOAL)}; runs' own durations "
              f"{incremental_in_runs / full_in_runs:.4f}")
        print(f"  store = source after the full sync: {'yes' if full_store_ok else 'NO'}; after the incremental: "
              f"{'yes' if incremental_store_ok else 'NO'}; changed records arrived: {'yes' if arrival_ok else 'NO'}")
        ok &= full_store_ok and incremental_store_ok and arrival_ok
        if not ok:
            print("  SOME CHECK FAILED: the figures do not count (see above)")
        sys.stdout.flush()
    finally:
        if worker is not None:
            worker.stop()
        if sandbox is not None:
            _stop(sandbox)
        clear_broker(broker_url)
        db.close()
        if keep:
            print(f"kept the {POSTGRES_DATABASE} database and {scratch} (its Fernet key decrypts the credential)")
        else:
            _drop_database()
            shutil.rmtree(scratch, ignore_errors=True)
    return 0 if ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=100_000, help="sandbox patients (default 100000: ~1.4M records)")
    parser.add_argument("--broker-url", default=DEFAULT_BROKER_URL, help=f"a scratch Redis database (default {DEFAULT_BROKER_URL})")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds each sync may take (default 3600)")
    parser.add_argument("--threads", type=int, default=2,
                        help="worker threads (default 2: the chain is sequential; identity matching runs alongside)")
    parser.add_argument("--keep-db", action="store_true", help=f"keep the {POSTGRES_DATABASE} database afterwards")
    args = parser.parse_args(argv)
    if args.scale < 4:
        parser.error("--scale must be at least 4")
    if not args.broker_url.startswith("redis://"):
        parser.error("--broker-url must be a redis:// URL")
    if args.broker_url.rstrip("/").rsplit("/", 1)[-1] in ("12", "15"):
        parser.error("Redis databases 12 and 15 belong to other benches and test runs")
    # SIGTERM unwinds like Ctrl-C, so the worker, the sandbox and the scratch database are cleaned up.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    return run_bench(args.scale, args.broker_url, args.timeout, args.threads, args.keep_db)


if __name__ == "__main__":
    sys.exit(main())
