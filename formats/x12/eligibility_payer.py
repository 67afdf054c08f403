"""Eligibility from the payer's side (005010X279A1): the 270 inquiry reader and the 271 response writer.

The hub's side is `formats.x12.eligibility` (`write_270`, `parse_271`); this module is what a payer
or clearinghouse runs on the other end, and what the sandbox's test payer answers with.

`read_270(text)` returns one `EligibilityInquiry` per subscriber asked about (2000C): payer,
provider, member id, name, birth date, date of service, service types and the trace number (TRN).
`write_271(answers, ...)` answers each inquiry: active coverage (EB*1) with the plan name, a copay
(EB*B) and a deductible (EB*C) where known, inactive coverage (EB*6), or a rejection (AAA, e.g. 75
subscriber/insured not found), always echoing the inquiry's TRN so the asker can match the answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from formats.x12.errors import X12Error
from formats.x12.segment import Segment, parse_ccyymmdd
from formats.x12.tokenizer import Delimiters, Interchange, Transaction, read_interchanges
from formats.x12.writer import (
    DEFAULT_DELIMITERS,
    Envelope,
    SegmentToWrite,
    format_amount,
    format_date,
    format_time,
    now,
    segment,
    write_interchange,
)

ELIGIBILITY_VERSION = "005010X279A1"
INQUIRY_SET_ID = "270"
RESPONSE_SET_ID = "271"
RESPONSE_FUNCTIONAL_ID = "HB"  # GS01 of a 271
BHT_STRUCTURE = "0022"
BHT_REQUEST = "13"
BHT_RESPONSE = "11"
DEFAULT_SERVICE_TYPES = ("30",)  # health benefit plan coverage, what the guide assumes without an EQ

LEVEL_SOURCE = "20"
LEVEL_RECEIVER = "21"
LEVEL_SUBSCRIBER = "22"
LEVEL_DEPENDENT = "23"

TRACE_CURRENT = "1"  # TRN01 in a 270: current transaction trace numbers
TRACE_REFERENCED = "2"  # TRN01 in a 271: referenced transaction trace numbers (the inquiry's, echoed)

# EB01 codes written here
ACTIVE_COVERAGE = "1"
INACTIVE = "6"
COPAYMENT = "B"
DEDUCTIBLE = "C"
COVERAGE_LEVEL_INDIVIDUAL = "IND"  # EB02
PER_VISIT = "27"  # EB06 time period qualifier
CALENDAR_YEAR = "23"
PROFESSIONAL_VISIT = "98"  # EB03 where a copay is quoted when only plan coverage (30) was asked

# AAA03 reasons a payer answers a subscriber inquiry with (formats.x12.eligibility.REJECT_REASONS).
SUBSCRIBER_NOT_FOUND = "75"
INVALID_MEMBER_ID = "72"
FOLLOW_UP_CORRECT_AND_RESUBMIT = "C"

# DTP qualifiers of the 2100C loop
DATE_PLAN_BEGIN = "346"
DATE_PLAN_END = "347"


@dataclass(frozen=True, kw_only=True)
class EligibilityInquiry:
    """One subscriber asked about in a 270 (2000C), with the payer and provider above it."""

    payer_name: str  # 2100A NM103
    payer_id: str  # 2100A NM109
    provider_name: str  # 2100B NM103 (organization or last name)
    provider_first_name: str = ""  # 2100B NM104, for a person
    provider_entity_type: str = "2"  # 2100B NM102: 1 person, 2 organization
    provider_npi: str  # 2100B NM109 (XX)
    member_id: str  # 2100C NM109; "" when the provider searched by name and birth date
    last_name: str = ""
    first_name: str = ""
    middle_name: str = ""
    birth_date: date | None = None  # DMG02
    sex: str = ""  # DMG03
    group_number: str = ""  # REF*6P
    service_date: date | None = None  # DTP*291 (D8, or the start of RD8); None: the payer uses the day it answers
    service_date_to: date | None = None  # the end of an RD8
    service_types: tuple[str, ...] = DEFAULT_SERVICE_TYPES  # EQ01, every repetition of every EQ
    trace_number: str = ""  # TRN02
    trace_originator: str = ""  # TRN03
    trace_reference: str = ""  # TRN04
    reference: str = ""  # BHT03: the inquirer's transaction id, echoed in the 271 BHT
    transaction_control_number: str = ""  # ST02
    interchange_sender_id: str = ""  # ISA06: who asked (the 271 goes back to them)
    interchange_sender_qualifier: str = "ZZ"
    interchange_receiver_id: str = ""  # ISA08
    interchange_receiver_qualifier: str = "ZZ"
    segment_number: int = 0  # the HL of the subscriber, in the file


@dataclass(frozen=True, kw_only=True)
class Coverage:
    """What the payer knows of a member. The names and birth date, when given, are the payer's
    record and are answered instead of the inquiry's."""

    active: bool
    plan_name: str = ""  # EB05
    insurance_type: str = ""  # EB04: C1 commercial, HM HMO, PR PPO, MC Medicaid…
    copay: Decimal | None = None  # EB*B per visit
    deductible: Decimal | None = None  # EB*C per calendar year
    coverage_start: date | None = None  # DTP*346
    coverage_end: date | None = None  # DTP*347
    last_name: str = ""
    first_name: str = ""
    birth_date: date | None = None


