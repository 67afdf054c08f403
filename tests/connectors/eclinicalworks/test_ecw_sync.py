"""eClinicalWorks over real HTTP against the sandbox: every resource and both specialty editions
field by field, polling and diffing (change events exactly per change, tombstones exactly per
deletion, none for a quiet poll, none for live records when the list shifts under the walk), each
MFA method, and fault modes ending with the store equal to the source."""

from __future__ import annotations

import time

import pytest

from canonical import models as m
from canonical.models import ChangeEvent, SourceRecord
from connectors.auth_flows import relay_token
from connectors.choices import SessionState
from connectors.eclinicalworks.client import PortalClient
from connectors.eclinicalworks.connector import MAX_RESTARTS, EClinicalWorksConnector
from connectors.errors import AuthenticationFailed, MfaRequired
from connectors.http import CALLS
from connectors.models import FailedJob, SyncRun, VendorSession
from connectors.sync import create_runs, pull_record, run_sync
from tests.connectors.eclinicalworks.conftest import RESOURCES, connect, sync_all, vendor
from tests.connectors.eclinicalworks.expect import (
    CHECKS,
    PSYCHOTHERAPY,
    SCORE_LOINC,
    VITAL_LOINC,
    differences,
    expected_appointment,
    expected_coverages,
    live_source,
)

pytestmark = pytest.mark.django_db

KINDS = {"facilities": m.Location, "providers": m.Practitioner, "patients": m.Patient, "coverage": m.Coverage,
         "appointments": m.Appointment, "encounters": m.Encounter}


def state(control) -> dict[str, int]:
    """Live record counts of the portal's resources, as the sandbox reports them."""
    counts = control.get("/_sandbox/state").json()["eclinicalworks"]
    return {name: counts[name] for name in RESOURCES if name != "coverage"}


def last_cursor(tenant) -> int:
    event = ChangeEvent.objects.filter(tenant=tenant).order_by("-cursor").first()
    return event.cursor if event else 0


def events_since(tenant, cursor: int) -> list[tuple[str, str, str]]:
    """(resource type, external id, action) of every change event after `cursor`, in order."""
    events = list(ChangeEvent.objects.filter(tenant=tenant, cursor__gt=cursor).order_by("cursor"))
    external = {}
    for model in KINDS.values():
        external.update({r.public_id: r.external_id for r in model.objects.filter(tenant=tenant, public_id__in=[e.record_id for e in events])})
    return [(e.resource_type, external[e.record_id], e.action) for e in events]


def mutate(control, **spec) -> dict:
    answer = control.post("/_sandbox/mutate", json={"vendor": "eclinicalworks", **spec})
    assert answer.status_code == 200, answer.text
    return answer.json()


# --- field by field ------------------------------------------------------------------------------
def test_full_sync_holds_every_resource_field_by_field(ecw, sandbox, control):
    runs = sync_all(ecw)

    assert [r.resource for r in runs] == RESOURCES
    live = state(control)
    fetched = {r.resource: r.fetched for r in runs}
    assert {k: v for k, v in fetched.items() if k != "coverage"} == live
    expected_coverage = sum(len(expected_coverages(src)) for src in live_source(sandbox, "patients").values())
    assert fetched["coverage"] == expected_coverage > 0
    # the store holds exactly what the portal lists, per resource
    stored = {name: KINDS[name].objects.filter(source_connection=ecw, deleted_at__isnull=True).count() for name in RESOURCES}
    assert stored == {**live, "coverage": expected_coverage}
    assert all(r.failed == 0 for r in runs)
    assert differences(sandbox, ecw) == []
    assert FailedJob.objects.count() == 0
    assert SourceRecord.objects.filter(connection=ecw, resource_type="encounters").count() == live["encounters"]


