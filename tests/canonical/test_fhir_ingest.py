"""FHIR R4 ingest of resources written by hand from the specification (not by our exporter)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from canonical import models as m
from canonical.fhir.ingest import ingest_fhir
from canonical.serialize import record_to_dict
from tenants.models import AuditEvent, Connection
from tests.factories import ConnectionFactory

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "fhir"
BUNDLE = FIXTURES / "transaction-bundle.json"
TRUNCATED = FIXTURES / "truncated-bundle.json"
LOCATION_ID = "9a6f3c1e-2b4d-4e8f-a1c3-5d7e9f0b1a2c"  # from the POST entry's urn:uuid fullUrl

REJECTED = [
    {"resource": "Patient/p2", "path": "birthDate", "reason": "'1948-13-45' is not a valid date (YYYY, YYYY-MM or YYYY-MM-DD)"},
    {"resource": "Patient/p4", "path": "gender", "reason": "'banana' is not one of male, female, other, unknown"},
    {"resource": "Practitioner/dr-bad", "path": "identifier[0].value", "reason": "'1234567890' is not a valid NPI (10 digits with a Luhn check digit)"},
    {"resource": "Appointment/apt-p2", "path": "participant[0].actor", "reason": "patient 'p2' was not found in this connection"},
    {
        "resource": "Condition/cond-bad", "path": "code.coding[0].code",
        "reason": "'XYZ' is not an ICD-10-CM code (a letter, two digits or letters, then up to four after a dot, e.g. E11.9)",
    },
    {"resource": "Observation/obs-snomed", "path": "code.coding", "reason": "has no LOINC coding (system http://loinc.org)"},
    {"resource": "Observation/obs-check", "path": "code.coding[0].code", "reason": "'8480-5' has a wrong LOINC check digit"},
    {"resource": "Banana/b1", "path": "resourceType", "reason": "'Banana' is not a FHIR R4 resource type"},
]
ACCEPTED = 16  # 3 patients… see the fixture: 24 entries, 8 rejected


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.fixture
def fhir_conn(tenant_a):
    return ConnectionFactory(tenant=tenant_a, vendor="fhir", display_name="Partner EHR (FHIR)")


def ingest_file(path, tenant, connection):
    return ingest_fhir(path.read_bytes(), tenant=tenant, connection=connection)


def stored(model, tenant, external_id):
    return record_to_dict(model.objects.get(tenant=tenant, external_id=external_id))


@pytest.mark.django_db
def test_the_good_resources_go_in_and_the_bad_ones_are_rejected_with_their_path(tenant_a, fhir_conn):
    report = ingest_file(BUNDLE, tenant_a, fhir_conn)

    assert report.as_json() == {"created": ACCEPTED, "updated": 0, "unchanged": 0, "rejected": REJECTED}

    assert stored(m.Patient, tenant_a, "p1") == {
        "external_id": "p1", "family_name": "Rivera", "given_names": ["Ana", "María"], "phone": "937-555-0100",
        "email": "ana.rivera@example.org", "address_line1": "12 Elm St", "address_line2": "Apt 3", "city": "Dayton", "state": "OH",
        "postal_code": "45402", "country": "US", "birth_date": date(1948, 3, 2), "sex": "female", "language": "es",
        "identifiers": [
            {"system": "http://ehr.example.org/mrn", "value": "MRN-1001"},
            {"system": "http://hl7.org/fhir/sid/us-mbi", "value": "1EG4TE5MK73"},
        ],
    }
    assert stored(m.Patient, tenant_a, "p3")["identifiers"] == [{"system": "http://hl7.org/fhir/sid/us-mbi", "value": "2XY5AB6CD78"}]
    assert not m.Patient.objects.filter(external_id__in=["p2", "p4"]).exists()
    assert stored(m.Practitioner, tenant_a, "dr1") == {
        "external_id": "dr1", "family_name": "Okafor", "given_names": ["Chidi"], "phone": "937-555-0200", "email": "",
        "npi": "1234567893", "roles": [], "specialties": [], "active": True,
    }
    assert not m.Practitioner.objects.filter(external_id="dr-bad").exists()
    assert stored(m.Location, tenant_a, LOCATION_ID) == {
        "external_id": LOCATION_ID, "name": "North Branch", "type": "branch office", "phone": "937-555-0300", "active": True,
        "latitude": Decimal("39.758949"), "longitude": Decimal("-84.191605"), "address_line1": "400 Main St",
        "address_line2": "Suite 200", "city": "Dayton", "state": "OH", "postal_code": "45402", "country": "US",
    }
    assert stored(m.Appointment, tenant_a, "apt1") == {
        "external_id": "apt1", "start": utc(2026, 11, 20, 14), "end": utc(2026, 11, 20, 15), "status": "booked",
        "visit_type": "in-person", "service_code": "G0299", "units": Decimal("1"), "description": "Skilled nursing visit",
        "patient": "p1", "practitioner": "dr1", "location": LOCATION_ID, "authorization": None,
    }
    assert stored(m.Encounter, tenant_a, "enc1") == {
        "external_id": "enc1", "status": "finished", "visit_type": "in-person",
        "period_start": utc(2026, 11, 20, 14, 5), "period_end": utc(2026, 11, 20, 14, 55), "reason": "", "details": {},
        "patient": "p1", "practitioner": "dr1", "location": LOCATION_ID, "appointment": "apt1",
        # in the order of Encounter.diagnosis, each with its rank; cond-bad stayed out
        "diagnoses": [
            {"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "I10", "display": "Essential (primary) hypertension", "rank": 2},
            {"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "E11.9", "display": "Type 2 diabetes mellitus without complications", "rank": 1},
        ],
        "procedures": [{
            "system": "http://www.ama-assn.org/go/cpt", "code": "99213", "modifiers": [], "units": Decimal("1"),
            "display": "Office or other outpatient visit, established patient",
        }],
        "vitals": [
            {"loinc": "8480-6", "display": "Systolic blood pressure", "value": Decimal("132"), "unit": "mm[Hg]", "effective_at": utc(2026, 11, 20, 14, 15)},
            {"loinc": "8462-4", "display": "Diastolic blood pressure", "value": Decimal("84"), "unit": "mm[Hg]", "effective_at": utc(2026, 11, 20, 14, 15)},
            {"loinc": "8867-4", "display": "Heart rate", "value": Decimal("72.5"), "unit": "/min", "effective_at": utc(2026, 11, 20, 14, 16)},
        ],
        "notes": [],
    }
    assert stored(m.Coverage, tenant_a, "cov1") == {
        "external_id": "cov1", "payer": "Medicare Part A", "payer_id": "04111", "member_id": "1EG4TE5MK73", "plan": "Medicare Part A",
        "group_number": "GRP-100", "priority": 1, "claim_filing_indicator": "", "status": "active", "start_date": date(2026, 1, 1), "end_date": date(2026, 12, 31),
        "patient": "p1",
    }
    assert stored(m.CarePlan, tenant_a, "cp1") == {
        "external_id": "cp1", "title": "Diabetes management", "status": "active", "period_start": date(2026, 11, 1), "period_end": date(2027, 2, 1),
        "goals": [{"description": "HbA1c below 7%", "target": "A1c < 7", "status": "improving"}],
        "activities": [{"description": "Review glucose log", "status": "in-progress", "frequency": "twice a week"}],
        "outcomes": [{"description": "Demonstrated insulin technique", "date": "2026-11-28"}],
        "patient": "p1",
    }
    assert stored(m.Referral, tenant_a, "sr1") == {
        "external_id": "sr1", "source": "Dayton General Hospital", "reason": "Post-discharge skilled nursing", "priority": "urgent",
        "status": "active", "service_code": "G0299", "received_at": utc(2026, 11, 18, 13, 30), "patient": "p1",
    }
    assert stored(m.Assessment, tenant_a, "qr1") == {
        "external_id": "qr1", "instrument": "http://loinc.org/q/44249-1", "status": "completed",
        "answers": [
            {"question": "Little interest or pleasure in doing things", "answer": "Several days"},
            {"question": "Feeling down, depressed, or hopeless", "answer": "Not at all"},
            {"question": "Patient health questionnaire 9 item total score", "answer": 1},
        ],
        "score": None, "completed_at": utc(2026, 11, 20, 15), "patient": "p1",
    }


@pytest.mark.django_db
def test_every_entry_is_kept_as_a_source_record(tenant_a, fhir_conn):
    ingest_file(BUNDLE, tenant_a, fhir_conn)

    sources = {(s.resource_type, s.external_id): s for s in m.SourceRecord.objects.filter(tenant=tenant_a, connection=fhir_conn)}
    assert len(sources) == 24
    failed = {key: (s.error_path, s.error) for key, s in sources.items() if s.status == "failed"}
    assert failed == {
        (r["resource"].split("/")[0], r["resource"].split("/")[1]): (r["path"], f"{r['path']}: {r['reason']}") for r in REJECTED
    }
    assert {s.status for key, s in sources.items() if key not in failed} == {"normalized"}
    entry = json.loads(sources[("Patient", "p2")].body)  # the entry as it came, request and all
    assert entry["request"] == {"method": "PUT", "url": "Patient/p2"}
    assert entry["resource"]["birthDate"] == "1948-13-45"
    assert ("Location", LOCATION_ID) in sources  # an entry without an id is known by its urn:uuid


@pytest.mark.django_db
def test_a_second_ingest_of_the_same_file_changes_nothing(tenant_a, fhir_conn):
    ingest_file(BUNDLE, tenant_a, fhir_conn)
    sources = m.SourceRecord.objects.count()
    events = m.ChangeEvent.objects.count()
    versions = sorted(m.Encounter.objects.values_list("external_id", "version"))

    again = ingest_file(BUNDLE, tenant_a, fhir_conn)

    assert again.as_json() == {"created": 0, "updated": 0, "unchanged": ACCEPTED, "rejected": REJECTED}
    assert again.source_records_created == 0
    assert m.SourceRecord.objects.count() == sources
    assert m.ChangeEvent.objects.count() == events
    assert sorted(m.Encounter.objects.values_list("external_id", "version")) == versions == [("enc1", 1)]


@pytest.mark.django_db
def test_an_import_writes_one_audit_event_with_counts(tenant_a, fhir_conn):
    ingest_fhir(BUNDLE.read_text(), tenant=tenant_a, connection=fhir_conn, actor_label="staff:lead")

    event = AuditEvent.objects.get(object_type="fhir.bundle")
    assert (event.action, event.object_id, event.actor_label, event.tenant) == ("import", "agency-import-2026-11-20", "staff:lead", tenant_a)
    assert event.detail == {
        "connection": str(fhir_conn.public_id), "entries": 24, "created": ACCEPTED, "updated": 0, "unchanged": 0, "rejected": 8,
        "source_records_created": 24,
    }


# --- the command -------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_command_json_output(tenant_a):
    out = StringIO()
    call_command("ingest_fhir", str(BUNDLE), "--tenant", "tenant-a", "--json", stdout=out)

    expected = {"created": ACCEPTED, "updated": 0, "unchanged": 0, "rejected": REJECTED}
    assert out.getvalue() == json.dumps(expected, ensure_ascii=False) + "\n"
    connection = Connection.objects.get(tenant=tenant_a)
    assert (connection.vendor, connection.display_name) == ("fhir", "FHIR file import")

    out = StringIO()
    call_command("ingest_fhir", str(BUNDLE), "--tenant", "tenant-a", "--json", stdout=out)
    assert json.loads(out.getvalue()) == {"created": 0, "updated": 0, "unchanged": ACCEPTED, "rejected": REJECTED}
    assert Connection.objects.filter(tenant=tenant_a).count() == 1
    assert m.SourceRecord.objects.count() == 24


@pytest.mark.django_db
def test_command_summary_and_named_connection(tenant_a, fhir_conn):
    out = StringIO()
    call_command("ingest_fhir", str(BUNDLE), "--tenant", "tenant-a", "--connection", str(fhir_conn.public_id), stdout=out)

    lines = out.getvalue().splitlines()
    assert lines[0] == f"{BUNDLE} → tenant-a / Partner EHR (FHIR): 16 created, 0 updated, 0 unchanged, 8 rejected."
    assert lines[1] == "  rejected Patient/p2 birthDate: '1948-13-45' is not a valid date (YYYY, YYYY-MM or YYYY-MM-DD)"
    assert len(lines) == 9
    assert m.Patient.objects.get(external_id="p1").source_connection == fhir_conn


@pytest.mark.django_db
def test_command_malformed_json_fails_with_line_and_column_and_is_kept(tenant_a):
    with pytest.raises(CommandError) as failure:
        call_command("ingest_fhir", str(TRUNCATED), "--tenant", "tenant-a", "--json", stdout=StringIO())

    assert str(failure.value) == (
        f"{TRUNCATED} is not valid JSON: Expecting ',' delimiter (at line 11, column 1); it was kept as a failed source record."
    )
    source = m.SourceRecord.objects.get()
    assert (source.status, source.resource_type, source.external_id) == ("failed", "unknown", "")
    assert (source.error_path, source.error) == ("line 11, column 1", "line 11, column 1: not valid JSON: Expecting ',' delimiter")
    assert source.body == TRUNCATED.read_text()
    assert not m.Patient.objects.exists()


@pytest.mark.django_db
def test_command_refuses_what_it_cannot_use(tenant_a, tenant_b, tmp_path):
    with pytest.raises(CommandError, match="No tenant with slug 'nobody'."):
        call_command("ingest_fhir", str(BUNDLE), "--tenant", "nobody")
    with pytest.raises(CommandError, match="File not found: "):
        call_command("ingest_fhir", str(tmp_path / "missing.json"), "--tenant", "tenant-a")
    foreign = ConnectionFactory(tenant=tenant_b)
    with pytest.raises(CommandError, match=f"Tenant 'tenant-a' has no connection {foreign.public_id}."):
        call_command("ingest_fhir", str(BUNDLE), "--tenant", "tenant-a", "--connection", str(foreign.public_id))
    with pytest.raises(CommandError, match="'x' is not a connection public id"):
        call_command("ingest_fhir", str(BUNDLE), "--tenant", "tenant-a", "--connection", "x")
    assert not m.SourceRecord.objects.exists()


# --- parts of a stored encounter, single resources, element paths -------------------------------------

def observation(resource_id, loinc, value, unit="mm[Hg]", encounter="Encounter/enc1", minute=30):
    return {
        "resourceType": "Observation", "id": resource_id, "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": loinc}]},
        "subject": {"reference": "Patient/p1"}, "encounter": {"reference": encounter},
        "effectiveDateTime": f"2026-11-20T14:{minute}:00Z",
        "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit},
    }


@pytest.mark.django_db
def test_a_part_sent_alone_joins_its_stored_encounter(tenant_a, fhir_conn):
    ingest_file(BUNDLE, tenant_a, fhir_conn)

    weight = observation("obs-weight", "29463-7", 71.2, "kg")
    first = ingest_fhir(json.dumps(weight), tenant=tenant_a, connection=fhir_conn)
    assert first.as_json() == {"created": 0, "updated": 1, "unchanged": 0, "rejected": []}
    encounter = m.Encounter.objects.get(external_id="enc1")
    assert [v.loinc for v in encounter.vitals.all()] == ["8480-6", "8462-4", "8867-4", "29463-7"]
    assert encounter.version == 2

    again = ingest_fhir(json.dumps(weight), tenant=tenant_a, connection=fhir_conn)
    assert again.as_json() == {"created": 0, "updated": 0, "unchanged": 1, "rejected": []}

    corrected = ingest_fhir(json.dumps({**weight, "valueQuantity": {**weight["valueQuantity"], "value": 71.4}}), tenant=tenant_a, connection=fhir_conn)
    assert corrected.updated == 1
    encounter.refresh_from_db()
    assert [(v.loinc, v.value) for v in encounter.vitals.all()][3:] == [("29463-7", Decimal("71.4"))]
    assert encounter.version == 3

    orphan = ingest_fhir(json.dumps(observation("obs-x", "29463-7", 70, "kg", encounter="Encounter/enc404")), tenant=tenant_a, connection=fhir_conn)
    assert orphan.rejected == [{"resource": "Observation/obs-x", "path": "encounter", "reason": "Encounter 'enc404' was not found in this payload or this connection"}]


@pytest.mark.django_db
def test_a_bad_part_is_rejected_and_its_encounter_still_goes_in(tenant_a, fhir_conn):
    payload = {
        "resourceType": "Bundle", "type": "batch",
        "entry": [
            {"resource": {"resourceType": "Patient", "id": "p1", "gender": "female"}},
            {"resource": {
                "resourceType": "Encounter", "id": "enc1", "status": "in-progress", "subject": {"reference": "Patient/p1"},
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "VR"},
                "period": {"start": "2026-11-20T14:00:00Z"},
            }},
            {"resource": observation("o-ok", "8867-4", 70, "/min")},
            {"resource": observation("o-long-unit", "8480-6", 120, "millimetres-of-mercury")},
        ],
    }
    report = ingest_fhir(json.dumps(payload), tenant=tenant_a, connection=fhir_conn)

    assert report.as_json() == {
        "created": 3, "updated": 0, "unchanged": 0,
        "rejected": [{"resource": "Observation/o-long-unit", "path": "valueQuantity.code", "reason": "is 22 characters long; the limit is 20"}],
    }
    encounter = m.Encounter.objects.get(external_id="enc1")
    assert (encounter.visit_type, [v.loinc for v in encounter.vitals.all()]) == ("telehealth", ["8867-4"])
    assert m.SourceRecord.objects.get(external_id="o-long-unit").status == "failed"


@pytest.mark.django_db
def test_model_errors_are_reported_per_element(tenant_a, fhir_conn):
    def rejected(resource):
        return ingest_fhir(json.dumps(resource), tenant=tenant_a, connection=fhir_conn).rejected

    patient = {"resourceType": "Patient", "id": "p7", "name": [{"family": "x" * 101, "given": [5]}], "nickname": "Bo", "birthDate": "1950"}
    assert rejected(patient) == [
        {"resource": "Patient/p7", "path": "name[0].given[0]", "reason": "must be text"},
        {"resource": "Patient/p7", "path": "nickname", "reason": "is not an element of this resource"},
    ]
    patient = {"resourceType": "Patient", "id": "p7", "name": [{"family": "x" * 101}], "birthDate": "1950", "deceasedBoolean": False, "deceasedDateTime": "2020-01-01"}
    assert rejected(patient) == [
        {"resource": "Patient/p7", "path": "deceased[x]", "reason": "has more than one type given; exactly one is allowed"},
    ]
    del patient["deceasedDateTime"]
    assert rejected(patient) == [
        {"resource": "Patient/p7", "path": "birthDate", "reason": "'1950' is a partial date; a full date (YYYY-MM-DD) is needed"},
    ]
    patient["birthDate"] = "1950-06-01"
    assert rejected(patient) == [
        {"resource": "Patient/p7", "path": "name[0].family", "reason": "is 101 characters long; the limit is 100"},
    ]
    assert m.SourceRecord.objects.filter(external_id="p7", status="failed").count() == 4  # each distinct payload kept
    assert not m.Patient.objects.exists()


@pytest.mark.django_db
def test_searchset_and_references_that_point_nowhere(tenant_a, fhir_conn):
    searchset = {
        "resourceType": "Bundle", "type": "searchset", "total": 2,
        "entry": [
            {"fullUrl": "https://ehr.example.org/fhir/Patient/p1", "resource": {"resourceType": "Patient", "id": "p1", "gender": "other"}, "search": {"mode": "match"}},
            {"fullUrl": "https://ehr.example.org/fhir/Coverage/c1", "search": {"mode": "include"}, "resource": {
                "resourceType": "Coverage", "id": "c1", "status": "active", "subscriberId": "W123",
                "beneficiary": {"reference": "urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0"},
                "payor": [{"reference": "Organization/acme"}],
            }},
            {"request": {"method": "DELETE", "url": "Patient/p0"}},
        ],
    }
    report = ingest_fhir(json.dumps(searchset), tenant=tenant_a, connection=fhir_conn)

    assert report.as_json() == {
        "created": 1, "updated": 0, "unchanged": 0,
        "rejected": [
            {"resource": "Coverage/c1", "path": "beneficiary.reference", "reason": "'urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0' is not the fullUrl of an entry in this Bundle"},
            {"resource": "unknown/entry[2]", "path": "resource", "reason": "is required (an entry without a resource, such as a delete, is not applied)"},
        ],
    }
    assert m.Patient.objects.get().sex == "other"
    assert m.SourceRecord.objects.count() == 3