@dataclass(frozen=True, kw_only=True)
class EligibilityAnswer:
    """The answer to one inquiry: its coverage, or (coverage None) a rejection with AAA03 `reject_reason`."""

    inquiry: EligibilityInquiry
    coverage: Coverage | None
    reject_reason: str = SUBSCRIBER_NOT_FOUND
    follow_up_action: str = FOLLOW_UP_CORRECT_AND_RESUBMIT


# --- 270 ------------------------------------------------------------------------------------------


@dataclass
class _Subscriber:
    segment: Segment
    trace_number: str = ""
    trace_originator: str = ""
    trace_reference: str = ""
    named: bool = False
    member_id: str = ""
    last_name: str = ""
    first_name: str = ""
    middle_name: str = ""
    birth_date: date | None = None
    sex: str = ""
    group_number: str = ""
    service_date: date | None = None
    service_date_to: date | None = None
    service_types: list[str] = field(default_factory=list)


class _InquiryReader:
    """Walks one 270 transaction set."""

    def __init__(self, transaction: Transaction, delimiters: Delimiters, interchange: Interchange, group_version: str) -> None:
        self.transaction = transaction
        self.delimiters = delimiters
        self.interchange = interchange
        header = transaction.header
        if transaction.transaction_set != INQUIRY_SET_ID:
            raise header.error(f"transaction set {transaction.transaction_set!r} is not a 270 eligibility inquiry", 1)
        implementation = header.get(3) or group_version
        if implementation != ELIGIBILITY_VERSION:
            raise header.error(f"implementation {implementation!r} is not {ELIGIBILITY_VERSION}", 3)
        self.reference = ""
        self.level = ""
        self.levels: dict[str, str] = {}  # HL01 → HL03
        self.payer_name = self.payer_id = ""
        self.provider_name = self.provider_first_name = self.provider_npi = ""
        self.provider_entity_type = "2"
        self.subscriber: _Subscriber | None = None
        self.inquiries: list[EligibilityInquiry] = []

    def read(self) -> list[EligibilityInquiry]:
        body = self.transaction.body
        first = body[0] if body else self.transaction.trailer
        if first.id != "BHT":
            raise first.error(f"a 270 starts with BHT after ST, found {first.id}")
        if first.get(1) != BHT_STRUCTURE:
            raise first.error(f"BHT01 must be {BHT_STRUCTURE} in a 270, got {first.get(1)!r}", 1)
        if first.get(2) != BHT_REQUEST:
            raise first.error(f"BHT02 must be {BHT_REQUEST} (request) in a 270, got {first.get(2)!r}", 2)
        self.reference = first.required(3)
        for seg in body[1:]:
            handler = _INQUIRY_HANDLERS.get(seg.id)
            if handler is not None:
                handler(self, seg)
            elif not self.level:
                raise seg.error(f"{seg.id} before the first hierarchical level (HL)")
            # Other segments (PRV, N3, N4, INS, HI, AMT, III…) are situational and not needed to answer.
        self.close_subscriber(self.transaction.trailer)
        if not self.inquiries:
            raise self.transaction.trailer.error("a 270 asks about at least one subscriber (HL*22)")
        return self.inquiries

    def _hl(self, seg: Segment) -> None:
        self.close_subscriber(seg)
        hl_id = seg.required(1)
        if hl_id in self.levels:
            raise seg.error(f"HL01 {hl_id!r} is used twice", 1)
        code = seg.required(3)
        parent = seg.get(2)
        expected_parent = {LEVEL_SOURCE: None, LEVEL_RECEIVER: LEVEL_SOURCE, LEVEL_SUBSCRIBER: LEVEL_RECEIVER}.get(code, "")
        if code == LEVEL_DEPENDENT:
            raise seg.error("dependent inquiries (HL*23) are not answered here: ask with the dependent's own member id as subscriber", 3)
        if expected_parent == "":
            raise seg.error(f"HL03 {code!r} is not a level of the 270 (20, 21, 22)", 3)
        if expected_parent is None and parent:
            raise seg.error("the information source level (HL*20) has no parent", 2)
        if expected_parent is not None and self.levels.get(parent) != expected_parent:
            raise seg.error(f"HL02 {parent!r} must be the id of an earlier level {expected_parent}", 2)
        if code == LEVEL_RECEIVER and not self.payer_id:
            raise seg.error("the information source (NM1*PR) is required before the receiver level")
        if code == LEVEL_SUBSCRIBER and not self.provider_npi:
            raise seg.error("the information receiver (NM1 with its NPI) is required before the subscriber level")
        self.levels[hl_id] = code
        self.level = code
        if code == LEVEL_SOURCE:
            self.payer_name = self.payer_id = ""
        elif code == LEVEL_RECEIVER:
            self.provider_name = self.provider_first_name = self.provider_npi = ""
        else:
            self.subscriber = _Subscriber(seg)

    def _nm1(self, seg: Segment) -> None:
        entity = seg.required(1)
        if self.level == LEVEL_SOURCE:
            self.payer_name = seg.required(3)
            self.payer_id = seg.required(9)
        elif self.level == LEVEL_RECEIVER:
            self.provider_entity_type = seg.required(2)
            self.provider_name = seg.required(3)
            self.provider_first_name = seg.get(4)
            if seg.get(8) != "XX":
                raise seg.error(f"the information receiver is identified by NPI (NM108 XX), got {seg.get(8)!r}", 8)
            self.provider_npi = seg.required(9)
        elif self.level == LEVEL_SUBSCRIBER and self.subscriber is not None:
            if entity != "IL":
                raise seg.error(f"NM1*{entity} is not the subscriber (NM1*IL)", 1)
            subscriber = self.subscriber
            if subscriber.named:
                raise seg.error("the subscriber is named once (NM1*IL) per level")
            if seg.get(9) and seg.get(8) != "MI":
                raise seg.error(f"the member id qualifier (NM108) must be MI, got {seg.get(8)!r}", 8)
            subscriber.named = True
            subscriber.member_id = seg.get(9)
            subscriber.last_name = seg.get(3)
            subscriber.first_name = seg.get(4)
            subscriber.middle_name = seg.get(5)
            if not subscriber.member_id and not (subscriber.last_name and subscriber.first_name):
                raise seg.error("the subscriber needs a member id (NM109) or a last and first name", 9)
        else:
            raise seg.error("NM1 before the first hierarchical level (HL)")

    def _trn(self, seg: Segment) -> None:
        subscriber = self.subscriber
        if subscriber is None or self.level != LEVEL_SUBSCRIBER:
            raise seg.error("TRN belongs to the subscriber level (2000C)")
        if seg.required(1) != TRACE_CURRENT:
            raise seg.error(f"TRN01 must be {TRACE_CURRENT} (current transaction trace number) in a 270, got {seg.get(1)!r}", 1)
        if subscriber.trace_number:
            return  # a second TRN is a clearinghouse's own trace; the provider's comes first
        subscriber.trace_number = seg.required(2)
        subscriber.trace_originator = seg.required(3)
        if len(subscriber.trace_originator) != 10:
            raise seg.error(f"TRN03 (originating company id) is 10 characters, got {subscriber.trace_originator!r}", 3)
        subscriber.trace_reference = seg.get(4)

    def _ref(self, seg: Segment) -> None:
        if self.subscriber is not None and seg.required(1) == "6P":
            self.subscriber.group_number = seg.required(2)

    def _dmg(self, seg: Segment) -> None:
        subscriber = self.subscriber
        if subscriber is None:
            return
        if seg.get(2):
            if seg.get(1) != "D8":
                raise seg.error(f"DMG01 must be D8, got {seg.get(1)!r}", 1)
            subscriber.birth_date = seg.date(2)
        subscriber.sex = seg.get(3)

    def _dtp(self, seg: Segment) -> None:
        subscriber = self.subscriber
        if subscriber is None or seg.required(1) != "291":
            return
        date_format, value = seg.required(2), seg.required(3)
        if date_format == "D8":
            subscriber.service_date = subscriber.service_date_to = seg.date(3)
        elif date_format == "RD8":
            start, separator, end = value.partition("-")
            first, last = parse_ccyymmdd(start), parse_ccyymmdd(end)
            if not separator or first is None or last is None or last < first:
                raise seg.error(f"{value!r} is not a date range (CCYYMMDD-CCYYMMDD)", 3)
            subscriber.service_date, subscriber.service_date_to = first, last
        else:
            raise seg.error(f"date format {date_format!r} is not D8 or RD8", 2)

    def _eq(self, seg: Segment) -> None:
        subscriber = self.subscriber
        if subscriber is None:
            raise seg.error("EQ belongs to the subscriber level (2110C)")
        codes = [code for code in self.delimiters.repetitions(seg.get(1)) if code]
        if not codes and not seg.get(2):
            raise seg.error("EQ01 (service type code) or EQ02 (procedure) is required", 1)
        subscriber.service_types.extend(code for code in codes if code not in subscriber.service_types)

    def close_subscriber(self, at: Segment) -> None:
        subscriber = self.subscriber
        if subscriber is None:
            return
        self.subscriber = None
        if not subscriber.named:
            raise at.error(f"the subscriber level at segment {subscriber.segment.number} has no subscriber name (NM1*IL)")
        interchange = self.interchange
        self.inquiries.append(EligibilityInquiry(
            payer_name=self.payer_name,
            payer_id=self.payer_id,
            provider_name=self.provider_name,
            provider_first_name=self.provider_first_name,
            provider_entity_type=self.provider_entity_type,
            provider_npi=self.provider_npi,
            member_id=subscriber.member_id,
            last_name=subscriber.last_name,
            first_name=subscriber.first_name,
            middle_name=subscriber.middle_name,
            birth_date=subscriber.birth_date,
            sex=subscriber.sex,
            group_number=subscriber.group_number,
            service_date=subscriber.service_date,
            service_date_to=subscriber.service_date_to,
            service_types=tuple(subscriber.service_types) or DEFAULT_SERVICE_TYPES,
            trace_number=subscriber.trace_number,
            trace_originator=subscriber.trace_originator,
            trace_reference=subscriber.trace_reference,
            reference=self.reference,
            transaction_control_number=self.transaction.control_number,
            interchange_sender_id=interchange.sender_id,
            interchange_sender_qualifier=interchange.sender_qualifier,
            interchange_receiver_id=interchange.receiver_id,
            interchange_receiver_qualifier=interchange.receiver_qualifier,
            segment_number=subscriber.segment.number,
        ))


