"""The 999 reader against acknowledgments written by hand from the 005010X231A1 guide."""

from __future__ import annotations

from pathlib import Path

import pytest

from formats.x12.ack999 import ElementError, SegmentError, parse_999
from formats.x12.errors import X12Error

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "x12"


def read(name: str) -> str:
    return (FIXTURES / name).read_text()


def test_accepted_group_on_one_line():
    (ack,) = parse_999(read("999_accepted.edi"))

    assert (ack.control_number, ack.functional_id, ack.group_control_number, ack.version) == ("0001", "HC", "18", "005010X222A1")
    assert ack.accepted and ack.group_status == "A"
    (transaction,) = ack.transactions
    assert (transaction.transaction_set, transaction.control_number, transaction.status) == ("837", "0001", "A")
    assert transaction.accepted and transaction.segment_errors == []
    assert (ack.transactions_included, ack.transactions_received, ack.transactions_accepted) == (1, 1, 1)


def test_partially_accepted_group_with_segment_and_element_errors():
    (ack,) = parse_999(read("999_partially_accepted.edi"))

    assert ack.group_status == "P" and not ack.accepted
    assert (ack.transactions_included, ack.transactions_received, ack.transactions_accepted) == (3, 3, 2)
    assert [(t.control_number, t.status, t.accepted) for t in ack.transactions] == [
        ("0001", "A", True),
        ("0002", "R", False),
        ("0003", "E", True),
    ]
    rejected = ack.transactions[1]
    assert rejected.error_codes == ["5"]
    assert rejected.segment_errors == [
        SegmentError(
            segment_id="NM1", position=22, loop_id="2010BA", code="8",
            element_errors=[ElementError(position=9, data_element_reference="67", code="1")],
            context=[["CLM01:PCN5002"]],
        ),
        SegmentError(
            segment_id="SV1", position=31, loop_id="2400", code="8",
            element_errors=[ElementError(position=1, component_position=2, data_element_reference="234", code="7", bad_data="9921X")],
            context=[["CLM01:PCN5002"]],
        ),
    ]
    assert rejected.segment_errors[0].description == "segment has data element errors"
    assert rejected.segment_errors[1].element_errors[0].description == "invalid code value"
    noted = ack.transactions[2]
    assert noted.segment_errors == [SegmentError(segment_id="REF", position=40, loop_id="2300", code="I4")]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("IK5*R*5~", "", (14, "AK2", "")),  # AK2 while the previous answer has no IK5
        ("AK2*837*0002*005010X222A1~", "", (7, "IK3", "")),  # IK3 outside an AK2... answer of 0001 closed
        ("IK3*NM1*22*2010BA*8~", "IK3*NM1*twenty*2010BA*8~", (8, "IK3", "IK302")),
        ("IK4*9*67*1~", "IK4*9*67~", (10, "IK4", "IK403")),
        ("AK9*P*3*3*2~", "AK9*P*3*3~", (18, "AK9", "AK904")),
        ("AK9*P*3*3*2~", "", (18, "SE", "")),
        ("AK1*HC*17*005010X222A1~", "", (4, "AK2", "")),
    ],
)
def test_malformed_999_names_segment_and_element(old, new, expected):
    text = read("999_partially_accepted.edi")
    assert old in text
    text = text.replace(old, new, 1).replace("SE*17*0001~", f"SE*{17 - (new == '')}*0001~")

    with pytest.raises(X12Error) as caught:
        parse_999(text)

    error = caught.value
    assert (error.segment_number, error.segment_id, error.element) == expected


def test_an_835_is_not_a_999():
    with pytest.raises(X12Error) as caught:
        parse_999(read("835_cas_six_triples.edi"))

    assert (caught.value.segment_number, caught.value.segment_id, caught.value.element) == (3, "ST", "ST01")