def test_both_editions_field_by_field_with_note_states_ai_drafts_and_amendments(ecw, sandbox, control):
    done = mutate(control, amend=2)  # amended notes, with reason codes, on top of what the practice generated
    amended = set(done["amended_notes"])
    assert amended

    sync_all(ecw)

    assert differences(sandbox, ecw, resources=("encounters",)) == []
    source = live_source(sandbox, "encounters")
    stored = {e.external_id: e for e in m.Encounter.objects.filter(source_connection=ecw).prefetch_related("vitals", "procedures", "notes")}
    kinds_seen = set()
    for external_id, src in source.items():
        row = stored[external_id]
        vitals = {v.loinc: v for v in row.vitals.all()}
        procedures = [p.code for p in row.procedures.all()]
        (note,) = row.notes.all()
        kinds_seen.add((src["edition"], src["telehealth"]))
        assert row.details["edition"] == src["edition"]
        if src["edition"] == "primary_care":
            assert row.reason == src["chief_complaint"] != ""
            if src["telehealth"]:  # a video visit: nothing measured, the E/M code carries modifier 95
                assert vitals == {} and row.details["place_of_service"] == "10"
                assert row.procedures.order_by("position").first().modifiers == ["95"]
            else:
                assert set(vitals) == {loinc for loinc, _ in VITAL_LOINC.values()}
            assert not set(procedures) & PSYCHOTHERAPY
            assert "session_minutes" not in row.details
        else:
            assert row.reason == ""
            assert set(vitals) == set(SCORE_LOINC.values())  # PHQ-9 and GAD-7 totals as LOINC observations
            assert vitals["44261-6"].value == src["assessments"]["phq9"]["score"]
            assert vitals["70274-6"].value == src["assessments"]["gad7"]["score"]
            assert procedures == [src["psychotherapy_cpt"]] and src["psychotherapy_cpt"] in PSYCHOTHERAPY
            assert row.details["session_minutes"] == src["session_minutes"]
            assert row.details["risk_assessment"]["suicide_risk"] == src["risk_assessment"]["suicide_risk"]
            assert row.details["assessments"]["phq9"]["severity"] == src["assessments"]["phq9"]["severity"]
        # the note's sign/lock state
        vendor_note = src["progress_note"]
        assert note.locked == (vendor_note["status"] == "locked")
        assert (note.signed_at is None) == (vendor_note["status"] == "draft")
        if vendor_note["ai_generated"]:  # a Sunoh.ai draft is flagged as such
            assert row.details["progress_note"]["source"] == "sunoh_ai" and row.details["progress_note"]["ai_vendor"] == "Sunoh.ai"
        else:
            assert row.details["progress_note"]["ai_generated"] is False
        for stored_amendment, vendor_amendment in zip(note.amendments, vendor_note["amendments"], strict=True):
            assert stored_amendment["reason_code"] == vendor_amendment["reason_code"]
            assert stored_amendment["reason"] == vendor_amendment["reason"]
    assert kinds_seen == {("primary_care", False), ("primary_care", True), ("behavioral_health", False), ("behavioral_health", True)}
    statuses = {(src["progress_note"]["status"], bool(src["progress_note"]["amendments"])) for src in source.values()}
    assert {("draft", False), ("signed", False), ("locked", False)} <= statuses and any(a for _, a in statuses)
    assert any(src["progress_note"]["ai_generated"] for src in source.values())
    for external_id in amended:
        note = stored[external_id].notes.get()
        assert note.status == "amended" and note.amendments[-1]["reason_code"] in ("LATE_ENTRY", "CORRECTION", "CLARIFICATION",
                                                                                   "PATIENT_REQUEST")


# --- polling and diffing -----------------------------------------------------------------------------
def test_an_unchanged_poll_produces_no_change_events(ecw, tenant_a):
    sync_all(ecw)
    cursor = last_cursor(tenant_a)
    assert cursor > 0

    runs = sync_all(ecw)

    assert events_since(tenant_a, cursor) == []
    assert [(r.resource, r.created, r.updated, r.deleted) for r in runs if r.created or r.updated or r.deleted] == []
    assert all(r.unchanged == r.fetched for r in runs)


@pytest.mark.parametrize("resource", ["patients", "providers", "encounters"])
def test_each_changed_record_gets_exactly_one_update_event(ecw, tenant_a, sandbox, control, resource):
    sync_all(ecw)
    cursor = last_cursor(tenant_a)
    done = mutate(control, changes=6, resource=resource)
    changed = set(done["changed"][resource])
    assert changed

    runs = sync_all(ecw)

    kind = {"patients": "patient", "providers": "practitioner", "encounters": "encounter"}[resource]
    events = events_since(tenant_a, cursor)
    assert sorted(events) == sorted((kind, external_id, "update") for external_id in changed)
    assert {r.resource: r.updated for r in runs if r.updated} == {resource: len(changed)}
    assert differences(sandbox, ecw) == []