_INQUIRY_HANDLERS = {
    "HL": _InquiryReader._hl,
    "NM1": _InquiryReader._nm1,
    "TRN": _InquiryReader._trn,
    "REF": _InquiryReader._ref,
    "DMG": _InquiryReader._dmg,
    "DTP": _InquiryReader._dtp,
    "EQ": _InquiryReader._eq,
}


def read_270(data: str | bytes) -> list[EligibilityInquiry]:
    """Every subscriber inquiry of a 270 file (005010X279A1, any delimiters), in file order.

    Raises X12Error naming segment number, id and element for an envelope that does not add up, a
    transaction set that is not a 270, a hierarchy out of order (a subscriber level without the
    payer and provider above it), a missing subscriber name, a bad date, or a dependent level
    (HL*23), which this payer does not answer.
    """
    inquiries: list[EligibilityInquiry] = []
    for interchange in read_interchanges(data):
        for group in interchange.groups:
            if group.functional_id != "HS":
                raise group.header.error(f"functional group {group.functional_id!r} is not eligibility inquiries (HS)", 1)
            for transaction in group.transactions:
                inquiries.extend(_InquiryReader(transaction, interchange.delimiters, interchange, group.version).read())
    if not inquiries:
        raise X12Error("the file holds no 270 inquiry")
    return inquiries


