"""Matching remittance claims to claims and posting them: exact, by payer number, by patient/date/
charge (proposed), unmatched; reversal then correction; denials; to the cent; idempotent."""

from __future__ import annotations

import io
import json
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from canonical.models import Coverage, Patient
from canonical.upsert import upsert_records
from reconciliation.choices import ClaimStatus, MatchMethod, MatchStatus, PostingKind
from reconciliation.models import Claim, ClaimLine, Match, Posting
from reconciliation.posting import totals
from reconciliation.remittances import import_remittance_file
from tests.factories import ConnectionFactory

pytestmark = pytest.mark.django_db
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "x12"
ORIGINAL_PAYMENT = """ISA*00*          *00*          *ZZ*ACMEHEALTH     *ZZ*SWITCHBOARD    *250201*0900*^*00501*000000090*0*P*:~
GS*HP*ACMEHEALTH*SWITCHBOARD*20250201*0900*90*X*005010X221A1~
ST*835*0001~
BPR*I*100*C*CHK************20250201~
TRN*1*CHK10001*1512345678~
N1*PR*ACME HEALTH PLAN~
N1*PE*RIVERSIDE FAMILY MEDICINE*XX*1234567893~
LX*1~
CLP*PCN2001*1*150*100*50*CI*ACM2025020100007*11*1~
NM1*QC*1*DOE*JANE****MI*W123456789~
DTM*232*20250115~
SVC*HC:99203*150*100~
DTM*472*20250115~
CAS*PR*1*50~
SE*13*0001~
GE*1*90~
IEA*1*000000090~
"""


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


@pytest.fixture
def patients(tenant_a):
    connection = ConnectionFactory(tenant=tenant_a)
    upsert_records("patient", [
        {"external_id": "p1", "family_name": "Doe", "given_names": ["Jane"], "birth_date": "1950-02-03", "sex": "female"},
        {"external_id": "p2", "family_name": "Smith", "given_names": ["John"], "birth_date": "1948-07-09", "sex": "male"},
    ], tenant=tenant_a, connection=connection)
    upsert_records("coverage", [
        {"external_id": "c1", "patient": "p1", "payer": "Acme", "payer_id": "ACME01", "member_id": "W123456789", "priority": 1,
         "status": "active", "start_date": "2024-01-01"},
        {"external_id": "c2", "patient": "p2", "payer": "Acme", "payer_id": "ACME01", "member_id": "W987654321", "priority": 1,
         "status": "active", "start_date": "2024-01-01"},
    ], tenant=tenant_a, connection=connection)
    return {p.external_id: p for p in Patient.objects.filter(tenant=tenant_a)}


def claim(tenant, patient, pcn: str, charge: str, day: date, code="99213", **fields) -> Claim:
    row = Claim.objects.create(tenant=tenant, patient=patient, coverage=Coverage.objects.get(patient=patient), payer_name="Acme",
                               payer_id="ACME01", patient_control_number=pcn, total_charge=Decimal(charge),
                               status=ClaimStatus.SUBMITTED, **fields)
    ClaimLine.objects.create(claim=row, position=1, procedure_code=code, units=1, charge=Decimal(charge), service_date=day)
    return row


