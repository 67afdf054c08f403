"""WellSky Personal Care Connect over real HTTP against the sandbox: every resource field by field,
incremental changes, a refused secret, expiring tokens, the thin webhook and its subscriptions."""

from __future__ import annotations

import time
import uuid
from datetime import date, datetime, timedelta
from typing import Any

import pytest

from canonical import models as m
from connectors.choices import RunStatus, SessionState
from connectors.errors import AuthenticationFailed
from connectors.http import CALLS, RetryPolicy
from connectors.models import FailedJob, SyncRun, VendorSession
from connectors.sync import create_runs, pull_record, run_sync
from connectors.tasks import pull_resource
from connectors.wellsky.pcc import WellSkyPersonalCareConnector, webhook_token
from tests.connectors.wellsky.conftest import SERVICE_MAPPINGS, connect, sync_all
from tests.factories import ConnectionFactory

pytestmark = pytest.mark.django_db

ORDER = ["locations", "practitioners", "patients", "shifts", "care_logs"]
SOURCE_TABLE = {"locations": "locations", "practitioners": "practitioners", "patients": "patients", "shifts": "appointments",
                "care_logs": "encounters"}


@pytest.fixture(autouse=True)
def _quick_retries(monkeypatch):
    monkeypatch.setattr(WellSkyPersonalCareConnector, "retry_policy", RetryPolicy(max_attempts=8, backoff_base=0.01, backoff_cap=0.05))


def connect_pcc(tenant, sandbox, account: dict, *, secret: str | None = None, options=None):
    account = account if secret is None else {**account, "client_secret": secret}
    return connect(tenant, sandbox, account, options=options, vendor="wellsky_pcc")


@pytest.fixture
def pcc(tenant_a, sandbox, accounts):
    return connect_pcc(tenant_a, sandbox, accounts["sunrise.api"])


# --- what the hub must hold, computed from the sandbox's own records (not from the mapping) ---------------------
LANGUAGE = {"English": "en", "Spanish": "es", "Vietnamese": "vi", "Russian": "ru", "Somali": "so"}
SHIFT_STATUS = {"Scheduled": "assigned", "In Progress": "assigned", "Completed": "completed", "Cancelled": "cancelled",
                "Missed": "called-off"}


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text)


def expected_location(src: dict) -> dict:
    a = src["address"]
    return {"name": src["name"], "type": src["type"], "phone": src["phone"], "active": src["active"], "address_line1": a["line1"],
            "city": a["city"], "state": a["state"], "postal_code": a["zip"]}


def stored_location(row: m.Location) -> dict:
    return {"name": row.name, "type": row.type, "phone": row.phone, "active": row.active, "address_line1": row.address_line1,
            "city": row.city, "state": row.state, "postal_code": row.postal_code}


def expected_caregiver(src: dict) -> dict:
    return {"family_name": src["last_name"], "given_names": [src["first_name"]], "phone": src["phone"], "email": src["email"],
            "discipline": src["credentials"], "skills": src["specialties"], "active": src["status"] == "Active",
            "hire_date": date.fromisoformat(src["hire_date"]), "postal_code": ""}


def stored_caregiver(row: m.Caregiver) -> dict:
    return {"family_name": row.family_name, "given_names": row.given_names, "phone": row.phone, "email": row.email,
            "discipline": row.discipline, "skills": row.skills, "active": row.active, "hire_date": row.hire_date,
            "postal_code": row.postal_code}


def expected_patient(src: dict) -> dict:
    systems = {"MRN": "urn:wellsky:mrn", "MEDICAID": "urn:wellsky:medicaid"}
    middle = src["middle_name"].rstrip(".")  # PCC serves "A." as the given name "A"
    a = src["address"]
    return {
        "family_name": src["last_name"], "given_names": [n for n in (src["first_name"], middle) if n],
        "birth_date": date.fromisoformat(src["date_of_birth"]), "sex": {"F": "female", "M": "male", "U": "unknown"}[src["gender"]],
        "language": LANGUAGE[src["language"]], "phone": src["phone"], "email": src["email"], "address_line1": a["line1"],
        "city": a["city"], "state": a["state"], "postal_code": a["zip"],
        "identifiers": sorted((systems[i["type"]], i["value"]) for i in src["identifiers"]),
    }


