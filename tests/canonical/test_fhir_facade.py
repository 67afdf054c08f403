"""The read-only FHIR R4 facade at /fhir/r4/.

A real FHIR client (fhirpy's SyncFHIRClient) reads and searches it over HTTP against the live
server; the refusals (401, 403, 404, 410, 400), the OperationOutcome and CapabilityStatement
shapes, and the audit trail are checked with the DRF test client.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import AuthorizationError, ResourceNotFound
from fhirpy.base.exceptions import OperationOutcome as OperationOutcomeError

from canonical.api.fhir_search import parse_date_range
from canonical.models import Encounter, EncounterDiagnosis, EncounterVital, Patient, Practitioner
from canonical.upsert import delete_records, upsert_records
from tenants.models import AuditEvent
from tests.factories import ConnectionFactory

BASE = "/fhir/r4"
MRN = "urn:mrn:wellsky"
MBI = "http://hl7.org/fhir/sid/us-mbi"
NPI = "http://hl7.org/fhir/sid/us-npi"
JANUARY = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
FEBRUARY = datetime(2026, 2, 15, 12, 0, tzinfo=UTC)
MARCH = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)
VISIT = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def patient(external_id: str, family: str = "Rivera", **overrides) -> dict:
    record = {
        "external_id": external_id, "family_name": family, "given_names": ["Ana"], "birth_date": date(1948, 3, 2), "sex": "female",
        "identifiers": [{"system": MRN, "value": f"MRN-{external_id}"}, {"system": MBI, "value": f"1EG4TE5MK{external_id[-2:]}"}],
    }
    record.update(overrides)
    return record


def encounter(external_id: str, patient_id: str, *, diagnoses: int = 1, vitals: int = 1) -> dict:
    return {
        "external_id": external_id, "patient": patient_id, "practitioner": "pr1", "location": "l1",
        "period_start": VISIT, "period_end": VISIT.replace(hour=10), "status": "finished",
        "diagnoses": [{"code": code, "display": "Diagnosis", "rank": rank} for rank, code in enumerate(["E11.9", "I10", "J44.9"][:diagnoses], 1)],
        "procedures": [{"system": "http://www.ama-assn.org/go/cpt", "code": "99347", "units": Decimal("1")}],
        "vitals": [
            {"loinc": loinc, "display": display, "value": Decimal(value), "unit": unit, "effective_at": VISIT}
            for loinc, display, value, unit in [("8480-6", "Systolic", "132", "mm[Hg]"), ("8462-4", "Diastolic", "84", "mm[Hg]"), ("29463-7", "Weight", "71.5", "kg")][:vitals]
        ],
    }


@dataclass
class World:
    """Tenant A: 7 live patients (3 updated in January, 2 in February, 2 in March), one tombstoned,
    a practitioner, a location, encounters with children, and one record of every other kind.
    Tenant B: a patient with the same MRN as A's p01 and an encounter."""

    connection: object
    connection_b: object
    patients: dict[str, str] = field(default_factory=dict)  # external id -> public id (tenant A)
    other_patient: str = ""
    other_encounter: str = ""

    def pid(self, external_id: str) -> str:
        return self.patients[external_id]


def _upsert(kind, records, tenant, connection, now=JANUARY):
    result = upsert_records(kind, records, tenant=tenant, connection=connection, now=now)
    assert result.rejected == [], result.rejected
    return result


