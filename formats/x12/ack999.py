"""999 implementation acknowledgment (005010X231A1) reader.

`parse_999(text)` returns one `Ack999` per ST/SE: which functional group it answers (AK1), the
verdict on each transaction set (AK2 ... IK5) with the segment errors (IK3) and element errors
(IK4) behind it, and the verdict on the whole group (AK9).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from formats.x12.segment import Segment
from formats.x12.tokenizer import Delimiters, Transaction, read_interchanges

# IK501 transaction set acknowledgment codes.
TRANSACTION_STATUS = {
    "A": "accepted",
    "E": "accepted but errors were noted",
    "M": "rejected, message authentication code (MAC) failed",
    "R": "rejected",
    "W": "rejected, assurance failed validity tests",
    "X": "rejected, content after decryption could not be analyzed",
}
# AK901 functional group acknowledgment codes.
GROUP_STATUS = {
    "A": "accepted",
    "E": "accepted, but errors were noted",
    "M": "rejected, message authentication code (MAC) failed",
    "P": "partially accepted, at least one transaction set was rejected",
    "R": "rejected",
    "W": "rejected, assurance failed validity tests",
    "X": "rejected, content after decryption could not be analyzed",
}
ACCEPTED = frozenset({"A", "E"})

# IK304 segment syntax error codes.
SEGMENT_ERRORS = {
    "1": "unrecognized segment ID",
    "2": "unexpected segment",
    "3": "required segment missing",
    "4": "loop occurs over maximum times",
    "5": "segment exceeds maximum use",
    "6": "segment not in defined transaction set",
    "7": "segment not in proper sequence",
    "8": "segment has data element errors",
    "I4": "implementation 'not used' segment present",
    "I6": "implementation dependent segment missing",
    "I7": "implementation loop occurs under minimum times",
    "I8": "implementation segment below minimum use",
    "I9": "implementation dependent 'not used' segment present",
}
# IK403 element syntax error codes.
ELEMENT_ERRORS = {
    "1": "required data element missing",
    "2": "conditional required data element missing",
    "3": "too many data elements",
    "4": "data element too short",
    "5": "data element too long",
    "6": "invalid character in data element",
    "7": "invalid code value",
    "8": "invalid date",
    "9": "invalid time",
    "10": "exclusion condition violated",
    "12": "too many repetitions",
    "13": "too many components",
    "I6": "code value not used in implementation",
    "I9": "implementation dependent data element missing",
    "I10": "implementation 'not used' data element present",
    "I11": "implementation too few repetitions",
    "I12": "implementation pattern match failure",
    "I13": "implementation dependent 'not used' data element present",
}


@dataclass(kw_only=True, slots=True)
class ElementError:
    """IK4: an element the receiver found wrong."""

    position: int  # IK401-1: the element's position in its segment
    component_position: int | None = None  # IK401-2
    repetition_position: int | None = None  # IK401-3
    data_element_reference: str = ""  # IK402: the X12 data element number
    code: str  # IK403, see ELEMENT_ERRORS
    bad_data: str = ""  # IK404: a copy of the bad value
    context: list[list[str]] = field(default_factory=list)  # CTX elements that follow

    @property
    def description(self) -> str:
        return ELEMENT_ERRORS.get(self.code, "")


@dataclass(kw_only=True, slots=True)
class SegmentError:
    """IK3: a segment the receiver found wrong, with its element errors."""

    segment_id: str  # IK301
    position: int  # IK302: position in the transaction set, ST = 1
    loop_id: str = ""  # IK303, e.g. 2010BA
    code: str = ""  # IK304, see SEGMENT_ERRORS
    element_errors: list[ElementError] = field(default_factory=list)
    context: list[list[str]] = field(default_factory=list)  # CTX elements that follow (CLM01 of the claim, ...)

    @property
    def description(self) -> str:
        return SEGMENT_ERRORS.get(self.code, "")


@dataclass(kw_only=True, slots=True)
class TransactionAck:
    """AK2 ... IK5: the verdict on one transaction set sent earlier."""

    transaction_set: str  # AK201, e.g. 837
    control_number: str  # AK202: the ST02 it answers
    implementation: str = ""  # AK203, e.g. 005010X222A1
    status: str = ""  # IK501, see TRANSACTION_STATUS
    error_codes: list[str] = field(default_factory=list)  # IK502-506
    segment_errors: list[SegmentError] = field(default_factory=list)

    @property
    def accepted(self) -> bool:
        return self.status in ACCEPTED


@dataclass(kw_only=True, slots=True)
class Ack999:
    """One 999 transaction set: the answer to one functional group."""

    control_number: str  # ST02
    functional_id: str  # AK101, e.g. HC
    group_control_number: str  # AK102: the GS06 it answers
    version: str = ""  # AK103
    transactions: list[TransactionAck] = field(default_factory=list)
    group_status: str = ""  # AK901, see GROUP_STATUS
    transactions_included: int = 0  # AK902
    transactions_received: int = 0  # AK903
    transactions_accepted: int = 0  # AK904
    group_error_codes: list[str] = field(default_factory=list)  # AK905-909
    segment_range: tuple[int, int] = (0, 0)  # numbers of its ST and SE in the file

    @property
    def accepted(self) -> bool:
        return self.group_status in ACCEPTED


def _codes(segment: Segment, first: int, last: int) -> list[str]:
    return [segment.get(index) for index in range(first, last + 1) if segment.get(index)]


def _optional_int(segment: Segment, delimiters: Delimiters, index: int, part: int) -> int | None:
    parts = delimiters.components(segment.get(index))
    value = parts[part] if part < len(parts) else ""
    if not value:
        return None
    if not value.isdigit():
        raise segment.error(f"{segment.get(index)!r} is not a position (element:component:repetition)", index)
    return int(value)


def _read(transaction: Transaction, delimiters: Delimiters) -> Ack999:
    body = transaction.body
    first = body[0] if body else transaction.trailer
    if first.id != "AK1":
        raise first.error(f"a 999 starts with AK1 after ST, found {first.id}")
    ack = Ack999(
        control_number=transaction.control_number,
        functional_id=first.required(1),
        group_control_number=first.required(2),
        version=first.get(3),
        segment_range=(transaction.header.number, transaction.trailer.number),
    )
    current: TransactionAck | None = None  # an AK2 still waiting for its IK5
    segment_error: SegmentError | None = None
    element_error: ElementError | None = None
    closed = False  # AK9 seen
    for segment in body[1:]:
        segment_id = segment[0]
        if closed:
            raise segment.error(f"{segment_id} after AK9: AK9 ends a 999")
        if segment_id == "AK2":
            if current is not None:
                raise segment.error(f"AK2 before IK5 closed the answer to transaction set {current.control_number!r}")
            current = TransactionAck(transaction_set=segment.required(1), control_number=segment.required(2), implementation=segment.get(3))
            segment_error = element_error = None
        elif segment_id == "IK3":
            if current is None:
                raise segment.error("IK3 is out of order: it belongs after an AK2")
            segment_error = SegmentError(
                segment_id=segment.required(1),
                position=segment.required_integer(2),
                loop_id=segment.get(3),
                code=segment.required(4),
            )
            current.segment_errors.append(segment_error)
            element_error = None
        elif segment_id == "IK4":
            if segment_error is None:
                raise segment.error("IK4 is out of order: it belongs after an IK3")
            segment.required(1)
            position = _optional_int(segment, delimiters, 1, 0)
            if position is None:
                raise segment.error("IK401-1 (element position) is required", 1)
            element_error = ElementError(
                position=position,
                component_position=_optional_int(segment, delimiters, 1, 1),
                repetition_position=_optional_int(segment, delimiters, 1, 2),
                data_element_reference=segment.get(2),
                code=segment.required(3),
                bad_data=segment.get(4),
            )
            segment_error.element_errors.append(element_error)
        elif segment_id == "CTX":
            # Context after IK4 describes the element; after IK3, the segment (e.g. CLM01 of the claim).
            if element_error is not None:
                element_error.context.append(segment[1:])
            elif segment_error is not None:
                segment_error.context.append(segment[1:])
            else:
                raise segment.error("CTX is out of order: it belongs after an IK3 or IK4")
        elif segment_id == "IK5":
            if current is None:
                raise segment.error("IK5 is out of order: it belongs after an AK2")
            current.status = segment.required(1)
            current.error_codes = _codes(segment, 2, 6)
            ack.transactions.append(current)
            current = segment_error = element_error = None
        elif segment_id == "AK9":
            if current is not None:
                raise segment.error(f"AK9 before IK5 closed the answer to transaction set {current.control_number!r}")
            ack.group_status = segment.required(1)
            ack.transactions_included = segment.required_integer(2)
            ack.transactions_received = segment.required_integer(3)
            ack.transactions_accepted = segment.required_integer(4)
            ack.group_error_codes = _codes(segment, 5, 9)
            closed = True
        else:
            raise segment.error(f"unexpected segment {segment_id} in a 999")
    if not closed:
        raise transaction.trailer.error("AK9 (functional group response) is required before SE")
    return ack


def parse_999(data: str | bytes) -> list[Ack999]:
    """Every 999 transaction set of an X12 file, in file order.

    Raises X12Error naming segment number, id and element for an envelope that does not add up,
    a transaction set that is not a 999, or an acknowledgment whose segments are out of order.
    """
    acks = []
    for interchange in read_interchanges(data):
        for transaction in interchange.transactions:
            if transaction.transaction_set != "999":
                raise transaction.header.error(f"transaction set {transaction.transaction_set!r} is not a 999", 1)
            acks.append(_read(transaction, interchange.delimiters))
    return acks
