"""Importing 835 files: stored once, balanced or flagged with the difference, never posted twice,
nothing stored from a file that does not parse. Fixtures are written by hand from the 005010 guide."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from formats.x12.errors import X12Error
from reconciliation.models import (
    Adjustment,
    ProviderAdjustment,
    Remittance,
    RemittanceClaim,
    RemittanceFile,
    RemittanceLine,
)
from reconciliation.remittances import import_remittance_file
from tenants.models import AuditEvent

pytestmark = pytest.mark.django_db
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "x12"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def test_an_835_is_stored_with_claims_lines_and_adjustments_to_the_cent(tenant_a):
    summary = import_remittance_file(tenant=tenant_a, body=fixture("835_two_claims_paid.edi"), name="acme.835", actor_label="staff:ann")

    remittance = Remittance.objects.get(tenant=tenant_a)
    assert (remittance.payer_name, remittance.trace_number, remittance.payment_amount, remittance.payment_method) == (
        "ACME HEALTH PLAN", "EFT20250314001", Decimal("210.50"), "ACH")
    first = RemittanceClaim.objects.get(remittance=remittance, patient_control_number="PCN1001")
    assert (first.status_code, first.charge, first.paid, first.patient_responsibility, first.member_id) == (
        "1", Decimal("250.00"), Decimal("115.00"), Decimal("90.00"), "W123456789")
    line = RemittanceLine.objects.filter(claim=first).first()
    assert (line.procedure_code, line.modifiers, line.charge, line.paid) == ("99214", ["25"], Decimal("180.00"), Decimal("100.00"))
    assert sorted((a.group, a.reason, a.amount) for a in Adjustment.objects.filter(line=line)) == [  # CAS*PR*3*20**2*30: two triples
        ("CO", "45", Decimal("30.00")), ("PR", "2", Decimal("30.00")), ("PR", "3", Decimal("20.00"))]
    assert summary.remittances[0]["trace_number"] == "EFT20250314001"
    assert summary.remittances[0]["payment_amount"] == "210.50"
    assert AuditEvent.objects.filter(object_type="reconciliation.remittancefile", actor_label="staff:ann").count() == 1


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("835_*.edi")))
def test_every_hand_written_835_imports_and_reimporting_changes_nothing(tenant_a, name):
    first = import_remittance_file(tenant=tenant_a, body=fixture(name))
    counts = [m.objects.count() for m in (RemittanceFile, Remittance, RemittanceClaim, RemittanceLine, Adjustment, ProviderAdjustment)]

    again = import_remittance_file(tenant=tenant_a, body=fixture(name))

    assert counts == [m.objects.count() for m in (RemittanceFile, Remittance, RemittanceClaim, RemittanceLine, Adjustment, ProviderAdjustment)]
    assert (first.new_file, again.new_file, again.problems) == (True, False, [])
    assert first.remittances == again.remittances
    for row in Remittance.objects.all():  # balanced, or flagged with the difference
        assert row.balanced == (row.difference == 0)


def test_the_same_check_in_another_file_is_not_stored_twice(tenant_a):
    import_remittance_file(tenant=tenant_a, body=fixture("835_two_claims_paid.edi"))
    resent = fixture("835_two_claims_paid.edi").replace(b"REF*EV*SWITCHBOARD~", b"REF*EV*SWITCHBOARD2~")

    summary = import_remittance_file(tenant=tenant_a, body=resent)

    assert Remittance.objects.count() == 1 and RemittanceFile.objects.count() == 2
    assert summary.problems == [f"transaction 0001: trace number EFT20250314001 was imported before "
                                f"(remittance {Remittance.objects.get().public_id}); not stored twice"]


def test_each_tenant_keeps_its_own_copy(tenant_a, tenant_b):
    import_remittance_file(tenant=tenant_a, body=fixture("835_two_claims_paid.edi"))
    import_remittance_file(tenant=tenant_b, body=fixture("835_two_claims_paid.edi"))
    assert sorted(Remittance.objects.values_list("tenant__slug", flat=True)) == ["tenant-a", "tenant-b"]


def test_a_file_that_does_not_parse_stores_nothing_and_names_the_place(tenant_a):
    broken = fixture("835_two_claims_paid.edi").replace(b"CLP*PCN1001*1*250*115*", b"CLP*PCN1001*1*250*11.5.0*")

    with pytest.raises(X12Error) as raised:
        import_remittance_file(tenant=tenant_a, body=broken)

    assert (raised.value.segment_id, raised.value.element) == ("CLP", "CLP04")
    assert RemittanceFile.objects.count() == Remittance.objects.count() == 0
