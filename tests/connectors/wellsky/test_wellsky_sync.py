"""WellSky over real HTTP against the sandbox: every resource field by field, each MFA method,
every fault mode ending with the store equal to the source, incremental changes and deletions."""

from __future__ import annotations

import time

import pytest

from canonical.models import Appointment, Coverage, Patient, SourceRecord, UnmappedCode
from connectors.auth_flows import relay_token
from connectors.choices import FailedJobStatus, SessionState
from connectors.errors import AuthenticationFailed, MfaRequired
from connectors.http import CALLS, VendorHttpClient
from connectors.models import FailedJob, SyncRun, VendorSession
from connectors.sync import create_runs, pull_record, run_sync
from connectors.wellsky.connector import WellSkyConnector
from tests.connectors.wellsky.conftest import connect, sync_all
from tests.connectors.wellsky.expect import differences, live_source

pytestmark = pytest.mark.django_db


def test_full_sync_holds_every_resource_field_by_field(wellsky, sandbox, control):
    runs = sync_all(wellsky)

    assert [r.resource for r in runs] == ["locations", "practitioners", "patients", "coverage", "authorizations", "appointments",
                                          "encounters", "care_plans", "referrals"]
    state = control.get("/_sandbox/state").json()["wellsky"]
    fetched = {r.resource: r.fetched for r in runs}
    assert {k: v for k, v in fetched.items() if k != "coverage"} == {k.replace("-", "_"): v for k, v in state.items()}
    assert all(r.failed == 0 for r in runs)
    assert differences(sandbox, wellsky) == []
    assert FailedJob.objects.count() == 0
    # the raw payloads are kept, one per record
    assert SourceRecord.objects.filter(connection=wellsky, resource_type="patients").count() == state["patients"]


def test_unmapped_service_codes_are_kept_as_they_came_and_counted(wellsky, sandbox):
    sync_all(wellsky, resources=["locations", "practitioners", "patients", "authorizations", "appointments"])

    resp = [a for a in Appointment.objects.filter(source_connection=wellsky) if a.service_code == "RESP"]
    source = [r for r in live_source(sandbox, "appointments").values() if r["service_code"] == "RESP"]
    assert len(resp) == len(source) > 0
    assert UnmappedCode.objects.filter(tenant=wellsky.tenant, source_system="wellsky", source_code="RESP").exists()


def test_incremental_sync_brings_changes_creations_and_deletions(wellsky, sandbox, control):
    sync_all(wellsky)
    done = control.post("/_sandbox/mutate", json={"vendor": "wellsky", "creates": 4, "changes": 12, "deletes": 3}).json()

    runs = sync_all(wellsky)

    assert differences(sandbox, wellsky) == []
    changed = sum(len(ids) for ids in done["changed"].values())
    created = sum(len(ids) for ids in done["created"].values())
    by_resource = {r.resource: r for r in runs}
    # only what changed travels: a no-change resource fetches nothing
    assert sum(r.fetched for name, r in by_resource.items() if name != "coverage") <= changed + created + 3
    deleted_ids = done["deleted"]["appointments"]
    tombstones = Appointment.objects.filter(source_connection=wellsky, external_id__in=deleted_ids)
    assert [a.deleted_at is not None for a in tombstones] == [True] * 3
    assert by_resource["appointments"].deleted == 3


def test_a_quiet_incremental_sync_fetches_nothing(wellsky):
    sync_all(wellsky)
    runs = sync_all(wellsky)
    assert [(r.resource, r.fetched, r.created, r.updated) for r in runs if r.fetched] == []


@pytest.mark.parametrize(("faults", "met"), [
    ({"error_rate": 0.25}, ("wellsky", "5xx")),
    ({"rate_limit": 15}, ("wellsky", "4xx")),  # 429s, waited out as Retry-After says
    ({"latency_ms": 30}, ("wellsky", "2xx")),
    ({"drop_rate": 0.2}, ("wellsky", "unreachable")),
    ({"session_ttl_s": 1}, ("wellsky", "2xx")),
], ids=lambda f: next(iter(f)) if isinstance(f, dict) else "")
def test_sync_under_each_fault_mode_ends_with_the_store_equal_to_the_source(tenant_a, sandbox, control, accounts, faults, met):
    connection = connect(tenant_a, sandbox, accounts["sunrise.admin"], options={"page_size": 25})
    assert control.post("/_sandbox/faults", json=faults).status_code == 200
    before = CALLS[met]

    sync_all(connection)
    control.post("/_sandbox/mutate", json={"vendor": "wellsky", "creates": 3, "changes": 10, "deletes": 2})
    sync_all(connection)

    assert differences(sandbox, connection) == []
    assert FailedJob.objects.count() == 0
    assert CALLS[met] > before  # the fault was met, not dodged
    if "session_ttl_s" in faults:  # short sessions: logged in again rather than failing
        assert VendorSession.objects.get(connection=connection).logins > 1


