"""837P and 837I writers: the files pass the pyx12 validator, the hierarchy and amounts are exact,
and values that would break the file are refused.

pyx12 4.0.0 validates with `pyx12.x12n_document.x12n_document`, the function behind its `x12valid`
command: it walks the file against the implementation guide map chosen by ISA12/GS01/GS08 (it ships
837.5010.X222.A1.xml for 005010X222A1 and 837Q3.I.5010.X223.A1.xml for 005010X223A2), checks
segment order, loop repeats, element lengths, code values, syntax rules and envelope counts, and
returns False when it found anything. Its JSON error report gives the messages to show on failure.
"""

from __future__ import annotations

import ast
import io
import json
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import pyx12.params
import pyx12.x12n_document

from formats.x12 import claim837
from formats.x12.claim837 import write_837i, write_837p
from formats.x12.model import Address, Claim, ClaimLine, Party, Patient, Payer, Receiver, Submitter, Subscriber
from formats.x12.tokenizer import Delimiters, read_interchanges
from formats.x12.writer import DelimiterInValueError, format_amount, render_segment, segment

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = ROOT / "tests" / "fixtures" / "x12"
CREATED_AT = datetime(2024, 3, 5, 10, 30, tzinfo=UTC)


# --- pyx12 ----------------------------------------------------------------------------------------


def pyx12_errors(text: str) -> list[str]:
    """Validate `text` with pyx12 as `x12valid` does; the error messages, [] when the file is valid."""
    report = io.StringIO()
    valid = pyx12.x12n_document.x12n_document(
        param=pyx12.params.params(),
        src_file=io.StringIO(text),
        fd_997=None,
        fd_html=None,
        fd_xmldoc=None,
        fd_json=report,
    )
    messages: list[str] = []

    def collect(node):
        if isinstance(node, dict):
            if "err_str" in node:
                messages.append(f"{node.get('err_cde')}: {node['err_str']}")
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    collect(json.loads(report.getvalue()))
    if not valid and not messages:
        messages.append("pyx12 rejected the file without a message")
    return messages


# --- data -----------------------------------------------------------------------------------------


def npi(base: str) -> str:
    """A valid NPI: the 9 digits of `base` and the Luhn check digit over 80840 + base."""
    total = 0
    for index, character in enumerate(reversed("80840" + base)):
        digit = int(character)
        if index % 2 == 0:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return base + str((10 - total % 10) % 10)


CLINIC_ADDRESS = Address("123 MAIN ST", "NASHVILLE", "TN", "37203-1234", line2="SUITE 100")
CLINIC = Party(organization_name="ACME CLINIC", npi=npi("123456789"), tax_id="12-3456789", address=CLINIC_ADDRESS,
               taxonomy_code="207Q00000X")
HOSPITAL = Party(organization_name="GENERAL HOSPITAL", npi=npi("555555555"), tax_id="987654321",
                 address=Address("900 CHURCH ST", "NASHVILLE", "TN", "372031000"))
DOCTOR = Party(last_name="SMITH", first_name="JANE", npi=npi("987654321"), taxonomy_code="207Q00000X")
REFERRER = Party(last_name="BROWN", first_name="ALAN", npi=npi("111222333"))
ATTENDING = Party(last_name="JONES", first_name="AL", npi=npi("444444444"), taxonomy_code="207R00000X")
COMMERCIAL = Payer("BLUE PAYER", "12345")
MEDICAID = Payer("TN MEDICAID", "TNMCD", Address("PO BOX 1", "NASHVILLE", "TN", "37202"))
JOHN = Subscriber("W123456789", "DOE", "JOHN", date(1980, 1, 2), "M", Address("1 ELM ST", "NASHVILLE", "TN", "37203"),
                  group_number="GRP1", claim_filing_indicator="CI")
MARY = Subscriber("M999", "ROE", "MARY", date(1975, 5, 6), "F", Address("2 OAK ST", "MEMPHIS", "TN", "38103"),
                  claim_filing_indicator="MC")
