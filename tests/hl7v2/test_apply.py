"""Receiving (keep raw, dedup, reject into triage) and mapping each message type into canonical records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from canonical.models import Appointment, Encounter, Patient
from connectors.hl7v2 import services
from connectors.hl7v2.choices import MessageStatus
from connectors.hl7v2.models import Hl7Message
from connectors.models import FailedJob
from tests.hl7v2.conftest import sample

pytestmark = pytest.mark.django_db
EST = timezone(timedelta(hours=-5))


def receive_and_apply(text: str, tenant, connection) -> Hl7Message:
    [receipt] = services.receive_messages([text], tenant=tenant, connection=connection, enqueue=False)
    assert receipt.code == "AA", receipt.ack
    return services.apply_message(receipt.message_id)


def patient(tenant, external_id: str) -> Patient:
    return Patient.objects.get(tenant=tenant, external_id=external_id)


def test_a01_creates_the_patient_with_identifiers_and_is_kept_raw(tenant_a, feed):
    message = receive_and_apply(sample("adt_a01"), tenant_a, feed)

    assert message.status == MessageStatus.APPLIED and message.raw == sample("adt_a01")
    assert (message.sender, message.control_id, message.message_type, message.trigger) == ("EPICADT/GOODHEALTH", "ADT00001", "ADT", "A01")
    mary = patient(tenant_a, "MRN10001")
    assert (mary.family_name, mary.given_names, str(mary.birth_date), mary.sex) == ("O'Brien", ["Mary", "Ellen"], "1958-02-14", "female")
    assert (mary.address_line1, mary.address_line2, mary.city, mary.state, mary.postal_code) == ("125 Elm St", "Apt 4B", "Springfield", "IL", "62704")
    assert (mary.phone, mary.email) == ("(217) 5550142", "mary.obrien@example.org")
    assert list(mary.identifiers.values_list("system", "value")) == [
        ("urn:hl7v2:assigning-authority:GOODHEALTH:MR", "MRN10001"), ("urn:oid:2.16.840.1.113883.4.1", "999-88-7777"),
    ]
    assert mary.source_connection == feed and feed.vendor == "hl7v2" and feed.base_url == ""


def test_a08_updates_what_it_sends_clears_double_quoted_and_keeps_the_rest(tenant_a, feed):
    receive_and_apply(sample("adt_a01"), tenant_a, feed)
    receive_and_apply(sample("adt_a08"), tenant_a, feed)

    mary = patient(tenant_a, "MRN10001")
    assert mary.family_name == "O'Brien-Hale" and mary.phone == "(217) 5550199"
    assert (mary.address_line1, mary.city) == ("", "")  # PID-11 was ""
    assert str(mary.birth_date) == "1958-02-14" and mary.email == "mary.obrien@example.org"  # not sent: kept
    assert mary.identifiers.count() == 2
    assert mary.version == 2


@pytest.mark.parametrize("name", ["adt_a04", "adt_a28"])
def test_a04_and_a28_create_patients(tenant_a, feed, name):
    message = receive_and_apply(sample(name), tenant_a, feed)
    assert message.status == MessageStatus.APPLIED
    assert Patient.objects.filter(tenant=tenant_a, deleted_at=None).count() == 1


def test_a31_updates_a_person(tenant_a, feed):
    receive_and_apply(sample("adt_a28"), tenant_a, feed)
    receive_and_apply(sample("adt_a31"), tenant_a, feed)
    anna = patient(tenant_a, "MRN10003")
    assert (anna.given_names, anna.city) == (["Anna", "Maria"], "Madison")


def test_a40_merge_moves_identifiers_and_tombstones_the_merged_patient(tenant_a, feed):
    receive_and_apply(sample("adt_a04"), tenant_a, feed)
    receive_and_apply(sample("adt_a28"), tenant_a, feed)

    message = receive_and_apply(sample("adt_a40"), tenant_a, feed)

    survivor, merged = patient(tenant_a, "MRN10002"), patient(tenant_a, "MRN10003")
    assert merged.deleted_at is not None and merged.identifiers.count() == 0
    assert survivor.deleted_at is None
    assert ("urn:hl7v2:assigning-authority:GOODHEALTH:MR", "MRN10003") in set(survivor.identifiers.values_list("system", "value"))
    assert message.detail["merged"] == [{"survivor": "MRN10002", "merged": "MRN10003", "found": True, "identifiers_moved": 0}]


def test_siu_s12_books_and_s15_cancels_the_appointment(tenant_a, feed):
    receive_and_apply(sample("adt_a01"), tenant_a, feed)
    receive_and_apply(sample("siu_s12"), tenant_a, feed)

    appointment = Appointment.objects.get(tenant=tenant_a, external_id="FL7001")
    assert appointment.patient == patient(tenant_a, "MRN10001")
    assert appointment.status == "booked" and appointment.service_code == "99213" and appointment.description == "Routine follow-up"
    assert appointment.start == datetime(2025, 4, 1, 14, 30, tzinfo=UTC)  # 09:30 in the tenant's zone (New York, EDT)
    assert appointment.end - appointment.start == timedelta(minutes=30)
    assert patient(tenant_a, "MRN10001").given_names == ["Mary", "Ellen"]  # the SIU's short PID did not drop the middle name

    receive_and_apply(sample("siu_s15"), tenant_a, feed)
    appointment.refresh_from_db()
    assert appointment.status == "cancelled"


def test_siu_for_an_unknown_patient_creates_the_patient(tenant_a, feed):
    message = receive_and_apply(sample("siu_s12"), tenant_a, feed)
    assert message.status == MessageStatus.APPLIED
    assert patient(tenant_a, "MRN10001").family_name == "O'Brien"


def test_oru_r01_vitals_become_encounter_vitals(tenant_a, feed):
    message = receive_and_apply(sample("oru_r01"), tenant_a, feed)

    encounter = Encounter.objects.get(tenant=tenant_a, external_id="V20250315001")
    vitals = list(encounter.vitals.values_list("loinc", "value", "unit"))
    assert vitals == [("8480-6", Decimal("128"), "mm[Hg]"), ("8462-4", Decimal("82"), "mm[Hg]"),
                      ("8867-4", Decimal("76"), "/min"), ("29463-7", Decimal("68.5"), "kg")]
    assert encounter.vitals.first().effective_at == datetime(2025, 3, 15, 9, 0, tzinfo=EST)
    assert encounter.period_start == datetime(2025, 3, 15, 8, 0, tzinfo=EST)
    assert message.detail["skipped"] == ["OBX(5): result status X", "OBX(6): not LOINC-coded"]


def test_mdm_t02_note_joins_the_same_visit_without_dropping_its_vitals(tenant_a, feed):
    receive_and_apply(sample("oru_r01"), tenant_a, feed)
    receive_and_apply(sample("mdm_t02"), tenant_a, feed)

    encounter = Encounter.objects.get(tenant=tenant_a, external_id="V20250315001")
    assert encounter.vitals.count() == 4
    note = encounter.notes.get()
    assert note.text == "Patient seen for follow-up. BP 128/82 & HR 76.\nPlan: continue lisinopril 10 mg daily\nReturn in 4 weeks."
    assert (note.author, note.status, note.locked, note.signed_by) == ("Peter Adams", "signed", True, "Peter Adams")
    assert note.signed_at == datetime(2025, 3, 15, 16, 55, tzinfo=EST)


def test_a_duplicate_is_acknowledged_and_not_applied_again(tenant_a, feed):
    first = receive_and_apply(sample("adt_a01"), tenant_a, feed)

    [again] = services.receive_messages([sample("adt_a01")], tenant=tenant_a, connection=feed, enqueue=False)

    assert again.code == "AA" and again.duplicate and again.message_id is None
    assert "MSA|AA|ADT00001|duplicate" in again.ack
    assert Hl7Message.objects.count() == 1 and patient(tenant_a, "MRN10001").version == 1
    assert services.apply_message(first.pk).status == MessageStatus.APPLIED  # applying twice changes nothing
    assert patient(tenant_a, "MRN10001").version == 1


def test_the_same_control_id_from_another_sender_or_tenant_is_not_a_duplicate(tenant_a, tenant_b, feed):
    other_sender = sample("adt_a01").replace("EPICADT", "OTHERADT")
    receipts = services.receive_messages([sample("adt_a01"), other_sender], tenant=tenant_a, connection=feed, enqueue=False)
    [other_tenant] = services.receive_messages([sample("adt_a01")], tenant=tenant_b, connection=services.feed_connection(tenant_b), enqueue=False)
    assert [r.duplicate for r in receipts] == [False, False] and not other_tenant.duplicate


@pytest.mark.parametrize(("text", "code", "where"), [
    ("\x00\x01garbage", "AR", "MSH"),
    ("MSH|^~\\&|A|B|C|D|2025||ADT^A01||P|2.5.1\rPID|1||X\r", "AR", "MSH-10"),
    ("MSH|^~\\&|A|B|C|D|2025||ORM^O01|C1|P|2.5.1\r", "AR", "MSH-9"),
    ("MSH|^~\\&|A|B|C|D|2025||ADT^A99|C2|P|2.5.1\r", "AR", "MSH-9"),
])
def test_unreadable_or_unsupported_messages_are_rejected_kept_and_in_triage(tenant_a, feed, text, code, where):
    [receipt] = services.receive_messages([text], tenant=tenant_a, connection=feed, enqueue=False)

    assert receipt.code == code and f"MSA|{code}|" in receipt.ack and "ERR|" in receipt.ack
    kept = Hl7Message.objects.get(pk=receipt.message_id)
    assert kept.status == MessageStatus.REJECTED and kept.raw == text.replace("\x00", "\\x00") and kept.error.startswith(where)
    job = FailedJob.objects.get()
    assert job.actor == services.RECEIVE_ACTOR and job.arguments["kwargs"] == {"message_id": kept.pk} and job.tenant == tenant_a
    assert Patient.objects.count() == 0


def test_a_message_that_cannot_be_mapped_fails_into_triage_and_can_be_replayed(tenant_a, feed):
    broken = sample("adt_a01").replace("|19580214|", "|1958-02-14|")
    message = receive_and_apply(broken, tenant_a, feed)

    assert message.status == MessageStatus.FAILED and message.error == "PID-7: the birth date is not YYYYMMDD"
    job = FailedJob.objects.get()
    assert job.actor == "apply_hl7_message" and job.arguments == {"args": [], "kwargs": {"message_id": message.pk}}
    assert Patient.objects.count() == 0  # nothing half-applied

    Hl7Message.objects.filter(pk=message.pk).update(raw=sample("adt_a01"))  # as if the mapping were fixed
    assert services.apply_message(message.pk).status == MessageStatus.APPLIED


def test_a_batch_frame_is_kept_message_by_message_and_answered_with_a_batch_ack(tenant_a, feed):
    batch = "FHS|^~\\&|EPICADT\rBHS|^~\\&|EPICADT\r" + sample("adt_a01") + sample("adt_a04") + "BTS|2\rFTS|1\r"

    ack, receipts = services.receive_frame(batch.encode(), tenant=tenant_a, connection=feed)

    assert [r.code for r in receipts] == ["AA", "AA"]
    assert ack.startswith("BHS|") and ack.count("MSA|AA|") == 2 and ack.endswith("BTS|2\r")
    assert Hl7Message.objects.filter(status=MessageStatus.RECEIVED).count() == 2


def test_a_batch_with_one_bad_message_applies_the_others_and_fails_only_that_one(tenant_a, feed):
    bad_appointment = sample("siu_s12").replace("^^30^20250401093000^20250401100000", "^^30^20250401093000^20250401080000")
    receipts = services.receive_messages([sample("adt_a01"), bad_appointment, sample("oru_r01")], tenant=tenant_a,
                                         connection=feed, enqueue=False)

    counts = services.apply_messages([r.message_id for r in receipts], tenant=tenant_a, connection=feed)

    assert counts == {"applied": 2, "ignored": 0, "failed": 1}
    statuses = dict(Hl7Message.objects.values_list("control_id", "status"))
    assert statuses == {"ADT00001": "applied", "SIU00001": "failed", "ORU00001": "applied"}
    assert Hl7Message.objects.get(control_id="SIU00001").error == "SCH-11.5: the appointment ends before it starts"
    assert Appointment.objects.count() == 0 and Encounter.objects.count() == 1


def test_one_actor_message_applies_the_waiting_messages_of_its_connection_in_order(tenant_a, feed):
    receipts = services.receive_messages([sample("adt_a01"), sample("adt_a08")], tenant=tenant_a, connection=feed, enqueue=False)

    from connectors.hl7v2.tasks import apply_hl7_message

    apply_hl7_message.fn(message_id=receipts[0].message_id)

    assert set(Hl7Message.objects.values_list("status", flat=True)) == {MessageStatus.APPLIED}
    assert patient(tenant_a, "MRN10001").family_name == "O'Brien-Hale"  # the A08 was laid over the A01


def test_messages_kept_but_never_mapped_are_enqueued_again(tenant_a, feed, enqueued):
    services.receive_messages([sample("adt_a01"), sample("adt_a04")], tenant=tenant_a, connection=feed, enqueue=False)

    assert services.enqueue_pending(tenant_a) == 2

    assert len(enqueued) == 1  # one actor message applies the connection's waiting batch


def test_a_poison_message_fails_alone_and_never_blocks_its_batch(tenant_a, feed, monkeypatch):
    receipts = services.receive_messages([sample("adt_a01"), sample("adt_a04")], tenant=tenant_a, connection=feed, enqueue=False)
    real = services.mapping.map_message

    def map_message(text, tz):
        if "ADT00001" in text:
            raise RecursionError("a bug")
        return real(text, tz)

    monkeypatch.setattr(services.mapping, "map_message", map_message)

    counts = services.apply_messages([r.message_id for r in receipts], tenant=tenant_a, connection=feed)

    assert counts == {"applied": 1, "ignored": 0, "failed": 1}
    assert Hl7Message.objects.get(control_id="ADT00001").error == "message: cannot be mapped (RecursionError)"


def test_triage_retry_of_a_rejected_message_reads_it_again(tenant_a, feed, monkeypatch):
    [receipt] = services.receive_messages([sample("adt_a01").replace("ADT^A01^ADT_A01", "ADT^A05^ADT_A05")], tenant=tenant_a,
                                          connection=feed, enqueue=False)
    job = FailedJob.objects.get()
    assert job.actor == "recheck_hl7_message"

    assert services.recheck_message(receipt.message_id).status == MessageStatus.REJECTED  # still not supported
    monkeypatch.setitem(services.SUPPORTED, "ADT", services.SUPPORTED["ADT"] | {"A05"})
    monkeypatch.setitem(services.mapping.SUPPORTED, "ADT", services.SUPPORTED["ADT"])

    from connectors.hl7v2.tasks import recheck_hl7_message

    recheck_hl7_message.fn(message_id=receipt.message_id)

    assert Hl7Message.objects.get(pk=receipt.message_id).status == MessageStatus.APPLIED
    assert patient(tenant_a, "MRN10001").family_name == "O'Brien"
