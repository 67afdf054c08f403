"""Figures for identity matching: `link_patients` per page of new patients, on SQLite or PostgreSQL.

    .venv/bin/python bench/identity_link.py [--n 100000] [--batch 1000] [--db sqlite|postgres]

The script re-runs itself as a child process (`--child sqlite|postgres`), because the settings
read DATABASE_URL once at import. The child builds a scratch database (a temporary SQLite file,
or `switchboard_bench_identity` on the local PostgreSQL, dropped and created here), migrates it,
creates one tenant with one connection, then for each page of `--batch` generated patients (the
data of bench/upsert_patients.py: birth dates spread over 80 years) upserts the page with
`upsert_records` (not timed) and times `link_patients` on the ids it created, as a sync does.
Pages late in the run are the goal's case: a page of 1,000 new patients in a tenant already
holding ~100,000. Every generated patient carries its own MBI, so no pair reaches the review
threshold: each page makes 1,000 new masters, as a first sync of a source does.

PostgreSQL: the local server runs with autovacuum off, so without help its planner would never
get table statistics. Like autovacuum at its default settings (analyze once a table grew by 10%),
the child runs VACUUM ANALYZE on the patient tables whenever the tenant grew by 10% (not timed).
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
POSTGRES_SERVER = "postgres://postgres@127.0.0.1:5432"
POSTGRES_DATABASE = "switchboard_bench_identity"
GOAL_MS = 150  # per page of 1,000 new patients in a tenant of 100,000 (PostgreSQL)
LATE_PAGES = 10  # pages at the end of the run, averaged for the goal
ANALYZED_TABLES = ("canonical_patient", "canonical_patientidentifier", "canonical_masterpatient", "tenants_auditevent")


def _autovacuum(database: str) -> None:
    """What autovacuum would have done by now (PostgreSQL): fresh statistics, dead rows gone."""
    if database != "postgres":
        return
    from django.db import connection as db

    with db.cursor() as cursor:
        for table in ANALYZED_TABLES:
            cursor.execute(f"VACUUM ANALYZE {table}")


def _child_environment(database: str, scratch: Path) -> None:
    """Point the settings at a scratch database; the embedded profile, DEBUG off (no query log)."""
    for name in ("HUB_PROFILE", "SECRET_KEY", "DRAMATIQ_BROKER_URL"):
        os.environ.pop(name, None)
    os.environ["DJANGO_SETTINGS_MODULE"] = "hub.settings"
    os.environ["HUB_VAR_DIR"] = str(scratch)
    os.environ["DEBUG"] = "false"
    if database == "sqlite":
        os.environ["DATABASE_URL"] = f"sqlite:///{scratch / 'bench.sqlite3'}"
    else:
        import psycopg

        with psycopg.connect(f"{POSTGRES_SERVER}/postgres", autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {POSTGRES_DATABASE} WITH (FORCE)")
            admin.execute(f"CREATE DATABASE {POSTGRES_DATABASE}")
        os.environ["DATABASE_URL"] = f"{POSTGRES_SERVER}/{POSTGRES_DATABASE}"


def _child(database: str, n: int, batch_size: int) -> int:
    with tempfile.TemporaryDirectory(prefix="sb-bench-identity-") as scratch:
        _child_environment(database, Path(scratch))
        sys.path.insert(0, str(ROOT))
        sys.path.insert(0, str(BENCH))
        import django

        django.setup()
        from django.core.management import call_command
        from django.db import connection as db
        from upsert_patients import make_patients

        from canonical.identity import IdentityReport, link_patients
        from canonical.models import MasterPatient, Patient
        from canonical.upsert import upsert_records
        from tenants.models import AuditEvent, Connection, Tenant

        load = os.getloadavg()
        call_command("migrate", verbosity=0)
        tenant = Tenant.objects.create(slug="bench", name="Bench", timezone="UTC")
        connection = Connection.objects.create(tenant=tenant, vendor="wellsky", display_name="identity bench")
        records = make_patients(n)
        batches = [records[i : i + batch_size] for i in range(0, n, batch_size)]
        gc.collect()
        gc.freeze()  # a sync worker holds one page, not the whole generated population

        total = IdentityReport()
        upsert_seconds = 0.0
        link_seconds: list[float] = []
        analyzed_at = 0  # patients stored at the last VACUUM ANALYZE
        for number, batch in enumerate(batches):
            if number * batch_size >= max(1.1 * analyzed_at, analyzed_at + 50):
                _autovacuum(database)
                analyzed_at = number * batch_size
            start = time.perf_counter()
            result = upsert_records("patient", batch, tenant=tenant, connection=connection)
            middle = time.perf_counter()
            report = link_patients(tenant, result.changed_ids)
            link_seconds.append(time.perf_counter() - middle)
            upsert_seconds += middle - start
            total.linked += report.linked
            total.queued += report.queued
            total.new_masters += report.new_masters

        unlinked = Patient.objects.filter(tenant=tenant, master__isnull=True).count()
        if unlinked or total.new_masters != MasterPatient.objects.filter(tenant=tenant).count():
            raise SystemExit(f"{database}: {unlinked} patients without a master; report {total}")
        events = AuditEvent.objects.filter(tenant=tenant).count()
        if events != total.new_masters + total.linked + total.queued:
            raise SystemExit(f"{database}: {events} audit events for {total}")

        version = (
            f"SQLite {db.Database.sqlite_version}"
            if database == "sqlite"
            else f"PostgreSQL {db.pg_version // 10000}.{db.pg_version % 10000}"
        )
        seconds = sum(link_seconds)
        late = link_seconds[-LATE_PAGES:]
        print(f"\n{database} ({version}): {n:,} patients, one connection, pages of {batch_size:,}")
        print(f"  load average at start {load[0]:.1f} on {os.cpu_count()} CPUs (other work skews figures)")
        print(f"  upserts (not part of the figure): {upsert_seconds:.1f} s")
        print(f"  link_patients: {total.new_masters:,} new masters, {total.queued:,} reviews, {total.linked:,} links")
        print(f"  link_patients total {seconds:.2f} s = {n / seconds:,.0f} patients/s")
        print(
            f"  per page: mean {1000 * statistics.mean(link_seconds):.0f} ms, "
            f"median {1000 * statistics.median(link_seconds):.0f} ms, max {1000 * max(link_seconds):.0f} ms"
        )
        late_ms = 1000 * statistics.mean(late)
        verdict = "PASS" if late_ms <= GOAL_MS else "MISS"
        print(
            f"  {database}: last {len(late)} pages (tenant holding ~{n - len(late) * batch_size:,}+ patients): "
            f"mean {late_ms:.0f} ms per page (goal <= {GOAL_MS} ms on PostgreSQL) {verdict}"
        )
        sys.stdout.flush()
        db.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="patients (default 100000)")
    parser.add_argument("--batch", type=int, default=1000, help="patients per page (default 1000)")
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="postgres")
    parser.add_argument("--child", choices=("sqlite", "postgres"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.n < 1 or args.batch < 1:
        parser.error("--n and --batch must be positive")
    if args.child:
        return _child(args.child, args.n, args.batch)
    options = ["--child", args.db, "--n", str(args.n), "--batch", str(args.batch)]
    command = [sys.executable, str(Path(__file__).resolve()), *options]
    return subprocess.run(command, cwd=ROOT, check=False).returncode  # noqa: S603 (our own script)


if __name__ == "__main__":
    sys.exit(main())