TIM = Patient("ROE", "TIM", date(2015, 3, 4), "M", Address("2 OAK ST", "MEMPHIS", "TN", "38103"), relationship="19")
SUBMITTER = Submitter("ACME CLINIC", "SUB123", "BILLING DESK", contact_phone="6155551234", contact_email="billing@acme.example")
RECEIVER = Receiver("CLEARINGHOUSE", "CH987")


def office_visit(**changes) -> Claim:
    """John's own visit: three lines with modifiers, a prior authorization, rendering and referring providers."""
    values = dict(
        patient_control_number="PCN001",
        total_charge=Decimal("305.75"),
        diagnoses=("J06.9", "R05.9", "Z23"),
        lines=[
            ClaimLine("99213", Decimal("125.50"), date(2024, 3, 1), modifiers=("25",), diagnosis_pointers=(1, 2),
                      line_control_number="PCN001-1"),
            ClaimLine("87880", Decimal("80.25"), date(2024, 3, 1), modifiers=("QW", "59"), line_control_number="PCN001-2"),
            ClaimLine("90686", Decimal("100.00"), date(2024, 3, 1), diagnosis_pointers=(3,), line_control_number="PCN001-3",
                      prior_authorization="LINEAUTH"),
        ],
        billing_provider=CLINIC,
        subscriber=JOHN,
        payer=COMMERCIAL,
        place_of_service="11",
        rendering_provider=DOCTOR,
        referring_provider=REFERRER,
        prior_authorization="AUTH1",
    )
    values.update(changes)
    return Claim(**values)


def dependent_correction() -> Claim:
    """Tim's visit under his mother Mary's Medicaid plan, replacing an earlier claim (frequency 7)."""
    return Claim(
        patient_control_number="PCN002",
        total_charge=Decimal("80"),
        diagnoses=("Z00.129",),
        lines=[ClaimLine("99393", Decimal("80"), date(2024, 3, 2), service_date_to=date(2024, 3, 2), line_control_number="PCN002-1")],
        billing_provider=CLINIC,
        subscriber=MARY,
        payer=MEDICAID,
        patient=TIM,
        place_of_service="11",
        frequency_code="7",
        payer_claim_control_number="PAYER123",
    )


def professional_claims() -> list[Claim]:
    return [office_visit(), dependent_correction()]


def outpatient_claim() -> Claim:
    return Claim(
        patient_control_number="IPCN1",
        total_charge=Decimal("1500.75"),
        diagnoses=("R07.9", "I10", "E11.9"),
        lines=[
            ClaimLine("99284", Decimal("1000"), date(2024, 3, 1), modifiers=("25",), revenue_code="0450", line_control_number="IPCN1-1"),
            ClaimLine("", Decimal("500.75"), date(2024, 3, 1), revenue_code="0250", units=Decimal("3"), line_control_number="IPCN1-2"),
        ],
        billing_provider=HOSPITAL,
        subscriber=JOHN,
        payer=COMMERCIAL,
        facility_type_code="13",
        statement_from=date(2024, 3, 1),
        statement_to=date(2024, 3, 1),
        admission_type_code="1",
        admission_source_code="7",
        patient_status_code="01",
        attending_provider=ATTENDING,
        prior_authorization="PA9",
    )


def inpatient_correction() -> Claim:
    return Claim(
        patient_control_number="IPCN2",
        total_charge=Decimal("9000.10"),
        diagnoses=("S72.001A", "W19.XXXA"),
        lines=[
            ClaimLine("", Decimal("9000.10"), date(2024, 2, 1), service_date_to=date(2024, 2, 4), revenue_code="0120",
                      units=Decimal("3")),
        ],
        billing_provider=HOSPITAL,
        subscriber=MARY,
        payer=MEDICAID,
        patient=TIM,
        facility_type_code="11",
        frequency_code="7",
        payer_claim_control_number="ORIG77",
        statement_from=date(2024, 2, 1),
        statement_to=date(2024, 2, 4),
        admission_date=date(2024, 2, 1),
        admission_type_code="1",
        admission_source_code="7",
        patient_status_code="01",
        admitting_diagnosis="S72.001A",
        attending_provider=ATTENDING,
        referring_provider=REFERRER,
    )


