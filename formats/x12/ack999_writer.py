"""999 implementation acknowledgment (005010X231A1) writer: what a receiver answers for a functional group.

`write_999(groups, ...)` writes one 999 transaction set per received functional group: AK1 naming
the group, for each transaction set an AK2, the IK3 segment errors (each with the CTX of the claim
it belongs to and its IK4 element errors) and IK5, then AK9 with the counts. What goes in is plain
data (`GroupResponse` → `TransactionResponse` → `SegmentNote` → `ElementNote`); what comes out is
read back by `formats.x12.ack999.parse_999`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from formats.x12.tokenizer import Delimiters
from formats.x12.writer import DEFAULT_DELIMITERS, Envelope, SegmentToWrite, now, segment, write_interchange

ACKNOWLEDGMENT_VERSION = "005010X231A1"
ACKNOWLEDGMENT_FUNCTIONAL_ID = "FA"  # GS01: functional or implementation acknowledgment
TRANSACTION_SET_ID = "999"

ACCEPTED = "A"
ACCEPTED_WITH_ERRORS = "E"
PARTIALLY_ACCEPTED = "P"  # AK901 only
REJECTED = "R"
_ACCEPTING = frozenset({ACCEPTED, ACCEPTED_WITH_ERRORS})
# IK502 when a transaction set is rejected for its segments and no other code is given.
SEGMENTS_IN_ERROR = "5"
MAX_LOOP_ID_LENGTH = 4  # IK303 is AN 1-4


@dataclass(frozen=True, kw_only=True)
class ElementNote:
    """IK4: one element found wrong. `code` is IK403 (formats.x12.ack999.ELEMENT_ERRORS)."""

    position: int  # IK401-1: the element's position in its segment
    code: str  # IK403
    component_position: int | None = None  # IK401-2
    repetition_position: int | None = None  # IK401-3
    data_element_reference: str = ""  # IK402: the X12 data element number, e.g. 782
    bad_data: str = ""  # IK404: a copy of the bad value


@dataclass(frozen=True, kw_only=True)
class SegmentNote:
    """IK3: one segment found wrong. `code` is IK304 (formats.x12.ack999.SEGMENT_ERRORS).

    `business_unit` names the claim (or other business unit) the segment belongs to, written as the
    CTX business unit identifier, e.g. ("CLM01", "PCN5002").
    """

    segment_id: str  # IK301
    position: int  # IK302: position in the transaction set, ST = 1
    code: str
    loop_id: str = ""  # IK303: the X12 loop id, at most 4 characters (2300; the guide's 2010BA is written 2010)
    business_unit: tuple[str, str] | None = None
    elements: tuple[ElementNote, ...] = ()

    def __post_init__(self) -> None:
        if len(self.loop_id) > MAX_LOOP_ID_LENGTH:
            raise ValueError(f"IK303 is the X12 loop id of at most {MAX_LOOP_ID_LENGTH} characters (2010, not 2010BA), got {self.loop_id!r}")


@dataclass(frozen=True, kw_only=True)
class TransactionResponse:
    """AK2 … IK5: the verdict on one received transaction set.

    `status` (IK501) defaults to R when there are segment notes or error codes and A otherwise; give
    E for a transaction accepted with errors noted. `error_codes` (IK502-506) default to 5 (one or
    more segments in error) for a status other than A with segment notes.
    """

    transaction_set: str  # AK201, e.g. 837
    control_number: str  # AK202: the ST02 answered
    implementation: str = ""  # AK203, e.g. 005010X222A1
    status: str = ""
    error_codes: tuple[str, ...] = ()
    segments: tuple[SegmentNote, ...] = ()

    @property
    def verdict(self) -> str:
        if self.status:
            return self.status
        return REJECTED if self.segments or self.error_codes else ACCEPTED

    @property
    def accepted(self) -> bool:
        return self.verdict in _ACCEPTING


@dataclass(frozen=True, kw_only=True)
class GroupResponse:
    """AK1 … AK9: the verdict on one received functional group.

    `status` (AK901) defaults from the transactions: A when all were accepted without notes, E when
    all were accepted and some with errors noted, R when none was (or there are group error codes),
    P otherwise. `transactions_included` (AK902) is the received GE01, by default the number of
    transactions answered.
    """

    functional_id: str  # AK101: GS01 of the received group, e.g. HC
    group_control_number: str  # AK102: its GS06
    version: str = ""  # AK103: its GS08
    transactions: tuple[TransactionResponse, ...] = ()
    status: str = ""
    error_codes: tuple[str, ...] = ()  # AK905-909
    transactions_included: int | None = None

    @property
    def accepted_count(self) -> int:
        return sum(1 for transaction in self.transactions if transaction.accepted)

    @property
    def verdict(self) -> str:
        if self.status:
            return self.status
        accepted = self.accepted_count
        if self.error_codes or accepted == 0:
            return REJECTED
        if accepted < len(self.transactions):
            return PARTIALLY_ACCEPTED
        if any(transaction.verdict == ACCEPTED_WITH_ERRORS for transaction in self.transactions):
            return ACCEPTED_WITH_ERRORS
        return ACCEPTED


def _position(position: int, component: int | None, repetition: int | None) -> tuple[str, ...]:
    parts = [str(position), "" if component is None else str(component)]
    if repetition is not None:
        parts.append(str(repetition))
    return tuple(parts)


def _group_segments(group: GroupResponse) -> list[SegmentToWrite]:
    if len(group.error_codes) > 5 or any(len(t.error_codes) > 5 for t in group.transactions):
        raise ValueError("a 999 carries at most five error codes per IK5 and per AK9")
    segments = [segment("AK1", group.functional_id, group.group_control_number, group.version)]
    for transaction in group.transactions:
        segments.append(segment("AK2", transaction.transaction_set, transaction.control_number, transaction.implementation))
        for note in transaction.segments:
            segments.append(segment("IK3", note.segment_id, str(note.position), note.loop_id, note.code))
            if note.business_unit is not None:
                segments.append(segment("CTX", note.business_unit))
            for element in note.elements:
                segments.append(segment(
                    "IK4",
                    _position(element.position, element.component_position, element.repetition_position),
                    element.data_element_reference,
                    element.code,
                    element.bad_data,
                ))
        status = transaction.verdict
        codes = transaction.error_codes
        if not codes and status != ACCEPTED and transaction.segments:
            codes = (SEGMENTS_IN_ERROR,)
        segments.append(segment("IK5", status, *codes))
    included = len(group.transactions) if group.transactions_included is None else group.transactions_included
    segments.append(segment("AK9", group.verdict, str(included), str(len(group.transactions)), str(group.accepted_count),
                            *group.error_codes))
    return segments


def write_999(
    groups: Sequence[GroupResponse],
    *,
    sender_id: str,
    receiver_id: str,
    control_number: int,
    created_at: datetime | None = None,
    sender_qualifier: str = "ZZ",
    receiver_qualifier: str = "ZZ",
    usage_indicator: str = "T",
    delimiters: Delimiters = DEFAULT_DELIMITERS,
    line_breaks: bool = False,
) -> str:
    """A 999 interchange (ISA to IEA) with one 999 transaction set per group in `groups`.

    The sender is who received the acknowledged file (ISA06/GS02), the receiver who sent it.
    `control_number` is ISA13/GS06. Raises ValueError when `groups` is empty or a response carries
    more than five error codes, and `DelimiterInValueError` (a ValueError) when a value (a copy of
    bad data, say) contains one of `delimiters`.
    """
    if not groups:
        raise ValueError("a 999 answers at least one functional group")
    envelope = Envelope(
        sender_id=sender_id, receiver_id=receiver_id, sender_qualifier=sender_qualifier, receiver_qualifier=receiver_qualifier,
        control_number=control_number, functional_id=ACKNOWLEDGMENT_FUNCTIONAL_ID, version=ACKNOWLEDGMENT_VERSION,
        created_at=created_at or now(), usage_indicator=usage_indicator,
    )
    return write_interchange(envelope, TRANSACTION_SET_ID, [_group_segments(group) for group in groups], delimiters=delimiters,
                             line_breaks=line_breaks)
