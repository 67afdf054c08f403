"""The Dramatiq actors with a real worker (in this process) on the configured broker: fan-out,
retries of a 5xx storm into triage, final errors without retries, replay after a fix, pulls and
tombstones, and entitlements refused before any request.

Every test here runs a worker thread with its own database connection, hence
`transaction=True`; the worker has one thread, and the test only reads once it has drained.
"""

from __future__ import annotations

import pytest

from canonical.models import Patient, SourceRecord
from connectors.choices import FailedJobStatus, RunStatus, Trigger
from connectors.http import RetryPolicy
from connectors.models import FailedJob, SyncRun
from connectors.tasks import enqueue_runs, pull_resource, sync_connection, sync_resource
from connectors.triage import retry_failed_jobs
from tenants.choices import ConnectionStatus
from tenants.models import Entitlement
from tests.support.loopback import LoopbackConnector

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def fast_retries(monkeypatch):
    """Retry in milliseconds instead of seconds: HTTP backoff and the actor's own backoff."""
    monkeypatch.setattr(LoopbackConnector, "retry_policy", RetryPolicy(max_attempts=2, backoff_base=0.001, backoff_cap=0.002))
    monkeypatch.setitem(sync_resource.options, "min_backoff", 1)
    monkeypatch.setitem(sync_resource.options, "max_backoff", 5)


def test_sync_connection_fans_out_one_run_per_pollable_resource(loopback_connection, vendor, sent, worker, drain):
    vendor.store.seed(120)

    sync_connection.send(connection_id=loopback_connection.pk)
    drain("sync", "identity")

    runs = list(SyncRun.objects.order_by("pk"))
    assert [(r.resource, r.mode, r.trigger, r.status, r.fetched, r.failed) for r in runs] == [
        ("records", "cursor", Trigger.MANUAL, RunStatus.SUCCEEDED, 120, 0),
        ("records_all", "full_diff", Trigger.MANUAL, RunStatus.SUCCEEDED, 120, 0),
    ]
    assert (runs[0].created, runs[1].unchanged) == (120, 120)  # in the connector's order, one after the other
    assert runs[0].finished_at <= runs[1].started_at
    assert sent[:2] == [
        ("sync_connection", {"connection_id": loopback_connection.pk}),
        ("sync_resource", {"run_id": runs[0].pk, "then": [runs[1].pk]}),
    ]
    # each run hands over to the next; each patient run is followed by identity matching, a job of its own
    assert sorted(sent[2:], key=str) == sorted(
        [("link_run_patients", {"run_id": run.pk}) for run in runs] + [("sync_resource", {"run_id": runs[1].pk, "then": []})], key=str,
    )
    assert Patient.objects.filter(source_connection=loopback_connection, deleted_at__isnull=True).count() == 120
    assert not Patient.objects.filter(source_connection=loopback_connection, master__isnull=True).exists()
    assert FailedJob.objects.count() == 0
    loopback_connection.refresh_from_db()
    assert loopback_connection.status == ConnectionStatus.OK
    assert loopback_connection.last_synced_at is not None


def test_a_5xx_storm_is_retried_then_lands_in_triage(loopback_connection, vendor, fast_retries, worker, drain):
    vendor.store.seed(10)
    vendor.faults.error_rate = 1.0

    (run,) = enqueue_runs(loopback_connection, resources=["records"])
    drain("sync", timeout_s=15)

    # seven attempts (retry_when allows six retries), each trying the login twice (max_attempts=2)
    assert vendor.requests == [("POST", "/login")] * 14
    job = FailedJob.objects.get()
    assert (job.actor, job.arguments, job.exception_type, job.message, job.attempts, job.status) == (
        "sync_resource", {"args": [], "kwargs": {"run_id": run.pk}}, "connectors.errors.RetryableError",
        "loopback: server error #", 7, FailedJobStatus.OPEN,
    )
    assert (job.sync_run_id, job.connection_id, job.tenant_id) == (run.pk, loopback_connection.pk, loopback_connection.tenant_id)
    assert "RetryableError: loopback: server error #" in job.traceback
    assert job.first_failed_at <= job.last_failed_at
    run.refresh_from_db()
    assert (run.status, run.error, run.fetched) == (RunStatus.FAILED, "loopback: server error #", 0)
    assert run.finished_at is not None
    loopback_connection.refresh_from_db()
    assert (loopback_connection.status, loopback_connection.status_detail) == (ConnectionStatus.ERROR, "loopback: server error #")
    assert Patient.objects.count() == 0