# --- 271 ------------------------------------------------------------------------------------------


def _answer(answer: EligibilityAnswer, first_level: int) -> list[SegmentToWrite]:
    inquiry, coverage = answer.inquiry, answer.coverage
    source, receiver, subscriber = first_level, first_level + 1, first_level + 2
    segments = [
        segment("HL", str(source), "", LEVEL_SOURCE, "1"),
        segment("NM1", "PR", "2", inquiry.payer_name, "", "", "", "", "PI", inquiry.payer_id),
        segment("HL", str(receiver), str(source), LEVEL_RECEIVER, "1"),
        segment("NM1", "1P", inquiry.provider_entity_type, inquiry.provider_name,
                inquiry.provider_first_name if inquiry.provider_entity_type == "1" else "", "", "", "", "XX", inquiry.provider_npi),
        segment("HL", str(subscriber), str(receiver), LEVEL_SUBSCRIBER, "0"),
    ]
    if inquiry.trace_number:
        segments.append(segment("TRN", TRACE_REFERENCED, inquiry.trace_number, inquiry.trace_originator, inquiry.trace_reference))
    last_name = (coverage.last_name if coverage else "") or inquiry.last_name
    first_name = (coverage.first_name if coverage else "") or inquiry.first_name
    segments.append(segment("NM1", "IL", "1", last_name, first_name, inquiry.middle_name, "", "",
                            "MI" if inquiry.member_id else "", inquiry.member_id))
    if coverage is None:
        segments.append(segment("AAA", "Y", "", answer.reject_reason, answer.follow_up_action))
    birth_date = (coverage.birth_date if coverage else None) or inquiry.birth_date
    if birth_date is not None:
        segments.append(segment("DMG", "D8", format_date(birth_date), inquiry.sex))
    if coverage is None:
        return segments
    if coverage.coverage_start is not None:
        segments.append(segment("DTP", DATE_PLAN_BEGIN, "D8", format_date(coverage.coverage_start)))
    if coverage.coverage_end is not None:
        segments.append(segment("DTP", DATE_PLAN_END, "D8", format_date(coverage.coverage_end)))
    service_types = inquiry.service_types or DEFAULT_SERVICE_TYPES
    code = ACTIVE_COVERAGE if coverage.active else INACTIVE
    # One EB per service type rather than a repeated EB03: every reader takes it, and the writer
    # renders no repetition separators.
    for service_type in service_types:
        segments.append(segment("EB", code, COVERAGE_LEVEL_INDIVIDUAL, service_type, coverage.insurance_type, coverage.plan_name))
    if not coverage.active:
        return segments
    if coverage.copay is not None:
        copay_types = [t for t in service_types if t != "30"] or [PROFESSIONAL_VISIT]
        for service_type in copay_types:
            segments.append(segment("EB", COPAYMENT, COVERAGE_LEVEL_INDIVIDUAL, service_type, coverage.insurance_type, "", PER_VISIT,
                                    format_amount(coverage.copay)))
    if coverage.deductible is not None:
        segments.append(segment("EB", DEDUCTIBLE, COVERAGE_LEVEL_INDIVIDUAL, "30", coverage.insurance_type, "", CALENDAR_YEAR,
                                format_amount(coverage.deductible)))
    return segments


