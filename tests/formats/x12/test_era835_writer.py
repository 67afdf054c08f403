"""The 835 writer: a remittance with every kind of claim payment passes pyx12 (its 005010X221A1 map) and
reads back through parse_835 balanced, to the cent; one that would not balance is refused."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from formats.x12.era835 import (
    Adjustment,
    Entity,
    Procedure,
    ProviderAdjustment,
    balance_difference,
    claim_balance_difference,
    parse_835,
)
from formats.x12.era835_writer import (
    ClaimPayment,
    LinePayment,
    RemittanceAdvice,
    RemittancePayee,
    RemittancePayer,
    remittance_filing_indicator,
    write_835,
)
from formats.x12.model import Address
from formats.x12.tokenizer import Delimiters, read_interchanges
from tests.formats.x12.test_claim837 import CREATED_AT, pyx12_errors

D = Decimal
PAYER = RemittancePayer(name="ACME HEALTH PLAN", payer_id="ACME01", address=Address("100 INSURANCE WAY", "HARTFORD", "CT", "06101"),
                        company_id="1512345678", contact_phone="8005551234")
PAYEE = RemittancePayee(name="RIVERSIDE FAMILY MEDICINE", npi="1234567893", tax_id="371234567",
                        address=Address("12 MAIN ST", "SPRINGFIELD", "IL", "62701"))
JANE = Entity(entity_code="QC", entity_type="1", last_name="DOE", first_name="JANE", id_qualifier="MI", id="W123456789")
TIM = Entity(entity_code="QC", entity_type="1", last_name="ROE", first_name="TIM", id_qualifier="MI", id="M999")
MARY = Entity(entity_code="IL", entity_type="1", last_name="ROE", first_name="MARY", id_qualifier="MI", id="M999")
DAY = date(2025, 1, 15)


def visit(charge: str, paid: str, *adjustments: Adjustment, code: str = "99213", **changes) -> LinePayment:
    values = dict(procedure=Procedure(qualifier="HC", code=code), charge=D(charge), paid=D(paid), service_date=DAY, adjustments=adjustments)
    values.update(changes)
    return LinePayment(**values)


def co(reason: str, amount: str) -> Adjustment:
    return Adjustment(group="CO", reason=reason, amount=D(amount))


def pr(reason: str, amount: str) -> Adjustment:
    return Adjustment(group="PR", reason=reason, amount=D(amount))


def claims() -> list[ClaimPayment]:
    """Paid in full less CO-45, partially paid with PR-1/2/3, denied CO-50, and a reversal with its correction."""
    return [
        ClaimPayment(patient_control_number="PCN1", status="1", charge=D("305.75"), paid=D("220.40"), patient=JANE,
                     payer_claim_control_number="ICN1", facility_type="11", frequency="1", statement_from=DAY, statement_to=DAY,
                     received_date=date(2025, 1, 20), lines=[
                         visit("125.50", "100.00", co("45", "25.50"), procedure=Procedure(qualifier="HC", code="99213", modifiers=["25"]),
                               control_number="PCN1-1", allowed_amount=D("100.00")),
                         visit("80.25", "60.20", co("45", "20.05"), code="87880", control_number="PCN1-2", allowed_amount=D("60.20")),
                         visit("100.00", "60.20", co("45", "19.80"), pr("3", "20.00"), code="90686", units=D(2),
                               service_date_to=date(2025, 1, 16)),
                     ]),
        ClaimPayment(patient_control_number="PCN2", status="1", charge=D("200.00"), paid=D("62.00"), patient=TIM, insured=MARY,
                     filing_indicator="MC", payer_claim_control_number="ICN2", facility_type="11", frequency="1", lines=[
                         visit("200.00", "62.00", co("45", "40.00"), pr("1", "50.00"), pr("2", "48.00"), code="99214"),
                     ]),
        ClaimPayment(patient_control_number="PCN3", status="4", charge=D("80.00"), paid=D("0.00"), patient=JANE,
                     payer_claim_control_number="ICN3", facility_type="11", frequency="1", remark_codes=["MA01"], lines=[
                         visit("80.00", "0.00", co("50", "80.00"), code="99393", remark_codes=["N130"]),
                     ]),
        ClaimPayment(patient_control_number="PCN4", status="22", charge=D("-150.00"), paid=D("-100.00"), patient=JANE,
                     payer_claim_control_number="ICN0", facility_type="11", frequency="1", lines=[
                         visit("-150.00", "-100.00", co("45", "-30.00"), pr("3", "-20.00")),
                     ]),
        ClaimPayment(patient_control_number="PCN4", status="1", charge=D("150.00"), paid=D("120.00"), patient=JANE,
                     payer_claim_control_number="ICN4", facility_type="11", frequency="7", original_reference="ICN0",
                     adjustments=[co("45", "30.00")]),  # adjusted at claim level, without lines
    ]


def remittance(**changes) -> RemittanceAdvice:
    values = dict(
        payer=PAYER, payee=PAYEE, payment_method="ACH", trace_number="021000020000123", payment_date=date(2025, 3, 14), claims=claims(),
        provider_adjustments=[
            ProviderAdjustment(provider_id="1234567893", fiscal_period_date=date(2025, 12, 31), reason="L6", reference="PCN1",
                               amount=D("-1.25")),
            ProviderAdjustment(provider_id="1234567893", fiscal_period_date=date(2025, 12, 31), reason="WO", reference="ACM2024OVER",
                               amount=D("25.00")),
        ],
        production_date=date(2025, 3, 13), receiver_id="SWITCHBOARD",
        payer_routing_number="021000021", payer_account_number="123456789", payee_routing_number="031100209", payee_account_number="987654321",
    )
    values.update(changes)
    return RemittanceAdvice(**values)


def write(remittances, **options) -> str:
    return write_835(remittances, sender_id="ACMEHEALTH", receiver_id="SWITCHBOARD", control_number=501, created_at=CREATED_AT, **options)


def test_a_remittance_with_every_kind_of_claim_passes_pyx12_and_reads_back_balanced():
    # given
    advice = remittance()

    # when
    text = write([advice], line_breaks=True)

    # then
    assert pyx12_errors(text) == []
    (read,) = parse_835(text)
    # BPR02 = Σ CLP04 − Σ PLB = (220.40 + 62 + 0 − 100 + 120) − (−1.25 + 25)
    assert read.payment_amount == advice.payment_amount == D("278.65")
    assert balance_difference(read) == 0
    assert [claim_balance_difference(claim) for claim in read.claims] == [0] * 5
    assert (read.handling, read.credit_debit, read.payment_method, read.payment_format, read.payment_date) == (
        "I", "C", "ACH", "CCP", date(2025, 3, 14))
    assert (read.trace_type, read.trace_number, read.trace_originator) == ("1", "021000020000123", "1512345678")
    assert (read.receiver_id, read.production_date) == ("SWITCHBOARD", date(2025, 3, 13))
    assert (read.payer.name, read.payer.id, read.payee.name, read.payee.npi, read.payee.tax_id) == (
        "ACME HEALTH PLAN", "ACME01", "RIVERSIDE FAMILY MEDICINE", "1234567893", "371234567")
    assert [(c.patient_control_number, c.status_code, c.charge, c.paid, c.patient_responsibility, c.payer_claim_control_number)
            for c in read.claims] == [
        ("PCN1", "1", D("305.75"), D("220.40"), D("20.00"), "ICN1"),
        ("PCN2", "1", D("200.00"), D("62.00"), D("98.00"), "ICN2"),
        ("PCN3", "4", D("80.00"), D("0.00"), D("0.00"), "ICN3"),
        ("PCN4", "22", D("-150.00"), D("-100.00"), D("-20.00"), "ICN0"),
        ("PCN4", "1", D("150.00"), D("120.00"), D("0.00"), "ICN4"),
    ]
    first, second, denied, reversal, corrected = read.claims
    assert first.patient == JANE and first.insured is None
    assert (second.patient, second.insured, second.filing_indicator) == (TIM, MARY, "MC")
    assert first.lines[0].procedure == Procedure(qualifier="HC", code="99213", modifiers=["25"])
    assert [(line.control_number, line.allowed_amount) for line in first.lines] == [("PCN1-1", D("100.00")), ("PCN1-2", D("60.20")),
                                                                                     ("", None)]
    assert (first.lines[2].units, first.lines[2].service_date_from, first.lines[2].service_date_to) == (D(2), DAY, date(2025, 1, 16))
    assert second.lines[0].adjustments == [co("45", "40.00"), pr("1", "50.00"), pr("2", "48.00")]
    assert (denied.remark_codes, denied.lines[0].remark_codes, denied.is_denial) == (["MA01"], ["N130"], True)
    assert reversal.is_reversal and reversal.lines[0].adjustments == [co("45", "-30.00"), pr("3", "-20.00")]
    assert (corrected.references, corrected.adjustments, corrected.frequency) == ({"F8": "ICN0"}, [co("45", "30.00")], "7")
    assert [(a.reason, a.reference, a.amount) for a in read.provider_adjustments] == [("L6", "PCN1", D("-1.25")),
                                                                                      ("WO", "ACM2024OVER", D("25.00"))]


def test_the_835_st_has_no_st03_as_the_guide_says():
    text = write([remittance(), remittance(trace_number="021000020000124")])

    [interchange] = read_interchanges(text)

    assert [list(t.header) for t in interchange.transactions] == [["ST", "835", "0001"], ["ST", "835", "0002"]]


def test_a_check_payment_and_a_zero_payment():
    # given a check, and a remittance whose reversal and correction net to nothing
    check = remittance(payment_method="CHK", trace_number="10045678", provider_adjustments=())
    nothing = remittance(trace_number="10045679", claims=claims()[3:4] + [claims()[4]], provider_adjustments=[
        ProviderAdjustment(provider_id="1234567893", fiscal_period_date=date(2025, 12, 31), reason="WO", reference="ICN0", amount=D("20"))])

    # when
    text = write([check, nothing])

    # then
    assert pyx12_errors(text) == []
    paid, zero = parse_835(text)
    assert (paid.handling, paid.payment_method, paid.payment_amount, paid.trace_number) == ("I", "CHK", D("302.40"), "10045678")
    assert (zero.handling, zero.payment_method, zero.payment_amount, balance_difference(zero)) == ("H", "NON", D("0.00"), 0)
    assert "BPR*I*302.4*C*CHK************20250314~" in text


def test_other_delimiters_pass_pyx12_and_read_back():
    delimiters = Delimiters(element="|", component=">", repetition="!", segment="\n")

    text = write([remittance()], delimiters=delimiters)

    assert pyx12_errors(text) == []
    (read,) = parse_835(text)
    assert read.claims[0].lines[0].procedure == Procedure(qualifier="HC", code="99213", modifiers=["25"])
    assert read.provider_adjustments[0].reference == "PCN1"
    assert balance_difference(read) == 0


def test_more_than_six_adjustments_of_a_group_take_two_cas():
    reasons = [co(str(reason), "1.00") for reason in (45, 59, 97, 131, 172, 186, 253)]
    claim = ClaimPayment(patient_control_number="PCN9", status="1", charge=D("17.00"), paid=D("10.00"), patient=JANE,
                         lines=[visit("17.00", "10.00", *reasons)])

    text = write([remittance(claims=[claim], provider_adjustments=())])

    (read,) = parse_835(text)
    assert read.claims[0].lines[0].adjustments == reasons
    assert sum(1 for line in text.split("~") if line.startswith("CAS*CO*")) == 2


@pytest.mark.parametrize(("changes", "message"), [
    ({"claims": [ClaimPayment(patient_control_number="X", status="1", charge=D("100"), paid=D("90"), patient=JANE,
                              lines=[visit("100", "90", co("45", "5"))])]}, r"line 1: charge 100 − paid 90 is not the sum of its adjustments 5"),
    ({"claims": [ClaimPayment(patient_control_number="X", status="1", charge=D("100"), paid=D("90"), patient=JANE,
                              adjustments=[co("45", "5")])]}, "charge 100 − paid 90 is not the sum of the claim and line adjustments 5"),
    ({"claims": claims()[3:4], "provider_adjustments": ()}, "carries a negative balance forward with a PLB FB"),
    ({"payer_routing_number": ""}, "ACH payment needs the payer's and payee's routing and account numbers"),
    ({"payment_method": "WIRE"}, "payment method 'WIRE'"),
    ({"claims": [ClaimPayment(patient_control_number="X", status="1", charge=D("1"), paid=D("1"), patient=JANE, filing_indicator="CI")]},
     "'CI' is not an 835 claim filing indicator"),
    ({"claims": [ClaimPayment(patient_control_number="X", status="9", charge=D("1"), paid=D("1"), patient=JANE)]},
     "'9' is not a claim status code"),
    ({"claims": [ClaimPayment(patient_control_number="X", status="1", charge=D("2"), paid=D("1"), patient=JANE,
                              adjustments=[Adjustment(group="XX", reason="45", amount=D("1"))])]}, "'XX' is not an adjustment group"),
])
def test_a_remittance_that_would_not_balance_or_validate_is_refused(changes, message):
    with pytest.raises(ValueError, match=message):
        write([remittance(**changes)])


def test_837_filing_indicators_map_to_835_codes():
    assert [remittance_filing_indicator(code) for code in ("CI", "BL", "MC", "MB", "11", "FI", "HM", "??")] == [
        "15", "12", "MC", "MB", "ZZ", "ZZ", "HM", "ZZ"]
