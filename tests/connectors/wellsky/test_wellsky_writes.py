"""Writes to WellSky: referral intake (patients and referrals), authorization-checked booking
refused locally and at the vendor, entitlements, and idempotency across retries."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import httpx
import pytest

from canonical.authorizations import units_used
from canonical.models import Appointment, Authorization, Patient, Practitioner, Referral
from connectors.choices import WriteStatus
from connectors.errors import RetryableError
from connectors.http import CALLS
from connectors.models import VendorWrite
from connectors.tasks import perform_write as perform_write_actor
from connectors.wellsky.client import PortalClient
from connectors.writes import WriteConflict, perform_write, request_write
from tenants.choices import AuditAction
from tenants.models import AuditEvent, Entitlement
from tests.connectors.wellsky.conftest import connect, sync_all

pytestmark = pytest.mark.django_db

NEW_PATIENT = {"family_name": "Okafor", "given_names": ["Adaeze", "N."], "birth_date": "1948-05-17", "sex": "female",
               "phone": "(614) 555-0142", "address_line1": "12 Elm St", "city": "Columbus", "state": "OH", "postal_code": "43004",
               "language": "en"}


def write(connection, operation, request, key="k-1"):
    row, _ = request_write(connection, operation, request, idempotency_key=key, actor_label="partner:crm")
    return perform_write(row.pk)


def vendor_calls() -> int:
    return sum(n for (vendor, _), n in CALLS.items() if vendor == "wellsky")


def bookable(connection, *, spare_hours=1):
    """An active hourly/15-minute authorization with room for `spare_hours`, its practitioner and a slot."""
    for authorization in Authorization.objects.filter(source_connection=connection, status="active", unit_type__in=("15min", "hour")):
        per_hour = Decimal(4 if authorization.unit_type == "15min" else 1)
        if authorization.units_allowed - units_used(authorization) >= per_hour * spare_hours:
            last = Appointment.objects.filter(authorization=authorization).order_by("-start").first()
            start = (last.start + timedelta(days=1)).replace(minute=0)
            if authorization.start_date <= start.date() <= authorization.end_date:
                return authorization, last.practitioner, start
    raise AssertionError("no authorization with room in the sandbox")


def booking(authorization, practitioner, start, hours=1.0):
    return {"patient": str(authorization.patient.public_id), "practitioner": str(practitioner.public_id), "start": start.isoformat(),
            "end": (start + timedelta(hours=hours)).isoformat(), "service_code": authorization.service_codes[0]}


def test_create_patient_pushes_to_wellsky_and_stores_its_id(wellsky, sandbox, control):
    before = control.get("/_sandbox/state").json()["wellsky"]["patients"]

    done = write(wellsky, "create_patient", NEW_PATIENT)

    assert (done.status, done.error) == (WriteStatus.SUCCEEDED, "")
    patient = Patient.objects.get(public_id=done.record_public_id)
    assert (patient.external_id, patient.family_name, patient.given_names, str(patient.birth_date)) == (
        done.external_id, "Okafor", ["Adaeze", "N."], "1948-05-17")
    at_vendor = control.get("/_sandbox/state").json()["wellsky"]["patients"]
    assert at_vendor == before + 1
    record = sandbox.vendor("wellsky").agency.table("patients")
    stored = record.get(record.index_of(done.external_id))
    assert (stored["last_name"], stored["first_name"], stored["gender"], stored["address"]["city"]) == ("Okafor", "Adaeze", "F", "Columbus")


def test_the_same_key_writes_once_and_a_reused_key_must_ask_the_same(wellsky, control):
    first = write(wellsky, "create_patient", NEW_PATIENT, key="crm-42")
    again = write(wellsky, "create_patient", NEW_PATIENT, key="crm-42")

    assert again.pk == first.pk and again.external_id == first.external_id
    assert VendorWrite.objects.count() == 1
    assert Patient.objects.filter(family_name="Okafor").count() == 1
    with pytest.raises(WriteConflict, match="crm-42"):
        request_write(wellsky, "create_patient", {**NEW_PATIENT, "family_name": "Other"}, idempotency_key="crm-42")


def test_a_write_whose_answer_is_lost_is_retried_without_writing_twice(wellsky, sandbox, control):
    control.post("/_sandbox/faults", json={"drop_rate": 0.4})  # answers lost after WellSky acted, too
    before = control.get("/_sandbox/state").json()["wellsky"]["patients"]

    done = write(wellsky, "create_patient", NEW_PATIENT)

    control.post("/_sandbox/faults", json={"drop_rate": 0})
    assert done.status == WriteStatus.SUCCEEDED
    assert control.get("/_sandbox/state").json()["wellsky"]["patients"] == before + 1  # one patient, however many tries


def test_referral_intake_tracks_acceptance(wellsky, sandbox, control):
    sync_all(wellsky, resources=["patients"])
    patient = Patient.objects.filter(source_connection=wellsky).order_by("external_id").first()

    done = write(wellsky, "submit_referral", {"patient": str(patient.public_id), "source": "St. Mary's Hospital",
                                               "reason": "Post-discharge support", "priority": "urgent", "service_code": "T1019"})

    referral = Referral.objects.get(public_id=done.record_public_id)
    assert (referral.status, referral.priority, referral.service_code, referral.patient_id) == ("active", "urgent", "T1019", patient.pk)
    assert sandbox.vendor("wellsky").agency.table("referrals").get(
        sandbox.vendor("wellsky").agency.table("referrals").index_of(done.external_id))["service_code"] == "PCS"  # mapped back
    control.post("/_sandbox/mutate", json={"vendor": "wellsky", "decide_referrals": True})  # the agency decides
    sync_all(wellsky, resources=["referrals"])
    referral.refresh_from_db()
    assert referral.status == "accepted"


def test_referral_for_a_new_patient_creates_the_patient_too(wellsky, control):
    done = write(wellsky, "submit_referral", {"new_patient": NEW_PATIENT, "source": "Area Agency on Aging", "service_code": "XYZ"})

    assert done.status == WriteStatus.SUCCEEDED
    control.post("/_sandbox/mutate", json={"vendor": "wellsky", "decide_referrals": True})
    sync_all(wellsky, resources=["patients", "referrals"])
    referral = Referral.objects.get(public_id=done.record_public_id)
    assert referral.status == "declined"  # the agency does not provide service XYZ
    assert referral.patient.family_name == "Okafor"


def test_booking_within_the_authorization_is_written_and_counted(wellsky, sandbox):
    sync_all(wellsky)
    authorization, practitioner, start = bookable(wellsky)
    used_before = units_used(authorization)

    done = write(wellsky, "book_appointment", booking(authorization, practitioner, start))

    assert (done.status, done.error) == (WriteStatus.SUCCEEDED, "")
    appointment = Appointment.objects.get(public_id=done.record_public_id)
    assert (appointment.authorization_id, appointment.status, appointment.start) == (authorization.pk, "booked", start)
    assert units_used(authorization) == used_before + appointment.units
    vendor = sandbox.vendor("wellsky")
    index = vendor.agency.table("authorizations").index_of(authorization.external_id)
    assert Decimal(str(vendor.agency.units_used(index))) == units_used(authorization)  # both sides agree
    assert sync_all(wellsky, resources=["appointments"])[0].updated == 0  # the next sync finds it unchanged


def test_over_use_is_refused_locally_before_wellsky_is_asked(wellsky, control):
    sync_all(wellsky)
    authorization, practitioner, start = bookable(wellsky)
    remaining = authorization.units_allowed - units_used(authorization)
    hours = float(remaining) / (4 if authorization.unit_type == "15min" else 1) + 1
    calls, appointments = vendor_calls(), control.get("/_sandbox/state").json()["wellsky"]["appointments"]

    done = write(wellsky, "book_appointment", booking(authorization, practitioner, start, hours=hours))

    assert (done.status, done.rule) == (WriteStatus.REFUSED, "authorization_units_exceeded")
    assert f"has {remaining.normalize():f} of" in done.error
    assert done.details["units_remaining"] == str(remaining)
    assert vendor_calls() == calls  # WellSky never heard of it
    assert control.get("/_sandbox/state").json()["wellsky"]["appointments"] == appointments


def use_up_in_wellsky(sandbox, account, authorization, practitioner, start) -> int:
    """Book hour-long visits straight in WellSky (another client of the portal) until it refuses; returns how many."""
    with httpx.Client(base_url=f"{sandbox.url}/wellsky", timeout=10) as office:
        opened = office.post("/sessions", json={"username": account["username"], "password": account["password"]})
        office.headers["Authorization"] = f"Bearer {opened.json()['token']}"
        booked = 0
        for day in range(1, 200):
            when = start + timedelta(days=day)
            answer = office.post("/appointments", json={
                "patient_id": authorization.patient.external_id, "practitioner_id": practitioner.external_id,
                "start": when.isoformat(), "end": (when + timedelta(hours=1)).isoformat(), "service_code": "PCS" if
                authorization.service_codes[0] == "T1019" else "HHA"})
            if answer.status_code == 422:
                assert answer.json()["code"] in ("authorization_units_exceeded", "outside_authorization_dates")
                if answer.json()["code"] == "authorization_units_exceeded":
                    return booked
                continue
            assert answer.status_code == 201, answer.text
            booked += 1
    raise AssertionError("WellSky never refused")


def test_over_use_is_refused_by_wellsky_when_the_local_copy_is_stale(wellsky, sandbox, accounts):
    sync_all(wellsky)
    authorization, practitioner, start = bookable(wellsky, spare_hours=1)
    use_up_in_wellsky(sandbox, accounts["sunrise.api"], authorization, practitioner, start)  # the office books the rest directly

    done = write(wellsky, "book_appointment", booking(authorization, practitioner, start))

    assert (done.status, done.rule) == (WriteStatus.REFUSED, "authorization_units_exceeded")
    assert done.error.startswith("WellSky refused:")
    assert done.details["units_remaining"] == 0.0
    sync_all(wellsky, resources=["appointments"])  # the next sync brings the office's bookings, and the hub refuses locally
    again = write(wellsky, "book_appointment", booking(authorization, practitioner, start), key="k-2")
    assert (again.status, again.rule) == (WriteStatus.REFUSED, "authorization_units_exceeded")
    assert not again.error.startswith("WellSky")


def test_booking_outside_the_dates_or_without_authorization_names_the_rule(wellsky):
    sync_all(wellsky)
    authorization, practitioner, start = bookable(wellsky)
    late = start.replace(year=start.year + 1)
    outside = write(wellsky, "book_appointment", booking(authorization, practitioner, late), key="late")
    assert (outside.status, outside.rule) == (WriteStatus.REFUSED, "outside_authorization_dates")

    other_service = booking(authorization, practitioner, start) | {"service_code": "Z9999"}
    none = write(wellsky, "book_appointment", other_service, key="none")
    assert (none.status, none.rule) == (WriteStatus.REFUSED, "no_authorization")


def test_a_read_only_wellsky_licence_refuses_writes_with_its_reason(tenant_a, sandbox, accounts):
    connection = connect(tenant_a, sandbox, accounts["lakeside.viewer"])

    done = write(connection, "create_patient", NEW_PATIENT)

    assert (done.status, done.rule) == (WriteStatus.REFUSED, "write_not_permitted")
    assert done.error == "WellSky refused: this WellSky account's licence has no API write access"


def test_a_tenant_without_the_entitlement_is_refused_before_any_call(wellsky):
    Entitlement.objects.filter(tenant=wellsky.tenant, capability="patients.write").delete()
    calls = vendor_calls()

    done = write(wellsky, "create_patient", NEW_PATIENT)

    assert (done.status, done.rule) == (WriteStatus.REFUSED, "entitlement_missing")
    assert "patients.write" in done.error
    assert vendor_calls() == calls


def test_references_to_other_connections_or_tenants_are_refused(wellsky, tenant_b, sandbox, accounts):
    sync_all(wellsky, resources=["locations", "practitioners", "patients"])
    other = connect(tenant_b, sandbox, accounts["sunrise.admin"])
    sync_all(other, resources=["patients"])
    theirs = Patient.objects.filter(source_connection=other).first()
    practitioner = Practitioner.objects.filter(source_connection=wellsky).first()
    request = {"patient": str(theirs.public_id), "practitioner": str(practitioner.public_id), "start": "2026-12-01T15:00:00+00:00",
               "end": "2026-12-01T16:00:00+00:00", "service_code": "T1019"}

    done = write(wellsky, "book_appointment", request)

    assert (done.status, done.rule) == (WriteStatus.REFUSED, "unknown_reference")  # another tenant's patient does not exist here


def test_staff_see_writes_in_the_admin_and_each_view_is_audited(wellsky, admin_client):
    done = write(wellsky, "create_patient", NEW_PATIENT)

    listing = admin_client.get("/admin/connectors/vendorwrite/")
    page = admin_client.get(f"/admin/connectors/vendorwrite/{done.pk}/change/")

    assert listing.status_code == page.status_code == 200
    assert done.external_id in page.content.decode()
    audit = AuditEvent.objects.filter(object_type="connectors.vendorwrite", action=AuditAction.READ).get()
    assert (audit.object_id, audit.actor_label, audit.tenant_id) == (str(done.public_id), "staff:root", wellsky.tenant_id)
    writes = AuditEvent.objects.filter(object_type="connectors.vendorwrite", action=AuditAction.CREATE).get()
    assert writes.detail["status"] == "succeeded" and writes.actor_label == "partner:crm"


def test_a_retry_after_a_lost_answer_is_not_refused_by_its_own_booking(wellsky, sandbox, control, monkeypatch):
    """The booking reached WellSky, the answer was lost, a sync brought the new visit in: the retry
    resends the same key and gets WellSky's first answer instead of a local refusal."""
    sync_all(wellsky)
    authorization, practitioner, start = bookable(wellsky)
    per_hour = 4 if authorization.unit_type == "15min" else 1
    left = authorization.units_allowed - units_used(authorization)
    request = booking(authorization, practitioner, start, hours=float(left) / per_hour)  # exactly what is left
    row, _ = request_write(wellsky, "book_appointment", request, idempotency_key="lost-1")
    post = PortalClient.post
    lost = []

    def answer_lost_once(self, path, body, *, idempotency_key):
        answer = post(self, path, body, idempotency_key=idempotency_key)
        if not lost:
            lost.append(answer["id"])
            raise RetryableError("wellsky: unreachable (RemoteProtocolError)")
        return answer

    monkeypatch.setattr(PortalClient, "post", answer_lost_once)
    before = control.get("/_sandbox/state").json()["wellsky"]["appointments"]
    with pytest.raises(RetryableError):
        perform_write(row.pk)
    sync_all(wellsky, resources=["appointments"])  # the new visit is now in the hub and uses the units

    done = perform_write(row.pk)

    assert (done.status, done.rule, done.external_id) == (WriteStatus.SUCCEEDED, "", lost[0])
    assert control.get("/_sandbox/state").json()["wellsky"]["appointments"] == before + 1
    assert done.attempts == 2