def test_appointment_changes_give_events_only_when_what_the_hub_holds_changed(ecw, tenant_a, sandbox, control):
    """eClinicalWorks' front-desk edits confirm then cancel a visit and leave a comment: a comment (or
    scheduled → confirmed, both booked) changes nothing the hub holds, a cancellation does."""
    sync_all(ecw)
    before = live_source(sandbox, "appointments")
    cursor = last_cursor(tenant_a)
    table = vendor(sandbox).practice.table("appointments")
    past = next(i for i in table.live_indices() if table.fields(i)["status"] == "checked_out")
    once, twice = [i for i in table.live_indices() if table.fields(i)["status"] == "scheduled"][:2]
    for index in (past, once, twice, twice):  # a comment; confirmed by phone; confirmed, then cancelled by the patient
        table.change(index)
    changed = {table.id_of(i) for i in (past, once, twice)} | set(mutate(control, changes=20, resource="appointments")["changed"]["appointments"])
    after = live_source(sandbox, "appointments")
    visible = {i for i in changed if expected_appointment(before[i]) != expected_appointment(after[i])}
    assert after[table.id_of(twice)]["status"] == "cancelled" and table.id_of(twice) in visible
    assert after[table.id_of(once)]["status"] == "confirmed" and not {table.id_of(past), table.id_of(once)} & visible

    sync_all(ecw)

    assert sorted(events_since(tenant_a, cursor)) == sorted(("appointment", i, "update") for i in visible)
    assert differences(sandbox, ecw, resources=("appointments",)) == []


def test_signing_and_amending_notes_are_updates_of_their_encounters(ecw, tenant_a, sandbox, control):
    sync_all(ecw)
    cursor = last_cursor(tenant_a)
    done = mutate(control, sign_notes=3, amend=2)
    signed, amended = set(done["signed_notes"]), set(done["amended_notes"])

    sync_all(ecw)

    assert sorted(events_since(tenant_a, cursor)) == sorted(("encounter", i, "update") for i in signed | amended)
    for external_id in signed - amended:
        note = m.Encounter.objects.get(source_connection=ecw, external_id=external_id).notes.get()
        assert (note.status, note.locked, note.signed_at is not None) == ("signed", False, True)
    for external_id in amended:
        assert m.Encounter.objects.get(source_connection=ecw, external_id=external_id).notes.get().status == "amended"
    assert differences(sandbox, ecw, resources=("encounters",)) == []


def test_a_deleted_record_gets_exactly_one_tombstone_event(ecw, tenant_a, sandbox, control):
    sync_all(ecw)
    cursor = last_cursor(tenant_a)
    deleted = mutate(control, deletes=3)["deleted"]["appointments"]
    assert len(set(deleted)) == 3

    runs = sync_all(ecw)

    assert sorted(events_since(tenant_a, cursor)) == sorted(("appointment", i, "delete") for i in deleted)
    assert {r.resource: r.deleted for r in runs if r.deleted} == {"appointments": 3}
    gone = m.Appointment.objects.filter(source_connection=ecw, external_id__in=deleted)
    assert [a.deleted_at is not None for a in gone] == [True] * 3
    cursor = last_cursor(tenant_a)
    sync_all(ecw)  # the next poll does not tombstone them again
    assert events_since(tenant_a, cursor) == []
    assert differences(sandbox, ecw) == []


def test_a_deleted_patient_takes_its_coverage_with_it(ecw, tenant_a, sandbox, control):
    sync_all(ecw)
    cursor = last_cursor(tenant_a)
    practice = vendor(sandbox).practice
    table = practice.table("patients")
    index = next(i for i in table.live_indices() if practice.record("patients", i)["coverage"])
    table.delete(index)  # the practice removed a (duplicate) chart
    patient_id = table.id_of(index)

    sync_all(ecw)

    assert sorted(events_since(tenant_a, cursor)) == [("coverage", f"{patient_id}:1", "delete"), ("patient", patient_id, "delete")]
    assert differences(sandbox, ecw, resources=("patients",)) == []


