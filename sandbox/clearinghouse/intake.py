"""What the clearinghouse does with a submitted 837: check it, acknowledge it with a 999, keep what passed.

The envelope is walked leniently here (rather than with `read_interchanges`, which stops at the first
problem) so that each transaction set and functional group gets its own verdict, as a receiver's
translator gives it:
- a transaction set whose SE is missing, miscounted or mismatched is rejected (IK5 2, 4 or 3), one
  that is not an 837 or names another guide too (IK5 6 or I6), a repeated ST02 too (IK5 23);
- otherwise it is read with `read_837_transaction`; its first problem becomes an IK3 (segment,
  position, loop, code, the claim's CLM01 as CTX) with an IK4 for an element, and IK5 R;
- a functional group with a GE that is missing, miscounted or mismatched is rejected as a whole
  (AK9 R with AK905 3, 5 or 4), as is one that is not claims (GS01 other than HC: AK905 1);
- problems of the interchange itself (IEA missing or wrong, text outside any group) reject every
  group in it; a file that is not X12 at all gets a fixed rejecting 999.
Claims of accepted transaction sets in groups that were not rejected go on to the payer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from formats.x12.ack999_writer import (
    ElementNote,
    GroupResponse,
    SegmentNote,
    TransactionResponse,
    write_999,
)
from formats.x12.claim837_reader import IMPLEMENTATIONS, Claim837Error, SubmittedClaim, read_837_transaction
from formats.x12.errors import X12Error
from formats.x12.segment import Segment
from formats.x12.tokenizer import Delimiters, Transaction, read_delimiters, tokenize
from formats.x12.writer import DEFAULT_DELIMITERS

# IK502 transaction set syntax error codes
TRAILER_MISSING = "2"
CONTROL_NUMBERS_DIFFER = "3"
SEGMENT_COUNT_WRONG = "4"
INVALID_TRANSACTION_SET = "6"
INVALID_CONTROL_NUMBER = "7"
CONTROL_NUMBER_NOT_UNIQUE = "23"
IMPLEMENTATION_NOT_SUPPORTED = "I6"
# AK905 functional group syntax error codes
GROUP_NOT_SUPPORTED = "1"
GROUP_TRAILER_MISSING = "3"
GROUP_CONTROL_NUMBERS_DIFFER = "4"
GROUP_COUNT_WRONG = "5"

DEFAULT_CLAIM_VERSION = "005010X222A1"
MAX_BAD_DATA = 99  # IK404 is AN 1-99
MAX_REFERENCE = 35  # CTX01-2, AK203 and the like


@dataclass
class Intake:
    """The 999 for a submitted file and the claims that passed it."""

    ack_999: str
    claims: list[SubmittedClaim]
    errors: list[str]
    transactions: int  # transaction sets received
    transactions_accepted: int
    sender_id: str = ""  # ISA06 of the 837: where the 999 and the 835 go
    receiver_id: str = ""  # ISA08 of the 837: the clearinghouse, as the submitter addressed it

    @property
    def accepted(self) -> bool:
        """At least one transaction set passed (its claims go on to the payer)."""
        return self.transactions_accepted > 0

    @property
    def status(self) -> str:
        if not self.transactions_accepted:
            return "rejected"
        return "accepted" if self.transactions_accepted == self.transactions and not self.errors else "partially_accepted"


@dataclass
class _Transaction:
    segments: list[Segment]
    envelope_error: str = ""  # IK502 code of an envelope problem
    problem: str = ""


@dataclass
class _Group:
    header: Segment
    delimiters: Delimiters
    interchange_control_number: str
    transactions: list[_Transaction] = field(default_factory=list)
    error_code: str = ""  # AK905
    problem: str = ""
    interchange_rejected: bool = False


def clean(value: str, delimiters: Delimiters, limit: int = MAX_REFERENCE) -> str:
    """`value` without the delimiters of the reply or control characters, at most `limit` long.

    Echoed values (bad data, control numbers, names) come from the submitter's file, whose delimiters
    may differ from the reply's.
    """
    forbidden = {delimiters.element, delimiters.component, delimiters.segment, delimiters.repetition}
    kept = "".join(" " if character in forbidden or ord(character) < 0x20 or ord(character) == 0x7F else character for character in value)
    return kept.strip()[:limit]


def reply_delimiters(text: str) -> Delimiters:
    """The submitter's delimiters (a receiver answers in kind), or the defaults when they lack a
    repetition separator (a 5010 file needs one)."""
    try:
        delimiters = read_delimiters(text)
    except X12Error:
        return DEFAULT_DELIMITERS
    return delimiters if delimiters.repetition else DEFAULT_DELIMITERS


def _walk(segments: list[Segment], first: Delimiters) -> tuple[list[_Group], list[str]]:
    """Split segments into groups and transaction sets, noting envelope problems instead of raising."""
    groups: list[_Group] = []
    problems: list[str] = []
    interchange_groups: list[_Group] = []
    delimiters = first
    isa: Segment | None = None
    group: _Group | None = None
    transaction: _Transaction | None = None

    def close_transaction(at: Segment) -> None:
        nonlocal transaction
        if transaction is not None:
            transaction.envelope_error = TRAILER_MISSING
            transaction.problem = f"transaction set {transaction.segments[0].get(2)!r}: no SE before segment {at.number} ({at.id})"
            transaction = None

    def close_group(at: Segment) -> None:
        nonlocal group
        close_transaction(at)
        if group is not None:
            group.error_code = GROUP_TRAILER_MISSING
            group.problem = f"functional group {group.header.get(6)!r}: no GE before segment {at.number} ({at.id})"
            group = None

    def reject_interchange(reason: str) -> None:
        problems.append(reason)
        for member in interchange_groups:
            member.interchange_rejected = True

    for seg in segments:
        segment_id = seg.id
        if transaction is not None and segment_id not in ("SE", "ST", "GS", "GE", "ISA", "IEA"):
            transaction.segments.append(seg)
            continue
        if segment_id == "ISA":
            if isa is not None:
                close_group(seg)
                reject_interchange(f"segment {seg.number}: ISA before IEA closed the interchange of ISA13 {isa.get(13)!r}")
            isa, interchange_groups = seg, []
            delimiters = _isa_delimiters(seg, first)
        elif isa is None:
            problems.append(f"segment {seg.number} ({segment_id}): outside any interchange")
        elif segment_id == "GS":
            close_group(seg)
            group = _Group(seg, delimiters, isa.get(13))
            groups.append(group)
            interchange_groups.append(group)
        elif segment_id == "ST":
            close_transaction(seg)
            if group is None:
                reject_interchange(f"segment {seg.number}: ST outside a functional group")
                continue
            transaction = _Transaction([seg])
            group.transactions.append(transaction)
        elif segment_id == "SE":
            if transaction is None:
                reject_interchange(f"segment {seg.number}: SE without an ST")
                continue
            transaction.segments.append(seg)
            st = transaction.segments[0]
            declared = seg.get(1)
            if not declared.isdigit() or int(declared) != len(transaction.segments):
                transaction.envelope_error = SEGMENT_COUNT_WRONG
                transaction.problem = f"segment {seg.number} (SE), element SE01: says {declared!r} segments, found {len(transaction.segments)}"
            elif not _same_number(seg.get(2), st.get(2)):
                transaction.envelope_error = CONTROL_NUMBERS_DIFFER
                transaction.problem = f"segment {seg.number} (SE), element SE02: {seg.get(2)!r} does not match ST02 {st.get(2)!r}"
            transaction = None
        elif segment_id == "GE":
            close_transaction(seg)
            if group is None:
                reject_interchange(f"segment {seg.number}: GE without a GS")
                continue
            declared = seg.get(1)
            if not declared.isdigit() or int(declared) != len(group.transactions):
                group.error_code = GROUP_COUNT_WRONG
                group.problem = f"segment {seg.number} (GE), element GE01: says {declared!r} transaction sets, found {len(group.transactions)}"
            elif not _same_number(seg.get(2), group.header.get(6)):
                group.error_code = GROUP_CONTROL_NUMBERS_DIFFER
                group.problem = f"segment {seg.number} (GE), element GE02: {seg.get(2)!r} does not match GS06 {group.header.get(6)!r}"
            group = None
        elif segment_id == "IEA":
            close_group(seg)
            declared = seg.get(1)
            if not declared.isdigit() or int(declared) != len(interchange_groups):
                reject_interchange(f"segment {seg.number} (IEA), element IEA01: says {declared!r} functional groups, "
                                   f"found {len(interchange_groups)}")
            elif not _same_number(seg.get(2), isa.get(13)):
                reject_interchange(f"segment {seg.number} (IEA), element IEA02: {seg.get(2)!r} does not match ISA13 {isa.get(13)!r}")
            isa = None
        else:
            reject_interchange(f"segment {seg.number} ({segment_id[:10]}): outside a transaction set (only ST..SE may hold it)")
    if segments:
        last = segments[-1]
        close_group(last)
        if isa is not None:
            reject_interchange(f"the file ends without an IEA for the interchange of ISA13 {isa.get(13)!r}")
    return groups, problems


def _same_number(first: str, second: str) -> bool:
    return first == second or (first.isdigit() and second.isdigit() and int(first) == int(second))


def _isa_delimiters(isa: Segment, first: Delimiters) -> Delimiters:
    component = isa.get(16)[:1]
    repetition = isa.get(11)[:1]
    try:
        return Delimiters(element=first.element, component=component or first.component,
                          repetition="" if not repetition or repetition.isalnum() else repetition, segment=first.segment)
    except ValueError:
        return first


def _note(error: Claim837Error, reply: Delimiters) -> SegmentNote:
    elements: tuple[ElementNote, ...] = ()
    if error.element_position is not None:
        elements = (ElementNote(position=error.element_position, component_position=error.component_position, code=error.element_code,
                                data_element_reference=error.data_element, bad_data=clean(error.bad_data, reply, MAX_BAD_DATA)),)
    loop = error.loop_id[:4] if error.loop_id[:4].isdigit() else ""  # IK303 is the X12 loop id: 2010, not 2010BA
    unit = ("CLM01", clean(error.patient_control_number, reply)) if clean(error.patient_control_number, reply) else None
    return SegmentNote(segment_id=clean(error.segment_id, reply, 3) or "ST", position=max(error.position, 1), code=error.segment_code,
                       loop_id=loop, business_unit=unit, elements=elements)


def _answer_transaction(transaction: _Transaction, group: _Group, seen: set[str], reply: Delimiters,
                        claims: list[SubmittedClaim], errors: list[str]) -> TransactionResponse:
    st = transaction.segments[0]
    control = st.get(2)
    set_id = clean(st.get(1), reply, 3) or "837"
    implementation = st.get(3) or group.header.get(8)
    response = dict(transaction_set=set_id, control_number=clean(control, reply, 9).rjust(4, "0") if control else "0000",
                    implementation=clean(st.get(3), reply))
    label = f"transaction set {control!r} (segment {st.number})"
    if transaction.envelope_error:
        errors.append(f"{label}: {transaction.problem}")
        return TransactionResponse(**response, error_codes=(transaction.envelope_error,))
    if not control or not control.isdigit() or not 4 <= len(control) <= 9:
        errors.append(f"{label}: ST02 must be 4 to 9 digits")
        return TransactionResponse(**response, error_codes=(INVALID_CONTROL_NUMBER,))
    if control in seen:
        errors.append(f"{label}: ST02 {control!r} is used twice in functional group {group.header.get(6)!r}")
        return TransactionResponse(**response, error_codes=(CONTROL_NUMBER_NOT_UNIQUE,))
    seen.add(control)
    if st.get(1) != "837":
        errors.append(f"{label}: {st.get(1)!r} is not an 837")
        return TransactionResponse(**response, error_codes=(INVALID_TRANSACTION_SET,))
    if implementation not in IMPLEMENTATIONS:
        errors.append(f"{label}: implementation {implementation!r} is not 005010X222A1 (837P) or 005010X223A2 (837I)")
        return TransactionResponse(**response, error_codes=(IMPLEMENTATION_NOT_SUPPORTED,))
    try:
        found = read_837_transaction(Transaction(transaction.segments), delimiters=group.delimiters, group_version=group.header.get(8),
                                     group_control_number=group.header.get(6), interchange_control_number=group.interchange_control_number)
    except X12Error as exc:
        errors.append(f"{label}: {exc}")
        if not isinstance(exc, Claim837Error):  # the readers' plain errors name the segment but carry no 999 codes
            exc = Claim837Error(exc.reason, segment_number=exc.segment_number, segment_id=exc.segment_id,
                                position=exc.segment_number - st.number + 1)
        return TransactionResponse(**response, segments=(_note(exc, reply),))
    claims.extend(found)
    return TransactionResponse(**response)


def acknowledge(data: str | bytes, *, submitter: str, clearinghouse_id: str, control_number: int, created_at: datetime) -> Intake:
    """Check a submitted 837 and write its 999; never raises for what the file holds.

    `submitter` addresses the 999 when the file does not say who sent it; `clearinghouse_id` is the
    sender of the 999 when the file does not say whom it was sent to. `control_number` is the 999's
    ISA13/GS06.
    """
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    reply = reply_delimiters(text)
    fallback_receiver = clean(submitter, reply, 15) or "UNKNOWN"
    try:
        first = read_delimiters(text)
        segments = tokenize(text)
    except X12Error as exc:
        return _unreadable(f"not an X12 interchange: {exc}", fallback_receiver, clearinghouse_id, control_number, created_at)
    isa = segments[0]
    sender = clean(isa.get(6), reply, 15) or fallback_receiver
    receiver = clean(isa.get(8), reply, 15) or clearinghouse_id
    groups, problems = _walk(segments, first)
    if not groups:
        return _unreadable("the interchange holds no functional group (GS)", sender, receiver, control_number, created_at,
                           problems=problems, delimiters=reply)
    claims: list[SubmittedClaim] = []
    errors = list(problems)
    responses = []
    received = accepted = 0
    for group in groups:
        header = group.header
        group_claims: list[SubmittedClaim] = []
        group_errors: list[str] = []
        seen: set[str] = set()
        transactions = tuple(_answer_transaction(t, group, seen, reply, group_claims, group_errors) for t in group.transactions)
        error_codes: tuple[str, ...] = ()
        if header.get(1) != "HC":
            group_errors.append(f"functional group {header.get(6)!r} (segment {header.number}): {header.get(1)!r} is not claims (HC)")
            error_codes = (GROUP_NOT_SUPPORTED,)
        elif group.error_code:
            group_errors.append(group.problem)
            error_codes = (group.error_code,)
        rejected = bool(error_codes) or group.interchange_rejected
        response = GroupResponse(
            functional_id=clean(header.get(1), reply, 2) or "HC",
            group_control_number=clean(header.get(6), reply, 9) or "0",
            version=clean(header.get(8), reply, 12) or DEFAULT_CLAIM_VERSION,
            transactions=transactions,
            error_codes=error_codes,
            status="R" if rejected else "",
            transactions_included=len(transactions),
        )
        responses.append(response)
        errors.extend(group_errors)
        received += len(transactions)
        if not rejected:
            accepted += response.accepted_count
            claims.extend(group_claims)
    ack = write_999(responses, sender_id=receiver, receiver_id=sender, control_number=control_number, created_at=created_at,
                    delimiters=reply)
    return Intake(ack, claims, errors, received, accepted, sender_id=sender, receiver_id=receiver)


def _unreadable(reason: str, sender: str, receiver: str, control_number: int, created_at: datetime, *,
                problems: list[str] | None = None, delimiters: Delimiters = DEFAULT_DELIMITERS) -> Intake:
    """A file that cannot be read as claims: a 999 rejecting one unidentifiable transaction set."""
    response = GroupResponse(
        functional_id="HC", group_control_number="0", version=DEFAULT_CLAIM_VERSION,
        transactions=(TransactionResponse(transaction_set="837", control_number="0000", error_codes=(INVALID_TRANSACTION_SET,)),),
        status="R",
    )
    ack = write_999([response], sender_id=receiver, receiver_id=sender, control_number=control_number, created_at=created_at,
                    delimiters=delimiters)
    return Intake(ack, [], [reason, *(problems or [])], 1, 0, sender_id=sender, receiver_id=receiver)
