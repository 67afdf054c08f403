"""The upsert engine under concurrent writers on PostgreSQL (issue 3: "safe to run twice and
concurrently"). Each job runs in its own thread with its own database connection; a barrier
releases them together so their transactions really overlap.

Writers of one tenant queue on the tenant's cursor row (`canonical.events.lock_cursor`), so the
engine promises: no duplicate rows or children, a version bump per real change and never a lost
update, exactly one event per version, and per-tenant cursors 1..n without gaps in commit order.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from django.db import connection, connections

from canonical.models import ChangeCursor, ChangeEvent, Patient, PatientIdentifier
from canonical.upsert import UpsertResult, delete_records, upsert_records
from tests.factories import ConnectionFactory

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

WORKERS = 4
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
MBI_SYSTEM = "http://hl7.org/fhir/sid/us-mbi"
MRN_SYSTEM = "urn:mrn:wellsky"


@pytest.fixture(autouse=True)
def _postgresql_only():
    assert connection.vendor == "postgresql", "these tests need PostgreSQL: run them with `make test-services`"


@pytest.fixture
def conn(tenant_a):
    return ConnectionFactory(tenant=tenant_a)


def patient(number: int, *, phone: str = "555-0100", mbi: str = "1EG4TE5MK73") -> dict[str, Any]:
    return {
        "external_id": f"p{number:03d}", "family_name": "Rivera", "given_names": ["Ana"], "birth_date": date(1948, 3, 2),
        "sex": "female", "phone": phone, "city": "Dayton", "state": "OH",
        "identifiers": [{"system": MRN_SYSTEM, "value": f"MRN-{number}"}, {"system": MBI_SYSTEM, "value": mbi}],
    }


def run_together(jobs: Sequence[Callable[[], UpsertResult]]) -> list[UpsertResult]:
    """Run every job in its own thread, released together; re-raises the first job's error."""
    barrier = threading.Barrier(len(jobs), timeout=30)

    def in_own_connection(job: Callable[[], UpsertResult]) -> UpsertResult:
        try:
            barrier.wait()
            return job()
        finally:
            connections.close_all()  # this thread's connection, so the test database can be flushed

    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = [pool.submit(in_own_connection, job) for job in jobs]
        return [future.result(timeout=120) for future in futures]


def event_rows(tenant) -> list[tuple[int, str, str, int, datetime]]:
    return list(
        ChangeEvent.objects.filter(tenant=tenant).order_by("cursor").values_list("cursor", "record_id", "action", "version", "occurred_at")
    )


def events_by_record(tenant) -> dict[str, list[tuple[int, str, int, datetime]]]:
    grouped = defaultdict(list)
    for cursor, record_id, action, version, occurred_at in event_rows(tenant):
        grouped[str(record_id)].append((cursor, action, version, occurred_at))
    return grouped


def assert_cursors_contiguous(tenant, count: int) -> None:
    assert [row[0] for row in event_rows(tenant)] == list(range(1, count + 1))
    assert ChangeCursor.objects.get(tenant=tenant).value == count


def test_the_same_batch_from_four_writers_at_once_goes_in_once(tenant_a, conn):
    # Three rounds, each a new batch of 200 patients, to give the writers several chances to collide.
    for round_number in range(3):
        numbers = range(200 * round_number, 200 * (round_number + 1))
        batch = [patient(n) for n in numbers]

        results = run_together([lambda batch=batch: upsert_records("patient", batch, tenant=tenant_a, connection=conn)] * WORKERS)

        assert sum(r.created for r in results) == 200
        assert sum(r.updated for r in results) == 0
        assert sum(r.unchanged for r in results) == 600
        assert [r.rejected for r in results] == [[]] * WORKERS
        patients = Patient.objects.filter(tenant=tenant_a, source_connection=conn, external_id__in=[p["external_id"] for p in batch])
        assert patients.count() == 200
        assert set(patients.values_list("version", flat=True)) == {1}
        assert PatientIdentifier.objects.filter(patient__in=patients).count() == 400  # no child written twice
        events = event_rows(tenant_a)[200 * round_number :]
        assert {(action, version) for _, _, action, version, _ in events} == {("create", 1)}
        assert sorted(str(record_id) for _, record_id, _, _, _ in events) == sorted(str(p) for p in patients.values_list("public_id", flat=True))
        assert_cursors_contiguous(tenant_a, 200 * (round_number + 1))


