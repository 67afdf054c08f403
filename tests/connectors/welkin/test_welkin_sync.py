"""Welkin over real HTTP against the sandbox: the initial full load field by field, tokens that
expire mid-sync, the reconciliation sweep, the v1 grant, refusals and triage."""

from __future__ import annotations

import pytest

from canonical import models as m
from connectors.choices import RunStatus, SessionState
from connectors.errors import AuthenticationFailed, FinalError
from connectors.models import FailedJob, SyncCursor, VendorSession
from connectors.sync import create_runs, pull_record, run_sync
from tests.connectors.welkin.conftest import connect, sync_all
from tests.connectors.welkin.expect import differences, source

pytestmark = pytest.mark.django_db

ORDER = ["coaches", "patients", "calendar_events", "care_plans", "assessments", "encounters"]


def test_the_initial_full_load_holds_every_resource_field_by_field(welkin, sandbox):
    runs = sync_all(welkin)

    assert [r.resource for r in runs] == ORDER
    assert differences(sandbox, welkin) == []
    sizes = sandbox.vendor("welkin").tenant().sizes
    assert [r.created for r in runs] == [sizes[name] for name in ORDER]
    assert m.Appointment.objects.filter(source_connection=welkin, practitioner__isnull=True).count() == 0  # the coach is the practitioner


def test_a_token_expiring_mid_sync_is_renewed_after_its_401(tenant_a, sandbox, control, accounts):
    connection = connect(tenant_a, sandbox, accounts["northwind"], options={"page_size": 5})
    control.post("/_sandbox/faults", json={"session_ttl_s": 1, "latency_ms": 120})  # ~8 calls per token

    sync_all(connection, resources=["coaches", "patients", "calendar_events"])

    session = VendorSession.objects.get(connection=connection)
    assert sandbox.vendor("welkin").expired_refusals >= 1  # Welkin said TOKEN_EXPIRED mid-sync …
    assert session.logins == 1 + sandbox.vendor("welkin").expired_refusals  # … and each time the hub logged in again once
    assert session.state == SessionState.ACTIVE
    assert differences(sandbox, connection, ["coaches", "patients", "calendar_events"]) == []


def test_the_sweep_brings_exactly_the_changes_including_those_whose_ping_was_lost(welkin, sandbox, control):
    sync_all(welkin)
    done = control.post("/_sandbox/mutate", json={"vendor": "welkin", "changes": 6, "creates": 3, "notify": False}).json()
    assert sandbox.vendor("welkin").deliveries == []  # nothing was pinged (and no webhook is configured)

    runs = sync_all(welkin)

    changed = {resource: set(ids) for resource, ids in done["changed"].items()}
    created = {resource: set(ids) for resource, ids in done["created"].items()}
    by_resource = {r.resource: r for r in runs}
    for resource in ORDER:  # the connector's resources are named as the sandbox's tables
        assert by_resource[resource].fetched == len(changed.get(resource, set()) | created.get(resource, set())), resource
        assert by_resource[resource].created == len(created.get(resource, set())), resource
    assert differences(sandbox, welkin) == []


def test_a_quiet_sweep_changes_nothing(welkin):
    sync_all(welkin)

    runs = sync_all(welkin)

    assert [(r.resource, r.fetched, r.created, r.updated) for r in runs if r.fetched] == []


def test_the_v1_jwt_bearer_grant_logs_in_and_syncs(tenant_a, sandbox, accounts):
    connection = connect(tenant_a, sandbox, accounts["northwind"], options={"auth": "v1"})

    sync_all(connection, resources=["coaches", "patients"])

    session = VendorSession.objects.get(connection=connection)
    assert (session.method, session.logins) == ("jwt_bearer", 1)
    assert session.expires_at is not None  # v1 says how long the token lasts
    assert differences(sandbox, connection, ["coaches", "patients"]) == []


@pytest.mark.parametrize("auth", ["v8", "v1"])
def test_a_wrong_client_secret_fails_loudly_and_is_not_retried(tenant_a, sandbox, accounts, auth):
    connection = connect(tenant_a, sandbox, accounts["northwind"], secret="wrong-" * 8, options={"auth": auth})
    (run,) = create_runs(connection, resources=["patients"])

    with pytest.raises(AuthenticationFailed, match="invalid_client|INVALID_CLIENT"):
        run_sync(run.pk)

    run.refresh_from_db()
    connection.refresh_from_db()
    assert (run.status, connection.status) == (RunStatus.FAILED, "auth_failed")
    assert VendorSession.objects.get(connection=connection).state == SessionState.FAILED
    assert m.Patient.objects.filter(source_connection=connection).count() == 0


def test_a_token_for_another_tenant_is_refused(tenant_a, sandbox, accounts):
    # The lakeside API client, pointed at northwind's data: Welkin answers 403, final.
    connection = connect(tenant_a, sandbox, {**accounts["lakeside"], "username": "northwind"})
    (run,) = create_runs(connection, resources=["patients"])

    with pytest.raises(AuthenticationFailed):
        run_sync(run.pk)


def test_invalid_options_are_a_final_error(tenant_a, sandbox, accounts):
    connection = connect(tenant_a, sandbox, accounts["northwind"], options={"tenant_name": "../admin"})
    (run,) = create_runs(connection, resources=["patients"])

    with pytest.raises(FinalError, match="tenant_name"):
        run_sync(run.pk)


def test_malformed_records_go_to_triage_with_their_path(welkin, control):
    control.post("/_sandbox/faults", json={"malformed_rate": 0.25})

    runs = sync_all(welkin, resources=["coaches", "patients"], partial=True)

    failed = FailedJob.objects.filter(connection=welkin).select_related("source_record")
    assert sum(r.failed for r in runs) == failed.count() > 0
    assert {job.source_record.error_path for job in failed} <= {"firstName", "birthDate", "lastName"}


def test_records_changing_while_the_load_pages_all_arrive(tenant_a, sandbox, control, accounts):
    connection = connect(tenant_a, sandbox, accounts["northwind"], options={"page_size": 10})
    control.post("/_sandbox/faults", json={"churn_per_page": 2})
    sync_all(connection, resources=["coaches", "patients"])
    control.post("/_sandbox/faults", json={"churn_per_page": 0})

    sync_all(connection, resources=["coaches", "patients"])  # the sweep picks up the last page's churn

    # Deletions made in the UI reach the hub by their ping (pulled as 404), not by a list.
    problems = differences(sandbox, connection, ["coaches", "patients"])
    assert problems == []
    assert SyncCursor.objects.get(connection=connection, resource="patients").state["since"]


def test_a_pulled_record_that_is_gone_is_tombstoned(welkin, sandbox, control):
    sync_all(welkin, resources=["coaches", "patients", "calendar_events"])
    done = control.post("/_sandbox/mutate", json={"vendor": "welkin", "deletes": 1, "resource": "calendar_events"}).json()
    (gone,) = done["deleted"]["calendar_events"]

    outcome = pull_record(welkin, "calendar_events", gone)

    assert outcome.deleted == 1
    assert m.Appointment.objects.get(source_connection=welkin, external_id=gone).deleted_at is not None
    assert gone not in source(sandbox, "calendar_events")
