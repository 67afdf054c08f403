import pytest

from canonical.models import ChangeEvent, Patient, SourceRecord
from connectors.choices import RunStatus
from connectors.models import FailedJob, SyncCursor
from connectors.sync import create_runs, link_run_patients, run_sync


def sync(connection, resource="records"):
    (run,) = create_runs(connection, resources=[resource])
    return run_sync(run.pk)


def store_matches_source(connection, vendor):
    live = vendor.store.live()
    stored = {p.external_id: p for p in Patient.objects.filter(source_connection=connection, deleted_at__isnull=True)}
    assert set(stored) == set(live)
    for rid, raw in live.items():
        p = stored[rid]
        assert (p.family_name, p.given_names, p.birth_date.isoformat(), p.sex) == (raw["family"], [raw["given"]], raw["birth_date"], raw["gender"])


@pytest.mark.django_db
def test_full_sync_then_incremental_changes_and_deletes(loopback_connection, vendor):
    vendor.store.seed(250)
    run = sync(loopback_connection)
    assert (run.status, run.pages, run.fetched, run.created, run.failed) == (RunStatus.SUCCEEDED, 3, 250, 250, 0)
    store_matches_source(loopback_connection, vendor)
    assert SourceRecord.objects.filter(connection=loopback_connection).count() == 250

    vendor.store.change("r000010", family="Changed")
    vendor.store.delete("r000020")
    run = sync(loopback_connection)
    assert (run.fetched, run.updated, run.deleted, run.created) == (1, 1, 1, 0)
    store_matches_source(loopback_connection, vendor)
    assert Patient.objects.get(external_id="r000020").deleted_at is not None
    assert ChangeEvent.objects.filter(action="delete").count() == 1
    assert SyncCursor.objects.get(connection=loopback_connection, resource="records").state["updated_since"]


@pytest.mark.django_db
def test_full_diff_detects_deletions_and_a_no_change_poll_writes_nothing(loopback_connection, vendor):
    vendor.store.seed(120)
    run = sync(loopback_connection, "records_all")
    assert (run.created, run.deleted) == (120, 0)
    vendor.store.delete("r000005")
    run = sync(loopback_connection, "records_all")
    assert (run.unchanged, run.deleted, run.updated) == (119, 1, 0)
    events = ChangeEvent.objects.count()
    run = sync(loopback_connection, "records_all")
    assert (run.unchanged, run.deleted, run.updated, run.created) == (119, 0, 0, 0)
    assert ChangeEvent.objects.count() == events
    store_matches_source(loopback_connection, vendor)


@pytest.mark.django_db
def test_a_malformed_record_fails_alone_into_triage(loopback_connection, vendor):
    vendor.store.seed(30)
    vendor.faults.malformed_ids = {"r000003"}
    run = sync(loopback_connection)
    assert (run.status, run.created, run.failed) == (RunStatus.PARTIAL, 29, 1)
    job = FailedJob.objects.get()
    assert job.source_record.external_id == "r000003"
    assert job.message == "records: birth_date 'not-a-date' is not YYYY-MM-DD".replace("'not-a-date'", "'…'")
    assert job.source_record.status == "failed" and job.source_record.error_path == "birth_date"


@pytest.mark.django_db
def test_synced_patients_get_master_patients_across_connections(loopback_connection, vendor, tenant_a):
    from canonical.models import MasterPatient
    from tests.factories import ConnectionFactory, CredentialFactory

    vendor.store.seed(20)
    second = ConnectionFactory(tenant=tenant_a, vendor="loopback", base_url=vendor.url, display_name="Loopback 2")
    CredentialFactory(connection=second, username="ops", password="pw-123")
    run = sync(loopback_connection)
    assert Patient.objects.filter(master__isnull=True).count() == 20  # matching is the job that follows the run
    link_run_patients(run.pk)
    assert Patient.objects.filter(master__isnull=True).count() == 0
    link_run_patients(sync(second).pk)
    # Same people from two sources: name, birth date and sex agree, so each pair shares one master.
    first = dict(Patient.objects.filter(source_connection=loopback_connection).values_list("external_id", "master_id"))
    again = dict(Patient.objects.filter(source_connection=second).values_list("external_id", "master_id"))
    assert first == again
    assert len(set(first.values())) == 20 == MasterPatient.objects.filter(tenant=tenant_a).count()