def test_four_different_changes_to_the_same_patients_lose_no_update(tenant_a, conn):
    upsert_records("patient", [patient(n) for n in range(50)], tenant=tenant_a, connection=conn, now=T0)
    # Writer k changes the phone and the MBI of every patient, stamped with its own time so its
    # events can be told apart; odd writers go through the batch in reverse.
    stamps = [T0 + timedelta(minutes=k + 1) for k in range(WORKERS)]
    changes = {stamp: {"phone": f"555-020{k}", "mbi": f"{k + 1}EG4TE5MK7{k}"} for k, stamp in enumerate(stamps)}
    batches = [[patient(n, **changes[stamp]) for n in range(50)][:: -1 if k % 2 else 1] for k, stamp in enumerate(stamps)]

    def writer(k: int) -> Callable[[], UpsertResult]:
        return lambda: upsert_records("patient", batches[k], tenant=tenant_a, connection=conn, now=stamps[k])

    results = run_together([writer(k) for k in range(WORKERS)])

    assert [(r.created, r.updated, r.unchanged) for r in results] == [(0, 50, 0)] * WORKERS
    grouped = events_by_record(tenant_a)
    for stored in Patient.objects.filter(tenant=tenant_a, source_connection=conn):
        history = grouped[str(stored.public_id)]
        assert stored.version == 1 + WORKERS  # every distinct change applied: none lost
        assert [(action, version) for _, action, version, _ in history] == [("create", 1)] + [("update", v) for v in range(2, 2 + WORKERS)]
        last_stamp = history[-1][3]
        assert stored.phone == changes[last_stamp]["phone"]  # the content of the last applied change
        assert stored.updated_at == last_stamp
        assert sorted(stored.identifiers.values_list("system", "value")) == [
            (MBI_SYSTEM, changes[last_stamp]["mbi"]), (MRN_SYSTEM, f"MRN-{int(stored.external_id[1:])}"),
        ]
    assert_cursors_contiguous(tenant_a, 50 + 50 * WORKERS)
    # Each writer's transaction got one unbroken run of cursors: cursors follow commit order.
    runs = defaultdict(list)
    for cursor, _, action, _, occurred_at in event_rows(tenant_a):
        if action == "update":
            runs[occurred_at].append(cursor)
    assert sorted(len(cursors) for cursors in runs.values()) == [50] * WORKERS
    assert all(cursors == list(range(cursors[0], cursors[0] + 50)) for cursors in runs.values())


def test_the_same_batch_twice_writes_no_events_the_second_time(tenant_a, conn):
    batch = [patient(n) for n in range(100)]
    first = upsert_records("patient", batch, tenant=tenant_a, connection=conn, now=T0)
    before = list(Patient.objects.order_by("external_id").values_list("external_id", "version", "content_hash", "updated_at"))

    second = upsert_records("patient", batch, tenant=tenant_a, connection=conn, now=T0 + timedelta(hours=1))

    assert (first.created, first.updated, first.unchanged) == (100, 0, 0)
    assert (second.created, second.updated, second.unchanged, second.changed_ids) == (0, 0, 100, [])
    assert list(Patient.objects.order_by("external_id").values_list("external_id", "version", "content_hash", "updated_at")) == before
    assert PatientIdentifier.objects.count() == 200
    assert_cursors_contiguous(tenant_a, 100)


def test_deletes_racing_upserts_leave_versions_and_events_in_agreement(tenant_a, conn):
    numbers = range(50)
    external_ids = [f"p{n:03d}" for n in numbers]
    upsert_records("patient", [patient(n) for n in numbers], tenant=tenant_a, connection=conn, now=T0)
    phones: dict[datetime, str] = {T0: "555-0100"}
    totals = {"deleted": 0, "updated": 0}
    for round_number in range(3):
        # Two deleters and two writers of different content per round, each with its own time.
        stamps = [T0 + timedelta(hours=round_number + 1, minutes=k) for k in range(WORKERS)]
        jobs = []
        for k, stamp in enumerate(stamps):
            if k % 2 == 0:
                jobs.append(lambda stamp=stamp: delete_records("patient", external_ids, tenant=tenant_a, connection=conn, now=stamp))
            else:
                phones[stamp] = f"555-{round_number}{k}00"
                batch = [patient(n, phone=phones[stamp]) for n in numbers]
                jobs.append(lambda batch=batch, stamp=stamp: upsert_records("patient", batch, tenant=tenant_a, connection=conn, now=stamp))
        results = run_together(jobs)
        assert [r.rejected for r in results] == [[]] * WORKERS
        totals["deleted"] += sum(r.deleted for r in results)
        totals["updated"] += sum(r.updated for r in results)

    events = event_rows(tenant_a)
    assert sum(1 for e in events if e[2] == "delete") == totals["deleted"]
    assert sum(1 for e in events if e[2] == "update") == totals["updated"]
    assert totals["deleted"] > 0 and totals["updated"] > 0
    assert_cursors_contiguous(tenant_a, len(events))
    grouped = events_by_record(tenant_a)
    for stored in Patient.objects.filter(tenant=tenant_a, source_connection=conn):
        history = grouped[str(stored.public_id)]
        actions = [action for _, action, _, _ in history]
        assert [version for _, _, version, _ in history] == list(range(1, stored.version + 1))  # one event per version
        assert actions[0] == "create"
        assert ("delete", "delete") not in set(zip(actions, actions[1:], strict=False))  # a tombstone is deleted once
        last_write = next(occurred_at for _, action, _, occurred_at in reversed(history) if action != "delete")
        assert stored.phone == phones[last_write]  # the content of the last applied upsert
        if actions[-1] == "delete":
            assert stored.deleted_at == history[-1][3]
        else:
            assert stored.deleted_at is None
        assert stored.identifiers.count() == 2