@pytest.fixture
def world(tenant_a, tenant_b) -> World:
    conn = ConnectionFactory(tenant=tenant_a)
    conn_b = ConnectionFactory(tenant=tenant_b)
    _upsert("patient", [patient(f"p0{n}") for n in (1, 2, 3)], tenant_a, conn, JANUARY)
    _upsert("patient", [patient(f"p0{n}") for n in (4, 5)], tenant_a, conn, FEBRUARY)
    _upsert("patient", [patient(f"p0{n}") for n in (6, 7)], tenant_a, conn, MARCH)
    _upsert("patient", [patient("p99", family="Gone")], tenant_a, conn)
    delete_records("patient", ["p99"], tenant=tenant_a, connection=conn, now=JANUARY)
    _upsert("practitioner", [{"external_id": "pr1", "family_name": "Lee", "given_names": ["Sam"], "npi": "1234567893"}], tenant_a, conn)
    _upsert("location", [{"external_id": "l1", "name": "Dayton branch", "city": "Dayton", "state": "OH"}], tenant_a, conn)
    _upsert("encounter", [encounter("e1", "p01", diagnoses=2, vitals=3), encounter("e2", "p02"), encounter("e9", "p03")], tenant_a, conn)
    delete_records("encounter", ["e9"], tenant=tenant_a, connection=conn, now=JANUARY)
    _upsert("appointment", [{"external_id": "a1", "patient": "p01", "practitioner": "pr1", "location": "l1", "start": VISIT, "end": VISIT.replace(hour=10)}], tenant_a, conn)
    _upsert("coverage", [{"external_id": "c1", "patient": "p01", "payer": "Medicare", "member_id": "1EG4TE5MK73", "start_date": date(2025, 1, 1)}], tenant_a, conn)
    _upsert("care_plan", [{"external_id": "cp1", "patient": "p01", "title": "Diabetes care", "period_start": date(2026, 1, 1)}], tenant_a, conn)
    _upsert("referral", [{"external_id": "r1", "patient": "p01", "source": "Dayton Clinic", "reason": "Wound care", "received_at": VISIT}], tenant_a, conn)
    _upsert("assessment", [{"external_id": "as1", "patient": "p01", "instrument": "PHQ-9", "answers": [{"question": "Q1", "answer": "1"}], "score": Decimal("5"), "completed_at": VISIT}], tenant_a, conn)

    _upsert("patient", [patient("p01", family="Other")], tenant_b, conn_b)
    _upsert("practitioner", [{"external_id": "pr1", "family_name": "Lee", "npi": "1234567893"}], tenant_b, conn_b)
    _upsert("location", [{"external_id": "l1", "name": "Elsewhere"}], tenant_b, conn_b)
    _upsert("encounter", [encounter("e1", "p01")], tenant_b, conn_b)

    world = World(connection=conn, connection_b=conn_b)
    world.patients = {p.external_id: str(p.public_id) for p in Patient.objects.filter(tenant=tenant_a)}
    world.other_patient = str(Patient.objects.get(tenant=tenant_b).public_id)
    world.other_encounter = str(Encounter.objects.get(tenant=tenant_b).public_id)
    return world


def ids(resources) -> set[str]:
    return {resource["id"] for resource in resources}


def outcome(response, status: int, code: str) -> dict:
    """Asserts an OperationOutcome answer with this status and issue code; returns its one issue."""
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/fhir+json"
    body = response.json()
    OperationOutcome.model_validate(body)
    assert body["resourceType"] == "OperationOutcome" and len(body["issue"]) == 1
    issue = body["issue"][0]
    assert (issue["severity"], issue["code"]) == ("error", code)
    return issue


def test_date_search_values_cover_their_precision():
    def covers(text):
        start, end = parse_date_range(text)
        return start.isoformat(), end.isoformat()

    assert covers("2026") == ("2026-01-01T00:00:00+00:00", "2027-01-01T00:00:00+00:00")
    assert covers("2024-02") == ("2024-02-01T00:00:00+00:00", "2024-03-01T00:00:00+00:00")
    assert covers("2026-03-05") == ("2026-03-05T00:00:00+00:00", "2026-03-06T00:00:00+00:00")
    assert covers("2026-03-05T10:15-05:00") == ("2026-03-05T10:15:00-05:00", "2026-03-05T10:16:00-05:00")
    assert covers("2026-03-05T10:15:30Z") == ("2026-03-05T10:15:30+00:00", "2026-03-05T10:15:31+00:00")
    assert covers("2026-03-05T10:15:30.25Z") == ("2026-03-05T10:15:30.250000+00:00", "2026-03-05T10:15:30.260000+00:00")
    for bad in ("26-03-05", "2026-3-5", "2026-02-30", "2026-03-05T25:00Z", "2026-03-05 10:15"):
        with pytest.raises(ValueError):
            parse_date_range(bad)


# --- a real FHIR client over HTTP ----------------------------------------------------------------

# One connection per request: a kept-alive connection leaves a server thread that closes the shared
# in-memory SQLite connection after the live server has stopped sharing it (a noisy thread warning).
NO_KEEP_ALIVE = {"Connection": "close"}


@pytest.fixture
def fhir(live_server, world, partner_a) -> SyncFHIRClient:
    return SyncFHIRClient(f"{live_server.url}{BASE}", authorization=f"Bearer {partner_a.key}", extra_headers=NO_KEEP_ALIVE)


