from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from canonical.models import Appointment, ChangeEvent, Encounter, Patient, PatientIdentifier
from canonical.upsert import delete_records, upsert_records
from tests.factories import ConnectionFactory


def patient(external_id="p1", **overrides):
    record = {
        "external_id": external_id, "family_name": "Rivera", "given_names": ["Ana", "María"], "birth_date": date(1948, 3, 2),
        "sex": "female", "phone": "555-0100", "city": "Dayton", "state": "OH",
        "identifiers": [{"system": "urn:mrn:wellsky", "value": f"MRN-{external_id}"}, {"system": "http://hl7.org/fhir/sid/us-mbi", "value": "1EG4TE5MK73"}],
    }
    record.update(overrides)
    return record


@pytest.fixture
def conn(tenant_a):
    return ConnectionFactory(tenant=tenant_a)


def events(tenant):
    return list(ChangeEvent.objects.filter(tenant=tenant).order_by("cursor").values_list("cursor", "resource_type", "action", "version"))


@pytest.mark.django_db
def test_create_then_unchanged_then_update(tenant_a, conn):
    first = upsert_records("patient", [patient("p1"), patient("p2")], tenant=tenant_a, connection=conn)
    assert (first.created, first.updated, first.unchanged, first.rejected) == (2, 0, 0, [])
    p1 = Patient.objects.get(external_id="p1")
    assert (p1.family_name, p1.given_names, p1.birth_date, p1.version) == ("Rivera", ["Ana", "María"], date(1948, 3, 2), 1)
    assert sorted(p1.identifiers.values_list("system", "value")) == [("http://hl7.org/fhir/sid/us-mbi", "1EG4TE5MK73"), ("urn:mrn:wellsky", "MRN-p1")]

    again = upsert_records("patient", [patient("p1"), patient("p2")], tenant=tenant_a, connection=conn)
    assert (again.created, again.updated, again.unchanged) == (0, 0, 2)

    changed = upsert_records("patient", [patient("p1", phone="555-0199", identifiers=[{"system": "urn:mrn:wellsky", "value": "MRN-p1"}])], tenant=tenant_a, connection=conn)
    assert (changed.created, changed.updated, changed.unchanged) == (0, 1, 0)
    p1.refresh_from_db()
    assert (p1.phone, p1.version) == ("555-0199", 2)
    identifier = p1.identifiers.get()
    assert identifier.value == "MRN-p1" and identifier.tenant_id == tenant_a.pk
    assert events(tenant_a) == [(1, "patient", "create", 1), (2, "patient", "create", 1), (3, "patient", "update", 2)]


@pytest.mark.django_db
def test_child_public_ids_are_stable_across_updates(tenant_a, conn):
    upsert_records("patient", [patient("p1")], tenant=tenant_a, connection=conn)
    before = list(PatientIdentifier.objects.order_by("position").values_list("public_id", flat=True))
    upsert_records("patient", [patient("p1", phone="1")], tenant=tenant_a, connection=conn)
    after = list(PatientIdentifier.objects.order_by("position").values_list("public_id", flat=True))
    assert before == after and len(after) == 2


@pytest.mark.django_db
def test_tombstone_then_revive(tenant_a, conn):
    upsert_records("patient", [patient("p1")], tenant=tenant_a, connection=conn)
    gone = delete_records("patient", ["p1", "never-seen"], tenant=tenant_a, connection=conn)
    assert gone.deleted == 1
    p1 = Patient.objects.get(external_id="p1")
    assert p1.deleted_at is not None and p1.version == 2
    assert delete_records("patient", ["p1"], tenant=tenant_a, connection=conn).deleted == 0  # already a tombstone
    back = upsert_records("patient", [patient("p1")], tenant=tenant_a, connection=conn)
    assert back.updated == 1
    p1.refresh_from_db()
    assert p1.deleted_at is None and p1.version == 3
    assert [e[2:] for e in events(tenant_a)] == [("create", 1), ("delete", 2), ("update", 3)]


