"""WellSky Connect (FHIR R4) over real HTTP against the sandbox: every resource field by field
against the agency's own records, incremental runs by _lastUpdated, a refused client, tokens that
expire or are revoked mid-sync, and broken resources kept and triaged with their element path.

The expected values are written from the agency's records (what WellSky knows), not from the
connector's mapping. Left out by the connector, and so expected empty or defaulted here: encounter
diagnoses and procedures, appointment units and authorizations, practitioner specialties."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import httpx
import pytest

from canonical import models as m
from canonical.codes import CodeMapper
from canonical.models import SourceRecord
from connectors.choices import FailedJobStatus, SessionState
from connectors.errors import AuthenticationFailed, FinalError, InvalidPayload
from connectors.http import RetryPolicy
from connectors.models import FailedJob, SyncCursor, VendorSession
from connectors.registry import connector_for
from connectors.sync import create_runs, pull_record, run_sync
from connectors.wellsky.connect import WellSkyConnectConnector
from sandbox.build import build_sandbox
from tests.connectors.wellsky.conftest import SERVICE_MAPPINGS, connect, sync_all
from tests.connectors.wellsky.expect import live_source

pytestmark = pytest.mark.django_db

RESOURCE_ORDER = ["locations", "practitioners", "patients", "coverage", "appointments", "encounters", "care_plans", "referrals"]


@pytest.fixture(autouse=True)
def _quick_retries(monkeypatch):
    monkeypatch.setattr(WellSkyConnectConnector, "retry_policy", RetryPolicy(max_attempts=8, backoff_base=0.01, backoff_cap=0.05))


def connect_fhir(tenant, sandbox, account: dict, *, options=None):
    return connect(tenant, sandbox, account, options=options, vendor="wellsky_connect")


@pytest.fixture
def fhir(tenant_a, sandbox, accounts):
    return connect_fhir(tenant_a, sandbox, accounts["sunrise.api"])


# --- what the hub must hold, from the agency's records ------------------------------------------------------
SEX = {"F": "female", "M": "male", "U": "unknown"}
LANGUAGE = {"English": "en", "Spanish": "es", "Vietnamese": "vi", "Russian": "ru", "Somali": "so"}
APPOINTMENT_STATUS = {"Scheduled": "booked", "Completed": "fulfilled", "Cancelled": "cancelled", "Missed": "noshow", "In Progress": "arrived"}
REFERRAL_STATUS = {"Pending": "draft", "Accepted": "active", "Declined": "revoked"}  # FHIR request-status says no more
GOAL_STATUS = {"Not Started": "planned", "In Progress": "in-progress", "Achieved": "achieved"}


def _ref(row, name: str):
    target = getattr(row, name)
    return target.external_id if target is not None else None


def _service(code: str) -> str:
    return SERVICE_MAPPINGS.get(code, code)


def expected_patient(src: dict) -> dict:
    return {
        "family_name": src["last_name"], "given_names": [n for n in (src["first_name"], src["middle_name"].rstrip(".")) if n],
        "birth_date": date.fromisoformat(src["date_of_birth"]), "sex": SEX[src["gender"]], "language": LANGUAGE[src["language"]],
        "phone": src["phone"], "email": src["email"], "address_line1": src["address"]["line1"], "address_line2": src["address"]["line2"],
        "city": src["address"]["city"], "state": src["address"]["state"], "postal_code": src["address"]["zip"],
        "identifiers": sorted((f"urn:wellsky:sunrise:{i['type'].lower()}", i["value"]) for i in src["identifiers"]),
    }


def held_patient(row: m.Patient) -> dict:
    return {
        "family_name": row.family_name, "given_names": row.given_names, "birth_date": row.birth_date, "sex": row.sex,
        "language": row.language, "phone": row.phone, "email": row.email, "address_line1": row.address_line1,
        "address_line2": row.address_line2, "city": row.city, "state": row.state, "postal_code": row.postal_code,
        "identifiers": sorted((i.system, i.value) for i in row.identifiers.all()),
    }


def expected_practitioner(src: dict) -> dict:
    return {"family_name": src["last_name"], "given_names": [src["first_name"]], "npi": src["npi"], "roles": [src["credentials"]],
            "specialties": [], "active": src["status"] == "Active", "phone": src["phone"], "email": src["email"]}


def held_practitioner(row: m.Practitioner) -> dict:
    return {"family_name": row.family_name, "given_names": row.given_names, "npi": row.npi, "roles": row.roles,
            "specialties": row.specialties, "active": row.active, "phone": row.phone, "email": row.email}


def expected_location(src: dict) -> dict:
    return {"name": src["name"], "phone": src["phone"], "address_line1": src["address"]["line1"], "city": src["address"]["city"],
            "postal_code": src["address"]["zip"], "active": src["active"]}


def held_location(row: m.Location) -> dict:
    return {"name": row.name, "phone": row.phone, "address_line1": row.address_line1, "city": row.city, "postal_code": row.postal_code,
            "active": row.active}


def expected_coverages(src: dict) -> dict[str, dict]:
    return {f"{src['id']}-{c['priority']}": {
        "patient": src["id"], "payer": c["payer_name"], "payer_id": c["payer_id"], "member_id": c["member_id"], "plan": c["plan_name"],
        "group_number": c["group_number"], "priority": c["priority"], "status": "active",
        "start_date": date.fromisoformat(c["effective_date"]), "end_date": None,
    } for c in src["coverage"]}


def held_coverage(row: m.Coverage) -> dict:
    return {"patient": _ref(row, "patient"), "payer": row.payer, "payer_id": row.payer_id, "member_id": row.member_id, "plan": row.plan,
            "group_number": row.group_number, "priority": row.priority, "status": row.status, "start_date": row.start_date,
            "end_date": row.end_date}


def expected_appointment(src: dict) -> dict:
    return {"patient": src["patient_id"], "practitioner": src["practitioner_id"], "location": src["location_id"], "authorization": None,
            "start": datetime.fromisoformat(src["start"]), "end": datetime.fromisoformat(src["end"]),
            "status": APPOINTMENT_STATUS[src["status"]], "service_code": _service(src["service_code"]), "units": Decimal(1),
            "visit_type": "in-person", "description": src["notes"]}


def held_appointment(row: m.Appointment) -> dict:
    return {"patient": _ref(row, "patient"), "practitioner": _ref(row, "practitioner"), "location": _ref(row, "location"),
            "authorization": _ref(row, "authorization"), "start": row.start, "end": row.end, "status": row.status,
            "service_code": row.service_code, "units": row.units, "visit_type": row.visit_type, "description": row.description}


def expected_encounter(src: dict) -> dict:
    return {"patient": src["patient_id"], "practitioner": src["practitioner_id"], "location": src["location_id"],
            "appointment": src["appointment_id"], "status": "finished", "visit_type": "in-person",
            "period_start": datetime.fromisoformat(src["visit_start"]), "period_end": datetime.fromisoformat(src["visit_end"]),
            "diagnoses": 0, "procedures": 0}


def held_encounter(row: m.Encounter) -> dict:
    return {"patient": _ref(row, "patient"), "practitioner": _ref(row, "practitioner"), "location": _ref(row, "location"),
            "appointment": _ref(row, "appointment"), "status": row.status, "visit_type": row.visit_type, "period_start": row.period_start,
            "period_end": row.period_end, "diagnoses": row.diagnoses.count(), "procedures": row.procedures.count()}


def expected_care_plan(src: dict) -> dict:
    return {
        "patient": src["patient_id"], "title": src["title"], "status": "active" if src["status"] == "Active" else "unknown",
        "period_start": date.fromisoformat(src["start_date"]), "period_end": date.fromisoformat(src["end_date"]),
        "goals": [{"description": g["description"], "status": GOAL_STATUS[g["status"]]} for g in src["goals"]],
        "activities": [{"description": f"{i['description']} ({i['frequency']})", "status": "in-progress" if i["status"] == "Active" else "unknown"}
                       for i in src["interventions"]],
    }


def held_care_plan(row: m.CarePlan) -> dict:
    return {"patient": _ref(row, "patient"), "title": row.title, "status": row.status, "period_start": row.period_start,
            "period_end": row.period_end, "goals": row.goals, "activities": row.activities}


def expected_referral(src: dict) -> dict:
    return {"patient": src["patient_id"], "source": src["referral_source"], "reason": src["reason"], "priority": src["priority"].lower(),
            "status": REFERRAL_STATUS[src["status"]], "service_code": _service(src["service_code"]),
            "received_at": datetime.fromisoformat(src["received_at"])}


def held_referral(row: m.Referral) -> dict:
    return {"patient": _ref(row, "patient"), "source": row.source, "reason": row.reason, "priority": row.priority, "status": row.status,
            "service_code": row.service_code, "received_at": row.received_at}


CHECKS = {  # sandbox table -> (model, what the hub holds, what it must hold)
    "locations": (m.Location, held_location, expected_location),
    "practitioners": (m.Practitioner, held_practitioner, expected_practitioner),
    "patients": (m.Patient, held_patient, expected_patient),
    "appointments": (m.Appointment, held_appointment, expected_appointment),
    "encounters": (m.Encounter, held_encounter, expected_encounter),
    "care-plans": (m.CarePlan, held_care_plan, expected_care_plan),
    "referrals": (m.Referral, held_referral, expected_referral),
}


def differences(sandbox, connection) -> list[str]:
    """Every way the hub's live records differ from the agency's live records, field by field."""
    problems: list[str] = []

    def compare(label: str, source: dict[str, dict], stored: dict[str, dict]) -> None:
        if set(source) != set(stored):
            problems.append(f"{label}: missing {sorted(set(source) - set(stored))[:5]}, extra {sorted(set(stored) - set(source))[:5]}")
        for external_id in sorted(set(source) & set(stored)):
            for field, want in source[external_id].items():
                if stored[external_id][field] != want:
                    problems.append(f"{label} {external_id}.{field}: hub has {stored[external_id][field]!r}, WellSky has {want!r}")

    for table, (model, held, expected) in CHECKS.items():
        rows = model.objects.filter(source_connection=connection, deleted_at__isnull=True)
        compare(table, {i: expected(src) for i, src in live_source(sandbox, table).items()}, {r.external_id: held(r) for r in rows})
    patients = live_source(sandbox, "patients").values()
    coverage = m.Coverage.objects.filter(source_connection=connection, deleted_at__isnull=True).select_related("patient")
    compare("coverage", {k: v for src in patients for k, v in expected_coverages(src).items()}, {r.external_id: held_coverage(r) for r in coverage})
    return problems


# --- the tests ---------------------------------------------------------------------------------------------
def test_full_sync_holds_every_resource_field_by_field(fhir, sandbox, control):
    runs = sync_all(fhir)

    assert [r.resource for r in runs] == RESOURCE_ORDER
    state = control.get("/_sandbox/state").json()["wellsky"]
    fetched = {r.resource: r.fetched for r in runs}
    assert fetched == {"locations": state["locations"], "practitioners": state["practitioners"], "patients": state["patients"],
                       "coverage": sum(len(p["coverage"]) for p in live_source(sandbox, "patients").values()),
                       "appointments": state["appointments"], "encounters": state["encounters"], "care_plans": state["care_plans"],
                       "referrals": state["referrals"]}
    assert [r.failed for r in runs] == [0] * len(runs)
    assert differences(sandbox, fhir) == []
    assert FailedJob.objects.count() == 0
    assert SourceRecord.objects.filter(connection=fhir, resource_type="patients").count() == state["patients"]
    session = VendorSession.objects.get(connection=fhir)
    assert (session.state, session.method, session.logins) == (SessionState.ACTIVE, "oauth2", 1)
    # every resource left a high water mark for the next run, and no page in flight
    cursors = {c.resource: c.state for c in SyncCursor.objects.filter(connection=fhir)}
    assert all(set(cursor) == {"since"} for cursor in cursors.values()), cursors


def test_incremental_sync_brings_changes_and_creations_and_a_pull_tombstones_deletions(fhir, sandbox, control):
    sync_all(fhir)
    done = control.post("/_sandbox/mutate", json={"vendor": "wellsky", "creates": 4, "changes": 12, "deletes": 2}).json()

    runs = sync_all(fhir)

    by_resource = {r.resource: r for r in runs}
    changed = sum(len(ids) for ids in done["changed"].values()) + sum(len(ids) for ids in done["created"].values())
    # only what changed travels (coverage comes with every changed patient, so it is left out of the sum)
    assert 0 < sum(r.fetched for name, r in by_resource.items() if name != "coverage") <= changed
    for table, ids in done["created"].items():
        model = CHECKS[table][0]
        assert model.objects.filter(source_connection=fhir, external_id__in=ids).count() == len(ids)
    # A FHIR search lists no deletions: the deleted visits stay until a pull finds them gone (410).
    deleted = done["deleted"]["appointments"]
    assert m.Appointment.objects.filter(source_connection=fhir, external_id__in=deleted, deleted_at__isnull=True).count() == 2
    for external_id in deleted:
        assert pull_record(fhir, "appointments", external_id).deleted == 1
    assert differences(sandbox, fhir) == []
    quiet = sync_all(fhir)
    assert [(r.resource, r.fetched) for r in quiet if r.fetched] == []


def test_a_refused_client_fails_loudly_and_is_not_retried(tenant_a, sandbox, accounts):
    connection = connect_fhir(tenant_a, sandbox, {**accounts["sunrise.api"], "client_secret": "wrong"})
    (run,) = create_runs(connection, resources=["patients"])

    with pytest.raises(AuthenticationFailed, match="invalid_client"):
        run_sync(run.pk)

    run.refresh_from_db()
    connection.refresh_from_db()
    assert (run.status, run.fetched, connection.status) == ("failed", 0, "auth_failed")
    session = VendorSession.objects.get(connection=connection)
    assert (session.state, session.logins, session.access_token) == (SessionState.FAILED, 0, "")
    assert m.Patient.objects.filter(source_connection=connection).count() == 0


def test_tokens_expiring_mid_sync_are_renewed(tenant_a, sandbox, control, accounts):
    connection = connect_fhir(tenant_a, sandbox, accounts["sunrise.api"], options={"page_size": 10})
    control.post("/_sandbox/faults", json={"session_ttl_s": 1})  # every token lives one second

    sync_all(connection, resources=["locations", "practitioners", "patients", "appointments"])

    assert VendorSession.objects.get(connection=connection).logins > 1
    assert m.Appointment.objects.filter(source_connection=connection).count() == len(live_source(sandbox, "appointments"))


def test_a_token_the_vendor_no_longer_honours_is_replaced_once(fhir, sandbox, control):
    sync_all(fhir, resources=["locations", "practitioners"])
    session = VendorSession.objects.get(connection=fhir)
    session.access_token = "revoked-by-wellsky"  # still unexpired in the hub's eyes
    session.save()

    sync_all(fhir, resources=["patients"])  # the first call meets a 401, logs in again and goes on

    assert VendorSession.objects.get(connection=fhir).logins == 2
    assert m.Patient.objects.filter(source_connection=fhir).count() == len(live_source(sandbox, "patients"))


@pytest.fixture
def small_sandbox():
    # A smaller agency: each record pulled back below builds its own connector and HTTP client
    # (~40 ms each), and a fifth of scale 40 broken would take most of this file's time budget.
    with build_sandbox(scale=12, seed=3) as server:
        yield server


def test_broken_resources_are_kept_and_triaged_with_their_path_then_pulled_fresh(tenant_a, small_sandbox):
    sandbox = small_sandbox
    with httpx.Client(base_url=sandbox.url, timeout=10) as control:
        account = next(a for a in control.get("/_sandbox/accounts").json()["wellsky"] if a["username"] == "sunrise.api")
        connection = connect_fhir(tenant_a, sandbox, account, options={"page_size": 50})
        assert control.post("/_sandbox/faults", json={"malformed_rate": 0.2}).status_code == 200
        runs = sync_all(connection)
        control.post("/_sandbox/faults", json={"malformed_rate": 0})

    failed = list(FailedJob.objects.filter(connection=connection, status=FailedJobStatus.OPEN).select_related("source_record"))
    assert sum(r.failed for r in runs) == len(failed) > 0
    # where the sandbox breaks each type: a required element left out, or a date that is no date
    broken = {"name", "birthDate", "identifier", "participant", "start", "subject", "period.start", "beneficiary", "authoredOn"}
    referents = {"patient", "practitioner", "location", "appointment"}  # a resource whose referent was broken
    for job in failed:
        assert job.source_record.status == "failed"
        assert job.source_record.error_path in broken | referents, job.source_record.error
        assert job.source_record.error_path in job.message
        assert job.source_record.body.startswith("{")  # kept as it came
    assert any(job.source_record.error_path in broken for job in failed)

    for job in sorted(failed, key=lambda j: RESOURCE_ORDER.index(j.source_record.resource_type)):  # referents first
        assert pull_record(connection, job.source_record.resource_type, job.source_record.external_id).failed == 0

    assert differences(sandbox, connection) == []


def test_a_next_link_outside_the_fhir_base_is_not_followed(fhir):
    connector = connector_for(fhir)

    with pytest.raises(FinalError, match="outside the FHIR base"):
        connector.fetch_page(connector.resource("patients"), {"next": "http://elsewhere.example/wellsky/fhir/Patient?_cursor=YjM"})

    assert VendorSession.objects.filter(connection=fhir).count() == 0  # refused before any call, the login included


def test_each_layer_of_validation_names_the_element(fhir):
    connector = connector_for(fhir)
    spec, mapper = connector.resource("patients"), CodeMapper(fhir.tenant)
    patient = connector.fetch_one(spec, "PT0000001")
    assert connector.normalize(spec, patient, mapper)["external_id"] == "PT0000001"

    cases = {
        "name": {k: v for k, v in patient.items() if k != "name"},  # US Core requires it; base FHIR does not
        "birthDate": {**patient, "birthDate": "1950-02-31"},  # the R4B model refuses it
        "gender": {**patient, "gender": "banana"},  # the hub's code checks refuse it
        "resourceType": {**patient, "resourceType": "Practitioner"},  # not what a Patient search should answer
    }
    for path, broken in cases.items():
        with pytest.raises(InvalidPayload) as refused:
            connector.normalize(spec, broken, mapper)
        assert refused.value.path == path, str(refused.value)
    assert connector.fetch_one(spec, "PT9999999") is None  # unknown: 404
