"""837 claim reader: professional (005010X222A1) and institutional (005010X223A2), as a clearinghouse reads them.

`read_837(text)` returns every claim of every transaction set in file order, or raises at the first
problem. `read_837_transaction(transaction, ...)` reads one ST..SE on its own, for a receiver that
acknowledges each transaction set separately (the 999): a problem there raises `Claim837Error`, an
`X12Error` that also carries what an IK3/IK4 needs (loop, segment position in the transaction set,
syntax error codes, the bad value and the claim it belongs to).

Delimiters are whatever the ISA says. The reader checks the structure the guides require of the
parts it reads (BHT; submitter and receiver; the HL hierarchy; billing provider NPI and tax id;
subscriber, payer and patient names; CLM01, CLM02, CLM05; a principal diagnosis; every service line
with its charge, units and (837P) date; CLM02 equal to the sum of the line charges) and passes over
situational segments it does not need (PRV, PER, N3/N4 of people, NTE, PWK, CL1, AMT…).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from formats.x12.errors import X12Error
from formats.x12.model import Address
from formats.x12.segment import Segment, parse_ccyymmdd, parse_cents, parse_number
from formats.x12.tokenizer import Delimiters, Transaction, read_interchanges

PROFESSIONAL = "P"
INSTITUTIONAL = "I"
# ST03 (or GS08) → claim type. 005010X223A1 is the institutional guide before its addenda; files
# still carry it, and its structure is the same for what is read here.
IMPLEMENTATIONS = {"005010X222A1": PROFESSIONAL, "005010X223A2": INSTITUTIONAL, "005010X223A1": INSTITUTIONAL}
# CLM05-2: the code source of CLM05-1 each guide requires.
FACILITY_QUALIFIER = {PROFESSIONAL: "B", INSTITUTIONAL: "A"}
MAX_LINES = {PROFESSIONAL: 50, INSTITUTIONAL: 999}
MAX_PATIENT_CONTROL_NUMBER_LENGTH = 38

# HL03 levels
LEVEL_BILLING_PROVIDER = "20"
LEVEL_SUBSCRIBER = "22"
LEVEL_PATIENT = "23"
_LEVEL_LOOPS = {LEVEL_BILLING_PROVIDER: "2000A", LEVEL_SUBSCRIBER: "2000B", LEVEL_PATIENT: "2000C"}

# HI qualifiers: principal, other and admitting diagnosis (ICD-10-CM with the A prefix, ICD-9 without).
PRINCIPAL_DIAGNOSIS = frozenset({"ABK", "BK"})
OTHER_DIAGNOSIS = frozenset({"ABF", "BF"})
ADMITTING_DIAGNOSIS = frozenset({"ABJ", "BJ"})

# IK304 segment syntax error codes used here (see formats.x12.ack999.SEGMENT_ERRORS).
SEGMENT_UNRECOGNIZED = "1"
SEGMENT_UNEXPECTED = "2"
SEGMENT_MISSING = "3"
SEGMENT_HAS_ELEMENT_ERRORS = "8"
# IK403 element syntax error codes used here (see formats.x12.ack999.ELEMENT_ERRORS).
ELEMENT_MISSING = "1"
ELEMENT_TOO_LONG = "5"
ELEMENT_INVALID_CHARACTER = "6"
ELEMENT_INVALID_CODE = "7"
ELEMENT_INVALID_DATE = "8"
ELEMENT_PATTERN = "I12"  # implementation pattern match failure: a value the guide's rules refuse

# X12 data element numbers (IK402) of the elements this reader reports on.
DATA_ELEMENTS = {
    "BHT01": "1005", "BHT06": "640", "NM101": "98", "NM103": "1035", "NM108": "66", "NM109": "67",
    "HL01": "628", "HL02": "734", "HL03": "735", "SBR01": "1138", "PAT01": "1069", "DMG01": "1250", "DMG02": "1251",
    "CLM01": "1028", "CLM02": "782", "CLM05": "C023", "REF01": "128", "REF02": "127", "HI01": "C022",
    "LX01": "554", "SV101": "C003", "SV102": "782", "SV103": "355", "SV104": "380", "SV201": "234", "SV202": "C003",
    "SV203": "782", "SV204": "355", "SV205": "380", "DTP01": "374", "DTP02": "1250", "DTP03": "1251", "ST03": "1705",
}

# Segments the 837P and 837I define; anything else is an unexpected segment.
KNOWN_SEGMENTS = frozenset({
    "BHT", "NM1", "PER", "HL", "PRV", "N3", "N4", "REF", "SBR", "PAT", "DMG", "CUR", "CLM", "DTP", "CL1", "PWK", "CN1",
    "AMT", "K3", "NTE", "CR1", "CR2", "CR3", "CR6", "CRC", "HI", "HCP", "LX", "SV1", "SV2", "SV5", "PS1", "LIN", "CTP",
    "SVD", "CAS", "MEA", "QTY", "MOA", "MIA", "OI", "FRM", "LQ", "TOO",
})
_SEGMENT_ID = re.compile(r"[A-Z][A-Z0-9]{1,2}\Z")
# Control characters are in neither X12 character set (basic nor extended); a value holding one was
# damaged on the way and cannot be echoed back in a 999 or 835.
_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")
_NPI = re.compile(r"\d{10}\Z")


class Claim837Error(X12Error):
    """A problem in an 837 with what a 999 needs to report it.

    On top of X12Error's `segment_number` (in the file), `segment_id` and `element` ("CLM02",
    "SV101-2"): `position` is the segment's position in its transaction set (ST = 1, IK302),
    `loop_id` the loop it sits in (IK303), `segment_code` the IK304 code, and for an element error
    `element_position`/`component_position` (IK401), `element_code` (IK403), `data_element` (IK402)
    and `bad_data` (IK404). `transaction_control_number` is ST02 and `patient_control_number` the
    CLM01 of the claim at fault, "" outside a claim.
    """

    def __init__(self, reason: str, *, segment_number: int = 0, segment_id: str = "", element: str = "", position: int = 0,
                 loop_id: str = "", segment_code: str = SEGMENT_HAS_ELEMENT_ERRORS, element_position: int | None = None,
                 component_position: int | None = None, element_code: str = "", data_element: str = "", bad_data: str = "",
                 transaction_control_number: str = "", patient_control_number: str = "") -> None:
        self.position = position
        self.loop_id = loop_id
        self.segment_code = segment_code
        self.element_position = element_position
        self.component_position = component_position
        self.element_code = element_code
        self.data_element = data_element
        self.bad_data = bad_data
        self.transaction_control_number = transaction_control_number
        self.patient_control_number = patient_control_number
        super().__init__(reason, segment_number=segment_number, segment_id=segment_id, element=element)

    def __reduce__(self):
        return (_rebuild, (self.reason, dict(
            segment_number=self.segment_number, segment_id=self.segment_id, element=self.element, position=self.position,
            loop_id=self.loop_id, segment_code=self.segment_code, element_position=self.element_position,
            component_position=self.component_position, element_code=self.element_code, data_element=self.data_element,
            bad_data=self.bad_data, transaction_control_number=self.transaction_control_number,
            patient_control_number=self.patient_control_number)))


def _rebuild(reason: str, values: dict) -> Claim837Error:
    return Claim837Error(reason, **values)


# --- what is read --------------------------------------------------------------------------------


@dataclass(kw_only=True, slots=True)
class SubmittedPerson:
    """The subscriber (2010BA) or the patient (2010CA)."""

    last_name: str
    first_name: str = ""
    middle_name: str = ""
    member_id: str = ""  # NM109 (MI); the subscriber's, "" for a patient
    birth_date: date | None = None  # DMG02
    sex: str = ""  # DMG03
    relationship: str = ""  # SBR02 for the subscriber (18 self, else empty), PAT01 for a patient (19 child…)


@dataclass(kw_only=True, slots=True)
class SubmittedLine:
    """One service line (2400): SV1 (837P) or SV2 (837I) and its date and line control number."""

    number: int  # LX01
    procedure_qualifier: str  # SV101-1 / SV202-1: HC (HCPCS/CPT)…; "" for an 837I line with a revenue code only
    procedure_code: str
    modifiers: list[str] = field(default_factory=list)
    description: str = ""  # SV101-7 / SV202-7
    revenue_code: str = ""  # SV201 (837I)
    charge: Decimal  # SV102 / SV203
    unit_basis: str = ""  # SV103 / SV204: UN units, MJ minutes, DA days
    units: Decimal = Decimal(1)  # SV104 / SV205
    place_of_service: str = ""  # SV105, when it differs from the claim's
    diagnosis_pointers: list[int] = field(default_factory=list)  # SV107 (837P)
    service_date: date | None = None  # DTP*472 (D8, or the start of RD8)
    service_date_to: date | None = None  # the end of an RD8, else the same as service_date
    control_number: str = ""  # REF*6R
    segment_number: int = 0  # SV1/SV2 in the file


@dataclass(kw_only=True, slots=True)
class SubmittedClaim:
    """One claim (2300) with the parties above it in the hierarchy and where it sat in the file."""

    claim_type: str  # P (837P) or I (837I)
    implementation: str  # ST03, else GS08
    transaction_control_number: str  # ST02
    group_control_number: str = ""  # GS06
    interchange_control_number: str = ""  # ISA13
    submitter_name: str = ""  # 1000A NM103
    submitter_id: str = ""  # 1000A NM109
    receiver_name: str = ""  # 1000B NM103
    receiver_id: str = ""  # 1000B NM109
    billing_provider_name: str = ""  # 2010AA NM103 (organization or last name)
    billing_provider_npi: str = ""  # 2010AA NM109
    billing_provider_tax_id: str = ""  # REF*EI (or REF*SY)
    payer_name: str = ""  # 2010BB NM103
    payer_id: str = ""  # 2010BB NM109
    payer_address: Address | None = None  # 2010BB N3/N4
    payer_responsibility: str = ""  # SBR01: P, S, T…
    claim_filing_indicator: str = ""  # SBR09: CI, MC, MB…
    group_number: str = ""  # SBR03
    subscriber: SubmittedPerson
    patient: SubmittedPerson | None = None  # 2000C, when the patient is not the subscriber
    patient_control_number: str  # CLM01
    total_charge: Decimal  # CLM02
    facility_code: str  # CLM05-1: place of service (837P) or facility type (837I)
    facility_code_qualifier: str  # CLM05-2: B (837P) or A (837I)
    frequency_code: str  # CLM05-3: 1 original, 7 replacement, 8 void…
    payer_claim_control_number: str = ""  # REF*F8: the claim a replacement or void corrects
    prior_authorization: str = ""  # REF*G1
    diagnoses: list[str] = field(default_factory=list)  # principal first, as sent (no dots)
    admitting_diagnosis: str = ""  # HI*ABJ (837I)
    statement_from: date | None = None  # DTP*434 (837I)
    statement_to: date | None = None
    lines: list[SubmittedLine] = field(default_factory=list)
    segment_number: int = 0  # CLM in the file
    position: int = 0  # CLM in its transaction set, ST = 1

    @property
    def type_of_bill(self) -> str:
        """Facility type code and frequency (837I), e.g. "131"."""
        return f"{self.facility_code}{self.frequency_code}"

    @property
    def is_correction(self) -> bool:
        return self.frequency_code in ("7", "8")

    @property
    def first_service_date(self) -> date | None:
        dates = [line.service_date for line in self.lines if line.service_date is not None]
        return min(dates) if dates else self.statement_from

    @property
    def last_service_date(self) -> date | None:
        dates = [line.service_date_to or line.service_date for line in self.lines if line.service_date is not None]
        return max(dates) if dates else self.statement_to


# --- reading ---------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Level:
    """An HL level and what it must hold before claims can follow."""

    id: str
    code: str
    segment: Segment
    parent: _Level | None = None
    billing_name: str = ""
    billing_npi: str = ""
    billing_tax_id: str = ""
    subscriber: SubmittedPerson | None = None
    payer_name: str = ""
    payer_id: str = ""
    payer_address: Address | None = None
    payer_responsibility: str = ""
    filing_indicator: str = ""
    group_number: str = ""
    relationship: str = ""  # SBR02
    has_sbr: bool = False
    payer_street: tuple[str, str] | None = None  # N3 of the payer, until its N4
    patient_relationship: str = ""  # PAT01
    patient: SubmittedPerson | None = None
    has_pat: bool = False
    claims: int = 0


class _Reader:
    """Reads one 837 transaction set: a small state machine over its loops."""

    def __init__(self, transaction: Transaction, delimiters: Delimiters, *, group_version: str, group_control_number: str,
                 interchange_control_number: str) -> None:
        self.transaction = transaction
        self.delimiters = delimiters
        self.st = transaction.header
        self.group_control_number = group_control_number
        self.interchange_control_number = interchange_control_number
        self.loop = "HEADER"
        self.entity = ""  # NM101 of the last NM1 (N3/N4/REF/DMG belong to it)
        self.submitter_name = self.submitter_id = self.receiver_name = self.receiver_id = ""
        self.has_bht = False
        self.levels: dict[str, _Level] = {}
        self.level: _Level | None = None
        self.claim: SubmittedClaim | None = None
        self.claim_segment: Segment | None = None
        self.line: SubmittedLine | None = None
        self.line_dates = 0
        self.has_line_service = False
        self.claims: list[SubmittedClaim] = []
        self.claim_type = PROFESSIONAL
        implementation = self.st.get(3) or group_version
        self.implementation = implementation
        if self.st.get(1) != "837":
            raise self.fail(self.st, f"transaction set {self.st.get(1)!r} is not an 837", 1, code=ELEMENT_INVALID_CODE)
        claim_type = IMPLEMENTATIONS.get(implementation)
        if claim_type is None:
            raise self.fail(self.st, f"implementation {implementation!r} is not an 837P (005010X222A1) or 837I (005010X223A2)", 3,
                            code=ELEMENT_INVALID_CODE)
        self.claim_type = claim_type

    # --- errors

    def position(self, segment: Segment) -> int:
        return segment.number - self.st.number + 1

    def fail(self, segment: Segment, reason: str, index: int | None = None, *, component: int | None = None,
             code: str = ELEMENT_INVALID_CODE, segment_code: str = SEGMENT_HAS_ELEMENT_ERRORS, loop: str | None = None) -> Claim837Error:
        """An error on `segment` (element `index`, component `component` when given)."""
        element = ""
        bad = ""
        if index is not None:
            element = segment.element_name(index) + (f"-{component}" if component else "")
            value = segment.get(index)
            if component:
                parts = self.delimiters.components(value)
                value = parts[component - 1] if component <= len(parts) else ""
            bad = value
        return Claim837Error(
            reason,
            segment_number=segment.number,
            segment_id=segment.id,
            element=element,
            position=self.position(segment),
            loop_id=self.loop if loop is None else loop,
            segment_code=segment_code,
            element_position=index,
            component_position=component,
            element_code=code if index is not None else "",
            data_element=DATA_ELEMENTS.get(segment.element_name(index), "") if index is not None else "",
            bad_data=bad,
            transaction_control_number=self.transaction.control_number,
            patient_control_number=self._claim_in_question(segment),
        )

    def _claim_in_question(self, segment: Segment) -> str:
        """CLM01 of the claim a segment belongs to (for an error on a CLM, its own), "" outside claims."""
        if segment.id == "CLM":
            return segment.get(1)[:MAX_PATIENT_CONTROL_NUMBER_LENGTH]
        return self.claim.patient_control_number if self.claim is not None else ""

    def missing(self, segment_id: str, at: Segment, reason: str, loop: str) -> Claim837Error:
        """A required segment that is absent: reported where the reader noticed (the segment that came instead)."""
        return Claim837Error(
            reason,
            segment_number=at.number,
            segment_id=segment_id,
            position=self.position(at),
            loop_id=loop,
            segment_code=SEGMENT_MISSING,
            transaction_control_number=self.transaction.control_number,
            patient_control_number=self.claim.patient_control_number if self.claim is not None else "",
        )

    def unexpected(self, segment: Segment, where: str) -> Claim837Error:
        return self.fail(segment, f"{segment.id} is out of place: {where}", segment_code=SEGMENT_UNEXPECTED)

    # --- typed elements

    def required(self, segment: Segment, index: int, what: str = "") -> str:
        value = segment.get(index)
        if not value:
            label = f" ({what})" if what else ""
            raise self.fail(segment, f"{segment.element_name(index)}{label} is required", index, code=ELEMENT_MISSING)
        return value

    def amount(self, segment: Segment, index: int, what: str = "") -> Decimal:
        value = self.required(segment, index, what)
        cents = parse_cents(value)
        if cents is None:
            reason = "is not a number" if parse_number(value) is None else "is not an amount in whole cents"
            raise self.fail(segment, f"{value!r} {reason}", index, code=ELEMENT_INVALID_CHARACTER)
        return cents

    def quantity(self, segment: Segment, index: int) -> Decimal:
        value = self.required(segment, index, "units")
        number = parse_number(value)
        if number is None:
            raise self.fail(segment, f"{value!r} is not a number", index, code=ELEMENT_INVALID_CHARACTER)
        if number <= 0:
            raise self.fail(segment, f"units must be more than zero, got {value!r}", index, code=ELEMENT_PATTERN)
        return number

    def date(self, segment: Segment, index: int) -> date:
        value = self.required(segment, index, "date")
        parsed = parse_ccyymmdd(value)
        if parsed is None:
            raise self.fail(segment, f"{value!r} is not a date (CCYYMMDD)", index, code=ELEMENT_INVALID_DATE)
        return parsed

    def date_or_range(self, segment: Segment) -> tuple[date, date]:
        """DTP02/DTP03: D8 CCYYMMDD or RD8 CCYYMMDD-CCYYMMDD."""
        date_format = self.required(segment, 2, "date format")
        if date_format == "D8":
            day = self.date(segment, 3)
            return day, day
        if date_format == "RD8":
            value = self.required(segment, 3, "date range")
            start, separator, end = value.partition("-")
            first, last = parse_ccyymmdd(start), parse_ccyymmdd(end)
            if not separator or first is None or last is None:
                raise self.fail(segment, f"{value!r} is not a date range (CCYYMMDD-CCYYMMDD)", 3, code=ELEMENT_INVALID_DATE)
            if last < first:
                raise self.fail(segment, f"the range {value!r} ends before it starts", 3, code=ELEMENT_INVALID_DATE)
            return first, last
        raise self.fail(segment, f"date format {date_format!r} is not D8 or RD8", 2)

    def components(self, segment: Segment, index: int) -> list[str]:
        return self.delimiters.components(segment.get(index))

    # --- the walk

    def read(self) -> list[SubmittedClaim]:
        for segment in self.transaction.body:
            segment_id = segment.id
            handler = _HANDLERS.get(segment_id)
            if handler is not None:
                handler(self, segment)  # first, so that an error names the loop this segment opens
                self.check_characters(segment)
                continue
            self.check_characters(segment)
            if not _SEGMENT_ID.match(segment_id):
                raise self.fail(segment, f"{segment_id[:10]!r} is not a segment id", segment_code=SEGMENT_UNRECOGNIZED)
            if segment_id not in KNOWN_SEGMENTS:
                raise self.fail(segment, f"{segment_id} is not a segment of the 837", segment_code=SEGMENT_UNEXPECTED)
            if not self.has_bht:
                raise self.missing("BHT", segment, "BHT (beginning of hierarchical transaction) must follow ST", "HEADER")
            # A situational segment this reader does not need (PRV, PER, NTE, PWK, CL1, AMT…).
        trailer = self.transaction.trailer
        self.close_level(trailer)
        if not self.levels:
            self.check_header(trailer)
            raise self.missing("HL", trailer, "an 837 needs a billing provider level (HL*20)", "2000A")
        if not self.claims:
            raise self.missing("CLM", trailer, "an 837 needs at least one claim", "2300")
        return self.claims

    def check_characters(self, segment: Segment) -> None:
        if _CONTROL_CHARACTER.search("".join(segment)):
            index = next(i for i, value in enumerate(segment) if _CONTROL_CHARACTER.search(value))
            if not index:
                raise self.fail(segment, "the segment id holds a control character", segment_code=SEGMENT_UNRECOGNIZED)
            raise self.fail(segment, f"{segment.element_name(index)} holds a control character", index, code=ELEMENT_INVALID_CHARACTER)

    def check_header(self, at: Segment) -> None:
        if not self.has_bht:
            raise self.missing("BHT", at, "BHT (beginning of hierarchical transaction) must follow ST", "HEADER")
        if not self.submitter_id:
            raise self.missing("NM1", at, "the submitter (1000A NM1*41) is required before the first HL", "1000A")
        if not self.receiver_id:
            raise self.missing("NM1", at, "the receiver (1000B NM1*40) is required before the first HL", "1000B")

    def _bht(self, segment: Segment) -> None:
        if self.has_bht or self.position(segment) != 2:
            raise self.unexpected(segment, "BHT comes once, right after ST")
        if self.required(segment, 1) != "0019":
            raise self.fail(segment, f"BHT01 must be 0019 in an 837, got {segment.get(1)!r}", 1)
        self.required(segment, 3, "originator application transaction identifier")
        self.required(segment, 6, "claim or encounter identifier")
        self.has_bht = True

    # --- hierarchy

    def _hl(self, segment: Segment) -> None:
        if self.level is None:
            self.check_header(segment)
        self.close_level(segment)
        code = self.required(segment, 3, "hierarchical level code")
        if code not in _LEVEL_LOOPS:
            raise self.fail(segment, f"HL03 {code!r} is not a level of the 837 (20, 22 or 23)", 3)
        self.loop = _LEVEL_LOOPS[code]
        hl_id = self.required(segment, 1, "hierarchical id")
        if not hl_id.isdigit() or int(hl_id) != len(self.levels) + 1:
            raise self.fail(segment, f"HL01 must be {len(self.levels) + 1} (one more than the previous HL), got {hl_id!r}", 1,
                            code=ELEMENT_PATTERN)
        parent_id = segment.get(2)
        parent = self.levels.get(parent_id) if parent_id else None
        expected_parent = {LEVEL_BILLING_PROVIDER: None, LEVEL_SUBSCRIBER: LEVEL_BILLING_PROVIDER, LEVEL_PATIENT: LEVEL_SUBSCRIBER}[code]
        if expected_parent is None:
            if parent_id:
                raise self.fail(segment, "a billing provider level (HL*20) has no parent: HL02 must be empty", 2, code=ELEMENT_PATTERN)
        elif parent is None or parent.code != expected_parent:
            raise self.fail(segment, f"HL02 {parent_id!r} must be the id of an earlier level {expected_parent} (the parent of a level {code})",
                            2, code=ELEMENT_MISSING if not parent_id else ELEMENT_PATTERN)
        level = _Level(hl_id, code, segment, parent)
        self.levels[hl_id] = level
        self.level = level
        self.entity = ""

    def close_level(self, at: Segment) -> None:
        """Close the last claim of the level being left and check the level."""
        self.close_claim(at)
        if self.level is not None:
            self.check_level(self.level, at)

    def check_level(self, level: _Level, at: Segment) -> None:
        """The level holds what the guide requires of it (reported at `at`, where the reader noticed)."""
        if level.code == LEVEL_BILLING_PROVIDER:
            if not level.billing_npi:
                raise self.missing("NM1", at, "the billing provider (2010AA NM1*85 with its NPI) is required", "2010AA")
            if not level.billing_tax_id:
                raise self.missing("REF", at, "the billing provider's tax id (2010AA REF*EI) is required", "2010AA")
        elif level.code == LEVEL_SUBSCRIBER:
            if not level.has_sbr:
                raise self.missing("SBR", at, "the subscriber information (SBR) is required in 2000B", "2000B")
            if level.subscriber is None:
                raise self.missing("NM1", at, "the subscriber (2010BA NM1*IL) is required", "2010BA")
            if not level.payer_id:
                raise self.missing("NM1", at, "the payer (2010BB NM1*PR) is required", "2010BB")
        elif level.code == LEVEL_PATIENT:
            if not level.has_pat:
                raise self.missing("PAT", at, "the patient information (PAT) is required in 2000C", "2000C")
            if level.patient is None:
                raise self.missing("NM1", at, "the patient (2010CA NM1*QC) is required", "2010CA")

    def _sbr(self, segment: Segment) -> None:
        level = self.level
        if level is None or level.code != LEVEL_SUBSCRIBER or level.has_sbr or self.claim is not None:
            # 2320 (other subscriber) SBRs follow the claim: situational, not read.
            if self.claim is not None:
                self.loop = "2320"
                self.entity = "SBR"
                return
            raise self.unexpected(segment, "SBR belongs right after a subscriber level (HL*22)")
        level.payer_responsibility = self.required(segment, 1, "payer responsibility sequence")
        level.relationship = segment.get(2)
        level.group_number = segment.get(3)
        level.filing_indicator = segment.get(9)
        level.has_sbr = True

    def _pat(self, segment: Segment) -> None:
        level = self.level
        if level is None or level.code != LEVEL_PATIENT or level.has_pat:
            raise self.unexpected(segment, "PAT belongs right after a patient level (HL*23)")
        level.has_pat = True
        level.patient_relationship = self.required(segment, 1, "relationship to the insured")

    # --- names and what follows them

    def _nm1(self, segment: Segment) -> None:
        entity = self.required(segment, 1, "entity identifier")
        self.entity = entity
        level = self.level
        if level is None:
            if entity == "41":
                self.loop = "1000A"
                self.submitter_name = self.required(segment, 3, "submitter name")
                self.submitter_id = self.required(segment, 9, "submitter identifier")
            elif entity == "40":
                if not self.submitter_id:
                    raise self.missing("NM1", segment, "the submitter (1000A NM1*41) comes before the receiver", "1000A")
                self.loop = "1000B"
                self.receiver_name = self.required(segment, 3, "receiver name")
                self.receiver_id = self.required(segment, 9, "receiver identifier")
            else:
                raise self.fail(segment, f"NM1*{entity} before the first HL: only the submitter (41) and receiver (40) go there", 1)
            return
        if self.claim is not None:
            # 2310x/2330x/2420x: referring, rendering, attending, other payers… situational, not read.
            self.loop = "2420" if self.line is not None else "2310"
            return
        if level.code == LEVEL_BILLING_PROVIDER and entity == "85":
            self.loop = "2010AA"
            level.billing_name = self.required(segment, 3, "billing provider name")
            if segment.get(8) != "XX":
                raise self.fail(segment, f"NM108 must be XX (NPI) for the billing provider, got {segment.get(8)!r}", 8)
            npi = self.required(segment, 9, "billing provider NPI")
            if not _NPI.match(npi):
                raise self.fail(segment, f"{npi!r} is not an NPI (10 digits)", 9, code=ELEMENT_PATTERN)
            level.billing_npi = npi
        elif level.code == LEVEL_BILLING_PROVIDER and entity in ("87", "PE"):
            self.loop = "2010AB" if entity == "87" else "2010AC"
        elif level.code == LEVEL_SUBSCRIBER and entity == "IL":
            self.loop = "2010BA"
            if not level.has_sbr:
                raise self.missing("SBR", segment, "SBR comes before the subscriber name", "2000B")
            level.subscriber = SubmittedPerson(
                last_name=self.required(segment, 3, "subscriber last name"),
                first_name=segment.get(4),
                middle_name=segment.get(5),
                member_id=self.required(segment, 9, "subscriber member id"),
                relationship=level.relationship,
            )
        elif level.code == LEVEL_SUBSCRIBER and entity == "PR":
            self.loop = "2010BB"
            if level.subscriber is None:
                raise self.missing("NM1", segment, "the subscriber (NM1*IL) comes before the payer", "2010BA")
            level.payer_name = self.required(segment, 3, "payer name")
            level.payer_id = self.required(segment, 9, "payer identifier")
        elif level.code == LEVEL_PATIENT and entity == "QC":
            self.loop = "2010CA"
            if not level.has_pat:
                raise self.missing("PAT", segment, "PAT comes before the patient name", "2000C")
            level.patient = SubmittedPerson(
                last_name=self.required(segment, 3, "patient last name"),
                first_name=segment.get(4),
                middle_name=segment.get(5),
                relationship=level.patient_relationship,
            )
        else:
            raise self.fail(segment, f"NM1*{entity} is not a party of the {_LEVEL_LOOPS[level.code]} level", 1)

    def _n3(self, segment: Segment) -> None:
        if self.level is not None and self.claim is None and self.entity == "PR":
            self.level.payer_street = (self.required(segment, 1, "address"), segment.get(2))

    def _n4(self, segment: Segment) -> None:
        level = self.level
        if level is not None and self.claim is None and self.entity == "PR":
            street = level.payer_street
            if street is not None and segment.get(1) and segment.get(3):
                level.payer_address = Address(street[0], segment.get(1), segment.get(2), segment.get(3), line2=street[1],
                                              country=segment.get(4))

    def _ref(self, segment: Segment) -> None:
        qualifier = self.required(segment, 1, "reference qualifier")
        level = self.level
        if level is None:
            raise self.unexpected(segment, "REF belongs inside the hierarchy, after the first HL")
        if self.line is not None:
            if qualifier == "6R":
                self.line.control_number = self.required(segment, 2, "line item control number")
            return
        if self.claim is not None:
            if self.loop != "2300":
                return
            if qualifier == "F8":
                self.claim.payer_claim_control_number = self.required(segment, 2, "payer claim control number")
            elif qualifier == "G1":
                self.claim.prior_authorization = self.required(segment, 2, "prior authorization")
            return
        if self.loop == "2010AA" and qualifier in ("EI", "SY"):
            tax_id = self.required(segment, 2, "tax identification number")
            if not tax_id.isdigit() or len(tax_id) != 9:
                raise self.fail(segment, f"{tax_id!r} is not a tax id (9 digits, no dash)", 2, code=ELEMENT_PATTERN)
            level.billing_tax_id = tax_id

    def _dmg(self, segment: Segment) -> None:
        level = self.level
        if level is None or self.claim is not None:
            return  # 2320 other subscriber demographics: situational, not read
        person = level.subscriber if self.loop == "2010BA" else level.patient if self.loop == "2010CA" else None
        if person is None:
            return
        if self.required(segment, 1, "date format") != "D8":
            raise self.fail(segment, f"DMG01 must be D8, got {segment.get(1)!r}", 1)
        person.birth_date = self.date(segment, 2)
        person.sex = segment.get(3)

    # --- claims

    def _clm(self, segment: Segment) -> None:
        level = self.level
        if level is None or level.code == LEVEL_BILLING_PROVIDER:
            raise self.unexpected(segment, "CLM belongs under a subscriber (HL*22) or patient (HL*23) level")
        self.close_claim(segment)
        self.check_level(level, segment)
        self.loop = "2300"
        if level.code == LEVEL_SUBSCRIBER:
            subscriber_level, patient = level, None
        else:  # the subscriber level above was checked when this patient level opened
            subscriber_level, patient = level.parent, level.patient
        assert subscriber_level is not None and subscriber_level.subscriber is not None  # checked above
        billing = subscriber_level.parent
        assert billing is not None  # HL02 checked
        if level.claims >= 100:
            raise self.fail(segment, "a subscriber or patient level holds at most 100 claims (2300)", segment_code="5")
        level.claims += 1
        pcn = self.required(segment, 1, "patient control number")
        if len(pcn) > MAX_PATIENT_CONTROL_NUMBER_LENGTH:
            raise self.fail(segment, f"CLM01 is longer than {MAX_PATIENT_CONTROL_NUMBER_LENGTH} characters", 1, code=ELEMENT_TOO_LONG)
        total = self.amount(segment, 2, "total claim charge")
        parts = self.components(segment, 5)
        for number, what in ((1, "facility code"), (2, "facility code qualifier"), (3, "claim frequency code")):
            if len(parts) < number or not parts[number - 1]:
                raise self.fail(segment, f"CLM05-{number} ({what}) is required", 5, component=number, code=ELEMENT_MISSING)
        if parts[1] != FACILITY_QUALIFIER[self.claim_type]:
            raise self.fail(segment, f"CLM05-2 must be {FACILITY_QUALIFIER[self.claim_type]} in an 837{self.claim_type}, got {parts[1]!r}",
                            5, component=2)
        if not parts[2].isdigit() or len(parts[2]) != 1:
            raise self.fail(segment, f"CLM05-3 {parts[2]!r} is not a claim frequency code (one digit)", 5, component=3)
        subscriber = subscriber_level.subscriber
        self.claim = SubmittedClaim(
            claim_type=self.claim_type,
            implementation=self.implementation,
            transaction_control_number=self.transaction.control_number,
            group_control_number=self.group_control_number,
            interchange_control_number=self.interchange_control_number,
            submitter_name=self.submitter_name,
            submitter_id=self.submitter_id,
            receiver_name=self.receiver_name,
            receiver_id=self.receiver_id,
            billing_provider_name=billing.billing_name,
            billing_provider_npi=billing.billing_npi,
            billing_provider_tax_id=billing.billing_tax_id,
            payer_name=subscriber_level.payer_name,
            payer_id=subscriber_level.payer_id,
            payer_address=subscriber_level.payer_address,
            payer_responsibility=subscriber_level.payer_responsibility,
            claim_filing_indicator=subscriber_level.filing_indicator,
            group_number=subscriber_level.group_number,
            subscriber=subscriber,
            patient=patient,
            patient_control_number=pcn,
            total_charge=total,
            facility_code=parts[0],
            facility_code_qualifier=parts[1],
            frequency_code=parts[2],
            segment_number=segment.number,
            position=self.position(segment),
        )
        self.claim_segment = segment
        self.line = None
        self.entity = ""

    def close_claim(self, at: Segment) -> None:
        """Check the claim being left: lines, diagnoses, dates and that CLM02 is the sum of the lines."""
        self.close_line(at)
        claim = self.claim
        if claim is None:
            return
        clm = self.claim_segment
        assert clm is not None
        if not claim.diagnoses:
            raise self.missing("HI", at, f"claim {claim.patient_control_number}: the principal diagnosis (HI*ABK) is required", "2300")
        if self.claim_type == INSTITUTIONAL and claim.statement_from is None:
            raise self.missing("DTP", at, f"claim {claim.patient_control_number}: the statement dates (DTP*434) are required", "2300")
        if claim.is_correction and not claim.payer_claim_control_number:
            raise self.missing("REF", at, f"claim {claim.patient_control_number}: a replacement or void (frequency {claim.frequency_code}) "
                               "needs the payer claim control number of the claim it corrects (REF*F8)", "2300")
        if not claim.lines:
            raise self.missing("LX", at, f"claim {claim.patient_control_number}: a claim needs at least one service line", "2400")
        lines_total = sum((line.charge for line in claim.lines), Decimal(0))
        if lines_total != claim.total_charge:
            self.loop = "2300"
            raise self.fail(clm, f"claim {claim.patient_control_number}: CLM02 {claim.total_charge} is not the sum of the line charges "
                            f"{lines_total}", 2, code=ELEMENT_PATTERN)
        self.claims.append(claim)
        self.claim = None
        self.claim_segment = None

    def _hi(self, segment: Segment) -> None:
        claim = self.claim
        if claim is None or self.line is not None:
            raise self.unexpected(segment, "HI belongs in a claim (2300), before its first service line")
        for index in range(1, len(segment)):
            value = segment.get(index)
            if not value:
                continue
            parts = self.delimiters.components(value)
            qualifier = parts[0]
            code = parts[1] if len(parts) > 1 else ""
            if qualifier in PRINCIPAL_DIAGNOSIS or qualifier in OTHER_DIAGNOSIS or qualifier in ADMITTING_DIAGNOSIS:
                if not code:
                    raise self.fail(segment, f"{segment.element_name(index)}-2 (diagnosis code) is required", index, component=2,
                                    code=ELEMENT_MISSING)
            if qualifier in PRINCIPAL_DIAGNOSIS:
                if index != 1 or claim.diagnoses:
                    raise self.fail(segment, "the principal diagnosis comes once, in HI01 of the first HI", index, component=1)
                claim.diagnoses.append(code)
            elif qualifier in OTHER_DIAGNOSIS:
                if not claim.diagnoses:
                    raise self.fail(segment, "other diagnoses (ABF) follow the principal diagnosis (ABK)", index, component=1)
                claim.diagnoses.append(code)
            elif qualifier in ADMITTING_DIAGNOSIS:
                claim.admitting_diagnosis = code
            # Other HI qualifiers (condition, occurrence, value codes, procedures, DRG…) are not read.

    def _dtp(self, segment: Segment) -> None:
        qualifier = self.required(segment, 1, "date qualifier")
        if self.line is not None:
            if qualifier == "472":
                self.line.service_date, self.line.service_date_to = self.date_or_range(segment)
                self.line_dates += 1
            return
        if self.claim is not None and self.loop == "2300" and qualifier == "434":
            self.claim.statement_from, self.claim.statement_to = self.date_or_range(segment)

    # --- service lines

    def _lx(self, segment: Segment) -> None:
        claim = self.claim
        if claim is None:
            raise self.unexpected(segment, "LX belongs in a claim, after CLM")
        self.close_line(segment)
        if not claim.diagnoses:
            raise self.missing("HI", segment, f"claim {claim.patient_control_number}: the principal diagnosis (HI*ABK) comes before the lines",
                               "2300")
        number = self.required(segment, 1, "assigned number")
        if not number.isdigit() or int(number) != len(claim.lines) + 1:
            raise self.fail(segment, f"LX01 must be {len(claim.lines) + 1} (lines are numbered from 1), got {number!r}", 1,
                            code=ELEMENT_PATTERN, loop="2400")
        if len(claim.lines) >= MAX_LINES[self.claim_type]:
            raise self.fail(segment, f"an 837{self.claim_type} claim has at most {MAX_LINES[self.claim_type]} service lines", segment_code="4",
                            loop="2400")
        self.loop = "2400"
        self.line = SubmittedLine(number=int(number), procedure_qualifier="", procedure_code="", charge=Decimal(0),
                                  segment_number=segment.number)
        self.has_line_service = False
        self.line_dates = 0
        self.entity = ""

    def close_line(self, at: Segment) -> None:
        line = self.line
        if line is None:
            return
        service = "SV1" if self.claim_type == PROFESSIONAL else "SV2"
        if not self.has_line_service:
            raise self.missing(service, at, f"service line {line.number}: {service} is required after LX", "2400")
        if self.claim_type == PROFESSIONAL and not self.line_dates:
            raise self.missing("DTP", at, f"service line {line.number}: the date of service (DTP*472) is required", "2400")
        assert self.claim is not None
        self.claim.lines.append(line)
        self.line = None

    def _procedure(self, segment: Segment, index: int, *, required: bool) -> None:
        line = self.line
        assert line is not None
        value = segment.get(index)
        if not value:
            if required:
                raise self.fail(segment, f"{segment.element_name(index)} (procedure) is required", index, component=1, code=ELEMENT_MISSING)
            return
        parts = self.delimiters.components(value)
        if not parts[0]:
            raise self.fail(segment, f"{segment.element_name(index)}-1 (product/service id qualifier) is required", index, component=1,
                            code=ELEMENT_MISSING)
        if parts[0] not in ("HC", "ER", "IV", "WK", "HP"):
            raise self.fail(segment, f"{parts[0]!r} is not a procedure code qualifier (HC, ER, IV, WK, HP)", index, component=1)
        if len(parts) < 2 or not parts[1]:
            raise self.fail(segment, f"{segment.element_name(index)}-2 (procedure code) is required", index, component=2, code=ELEMENT_MISSING)
        if not parts[1].isalnum():
            raise self.fail(segment, f"{parts[1]!r} is not a procedure code", index, component=2, code=ELEMENT_INVALID_CHARACTER)
        line.procedure_qualifier = parts[0]
        line.procedure_code = parts[1]
        line.modifiers = [modifier for modifier in parts[2:6] if modifier]
        line.description = parts[6] if len(parts) > 6 else ""

    def _service_line(self, segment: Segment) -> SubmittedLine:
        line = self.line
        if line is None:
            raise self.unexpected(segment, f"{segment.id} belongs in a service line, after LX")
        if self.has_line_service:
            raise self.unexpected(segment, f"{segment.id} comes once per service line")
        expected = "SV1" if self.claim_type == PROFESSIONAL else "SV2"
        if segment.id != expected:
            raise self.fail(segment, f"{segment.id} is not used in an 837{self.claim_type} (lines are {expected})",
                            segment_code=SEGMENT_UNEXPECTED)
        self.has_line_service = True
        return line

    def _sv1(self, segment: Segment) -> None:
        line = self._service_line(segment)
        line.segment_number = segment.number
        self._procedure(segment, 1, required=True)
        line.charge = self.amount(segment, 2, "line item charge")
        line.unit_basis = self.required(segment, 3, "unit or basis for measurement")
        if line.unit_basis not in ("UN", "MJ"):
            raise self.fail(segment, f"SV103 must be UN (units) or MJ (minutes), got {line.unit_basis!r}", 3)
        line.units = self.quantity(segment, 4)
        line.place_of_service = segment.get(5)
        pointers = [p for p in self.components(segment, 7) if p] if segment.get(7) else []
        if not pointers:
            raise self.fail(segment, "SV107-1 (diagnosis code pointer) is required", 7, component=1, code=ELEMENT_MISSING)
        claim = self.claim
        assert claim is not None
        for number, pointer in enumerate(pointers[:4], start=1):
            if not pointer.isdigit() or not 1 <= int(pointer) <= len(claim.diagnoses):
                raise self.fail(segment, f"diagnosis pointer {pointer!r} does not point at one of the claim's {len(claim.diagnoses)} "
                                "diagnoses", 7, component=number, code=ELEMENT_PATTERN)
        line.diagnosis_pointers = [int(pointer) for pointer in pointers[:4]]

    def _sv2(self, segment: Segment) -> None:
        line = self._service_line(segment)
        line.segment_number = segment.number
        revenue = self.required(segment, 1, "revenue code")
        if not revenue.isdigit() or len(revenue) > 4:
            raise self.fail(segment, f"{revenue!r} is not a revenue code (up to 4 digits)", 1, code=ELEMENT_PATTERN)
        line.revenue_code = revenue
        self._procedure(segment, 2, required=False)
        line.charge = self.amount(segment, 3, "line item charge")
        line.unit_basis = self.required(segment, 4, "unit or basis for measurement")
        if line.unit_basis not in ("UN", "DA"):
            raise self.fail(segment, f"SV204 must be UN (units) or DA (days), got {line.unit_basis!r}", 4)
        line.units = self.quantity(segment, 5)


_HANDLERS = {
    "BHT": _Reader._bht,
    "HL": _Reader._hl,
    "SBR": _Reader._sbr,
    "PAT": _Reader._pat,
    "NM1": _Reader._nm1,
    "N3": _Reader._n3,
    "N4": _Reader._n4,
    "REF": _Reader._ref,
    "DMG": _Reader._dmg,
    "CLM": _Reader._clm,
    "HI": _Reader._hi,
    "DTP": _Reader._dtp,
    "LX": _Reader._lx,
    "SV1": _Reader._sv1,
    "SV2": _Reader._sv2,
}


def read_837_transaction(transaction: Transaction, *, delimiters: Delimiters, group_version: str = "", group_control_number: str = "",
                         interchange_control_number: str = "") -> list[SubmittedClaim]:
    """The claims of one 837 transaction set (ST..SE), whose envelope was already checked.

    `group_version` (GS08) is used when ST03 is absent. Raises `Claim837Error` (an X12Error) at the
    first problem, naming the segment (number in the file and position in the transaction set),
    the element and the IK3/IK4 codes a 999 reports it with.
    """
    reader = _Reader(transaction, delimiters, group_version=group_version, group_control_number=group_control_number,
                     interchange_control_number=interchange_control_number)
    return reader.read()


def read_837(data: str | bytes) -> list[SubmittedClaim]:
    """Every claim of an 837P or 837I file (any delimiters; several interchanges, groups and
    transaction sets are fine), in file order.

    Raises X12Error naming segment number, id and element: for an envelope that does not add up
    (SE01, GE01, IEA01 counts, control numbers), a functional group that is not claims (GS01 HC), or
    a transaction set that breaks the guide (`Claim837Error`, with the 999 codes).
    """
    claims: list[SubmittedClaim] = []
    for interchange in read_interchanges(data):
        for group in interchange.groups:
            if group.functional_id != "HC":
                raise group.header.error(f"functional group {group.functional_id!r} is not health care claims (HC)", 1)
            for transaction in group.transactions:
                claims.extend(read_837_transaction(
                    transaction, delimiters=interchange.delimiters, group_version=group.version,
                    group_control_number=group.control_number, interchange_control_number=interchange.control_number,
                ))
    return claims
