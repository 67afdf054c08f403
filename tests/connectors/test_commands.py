"""`manage.py sync`: queue a tenant's runs now; with --wait, run them to the end (through the
in-process worker on the embedded default) and print their counts."""

from __future__ import annotations

import io
import re

import pytest
from django.core.management import CommandError, call_command
from django.db import connection as db
from dramatiq.brokers.stub import StubBroker

from canonical.models import Patient
from connectors.choices import RunStatus
from connectors.http import RetryPolicy
from connectors.models import FailedJob, SyncRun
from connectors.tasks import sync_resource
from hub.worker import ensure_inprocess_worker, stop_inprocess_worker
from tests.support.loopback import LoopbackConnector

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def uncommitted_reads():
    """SQLite's in-memory test database is one shared cache with table locks: a read fails at once
    ("database table is locked") while another connection holds a write on that table, instead
    of waiting as a file database in WAL mode (the embedded default) does. `sync --wait` polls
    from this thread while the worker thread writes, so this thread reads without read locks.
    A no-op elsewhere (PostgreSQL; SQLite outside shared-cache mode)."""
    if db.vendor != "sqlite":
        yield
        return
    with db.cursor() as cursor:
        cursor.execute("PRAGMA read_uncommitted = 1")
    yield
    with db.cursor() as cursor:
        cursor.execute("PRAGMA read_uncommitted = 0")


@pytest.fixture
def running_worker(broker, request, uncommitted_reads):
    """The embedded default's in-process worker (the one the command starts); on a real broker,
    where the command starts none, a worker thread stands in for `rundramatiq`."""
    if not isinstance(broker, StubBroker):
        yield request.getfixturevalue("worker")
        return
    worker = ensure_inprocess_worker()
    yield worker
    stop_inprocess_worker()
    broker.middleware[:] = [m for m in broker.middleware if getattr(m, "worker", None) is not worker]


def sync(*args: str) -> list[str]:
    out = io.StringIO()
    call_command("sync", *args, stdout=out)
    return lines_of(out)


def lines_of(out: io.StringIO) -> list[str]:
    return [re.sub(r" in \d+\.\ds", " in Ns", line) for line in out.getvalue().splitlines()]


def test_sync_wait_runs_every_resource_and_prints_the_counts(loopback_connection, vendor, running_worker):
    vendor.store.seed(30)

    lines = sync("--tenant", "tenant-a", "--wait", "--timeout", "20")

    assert lines == [
        "Queued 2 run(s).",
        "Loopback records: succeeded — fetched 30, created 30, updated 0, unchanged 0, deleted 0, failed 0 in Ns",
        "Loopback records_all: succeeded — fetched 30, created 0, updated 0, unchanged 30, deleted 0, failed 0 in Ns",
    ]
    assert Patient.objects.filter(source_connection=loopback_connection).count() == 30


def test_one_connection_and_one_resource(loopback_connection, vendor, running_worker):
    vendor.store.seed(12)
    vendor.store.records["r000004"]["birth_date"] = "04/05/1960"  # one record the mapping refuses

    lines = sync("--tenant", "tenant-a", "--connection", str(loopback_connection.public_id), "--resource", "records", "--wait",
                 "--timeout", "20")

    assert lines == [
        "Queued 1 run(s).",
        "Loopback records: partial — fetched 12, created 11, updated 0, unchanged 0, deleted 0, failed 1 in Ns",
    ]
    assert SyncRun.objects.get().resource == "records"


def test_a_failing_run_makes_the_command_fail(loopback_connection, vendor, running_worker):
    credential = loopback_connection.credential
    credential.password = "wrong"
    credential.save()
    out = io.StringIO()

    with pytest.raises(CommandError) as caught:
        call_command("sync", "--tenant", "tenant-a", "--resource", "records", "--wait", "--timeout", "20", stdout=out)

    assert str(caught.value) == "Some runs did not succeed (see above; failed jobs are in the admin's triage)."
    assert lines_of(out) == [
        "Queued 1 run(s).",
        "Loopback records: failed — fetched 0, created 0, updated 0, unchanged 0, deleted 0, failed 0 in Ns"
        " — loopback: refused with # (bad_credentials)",
    ]
    assert FailedJob.objects.get().exception_type == "connectors.errors.AuthenticationFailed"


def test_a_run_whose_retries_run_out_ends_the_wait(loopback_connection, vendor, running_worker, monkeypatch):
    monkeypatch.setattr(LoopbackConnector, "retry_policy", RetryPolicy(max_attempts=1))
    monkeypatch.setitem(sync_resource.options, "min_backoff", 1)
    monkeypatch.setitem(sync_resource.options, "max_backoff", 5)
    vendor.faults.error_rate = 1.0
    out = io.StringIO()

    with pytest.raises(CommandError):
        call_command("sync", "--tenant", "tenant-a", "--resource", "records", "--wait", "--timeout", "20", stdout=out)

    assert lines_of(out)[1] == (
        "Loopback records: failed — fetched 0, created 0, updated 0, unchanged 0, deleted 0, failed 0 in Ns — loopback: server error #"
    )
    assert FailedJob.objects.get().attempts == 7


def test_without_wait_it_only_queues(loopback_connection, vendor, broker, running_worker):
    vendor.store.seed(3)

    assert sync("--tenant", "tenant-a") == ["Queued 2 run(s)."]

    broker.join("sync", timeout=10_000)
    running_worker.join()
    assert list(SyncRun.objects.values_list("status", flat=True)) == [RunStatus.SUCCEEDED, RunStatus.SUCCEEDED]


@pytest.mark.parametrize(("args", "message"), [
    (["--tenant", "nope"], "No tenant with slug 'nope'."),
    (["--tenant", "tenant-a", "--connection", "00000000-0000-0000-0000-000000000000"],
     "Tenant 'tenant-a' has no enabled connection 00000000-0000-0000-0000-000000000000."),
    (["--tenant", "tenant-a", "--connection", "Loopback"],
     "--connection takes a connection's public id (a UUID), not 'Loopback'."),
    (["--tenant", "tenant-a", "--resource", "appointments"], "loopback has no resource 'appointments'; it has records, records_all"),
])
def test_bad_arguments_are_command_errors_and_queue_nothing(loopback_connection, sent, running_worker, args, message):
    with pytest.raises(CommandError) as caught:
        call_command("sync", *args, stdout=io.StringIO())

    assert str(caught.value) == message
    assert SyncRun.objects.count() == 0
    assert sent == []


def test_another_tenants_connection_is_unknown(loopback_connection, tenant_b):
    with pytest.raises(CommandError, match=r"^Tenant 'tenant-b' has no enabled connection "):
        call_command("sync", "--tenant", "tenant-b", "--connection", str(loopback_connection.public_id), stdout=io.StringIO())