def stored_patient(row: m.Patient) -> dict:
    return {"family_name": row.family_name, "given_names": row.given_names, "birth_date": row.birth_date, "sex": row.sex,
            "language": row.language, "phone": row.phone, "email": row.email, "address_line1": row.address_line1, "city": row.city,
            "state": row.state, "postal_code": row.postal_code, "identifiers": sorted((i.system, i.value) for i in row.identifiers.all())}


def expected_shift(src: dict) -> dict:
    status = SHIFT_STATUS[src["status"]]
    if status == "assigned" and not src["practitioner_id"]:
        status = "open"  # scheduled, but no caregiver has it yet
    return {"client": src["patient_id"], "caregiver": src["practitioner_id"], "start": _when(src["start"]), "end": _when(src["end"]),
            "status": status, "service_code": SERVICE_MAPPINGS.get(src["service_code"], src["service_code"])}


def stored_shift(row: m.Shift) -> dict:
    return {"client": row.client.external_id, "caregiver": row.caregiver.external_id if row.caregiver else None, "start": row.start,
            "end": row.end, "status": row.status, "service_code": row.service_code}


def expected_care_log(src: dict) -> dict:
    return {"patient": src["patient_id"], "status": "finished", "period_start": _when(src["visit_start"]),
            "period_end": _when(src["visit_end"])}


def stored_care_log(row: m.Encounter) -> dict:
    return {"patient": row.patient.external_id, "status": row.status, "period_start": row.period_start, "period_end": row.period_end}


CHECKS = {  # resource -> (model, stored view, expected view)
    "locations": (m.Location, stored_location, expected_location),
    "practitioners": (m.Caregiver, stored_caregiver, expected_caregiver),
    "patients": (m.Patient, stored_patient, expected_patient),
    "shifts": (m.Shift, stored_shift, expected_shift),
    "care_logs": (m.Encounter, stored_care_log, expected_care_log),
}


def source(sandbox, resource: str) -> dict[str, dict]:
    table = sandbox.vendor("wellsky").agency.table(SOURCE_TABLE[resource])
    return {record["id"]: record for record in (table.get(i) for i in table.live_indices())}


def expected_views(sandbox, resource: str) -> dict[str, dict]:
    return {external_id: CHECKS[resource][2](src) for external_id, src in source(sandbox, resource).items()}


def differences(sandbox, connection) -> list[str]:
    problems: list[str] = []
    for resource, (model, view, _) in CHECKS.items():
        want = expected_views(sandbox, resource)
        stored = {r.external_id: view(r) for r in model.objects.filter(source_connection=connection, deleted_at__isnull=True)}
        if set(want) != set(stored):
            problems.append(f"{resource}: missing {sorted(set(want) - set(stored))[:5]}, extra {sorted(set(stored) - set(want))[:5]}")
        for external_id in set(want) & set(stored):
            for field, value in want[external_id].items():
                if stored[external_id][field] != value:
                    problems.append(f"{resource} {external_id}.{field}: hub has {stored[external_id][field]!r}, PCC has {value!r}")
    return problems


# --- syncing ----------------------------------------------------------------------------------------------------
def test_full_sync_holds_every_resource_field_by_field(pcc, sandbox, control):
    runs = sync_all(pcc)

    assert [r.resource for r in runs] == ORDER
    assert {r.resource: r.fetched for r in runs} == {name: len(source(sandbox, name)) for name in ORDER}
    assert all((r.status, r.failed) == (RunStatus.SUCCEEDED, 0) for r in runs)
    assert differences(sandbox, pcc) == []
    assert FailedJob.objects.count() == 0
    # every shift fell in the windows searched, and each caregiver, then each client, was searched once per window
    assert {r.resource: r.pages for r in runs}["shifts"] == 2 * (len(source(sandbox, "practitioners")) + len(source(sandbox, "patients")))
    session = VendorSession.objects.get(connection=pcc)
    assert (session.state, session.method, session.logins) == (SessionState.ACTIVE, "oauth2", 1)