def test_fhirpy_reads_a_patient(fhir, world):
    resource = fhir.get("Patient", world.pid("p01"))
    assert (resource["resourceType"], resource["id"]) == ("Patient", world.pid("p01"))
    assert resource["name"][0]["family"] == "Rivera"
    assert {(i["system"], i["value"]) for i in resource["identifier"]} == {
        (f"urn:switchboard:connection:{world.connection.public_id}", "p01"), (MRN, "MRN-p01"), (MBI, "1EG4TE5MK01"),
    }

    with pytest.raises(ResourceNotFound):
        fhir.get("Patient", world.other_patient)  # tenant B's patient: not found, never forbidden
    with pytest.raises(ResourceNotFound):
        fhir.get("Patient", world.pid("p99"))  # tombstoned: 410 Gone


def test_fhirpy_searches_patients_by_identifier_in_both_forms(fhir, world):
    patients = fhir.resources("Patient")
    assert ids(patients.search(identifier=f"{MRN}|MRN-p01").fetch()) == {world.pid("p01")}
    assert ids(patients.search(identifier="MRN-p02").fetch()) == {world.pid("p02")}
    assert ids(patients.search(identifier=f"{MRN}|MRN-p01,{MRN}|MRN-p04").fetch()) == {world.pid("p01"), world.pid("p04")}
    assert ids(patients.search(identifier=f"{MBI}|MRN-p01").fetch()) == set()  # right value, wrong system
    external = f"urn:switchboard:connection:{world.connection.public_id}"
    assert ids(patients.search(identifier=f"{external}|p03").fetch()) == {world.pid("p03")}
    assert ids(patients.search(identifier="p05").fetch()) == {world.pid("p05")}
    assert ids(patients.search(identifier=f"urn:switchboard:connection:{world.connection_b.public_id}|p01").fetch()) == set()
    assert ids(patients.search(identifier="MRN-p99").fetch()) == set()  # tombstones never appear

    practitioner = str(Practitioner.objects.get(tenant=world.connection.tenant).public_id)
    assert ids(fhir.resources("Practitioner").search(identifier=f"{NPI}|1234567893").fetch()) == {practitioner}
    assert ids(fhir.resources("Practitioner").search(identifier="1234567893").fetch()) == {practitioner}


def test_fhirpy_searches_encounters_and_observations_by_patient(fhir, world):
    encounters = fhir.resources("Encounter").search(patient=f"Patient/{world.pid('p01')}").fetch()
    assert [(e["resourceType"], e["subject"]["reference"]) for e in encounters] == [("Encounter", f"Patient/{world.pid('p01')}")]
    assert len(fhir.resources("Encounter").search(patient=world.pid("p02")).fetch()) == 1
    assert fhir.resources("Encounter").search(patient=world.pid("p03")).fetch() == []  # its only encounter is tombstoned
    assert fhir.resources("Encounter").search(patient=world.other_patient).fetch() == []

    vitals = fhir.resources("Observation").search(patient=world.pid("p01")).fetch()
    expected = {str(v) for v in EncounterVital.objects.filter(encounter__patient__public_id=world.pid("p01")).values_list("public_id", flat=True)}
    assert ids(vitals) == expected and len(expected) == 3
    assert {v["subject"]["reference"] for v in vitals} == {f"Patient/{world.pid('p01')}"}
    assert len(fhir.resources("Condition").search(patient=world.pid("p01")).fetch()) == 2
    assert len(fhir.resources("Procedure").search(patient=world.pid("p02")).fetch()) == 1
    for resource_type in ("Appointment", "Coverage", "CarePlan", "ServiceRequest", "QuestionnaireResponse"):
        found = fhir.resources(resource_type).search(patient=world.pid("p01")).fetch()
        assert [r["resourceType"] for r in found] == [resource_type]
        assert fhir.resources(resource_type).search(patient=world.pid("p02")).fetch() == []


