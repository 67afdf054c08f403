"""The 835 reader against remittances written by hand from the 005010X221A1 guide."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

from formats.x12.era835 import (
    Adjustment,
    Entity,
    Procedure,
    ProviderAdjustment,
    balance_difference,
    claim_balance_difference,
    line_balance_difference,
    parse_835,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "x12"


def parse(name: str):
    return parse_835((FIXTURES / name).read_text())


def D(value: str) -> Decimal:
    return Decimal(value)


def assert_cents(actual: Decimal, expected: str) -> None:
    """Exactly this Decimal, to the cent: type, value and two decimal places."""
    assert isinstance(actual, Decimal)
    assert actual == Decimal(expected)
    assert str(actual) == expected


# --- (a) two claims paid ----------------------------------------------------------------------


def test_header_payer_and_payee():
    (remittance,) = parse("835_two_claims_paid.edi")

    assert remittance.control_number == "0001"
    assert remittance.handling == "I"
    assert_cents(remittance.payment_amount, "210.50")
    assert remittance.credit_debit == "C"
    assert remittance.payment_method == "ACH"
    assert remittance.payment_format == "CCP"
    assert remittance.payment_date == date(2025, 3, 14)
    assert (remittance.trace_type, remittance.trace_number, remittance.trace_originator) == ("1", "EFT20250314001", "1512345678")
    assert remittance.receiver_id == "SWITCHBOARD"
    assert remittance.production_date == date(2025, 3, 13)
    assert remittance.payer.name == "ACME HEALTH PLAN"
    assert remittance.payer.id == "ACME01"
    assert remittance.payee.name == "RIVERSIDE FAMILY MEDICINE"
    assert (remittance.payee.id_qualifier, remittance.payee.id, remittance.payee.npi) == ("XX", "1234567893", "1234567893")
    assert remittance.payee.tax_id == "371234567"
    assert remittance.group_control_number == "101"
    assert remittance.interchange_control_number == "000000101"
    assert remittance.segment_range == (3, 48)
    assert remittance.provider_adjustments == []


def test_first_claim_with_contractual_and_patient_responsibility():
    (remittance,) = parse("835_two_claims_paid.edi")

    claim = remittance.claims[0]
    assert claim.patient_control_number == "PCN1001"
    assert claim.status_code == "1"
    assert_cents(claim.charge, "250.00")
    assert_cents(claim.paid, "115.00")
    assert_cents(claim.patient_responsibility, "90.00")
    assert (claim.filing_indicator, claim.payer_claim_control_number, claim.facility_type, claim.frequency) == (
        "CI", "ACM2025031400001", "11", "1",
    )
    assert claim.patient == Entity(entity_code="QC", entity_type="1", last_name="DOE", first_name="JANE", middle_name="A", id_qualifier="MI", id="W123456789")
    assert (claim.patient_last_name, claim.patient_first_name, claim.member_id) == ("DOE", "JANE", "W123456789")
    assert claim.rendering_provider is not None and claim.rendering_provider.id == "1987654320"
    assert claim.insured is None
    assert (claim.statement_from, claim.statement_to, claim.received_date) == (date(2025, 3, 1), date(2025, 3, 1), date(2025, 3, 5))
    assert claim.amounts == {"AU": D("205.00")}
    assert claim.adjustments == []
    assert claim.lx_number == 1
    assert claim.segment_number == 18
    assert claim_balance_difference(claim) == 0


def test_service_lines_with_modifiers_adjustments_and_remarks():
    (remittance,) = parse("835_two_claims_paid.edi")
    first, second = remittance.claims[0].lines

    assert first.procedure == Procedure(qualifier="HC", code="99214", modifiers=["25"])
    assert (first.procedure_qualifier, first.procedure_code, first.modifiers) == ("HC", "99214", ["25"])
    assert_cents(first.charge, "180.00")
    assert_cents(first.paid, "100.00")
    assert first.units == 1
    assert first.service_date_from == first.service_date_to == date(2025, 3, 1)
    assert first.adjustments == [
        Adjustment(group="CO", reason="45", amount=D("30.00")),
        Adjustment(group="PR", reason="3", amount=D("20.00")),
        Adjustment(group="PR", reason="2", amount=D("30.00")),
    ]
    assert first.control_number == "LN1001A"
    assert_cents(first.allowed_amount, "150.00")
    assert first.remark_codes == ["N130"]
    assert first.original_procedure is None

    assert second.procedure == Procedure(qualifier="HC", code="97110", modifiers=["GP", "59"])
    assert second.units == D("2")
    assert second.adjustments == [
        Adjustment(group="CO", reason="45", amount=D("15.00")),
        Adjustment(group="PR", reason="1", amount=D("40.00")),
    ]
    assert second.control_number == "LN1001B"
    assert second.remark_codes == ["N381"]
    assert line_balance_difference(first) == line_balance_difference(second) == 0


def test_second_claim_defaults_and_insured():
    (remittance,) = parse("835_two_claims_paid.edi")

    claim = remittance.claims[1]
    assert claim.patient_control_number == "PCN1002"
    assert_cents(claim.paid, "95.50")
    assert_cents(claim.patient_responsibility, "0.00")  # CLP05 left empty
    assert claim.insured == Entity(entity_code="IL", entity_type="1", last_name="SMITH", first_name="MARY", id_qualifier="MI", id="W987654300")
    (line,) = claim.lines
    assert line.units == 1  # SVC05 absent
    assert line.adjustments == [Adjustment(group="CO", reason="45", amount=D("24.50"))]


def test_totals_by_group_and_balance():
    (remittance,) = parse("835_two_claims_paid.edi")

    adjustments = [adjustment for claim in remittance.claims for adjustment in claim.all_adjustments]
    by_group: dict[str, Decimal] = {}
    for adjustment in adjustments:
        by_group[adjustment.group] = by_group.get(adjustment.group, Decimal("0")) + adjustment.amount
    assert by_group == {"CO": D("69.50"), "PR": D("90.00")}
    assert_cents(remittance.total_paid, "210.50")
    assert_cents(remittance.provider_adjustment_total, "0.00")
    assert_cents(balance_difference(remittance), "0.00")


# --- (b) non-default delimiters ---------------------------------------------------------------


def test_pipe_delimited_newline_terminated_file():
    text = (FIXTURES / "835_pipe_delimiters.edi").read_text()

    for variant in (text, text.replace("\n", "\r\n"), "\ufeff" + text):
        (remittance,) = parse_835(variant)
        assert remittance.payment_method == "CHK"
        assert remittance.handling == "C"
        assert_cents(remittance.payment_amount, "80.00")
        assert remittance.payment_date == date(2025, 3, 15)
        assert remittance.trace_number == "CHK55501"
        (claim,) = remittance.claims
        assert claim.member_id == "W123456789"
        (line,) = claim.lines
        assert line.procedure == Procedure(qualifier="HC", code="99213", modifiers=["25"])
        assert line.adjustments == [Adjustment(group="PR", reason="2", amount=D("20.00"))]
        assert line.remark_codes == ["N130"]
        assert balance_difference(remittance) == 0


# --- (c) two groups, three transactions -------------------------------------------------------


def test_two_groups_three_transactions():
    remittances = parse("835_two_groups_three_transactions.edi")

    assert [(r.group_control_number, r.control_number) for r in remittances] == [("201", "0001"), ("201", "0002"), ("202", "0001")]
    assert [str(r.payment_amount) for r in remittances] == ["50.00", "75.25", "300.00"]
    assert [r.payee.name for r in remittances] == ["RIVERSIDE FAMILY MEDICINE", "LAKESIDE CLINIC", "RIVERSIDE FAMILY MEDICINE"]
    assert [r.segment_range for r in remittances] == [(3, 12), (13, 25), (28, 39)]
    assert all(balance_difference(r) == 0 for r in remittances)
    assert all(claim_balance_difference(claim) == 0 for r in remittances for claim in r.claims)


def test_original_procedure_and_date_range():
    remittance = parse("835_two_groups_three_transactions.edi")[1]

    (line,) = remittance.claims[0].lines
    assert line.procedure == Procedure(qualifier="HC", code="99215")
    assert line.original_procedure == Procedure(qualifier="HC", code="99214")
    assert (line.service_date_from, line.service_date_to) == (date(2025, 3, 3), date(2025, 3, 4))


def test_wire_payment_secondary_claim_with_revenue_code():
    remittance = parse("835_two_groups_three_transactions.edi")[2]

    assert remittance.payment_method == "FWT"
    assert remittance.payer.name == "BLUE PLAN"
    assert remittance.payer.id == "BLUE77"  # N104, no REF*2U
    assert (remittance.payee.id_qualifier, remittance.payee.tax_id, remittance.payee.npi) == ("FI", "371234567", "")
    (claim,) = remittance.claims
    assert (claim.status_code, claim.filing_indicator, claim.facility_type) == ("2", "BL", "13")
    (line,) = claim.lines
    assert line.revenue_code == "0450"
    assert line.adjustments == [Adjustment(group="OA", reason="23", amount=D("100.00"))]


# --- (d) reversal and correction --------------------------------------------------------------


def test_reversal_then_correction():
    (remittance,) = parse("835_reversal_correction.edi")
    reversal, correction = remittance.claims

    assert reversal.is_reversal and not correction.is_reversal
    assert reversal.patient_control_number == correction.patient_control_number == "PCN2001"
    assert_cents(reversal.charge, "-150.00")
    assert_cents(reversal.paid, "-100.00")
    assert_cents(reversal.patient_responsibility, "-50.00")
    assert reversal.payer_claim_control_number == "ACM2025020100007"
    (reversed_line,) = reversal.lines
    assert_cents(reversed_line.charge, "-150.00")
    assert_cents(reversed_line.paid, "-100.00")
    assert reversed_line.adjustments == [Adjustment(group="PR", reason="1", amount=D("-50.00"))]

    assert correction.status_code == "1"
    assert_cents(correction.paid, "120.00")
    assert correction.references == {"F8": "ACM2025020100007"}  # the claim it replaces
    assert correction.payer_claim_control_number == "ACM2025032000011"

    assert remittance.payment_method == "CHK"
    assert remittance.payment_date == date(2025, 3, 20)
    assert_cents(remittance.total_paid, "20.00")
    assert_cents(balance_difference(remittance), "0.00")
    assert claim_balance_difference(reversal) == claim_balance_difference(correction) == 0


# --- (e) provider adjustments -----------------------------------------------------------------


def test_plb_interest_forward_balance_and_recoupment_balanced():
    balanced, _ = parse("835_plb_interest_forward_balance.edi")

    fiscal = date(2025, 12, 31)
    assert balanced.provider_adjustments == [
        ProviderAdjustment(provider_id="1234567893", fiscal_period_date=fiscal, reason="L6", reference="PCN3001", amount=D("-4.75"), segment_number=13),
        ProviderAdjustment(provider_id="1234567893", fiscal_period_date=fiscal, reason="FB", reference="ACM2025010100099", amount=D("50.00"), segment_number=13),
        ProviderAdjustment(provider_id="1234567893", fiscal_period_date=fiscal, reason="WO", reference="ACM2024120100042", amount=D("10.00"), segment_number=13),
        ProviderAdjustment(provider_id="1234567893", fiscal_period_date=fiscal, reason="72", reference="", amount=D("-25.00"), segment_number=14),
    ]
    assert_cents(balanced.total_paid, "200.00")
    assert_cents(balanced.provider_adjustment_total, "30.25")
    assert_cents(balanced.payment_amount, "169.75")
    assert_cents(balance_difference(balanced), "0.00")


def test_plb_unbalanced_remittance_reports_the_difference():
    _, unbalanced = parse("835_plb_interest_forward_balance.edi")

    (interest,) = unbalanced.provider_adjustments
    assert (interest.reason, interest.reference) == ("L6", "PCN3002")
    assert_cents(interest.amount, "-1.25")
    assert_cents(unbalanced.payment_amount, "81.00")
    # 81.00 − (80.00 − (−1.25)) = −0.25: the payer sent a quarter less than the detail adds up to.
    assert_cents(balance_difference(unbalanced), "-0.25")


def test_debit_payment_counts_negative_in_the_balance():
    text = (FIXTURES / "835_plb_interest_forward_balance.edi").read_text()
    text = text.replace("BPR*I*81*C*ACH", "BPR*I*81.25*D*ACH").replace("CLP*PCN3002*1*100*80*20", "CLP*PCN3002*22*-100*-80*-20")
    text = text.replace("L6:PCN3002*-1.25", "L6:PCN3002*1.25").replace("CAS*PR*2*20~", "CAS*PR*2*-20~")

    _, debit = parse_835(text)

    assert debit.credit_debit == "D"
    assert_cents(balance_difference(debit), "0.00")


# --- (f) denials ------------------------------------------------------------------------------


def test_denials_with_carc_and_rarc():
    (remittance,) = parse("835_denials.edi")

    assert (remittance.handling, remittance.payment_method) == ("H", "NON")
    assert_cents(remittance.payment_amount, "0.00")
    professional, institutional = remittance.claims
    assert professional.is_denial and institutional.is_denial
    assert professional.remark_codes == ["MA130", "N115"]  # MOA03, MOA04
    (line,) = professional.lines
    assert line.procedure == Procedure(qualifier="HC", code="97530", modifiers=["GP"])
    assert line.units == D("4")
    assert line.adjustments == [Adjustment(group="CO", reason="50", amount=D("300.00"))]
    assert line.remark_codes == ["N386"]
    assert_cents(professional.paid, "0.00")

    assert institutional.lx_number == 2
    assert institutional.filing_indicator == "MC"
    assert institutional.adjustments == [Adjustment(group="CO", reason="29", amount=D("1200.00"))]
    assert institutional.remark_codes == ["N211"]  # MIA05
    assert institutional.lines == []
    assert institutional.dates == {"232": date(2025, 1, 1), "233": date(2025, 1, 3), "050": date(2025, 3, 20)}
    assert balance_difference(remittance) == 0
    assert claim_balance_difference(professional) == claim_balance_difference(institutional) == 0


# --- (g) all six CAS triples ------------------------------------------------------------------


def test_cas_with_all_six_triples():
    (remittance,) = parse("835_cas_six_triples.edi")

    (claim,) = remittance.claims
    assert claim.adjustments == [
        Adjustment(group="CO", reason="45", amount=D("10.00"), quantity=D("1")),
        Adjustment(group="CO", reason="253", amount=D("2.00")),
        Adjustment(group="CO", reason="59", amount=D("3.00"), quantity=D("2")),
        Adjustment(group="CO", reason="94", amount=D("4.00")),
        Adjustment(group="CO", reason="B10", amount=D("5.00")),
        Adjustment(group="CO", reason="A2", amount=D("6.00"), quantity=D("1")),
    ]
    assert all(isinstance(adjustment.amount, Decimal) for adjustment in claim.adjustments)
    assert claim.lx_number is None  # no LX in this file
    assert claim.corrected_patient == Entity(entity_code="74", entity_type="1", last_name="DOE", first_name="JANET")
    assert claim.quantities == {"CA": D("1")}
    assert claim_balance_difference(claim) == 0
    assert remittance.payer.id == ""  # neither REF*2U nor N104
