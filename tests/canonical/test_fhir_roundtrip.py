"""canonical → FHIR → canonical: every kind, every field and child, lossless."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from fhir.resources.R4B import get_fhir_model_class

from canonical import models as m
from canonical.fhir.export import FHIR_PREFETCH_RELATED, FHIR_SELECT_RELATED, for_fhir, to_fhir
from canonical.fhir.ingest import ingest_fhir
from canonical.kinds import KIND_ORDER, KINDS
from canonical.serialize import record_to_dict
from canonical.upsert import upsert_records
from tests.factories import ConnectionFactory

T = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def at(hour: int, minute: int = 0, day: int = 20) -> datetime:
    return T.replace(day=day, hour=hour, minute=minute)


FULL = {
    "patient": [{
        "external_id": "p1", "family_name": "Rivera", "given_names": ["Ana", "María"], "phone": "555-0100", "email": "ana@example.org",
        "address_line1": "12 Elm St", "address_line2": "Apt 3", "city": "Dayton", "state": "OH", "postal_code": "45402", "country": "US",
        "birth_date": date(1948, 3, 2), "sex": "female", "language": "es",
        "identifiers": [{"system": "urn:mrn:wellsky", "value": "MRN-1001"}, {"system": "http://hl7.org/fhir/sid/us-mbi", "value": "1EG4TE5MK73"}],
    }],
    "practitioner": [{
        "external_id": "dr1", "family_name": "Okafor", "given_names": ["Chidi"], "phone": "555-0200", "email": "okafor@clinic.example",
        "npi": "1234567893", "roles": ["attending", "supervising"], "specialties": ["Internal Medicine", "Geriatrics"], "active": True,
    }],
    "location": [{
        "external_id": "loc1", "name": "North Branch", "type": "branch office", "phone": "555-0300", "active": False,
        "latitude": Decimal("39.758949"), "longitude": Decimal("-84.191605"),
        "address_line1": "400 Main St", "address_line2": "Suite 200", "city": "Dayton", "state": "OH", "postal_code": "45402", "country": "US",
    }],
    "caregiver": [
        {
            "external_id": "cg1", "family_name": "Lee", "given_names": ["Sam"], "phone": "555-0400", "email": "sam@agency.example",
            "discipline": "HHA", "skills": ["hoyer lift", "dementia care"], "active": True, "hire_date": date(2021, 5, 17),
            "postal_code": "45403", "latitude": Decimal("39.761000"), "longitude": Decimal("-84.170000"),
        },
        {"external_id": "cg2", "family_name": "Diaz", "given_names": ["Rosa"], "discipline": "CNA", "skills": [], "active": False},
    ],
    "coverage": [{
        "external_id": "cov1", "patient": "p1", "payer": "Medicare", "payer_id": "04111", "member_id": "1EG4TE5MK73", "plan": "Part A",
        "group_number": "GRP-100", "priority": 2, "claim_filing_indicator": "MA", "status": "active", "start_date": date(2026, 1, 1), "end_date": date(2026, 12, 31),
    }],
    "authorization": [{
        "external_id": "auth1", "patient": "p1", "payer": "Aetna Medicare", "auth_number": "PA-2026-0001", "service_codes": ["G0299", "G0151"],
        "units_allowed": Decimal("24.50"), "unit_type": "hour", "start_date": date(2026, 11, 1), "end_date": date(2027, 1, 31), "status": "pending",
    }],
    "appointment": [{
        "external_id": "ap1", "patient": "p1", "practitioner": "dr1", "location": "loc1", "authorization": "auth1",
        "start": at(14), "end": at(15, 30), "status": "checked-in", "visit_type": "telehealth", "service_code": "G0299",
        "units": Decimal("1.50"), "description": "Skilled nursing visit",
    }],
    "encounter": [{
        "external_id": "e1", "patient": "p1", "practitioner": "dr1", "location": "loc1", "appointment": "ap1",
        "status": "finished", "visit_type": "telehealth", "period_start": at(14, 5), "period_end": at(15, 20),
        "reason": "Follow-up of anxiety",
        "details": {"edition": "behavioral_health", "session_minutes": 45, "risk_assessment": {"suicide_risk": "low"}},
        "diagnoses": [
            {"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "E11.9", "display": "Type 2 diabetes mellitus without complications", "rank": 1},
            {"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "I10", "display": "Essential (primary) hypertension", "rank": 2},
        ],
        "procedures": [
            {"system": "http://www.ama-assn.org/go/cpt", "code": "99213", "modifiers": ["95", "25"], "units": Decimal("1"), "display": "Office visit, est. patient"},
            {"system": "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets", "code": "G0299", "modifiers": [], "units": Decimal("2.25"), "display": "RN services"},
        ],
        "vitals": [
            {"loinc": "8480-6", "display": "Systolic blood pressure", "value": Decimal("132"), "unit": "mm[Hg]", "effective_at": at(14, 10)},
            {"loinc": "8462-4", "display": "Diastolic blood pressure", "value": Decimal("84"), "unit": "mm[Hg]", "effective_at": at(14, 10)},
            {"loinc": "8310-5", "display": "Body temperature", "value": Decimal("37.2500"), "unit": "Cel", "effective_at": None},
        ],
        "notes": [
            {"author": "RN Lee", "text": "Draft: patient stable.", "status": "draft", "signed_at": None, "signed_by": "", "locked": False, "amendments": []},
            {
                "author": "RN Lee", "text": "Visit went well.\nBP recheck in 1 week.", "status": "amended", "signed_at": at(16), "signed_by": "RN Lee",
                "locked": True,
                "amendments": [{
                    "reason_code": "LATE-ENTRY", "text": "Added BP", "amended_by": "RN Lee", "amended_at": "2026-11-21T09:00:00+00:00",
                    "resigned_at": "2026-11-21T09:05:00+00:00",
                }],
            },
        ],
    }],
    "care_plan": [{
        "external_id": "cp1", "patient": "p1", "title": "Diabetes management", "status": "active",
        "period_start": date(2026, 11, 1), "period_end": date(2027, 2, 1),
        "goals": [
            {"description": "A1c below 7%", "target": "A1c < 7", "status": "in-progress"},
            {"description": "Independent insulin use", "target": "by week 4", "status": "completed"},
        ],
        "activities": [{"description": "Glucose log review", "status": "scheduled", "frequency": "2x/week"}],
        "outcomes": [{"description": "Patient demonstrates insulin technique", "date": "2026-11-28"}],
    }],
    "referral": [{
        "external_id": "r1", "patient": "p1", "source": "Dayton General Hospital", "reason": "Post-discharge skilled nursing",
        "priority": "urgent", "status": "accepted", "service_code": "G0299", "received_at": at(8, day=18),
    }],
    "assessment": [{
        "external_id": "as1", "patient": "p1", "instrument": "PHQ-9", "status": "completed",
        "answers": [
            {"question": "Little interest or pleasure in doing things", "answer": 2},
            {"question": "Feeling down, depressed, or hopeless", "answer": "Several days"},
            {"question": "Thoughts that you would be better off dead", "answer": False},
            {"question": "Hours of sleep", "answer": 6.5},
        ],
        "score": Decimal("12.00"), "completed_at": at(15),
    }],
    "shift": [{
        "external_id": "s1", "client": "p1", "caregiver": "cg1", "start": at(18), "end": at(22), "status": "assigned", "service_code": "T1019",
        "offers": [
            {"caregiver": "cg2", "response": "declined", "offered_at": at(9, day=18), "responded_at": at(10, day=18)},
            {"caregiver": "cg1", "response": "accepted", "offered_at": at(9, day=18), "responded_at": None},
        ],
    }],
}

# Values FHIR has no natural place for, which must still come back.
AWKWARD = {
    "patient": [{
        "external_id": "p-odd", "family_name": "", "given_names": ["", "Jo"], "address_line1": "", "address_line2": "Unit B",
        "sex": "unknown", "identifiers": [],
    }],
    "practitioner": [{"external_id": "dr-odd", "family_name": "Nobody", "roles": [1, {"kind": "float"}], "specialties": [], "active": False}],
    "location": [{"external_id": "loc-odd", "name": "Field office", "latitude": Decimal("40.000000"), "longitude": None}],
    "caregiver": [{"external_id": "cg-odd", "family_name": "Solo", "skills": ["", "lift"], "latitude": None, "longitude": Decimal("-80.500000")}],
    "coverage": [{"external_id": "cov-odd", "patient": "p-odd", "payer": "", "member_id": "M-1", "priority": 0, "status": "draft"}],
    "authorization": [{
        "external_id": "auth-odd", "patient": "p-odd", "payer": "Payer", "auth_number": "A-1", "service_codes": ["has space ok", ""],
        "units_allowed": Decimal("0"), "unit_type": "", "start_date": date(2026, 1, 1), "end_date": date(2026, 1, 2), "status": "cancelled",
    }],
    "appointment": [{"external_id": "ap-odd", "patient": "p-odd", "start": at(8), "end": at(8), "status": "waitlist", "units": Decimal("0")}],
    "encounter": [{
        "external_id": "e-odd", "patient": "p-odd", "status": "in-progress", "period_start": at(7), "period_end": None,
        "diagnoses": [{"system": "http://snomed.info/sct", "code": "44054006", "display": "", "rank": 0}],
        "procedures": [], "vitals": [],
        "notes": [{
            "author": "", "text": "", "status": "signed", "signed_at": None, "signed_by": "", "locked": True,
            "amendments": [{"reason_code": "bad code", "text": "", "amended_by": None, "amended_at": "yesterday", "extra": [1, 2]}, "plain"],
        }],
    }],
    "care_plan": [{
        "external_id": "cp-odd", "patient": "p-odd", "status": "draft",
        "goals": ["just text", {"description": "", "status": "achieved"}, {"description": "Walk", "extra": True}],
        "activities": [{"status": "weekly-ish"}, {}],
        "outcomes": [{"description": "Done", "date": "not a date"}, {"note": 1}],
    }],
    "referral": [{"external_id": "r-odd", "patient": None, "source": "Self", "status": "declined", "priority": "stat"}],
    "assessment": [{
        "external_id": "as-odd", "patient": "p-odd", "instrument": "Fall risk (Morse)", "status": "in-progress",
        "answers": [{"question": "Q1"}, {"answer": None}, {"question": "Q3", "answer": {"nested": [1]}}, {"question": "Q4", "answer": ""}, 7],
        "score": None,
    }],
    "shift": [{"external_id": "s-odd", "client": "p-odd", "start": at(6), "end": at(7), "status": "called-off", "offers": []}],
}


def build(tenant, connection, data):
    for kind in KIND_ORDER:
        result = upsert_records(kind, data.get(kind, []), tenant=tenant, connection=connection)
        assert result.rejected == [], (kind, result.rejected)
    records = []
    for kind in KIND_ORDER:
        model = KINDS[kind].model
        records += list(for_fhir(model.objects.filter(tenant=tenant, source_connection=connection).order_by("id")))
    return records


def exported_resources(records):
    resources = []
    for record in records:
        resources.append(to_fhir(record))
        if isinstance(record, m.Encounter):
            for name in ("diagnoses", "procedures", "vitals"):
                resources += [to_fhir(row) for row in getattr(record, name).all()]
    return resources


def bundle(resources):
    return json.dumps({
        "resourceType": "Bundle", "type": "collection",
        "entry": [{"fullUrl": f"https://hub.example/fhir/r4/{r['resourceType']}/{r['id']}", "resource": r} for r in resources],
    })


def expected_after_roundtrip(record):
    """The original's dict as the other tenant must hold it: external ids are the original public ids."""
    spec = KINDS[next(kind for kind, spec in KINDS.items() if spec.model is type(record))]
    expected = record_to_dict(record)
    expected["external_id"] = str(record.public_id)
    for name in spec.refs:
        related = getattr(record, name)
        expected[name] = str(related.public_id) if related is not None else None
    for child in spec.children:
        for item, row in zip(expected[child.name], getattr(record, child.name).all(), strict=True):
            for ref in child.refs:
                item[ref] = str(getattr(row, ref).public_id)
    return expected