def test_records_changing_between_pages_are_all_caught(tenant_a, sandbox, control, accounts):
    connection = connect(tenant_a, sandbox, accounts["sunrise.admin"], options={"page_size": 20})
    control.post("/_sandbox/faults", json={"churn_per_page": 4})  # WellSky edits, adds and deletes while we page

    sync_all(connection)
    control.post("/_sandbox/faults", json={"churn_per_page": 0})
    sync_all(connection)  # what changed after each resource's run ended arrives on the next

    assert differences(sandbox, connection) == []


def test_malformed_records_are_kept_and_triaged_then_pulled_fresh(tenant_a, sandbox, control, accounts):
    connection = connect(tenant_a, sandbox, accounts["sunrise.admin"], options={"page_size": 50})
    control.post("/_sandbox/faults", json={"malformed_rate": 0.1})

    runs = sync_all(connection)

    failed = FailedJob.objects.filter(connection=connection, status=FailedJobStatus.OPEN).select_related("source_record")
    assert sum(r.failed for r in runs) == failed.count() > 0
    broken_fields = {"last_name", "date_of_birth", "patient_id", "start", "visit_start", "start_date", "end_date", "referral_source",
                     "received_at", "name", "hire_date"}
    references = {"patient", "practitioner", "location", "authorization", "appointment"}  # a record whose referent was broken
    for job in failed:  # each says what is wrong and where, and keeps the payload as it came
        assert job.source_record.status == "failed"
        assert job.source_record.error_path in broken_fields | references, job.source_record.error
        assert job.source_record.error_path in job.message
    assert any(job.source_record.error_path in broken_fields for job in failed)
    control.post("/_sandbox/faults", json={"malformed_rate": 0})
    order = [spec.name for spec in WellSkyConnector.resources]
    for job in sorted(failed, key=lambda j: order.index(j.source_record.resource_type)):  # referents first
        pull_record(connection, job.source_record.resource_type, job.source_record.external_id)

    assert differences(sandbox, connection) == []


def test_login_with_sms_code_relayed_by_the_gateway(tenant_a, sandbox, control, accounts, live_server):
    connection = connect(tenant_a, sandbox, accounts["sunrise.sms"])
    control.post("/_sandbox/accounts", json={"vendor": "wellsky", "username": "sunrise.sms",
                                             "relay_url": f"{live_server.url}/hooks/mfa/{connection.public_id}/?token={relay_token(connection)}"})

    sync_all(connection, resources=["patients"])

    session = VendorSession.objects.get(connection=connection)
    assert (session.state, session.method, session.logins) == (SessionState.ACTIVE, "sms", 1)
    sms = control.get("/_sandbox/outbox", params={"channel": "sms"}).json()["messages"]
    assert len(sms) == 1 and sms[0]["to"] == "+15555550101"
    assert Patient.objects.filter(source_connection=connection).count() == 40


def test_login_with_email_code_relayed_by_a_mail_forwarder(tenant_a, sandbox, control, accounts, client, monkeypatch):
    connection = connect(tenant_a, sandbox, accounts["sunrise.email"])
    def forward_the_mail(seconds):  # while the login waits, the forwarder posts the mail it received
        for message in control.get("/_sandbox/outbox", params={"channel": "email"}).json()["messages"]:
            client.post(f"/hooks/mfa/{connection.public_id}/?channel=email", {"text": message["text"]},
                        HTTP_X_RELAY_TOKEN=relay_token(connection))

    monkeypatch.setattr(WellSkyConnector, "mfa_sleep", staticmethod(forward_the_mail))
    sync_all(connection, resources=["practitioners"])

    assert VendorSession.objects.get(connection=connection).method == "email"