def test_fhirpy_last_updated_ranges(fhir, world):
    patients = fhir.resources("Patient")
    january = {world.pid(p) for p in ("p01", "p02", "p03")}
    february = {world.pid(p) for p in ("p04", "p05")}
    march = {world.pid(p) for p in ("p06", "p07")}
    assert ids(patients.search(_lastUpdated__ge="2026-02-01", _lastUpdated__lt="2026-03-01").fetch_all()) == february
    assert ids(patients.search(_lastUpdated="2026-02").fetch_all()) == february
    assert ids(patients.search(_lastUpdated__gt="2026-02-15").fetch_all()) == march
    assert ids(patients.search(_lastUpdated__le="2026-02-15").fetch_all()) == january | february
    assert ids(patients.search(_lastUpdated__lt=FEBRUARY).fetch_all()) == january  # a dateTime, sent as 2026-02-15T12:00:00Z
    assert ids(patients.search(_lastUpdated__ge=FEBRUARY).fetch_all()) == february | march
    assert ids(patients.search(_lastUpdated="2026-01-10T12:00:00+00:00").fetch_all()) == january
    assert ids(patients.search(_lastUpdated="2025").fetch_all()) == set()


def test_fhirpy_pages_through_next_links_and_gets_every_row_once(fhir, world):
    every = set(world.patients.values()) - {world.pid("p99")}
    fetched = fhir.resources("Patient").limit(2).fetch_all()  # follows next links
    assert len(fetched) == len(every) == 7
    assert ids(fetched) == every

    # Manual paging, with records arriving in the middle: no page shifts, no row twice.
    bundle = fhir.resources("Patient").limit(3).fetch_raw()
    seen = [entry["resource"]["id"] for entry in bundle["entry"]]
    upsert_records("patient", [patient(f"n{n:02d}") for n in range(10)], tenant=world.connection.tenant, connection=world.connection)
    pages = 1
    while next_link := next((link["url"] for link in bundle["link"] if link["relation"] == "next"), None):
        assert next_link.startswith(fhir.url) and "_count=3" in next_link
        bundle = fhir.execute(next_link, method="get")
        seen.extend(entry["resource"]["id"] for entry in bundle["entry"])
        pages += 1
    assert len(seen) == len(set(seen))
    assert every <= set(seen) and len(seen) == 17
    assert pages == 6


def test_fhirpy_searches_other_types_by_their_origin_identifier(fhir, world):
    origin = f"urn:switchboard:connection:{world.connection.public_id}"
    e1 = Encounter.objects.get(tenant=world.connection.tenant, external_id="e1")
    assert ids(fhir.resources("Encounter").search(identifier=f"{origin}|e1").fetch()) == {str(e1.public_id)}
    assert ids(fhir.resources("Encounter").search(identifier="e1").fetch()) == {str(e1.public_id)}
    second = e1.diagnoses.get(position=1)
    found = fhir.resources("Condition").search(identifier=f"{origin}|e1/diagnoses/1").fetch()
    assert ids(found) == {str(second.public_id)}
    assert {(i["system"], i["value"]) for i in found[0]["identifier"]} == {(origin, "e1/diagnoses/1")}
    assert fhir.resources("Condition").search(identifier=f"{origin}|e1/vitals/1").fetch() == []
    assert len(fhir.resources("Observation").search(identifier=f"{origin}|e1/vitals/2").fetch()) == 1
    assert len(fhir.resources("Coverage").search(identifier="c1").fetch()) == 1
    assert len(fhir.resources("QuestionnaireResponse").search(identifier=f"{origin}|as1").fetch()) == 1
    assert len(fhir.resources("Location").search(identifier=f"{origin}|").fetch()) == 1  # any value of that system


def test_fhirpy_sees_refusals_as_operation_outcomes(fhir, live_server):
    with pytest.raises(OperationOutcomeError) as raised:
        fhir.resources("Patient").search(birthdate="1948-03-02").fetch()
    assert raised.value.resource["issue"][0]["expression"] == ["birthdate"]
    with pytest.raises(AuthorizationError):
        SyncFHIRClient(f"{live_server.url}{BASE}", extra_headers=NO_KEEP_ALIVE).resources("Patient").fetch()


# --- refusals, shapes and audit through the DRF test client --------------------------------------

@pytest.mark.django_db
def test_without_a_key_it_is_401(world, client):
    response = client.get(f"{BASE}/Patient/{world.pid('p01')}")
    outcome(response, 401, "login")
    assert response["WWW-Authenticate"] == 'Bearer realm="switchboard"'
    outcome(client.get(f"{BASE}/Patient"), 401, "login")
    assert not AuditEvent.objects.filter(object_type__startswith="fhir.").exists()