def test_exact_matches_are_confirmed_and_posted_to_the_cent(tenant_a, patients):
    first = claim(tenant_a, patients["p1"], "PCN1001", "250", date(2025, 3, 1), code="99214")
    second = claim(tenant_a, patients["p2"], "PCN1002", "120", date(2025, 3, 2))

    summary = import_remittance_file(tenant=tenant_a, body=fixture("835_two_claims_paid.edi"))

    assert (summary.remittances[0]["matched"], summary.remittances[0]["unmatched"]) == (2, 0)
    assert [(m.claim_id, m.method, m.confidence, m.status) for m in Match.objects.order_by("remittance_claim__position")] == [
        (first.pk, MatchMethod.PATIENT_CONTROL_NUMBER, Decimal("1.00"), MatchStatus.CONFIRMED),
        (second.pk, MatchMethod.PATIENT_CONTROL_NUMBER, Decimal("1.00"), MatchStatus.CONFIRMED)]
    assert totals(first) == {"payment": Decimal("115.00"), "contractual": Decimal("45.00"), "patient_responsibility": Decimal("90.00")}
    assert sorted(Posting.objects.filter(claim=first, kind=PostingKind.PATIENT_RESPONSIBILITY).values_list("reason", "amount")) == [
        ("1", Decimal("40.00")), ("2", Decimal("30.00")), ("3", Decimal("20.00"))]  # deductible, coinsurance, copay
    assert totals(second) == {"payment": Decimal("95.50"), "contractual": Decimal("24.50")}
    first.refresh_from_db(), second.refresh_from_db()
    assert (first.status, second.status, first.payer_claim_control_number) == (ClaimStatus.PAID, ClaimStatus.PAID, "ACM2025031400001")

    again = import_remittance_file(tenant=tenant_a, body=fixture("835_two_claims_paid.edi"))
    assert again.remittances == summary.remittances
    assert Posting.objects.count() == 8  # nothing posted twice


def test_a_claim_known_only_by_the_payers_number_is_matched_by_it(tenant_a, patients):
    renamed = claim(tenant_a, patients["p2"], "OTHER-PCN", "120", date(2025, 3, 2), payer_claim_control_number="ACM2025031400002")

    import_remittance_file(tenant=tenant_a, body=fixture("835_two_claims_paid.edi"))

    match = Match.objects.get(remittance_claim__patient_control_number="PCN1002")
    assert (match.claim_id, match.method, match.status) == (renamed.pk, MatchMethod.PAYER_CLAIM_NUMBER, MatchStatus.CONFIRMED)


def test_patient_date_and_charge_only_propose_a_match_and_nothing_is_posted(tenant_a, patients):
    guessed = claim(tenant_a, patients["p2"], "TYPO-1002", "120", date(2025, 3, 2))

    summary = import_remittance_file(tenant=tenant_a, body=fixture("835_two_claims_paid.edi"))

    match = Match.objects.get(remittance_claim__patient_control_number="PCN1002")
    assert (match.claim_id, match.method, match.confidence, match.status) == (
        guessed.pk, MatchMethod.PATIENT_DATE_CHARGE, Decimal("0.80"), MatchStatus.PROPOSED)
    unmatched = Match.objects.get(remittance_claim__patient_control_number="PCN1001")
    assert (unmatched.claim_id, unmatched.status) == (None, MatchStatus.UNMATCHED)
    assert (summary.remittances[0]["matched"], summary.remittances[0]["unmatched"]) == (0, 2)
    assert Posting.objects.count() == 0


def test_a_reversal_undoes_the_earlier_postings_and_the_correction_replaces_them(tenant_a, patients):
    original = claim(tenant_a, patients["p1"], "PCN2001", "150", date(2025, 1, 15), code="99203")
    import_remittance_file(tenant=tenant_a, body=ORIGINAL_PAYMENT)
    assert totals(original) == {"payment": Decimal("100.00"), "patient_responsibility": Decimal("50.00")}

    import_remittance_file(tenant=tenant_a, body=fixture("835_reversal_correction.edi"))

    reversals = Posting.objects.filter(claim=original, reverses__isnull=False)
    assert sorted((p.kind, p.amount, p.reverses.amount) for p in reversals) == [
        ("patient_responsibility", Decimal("-50.00"), Decimal("50.00")), ("payment", Decimal("-100.00"), Decimal("100.00"))]
    assert totals(original) == {"payment": Decimal("120.00"), "patient_responsibility": Decimal("30.00")}
    original.refresh_from_db()
    assert original.status == ClaimStatus.PAID


def test_denials_are_posted_with_their_reasons(tenant_a, patients):
    denied = claim(tenant_a, patients["p1"], "PCN4001", "300", date(2025, 3, 10), code="97530")

    import_remittance_file(tenant=tenant_a, body=fixture("835_denials.edi"))

    denied.refresh_from_db()
    assert denied.status == ClaimStatus.DENIED
    assert list(Posting.objects.filter(claim=denied).values_list("kind", "group", "reason", "amount")) == [
        ("denial", "CO", "50", Decimal("300.00"))]