@pytest.mark.django_db
@pytest.mark.parametrize("data", [FULL, AWKWARD], ids=["every-field", "awkward-values"])
def test_every_kind_survives_export_and_ingest(tenant_a, tenant_b, data):
    source = ConnectionFactory(tenant=tenant_a)
    records = build(tenant_a, source, data)
    assert {type(r) for r in records} == {spec.model for spec in KINDS.values()}

    resources = exported_resources(records)
    for resource in resources:
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)  # raises if it does not validate
        assert resource["identifier"] if resource["resourceType"] != "QuestionnaireResponse" else resource["identifier"]["system"]

    target = ConnectionFactory(tenant=tenant_b, vendor="fhir")
    report = ingest_fhir(bundle(resources), tenant=tenant_b, connection=target)
    assert report.as_json() == {"created": len(resources), "updated": 0, "unchanged": 0, "rejected": []}

    for record in records:
        copy = type(record).objects.get(tenant=tenant_b, source_connection=target, external_id=str(record.public_id))
        assert record_to_dict(copy) == expected_after_roundtrip(record)

    again = ingest_fhir(bundle(resources), tenant=tenant_b, connection=target)
    assert again.as_json() == {"created": 0, "updated": 0, "unchanged": len(resources), "rejected": []}


@pytest.mark.django_db
def test_export_shapes(tenant_a):
    source = ConnectionFactory(tenant=tenant_a)
    records = {type(r): r for r in build(tenant_a, source, FULL) if r.external_id in {"p1", "dr1", "cg1", "ap1", "e1", "s1", "auth1", "r1"}}
    patient = to_fhir(records[m.Patient])
    assert patient["id"] == str(records[m.Patient].public_id)
    assert patient["meta"] == {"versionId": "1", "lastUpdated": records[m.Patient].updated_at.isoformat()}
    assert patient["identifier"] == [
        {"system": f"urn:switchboard:connection:{source.public_id}", "value": "p1"},
        {"system": "urn:mrn:wellsky", "value": "MRN-1001"},
        {"system": "http://hl7.org/fhir/sid/us-mbi", "value": "1EG4TE5MK73"},
    ]
    assert patient["name"] == [{"family": "Rivera", "given": ["Ana", "María"]}]
    assert patient["communication"] == [{"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "es"}]}}]
    assert "extension" not in patient  # everything had a natural place

    practitioner = to_fhir(records[m.Practitioner])
    assert {"system": "http://hl7.org/fhir/sid/us-npi", "value": "1234567893"} in practitioner["identifier"]
    caregiver = to_fhir(records[m.Caregiver])
    assert caregiver["resourceType"] == "Practitioner"
    assert caregiver["meta"]["tag"] == [{"system": "https://switchboard.local/fhir/kind", "code": "caregiver"}]
    shift = to_fhir(records[m.Shift])
    assert shift["resourceType"] == "Appointment" and shift["status"] == "booked"
    assert shift["meta"]["tag"] == [{"system": "https://switchboard.local/fhir/kind", "code": "shift"}]

    encounter = records[m.Encounter]
    resource = to_fhir(encounter)
    assert resource["class"]["code"] == "VR"
    assert resource["subject"] == {"reference": f"Patient/{records[m.Patient].public_id}"}
    assert resource["diagnosis"] == [
        {"condition": {"reference": f"Condition/{row.public_id}"}, "rank": row.rank} for row in encounter.diagnoses.all()
    ]
    assert [doc["docStatus"] for doc in resource["contained"]] == ["preliminary", "amended"]
    condition = to_fhir(encounter.diagnoses.all()[0])
    assert condition["code"] == {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "E11.9", "display": "Type 2 diabetes mellitus without complications"}]}
    assert condition["encounter"] == {"reference": f"Encounter/{encounter.public_id}"}
    vital = to_fhir(encounter.vitals.all()[0])
    assert vital["category"][0]["coding"][0]["code"] == "vital-signs"
    assert vital["valueQuantity"] == {"value": 132, "unit": "mm[Hg]", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}

    claim = to_fhir(records[m.Authorization])
    assert (claim["resourceType"], claim["use"], claim["preAuthRef"]) == ("ClaimResponse", "preauthorization", "PA-2026-0001")
    assert claim["preAuthPeriod"] == {"start": "2026-11-01", "end": "2027-01-31"}
    request = to_fhir(records[m.Referral])
    assert (request["resourceType"], request["intent"], request["status"], request["priority"]) == ("ServiceRequest", "order", "active", "urgent")
    assert request["extension"] == [{"url": "https://switchboard.local/fhir/StructureDefinition/referral-status", "valueCode": "accepted"}]


@pytest.mark.django_db
def test_to_fhir_reads_nothing_more_from_a_prefetched_queryset(tenant_a, django_assert_num_queries):
    source = ConnectionFactory(tenant=tenant_a)
    build(tenant_a, source, FULL)
    for model in FHIR_SELECT_RELATED:
        rows = list(for_fhir(model.objects.all()))
        assert rows, model
        with django_assert_num_queries(0):
            for row in rows:
                to_fhir(row)
    assert set(FHIR_PREFETCH_RELATED) <= set(FHIR_SELECT_RELATED)


@pytest.mark.django_db
def test_exported_resources_sent_back_to_their_own_connection_change_nothing(tenant_a):
    source = ConnectionFactory(tenant=tenant_a)
    records = build(tenant_a, source, FULL)
    before = {(type(r), r.external_id): record_to_dict(r) for r in records}

    report = ingest_fhir(bundle(exported_resources(records)), tenant=tenant_a, connection=source)

    assert report.rejected == [] and report.created == 0
    for record in records:
        stored = type(record).objects.get(pk=record.pk)  # found by public id: no copy was made
        assert record_to_dict(stored) == before[(type(record), record.external_id)]
    assert m.Patient.objects.filter(tenant=tenant_a).count() == 1