def test_incremental_sync_brings_exactly_the_changes(pcc, sandbox, control):
    sync_all(pcc)
    before = {name: expected_views(sandbox, name) for name in ORDER}
    done: dict[str, dict[str, set[str]]] = {"created": {}, "changed": {}, "deleted": {}}
    for change in ({"creates": 2, "changes": 3, "resource": "patients"}, {"creates": 1, "changes": 2, "resource": "practitioners"},
                   {"changes": 1, "resource": "locations"}, {"changes": 3, "resource": "encounters"},
                   {"creates": 4, "changes": 12, "deletes": 3, "resource": "appointments"}):
        for action, by_table in control.post("/_sandbox/mutate", json={"vendor": "wellsky", **change}).json().items():
            for table, ids in by_table.items():
                done[action].setdefault(table, set()).update(ids)
    after = {name: expected_views(sandbox, name) for name in ORDER}

    runs = {r.resource: r for r in sync_all(pcc)}

    assert differences(sandbox, pcc) == []
    for name in ORDER:
        old, new = before[name], after[name]
        want = (len(new.keys() - old.keys()), sum(1 for k in new.keys() & old.keys() if new[k] != old[k]), len(old.keys() - new.keys()))
        assert (runs[name].created, runs[name].updated, runs[name].deleted) == want, name
        if name != "shifts":  # read by _lastUpdated: only what PCC touched travels
            table = SOURCE_TABLE[name]
            touched = done["created"].get(table, set()) | done["changed"].get(table, set())
            assert touched
            assert runs[name].fetched == len(touched), name
    assert runs["shifts"].deleted == 3  # found by the window search, confirmed gone by id
    assert (runs["patients"].created, runs["practitioners"].created, runs["shifts"].created) == (2, 1, 4)
    assert runs["patients"].updated > 0 and runs["locations"].updated == 1


def test_a_quiet_incremental_sync_changes_nothing(pcc):
    sync_all(pcc)
    runs = sync_all(pcc)
    assert {r.resource for r in runs if r.fetched} == {"shifts"}  # shifts cannot be asked for by _lastUpdated: re-read, unchanged
    assert [(r.resource, r.created, r.updated, r.deleted) for r in runs if r.created or r.updated or r.deleted] == []


def test_wrong_client_secret_fails_loudly_and_is_not_retried(tenant_a, sandbox, accounts):
    connection = connect_pcc(tenant_a, sandbox, accounts["sunrise.api"], secret="wrong")
    (run,) = create_runs(connection, resources=["patients"])
    with pytest.raises(AuthenticationFailed, match="invalid_client"):
        run_sync(run.pk)
    run.refresh_from_db()
    connection.refresh_from_db()
    assert (run.status, connection.status) == ("failed", "auth_failed")
    assert VendorSession.objects.get(connection=connection).state == SessionState.FAILED
    assert m.Patient.objects.filter(source_connection=connection).count() == 0


def test_tokens_expiring_mid_sync_are_renewed(tenant_a, sandbox, control, accounts):
    connection = connect_pcc(tenant_a, sandbox, accounts["sunrise.api"], options={"page_size": 25})
    assert control.post("/_sandbox/faults", json={"session_ttl_s": 1}).status_code == 200

    sync_all(connection)

    assert differences(sandbox, connection) == []
    assert VendorSession.objects.get(connection=connection).logins > 1


def test_a_token_the_vendor_drops_is_replaced_after_its_401(pcc, sandbox, control):
    sync_all(pcc, resources=["patients"])
    sandbox.vendor("wellsky").pcc_tokens.clear()  # PCC forgets the token we hold (a restart, a revocation)
    control.post("/_sandbox/mutate", json={"vendor": "wellsky", "changes": 2, "resource": "patients"})
    refused = CALLS[("wellsky_pcc", "4xx")]

    sync_all(pcc, resources=["patients"])

    assert CALLS[("wellsky_pcc", "4xx")] == refused + 1  # one 401, then a fresh login
    assert VendorSession.objects.get(connection=pcc).logins == 2
    assert [d for d in differences(sandbox, pcc) if d.startswith("patients")] == []


