"""The sync engine under a real `manage.py rundramatiq` worker on a real Redis broker.

Services profile only (`make test-services`): the worker is a separate process that reaches the
loopback vendor over HTTP and the pytest-django test database over TCP, so these tests commit
(transaction=True). The kill test starts its workers with a short Redis heartbeat timeout and
maintenance on every broker command, so the SIGKILLed worker's unacknowledged message is handed to
the next worker in seconds instead of after Dramatiq's production default of a minute or more.
"""

from __future__ import annotations

import os
from collections import Counter

import pytest
from django.db import connection as db_connection

from canonical.models import ChangeEvent, Patient, PatientIdentifier, SourceRecord
from connectors.choices import RunStatus
from connectors.models import SyncRun
from connectors.tasks import enqueue_runs, pull_resource
from tests.factories import ConnectionFactory, CredentialFactory, EntitlementFactory
from tests.support.loopback import LoopbackVendor
from tests.support.processes import WorkerProcess, clear_broker, start_worker, wait_for

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

# A worker silent this long is dead and its unacked messages go back on the queue, checked on
# every broker command: well above the ~1 s between a live worker's commands. Only for a lone
# worker: next to a live one stalled by a busy machine it could hand out a message twice.
HEARTBEAT_TIMEOUT_MS = 5_000
FAST_REQUEUE_ENV = {"DRAMATIQ_REDIS_HEARTBEAT_TIMEOUT_MS": str(HEARTBEAT_TIMEOUT_MS), "DRAMATIQ_REDIS_MAINTENANCE_CHANCE": "1000000"}
RECORDS, PAGE_SIZE = 3_000, 100
PAGES = RECORDS // PAGE_SIZE
RATE_LIMIT = 5  # requests per second
# Between a worker taking a rate-limit slot and its request reaching the vendor: a Redis round
# trip and a loopback connect, milliseconds; this bound leaves room for a busy machine.
SLOT_TO_ARRIVAL_S = 0.2


@pytest.fixture
def broker_url():
    url = os.environ["DRAMATIQ_BROKER_URL"]
    assert url.startswith("redis://"), f"these tests need a Redis broker, not {url}"
    clear_broker(url)
    yield url
    clear_broker(url)


@pytest.fixture
def workers(tmp_path, broker_url):
    """start(*names, threads=…) → workers on the test database, started together, each ready.
    All are stopped, and their database sessions gone, when the test ends."""
    started: list[WorkerProcess] = []
    database = db_connection.settings_dict
    assert database["NAME"].startswith("test_"), database["NAME"]  # never the developer's database

    def start(*names: str, threads: int = 2, fast_requeue: bool = False) -> list[WorkerProcess]:
        env = FAST_REQUEUE_ENV if fast_requeue else {}
        batch = [
            start_worker(name=name, database_settings=database, broker_url=broker_url, log_dir=tmp_path, threads=threads, env=env)
            for name in names
        ]
        started.extend(batch)
        for worker in batch:
            worker.wait_ready()
        return batch

    yield start
    for worker in started:
        worker.terminate()
    for worker in started:
        worker.stop()
    for worker in started:
        worker.wait_disconnected()


def loopback(tenant, vendor: LoopbackVendor, **options):
    connection = ConnectionFactory(tenant=tenant, vendor="loopback", base_url=vendor.url, display_name="Loopback", options=options)
    CredentialFactory(connection=connection, username="ops", password="pw-123", totp_secret="")
    EntitlementFactory(tenant=tenant, capability="patients.read")
    return connection


def finished_run(run_id: int) -> SyncRun | None:
    run = SyncRun.objects.get(pk=run_id)
    return run if run.finished_at is not None else None


def assert_store_equals_source(connection, vendor: LoopbackVendor) -> None:
    """Every live source record once, field for field, created once; nothing else."""
    live = vendor.store.live()
    patients = list(Patient.objects.filter(source_connection=connection).values_list(
        "external_id", "family_name", "given_names", "birth_date", "sex", "version", "deleted_at", "public_id"))
    by_id = {row[0]: row for row in patients}
    assert len(patients) == len(by_id) == len(live)  # no duplicates
    assert set(by_id) == set(live)
    for rid, raw in live.items():
        _, family, given, birth, sex, version, deleted_at, _ = by_id[rid]
        assert (family, given, birth.isoformat(), sex, version, deleted_at) == (raw["family"], [raw["given"]], raw["birth_date"], raw["gender"], 1, None)

    identifiers = Counter(PatientIdentifier.objects.filter(patient__source_connection=connection).values_list("patient__external_id", "system", "value"))
    assert identifiers == Counter((rid, "urn:loopback:mrn", raw["mrn"]) for rid, raw in live.items())

    events = list(ChangeEvent.objects.filter(tenant=connection.tenant, resource_type="patient").values_list("record_id", "action", "version"))
    assert sorted(events) == sorted((row[7], "create", 1) for row in patients)  # one create each, no update

    sources = list(SourceRecord.objects.filter(connection=connection).values_list("external_id", "status"))
    assert sorted(sources) == sorted((rid, "normalized") for rid in live)  # one kept payload each