@pytest.mark.django_db
def test_bad_records_are_rejected_with_path_and_the_rest_go_in(tenant_a, conn):
    records = [
        patient("ok"),
        patient("bad-sex", sex="banana"),
        patient("bad-date", birth_date="03/02/1948"),
        patient("bad-child", identifiers=[{"system": "x"}]),
        {"family_name": "no id"},
        patient("long", family_name="x" * 101),
    ]
    result = upsert_records("patient", records, tenant=tenant_a, connection=conn)
    assert result.created == 1
    assert [(r.external_id, r.path, r.reason) for r in result.rejected] == [
        ("#4", "external_id", "a non-empty text of at most 200 characters is required"),
        ("bad-sex", "sex", "'banana' is not one of female, male, other, unknown"),
        ("bad-date", "birth_date", "'03/02/1948' is not a date (YYYY-MM-DD)"),
        ("bad-child", "identifiers[0].value", "is required"),
        ("long", "family_name", "is 101 characters long; the limit is 100"),
    ]
    assert list(Patient.objects.values_list("external_id", flat=True)) == ["ok"]


@pytest.mark.django_db
def test_references_resolve_within_the_connection(tenant_a, conn):
    other = ConnectionFactory(tenant=tenant_a)
    upsert_records("patient", [patient("p1")], tenant=tenant_a, connection=conn)
    upsert_records("patient", [patient("p1")], tenant=tenant_a, connection=other)
    start = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
    result = upsert_records("appointment", [
        {"external_id": "a1", "patient": "p1", "start": start, "end": start.replace(hour=15), "service_code": "T1019", "units": Decimal("4")},
        {"external_id": "a2", "patient": "p404", "start": start, "end": start},
        {"external_id": "a3", "start": start, "end": start},
    ], tenant=tenant_a, connection=conn)
    assert result.created == 1
    assert [(r.external_id, r.path, r.reason) for r in result.rejected] == [
        ("a2", "patient", "patient 'p404' was not found in this connection"),
        ("a3", "patient", "is required"),
    ]
    appointment = Appointment.objects.get()
    assert appointment.patient.source_connection == conn
    assert appointment.units == Decimal("4")


@pytest.mark.django_db
def test_encounter_children(tenant_a, conn):
    upsert_records("patient", [patient("p1")], tenant=tenant_a, connection=conn)
    start = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    encounter = {
        "external_id": "e1", "patient": "p1", "period_start": start, "period_end": start.replace(hour=10), "status": "finished",
        "diagnoses": [{"code": "E11.9", "display": "Type 2 diabetes", "rank": 1}],
        "procedures": [{"system": "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets", "code": "G0299", "modifiers": ["GT"], "units": Decimal("1")}],
        "vitals": [{"loinc": "8480-6", "value": Decimal("132"), "unit": "mm[Hg]", "display": "Systolic"}],
        "notes": [{"author": "RN Lee", "text": "Visit went well.", "status": "signed", "signed_at": start, "signed_by": "RN Lee", "locked": True,
                   "amendments": [{"reason_code": "LATE-ENTRY", "text": "Added BP", "amended_by": "RN Lee", "amended_at": "2026-11-21T09:00:00+00:00"}]}],
    }
    assert upsert_records("encounter", [encounter], tenant=tenant_a, connection=conn).created == 1
    stored = Encounter.objects.get()
    assert stored.diagnoses.get().system == "http://hl7.org/fhir/sid/icd-10-cm"
    assert stored.procedures.get().modifiers == ["GT"]
    assert stored.vitals.get().value == Decimal("132")
    note = stored.notes.get()
    assert note.locked and note.amendments[0]["reason_code"] == "LATE-ENTRY"


@pytest.mark.django_db
def test_cursor_is_per_tenant(tenant_a, tenant_b, conn):
    conn_b = ConnectionFactory(tenant=tenant_b)
    upsert_records("patient", [patient("p1")], tenant=tenant_a, connection=conn)
    upsert_records("patient", [patient("p1")], tenant=tenant_b, connection=conn_b)
    assert events(tenant_a) == [(1, "patient", "create", 1)]
    assert events(tenant_b) == [(1, "patient", "create", 1)]


@pytest.mark.django_db
def test_a_foreign_connection_is_refused(tenant_a, tenant_b):
    with pytest.raises(ValueError, match="another tenant"):
        upsert_records("patient", [patient()], tenant=tenant_a, connection=ConnectionFactory(tenant=tenant_b))


@pytest.mark.django_db
def test_record_to_dict_is_the_engines_inverse(tenant_a, conn):
    from canonical.serialize import record_to_dict

    upsert_records("patient", [patient("p1")], tenant=tenant_a, connection=conn)
    stored = Patient.objects.get()
    as_dict = record_to_dict(stored)
    assert as_dict["identifiers"] == patient("p1")["identifiers"]
    assert upsert_records("patient", [as_dict], tenant=tenant_a, connection=conn).updated in (0, 1)
    assert upsert_records("patient", [as_dict], tenant=tenant_a, connection=conn).unchanged == 1