@pytest.mark.django_db
def test_without_the_scope_it_is_403_naming_it(world, tenant_a, make_persona):
    persona = make_persona(tenant_a, scopes=("encounters:read",))
    issue = outcome(persona.client.get(f"{BASE}/Patient/{world.pid('p01')}"), 403, "forbidden")
    assert "patients:read" in issue["diagnostics"] and issue["expression"] == ["patients:read"]
    issue = outcome(persona.client.get(f"{BASE}/Coverage", {"patient": world.pid("p01")}), 403, "forbidden")
    assert "coverage:read" in issue["diagnostics"]
    assert persona.client.get(f"{BASE}/Condition", {"patient": world.pid("p01")}).status_code == 200
    assert not AuditEvent.objects.filter(object_type__in=["fhir.Patient", "fhir.Coverage"]).exists()


@pytest.mark.django_db
def test_another_tenants_ids_and_unknown_types_are_404(world, partner_a, partner_b):
    issue = outcome(partner_b.client.get(f"{BASE}/Patient/{world.pid('p01')}"), 404, "not-found")
    assert world.pid("p01") in issue["diagnostics"]
    diagnosis = str(EncounterDiagnosis.objects.filter(encounter__tenant=partner_a.tenant).first().public_id)
    outcome(partner_b.client.get(f"{BASE}/Condition/{diagnosis}"), 404, "not-found")
    outcome(partner_a.client.get(f"{BASE}/Encounter/{world.other_encounter}"), 404, "not-found")
    outcome(partner_a.client.get(f"{BASE}/Patient/not-a-uuid"), 404, "not-found")
    outcome(partner_a.client.get(f"{BASE}/Patient/00000000-0000-4000-8000-000000000000"), 404, "not-found")
    issue = outcome(partner_a.client.get(f"{BASE}/Medication/{world.pid('p01')}"), 404, "not-supported")
    assert "Medication" in issue["diagnostics"] and issue["expression"] == ["Medication"]
    outcome(partner_a.client.get(f"{BASE}/Medication"), 404, "not-supported")
    outcome(partner_a.client.get(f"{BASE}/Patient/{world.pid('p01')}/_history"), 404, "not-supported")
    # Searching B's patient from A finds nothing rather than refusing.
    body = partner_a.client.get(f"{BASE}/Encounter", {"patient": world.other_patient}).json()
    assert body["entry"] == []


@pytest.mark.django_db
def test_tombstoned_records_are_410_and_never_in_search(world, partner_a):
    issue = outcome(partner_a.client.get(f"{BASE}/Patient/{world.pid('p99')}"), 410, "deleted")
    assert world.pid("p99") in issue["diagnostics"]
    gone_encounter = Encounter.objects.get(external_id="e9", tenant=partner_a.tenant)
    outcome(partner_a.client.get(f"{BASE}/Encounter/{gone_encounter.public_id}"), 410, "deleted")
    outcome(partner_a.client.get(f"{BASE}/Condition/{gone_encounter.diagnoses.get().public_id}"), 410, "deleted")
    body = partner_a.client.get(f"{BASE}/Patient", {"_id": world.pid("p99")}).json()
    assert body["entry"] == []
    conditions = partner_a.client.get(f"{BASE}/Condition", {"_count": "100"}).json()["entry"]
    assert len(conditions) == 3  # e1's two and e2's one; e9's is gone with it


@pytest.mark.django_db
def test_bad_parameters_are_400_naming_them(world, partner_a):
    c = partner_a.client
    issue = outcome(c.get(f"{BASE}/Patient", {"name": "Rivera"}), 400, "invalid")
    assert "'name'" in issue["diagnostics"] and issue["expression"] == ["name"]
    issue = outcome(c.get(f"{BASE}/Practitioner", {"patient": world.pid("p01")}), 400, "invalid")  # no patient on Practitioner
    assert issue["expression"] == ["patient"]
    cases = [
        ("Patient", "_lastUpdated", "yesterday"),
        ("Patient", "_lastUpdated", "2026-13-01"),
        ("Patient", "_lastUpdated", "9999-12-31"),
        ("Patient", "_lastUpdated", "xx2026-01-01"),
        ("Patient", "_lastUpdated", "ne2026-01-01"),
        ("Patient", "_count", "ten"),
        ("Patient", "_count", "-1"),
        ("Patient", "_id", "p01"),
        ("Encounter", "patient", "Group/" + world.pid("p01")),
        ("Encounter", "patient", "p01"),
        ("Patient", "identifier", "a|b|c"),
        ("Patient", "_cursor", "forged"),
        ("Patient", "_format", "xml"),
    ]
    for resource_type, name, value in cases:
        issue = outcome(c.get(f"{BASE}/{resource_type}", {name: value}), 400, "invalid")
        assert issue["expression"] == [name], (name, value)
        assert name in issue["diagnostics"]
        if name not in ("_cursor", "_count"):
            assert value.split("/")[0] in issue["diagnostics"], (name, value, issue["diagnostics"])
    assert not AuditEvent.objects.filter(object_type__startswith="fhir.").exists()