def test_malformed_records_go_to_triage_with_their_path(pcc, sandbox, control):
    control.post("/_sandbox/faults", json={"malformed_rate": 0.2})
    runs = sync_all(pcc, resources=["locations", "practitioners", "patients"])

    failed = FailedJob.objects.filter(connection=pcc).select_related("source_record")
    assert sum(r.failed for r in runs) == failed.count() > 0
    assert {job.source_record.error_path for job in failed} <= {"name", "birthDate", "hire_date"}


def test_a_pulled_shift_that_is_gone_is_tombstoned(pcc, sandbox, control):
    sync_all(pcc)
    done = control.post("/_sandbox/mutate", json={"vendor": "wellsky", "deletes": 1, "resource": "appointments"}).json()
    (gone,) = done["deleted"]["appointments"]

    outcome = pull_record(pcc, "shifts", gone)

    assert outcome.deleted == 1
    assert m.Shift.objects.get(source_connection=pcc, external_id=gone).deleted_at is not None


# --- the webhook --------------------------------------------------------------------------------------------------
@pytest.fixture
def hooked(tenant_a):
    """A PCC connection for the webhook alone: no vendor is called, so no sandbox is started."""
    return ConnectionFactory(tenant=tenant_a, vendor="wellsky_pcc", base_url="https://pcc.wellsky.example", display_name="WellSky PCC")


def _hook(connection, token: str | None = None) -> str:
    return f"/hooks/wellsky-pcc/{connection.public_id}/?token={webhook_token(connection) if token is None else token}"


@pytest.mark.parametrize(("resource_type", "resource"), [("Patient", "patients"), ("Practitioner", "practitioners"),
                                                         ("Appointment", "shifts"), ("Encounter", "care_logs")])
def test_a_ping_is_accepted_and_its_pull_enqueued_after_commit(hooked, client, sent, django_capture_on_commit_callbacks,
                                                               resource_type, resource):
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(_hook(hooked), {"resourceType": resource_type, "id": "PT0000007"}, content_type="application/json")
        assert sent == []  # not before the commit

    assert response.status_code == 202
    assert sent == [("pull_resource", {"connection_id": hooked.pk, "resource": resource, "external_id": "PT0000007"})]


