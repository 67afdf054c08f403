"""The 837 reader (the clearinghouse's side): what our writer and the guides produce reads back exactly,
and a file that breaks the guide is refused naming segment, position, element and the 999 codes."""

from __future__ import annotations

import pickle
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from formats.x12 import claim837
from formats.x12.claim837 import write_837i
from formats.x12.claim837_reader import Claim837Error, SubmittedPerson, read_837
from formats.x12.errors import X12Error
from formats.x12.model import Address
from formats.x12.tokenizer import Delimiters
from tests.formats.x12.test_claim837 import (
    CLINIC,
    CREATED_AT,
    HOSPITAL,
    RECEIVER,
    SUBMITTER,
    inpatient_correction,
    office_visit,
    outpatient_claim,
    professional_claims,
    write_professional,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "x12"


def replace_segment(text: str, old: str, new: str) -> str:
    """`text` with the one segment `old` (without its terminator) changed to `new` ("" drops it)."""
    assert text.count(old + "~") == 1, old
    return text.replace(old + "~", new + "~" if new else "")


def read_error(text: str) -> Claim837Error:
    with pytest.raises(Claim837Error) as caught:
        read_837(text)
    return caught.value


# --- reading what the writer and the guides produce -----------------------------------------------------


def test_837p_reads_back_every_claim_with_its_parties_lines_and_place():
    # given the reviewed 837P: John's own visit and his stepson Tim's replacement claim under Mary's Medicaid
    text = (FIXTURES / "claim_837p_two_subscribers.txt").read_text()

    # when
    visit, correction = read_837(text)

    # then
    assert (visit.claim_type, visit.implementation, visit.transaction_control_number) == ("P", "005010X222A1", "0001")
    assert (visit.group_control_number, visit.interchange_control_number) == ("42", "000000042")
    assert (visit.submitter_id, visit.submitter_name, visit.receiver_id) == ("SUB123", "ACME CLINIC", "CH987")
    assert (visit.billing_provider_name, visit.billing_provider_npi, visit.billing_provider_tax_id) == ("ACME CLINIC", CLINIC.npi, "123456789")
    assert (visit.payer_id, visit.payer_name, visit.payer_address) == ("12345", "BLUE PAYER", None)
    assert (visit.payer_responsibility, visit.claim_filing_indicator, visit.group_number) == ("P", "CI", "GRP1")
    assert visit.subscriber == SubmittedPerson(last_name="DOE", first_name="JOHN", member_id="W123456789", birth_date=date(1980, 1, 2),
                                               sex="M", relationship="18")
    assert visit.patient is None
    assert (visit.patient_control_number, visit.total_charge) == ("PCN001", Decimal("305.75"))
    assert (visit.facility_code, visit.facility_code_qualifier, visit.frequency_code) == ("11", "B", "1")
    assert (visit.prior_authorization, visit.payer_claim_control_number) == ("AUTH1", "")
    assert visit.diagnoses == ["J069", "R059", "Z23"]
    assert (visit.segment_number, visit.position) == (21, 19)
    assert [(line.number, line.procedure_qualifier, line.procedure_code, line.modifiers, line.charge, line.unit_basis, line.units,
             line.diagnosis_pointers, line.service_date, line.control_number) for line in visit.lines] == [
        (1, "HC", "99213", ["25"], Decimal("125.50"), "UN", Decimal(1), [1, 2], date(2024, 3, 1), "PCN001-1"),
        (2, "HC", "87880", ["QW", "59"], Decimal("80.25"), "UN", Decimal(1), [1], date(2024, 3, 1), "PCN001-2"),
        (3, "HC", "90686", [], Decimal("100.00"), "UN", Decimal(1), [3], date(2024, 3, 1), "PCN001-3"),
    ]
    assert (correction.payer_id, correction.claim_filing_indicator) == ("TNMCD", "MC")
    assert correction.payer_address == Address("PO BOX 1", "NASHVILLE", "TN", "37202")
    assert correction.subscriber.member_id == "M999" and correction.subscriber.relationship == ""
    assert correction.patient == SubmittedPerson(last_name="ROE", first_name="TIM", birth_date=date(2015, 3, 4), sex="M", relationship="19")
    assert (correction.frequency_code, correction.payer_claim_control_number, correction.is_correction) == ("7", "PAYER123", True)
    assert correction.lines[0].service_date == correction.lines[0].service_date_to == date(2024, 3, 2)


def test_what_write_837p_writes_reads_back_with_the_same_values():
    # given
    claims = professional_claims()

    # when
    read = read_837(write_professional(claims))

    # then
    for written, submitted in zip(claims, read, strict=True):
        assert submitted.patient_control_number == written.patient_control_number
        assert submitted.total_charge == written.total_charge
        assert submitted.diagnoses == [code.replace(".", "") for code in written.diagnoses]
        assert [line.charge for line in submitted.lines] == [line.charge for line in written.lines]
        assert [line.control_number for line in submitted.lines] == [line.line_control_number for line in written.lines]


def test_837i_with_other_delimiters_and_line_breaks_reads_back():
    # given two institutional claims written with | > ! and a newline terminator
    delimiters = Delimiters(element="|", component=">", repetition="!", segment="\n")
    text = write_837i([outpatient_claim(), inpatient_correction()], submitter=SUBMITTER, receiver=RECEIVER, control_number=7,
                      created_at=CREATED_AT, delimiters=delimiters)

    # when
    outpatient, inpatient = read_837(text)

    # then
    assert (outpatient.claim_type, outpatient.implementation) == ("I", "005010X223A2")
    assert (outpatient.facility_code, outpatient.facility_code_qualifier, outpatient.frequency_code, outpatient.type_of_bill) == (
        "13", "A", "1", "131")
    assert outpatient.billing_provider_npi == HOSPITAL.npi and outpatient.billing_provider_tax_id == "987654321"
    assert (outpatient.statement_from, outpatient.statement_to) == (date(2024, 3, 1), date(2024, 3, 1))
    assert [(line.revenue_code, line.procedure_qualifier, line.procedure_code, line.modifiers, line.units, line.unit_basis, line.charge)
            for line in outpatient.lines] == [
        ("0450", "HC", "99284", ["25"], Decimal(1), "UN", Decimal("1000.00")),
        ("0250", "", "", [], Decimal(3), "UN", Decimal("500.75")),
    ]
    assert (inpatient.type_of_bill, inpatient.payer_claim_control_number) == ("117", "ORIG77")
    assert (inpatient.diagnoses, inpatient.admitting_diagnosis) == (["S72001A", "W19XXXA"], "S72001A")
    assert inpatient.patient is not None and inpatient.patient.first_name == "TIM"
    assert (inpatient.lines[0].service_date, inpatient.lines[0].service_date_to) == (date(2024, 2, 1), date(2024, 2, 4))


def test_claims_in_several_transaction_sets_know_theirs(monkeypatch):
    # given a batch the writer splits into three transaction sets
    monkeypatch.setattr(claim837, "MAX_CLAIMS_PER_TRANSACTION", 1)
    claims = [office_visit(patient_control_number=f"PCN{n}") for n in range(3)]

    # when
    read = read_837(write_professional(claims))

    # then
    assert [(c.patient_control_number, c.transaction_control_number, c.position) for c in read] == [
        ("PCN0", "0001", 19), ("PCN1", "0002", 19), ("PCN2", "0003", 19)]


# --- refusals -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("old", "new", "segment_id", "element", "position", "segment_code", "element_code", "loop"), [
    # an amount that is not one
    ("CLM*PCN001*305.75***11:B:1*Y*A*Y*Y", "CLM*PCN001*30x5.75***11:B:1*Y*A*Y*Y", "CLM", "CLM02", 19, "8", "6", "2300"),
    # the subscriber without a member id
    ("NM1*IL*1*DOE*JOHN****MI*W123456789", "NM1*IL*1*DOE*JOHN****MI", "NM1", "NM109", 14, "8", "1", "2010BA"),
    # a procedure code qualifier the guide does not know
    ("SV1*HC:87880:QW:59*80.25*UN*1***1", "SV1*XX:87880:QW:59*80.25*UN*1***1", "SV1", "SV101-1", 30, "8", "7", "2400"),
    # a claim whose total is not the sum of its lines
    ("CLM*PCN001*305.75***11:B:1*Y*A*Y*Y", "CLM*PCN001*305.76***11:B:1*Y*A*Y*Y", "CLM", "CLM02", 19, "8", "I12", "2300"),
    # a diagnosis pointer past the diagnoses
    ("SV1*HC:90686*100*UN*1***3", "SV1*HC:90686*100*UN*1***4", "SV1", "SV107-1", 34, "8", "I12", "2400"),
    # an 837I frequency qualifier in an 837P
    ("CLM*PCN002*80***11:B:7*Y*A*Y*Y", "CLM*PCN002*80***11:A:7*Y*A*Y*Y", "CLM", "CLM05-2", 53, "8", "7", "2300"),
    # an unknown segment, and one that is no segment id at all
    ("REF*6R*PCN001-1", "ZZZ*1", "ZZZ", "", 28, "2", "", "2400"),
    ("REF*6R*PCN001-1", "zz*1", "zz", "", 28, "1", "", "2400"),
    # a line number out of sequence
    ("LX*2", "LX*3", "LX", "LX01", 29, "8", "I12", "2400"),
    # a patient level whose parent is not a subscriber level
    ("HL*4*3*23*0", "HL*4*1*23*0", "HL", "HL02", 47, "8", "I12", "2000C"),
    # a control character (damage in transit: no X12 character set has one)
    ("NM1*PR*2*BLUE PAYER*****PI*12345", "NM1*PR*2*BLUE\x1ePAYER*****PI*12345", "NM1", "NM103", 18, "8", "6", "2010BB"),
    # a bad date of service
    ("DTP*472*D8*20240302", "DTP*472*D8*20240231", "DTP", "DTP03", 58, "8", "8", "2400"),
])
def test_a_broken_837p_is_refused_naming_segment_element_and_codes(old, new, segment_id, element, position, segment_code, element_code,
                                                                   loop):
    # given the reviewed 837P with one segment broken
    text = replace_segment((FIXTURES / "claim_837p_two_subscribers.txt").read_text().replace("~\n", "~"), old, new)

    # when
    error = read_error(text)

    # then
    assert (error.segment_id, error.element, error.position, error.segment_code, error.element_code, error.loop_id) == (
        segment_id, element, position, segment_code, element_code, loop)
    assert error.segment_number == position + 2  # ISA and GS come before the ST
    assert str(error).startswith(f"segment {position + 2} ({segment_id})" + (f", element {element}:" if element else ":"))
    assert error.transaction_control_number == "0001"