@pytest.mark.django_db
def test_a_continuation_token_only_works_for_its_own_search(world, partner_a):
    first = partner_a.client.get(f"{BASE}/Patient", {"_count": "2"}).json()
    next_url = next(link["url"] for link in first["link"] if link["relation"] == "next")
    token = parse_qs(urlsplit(next_url).query)["_cursor"][0]
    outcome(partner_a.client.get(f"{BASE}/Patient", {"_cursor": token, "_lastUpdated": "ge2026-02-01"}), 400, "invalid")
    assert partner_a.client.get(f"{BASE}/Patient", {"_cursor": token, "_count": "5"}).status_code == 200  # page size may change


@pytest.mark.django_db
def test_searchset_bundle_shape_and_headers(world, partner_a):
    response = partner_a.client.get(f"{BASE}/Patient", {"_count": "3", "_lastUpdated": "le2026-03-31"})
    assert response.status_code == 200
    assert response["Content-Type"] == "application/fhir+json"
    body = response.json()
    Bundle.model_validate(body)
    assert (body["resourceType"], body["type"]) == ("Bundle", "searchset")
    assert [entry["search"] for entry in body["entry"]] == [{"mode": "match"}] * 3
    for entry in body["entry"]:
        assert entry["fullUrl"] == f"http://testserver{BASE}/Patient/{entry['resource']['id']}"
    links = {link["relation"]: link["url"] for link in body["link"]}
    assert links["self"] == f"http://testserver{BASE}/Patient?_count=3&_lastUpdated=le2026-03-31"
    query = parse_qs(urlsplit(links["next"]).query)
    assert (query["_count"], query["_lastUpdated"], len(query["_cursor"])) == (["3"], ["le2026-03-31"], 1)
    listed = [entry["resource"]["id"] for entry in body["entry"]]
    in_order = Patient.objects.filter(tenant=partner_a.tenant, deleted_at=None).order_by("pk").values_list("public_id", flat=True)
    assert listed == [str(public_id) for public_id in in_order[:3]]  # deterministic: the order records arrived in

    last = partner_a.client.get(links["next"]).json()
    last = partner_a.client.get(next(link["url"] for link in last["link"] if link["relation"] == "next")).json()
    assert [link["relation"] for link in last["link"]] == ["self"] and len(last["entry"]) == 1

    counted = partner_a.client.get(f"{BASE}/Patient", {"_count": "0"}).json()
    assert (counted["total"], counted["entry"]) == (7, [])


@pytest.mark.django_db
def test_every_type_reads_and_searches_as_valid_r4b(world, partner_a):
    for resource_type in ("Patient", "Practitioner", "Location", "Appointment", "Encounter", "Condition", "Procedure",
                          "Observation", "CarePlan", "ServiceRequest", "Coverage", "QuestionnaireResponse"):
        response = partner_a.client.get(f"{BASE}/{resource_type}")
        assert response.status_code == 200, response.content
        body = response.json()
        Bundle.model_validate(body)
        assert body["entry"] and {e["resource"]["resourceType"] for e in body["entry"]} == {resource_type}
        first = body["entry"][0]["resource"]
        read = partner_a.client.get(f"{BASE}/{resource_type}/{first['id']}")
        assert read.status_code == 200 and read.json() == first
        assert read["ETag"] == f'W/"{first["meta"]["versionId"]}"'
        assert read["Last-Modified"] == "Sat, 10 Jan 2026 12:00:00 GMT"