def elements(text: str, segment_id: str) -> list[list[str]]:
    """The elements of every `segment_id` segment, read back with the shared tokenizer."""
    [interchange] = read_interchanges(text)
    segments = [group.header for group in interchange.groups]
    segments += [seg for transaction in interchange.transactions for seg in transaction.segments]
    return [list(seg) for seg in segments if seg.id == segment_id]


def write_professional(claims: list[Claim], **options) -> str:
    return write_837p(claims, submitter=SUBMITTER, receiver=RECEIVER, control_number=42, created_at=CREATED_AT, **options)


# --- 837P -----------------------------------------------------------------------------------------


def test_837p_with_two_subscribers_a_dependent_and_a_correction_passes_pyx12():
    # given two subscribers, one the patient and one the mother of the patient, and a replacement claim
    # when
    text = write_professional(professional_claims())

    # then
    assert pyx12_errors(text) == []
    assert elements(text, "HL") == [
        ["HL", "1", "", "20", "1"],
        ["HL", "2", "1", "22", "0"],
        ["HL", "3", "1", "22", "1"],
        ["HL", "4", "3", "23", "0"],
    ]
    assert elements(text, "CLM") == [
        ["CLM", "PCN001", "305.75", "", "", "11:B:1", "Y", "A", "Y", "Y"],
        ["CLM", "PCN002", "80", "", "", "11:B:7", "Y", "A", "Y", "Y"],
    ]
    assert elements(text, "SBR") == [
        ["SBR", "P", "18", "GRP1", "", "", "", "", "", "CI"],
        ["SBR", "P", "", "", "", "", "", "", "", "MC"],
    ]
    assert elements(text, "REF") == [
        ["REF", "EI", "123456789"],
        ["REF", "G1", "AUTH1"],
        ["REF", "6R", "PCN001-1"],
        ["REF", "6R", "PCN001-2"],
        ["REF", "G1", "LINEAUTH"],
        ["REF", "6R", "PCN001-3"],
        ["REF", "F8", "PAYER123"],
        ["REF", "6R", "PCN002-1"],
    ]
    assert elements(text, "SV1") == [
        ["SV1", "HC:99213:25", "125.5", "UN", "1", "", "", "1:2"],
        ["SV1", "HC:87880:QW:59", "80.25", "UN", "1", "", "", "1"],
        ["SV1", "HC:90686", "100", "UN", "1", "", "", "3"],
        ["SV1", "HC:99393", "80", "UN", "1", "", "", "1"],
    ]
    assert elements(text, "HI") == [["HI", "ABK:J069", "ABF:R059", "ABF:Z23"], ["HI", "ABK:Z00129"]]
    assert elements(text, "PAT") == [["PAT", "19"]]


def test_837p_is_exactly_the_reviewed_file():
    # given the file a reader checked segment by segment against 005010X222A1
    expected = (FIXTURES / "claim_837p_two_subscribers.txt").read_text()

    # when
    text = write_professional(professional_claims(), line_breaks=True)

    # then
    assert text == expected


def test_the_pyx12_check_reports_a_broken_837():
    # given a valid file without the patient's demographics (DMG is required in 2010CA)
    text = write_professional(professional_claims(), line_breaks=True)
    broken = text.replace("DMG*D8*20150304*M~\n", "")

    # when
    errors = pyx12_errors(broken)

    # then
    assert any('Mandatory segment "Patient Demographic Information" (DMG) missing' in error for error in errors)


