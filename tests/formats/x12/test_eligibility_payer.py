"""The payer's side of eligibility: what write_270 asks reads back through read_270, and what write_271
answers reads back through parse_271 (pyx12 ships no 005010X279A1 map; see test_eligibility.py)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from formats.x12.eligibility import parse_271
from formats.x12.eligibility_payer import Coverage, EligibilityAnswer, read_270, write_271
from formats.x12.errors import X12Error
from formats.x12.tokenizer import Delimiters, read_interchanges
from tests.formats.x12.test_claim837 import professional_claims as claims
from tests.formats.x12.test_claim837 import write_professional
from tests.formats.x12.test_eligibility import CREATED_AT, fixture, inquiry

GOLD = Coverage(active=True, plan_name="GOLD PPO PLAN", copay=Decimal("25"), deductible=Decimal("1500"), coverage_start=date(2024, 1, 1),
                coverage_end=date(2024, 12, 31))


def answer(answers, **options) -> str:
    return write_271(answers, sender_id="CH987", receiver_id="SUB123", control_number=777, created_at=CREATED_AT, **options)


def test_the_270_reads_back_as_the_inquiry_it_asks():
    # given the reviewed inquiry: John, on 5 March 2024, about plan coverage and office visits
    text = fixture("eligibility_270_inquiry.txt")

    # when
    (asked,) = read_270(text)

    # then
    assert (asked.payer_id, asked.payer_name, asked.provider_npi, asked.provider_name) == ("12345", "BLUE PAYER", "1234567893", "ACME CLINIC")
    assert (asked.member_id, asked.last_name, asked.first_name, asked.birth_date, asked.sex, asked.group_number) == (
        "W123456789", "DOE", "JOHN", date(1980, 1, 2), "M", "GRP1")
    assert (asked.service_date, asked.service_types) == (date(2024, 3, 5), ("30", "98"))
    assert (asked.trace_number, asked.trace_originator, asked.reference) == ("TRACE0001", "1123456789", "TRACE0001")
    assert (asked.interchange_sender_id, asked.interchange_receiver_id, asked.transaction_control_number) == ("SUB123", "CH987", "0001")


def test_active_coverage_with_copay_and_deductible_round_trips():
    # given
    (asked,) = read_270(inquiry())

    # when
    response = parse_271(answer([EligibilityAnswer(inquiry=asked, coverage=GOLD)]))

    # then
    (member,) = response.members
    assert member.is_active and member.trace_numbers == ["TRACE0001"]
    assert (member.member_id, member.last_name, member.first_name, member.birth_date) == ("W123456789", "DOE", "JOHN", date(1980, 1, 2))
    assert (member.payer_id, member.provider_id) == ("12345", "1234567893")
    assert [(b.code, b.service_types, b.plan_name) for b in member.active_benefits] == [("1", ("30",), "GOLD PPO PLAN"),
                                                                                       ("1", ("98",), "GOLD PPO PLAN")]
    assert [(b.service_types, b.time_period, b.amount) for b in member.copays] == [(("98",), "27", Decimal("25.00"))]
    assert [(b.service_types, b.time_period, b.amount) for b in member.deductibles] == [(("30",), "23", Decimal("1500.00"))]
    assert (member.dates["346"].start, member.dates["347"].end) == (date(2024, 1, 1), date(2024, 12, 31))
    assert member.rejections == [] and response.rejections == []


def test_inactive_coverage_and_an_unknown_member_round_trip():
    # given two inquiries answered in one 271
    (asked,) = read_270(inquiry())
    inactive = Coverage(active=False, plan_name="OLD BASIC PLAN", coverage_end=date(2023, 12, 31), copay=Decimal("10"))

    # when
    response = parse_271(answer([EligibilityAnswer(inquiry=asked, coverage=inactive), EligibilityAnswer(inquiry=asked, coverage=None)]))

    # then
    lapsed, unknown = response.members
    assert not lapsed.is_active
    assert [(b.code, b.plan_name) for b in lapsed.benefits] == [("6", "OLD BASIC PLAN"), ("6", "OLD BASIC PLAN")]
    assert lapsed.copays == [] and lapsed.dates["347"].end == date(2023, 12, 31)
    assert not unknown.is_active and unknown.benefits == []
    assert [(r.loop, r.valid_request, r.reason_code, r.reason, r.follow_up_action_code) for r in unknown.rejections] == [
        ("2100C", True, "75", "Subscriber/Insured Not Found", "C")]
    assert unknown.trace_numbers == ["TRACE0001"] and unknown.member_id == "W123456789"


def test_the_payer_s_record_of_the_member_is_answered():
    (asked,) = read_270(inquiry())
    coverage = Coverage(active=True, plan_name="GOLD", last_name="DOE-SMITH", first_name="JONATHAN", birth_date=date(1980, 1, 3))

    (member,) = parse_271(answer([EligibilityAnswer(inquiry=asked, coverage=coverage)])).members

    assert (member.last_name, member.first_name, member.birth_date) == ("DOE-SMITH", "JONATHAN", date(1980, 1, 3))


def test_other_delimiters_round_trip_both_ways():
    # given an inquiry written with | > ! and newline
    delimiters = Delimiters(element="|", component=">", repetition="!", segment="\n")
    (asked,) = read_270(inquiry(delimiters=delimiters, service_types=("30", "33")))

    # when
    text = answer([EligibilityAnswer(inquiry=asked, coverage=GOLD)], delimiters=delimiters)

    # then
    assert "EB|B|IND|33|||27|25\n" in text
    (member,) = parse_271(text).members
    assert member.is_active and [b.service_types for b in member.copays] == [("33",)]


def test_inquiries_of_one_270_transaction_are_answered_in_one_271_transaction():
    # given a 270 asking about two subscribers under one provider (written by hand from the guide)
    text = fixture("eligibility_270_inquiry.txt").replace(
        "EQ*98~\nSE*15*0001~",
        "EQ*98~\nHL*4*2*22*0~\nTRN*1*TRACE0002*1123456789~\nNM1*IL*1*SMITH*ANNA****MI*X000111~\nDMG*D8*19900101*F~\nEQ*30^33~\nSE*20*0001~",
    )

    # when
    first, second = read_270(text)
    reply = answer([EligibilityAnswer(inquiry=first, coverage=GOLD), EligibilityAnswer(inquiry=second, coverage=None)])

    # then
    assert (second.member_id, second.trace_number, second.service_types, second.service_date) == ("X000111", "TRACE0002", ("30", "33"), None)
    [interchange] = read_interchanges(reply)
    assert len(interchange.transactions) == 1
    members = parse_271(reply).members
    assert [(m.member_id, m.trace_numbers, m.is_active, [r.reason_code for r in m.rejections]) for m in members] == [
        ("W123456789", ["TRACE0001"], True, []), ("X000111", ["TRACE0002"], False, ["75"])]


@pytest.mark.parametrize(("text", "message"), [
    (lambda: write_professional(claims()), "functional group 'HC' is not eligibility inquiries"),
    (lambda: fixture("eligibility_270_inquiry.txt").replace("NM1*IL*1*DOE*JOHN****MI*W123456789~\n", "").replace("SE*15", "SE*14"),
     "has no subscriber name"),
    (lambda: fixture("eligibility_270_inquiry.txt").replace("HL*3*2*22*0", "HL*3*2*23*0"), "dependent inquiries"),
    (lambda: fixture("eligibility_270_inquiry.txt").replace("DTP*291*D8*20240305", "DTP*291*D8*20240231"), "not a date"),
    (lambda: fixture("eligibility_270_inquiry.txt").replace("HL*3*2*22*0", "HL*3*1*22*0"), "HL02 '1' must be the id of an earlier level 21"),
    (lambda: "not x12 at all", "an X12 interchange starts with ISA"),
])
def test_a_270_that_cannot_be_answered_is_refused_naming_the_segment(text, message):
    with pytest.raises(X12Error, match=message):
        read_270(text())


def test_a_271_needs_answers():
    with pytest.raises(ValueError, match="at least one inquiry"):
        answer([])