@pytest.mark.django_db
def test_post_search_with_a_form_body(world, partner_a):
    response = partner_a.client.post(
        f"{BASE}/Patient/_search?_count=10", {"identifier": f"{MRN}|MRN-p04"}, format="multipart",
    )
    outcome(response, 415, "not-supported")  # multipart is not a FHIR search body
    response = partner_a.client.post(
        f"{BASE}/Patient/_search?_count=10", f"identifier={MRN}%7CMRN-p04", content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 200
    assert ids(e["resource"] for e in response.json()["entry"]) == {world.pid("p04")}
    outcome(partner_a.client.post(f"{BASE}/Patient", {}), 405, "not-supported")  # create is not offered


@pytest.mark.django_db
def test_page_size_is_capped(world, partner_a):
    upsert_records("patient", [patient(f"bulk{n:03d}") for n in range(101)], tenant=partner_a.tenant, connection=world.connection)
    body = partner_a.client.get(f"{BASE}/Patient", {"_count": "500"}).json()
    assert len(body["entry"]) == 100
    next_url = next(link["url"] for link in body["link"] if link["relation"] == "next")
    assert parse_qs(urlsplit(next_url).query)["_count"] == ["100"]
    default = partner_a.client.get(f"{BASE}/Patient").json()
    assert len(default["entry"]) == 50


@pytest.mark.django_db
def test_a_page_costs_the_same_queries_whatever_its_size(world, partner_a):
    _upsert("encounter", [encounter(f"x{n}", "p04", diagnoses=3, vitals=3) for n in range(6)], partner_a.tenant, world.connection)
    _upsert("appointment", [
        {"external_id": f"a{n}", "patient": "p04", "practitioner": "pr1", "location": "l1", "start": VISIT, "end": VISIT} for n in range(2, 9)
    ], partner_a.tenant, world.connection)

    def queries(resource_type: str, count: int) -> int:
        with CaptureQueriesContext(connection) as captured:
            body = partner_a.client.get(f"{BASE}/{resource_type}", {"_count": str(count)}).json()
        assert len(body["entry"]) == count
        return len(captured)

    partner_a.client.get(f"{BASE}/Patient")  # the key's once-a-minute last_used_at write happens here
    # key lookup + one select with its joins + audit insert, plus one query per prefetched list
    expected = {"Patient": 4, "Encounter": 7, "Condition": 3, "Procedure": 3, "Observation": 3, "Appointment": 3, "Coverage": 3}
    for resource_type, cost in expected.items():
        assert (queries(resource_type, 7 if resource_type != "Coverage" else 1), queries(resource_type, 1)) == (cost, cost), resource_type


@pytest.mark.django_db
def test_reads_and_searches_write_audit_events_without_phi(world, partner_a):
    partner_a.client.get(f"{BASE}/Patient/{world.pid('p01')}")
    partner_a.client.get(f"{BASE}/Patient", {"identifier": f"{MRN}|MRN-p01"})
    read, search = AuditEvent.objects.filter(object_type="fhir.Patient").order_by("pk")
    assert (read.action, read.object_id, read.tenant, read.actor_partner_app) == ("read", world.pid("p01"), partner_a.tenant, partner_a.partner_app)
    assert read.ip == "127.0.0.1"
    assert (search.action, search.object_id, search.actor_partner_app) == ("list", "", partner_a.partner_app)
    assert search.detail == {"count": 1, "ids": [world.pid("p01")], "filters": ["identifier"]}
    assert "MRN-p01" not in str(search.detail)

    partner_a.client.get(f"{BASE}/Observation", {"patient": world.pid("p01")})
    observation = AuditEvent.objects.get(object_type="fhir.Observation")
    assert observation.detail["count"] == 3 and observation.detail["filters"] == ["patient"]


@pytest.mark.django_db
def test_capability_statement_validates_and_needs_no_key(client):
    response = client.get(f"{BASE}/metadata")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/fhir+json"
    body = response.json()
    statement = CapabilityStatement.model_validate(body)
    assert (statement.status, statement.kind, statement.fhirVersion, statement.format) == ("active", "instance", "4.0.1", ["json"])
    assert body["implementation"]["url"] == f"http://testserver{BASE}/"
    resources = {r["type"]: r for r in body["rest"][0]["resource"]}
    assert list(resources) == [
        "Patient", "Practitioner", "Location", "Appointment", "Encounter", "Condition", "Procedure", "Observation",
        "CarePlan", "ServiceRequest", "Coverage", "QuestionnaireResponse",
    ]
    for name, resource in resources.items():
        assert [i["code"] for i in resource["interaction"]] == ["read", "search-type"]
        expected = ["_id", "_lastUpdated", "identifier"] + ([] if name in ("Patient", "Practitioner", "Location") else ["patient"])
        assert [p["name"] for p in resource["searchParam"]] == expected, name
    assert {p["type"] for p in resources["Encounter"]["searchParam"]} == {"token", "date", "reference"}