def test_envelope_counts_and_control_numbers():
    # when
    text = write_837p(professional_claims(), submitter=SUBMITTER, receiver=RECEIVER, control_number=1234,
                      created_at=CREATED_AT, usage_indicator="P")

    # then
    isa = text[: text.index("~") + 1]
    assert len(isa) == 106
    assert isa == "ISA*00*          *00*          *ZZ*SUB123         *ZZ*CH987          *240305*1030*^*00501*000001234*0*P*:~"
    assert elements(text, "GS") == [["GS", "HC", "SUB123", "CH987", "20240305", "1030", "1234", "X", "005010X222A1"]]
    assert elements(text, "ST") == [["ST", "837", "0001", "005010X222A1"]]
    [interchange] = read_interchanges(text)  # checks SE01, GE01, IEA01 and the control numbers
    assert len(interchange.transactions[0].segments) == int(interchange.transactions[0].trailer[1]) == 60
    assert text.endswith("GE*1*1234~IEA*1*000001234~")


def test_a_big_batch_is_split_into_transactions_and_levels(monkeypatch):
    # given limits made small so the split shows with few claims
    monkeypatch.setattr(claim837, "MAX_CLAIMS_PER_TRANSACTION", 3)
    monkeypatch.setattr(claim837, "MAX_CLAIMS_PER_HL", 2)
    claims = [office_visit(patient_control_number=f"PCN{number}") for number in range(4)]

    # when
    text = write_professional(claims)

    # then
    assert pyx12_errors(text) == []
    [interchange] = read_interchanges(text)
    assert [len([s for s in t.segments if s.id == "CLM"]) for t in interchange.transactions] == [3, 1]
    assert elements(text, "HL") == [
        ["HL", "1", "", "20", "1"], ["HL", "2", "1", "22", "0"], ["HL", "3", "1", "22", "0"],
        ["HL", "1", "", "20", "1"], ["HL", "2", "1", "22", "0"],
    ]


# --- 837I -----------------------------------------------------------------------------------------


def test_837i_with_two_claims_passes_pyx12():
    # given an outpatient visit and an inpatient stay replacing an earlier claim
    # when
    text = write_837i([outpatient_claim(), inpatient_correction()], submitter=SUBMITTER, receiver=RECEIVER,
                      control_number=43, created_at=CREATED_AT)

    # then
    assert pyx12_errors(text) == []
    assert elements(text, "ST") == [["ST", "837", "0001", "005010X223A2"]]
    assert elements(text, "CLM") == [
        ["CLM", "IPCN1", "1500.75", "", "", "13:A:1", "", "A", "Y", "Y"],
        ["CLM", "IPCN2", "9000.1", "", "", "11:A:7", "", "A", "Y", "Y"],
    ]
    assert elements(text, "CL1") == [["CL1", "1", "7", "01"], ["CL1", "1", "7", "01"]]
    assert elements(text, "DTP") == [
        ["DTP", "434", "RD8", "20240301-20240301"],
        ["DTP", "472", "D8", "20240301"],
        ["DTP", "472", "D8", "20240301"],
        ["DTP", "434", "RD8", "20240201-20240204"],
        ["DTP", "435", "D8", "20240201"],
        ["DTP", "472", "RD8", "20240201-20240204"],
    ]
    assert elements(text, "HI") == [
        ["HI", "ABK:R079"], ["HI", "ABF:I10", "ABF:E119"],
        ["HI", "ABK:S72001A"], ["HI", "ABJ:S72001A"], ["HI", "ABF:W19XXXA"],
    ]
    assert elements(text, "SV2") == [
        ["SV2", "0450", "HC:99284:25", "1000", "UN", "1"],
        ["SV2", "0250", "", "500.75", "UN", "3"],
        ["SV2", "0120", "", "9000.1", "UN", "3"],
    ]
    assert [row[:3] for row in elements(text, "NM1")][5:] == [
        ["NM1", "71", "1"], ["NM1", "IL", "1"], ["NM1", "PR", "2"], ["NM1", "QC", "1"], ["NM1", "71", "1"], ["NM1", "DN", "1"],
    ]
    assert outpatient_claim().type_of_bill == "131"