def test_import_era_prints_the_summary_as_json_and_refuses_a_broken_file(tenant_a, patients, tmp_path):
    claim(tenant_a, patients["p1"], "PCN1001", "250", date(2025, 3, 1), code="99214")
    good = tmp_path / "acme.835"
    good.write_bytes(fixture("835_plb_interest_forward_balance.edi"))
    out = io.StringIO()

    call_command("import_era", str(good), tenant=tenant_a.slug, json=True, stdout=out)

    report = json.loads(out.getvalue())
    assert set(report) == {"remittances", "problems"}
    first = report["remittances"][0]
    assert set(first) == {"payer", "trace_number", "payment_amount", "payment_method", "claims", "matched", "unmatched", "total_paid",
                          "adjustments", "provider_adjustments", "balanced", "difference"}
    assert all(len(v.split(".")[1]) == 2 for r in report["remittances"]
               for v in (r["payment_amount"], r["total_paid"], r["provider_adjustments"], r["difference"], *r["adjustments"].values()))
    assert [r["balanced"] for r in report["remittances"]] == [True, False]
    assert report["remittances"][1]["difference"] == "-0.25"

    broken = tmp_path / "broken.835"
    broken.write_bytes(fixture("835_two_claims_paid.edi").replace(b"CLP*PCN1002*1*120*95.5*", b"CLP*PCN1002*1*120*ninety*"))
    with pytest.raises(CommandError, match=r"segment \d+ \(CLP\), element CLP04: .* nothing was imported"):
        call_command("import_era", str(broken), tenant=tenant_a.slug, json=True, stdout=io.StringIO())


def test_a_claim_split_by_the_payer_across_two_remittances_is_partially_then_fully_paid(tenant_a, patients):
    split = claim(tenant_a, patients["p1"], "PCN2001", "150", date(2025, 1, 15), code="99203")
    # The payer split the claim: 100 of its charge answered in one remittance, the other 50 in the next.
    first = ORIGINAL_PAYMENT.replace("BPR*I*100*", "BPR*I*80*").replace("CLP*PCN2001*1*150*100*50*", "CLP*PCN2001*1*100*80*0*") \
        .replace("SVC*HC:99203*150*100~", "SVC*HC:99203*100*80~").replace("CAS*PR*1*50~", "CAS*CO*45*20~")
    second = ORIGINAL_PAYMENT.replace("TRN*1*CHK10001*", "TRN*1*CHK10002*").replace("BPR*I*100*", "BPR*I*40*") \
        .replace("CLP*PCN2001*1*150*100*50*", "CLP*PCN2001*1*50*40*10*").replace("SVC*HC:99203*150*100~", "SVC*HC:99203*50*40~") \
        .replace("CAS*PR*1*50~", "CAS*PR*2*10~")

    import_remittance_file(tenant=tenant_a, body=first)
    split.refresh_from_db()
    assert split.status == ClaimStatus.PARTIALLY_PAID
    import_remittance_file(tenant=tenant_a, body=second)

    split.refresh_from_db()
    assert totals(split) == {"payment": Decimal("120.00"), "contractual": Decimal("20.00"), "patient_responsibility": Decimal("10.00")}
    assert split.status == ClaimStatus.PAID


def test_a_claim_left_wholly_to_the_patient_is_settled(tenant_a, patients):
    copay_only = claim(tenant_a, patients["p1"], "PCN2001", "150", date(2025, 1, 15), code="99203")
    all_to_patient = ORIGINAL_PAYMENT.replace("BPR*I*100*", "BPR*I*0*").replace("CLP*PCN2001*1*150*100*50*", "CLP*PCN2001*1*150*0*150*") \
        .replace("SVC*HC:99203*150*100~", "SVC*HC:99203*150*0~").replace("CAS*PR*1*50~", "CAS*PR*1*150~")

    import_remittance_file(tenant=tenant_a, body=all_to_patient)

    copay_only.refresh_from_db()
    assert (copay_only.status, totals(copay_only)) == (ClaimStatus.PAID, {"patient_responsibility": Decimal("150.00")})