def test_created_records_get_create_events(ecw, tenant_a, sandbox, control):
    sync_all(ecw)
    cursor = last_cursor(tenant_a)
    patients = mutate(control, creates=2, resource="patients")["created"]["patients"]
    appointments = mutate(control, creates=3, resource="appointments")["created"]["appointments"]
    encounters = mutate(control, creates=1, resource="encounters")["created"]["encounters"]
    sources = live_source(sandbox, "patients")
    coverages = [key for pid in patients for key in expected_coverages(sources[pid])]

    sync_all(ecw)

    expected = ([("patient", i, "create") for i in patients] + [("coverage", c, "create") for c in coverages]
                + [("appointment", i, "create") for i in appointments] + [("encounter", i, "create") for i in encounters])
    assert sorted(events_since(tenant_a, cursor)) == sorted(expected)
    assert differences(sandbox, ecw) == []


def test_two_tenants_on_one_practice_each_hold_their_own_copy_and_events(ecw, tenant_a, tenant_b, sandbox, control, accounts):
    sync_all(ecw)
    cursor = last_cursor(tenant_a)
    other = connect(tenant_b, sandbox, accounts["riverbend.api"])  # another tenant, another account (no MFA)

    sync_all(other)

    assert differences(sandbox, other) == []
    assert events_since(tenant_a, cursor) == []  # tenant_b's sync is not tenant_a's news
    created = events_since(tenant_b, 0)
    assert {action for _, _, action in created} == {"create"}
    assert len(created) == sum(KINDS[name].objects.filter(tenant=tenant_b).count() for name in RESOURCES)


# --- the list shifting under the walk -----------------------------------------------------------------
def act_after_first_page(monkeypatch, resource: str, action) -> list[tuple[str, int]]:
    """Run `action` once, right after the portal answered the first page of `resource` (as if the
    practice acted while we paged); returns the (path, page) of every page asked for."""
    original = PortalClient.page
    asked: list[tuple[str, int]] = []

    def page_then_act(self, path, *, page, page_size=500):
        answer = original(self, path, page=page, page_size=page_size)
        asked.append((path, page))
        if asked.count((f"/{resource}", 1)) == 1 and (path, page) == (f"/{resource}", 1):
            action()
        return answer

    monkeypatch.setattr(PortalClient, "page", page_then_act)
    return asked


def _live_tombstoned(sandbox, connection, resource: str) -> list[str]:
    live = set(live_source(sandbox, resource))
    model = CHECKS[resource][0]
    return sorted(model.objects.filter(source_connection=connection, deleted_at__isnull=False, external_id__in=live)
                  .values_list("external_id", flat=True))


def test_a_deletion_while_paging_restarts_the_walk_and_tombstones_no_live_record(tenant_a, sandbox, control, accounts, monkeypatch):
    connection = connect(tenant_a, sandbox, accounts["riverbend.admin"], options={"page_size": 20})
    sync_all(connection)
    practice = vendor(sandbox).practice
    table = practice.table("appointments")
    gone = 5  # a visit on page 1: deleting it shifts every later page back by one
    calls = act_after_first_page(monkeypatch, "appointments", lambda: table.delete(gone))  # the front desk deletes a visit on page 1

    (run,) = sync_all(connection, resources=["appointments"])

    assert calls.count(("/appointments", 1)) == 2  # the walk saw the list shrink and started again
    assert _live_tombstoned(sandbox, connection, "appointments") == []
    assert run.deleted == 0  # the walk that shifted settles nothing; the next poll does
    monkeypatch.undo()
    sync_all(connection, resources=["appointments"])
    assert m.Appointment.objects.get(source_connection=connection, external_id=table.id_of(gone)).deleted_at is not None
    assert differences(sandbox, connection, resources=("appointments",)) == []


def test_a_deletion_offset_by_a_booking_while_paging_tombstones_no_live_record(tenant_a, sandbox, control, accounts, monkeypatch):
    """The practice deletes a visit on a page already read and books another (added at the end): the
    total is unchanged, yet every later page shifted back by one."""
    connection = connect(tenant_a, sandbox, accounts["riverbend.admin"], options={"page_size": 20})
    sync_all(connection)
    practice = vendor(sandbox).practice
    table = practice.table("appointments")
    gone = 5  # a visit on page 1: deleting it shifts every later page back by one

    def delete_and_book():
        table.delete(gone)
        assert mutate(control, creates=1, resource="appointments")["created"]["appointments"]

    act_after_first_page(monkeypatch, "appointments", delete_and_book)

    sync_all(connection, resources=["appointments"])

    assert _live_tombstoned(sandbox, connection, "appointments") == []
    monkeypatch.undo()
    sync_all(connection, resources=["appointments"])
    assert differences(sandbox, connection, resources=("appointments",)) == []


