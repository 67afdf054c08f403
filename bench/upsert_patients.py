"""Figures for the upsert engine (issue 3): patients with identifiers, on SQLite and PostgreSQL.

    .venv/bin/python bench/upsert_patients.py [--n 100000] [--batch 1000] [--db sqlite|postgres|both]

Each database runs in its own child process of this script (`--child sqlite`), because the
settings read DATABASE_URL once at import. The child builds a scratch database (a temporary
SQLite file, or `switchboard_bench` on the local PostgreSQL, dropped and created here), migrates
it, creates one tenant with two connections, and measures on the same run:

(a) raw: one transaction of `executemany` INSERTs of the N patients for connection 1 (the same
    columns the engine writes), one SELECT of their ids, then `executemany` of the identifiers.
    Its parameters are built before the clock starts, so it is the fastest the rows can go in.
    Its rows are then removed, so that (b) starts from the same empty tables (on a table that
    already holds N rows every index insert costs more, which is not the engine's doing);
(b) first upsert: `upsert_records("patient", batch, …)` for connection 2, batch by batch, as the
    sync engine calls it per page; its speed as a fraction of raw speed (goal ≥ 0.5);
(c) second upsert of the same unchanged batches; speedup = first / second (goal ≥ 3×).

The generated records are moved out of the garbage collector's sight (`gc.freeze`): a sync
worker holds one page, not 100,000 records, and the collector re-walking them would be charged to
whichever phase allocates most. Figures are ratios on one run because the machine is noisy;
record them in bench/README.md.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_SERVER = "postgres://postgres@127.0.0.1:5432"
POSTGRES_DATABASE = "switchboard_bench"
SEED = 20260301
RATIO_GOAL = 0.5  # upsert speed as a fraction of raw INSERT speed
SPEEDUP_GOAL = 3.0  # first upsert time / unchanged upsert time

MRN_SYSTEM = "urn:oid:2.16.840.1.113883.3.bench.mrn"
MBI_SYSTEM = "http://hl7.org/fhir/sid/us-mbi"

# --- data --------------------------------------------------------------------------------------

_FAMILY = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez", "Martinez",
    "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore", "Jackson", "Martin",
    "Lee", "Perez", "Thompson", "White", "Harris", "Sanchez", "Clark", "Ramirez", "Lewis", "Robinson",
    "Nguyen", "O'Brien", "Kowalski", "Schmidt", "Rivera", "Okafor", "Patel", "Kim", "Cohen", "Murphy",
)
_GIVEN_FEMALE = (
    "Mary", "Patricia", "Linda", "Barbara", "Elizabeth", "Jennifer", "Maria", "Susan", "Margaret", "Dorothy",
    "Lisa", "Nancy", "Karen", "Betty", "Helen", "Sandra", "Donna", "Carol", "Ruth", "Sharon", "Ana", "Mei",
)
_GIVEN_MALE = (
    "James", "John", "Robert", "Michael", "William", "David", "Richard", "Charles", "Joseph", "Thomas",
    "Christopher", "Daniel", "Paul", "Mark", "Donald", "George", "Kenneth", "Steven", "Edward", "Brian", "José", "Minh",
)
_STREETS = ("Main St", "Oak Ave", "Maple Dr", "Cedar Ln", "Elm St", "Washington Blvd", "Lake Rd", "Hill St", "Park Ave", "Pine Ct")
_CITIES = (
    ("Dayton", "OH", "454"), ("Columbus", "OH", "432"), ("Austin", "TX", "787"), ("Houston", "TX", "770"),
    ("Tampa", "FL", "336"), ("Orlando", "FL", "328"), ("Denver", "CO", "802"), ("Phoenix", "AZ", "850"),
    ("Chicago", "IL", "606"), ("Atlanta", "GA", "303"), ("Portland", "OR", "972"), ("Nashville", "TN", "372"),
)
# Medicare Beneficiary Identifier character classes (CMS): no S, L, O, I, B, Z among the letters.
_MBI_LETTERS = "ACDEFGHJKMNPQRTUVWXY"
_MBI_ALNUM = _MBI_LETTERS + "0123456789"


def _mbi(rng: random.Random) -> str:
    digit = "0123456789"
    pattern = ("123456789", _MBI_LETTERS, _MBI_ALNUM, digit, _MBI_LETTERS, _MBI_ALNUM, digit, _MBI_LETTERS, _MBI_LETTERS, digit, digit)
    return "".join(rng.choice(chars) for chars in pattern)


def make_patients(n: int, seed: int = SEED) -> list[dict[str, Any]]:
    """N normalized patient records, the same for the same seed, each with an MRN and an MBI."""
    rng = random.Random(seed)
    records = []
    for i in range(n):
        sex = rng.choices(("female", "male", "other", "unknown"), weights=(52, 46, 1, 1))[0]
        names = _GIVEN_FEMALE if sex == "female" else _GIVEN_MALE
        given = [rng.choice(names)] + ([rng.choice(names)] if rng.random() < 0.4 else [])
        family = rng.choice(_FAMILY)
        city, state, zip_prefix = rng.choice(_CITIES)
        records.append({
            "external_id": f"PT-{i:07d}",
            "family_name": family,
            "given_names": given,
            "phone": f"({rng.randint(201, 989)}) 555-{rng.randint(0, 9999):04d}",
            "email": f"{given[0].lower()}.{family.lower().replace(chr(39), '')}{i}@example.org" if rng.random() < 0.6 else "",
            "address_line1": f"{rng.randint(1, 9999)} {rng.choice(_STREETS)}",
            "address_line2": f"Apt {rng.randint(1, 40)}" if rng.random() < 0.2 else "",
            "city": city,
            "state": state,
            "postal_code": f"{zip_prefix}{rng.randint(0, 99):02d}",
            "country": "US",
            "birth_date": date(1925, 1, 1) + timedelta(days=rng.randrange(365 * 80)),
            "sex": sex,
            "language": rng.choices(("en", "es", "vi", "zh"), weights=(80, 14, 3, 3))[0],
            "identifiers": [
                {"system": MRN_SYSTEM, "value": f"MRN{i:08d}"},
                {"system": MBI_SYSTEM, "value": _mbi(rng)},
            ],
        })
    return records


# --- parent: one child process per database ----------------------------------------------------

def _run_children(args: argparse.Namespace) -> int:
    databases = ("sqlite", "postgres") if args.db == "both" else (args.db,)
    status = 0
    for database in databases:
        command = [sys.executable, str(Path(__file__).resolve()), "--child", database, "--n", str(args.n), "--batch", str(args.batch)]
        returncode = subprocess.run(command, cwd=ROOT, check=False).returncode  # noqa: S603 (our own script)
        status = status or returncode
    return status


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


# --- child: the measurements -------------------------------------------------------------------

def _timed(work: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = work()
    return time.perf_counter() - start, value


def _raw_insert(records: Sequence[dict], tenant, connection) -> tuple[float, float]:
    """Baseline (a). Returns (seconds to build parameters, seconds to insert)."""
    from django.db import connection as db
    from django.db import transaction
    from django.utils import timezone

    from canonical.ids import child_ids, uuid7
    from canonical.kinds import get_kind
    from canonical.models import Patient, PatientIdentifier
    from canonical.upsert import content_hash

    spec = get_kind("patient")
    qn = db.ops.quote_name
    fields = [Patient._meta.get_field(name) for name in spec.fields]
    meta = ["tenant_id", "source_connection_id", "external_id", "public_id", "content_hash", "version", "created_at", "updated_at", "deleted_at"]
    columns = [*meta, *(f.column for f in fields)]
    child_fields = [PatientIdentifier._meta.get_field(name) for name in ("system", "value")]
    child_columns = ["public_id", "position", "patient_id", "tenant_id", *(f.column for f in child_fields)]
    uuid_param = (lambda value: value) if db.features.has_native_uuid_field else (lambda value: value.hex)
    # The patient fields are text, a JSON list and a date: adapt those two the way Django does.
    adapt = {
        f.name: (lambda v, f=f: db.ops.adapt_json_value(v, f.encoder)) if f.get_internal_type() == "JSONField"
        else db.ops.adapt_datefield_value if f.get_internal_type() == "DateField" else None
        for f in fields
    }

    def build():
        now = db.ops.adapt_datetimefield_value(timezone.now())
        rows, children = [], []
        for record in records:
            public_id = uuid7()  # the engine's ids, so both paths write the same rows
            rows.append([
                tenant.pk, connection.pk, record["external_id"], uuid_param(public_id), content_hash(record), 1, now, now, None,
                *(adapt[f.name](record[f.name]) if adapt[f.name] else record[f.name] for f in fields),
            ])
            items = record["identifiers"]
            ids = child_ids(public_id, [f"identifiers/{position}" for position in range(len(items))])
            for position, (item, child_id) in enumerate(zip(items, ids, strict=True)):
                children.append((
                    record["external_id"],
                    [uuid_param(uuid.UUID(child_id)), position, None, tenant.pk, *(item[f.name] for f in child_fields)],
                ))
        return rows, children

    build_seconds, (rows, children) = _timed(build)
    patients, identifiers = qn(Patient._meta.db_table), qn(PatientIdentifier._meta.db_table)
    insert_patients = f"INSERT INTO {patients} ({', '.join(qn(c) for c in columns)}) VALUES ({', '.join(['%s'] * len(columns))})"  # noqa: S608
    insert_identifiers = f"INSERT INTO {identifiers} ({', '.join(qn(c) for c in child_columns)}) VALUES ({', '.join(['%s'] * len(child_columns))})"  # noqa: S608

    def insert():
        with transaction.atomic(), db.cursor() as cursor:
            cursor.executemany(insert_patients, rows)
            cursor.execute(f"SELECT external_id, id FROM {patients} WHERE tenant_id = %s AND source_connection_id = %s", [tenant.pk, connection.pk])  # noqa: S608
            ids = dict(cursor.fetchall())
            for external_id, row in children:
                row[2] = ids[external_id]
            cursor.executemany(insert_identifiers, [row for _, row in children])

    insert_seconds, _ = _timed(insert)
    return build_seconds, insert_seconds


def _stored_counts(connection) -> tuple[int, int]:
    from canonical.models import Patient, PatientIdentifier

    return (
        Patient.objects.filter(source_connection=connection).count(),
        PatientIdentifier.objects.filter(patient__source_connection=connection).count(),
    )


def _remove_raw_rows() -> None:
    """Empty the patient tables (they hold only the raw rows here) so the engine starts where raw did."""
    from django.db import connection as db

    from canonical.models import Patient, PatientIdentifier

    patients, identifiers = Patient._meta.db_table, PatientIdentifier._meta.db_table
    with db.cursor() as cursor:
        if db.vendor == "postgresql":  # TRUNCATE leaves no dead index entries behind, unlike DELETE
            cursor.execute(f"TRUNCATE {identifiers}, {patients} CASCADE")
        else:
            cursor.execute(f"DELETE FROM {identifiers}")  # noqa: S608
            cursor.execute(f"DELETE FROM {patients}")  # noqa: S608


def _upsert_all(batches: Sequence[Sequence[dict]], tenant, connection) -> tuple[int, int, int, int]:
    from canonical.upsert import upsert_records

    totals = [0, 0, 0, 0]
    for batch in batches:
        result = upsert_records("patient", batch, tenant=tenant, connection=connection)
        totals[0] += result.created
        totals[1] += result.updated
        totals[2] += result.unchanged
        totals[3] += len(result.rejected)
    return tuple(totals)


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def _child(database: str, n: int, batch_size: int) -> int:
    with tempfile.TemporaryDirectory(prefix="sb-bench-") as scratch:
        _child_environment(database, Path(scratch))
        sys.path.insert(0, str(ROOT))
        import django

        django.setup()
        from django.core.management import call_command
        from django.db import connection as db

        from canonical.models import ChangeEvent
        from tenants.models import Connection, Tenant

        load = os.getloadavg()
        call_command("migrate", verbosity=0)
        tenant = Tenant.objects.create(slug="bench", name="Bench", timezone="UTC")
        raw_connection = Connection.objects.create(tenant=tenant, vendor="wellsky", display_name="raw INSERT")
        engine_connection = Connection.objects.create(tenant=tenant, vendor="wellsky", display_name="upsert engine")

        generate_seconds, records = _timed(lambda: make_patients(n))
        batches = [records[i : i + batch_size] for i in range(0, n, batch_size)]
        gc.collect()
        gc.freeze()
        build_seconds, raw_seconds = _raw_insert(records, tenant, raw_connection)
        # The figures count only if both paths stored the same thing.
        if _stored_counts(raw_connection) != (n, 2 * n):
            raise SystemExit(f"{database}: raw INSERT stored {_stored_counts(raw_connection)} (patients, identifiers)")
        _remove_raw_rows()
        first_seconds, first = _timed(lambda: _upsert_all(batches, tenant, engine_connection))
        second_seconds, second = _timed(lambda: _upsert_all(batches, tenant, engine_connection))

        if _stored_counts(engine_connection) != (n, 2 * n):
            raise SystemExit(f"{database}: upsert stored {_stored_counts(engine_connection)} (patients, identifiers)")
        if first != (n, 0, 0, 0) or second != (0, 0, n, 0):
            raise SystemExit(f"{database}: unexpected upsert counts {first} then {second} (created, updated, unchanged, rejected)")
        event_count = ChangeEvent.objects.filter(tenant=tenant).count()
        if event_count != n:
            raise SystemExit(f"{database}: {event_count} change events for {n} creates")

        version = f"SQLite {db.Database.sqlite_version}" if database == "sqlite" else f"PostgreSQL {db.pg_version // 10000}.{db.pg_version % 10000}"
        ratio = raw_seconds / first_seconds
        speedup = first_seconds / second_seconds
        print(f"\n{database} ({version}): {n:,} patients with {2 * n:,} identifiers, upsert batches of {batch_size:,}")
        print(f"  load average at start {load[0]:.1f} on {os.cpu_count()} CPUs (other work on the machine skews every figure)")
        print(f"  data generated in {generate_seconds:.1f} s; raw parameters built in {build_seconds:.1f} s (not timed)")
        print(f"  {'phase':<38}{'seconds':>9}{'records/s':>12}")
        for label, seconds in (
            ("(a) raw bulk INSERT, one transaction", raw_seconds),
            ("(b) upsert, first (creates)", first_seconds),
            ("(c) upsert, second (unchanged)", second_seconds),
        ):
            print(f"  {label:<38}{seconds:>9.2f}{n / seconds:>12,.0f}")
        print(f"  {database}: first upsert {n / first_seconds:,.0f} records/s = {ratio:.2f} of raw (goal >= {RATIO_GOAL}) {_verdict(ratio >= RATIO_GOAL)}")
        print(f"  {database}: unchanged upsert {speedup:.1f}x faster than first (goal >= {SPEEDUP_GOAL:.0f}x) {_verdict(speedup >= SPEEDUP_GOAL)}")
        sys.stdout.flush()
        db.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="patients (default 100000)")
    parser.add_argument("--batch", type=int, default=1000, help="records per upsert call (default 1000)")
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--child", choices=("sqlite", "postgres"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.n < 1 or args.batch < 1:
        parser.error("--n and --batch must be positive")
    return _child(args.child, args.n, args.batch) if args.child else _run_children(args)


if __name__ == "__main__":
    sys.exit(main())