def test_login_with_totp_and_a_rotating_cookie(wellsky, sandbox):
    sync_all(wellsky, resources=["appointments"])  # 900+ records in pages of 500 … and cookie rotations on the way
    session = VendorSession.objects.get(connection=wellsky)
    assert (session.method, session.logins) == ("totp", 1)


def test_cookie_rotation_is_followed_across_many_calls(tenant_a, sandbox, accounts):
    connection = connect(tenant_a, sandbox, accounts["sunrise.admin"], options={"page_size": 5})
    sync_all(connection, resources=["patients"])  # 8 pages … plus 40 → rotation every 20 calls
    sync_all(connection, resources=["practitioners", "appointments"])
    session = VendorSession.objects.get(connection=connection)
    assert session.logins == 1  # never had to log in again: every rotated cookie was picked up
    assert session.rotated_at is not None


def test_wrong_password_fails_loudly_and_is_not_retried(tenant_a, sandbox, accounts):
    connection = connect(tenant_a, sandbox, {**accounts["sunrise.admin"], "password": "wrong"})
    (run,) = create_runs(connection, resources=["patients"])
    with pytest.raises(AuthenticationFailed, match="invalid_credentials"):
        run_sync(run.pk)
    run.refresh_from_db()
    assert run.status == "failed"
    connection.refresh_from_db()
    assert connection.status == "auth_failed"


def test_missing_totp_secret_says_so(tenant_a, sandbox, accounts):
    connection = connect(tenant_a, sandbox, {**accounts["sunrise.admin"], "totp_secret": ""})
    (run,) = create_runs(connection, resources=["patients"])
    with pytest.raises(MfaRequired, match="no TOTP secret"):
        run_sync(run.pk)


def test_sms_code_that_never_comes_times_out_clearly(tenant_a, sandbox, accounts):
    connection = connect(tenant_a, sandbox, accounts["sunrise.sms"], options={"mfa_timeout_s": 0.3})
    (run,) = create_runs(connection, resources=["patients"])
    with pytest.raises(MfaRequired, match="no sms code arrived"):
        run_sync(run.pk)
    assert SyncRun.objects.get(pk=run.pk).status == "failed"


def test_a_payer_dropped_from_a_patient_is_tombstoned(wellsky, sandbox):
    sync_all(wellsky, resources=["locations", "patients", "coverage"])
    patients = sandbox.vendor("wellsky").agency.table("patients")
    index = next(i for i in patients.live_indices() if len(patients.fields(i)["coverage"]) == 2)
    pid = patients.id_of(index)
    assert Coverage.objects.get(source_connection=wellsky, external_id=f"{pid}:2").deleted_at is None
    fields = patients.fields(index)
    patients.replace(index, {**fields, "coverage": fields["coverage"][:1]})  # the secondary payer ended

    sync_all(wellsky, resources=["patients", "coverage"])

    assert Coverage.objects.get(source_connection=wellsky, external_id=f"{pid}:2").deleted_at is not None
    assert Coverage.objects.get(source_connection=wellsky, external_id=f"{pid}:1").deleted_at is None


def test_an_sms_login_whose_first_answer_was_lost_still_succeeds(tenant_a, sandbox, control, accounts, live_server, monkeypatch):
    """POST /sessions was sent twice (its first answer lost): two challenges, two codes; the code
    that came first belongs to the first challenge, so it is refused and the next code answers."""
    connection = connect(tenant_a, sandbox, accounts["sunrise.sms"])
    control.post("/_sandbox/accounts", json={"vendor": "wellsky", "username": "sunrise.sms",
                                             "relay_url": f"{live_server.url}/hooks/mfa/{connection.public_id}/?token={relay_token(connection)}"})
    request = VendorHttpClient.request
    resent = []

    def first_login_sent_twice(self, method, url, **kwargs):
        if url == "/sessions" and not resent:
            resent.append(request(self, method, url, **kwargs))  # WellSky acted; the answer never came back
            time.sleep(0.3)  # the first code reaches the relay before the second
        return request(self, method, url, **kwargs)

    monkeypatch.setattr(VendorHttpClient, "request", first_login_sent_twice)

    sync_all(connection, resources=["practitioners"])

    # two codes for the doubled login: the first belongs to the first challenge, the second one answers
    assert len(control.get("/_sandbox/outbox", params={"channel": "sms"}).json()["messages"]) == 2
    session = VendorSession.objects.get(connection=connection)
    assert (session.state, session.method, session.logins) == ("active", "sms", 1)
