"""Writes to Welkin: a patient created (Welkin's id kept as the external id), a visit rescheduled,
an assessment completed elsewhere pushed in; idempotency, refusals before and at the vendor."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from canonical.models import Appointment, Assessment, Patient, Practitioner
from connectors.choices import WriteStatus
from connectors.models import VendorWrite
from connectors.registry import connector_for
from connectors.welkin.mapping import patient_body
from connectors.writes import perform_write, request_write
from tenants.models import Entitlement
from tests.connectors.welkin.conftest import sync_all
from tests.connectors.welkin.expect import differences, source

pytestmark = pytest.mark.django_db

NEW_PATIENT = {"family_name": "Adeyemi-Brooks", "given_names": ["Adaeze", "N"], "birth_date": "1948-05-17", "sex": "female",
               "phone": "+16145550142", "email": "adaeze@mail.example", "address_line1": "12 Elm St", "city": "Columbus", "state": "OH",
               "postal_code": "43004", "language": "es"}


def write(connection, operation, request, key="k-1"):
    row, _ = request_write(connection, operation, request, idempotency_key=key, actor_label="partner:portal")
    return perform_write(row.pk)


def welkin_record(sandbox, table: str, record_id: str) -> dict:
    records = sandbox.vendor("welkin").tenant().table(table)
    return records.get(records.index_of(record_id))


def test_create_patient_returns_welkins_id_which_the_hub_keeps(welkin, sandbox):
    before = sandbox.vendor("welkin").tenant().table("patients").live_count()

    done = write(welkin, "create_patient", NEW_PATIENT)

    assert (done.status, done.error) == (WriteStatus.SUCCEEDED, "")
    assert done.external_id.startswith("WPAT")
    stored = welkin_record(sandbox, "patients", done.external_id)
    assert (stored["firstName"], stored["middleName"], stored["lastName"], stored["birthDate"], stored["gender"],
            stored["primaryLanguage"], stored["address"]["city"]) == ("Adaeze", "N", "Adeyemi-Brooks", "1948-05-17", "FEMALE", "SPANISH", "Columbus")
    assert sandbox.vendor("welkin").tenant().table("patients").live_count() == before + 1
    patient = Patient.objects.get(public_id=done.record_public_id)
    assert (patient.external_id, patient.family_name, patient.given_names, str(patient.birth_date), patient.language) == (
        done.external_id, "Adeyemi-Brooks", ["Adaeze", "N"], "1948-05-17", "es")


def test_the_same_key_creates_one_patient(welkin, sandbox):
    first = write(welkin, "create_patient", NEW_PATIENT, key="portal-42")
    again = write(welkin, "create_patient", NEW_PATIENT, key="portal-42")

    assert again.pk == first.pk and again.external_id == first.external_id
    assert VendorWrite.objects.count() == 1
    assert [r["lastName"] for r in source(sandbox, "patients").values()].count("Adeyemi-Brooks") == 1


def test_a_retry_after_a_lost_answer_gets_welkins_first_answer(welkin, sandbox):
    # The vendor call is repeated under the same Idempotency-Key (as the job does after a dropped answer).
    connector = connector_for(welkin)
    body = patient_body(NEW_PATIENT)
    first = connector.client().send("POST", "patients", body, idempotency_key="switchboard-x")
    second = connector.client().send("POST", "patients", body, idempotency_key="switchboard-x")

    assert first["id"] == second["id"]
    assert [r["lastName"] for r in source(sandbox, "patients").values()].count("Adeyemi-Brooks") == 1


def test_update_calendar_event_reschedules_the_visit_and_changes_the_coach(welkin, sandbox):
    sync_all(welkin, resources=["coaches", "patients", "calendar_events"])
    appointment = Appointment.objects.filter(source_connection=welkin, status="booked").order_by("external_id").first()
    coach = Practitioner.objects.filter(source_connection=welkin).exclude(pk=appointment.practitioner_id).order_by("external_id").first()
    start = appointment.start + timedelta(days=1, hours=2)

    done = write(welkin, "update_calendar_event", {"appointment": str(appointment.public_id), "practitioner": str(coach.public_id),
                                                   "start": start.isoformat(), "end": (start + timedelta(minutes=30)).isoformat()})

    assert (done.status, done.error, done.external_id) == (WriteStatus.SUCCEEDED, "", appointment.external_id)
    at_welkin = welkin_record(sandbox, "calendar_events", appointment.external_id)
    assert (datetime.fromisoformat(at_welkin["start"]), datetime.fromisoformat(at_welkin["end"]), at_welkin["userId"]) == (
        start, start + timedelta(minutes=30), coach.external_id)
    appointment.refresh_from_db()
    assert (appointment.start, appointment.end, appointment.practitioner_id) == (start, start + timedelta(minutes=30), coach.pk)
    assert differences(sandbox, welkin, ["calendar_events"]) == []


def test_a_cancellation_is_a_status_change(welkin, sandbox):
    sync_all(welkin, resources=["coaches", "patients", "calendar_events"])
    appointment = Appointment.objects.filter(source_connection=welkin, status="booked").order_by("external_id").first()

    done = write(welkin, "update_calendar_event", {"appointment": str(appointment.public_id), "status": "cancelled"})

    assert done.status == WriteStatus.SUCCEEDED
    assert welkin_record(sandbox, "calendar_events", appointment.external_id)["status"] == "CANCELLED"
    appointment.refresh_from_db()
    assert appointment.status == "cancelled"


def test_welkin_refusing_a_reschedule_fails_the_write_and_changes_nothing(welkin, sandbox):
    sync_all(welkin, resources=["coaches", "patients", "calendar_events"])
    appointment = Appointment.objects.filter(source_connection=welkin).order_by("external_id").first()
    before = welkin_record(sandbox, "calendar_events", appointment.external_id)

    done = write(welkin, "update_calendar_event", {"appointment": str(appointment.public_id), "start": appointment.end.isoformat(),
                                                   "end": appointment.start.isoformat()})

    assert done.status == WriteStatus.FAILED
    assert "VALIDATION_FAILED" in done.error
    assert welkin_record(sandbox, "calendar_events", appointment.external_id) == before
    assert Appointment.objects.get(pk=appointment.pk).start == appointment.start


def test_push_assessment_files_an_outside_assessment_under_the_patient(welkin, sandbox):
    sync_all(welkin, resources=["coaches", "patients"])
    patient = Patient.objects.filter(source_connection=welkin).order_by("external_id").first()
    answers = [{"question": q, "answer": a} for q, a in zip(("Nervous", "Cannot stop worrying", "Worrying too much", "Trouble relaxing",
                                                             "Restless", "Irritable", "Afraid"), (1, 2, 0, 3, 1, 0, 2), strict=True)]

    done = write(welkin, "push_assessment", {"patient": str(patient.public_id), "instrument": "GAD-7", "answers": answers,
                                             "completed_at": "2026-11-20T15:30:00+00:00", "status": "completed"})

    assert (done.status, done.error) == (WriteStatus.SUCCEEDED, "")
    at_welkin = welkin_record(sandbox, "assessments", done.external_id)
    assert (at_welkin["patientId"], at_welkin["formName"], at_welkin["score"], at_welkin["answers"]) == (
        patient.external_id, "GAD-7", 9, answers)
    assessment = Assessment.objects.get(public_id=done.record_public_id)
    assert (assessment.patient_id, assessment.instrument, assessment.status, assessment.score, assessment.answers,
            assessment.completed_at.isoformat()) == (patient.pk, "GAD-7", "completed", Decimal("9"), answers, "2026-11-20T15:30:00+00:00")


@pytest.mark.parametrize(("operation", "request_body", "rule"), [
    ("create_patient", {"family_name": "Adeyemi-Brooks", "given_names": ["A"]}, "invalid_request"),
    ("update_calendar_event", {"start": "2026-11-20T15:30:00+00:00"}, "invalid_request"),
    ("push_assessment", {"instrument": "PHQ-9", "answers": [{"question": "q", "answer": 1}]}, "invalid_request"),
])
def test_a_write_missing_what_it_needs_is_refused_before_welkin(welkin, sandbox, operation, request_body, rule):
    before = sandbox.vendor("welkin").state()

    done = write(welkin, operation, request_body)

    assert (done.status, done.rule) == (WriteStatus.REFUSED, rule)
    assert sandbox.vendor("welkin").state() == before


def test_a_write_without_its_entitlement_is_refused(welkin, sandbox):
    Entitlement.objects.filter(capability="patients.write").delete()

    done = write(welkin, "create_patient", NEW_PATIENT)

    assert (done.status, done.rule) == (WriteStatus.REFUSED, "entitlement_missing")
    assert [r["lastName"] for r in source(sandbox, "patients").values()].count("Adeyemi-Brooks") == 0