def test_a_duplicate_ping_enqueues_twice_and_does_not_fail(hooked, client, sent, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        answers = [client.post(_hook(hooked), {"resourceType": "Encounter", "id": "EN0000001"}, content_type="application/json").status_code
                   for _ in range(2)]
    assert answers == [202, 202]
    assert [kwargs["external_id"] for _, kwargs in sent] == ["EN0000001", "EN0000001"]


@pytest.mark.parametrize(("url", "body", "status", "detail"), [
    ("wrong-token", {"resourceType": "Patient", "id": "PT0000001"}, 404, "Not found."),
    ("no-token", {"resourceType": "Patient", "id": "PT0000001"}, 404, "Not found."),
    ("unknown-connection", {"resourceType": "Patient", "id": "PT0000001"}, 404, "Not found."),
    ("other-vendor", {"resourceType": "Patient", "id": "PT0000001"}, 404, "Not found."),
    ("ok", b"{not json", 400, "The body is not JSON."),
    ("ok", ["Patient", "PT0000001"], 400, "The body must be a JSON object with resourceType and id."),
    ("ok", {"resourceType": "Patient"}, 400, "id: Field required"),
    ("ok", {"id": "PT0000001"}, 400, "resourceType: Field required"),
    ("ok", {"resourceType": "Patient", "id": "../admin"}, 400, "id: String should match pattern"),
    ("ok", {"resourceType": "Patient", "id": 7}, 400, "id: Input should be a valid string"),
    ("ok", {"resourceType": "Claim", "id": "CL0000001"}, 422, "resourceType must be one of Patient, Practitioner, Appointment, Encounter."),
    ("ok", {"resourceType": "Patient", "id": "PT0000001", "pad": "x" * 17_000}, 413, "The ping is larger than 16 KiB."),
], ids=["wrong-token", "no-token", "unknown-connection", "other-vendor", "not-json", "not-an-object", "no-id", "no-type", "id-not-a-segment",
        "id-not-text", "unknown-type", "too-large"])
def test_a_refused_ping_says_why_and_enqueues_nothing(hooked, tenant_a, client, sent, django_capture_on_commit_callbacks,
                                                      url, body, status, detail):
    other = ConnectionFactory(tenant=tenant_a, vendor="wellsky", display_name="WellSky portal")
    target = {"wrong-token": _hook(hooked, "x" * 40), "no-token": f"/hooks/wellsky-pcc/{hooked.public_id}/",
              "unknown-connection": f"/hooks/wellsky-pcc/{uuid.uuid4()}/?token={webhook_token(hooked)}",
              "other-vendor": _hook(other), "ok": _hook(hooked)}[url]
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(target, body, content_type="application/json")

    assert response.status_code == status
    assert response.json()["detail"].startswith(detail)
    assert sent == []


def test_a_ping_answers_only_to_post(hooked, client):
    assert client.get(_hook(hooked)).status_code == 405


def test_a_ping_for_a_disabled_connection_is_ignored(hooked, client, sent, django_capture_on_commit_callbacks):
    hooked.enabled = False
    hooked.save(update_fields=["enabled"])
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(_hook(hooked), {"resourceType": "Patient", "id": "PT0000001"}, content_type="application/json")
    assert (response.status_code, response.json()) == (202, {"status": "ignored"})
    assert sent == []


def _wait_for(predicate, timeout_s: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


@pytest.mark.django_db(transaction=True)
def test_subscriptions_deliver_pings_that_pull_the_new_record(tenant_a, sandbox, control, accounts, live_server, sent):
    connection = connect_pcc(tenant_a, sandbox, accounts["sunrise.api"])
    connector = WellSkyPersonalCareConnector(connection)

    created = connector.subscribe(live_server.url)
    again = connector.subscribe(live_server.url)  # idempotent: nothing new

    assert sorted(s["criteria"] for s in created) == sorted(["patient.created", "practitioner.created", "encounter.clockout.changed",
                                                             "appointment.changed"])
    assert again == []
    assert {s["channel"]["endpoint"] for s in created} == {f"{live_server.url}{_hook(connection)}"}

    done = control.post("/_sandbox/mutate", json={"vendor": "wellsky", "creates": 1, "resource": "patients"}).json()
    (new_id,) = done["created"]["patients"]
    messages = _wait_for(lambda: [kwargs for actor, kwargs in sent if actor == "pull_resource"])
    assert messages == [{"connection_id": connection.pk, "resource": "patients", "external_id": new_id}]

    pull_resource.fn(**messages[0])  # what the worker runs for that message

    patient = m.Patient.objects.get(source_connection=connection, external_id=new_id)
    assert stored_patient(patient) == expected_patient(source(sandbox, "patients")[new_id])
    assert SyncRun.objects.filter(connection=connection).count() == 0  # pulled alone, no sync run


def test_the_shift_windows_cover_two_weeks_back_and_seven_weeks_ahead(pcc, sandbox):
    sync_all(pcc, resources=["locations", "practitioners", "patients"])
    connector = WellSkyPersonalCareConnector(pcc)
    spec = connector.resource("shifts")
    state: dict = {}
    searched = []
    original = connector._search_shifts

    def spy(resource, walk, person, first_day):
        searched.append((walk, person, first_day))
        return original(resource, walk, person, first_day)

    connector._search_shifts = spy
    states = []
    while True:
        page = connector.fetch_page(spec, state)
        state = page.next_state
        states.append(state)
        if page.done:
            break
    today = connector._today()
    caregivers, clients = sorted(source(sandbox, "practitioners")), sorted(source(sandbox, "patients"))
    people = [("caregiver", c) for c in caregivers] + [("client", c) for c in clients]
    assert searched == [(walk, person, today + timedelta(days=d)) for walk, person in people for d in (-14, 17)]
    # the position is in the state: after the last caregiver's last window, the first client's first
    assert states[2 * len(caregivers) - 1] == {"client": clients[0], "window": 0, "from": (today - timedelta(days=14)).isoformat()}
    assert state == {}


# --- open shifts: no caregiver on them, so only a client's search finds them ---------------------------------------
def _set_caregiver(sandbox, shift_id: str, caregiver_id: str | None, **fields) -> None:
    """What the office does in PCC: take the caregiver off a shift (it is open) or put one on it."""
    table = sandbox.vendor("wellsky").agency.table("appointments")
    index = table.index_of(shift_id)
    table.replace(index, {**table.fields(index), "practitioner_id": caregiver_id, **fields})


def _a_future_shift(sandbox, client: int = 3, visit: int = 4) -> dict:
    """A scheduled visit inside the windows searched: a client's `visit`-th (the first four are past)."""
    agency = sandbox.vendor("wellsky").agency
    record = agency.table("appointments").get(visit * agency.scale + client)
    assert record["status"] == "Scheduled"
    return record


def test_an_open_shift_is_synced_and_then_staffed_without_a_second_shift(pcc, sandbox):
    shift = _a_future_shift(sandbox)
    _set_caregiver(sandbox, shift["id"], None)

    runs = {r.resource: r for r in sync_all(pcc)}

    assert differences(sandbox, pcc) == []
    row = m.Shift.objects.get(source_connection=pcc, external_id=shift["id"])
    assert (row.caregiver, row.status, row.client.external_id) == (None, "open", shift["patient_id"])
    # read once (by its client's search), as every staffed shift is read once (by its caregiver's)
    every = len(source(sandbox, "shifts"))
    assert (runs["shifts"].fetched, runs["shifts"].created, runs["shifts"].failed) == (every, every, 0)

    caregiver = sorted(source(sandbox, "practitioners"))[-1]
    _set_caregiver(sandbox, shift["id"], caregiver)
    shifts_before = m.Shift.objects.filter(source_connection=pcc).count()

    runs = {r.resource: r for r in sync_all(pcc)}

    assert differences(sandbox, pcc) == []
    row = m.Shift.objects.get(source_connection=pcc, external_id=shift["id"])  # still one shift
    assert (row.caregiver.external_id, row.status, row.deleted_at) == (caregiver, "assigned", None)
    assert m.Shift.objects.filter(source_connection=pcc).count() == shifts_before
    assert (runs["shifts"].created, runs["shifts"].updated, runs["shifts"].deleted) == (0, 1, 0)
    assert runs["shifts"].fetched == every  # now its caregiver's search reads it; its client's leaves it be


def test_an_open_shift_gone_from_its_clients_window_is_read_by_id(pcc, sandbox):
    deleted, moved = _a_future_shift(sandbox), _a_future_shift(sandbox, client=7, visit=5)
    for shift in (deleted, moved):
        _set_caregiver(sandbox, shift["id"], None)
    sync_all(pcc)
    table = sandbox.vendor("wellsky").agency.table("appointments")
    table.delete(table.index_of(deleted["id"]))
    later = _when(moved["start"]) + timedelta(days=60)  # past the last window: no search finds it any more
    _set_caregiver(sandbox, moved["id"], None, start=later.strftime("%Y-%m-%dT%H:%M:%SZ"),
                   end=(later + (_when(moved["end"]) - _when(moved["start"]))).strftime("%Y-%m-%dT%H:%M:%SZ"))

    runs = {r.resource: r for r in sync_all(pcc)}

    assert differences(sandbox, pcc) == []
    assert m.Shift.objects.get(source_connection=pcc, external_id=deleted["id"]).deleted_at is not None
    row = m.Shift.objects.get(source_connection=pcc, external_id=moved["id"])
    assert (row.start, row.caregiver, row.status, row.deleted_at) == (later, None, "open", None)
    assert (runs["shifts"].created, runs["shifts"].updated, runs["shifts"].deleted) == (0, 1, 1)