def test_a_storm_that_passes_is_retried_to_success(loopback_connection, vendor, fast_retries, worker, drain):
    vendor.store.seed(10)
    vendor.faults.fail_next = 5  # login fails twice per attempt: attempts 1 and 2 fail, attempt 3 gets through

    (run,) = enqueue_runs(loopback_connection, resources=["records"])
    drain("sync", timeout_s=15)

    run.refresh_from_db()
    assert (run.status, run.created, run.error) == (RunStatus.SUCCEEDED, 10, "")
    assert FailedJob.objects.count() == 0


def test_a_final_error_goes_to_triage_without_a_retry(loopback_connection, vendor, fast_retries, worker, drain):
    credential = loopback_connection.credential
    credential.password = "rotated-by-the-vendor"
    credential.save()

    (run,) = enqueue_runs(loopback_connection, resources=["records"])
    drain("sync")

    assert vendor.requests == [("POST", "/login")]
    job = FailedJob.objects.get()
    assert (job.actor, job.exception_type, job.message, job.attempts, job.sync_run_id, job.status) == (
        "sync_resource", "connectors.errors.AuthenticationFailed", "loopback: refused with # (bad_credentials)", 1, run.pk,
        FailedJobStatus.OPEN,
    )
    run.refresh_from_db()
    assert (run.status, run.error) == (RunStatus.FAILED, "loopback: refused with # (bad_credentials)")
    loopback_connection.refresh_from_db()
    assert loopback_connection.status == ConnectionStatus.AUTH_FAILED


def test_a_record_replayed_from_triage_after_a_fix_resolves_its_failed_job(
        loopback_connection, vendor, superuser, sent, worker, drain, monkeypatch):
    vendor.store.seed(10)
    vendor.faults.malformed_ids = {"r000003"}
    (run,) = enqueue_runs(loopback_connection, resources=["records"])
    drain("sync")
    run.refresh_from_db()
    assert (run.status, run.created, run.failed) == (RunStatus.PARTIAL, 9, 1)
    job = FailedJob.objects.get()
    source = SourceRecord.objects.get(connection=loopback_connection, external_id="r000003")
    assert (job.actor, job.arguments, job.source_record_id, job.sync_run_id) == (
        "replay_source_record", {"args": [], "kwargs": {"source_record_id": source.pk}}, source.pk, run.pk)

    # The fix: the mapping learns to read this vendor's placeholder as "birth date unknown". The
    # kept payload still says "not-a-date"; only the code changed.
    strict = LoopbackConnector.normalize

    def lenient(self, resource, raw, mapper):
        if raw.get("birth_date") == "not-a-date":
            return {**strict(self, resource, {**raw, "birth_date": "1900-01-01"}, mapper), "birth_date": None}
        return strict(self, resource, raw, mapper)

    monkeypatch.setattr(LoopbackConnector, "normalize", lenient)
    assert retry_failed_jobs(FailedJob.objects.all(), user=superuser) == 1
    drain("default")

    assert sent[-1] == ("replay_source_record", {"source_record_id": source.pk})
    job.refresh_from_db()
    assert (job.status, job.resolution) == (FailedJobStatus.RESOLVED, "replayed")
    patient = Patient.objects.get(source_connection=loopback_connection, external_id="r000003")
    assert (patient.family_name, patient.birth_date) == (vendor.store.records["r000003"]["family"], None)
    source.refresh_from_db()
    assert source.status == "normalized"
    assert FailedJob.objects.count() == 1  # the replay added no new failure
    assert len(vendor.requests) == 2  # the login and the one page: a replay never calls the vendor