@pytest.mark.parametrize(("dropped", "missing", "position", "loop"), [
    ("DTP*472*D8*20240301~REF*6R*PCN001-2", "DTP", 32, "2400"),  # line 2's date, noticed when line 3 starts (LX at 32)
    ("HI*ABK:J069*ABF:R059*ABF:Z23", "HI", 24, "2300"),  # the diagnoses, noticed at the claim's first LX
    ("REF*F8*PAYER123", "REF", 59, "2300"),  # the claim a replacement replaces, noticed at SE
    ("REF*EI*123456789", "REF", 11, "2010AA"),  # the billing provider's tax id, noticed at the next HL
])
def test_a_missing_required_segment_is_named_where_it_was_noticed(dropped, missing, position, loop):
    # given the reviewed 837P without one segment (and SE01 counting one fewer)
    text = (FIXTURES / "claim_837p_two_subscribers.txt").read_text().replace("~\n", "~").replace("SE*60*0001", "SE*59*0001")
    text = replace_segment(text, dropped, dropped.partition("~")[2])  # "A~B": drop A, keep B

    # when
    error = read_error(text)

    # then
    assert (error.segment_id, error.segment_code, error.loop_id, error.element, error.position) == (missing, "3", loop, "", position)
    assert error.segment_number == position + 2


def test_a_transaction_set_of_another_guide_is_refused_at_st03():
    text = write_professional(professional_claims()).replace("*005010X222A1~", "*005010X279A1~")

    error = read_error(text)

    assert (error.segment_id, error.element, error.element_code) == ("ST", "ST03", "7")


def test_an_envelope_that_does_not_add_up_is_an_x12_error():
    text = write_professional(professional_claims()).replace("SE*60*0001", "SE*61*0001")

    with pytest.raises(X12Error, match=r"segment 62 \(SE\), element SE01: SE01 says 61"):
        read_837(text)


def test_the_error_keeps_its_999_details_through_pickling():
    error = read_error(replace_segment(write_professional(professional_claims()), "CLM*PCN001*305.75***11:B:1*Y*A*Y*Y",
                                       "CLM*PCN001*x***11:B:1*Y*A*Y*Y"))

    copy = pickle.loads(pickle.dumps(error))

    assert (copy.segment_number, copy.segment_id, copy.element, copy.position, copy.loop_id, copy.element_code, copy.bad_data,
            copy.patient_control_number, str(copy)) == (
        error.segment_number, "CLM", "CLM02", 19, "2300", "6", "x", "PCN001", str(error))