def test_churn_while_paging_never_tombstones_a_live_record(tenant_a, sandbox, control, accounts):
    connection = connect(tenant_a, sandbox, accounts["riverbend.admin"], options={"page_size": 20})
    sync_all(connection)
    cursor = last_cursor(tenant_a)
    control.post("/_sandbox/faults", json={"churn_per_page": 4})  # the practice edits, books and deletes while we page

    sync_all(connection)

    for resource in CHECKS:
        assert _live_tombstoned(sandbox, connection, resource) == [], resource
    table = vendor(sandbox).practice.table("appointments")
    tombstoned = {external_id for _, external_id, action in events_since(tenant_a, cursor) if action == "delete"}
    assert tombstoned <= {table.id_of(i) for i in table.deleted}  # only what the practice deleted, if anything
    control.post("/_sandbox/faults", json={"churn_per_page": 0})
    sync_all(connection)  # what changed after each resource's run ended arrives on the next
    assert differences(sandbox, connection) == []


def test_small_pages_of_self_pay_patients_do_not_end_the_coverage_walk(tenant_a, sandbox, accounts):
    """Coverage rows come from the patients list: a page whose patients are all self-pay holds no
    coverage row, yet the list goes on."""
    connection = connect(tenant_a, sandbox, accounts["riverbend.admin"], options={"page_size": 1})
    assert any(not src["coverage"] for src in live_source(sandbox, "patients").values())

    sync_all(connection, resources=["facilities", "patients", "coverage"])
    sync_all(connection, resources=["patients", "coverage"])

    assert differences(sandbox, connection, resources=("patients",)) == []


# --- logins -----------------------------------------------------------------------------------------
def test_login_with_totp(ecw):
    sync_all(ecw, resources=["patients"])
    session = VendorSession.objects.get(connection=ecw)
    assert (session.state, session.method, session.logins) == (SessionState.ACTIVE, "totp", 1)


@pytest.mark.parametrize(("username", "channel", "to"), [
    ("riverbend.frontdesk", "sms", "+15555550201"),
    ("riverbend.billing", "email", "billing@riverbend.example"),
])
def test_login_with_a_code_relayed_to_the_hub(tenant_a, sandbox, control, accounts, live_server, username, channel, to):
    connection = connect(tenant_a, sandbox, accounts[username], options={"mfa_timeout_s": 15})
    relay = f"{live_server.url}/hooks/mfa/{connection.public_id}/?token={relay_token(connection)}"
    assert control.post("/_sandbox/accounts", json={"vendor": "eclinicalworks", "username": username, "relay_url": relay}).status_code == 200

    sync_all(connection, resources=["facilities", "providers", "patients"])

    session = VendorSession.objects.get(connection=connection)
    assert (session.state, session.method, session.logins) == (SessionState.ACTIVE, channel, 1)
    sent = control.get("/_sandbox/outbox", params={"channel": channel}).json()["messages"]
    assert [message["to"] for message in sent] == [to]
    assert m.Patient.objects.filter(source_connection=connection).count() == state(control)["patients"]


def test_a_wrong_password_fails_clearly_and_is_not_retried(tenant_a, sandbox, accounts):
    connection = connect(tenant_a, sandbox, {**accounts["riverbend.admin"], "password": "wrong"})
    (run,) = create_runs(connection, resources=["patients"])
    logins_tried = CALLS[("eclinicalworks", "4xx")]

    with pytest.raises(AuthenticationFailed, match="invalid_credentials") as raised:
        run_sync(run.pk)

    assert raised.value.status == 401
    assert CALLS[("eclinicalworks", "4xx")] - logins_tried == 1  # one refused login, not a retry storm
    run.refresh_from_db()
    assert run.status == "failed" and "invalid_credentials" in run.error
    connection.refresh_from_db()
    assert connection.status == "auth_failed"


def test_an_sms_code_that_never_comes_times_out_clearly(tenant_a, sandbox, accounts):
    connection = connect(tenant_a, sandbox, accounts["riverbend.frontdesk"], options={"mfa_timeout_s": 0.3})
    (run,) = create_runs(connection, resources=["patients"])
    with pytest.raises(MfaRequired, match="no sms code arrived"):
        run_sync(run.pk)
    assert SyncRun.objects.get(pk=run.pk).status == "failed"


