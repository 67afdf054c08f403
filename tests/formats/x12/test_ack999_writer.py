"""The 999 writer: what it writes passes pyx12 (which ships the 005010X231A1 map) and reads back
through parse_999 with every verdict, segment error, element error and count."""

from __future__ import annotations

import pytest

from formats.x12.ack999 import ElementError, SegmentError, parse_999
from formats.x12.ack999_writer import ElementNote, GroupResponse, SegmentNote, TransactionResponse, write_999
from formats.x12.tokenizer import Delimiters
from formats.x12.writer import DelimiterInValueError
from tests.formats.x12.test_claim837 import CREATED_AT, pyx12_errors

ACCEPTED = TransactionResponse(transaction_set="837", control_number="0001", implementation="005010X222A1")
REJECTED = TransactionResponse(
    transaction_set="837", control_number="0002", implementation="005010X222A1",
    segments=(
        SegmentNote(segment_id="NM1", position=22, loop_id="2010", code="8", business_unit=("CLM01", "PCN5002"),
                    elements=(ElementNote(position=9, data_element_reference="67", code="1"),)),
        SegmentNote(segment_id="SV1", position=31, loop_id="2400", code="8", business_unit=("CLM01", "PCN5002"),
                    elements=(ElementNote(position=1, component_position=2, data_element_reference="234", code="7", bad_data="9921X"),)),
    ),
)
NOTED = TransactionResponse(transaction_set="837", control_number="0003", implementation="005010X222A1", status="E",
                            segments=(SegmentNote(segment_id="REF", position=40, loop_id="2300", code="I4"),))


def write(groups, **options) -> str:
    return write_999(groups, sender_id="CLEARINGHOUSE", receiver_id="SWITCHBOARD", control_number=201, created_at=CREATED_AT, **options)


def test_a_partially_accepted_group_passes_pyx12_and_reads_back_exactly():
    # given three transaction sets: accepted, rejected for two segments, accepted with a note
    group = GroupResponse(functional_id="HC", group_control_number="17", version="005010X222A1", transactions=(ACCEPTED, REJECTED, NOTED))

    # when
    text = write([group], line_breaks=True)

    # then
    assert pyx12_errors(text) == []
    (ack,) = parse_999(text)
    assert (ack.functional_id, ack.group_control_number, ack.version, ack.group_status) == ("HC", "17", "005010X222A1", "P")
    assert (ack.transactions_included, ack.transactions_received, ack.transactions_accepted) == (3, 3, 2)
    assert [(t.control_number, t.status, t.error_codes) for t in ack.transactions] == [("0001", "A", []), ("0002", "R", ["5"]),
                                                                                      ("0003", "E", ["5"])]
    assert ack.transactions[1].segment_errors == [
        SegmentError(segment_id="NM1", position=22, loop_id="2010", code="8",
                     element_errors=[ElementError(position=9, data_element_reference="67", code="1")], context=[["CLM01:PCN5002"]]),
        SegmentError(segment_id="SV1", position=31, loop_id="2400", code="8",
                     element_errors=[ElementError(position=1, component_position=2, data_element_reference="234", code="7", bad_data="9921X")],
                     context=[["CLM01:PCN5002"]]),
    ]
    assert text.splitlines()[2:4] == ["ST*999*0001*005010X231A1~", "AK1*HC*17*005010X222A1~"]


@pytest.mark.parametrize(("transactions", "error_codes", "expected"), [
    ((ACCEPTED,), (), ("A", 1, 1, 1)),
    ((ACCEPTED, NOTED), (), ("E", 2, 2, 2)),
    ((REJECTED,), (), ("R", 1, 1, 0)),
    ((ACCEPTED, REJECTED), (), ("P", 2, 2, 1)),
    ((ACCEPTED,), ("5",), ("R", 1, 1, 1)),  # a group whose GE count is wrong is rejected whatever its transactions
])
def test_the_group_verdict_follows_from_the_transactions(transactions, error_codes, expected):
    text = write([GroupResponse(functional_id="HC", group_control_number="9", version="005010X222A1", transactions=transactions,
                                error_codes=error_codes)])

    (ack,) = parse_999(text)

    assert (ack.group_status, ack.transactions_included, ack.transactions_received, ack.transactions_accepted) == expected
    assert ack.group_error_codes == list(error_codes)
    assert pyx12_errors(text) == []


def test_several_groups_become_several_999_transaction_sets_with_other_delimiters():
    # given two received groups, answered with the submitter's delimiters
    delimiters = Delimiters(element="|", component=">", repetition="!", segment="\n")
    groups = [GroupResponse(functional_id="HC", group_control_number="17", version="005010X222A1", transactions=(REJECTED,)),
              GroupResponse(functional_id="HC", group_control_number="18", version="005010X223A2", transactions=(ACCEPTED,))]

    # when
    text = write(groups, delimiters=delimiters)

    # then
    first, second = parse_999(text)
    assert (first.control_number, first.group_control_number, first.group_status) == ("0001", "17", "R")
    assert first.transactions[0].segment_errors[1].element_errors[0].component_position == 2
    assert first.transactions[0].segment_errors[0].context == [["CLM01>PCN5002"]]
    assert (second.control_number, second.group_control_number, second.version, second.group_status) == ("0002", "18", "005010X223A2", "A")
    assert pyx12_errors(text) == []


def test_a_transaction_rejected_for_its_envelope_carries_the_code_without_segments():
    text = write([GroupResponse(functional_id="HC", group_control_number="5", version="005010X222A1", transactions=(
        TransactionResponse(transaction_set="837", control_number="0001", error_codes=("4",)),))])

    (ack,) = parse_999(text)

    assert [(t.status, t.error_codes, t.segment_errors) for t in ack.transactions] == [("R", ["4"], [])]


def test_refusals():
    with pytest.raises(ValueError, match="at least one functional group"):
        write([])
    with pytest.raises(ValueError, match="IK303 is the X12 loop id of at most 4 characters"):
        SegmentNote(segment_id="NM1", position=3, code="8", loop_id="2010BA")
    bad = TransactionResponse(transaction_set="837", control_number="0001", segments=(
        SegmentNote(segment_id="CLM", position=19, code="8", elements=(ElementNote(position=2, code="6", bad_data="1*2"),)),))
    with pytest.raises(DelimiterInValueError, match="IK404"):
        write([GroupResponse(functional_id="HC", group_control_number="1", transactions=(bad,))])
    with pytest.raises(ValueError, match="at most five error codes"):
        write([GroupResponse(functional_id="HC", group_control_number="1", transactions=(ACCEPTED,), error_codes=("1",) * 6)])
