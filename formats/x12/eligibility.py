"""Eligibility: the 270 inquiry writer and the 271 response reader (005010X279A1).

`write_270` asks one payer about one subscriber for a date and a list of service types.
`parse_271` reads a response into `EligibilityResponse`: for each member (subscriber or dependent)
its benefits (EB) with their dates, amounts and messages, and the rejections (AAA) at every level.

The 271 is split by the shared tokenizer (delimiters read from each ISA, envelope counts and control
numbers checked); errors are `X12Error` naming the segment number, segment id and element.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from formats.x12.model import Party, Payer, Receiver, Submitter, Subscriber
from formats.x12.segment import Segment, parse_ccyymmdd
from formats.x12.tokenizer import Delimiters, Transaction, read_interchanges
from formats.x12.writer import (
    DEFAULT_DELIMITERS,
    Envelope,
    SegmentToWrite,
    format_date,
    format_time,
    now,
    segment,
    write_interchange,
)

ELIGIBILITY_VERSION = "005010X279A1"
INQUIRY_FUNCTIONAL_ID = "HS"  # GS01 of a 270
INQUIRY_SET_ID = "270"
RESPONSE_SET_ID = "271"
BHT_STRUCTURE = "0022"  # information source, information receiver, subscriber, dependent
BHT_REQUEST = "13"
DEFAULT_SERVICE_TYPES = ("30",)  # health benefit plan coverage

# HL03 levels of the 270/271
LEVEL_SOURCE = "20"
LEVEL_RECEIVER = "21"
LEVEL_SUBSCRIBER = "22"
LEVEL_DEPENDENT = "23"
_LOOPS = {LEVEL_SOURCE: "2000A", LEVEL_RECEIVER: "2000B", LEVEL_SUBSCRIBER: "2000C", LEVEL_DEPENDENT: "2000D"}

# EB01 eligibility or benefit information codes
ACTIVE_CODES = frozenset({"1", "2", "3", "4", "5"})
INACTIVE_CODES = frozenset({"6", "7", "8"})
COINSURANCE = "A"
COPAYMENT = "B"
DEDUCTIBLE = "C"
OUT_OF_POCKET = "G"

BENEFIT_CODES = {
    "1": "Active Coverage",
    "2": "Active - Full Risk Capitation",
    "3": "Active - Services Capitated",
    "4": "Active - Services Capitated to Primary Care Physician",
    "5": "Active - Pending Investigation",
    "6": "Inactive",
    "7": "Inactive - Pending Eligibility Update",
    "8": "Inactive - Pending Investigation",
    "A": "Co-Insurance",
    "B": "Co-Payment",
    "C": "Deductible",
    "CB": "Coverage Basis",
    "D": "Benefit Description",
    "E": "Exclusions",
    "F": "Limitations",
    "G": "Out of Pocket (Stop Loss)",
    "H": "Unlimited",
    "I": "Non-Covered",
    "J": "Cost Containment",
    "K": "Reserve",
    "L": "Primary Care Provider",
    "M": "Pre-existing Condition",
    "MC": "Managed Care Coordinator",
    "N": "Services Restricted to Following Provider",
    "O": "Not Deemed a Medical Necessity",
    "P": "Benefit Disclaimer",
    "Q": "Second Surgical Opinion Required",
    "R": "Other or Additional Payor",
    "S": "Prior Year(s) History",
    "T": "Card(s) Reported Lost/Stolen",
    "U": "Contact Following Entity for Eligibility or Benefit Information",
    "V": "Cannot Process",
    "W": "Other Source of Data",
    "X": "Health Care Facility",
    "Y": "Spend Down",
}

# AAA03 reject reason codes used by 005010X279A1
REJECT_REASONS = {
    "04": "Authorized Quantity Exceeded",
    "15": "Required Application Data Missing",
    "33": "Input Errors",
    "35": "Out of Network",
    "41": "Authorization/Access Restrictions",
    "42": "Unable to Respond at Current Time",
    "43": "Invalid/Missing Provider Identification",
    "45": "Invalid/Missing Provider Specialty",
    "47": "Invalid/Missing Provider State",
    "48": "Invalid/Missing Referring Provider Identification Number",
    "49": "Provider is Not Primary Care Physician",
    "50": "Provider Ineligible for Inquiries",
    "51": "Provider Not on File",
    "52": "Service Dates Not Within Provider Plan Enrollment",
    "53": "Inquired Benefit Inconsistent with Provider Type",
    "54": "Inappropriate Product/Service ID Qualifier",
    "55": "Inappropriate Product/Service ID",
    "56": "Inappropriate Date",
    "57": "Invalid/Missing Date(s) of Service",
    "58": "Invalid/Missing Date-of-Birth",
    "60": "Date of Birth Follows Date(s) of Service",
    "61": "Date of Death Precedes Date(s) of Service",
    "62": "Date of Service Not Within Allowable Inquiry Period",
    "63": "Date of Service in Future",
    "64": "Invalid/Missing Patient ID",
    "65": "Invalid/Missing Patient Name",
    "66": "Invalid/Missing Patient Gender Code",
    "67": "Patient Not Found",
    "68": "Duplicate Patient ID Number",
    "69": "Inconsistent with Patient's Age",
    "70": "Inconsistent with Patient's Gender",
    "71": "Patient Birth Date Does Not Match That for the Patient on the Database",
    "72": "Invalid/Missing Subscriber/Insured ID",
    "73": "Invalid/Missing Subscriber/Insured Name",
    "74": "Invalid/Missing Subscriber/Insured Gender Code",
    "75": "Subscriber/Insured Not Found",
    "76": "Duplicate Subscriber/Insured ID Number",
    "77": "Subscriber Found, Patient Not Found",
    "78": "Subscriber/Insured Not in Group/Plan Identified",
    "79": "Invalid Participant Identification",
    "80": "No Response received - Transaction Terminated",
    "97": "Invalid or Missing Provider Address",
    "98": "Experimental Service or Procedure",
    "AA": "Authorization Number Not Found",
    "AE": "Requires Primary Care Physician Authorization",
    "AF": "Invalid/Missing Diagnosis Code(s)",
    "AG": "Invalid/Missing Procedure Code(s)",
    "AO": "Additional Patient Condition Information Required",
    "CI": "Certification Information Does Not Match Patient",
    "E8": "Requires Medical Review",
    "IA": "Invalid Authorization Number Format",
    "MA": "Missing Authorization Number",
    "T4": "Payer Name or Identifier Missing",
}

# AAA04 follow-up action codes
FOLLOW_UP_ACTIONS = {
    "C": "Please Correct and Resubmit",
    "N": "Resubmission Not Allowed",
    "P": "Please Resubmit Original Transaction",
    "R": "Resubmission Allowed",
    "S": "Do Not Resubmit; Inquiry Initiated to a Third Party",
    "W": "Please Wait 30 Days and Resubmit",
    "X": "Please Wait 10 Days and Resubmit",
    "Y": "Do Not Resubmit; We Will Hand Deliver Our Response",
}

# DTP01 qualifiers of coverage dates
DATE_PLAN = "291"
DATE_PLAN_BEGIN = "346"
DATE_PLAN_END = "347"



# --- 270 --------------------------------------------------------------------------------------


def write_270(
    *,
    subscriber: Subscriber,
    payer: Payer,
    provider: Party,
    service_date: date,
    trace_number: str,
    submitter: Submitter,
    receiver: Receiver,
    control_number: int,
    service_types: Sequence[str] = DEFAULT_SERVICE_TYPES,
    originating_company_id: str = "",
    created_at: datetime | None = None,
    usage_indicator: str = "T",
    delimiters: Delimiters = DEFAULT_DELIMITERS,
    line_breaks: bool = False,
) -> str:
    """A 270 inquiry (005010X279A1) about one subscriber on `service_date` for `service_types`
    (EB03 codes such as 30 health benefit plan coverage, 98 professional visit, 33 chiropractic).

    `trace_number` (TRN02) comes back in the 271 TRN so the response can be matched to the inquiry.
    `originating_company_id` (TRN03, 10 characters) defaults to "1" followed by the provider's EIN.
    One EQ loop is written per service type, which every payer accepts (some ignore repetitions
    of EQ01). Raises ValueError for missing data the guide requires and `DelimiterInValueError` for
    a value containing a delimiter.
    """
    if not service_types:
        raise ValueError("a 270 needs at least one service type")
    if not trace_number:
        raise ValueError("a 270 needs a trace number (TRN02)")
    if not originating_company_id:
        if len(provider.tax_id) != 9:
            raise ValueError("give originating_company_id (TRN03) or a provider with a 9-digit tax id")
        originating_company_id = f"1{provider.tax_id}"
    created_at = created_at or now()
    envelope = Envelope.between(submitter, receiver, control_number=control_number, functional_id=INQUIRY_FUNCTIONAL_ID, version=ELIGIBILITY_VERSION,
                                created_at=created_at, usage_indicator=usage_indicator)
    if provider.is_person:
        provider_name = ("1", provider.last_name, provider.first_name, provider.middle_name)
    else:
        provider_name = ("2", provider.organization_name, "", "")
    body: list[SegmentToWrite] = [
        segment("BHT", BHT_STRUCTURE, BHT_REQUEST, trace_number, format_date(created_at), format_time(created_at)),
        # 2000A/2100A information source: the payer
        segment("HL", "1", "", LEVEL_SOURCE, "1"),
        segment("NM1", "PR", "2", payer.name, "", "", "", "", "PI", payer.payer_id),
        # 2000B/2100B information receiver: the provider asking
        segment("HL", "2", "1", LEVEL_RECEIVER, "1"),
        segment("NM1", "1P", *provider_name, "", "", "XX", provider.npi),
        # 2000C/2100C subscriber
        segment("HL", "3", "2", LEVEL_SUBSCRIBER, "0"),
        segment("TRN", "1", trace_number, originating_company_id),
        segment("NM1", "IL", "1", subscriber.last_name, subscriber.first_name, subscriber.middle_name, "", "",
                "MI", subscriber.member_id),
    ]
    if subscriber.group_number:
        body.append(segment("REF", "6P", subscriber.group_number))
    if subscriber.birth_date is not None:
        body.append(segment("DMG", "D8", format_date(subscriber.birth_date), subscriber.sex))
    body.append(segment("DTP", DATE_PLAN, "D8", format_date(service_date)))
    body.extend(segment("EQ", code) for code in service_types)
    return write_interchange(envelope, INQUIRY_SET_ID, [body], delimiters=delimiters, line_breaks=line_breaks)


# --- 271 --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DateRange:
    """A DTP date (D8: start == end) or range (RD8)."""

    start: date
    end: date


@dataclass(frozen=True)
class Rejection:
    """An AAA segment: the request (or part of it) could not be answered.

    `loop` says where it was found: 2100A (payer), 2100B (provider), 2100C (subscriber), 2100D
    (dependent), or 2110C/2110D (a benefit).
    """

    loop: str
    valid_request: bool  # AAA01: Y the request was valid, N it was not
    reason_code: str  # AAA03
    follow_up_action_code: str  # AAA04

    @property
    def reason(self) -> str:
        return REJECT_REASONS.get(self.reason_code, self.reason_code)

    @property
    def follow_up_action(self) -> str:
        return FOLLOW_UP_ACTIONS.get(self.follow_up_action_code, self.follow_up_action_code)


@dataclass(frozen=True)
class RelatedEntity:
    """A party named for a benefit inside LS*2120/LE*2120 (primary care provider, other payer…)."""

    entity_code: str  # NM101, e.g. P3 primary care provider, PRP primary payer
    name: str
    first_name: str
    identifier_qualifier: str
    identifier: str


@dataclass
class Benefit:
    """One EB segment with what follows it in its 2110 loop (dates, messages, rejections).

    `amount` is EB07 to the cent. `percent` is EB08 as sent: a decimal fraction (0.2 means 20%). `in_network` is EB12: Y, N,
    U (unknown) or W (not applicable), empty when absent.
    """

    code: str
    coverage_level: str = ""
    service_types: tuple[str, ...] = ()
    insurance_type: str = ""
    plan_name: str = ""
    time_period: str = ""
    amount: Decimal | None = None
    percent: Decimal | None = None
    quantity_qualifier: str = ""
    quantity: Decimal | None = None
    authorization_required: str = ""
    in_network: str = ""
    procedure: tuple[str, ...] = ()
    dates: dict[str, DateRange] = field(default_factory=dict)
    references: dict[str, str] = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    related_entities: list[RelatedEntity] = field(default_factory=list)

    @property
    def description(self) -> str:
        return BENEFIT_CODES.get(self.code, self.code)

    @property
    def is_active(self) -> bool:
        return self.code in ACTIVE_CODES

    @property
    def is_inactive(self) -> bool:
        return self.code in INACTIVE_CODES


@dataclass
class MemberEligibility:
    """The answer for one member: a subscriber (2000C) or a dependent (2000D)."""

    level: str  # "subscriber" or "dependent"
    payer_name: str
    payer_id: str
    provider_name: str
    provider_id: str
    member_id: str = ""
    last_name: str = ""
    first_name: str = ""
    middle_name: str = ""
    birth_date: date | None = None
    sex: str = ""
    relationship: str = ""  # INS02, for a dependent
    trace_numbers: list[str] = field(default_factory=list)  # TRN02, with TRN*2 the inquiry's trace number
    references: dict[str, str] = field(default_factory=dict)  # REF, e.g. 6P group number
    dates: dict[str, DateRange] = field(default_factory=dict)  # DTP of the 2100 loop, by qualifier
    benefits: list[Benefit] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)

    @property
    def active_benefits(self) -> list[Benefit]:
        return [benefit for benefit in self.benefits if benefit.is_active]

    @property
    def inactive_benefits(self) -> list[Benefit]:
        return [benefit for benefit in self.benefits if benefit.is_inactive]

    @property
    def is_active(self) -> bool:
        """True when the payer reported active coverage (EB01 1–5) for anything."""
        return bool(self.active_benefits)

    def _of(self, code: str) -> list[Benefit]:
        return [benefit for benefit in self.benefits if benefit.code == code]

    @property
    def copays(self) -> list[Benefit]:
        return self._of(COPAYMENT)

    @property
    def coinsurance(self) -> list[Benefit]:
        return self._of(COINSURANCE)

    @property
    def deductibles(self) -> list[Benefit]:
        return self._of(DEDUCTIBLE)

    @property
    def out_of_pocket(self) -> list[Benefit]:
        return self._of(OUT_OF_POCKET)


@dataclass
class EligibilityResponse:
    """A 271 interchange: every member answered, and rejections above member level (the payer
    unable to respond, the provider not on file)."""

    control_number: str
    members: list[MemberEligibility] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)

    @property
    def is_active(self) -> bool:
        return any(member.is_active for member in self.members)


class _Walk:
    """State while walking the segments of one 271 transaction set."""

    def __init__(self, response: EligibilityResponse, delimiters: Delimiters) -> None:
        self.response = response
        self.delimiters = delimiters
        self.level = ""
        self.payer_name = self.payer_id = self.provider_name = self.provider_id = ""
        self.member: MemberEligibility | None = None
        self.benefit: Benefit | None = None
        self.in_related_entity = False

    def run(self, transaction: Transaction) -> None:
        for seg in transaction.body:
            handler = getattr(self, f"_{seg.id.lower()}", None)
            if handler is not None:
                handler(seg)

    def loop(self, benefit_level: bool) -> str:
        letter = {LEVEL_SOURCE: "A", LEVEL_RECEIVER: "B", LEVEL_SUBSCRIBER: "C", LEVEL_DEPENDENT: "D"}.get(self.level, "")
        return f"{'2110' if benefit_level else '2100'}{letter}"

    # --- hierarchy

    def _hl(self, seg: Segment) -> None:
        level = seg.required(3)
        if level not in _LOOPS:
            raise seg.error(f"unknown hierarchical level code {level!r}", 3)
        self.level = level
        self.benefit = None
        self.in_related_entity = False
        self.member = None
        if level in (LEVEL_SUBSCRIBER, LEVEL_DEPENDENT):
            self.member = MemberEligibility(
                level="subscriber" if level == LEVEL_SUBSCRIBER else "dependent",
                payer_name=self.payer_name,
                payer_id=self.payer_id,
                provider_name=self.provider_name,
                provider_id=self.provider_id,
            )
            self.response.members.append(self.member)

    def _nm1(self, seg: Segment) -> None:
        if self.in_related_entity and self.benefit is not None:
            self.benefit.related_entities.append(RelatedEntity(seg.get(1), seg.get(3), seg.get(4), seg.get(8), seg.get(9)))
        elif self.level == LEVEL_SOURCE:
            self.payer_name, self.payer_id = seg.get(3), seg.get(9)
        elif self.level == LEVEL_RECEIVER:
            self.provider_name, self.provider_id = seg.get(3), seg.get(9)
        elif self.member is not None and self.benefit is None:
            self.member.last_name = seg.get(3)
            self.member.first_name = seg.get(4)
            self.member.middle_name = seg.get(5)
            if seg.get(9):
                self.member.member_id = seg.get(9)
        elif not self.level:
            raise seg.error("NM1 before the first hierarchical level (HL)")

    def _trn(self, seg: Segment) -> None:
        if self.member is not None:
            self.member.trace_numbers.append(seg.required(2))

    def _ref(self, seg: Segment) -> None:
        target = self.benefit if self.benefit is not None else self.member
        if target is not None:
            target.references[seg.required(1)] = seg.get(2)

    def _dmg(self, seg: Segment) -> None:
        if self.member is None:
            return
        if seg.get(2):
            if seg.get(1) != "D8":
                raise seg.error(f"date format {seg.get(1)!r} is not D8", 1)
            self.member.birth_date = seg.date(2)
        self.member.sex = seg.get(3)

    def _ins(self, seg: Segment) -> None:
        if self.member is not None:
            self.member.relationship = seg.get(2)

    def _dtp(self, seg: Segment) -> None:
        target = self.benefit if self.benefit is not None else self.member
        if target is None:
            return
        qualifier, date_format, value = seg.required(1), seg.required(2), seg.required(3)
        if date_format == "D8":
            day = seg.date(3)
            assert day is not None  # required above
            target.dates[qualifier] = DateRange(day, day)
        elif date_format == "RD8":
            start, separator, end = value.partition("-")
            first, last = parse_ccyymmdd(start), parse_ccyymmdd(end)
            if not separator or first is None or last is None:
                raise seg.error(f"{value!r} is not a date range (CCYYMMDD-CCYYMMDD)", 3)
            target.dates[qualifier] = DateRange(first, last)
        else:
            raise seg.error(f"date format {date_format!r} is not D8 or RD8", 2)

    def _aaa(self, seg: Segment) -> None:
        valid = seg.get(1)
        if valid not in ("Y", "N"):
            raise seg.error(f"the valid request indicator must be Y or N, got {valid!r}", 1)
        rejection = Rejection(
            loop=self.loop(benefit_level=self.benefit is not None),
            valid_request=valid == "Y",
            reason_code=seg.required(3),
            follow_up_action_code=seg.get(4),
        )
        if self.benefit is not None:
            self.benefit.rejections.append(rejection)
        elif self.member is not None:
            self.member.rejections.append(rejection)
        else:
            self.response.rejections.append(rejection)

    # --- benefits

    def _eb(self, seg: Segment) -> None:
        if self.member is None:
            raise seg.error("EB outside a subscriber or dependent level")
        self.benefit = Benefit(
            code=seg.required(1),
            coverage_level=seg.get(2),
            service_types=tuple(filter(None, self.delimiters.repetitions(seg.get(3)))),
            insurance_type=seg.get(4),
            plan_name=seg.get(5),
            time_period=seg.get(6),
            amount=seg.amount(7),
            percent=seg.decimal(8),
            quantity_qualifier=seg.get(9),
            quantity=seg.decimal(10),
            authorization_required=seg.get(11),
            in_network=seg.get(12),
            procedure=tuple(self.delimiters.components(seg.get(13))) if seg.get(13) else (),
        )
        self.in_related_entity = False
        self.member.benefits.append(self.benefit)

    def _msg(self, seg: Segment) -> None:
        if self.benefit is not None:
            self.benefit.messages.append(seg.get(1))

    def _ls(self, seg: Segment) -> None:
        self.in_related_entity = True

    def _le(self, seg: Segment) -> None:
        self.in_related_entity = False


def parse_271(text: str | bytes) -> EligibilityResponse:
    """Read a 271 eligibility response (005010X279A1), every interchange and transaction in it.

    Raises `X12Error` (a ValueError) naming the segment number, segment id and element when the
    file is not a 271, its envelope counts or control numbers are wrong, or a date, amount or
    required element in it is not what the guide says.
    """
    interchanges = read_interchanges(text)
    response = EligibilityResponse(control_number=interchanges[0].control_number)
    for interchange in interchanges:
        for transaction in interchange.transactions:
            if transaction.transaction_set != RESPONSE_SET_ID:
                raise transaction.header.error(
                    f"expected a {RESPONSE_SET_ID} transaction set, got {transaction.transaction_set!r}", 1
                )
            _Walk(response, interchange.delimiters).run(transaction)
    return response
