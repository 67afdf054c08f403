"""270 inquiries and 271 responses (005010X279A1).

pyx12 4.0.0 ships no 5010 map for the 270/271 (only 004010X092A1; the 5010 entries in its
maps.xml are commented out), so the 270 is checked against a reviewed file and read back with the
shared tokenizer, which checks the envelope counts and control numbers. A test below fails the day
pyx12 ships the map, as a reminder to validate with it. The 271 fixtures were written by hand from
the guide, not produced by our writer.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import pyx12.map_index

from formats.x12.eligibility import DateRange, RelatedEntity, parse_271, write_270
from formats.x12.errors import X12Error
from formats.x12.model import Address, Party, Payer, Receiver, Submitter, Subscriber
from formats.x12.tokenizer import Delimiters, read_interchanges
from formats.x12.writer import DelimiterInValueError

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "x12"
CREATED_AT = datetime(2024, 3, 5, 10, 30, tzinfo=UTC)

CLINIC = Party(organization_name="ACME CLINIC", npi="1234567893", tax_id="12-3456789",
               address=Address("123 MAIN ST", "NASHVILLE", "TN", "372031234"))
PAYER = Payer("BLUE PAYER", "12345")
JOHN = Subscriber("W123456789", "DOE", "JOHN", date(1980, 1, 2), "M", group_number="GRP1")
SUBMITTER = Submitter("ACME CLINIC", "SUB123", "BILLING DESK", contact_phone="6155551234")
RECEIVER = Receiver("CLEARINGHOUSE", "CH987")


def inquiry(**changes) -> str:
    values = dict(
        subscriber=JOHN,
        payer=PAYER,
        provider=CLINIC,
        service_date=date(2024, 3, 5),
        service_types=("30", "98"),
        trace_number="TRACE0001",
        submitter=SUBMITTER,
        receiver=RECEIVER,
        control_number=44,
        created_at=CREATED_AT,
    )
    values.update(changes)
    return write_270(**values)


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


# --- 270 ------------------------------------------------------------------------------------------


def test_270_is_exactly_the_reviewed_inquiry():
    # given the inquiry a reader checked against 005010X279A1: payer, provider, subscriber with the
    # trace number, the date of service and one EQ loop per service type
    expected = fixture("eligibility_270_inquiry.txt")

    # when
    text = inquiry(line_breaks=True)

    # then
    assert text == expected


def test_270_envelope_reads_back_with_its_counts():
    # when
    text = inquiry()

    # then
    [interchange] = read_interchanges(text)  # checks SE01, GE01, IEA01 and the control numbers
    [group] = interchange.groups
    assert (group.functional_id, group.version, group.control_number) == ("HS", "005010X279A1", "44")
    [transaction] = interchange.transactions
    assert transaction.transaction_set == "270"
    assert [list(seg) for seg in transaction.body if seg.id in ("HL", "TRN", "EQ", "DTP")] == [
        ["HL", "1", "", "20", "1"],
        ["HL", "2", "1", "21", "1"],
        ["HL", "3", "2", "22", "0"],
        ["TRN", "1", "TRACE0001", "1123456789"],
        ["DTP", "291", "D8", "20240305"],
        ["EQ", "30"],
        ["EQ", "98"],
    ]
    assert interchange.control_number == "000000044"


def test_270_with_non_default_delimiters():
    # given
    delimiters = Delimiters("|", ">", "{", "'")

    # when
    text = inquiry(delimiters=delimiters)

    # then
    [interchange] = read_interchanges(text)
    assert interchange.delimiters == delimiters
    assert [list(seg) for seg in interchange.transactions[0].body if seg.id == "NM1"][0] == [
        "NM1", "PR", "2", "BLUE PAYER", "", "", "", "", "PI", "12345",
    ]


def test_270_refuses_a_delimiter_in_the_member_id():
    with pytest.raises(DelimiterInValueError, match=r"\(NM1\), element NM109: value 'W12\*3' contains the element separator"):
        inquiry(subscriber=Subscriber("W12*3", "DOE", "JOHN"))


def test_270_needs_a_service_type():
    with pytest.raises(ValueError, match="a 270 needs at least one service type"):
        inquiry(service_types=())


def test_pyx12_ships_no_5010_eligibility_map():
    # When this fails, pyx12 can validate 005010X279A1: add the 270 to the pyx12 checks.
    assert pyx12.map_index.map_index(None).get_filename("00501", "005010X279A1", "HS") is None


# --- 271 ------------------------------------------------------------------------------------------


def test_271_active_coverage_with_copay_coinsurance_deductible_and_an_inactive_plan():
    # when
    response = parse_271(fixture("eligibility_271_coverage.txt"))

    # then
    assert response.control_number == "000000777"
    assert response.rejections == []
    assert [(m.level, m.last_name, m.first_name) for m in response.members] == [
        ("subscriber", "DOE", "JOHN"), ("dependent", "DOE", "JANE"), ("subscriber", "SMITH", "ANNA"),
    ]
    john = response.members[0]
    assert (john.payer_name, john.payer_id, john.provider_name, john.provider_id) == (
        "BLUE PAYER", "12345", "ACME CLINIC", "1234567893",
    )
    assert (john.member_id, john.middle_name, john.birth_date, john.sex) == ("W123456789", "Q", date(1980, 1, 2), "M")
    assert john.trace_numbers == ["TRACE0001"]
    assert john.references == {"6P": "GRP1"}
    assert john.dates == {"346": DateRange(date(2024, 1, 1), date(2024, 1, 1))}
    assert john.is_active

    [active] = john.active_benefits
    assert (active.description, active.coverage_level, active.service_types, active.insurance_type, active.plan_name) == (
        "Active Coverage", "FAM", ("30", "1", "33"), "PR", "GOLD PPO PLAN",
    )
    assert active.dates == {"291": DateRange(date(2024, 1, 1), date(2024, 12, 31))}

    [copay] = john.copays
    assert (copay.service_types, copay.time_period, copay.amount, copay.in_network, copay.authorization_required) == (
        ("98",), "27", Decimal("25.00"), "Y", "N",
    )
    assert copay.messages == ["COPAY APPLIES PER OFFICE VISIT", "SPECIALIST COPAY IS HIGHER"]

    [coinsurance] = john.coinsurance
    assert (coinsurance.amount, coinsurance.percent) == (None, Decimal("0.2"))

    assert [(d.time_period, d.amount) for d in john.deductibles] == [("23", Decimal("1500.00")), ("29", Decimal("350.55"))]

    [inactive] = john.inactive_benefits
    assert (inactive.description, inactive.insurance_type, inactive.plan_name, inactive.dates) == (
        "Inactive", "MC", "OLD BASIC PLAN", {"347": DateRange(date(2023, 12, 31), date(2023, 12, 31))},
    )

    [primary_care] = [b for b in john.benefits if b.code == "L"]
    assert primary_care.related_entities == [RelatedEntity("P3", "WELBY", "MARCUS", "XX", "1598765433")]


def test_271_dependent_and_rejected_subscriber():
    # when
    response = parse_271(fixture("eligibility_271_coverage.txt"))

    # then
    _, jane, anna = response.members
    assert (jane.relationship, jane.birth_date, jane.member_id, jane.is_active) == ("19", date(2010, 6, 15), "", True)
    assert anna.benefits == []
    assert not anna.is_active
    [rejection] = anna.rejections
    assert (rejection.loop, rejection.valid_request, rejection.reason_code, rejection.follow_up_action_code) == (
        "2100C", True, "72", "C",
    )
    assert rejection.reason == "Invalid/Missing Subscriber/Insured ID"
    assert rejection.follow_up_action == "Please Correct and Resubmit"


def test_271_amounts_are_decimal_to_the_cent():
    response = parse_271(fixture("eligibility_271_coverage.txt"))

    amounts = [b.amount for b in response.members[0].benefits if b.amount is not None]

    assert amounts == [Decimal("25.00"), Decimal("1500.00"), Decimal("350.55")]
    assert [str(amount) for amount in amounts] == ["25.00", "1500.00", "350.55"]
    assert all(isinstance(amount, Decimal) for amount in amounts)


def test_271_with_other_delimiters_two_transactions_and_a_payer_rejection():
    # given "|" elements, ">" components, "{" repetitions, "'" terminators and line breaks
    # when
    response = parse_271(fixture("eligibility_271_alternate_delimiters.txt"))

    # then
    [rejection] = response.rejections
    assert (rejection.loop, rejection.valid_request, rejection.reason, rejection.follow_up_action) == (
        "2100A", False, "Unable to Respond at Current Time", "Resubmission Allowed",
    )
    [john] = response.members
    assert john.trace_numbers == ["TRACE0003"]
    assert [(b.code, b.service_types, b.plan_name, b.amount) for b in john.benefits] == [
        ("1", ("30", "98"), "SILVER HMO", None),
        ("B", ("98",), "", Decimal("40.10")),
    ]


def test_271_with_a_wrong_segment_count_is_refused():
    text = fixture("eligibility_271_coverage.txt").replace("SE*40*0001~", "SE*39*0001~")

    with pytest.raises(X12Error, match=r"^segment 42 \(SE\), element SE01: SE01 says 39 segments from ST through SE, found 40$"):
        parse_271(text)


def test_271_with_a_bad_date_names_the_segment_and_element():
    text = fixture("eligibility_271_coverage.txt").replace("DTP*291*RD8*20240101-20241231~", "DTP*291*RD8*20240101-20241331~")

    with pytest.raises(X12Error, match=r"^segment 18 \(DTP\), element DTP03: '20240101-20241331' is not a date range"):
        parse_271(text)


def test_271_with_fractions_of_a_cent_is_refused():
    text = fixture("eligibility_271_coverage.txt").replace("*27*25****N*Y~", "*27*25.005****N*Y~")

    with pytest.raises(X12Error, match=r"^segment 19 \(EB\), element EB07: '25.005' is not an amount in whole cents$"):
        parse_271(text)


def test_a_file_that_is_not_a_271_is_refused():
    with pytest.raises(X12Error, match=r"^segment 3 \(ST\), element ST01: expected a 271 transaction set, got '270'$"):
        parse_271(inquiry())