def test_837i_refuses_a_claim_without_statement_dates():
    with pytest.raises(ValueError, match=r"claim IPCN1: an institutional claim needs statement dates \(DTP\*434\)"):
        write_837i([Claim(**{**outpatient_claim().__dict__, "statement_to": None})], submitter=SUBMITTER,
                   receiver=RECEIVER, control_number=1, created_at=CREATED_AT)


# --- delimiters -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "delimiters",
    [Delimiters("|", ">", "{", "'"), Delimiters("|", "<", "^", "\n"), Delimiters("!", "\\", "`", "~")],
    ids=["pipe-quote", "pipe-newline", "bang-backslash"],
)
def test_non_default_delimiters_pass_pyx12(delimiters):
    # when
    text = write_professional(professional_claims(), delimiters=delimiters)

    # then
    assert pyx12_errors(text) == []
    assert text[3] == delimiters.element
    assert text[82] == delimiters.repetition
    assert text[104:106] == delimiters.component + delimiters.segment
    in_use = {delimiters.element, delimiters.component, delimiters.repetition, delimiters.segment}
    assert [character for character in "*:^~" if character not in in_use and character in text] == []
    assert [row[1] for row in elements(text, "SV1")] == [
        f"HC{delimiters.component}99213{delimiters.component}25",
        f"HC{delimiters.component}87880{delimiters.component}QW{delimiters.component}59",
        "HC" + delimiters.component + "90686",
        "HC" + delimiters.component + "99393",
    ]


def test_the_writer_refuses_a_delimiter_inside_a_value_naming_segment_and_element():
    # given a billing provider whose name holds the element separator
    claim = office_visit(billing_provider=Party(organization_name="SMITH*JONES CLINIC", npi=CLINIC.npi, tax_id=CLINIC.tax_id,
                                                address=CLINIC_ADDRESS))

    # when / then: NM1 of 2010AA is the 9th segment of the file (ISA, GS, ST, BHT, NM1, PER, NM1, HL, NM1)
    with pytest.raises(DelimiterInValueError) as refused:
        write_professional([claim])
    assert str(refused.value) == (
        "segment 9 (NM1), element NM103: value 'SMITH*JONES CLINIC' contains the element separator '*'"
    )
    assert (refused.value.segment_id, refused.value.element, refused.value.segment_number) == ("NM1", "NM103", 9)


def test_the_writer_refuses_a_component_separator_in_a_composite():
    claim = office_visit(lines=[ClaimLine("992:13", Decimal("305.75"), date(2024, 3, 1))])

    with pytest.raises(ValueError, match=r"\(SV1\), element SV101-2: value '992:13' contains the component separator ':'"):
        write_professional([claim])


def test_a_value_is_checked_against_the_delimiters_in_use():
    # given a name with "*", harmless when "|" separates elements, and one with "|"
    pipes = Delimiters("|", ">", "{", "'")

    # when / then
    write_professional([office_visit(patient_control_number="A*B")], delimiters=pipes)
    with pytest.raises(DelimiterInValueError, match=r"element CLM01: value 'A\|B' contains the element separator '\|'"):
        write_professional([office_visit(patient_control_number="A|B")], delimiters=pipes)
    with pytest.raises(DelimiterInValueError, match=r"element CLM01: value 'A\{B' contains the repetition separator"):
        write_professional([office_visit(patient_control_number="A{B")], delimiters=pipes)


def test_an_interchange_id_with_a_delimiter_is_refused():
    submitter = Submitter("ACME", "SUB^1", "DESK", contact_phone="6155551234")
    with pytest.raises(DelimiterInValueError, match=r"segment 1 \(ISA\), element ISA06: value 'SUB\^1 .*' contains the repetition separator"):
        write_837p(professional_claims(), submitter=submitter, receiver=RECEIVER, control_number=1, created_at=CREATED_AT)