def test_a_request_missing_what_the_operation_needs_is_refused_by_name(wellsky):
    sync_all(wellsky, resources=["locations", "practitioners", "patients"])
    patient = Patient.objects.filter(source_connection=wellsky).first()

    done = write(wellsky, "book_appointment", {"patient": str(patient.public_id), "start": "2026-12-01T15:00:00+00:00",
                                               "end": "2026-12-01T16:00:00+00:00", "service_code": "T1019"})

    assert (done.status, done.rule, done.error) == (WriteStatus.REFUSED, "invalid_request", "practitioner: is required")


@pytest.mark.django_db(transaction=True)  # the worker thread has its own database connection
def test_a_write_the_vendor_keeps_failing_ends_failed_when_the_job_gives_up(wellsky, control, sent, worker, drain, monkeypatch):
    monkeypatch.setitem(perform_write_actor.options, "min_backoff", 1)
    monkeypatch.setitem(perform_write_actor.options, "max_backoff", 5)
    control.post("/_sandbox/faults", json={"error_rate": 1.0})
    row, _ = request_write(wellsky, "create_patient", NEW_PATIENT, idempotency_key="storm-1")

    perform_write_actor.send(write_id=row.pk)
    drain("writes", timeout_s=30)

    row.refresh_from_db()
    assert (row.status, row.attempts) == (WriteStatus.FAILED, 7)
    assert row.error.startswith("gave up after retries: wellsky: server error")