def test_a_replay_that_still_fails_stays_in_triage(loopback_connection, vendor, superuser, worker, drain):
    vendor.store.seed(5)
    vendor.faults.malformed_ids = {"r000001"}
    enqueue_runs(loopback_connection, resources=["records"])
    drain("sync")
    first = FailedJob.objects.get()

    retry_failed_jobs(FailedJob.objects.all(), user=superuser)
    drain("default")

    first.refresh_from_db()
    assert first.status == FailedJobStatus.RETRIED
    again = FailedJob.objects.exclude(pk=first.pk).get()
    assert (again.status, again.source_record_id, again.message) == (
        FailedJobStatus.OPEN, first.source_record_id, "records: birth_date '…' is not YYYY-MM-DD")
    assert again.signature == first.signature
    assert not Patient.objects.filter(external_id="r000001").exists()


def test_pull_resource_fetches_one_record_and_a_404_tombstones_it(loopback_connection, vendor, worker, drain):
    vendor.store.seed(5)

    pull_resource.send(connection_id=loopback_connection.pk, resource="records", external_id="r000002")
    drain("pull")
    patient = Patient.objects.get(source_connection=loopback_connection, external_id="r000002")
    assert (patient.family_name, patient.deleted_at) == (vendor.store.records["r000002"]["family"], None)
    assert Patient.objects.count() == 1

    vendor.store.delete("r000002")
    pull_resource.send(connection_id=loopback_connection.pk, resource="records", external_id="r000002")
    drain("pull")

    patient.refresh_from_db()
    assert patient.deleted_at is not None
    assert [path for _, path in vendor.requests] == ["/login", "/records/r000002", "/records/r000002"]
    assert FailedJob.objects.count() == 0


def test_a_missing_entitlement_fails_fast_naming_it_and_calls_nobody(loopback_connection, vendor, tenant_a, worker, drain):
    Entitlement.objects.filter(tenant=tenant_a).delete()
    vendor.store.seed(5)

    sync_connection.send(connection_id=loopback_connection.pk)
    drain("sync")

    assert vendor.requests == []
    expected = "missing entitlement patients.read: Tenant '…' is not entitled to '…' on connection '…' (no entitlement valid now)."
    assert [(r.resource, r.status, r.error) for r in SyncRun.objects.order_by("pk")] == [
        ("records", RunStatus.FAILED, expected), ("records_all", RunStatus.FAILED, expected),
    ]
    jobs = FailedJob.objects.order_by("pk")
    assert [(j.actor, j.exception_type, j.message, j.attempts) for j in jobs] == [
        ("sync_resource", "connectors.errors.EntitlementRefused", expected, 1),
    ] * 2
    assert len({j.signature for j in jobs}) == 1  # one cause, grouped
    assert Patient.objects.count() == 0


def test_a_missing_entitlement_refuses_a_pull_too(loopback_connection, vendor, tenant_a, worker, drain):
    Entitlement.objects.filter(tenant=tenant_a).delete()

    pull_resource.send(connection_id=loopback_connection.pk, resource="records", external_id="r000002")
    drain("pull")

    assert vendor.requests == []
    job = FailedJob.objects.get()
    assert (job.actor, job.exception_type, job.attempts, job.connection_id) == (
        "pull_resource", "connectors.errors.EntitlementRefused", 1, loopback_connection.pk)
    assert job.message.startswith("missing entitlement patients.read: ")


def test_a_job_for_a_connection_that_is_gone_does_nothing(vendor, worker, drain):
    sync_connection.send(connection_id=987654)
    pull_resource.send(connection_id=987654, resource="records", external_id="r1")
    drain("sync", "pull")

    assert SyncRun.objects.count() == 0
    assert FailedJob.objects.count() == 0
    assert vendor.requests == []


@pytest.mark.parametrize("fault", ["storm", "bad_password"])
def test_a_run_that_fails_for_good_still_hands_over_to_the_next_resource(loopback_connection, vendor, fast_retries, worker, drain, fault):
    vendor.store.seed(5)
    if fault == "storm":
        vendor.faults.error_rate = 1.0  # retried until retries run out
    else:
        credential = loopback_connection.credential
        credential.password = "rotated-by-the-vendor"  # final at once
        credential.save()

    runs = enqueue_runs(loopback_connection)
    drain("sync", timeout_s=30)

    assert [(r.resource, r.status) for r in SyncRun.objects.filter(pk__in=[r.pk for r in runs]).order_by("pk")] == [
        ("records", RunStatus.FAILED), ("records_all", RunStatus.FAILED),  # the chain went on; nothing is left queued
    ]