def test_a_line_break_inside_a_value_is_refused():
    with pytest.raises(DelimiterInValueError, match=r"element N301: value '1 ELM ST\\nAPT 2' contains the control character '\\n'"):
        render_segment(segment("N3", "1 ELM ST\nAPT 2"))


def test_segments_drop_trailing_empty_elements_and_components():
    assert render_segment(segment("NM1", "IL", "1", "DOE", "", "", None, "")) == "NM1*IL*1*DOE~"
    assert render_segment(segment("SV1", ("HC", "99213", "", ""), "10", "", "", "", "", ("1", None))) == "SV1*HC:99213*10*****1~"
    assert render_segment(segment("HL", "1", "", "20", "1")) == "HL*1**20*1~"


# --- amounts --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "expected"),
    [("125.00", "125"), ("125.50", "125.5"), ("125.25", "125.25"), ("0.10", "0.1"), ("0.00", "0"), ("-5.00", "-5"),
     ("1E+3", "1000"), ("1000000.01", "1000000.01")],
)
def test_amounts_are_written_as_x12_decimals(amount, expected):
    assert format_amount(Decimal(amount)) == expected


def test_amounts_must_be_decimal_and_whole_cents():
    with pytest.raises(TypeError, match="amounts must be Decimal, got float"):
        format_amount(125.5)
    with pytest.raises(ValueError, match="amount 1.005 has fractions of a cent"):
        format_amount(Decimal("1.005"))


def test_amounts_in_the_837_are_to_the_cent():
    # when
    text = write_professional([office_visit()])

    # then: every charge reads back as the Decimal it was, to the cent
    [interchange] = read_interchanges(text)
    segments = interchange.transactions[0].segments
    [clm] = [s for s in segments if s.id == "CLM"]
    assert clm.required_amount(2) == Decimal("305.75")
    charges = [s.required_amount(2) for s in segments if s.id == "SV1"]
    assert charges == [Decimal("125.50"), Decimal("80.25"), Decimal("100.00")]
    assert sum(charges) == clm.required_amount(2)


def test_a_total_that_is_not_the_sum_of_the_lines_is_refused():
    with pytest.raises(ValueError, match="claim PCN001: total charge 305.74 is not the sum of the line charges 305.75"):
        write_professional([office_visit(total_charge=Decimal("305.74"))])


# --- claims the guide cannot carry ----------------------------------------------------------------


def test_a_correction_needs_the_payer_claim_control_number():
    with pytest.raises(ValueError, match=r"claim PCN001: frequency 7 \(correction\) needs the payer claim control number"):
        office_visit(frequency_code="7")


def test_a_diagnosis_pointer_must_point_into_the_diagnoses():
    claim = office_visit(lines=[ClaimLine("99213", Decimal("305.75"), date(2024, 3, 1), diagnosis_pointers=(4,))])

    with pytest.raises(ValueError, match=r"claim PCN001, line 1: diagnosis pointer 4 is not in 1..3"):
        write_professional([claim])


def test_the_billing_provider_needs_a_nine_digit_postal_code():
    provider = Party(organization_name="ACME", npi=CLINIC.npi, tax_id="123456789", address=Address("1 A ST", "NASHVILLE", "TN", "37203"))

    with pytest.raises(ValueError, match="the postal code must have 9 digits, got '37203'"):
        write_professional([office_visit(billing_provider=provider)])


def test_patient_control_number_is_at_most_38_characters():
    with pytest.raises(ValueError, match="patient control number must be 1 to 38 characters"):
        office_visit(patient_control_number="X" * 39)


# --- purity ---------------------------------------------------------------------------------------


def test_no_module_under_formats_imports_django():
    offenders = []
    for path in sorted((ROOT / "formats").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.relative_to(ROOT)}: {name}" for name in names if name.split(".")[0] in ("django", "rest_framework")]
    assert offenders == []
