"""A 999 applied to the 837 batch it answers: accepted transaction sets accept their claims, rejected
ones reject theirs with the 999's reasons in words; applying it again changes nothing; a 999 for no
batch of ours is reported."""

from __future__ import annotations

import io
import json
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from canonical.models import Patient
from canonical.upsert import upsert_records
from formats.x12.errors import X12Error
from reconciliation.acknowledgements import apply_999
from reconciliation.choices import ClaimStatus
from reconciliation.models import Claim, ClaimBatch
from tenants.models import AuditEvent
from tests.factories import ConnectionFactory

pytestmark = pytest.mark.django_db
FIXTURES = Path(__file__).parent.parent / "fixtures" / "x12"
PARTIAL = (FIXTURES / "999_partially_accepted.edi").read_text()  # group 17: 0001 A, 0002 R (PCN5002), 0003 E


@pytest.fixture
def batch(tenant_a):
    batch = ClaimBatch.objects.create(tenant=tenant_a, kind="P", control_number=17, body="ISA…")
    upsert_records("patient", [{"external_id": "p1", "family_name": "Doe"}], tenant=tenant_a,
                   connection=ConnectionFactory(tenant=tenant_a))
    patient = Patient.objects.get(tenant=tenant_a)
    for pcn, st02 in (("PCN5001", "0001"), ("PCN5002", "0002"), ("PCN5003", "0003"), ("PCN5004", "0001")):
        Claim.objects.create(tenant=tenant_a, patient=patient, payer_name="ACME", payer_id="ACME01", patient_control_number=pcn,
                             total_charge=Decimal("100.00"), status=ClaimStatus.SUBMITTED, batch=batch,
                             transaction_control_number=st02)
    return batch


def statuses() -> dict[str, str]:
    return dict(Claim.objects.values_list("patient_control_number", "status"))


def test_accepted_and_rejected_transaction_sets_move_their_claims(tenant_a, batch):
    result = apply_999(tenant_a, PARTIAL, actor_label="test")

    assert statuses() == {"PCN5001": "accepted", "PCN5002": "rejected", "PCN5003": "accepted", "PCN5004": "accepted"}
    assert (result.accepted, result.rejected, result.problems) == (3, 1, [])
    assert Claim.objects.get(patient_control_number="PCN5002").rejection_reason == (
        "the 999 rejected transaction set 0002; "
        "segment NM1 at position 22 (loop 2010BA) in claim PCN5002: segment has data element errors; "
        "element NM109: required data element missing; "
        "segment SV1 at position 31 (loop 2400) in claim PCN5002: segment has data element errors; "
        "element SV101: invalid code value (value '9921X'); IK5 codes 5")
    batch.refresh_from_db()
    assert (batch.status, batch.ack_body == PARTIAL, batch.acknowledged_at is not None) == ("partially_accepted", True, True)
    [event] = AuditEvent.objects.filter(object_type="reconciliation.claimbatch")
    assert event.detail["accepted"] == 3 and event.detail["rejected"] == 1


def test_applying_the_same_999_again_changes_nothing_and_paid_claims_stay_paid(tenant_a, batch):
    apply_999(tenant_a, PARTIAL, actor_label="test")
    Claim.objects.filter(patient_control_number="PCN5001").update(status=ClaimStatus.PAID)

    again = apply_999(tenant_a, PARTIAL, actor_label="test")

    assert (again.accepted, again.rejected) == (0, 0)
    assert statuses()["PCN5001"] == "paid"


def test_a_rejected_group_rejects_every_claim_of_the_batch(tenant_a, batch):
    rejected = PARTIAL.replace("IK5*A~", "IK5*R*5~").replace("IK5*E~", "IK5*R~").replace("AK9*P*3*3*2~", "AK9*R*3*3*0~")

    apply_999(tenant_a, rejected, actor_label="test")

    assert set(statuses().values()) == {"rejected"}
    batch.refresh_from_db()
    assert batch.status == "rejected"


def test_a_999_for_a_batch_we_never_sent_is_reported(tenant_a, batch):
    other = PARTIAL.replace("AK1*HC*17*", "AK1*HC*99*")

    result = apply_999(tenant_a, other, actor_label="test")

    assert result.problems == ["999 0001 answers group 99 (005010X222A1), which no 837 batch of this tenant carries"]
    assert set(statuses().values()) == {"submitted"}


def test_another_tenants_batch_is_never_touched(tenant_a, tenant_b, batch):
    result = apply_999(tenant_b, PARTIAL, actor_label="test")

    assert result.batches == [] and len(result.problems) == 1
    assert set(statuses().values()) == {"submitted"}


def test_a_file_that_is_not_a_999_applies_nothing(tenant_a, batch):
    with pytest.raises(X12Error, match="segment 3"):
        apply_999(tenant_a, PARTIAL.replace("ST*999*", "ST*835*"), actor_label="test")
    assert set(statuses().values()) == {"submitted"}


def test_the_command_applies_and_prints_json(tenant_a, batch, tmp_path):
    path = tmp_path / "ack.999"
    path.write_text(PARTIAL)
    stdout = io.StringIO()

    call_command("import_999", str(path), tenant=tenant_a.slug, json=True, stdout=stdout)

    [summary] = json.loads(stdout.getvalue())["batches"]
    assert (summary["control_number"], summary["status"], summary["accepted"], summary["rejected"]) == (17, "partially_accepted", 3, 1)
    path.write_text("not x12")
    with pytest.raises(CommandError, match="nothing was applied"):
        call_command("import_999", str(path), tenant=tenant_a.slug, stdout=io.StringIO())