@pytest.mark.parametrize("resource", ["records", "records_all"])  # cursor mode, then full diff
def test_a_worker_killed_mid_sync_is_replaced_and_the_store_equals_the_source(resource, tenant_a, vendor, workers):
    # Given a vendor whose sync takes 30 pages of 100 at 50 ms a request, and a worker
    vendor.store.seed(RECORDS)
    vendor.faults.latency_ms = 50
    connection = loopback(tenant_a, vendor, page_size=PAGE_SIZE)
    (first,) = workers("first", fast_requeue=True)

    # When the worker is SIGKILLed after at least 5 pages are committed
    (run,) = enqueue_runs(connection, resources=[resource])
    wait_for(lambda: SyncRun.objects.get(pk=run.pk).pages >= 5, timeout=60, what="5 committed pages")
    first.kill()
    first.wait_disconnected()

    # Then the run is unfinished and holds whole pages only (each page is one transaction)
    run.refresh_from_db()
    assert (run.status, run.finished_at) == (RunStatus.RUNNING, None)
    assert 5 <= run.pages < PAGES
    committed = run.pages * PAGE_SIZE
    assert (run.fetched, run.created) == (committed, committed)
    assert Patient.objects.filter(source_connection=connection).count() == committed
    assert SourceRecord.objects.filter(connection=connection).count() == committed

    # When a new worker starts, the broker hands it the dead worker's message after the heartbeat timeout
    workers("second", fast_requeue=True)
    run = wait_for(lambda: finished_run(run.pk), timeout=120, what="the resumed run to finish", interval=0.2)

    # Then the run resumed from the last committed page: nothing lost, nothing doubled
    assert (run.status, run.pages, run.fetched, run.created, run.updated, run.unchanged, run.deleted, run.failed) == (
        RunStatus.SUCCEEDED, PAGES, RECORDS, RECORDS, 0, 0, 0, 0)
    assert_store_equals_source(connection, vendor)
    # and identity matching, the job that follows the run, gives every patient a master
    unlinked = Patient.objects.filter(source_connection=connection, master__isnull=True)
    wait_for(lambda: not unlinked.exists(), timeout=60, what="identity matching after the run")


def charge_to_whole_seconds(arrivals: list[float], *, limit: int, slack: float) -> dict[int, int] | None:
    """Charge each arrival to the whole second in which its rate-limit slot was taken — its own
    second or, when it arrived less than `slack` seconds into it, possibly the one before — with
    at most `limit` per second. Returns the charges per second, or None when no such charging
    exists (the limit was broken). Greedy on sorted arrivals, earliest second first, is optimal
    because each arrival's allowed seconds form an interval whose ends never decrease."""
    charged: Counter[int] = Counter()
    for arrival in sorted(arrivals):
        for second in range(int(arrival - slack), int(arrival) + 1):
            if charged[second] < limit:
                charged[second] += 1
                break
        else:
            return None
    return dict(charged)


def test_charging_arrivals_to_whole_seconds():
    assert charge_to_whole_seconds([10.0, 10.1, 10.9, 11.05, 11.5], limit=2, slack=0.2) == {9: 2, 10: 2, 11: 1}
    assert charge_to_whole_seconds([10.3, 10.4, 10.5], limit=2, slack=0.2) is None  # three in one second
    assert charge_to_whole_seconds([10.9, 11.0, 11.1, 11.5], limit=2, slack=0.2) == {10: 2, 11: 2}


def test_a_per_connection_rate_limit_holds_across_two_worker_processes(tenant_a, vendor, workers):
    # Given a connection limited to 5 requests a second, and two worker processes of 4 threads each
    vendor.store.seed(40)
    connection = loopback(tenant_a, vendor, rate_limit_per_second=RATE_LIMIT)
    one, two = workers("one", "two", threads=4)

    # When 40 pulls are queued at once (unlimited, 8 threads would make hundreds of calls a second)
    ids = sorted(vendor.store.records)
    for external_id in ids:
        pull_resource.send(connection_id=connection.pk, resource="records", external_id=external_id)
    wait_for(lambda: Patient.objects.filter(source_connection=connection).count() == len(ids), timeout=90,
             what="40 pulled records", interval=0.2)

    # Then every record was fetched exactly once, after one or more logins …
    gets = sorted(path for method, path in vendor.requests if method == "GET")
    assert gets == sorted(f"/records/{external_id}" for external_id in ids)
    assert {path for method, path in vendor.requests if method == "POST"} == {"/login"}
    # … no whole second of the vendor's clock let more than 5 through …
    arrivals = list(vendor.arrivals)
    assert len(arrivals) == len(vendor.requests)
    charges = charge_to_whole_seconds(arrivals, limit=RATE_LIMIT, slack=SLOT_TO_ARRIVAL_S)
    assert charges is not None, f"more than {RATE_LIMIT}/s arrived: {sorted(Counter(int(t) for t in arrivals).items())}"
    # … and both processes did some of the work.
    calls = [worker.log().count("vendor=loopback GET /records/:id -> 200") for worker in (one, two)]
    assert sum(calls) == len(ids) and min(calls) >= 1, calls