def write_271(
    answers: Sequence[EligibilityAnswer],
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
    """A 271 interchange answering `answers`: one transaction set per 270 transaction set asked
    (by ST02 and BHT03, in order), each answer as its own payer → provider → subscriber hierarchy.

    The sender is the payer or clearinghouse (the 270's receiver), the receiver who asked.
    `control_number` is ISA13/GS06. Raises ValueError when `answers` is empty and
    `DelimiterInValueError` (a ValueError) for a value that contains one of `delimiters`.
    """
    if not answers:
        raise ValueError("a 271 answers at least one inquiry")
    created_at = created_at or now()
    envelope = Envelope(
        sender_id=sender_id, receiver_id=receiver_id, sender_qualifier=sender_qualifier, receiver_qualifier=receiver_qualifier,
        control_number=control_number, functional_id=RESPONSE_FUNCTIONAL_ID, version=ELIGIBILITY_VERSION, created_at=created_at,
        usage_indicator=usage_indicator,
    )
    by_transaction: dict[tuple[str, str], list[EligibilityAnswer]] = {}
    for answer in answers:
        key = (answer.inquiry.transaction_control_number, answer.inquiry.reference)
        by_transaction.setdefault(key, []).append(answer)
    transactions = []
    for (_, reference), group in by_transaction.items():
        body = [segment("BHT", BHT_STRUCTURE, BHT_RESPONSE, reference or str(control_number), format_date(created_at),
                        format_time(created_at))]
        for number, answer in enumerate(group):
            body.extend(_answer(answer, first_level=number * 3 + 1))  # three levels per answer
        transactions.append(body)
    return write_interchange(envelope, RESPONSE_SET_ID, transactions, delimiters=delimiters, line_breaks=line_breaks)