# --- faults ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("faults", "met"), [
    ({"error_rate": 0.25}, ("eclinicalworks", "5xx")),
    ({"drop_rate": 0.2}, ("eclinicalworks", "unreachable")),
    ({"rate_limit": 15}, ("eclinicalworks", "4xx")),
    ({"session_ttl_s": 1}, ("eclinicalworks", "2xx")),
], ids=lambda f: next(iter(f)) if isinstance(f, dict) else "")
def test_sync_under_each_fault_mode_ends_with_the_store_equal_to_the_source(tenant_a, sandbox, control, accounts, faults, met):
    connection = connect(tenant_a, sandbox, accounts["riverbend.api"], options={"page_size": 40})
    assert control.post("/_sandbox/faults", json=faults).status_code == 200
    before = CALLS[met]

    sync_all(connection)
    mutate(control, creates=3, changes=10, deletes=2)
    if "session_ttl_s" in faults:
        time.sleep(1.1)  # the session the first sync opened has expired
    sync_all(connection)

    assert differences(sandbox, connection) == []
    assert FailedJob.objects.count() == 0
    assert CALLS[met] > before  # the fault was met, not dodged
    if "session_ttl_s" in faults:
        assert VendorSession.objects.get(connection=connection).logins > 1


def test_a_practice_deleting_faster_than_we_page_ends_the_run_without_tombstones(tenant_a, sandbox, control, accounts, monkeypatch):
    """Every walk sees the list shrink until the restarts are used up; the last walk then goes on, but
    a run that saw a shift tombstones nothing, and the next (quiet) poll settles every deletion."""
    connection = connect(tenant_a, sandbox, accounts["riverbend.admin"], options={"page_size": 20})
    sync_all(connection)
    cursor = last_cursor(tenant_a)
    table = vendor(sandbox).practice.table("appointments")
    doomed = iter(range(19, -1, -1))  # visits on page 1
    gone = []
    original = PortalClient.page
    walks = []

    def page_then_delete(self, path, *, page, page_size=500):
        answer = original(self, path, page=page, page_size=page_size)
        if path == "/appointments" and page_size == 20:
            if page == 1:
                walks.append(page)
            if page == 1 or (page == 2 and len(walks) > MAX_RESTARTS):  # the last walk: a deletion behind page 2 too
                gone.append(next(doomed))
                table.delete(gone[-1])
        return answer

    monkeypatch.setattr(PortalClient, "page", page_then_delete)
    (run,) = sync_all(connection, resources=["appointments"])

    assert len(walks) == MAX_RESTARTS + 1
    assert _live_tombstoned(sandbox, connection, "appointments") == []
    assert run.deleted == 0 and events_since(tenant_a, cursor) == []
    monkeypatch.undo()
    sync_all(connection, resources=["appointments"])
    assert sorted(events_since(tenant_a, cursor)) == sorted(("appointment", table.id_of(i), "delete") for i in gone)
    assert differences(sandbox, connection, resources=("appointments",)) == []


def test_malformed_records_are_kept_and_triaged_then_pulled_fresh(tenant_a, sandbox, control, accounts):
    connection = connect(tenant_a, sandbox, accounts["riverbend.admin"], options={"page_size": 50})
    control.post("/_sandbox/faults", json={"malformed_rate": 0.1})  # a screen serving records without a required field, or a bad date

    runs = sync_all(connection)

    failed = FailedJob.objects.filter(connection=connection, status="open").select_related("source_record")
    assert sum(r.failed for r in runs) == failed.count() > 0
    broken_fields = {"last_name", "date_of_birth", "npi", "name", "patient_id", "start"}
    references = {"patient", "practitioner", "location", "appointment"}  # a record whose referent was broken
    for job in failed:  # each says what is wrong and where, and keeps the payload as it came
        assert job.source_record.status == "failed"
        assert job.source_record.error_path in broken_fields | references, job.source_record.error
        assert job.source_record.error_path in job.message
    assert any(job.source_record.error_path in broken_fields for job in failed)
    control.post("/_sandbox/faults", json={"malformed_rate": 0})
    order = [spec.name for spec in EClinicalWorksConnector.resources]
    for job in sorted(failed, key=lambda j: order.index(j.source_record.resource_type)):  # referents first
        pull_record(connection, job.source_record.resource_type, job.source_record.external_id)

    assert differences(sandbox, connection) == []
