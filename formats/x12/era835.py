"""835 health care claim payment/advice (005010X221A1) reader.

`parse_835(text)` returns one `Remittance835` per ST/SE transaction set, in file order, with every
amount as Decimal. The file is refused as a whole (X12Error naming segment and element) when an
amount is not a number, a required element is missing or a segment is out of place, so a caller
never stores half a remittance.

A payer's biggest files are read in one pass by a fast reader; the errors are those of a
reference reader that checks everything in order (see "reading" below).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from formats.x12.errors import X12Error
from formats.x12.segment import Segment, parse_ccyymmdd, parse_cents, parse_number
from formats.x12.tokenizer import (
    Delimiters,
    _as_text,
    _check_control,
    _check_count,
    _skip_blanks,
    interchange_texts,
    paused_gc,
    read_delimiters,
    read_interchanges,
    segment_texts,
)

ZERO = Decimal("0.00")

# CLP02 claim status codes.
CLAIM_STATUS = {
    "1": "processed as primary",
    "2": "processed as secondary",
    "3": "processed as tertiary",
    "4": "denied",
    "19": "processed as primary, forwarded to additional payer(s)",
    "20": "processed as secondary, forwarded to additional payer(s)",
    "21": "processed as tertiary, forwarded to additional payer(s)",
    "22": "reversal of previous payment",
    "23": "not our claim, forwarded to additional payer(s)",
    "25": "predetermination pricing only, no payment",
}
STATUS_DENIED = "4"
STATUS_REVERSAL = "22"

# CAS01 claim adjustment group codes.
ADJUSTMENT_GROUPS = {
    "CO": "contractual obligations",
    "CR": "corrections and reversals",
    "OA": "other adjustments",
    "PI": "payer initiated reductions",
    "PR": "patient responsibility",
}

# BPR04 payment methods and BPR03 credit/debit flags.
PAYMENT_METHODS = {
    "ACH": "automated clearing house",
    "BOP": "financial institution option",
    "CHK": "check",
    "FWT": "federal reserve funds/wire transfer",
    "NON": "non-payment data",
}
CREDIT_DEBIT = {"C": "credit", "D": "debit"}

# PLB03-1 (and every later reason) provider adjustment reason codes.
PROVIDER_ADJUSTMENT_REASONS = {
    "50": "late charge",
    "51": "interest penalty charge",
    "72": "authorized return",
    "90": "early payment allowance",
    "AP": "acceleration of benefits",
    "B2": "rebate",
    "B3": "recovery allowance",
    "BD": "bad debt adjustment",
    "BN": "bonus",
    "C5": "temporary allowance",
    "CR": "capitation interest",
    "CS": "adjustment",
    "CT": "capitation payment",
    "CV": "capital passthru",
    "CW": "certified registered nurse anesthetist passthru",
    "DM": "direct medical education passthru",
    "E3": "withholding",
    "FB": "forward balance",
    "FC": "fund allocation",
    "GO": "graduate medical education passthru",
    "HM": "hemophilia clotting factor supplement",
    "IP": "incentive premium payment",
    "IR": "internal revenue service withholding",
    "IS": "interim settlement",
    "J1": "nonreimbursable",
    "L3": "penalty",
    "L6": "interest owed",
    "LE": "levy",
    "LS": "lump sum",
    "OA": "organ acquisition passthru",
    "OB": "offset for affiliated providers",
    "PI": "periodic interim payment",
    "PL": "payment final",
    "RA": "retro-activity adjustment",
    "RE": "return on equity",
    "SL": "student loan repayment",
    "TL": "third party liability",
    "WO": "overpayment recovery",
    "WU": "unspecified recovery",
}


# --- the parsed remittance -------------------------------------------------------------------


@dataclass(kw_only=True, slots=True)
class Adjustment:
    """One CAS reason/amount/quantity triple. A positive amount reduces what is paid."""

    group: str  # CAS01: CO, PR, OA, PI, CR
    reason: str  # claim adjustment reason code (CARC)
    amount: Decimal
    quantity: Decimal | None = None


@dataclass(kw_only=True, slots=True)
class ProviderAdjustment:
    """One PLB reason/amount pair. A positive amount reduces the payment (a recoupment);
    a negative one adds to it (interest, L6, is sent negative)."""

    provider_id: str  # PLB01
    fiscal_period_date: datetime.date  # PLB02
    reason: str  # first component of PLB03 (05, 07, ...): L6, FB, WO, 72, ...
    reference: str  # second component: the claim, recoupment or balance it concerns
    amount: Decimal
    segment_number: int = 0


@dataclass(kw_only=True, slots=True)
class Entity:
    """An NM1 name: a person (NM102 = 1) or an organization (NM102 = 2, name in last_name)."""

    entity_code: str  # NM101: QC patient, IL insured, 74 corrected patient, 82 rendering provider, ...
    entity_type: str = ""  # NM102
    last_name: str = ""  # NM103
    first_name: str = ""  # NM104
    middle_name: str = ""  # NM105
    suffix: str = ""  # NM107
    id_qualifier: str = ""  # NM108: MI member id, XX NPI, ...
    id: str = ""  # NM109


@dataclass(kw_only=True, slots=True)
class Procedure:
    """The SVC01 / SVC06 composite: qualifier, code, up to four modifiers, description."""

    qualifier: str  # HC (CPT/HCPCS), AD (ADA), NU (revenue code), N4 (NDC), ER, WK, ...
    code: str
    modifiers: list[str] = field(default_factory=list)
    description: str = ""


@dataclass(kw_only=True, slots=True)
class Payer:
    """Loop 1000A: N1*PR and its REF/PER segments."""

    name: str = ""  # N102
    id_qualifier: str = ""  # N103 (XV: CMS plan id)
    id: str = ""  # REF*2U when sent, else N104
    references: dict[str, str] = field(default_factory=dict)


@dataclass(kw_only=True, slots=True)
class Payee:
    """Loop 1000B: N1*PE and its REF segments."""

    name: str = ""  # N102
    id_qualifier: str = ""  # N103: XX NPI, FI tax id, XV plan id
    id: str = ""  # N104
    references: dict[str, str] = field(default_factory=dict)

    @property
    def npi(self) -> str:
        return self.id if self.id_qualifier == "XX" else ""

    @property
    def tax_id(self) -> str:
        return self.id if self.id_qualifier == "FI" else self.references.get("TJ", "")


@dataclass(kw_only=True, slots=True)
class EraLine:
    """Loop 2110: one SVC service line and what follows it."""

    procedure: Procedure  # SVC01
    charge: Decimal  # SVC02
    paid: Decimal  # SVC03
    revenue_code: str = ""  # SVC04
    units: Decimal = Decimal(1)  # SVC05; X12 says one when absent
    original_procedure: Procedure | None = None  # SVC06, when the payer paid a different code
    original_units: Decimal | None = None  # SVC07
    service_date_from: datetime.date | None = None  # DTM*472 or DTM*150
    service_date_to: datetime.date | None = None  # DTM*472 or DTM*151
    adjustments: list[Adjustment] = field(default_factory=list)
    control_number: str = ""  # REF*6R: the line item control number sent in the 837
    remark_codes: list[str] = field(default_factory=list)  # LQ*HE (RARC)
    reject_codes: list[str] = field(default_factory=list)  # LQ*RX (NCPDP reject/payment codes)
    allowed_amount: Decimal | None = None  # AMT*B6
    amounts: dict[str, Decimal] = field(default_factory=dict)  # every AMT by qualifier
    quantities: dict[str, Decimal] = field(default_factory=dict)  # every QTY by qualifier
    references: dict[str, str] = field(default_factory=dict)  # every REF by qualifier
    segment_number: int = 0

    @property
    def procedure_qualifier(self) -> str:
        return self.procedure.qualifier

    @property
    def procedure_code(self) -> str:
        return self.procedure.code

    @property
    def modifiers(self) -> list[str]:
        return self.procedure.modifiers


@dataclass(kw_only=True, slots=True)
class EraClaim:
    """Loop 2100: one CLP claim payment and its lines."""

    patient_control_number: str  # CLP01 = the 837's CLM01
    status_code: str  # CLP02, see CLAIM_STATUS
    charge: Decimal  # CLP03
    paid: Decimal  # CLP04
    patient_responsibility: Decimal = ZERO  # CLP05
    filing_indicator: str = ""  # CLP06
    payer_claim_control_number: str = ""  # CLP07
    facility_type: str = ""  # CLP08 (place of service or bill type)
    frequency: str = ""  # CLP09
    drg_code: str = ""  # CLP11
    patient: Entity | None = None  # NM1*QC
    insured: Entity | None = None  # NM1*IL
    corrected_patient: Entity | None = None  # NM1*74
    rendering_provider: Entity | None = None  # NM1*82
    other_entities: list[Entity] = field(default_factory=list)  # NM1*TT crossover, NM1*PR corrected payer, ...
    statement_from: datetime.date | None = None  # DTM*232
    statement_to: datetime.date | None = None  # DTM*233
    received_date: datetime.date | None = None  # DTM*050
    dates: dict[str, datetime.date] = field(default_factory=dict)  # every DTM by qualifier
    amounts: dict[str, Decimal] = field(default_factory=dict)  # AMT by qualifier (AU coverage amount, ...)
    quantities: dict[str, Decimal] = field(default_factory=dict)  # QTY by qualifier
    references: dict[str, str] = field(default_factory=dict)  # REF by qualifier (F8 original reference, ...)
    remark_codes: list[str] = field(default_factory=list)  # RARC from MIA05, MIA20-23, MOA03-07
    adjustments: list[Adjustment] = field(default_factory=list)  # claim-level CAS
    lines: list[EraLine] = field(default_factory=list)
    lx_number: int | None = None  # LX01 of the header number the claim sits under
    segment_number: int = 0

    @property
    def is_denial(self) -> bool:
        return self.status_code == STATUS_DENIED

    @property
    def is_reversal(self) -> bool:
        return self.status_code == STATUS_REVERSAL

    @property
    def patient_last_name(self) -> str:
        return self.patient.last_name if self.patient else ""

    @property
    def patient_first_name(self) -> str:
        return self.patient.first_name if self.patient else ""

    @property
    def member_id(self) -> str:
        return self.patient.id if self.patient else ""

    @property
    def all_adjustments(self) -> list[Adjustment]:
        """Claim-level adjustments followed by every line's."""
        return self.adjustments + [adjustment for line in self.lines for adjustment in line.adjustments]


@dataclass(kw_only=True, slots=True)
class Remittance835:
    """One 835 transaction set: a payment (or notice) from one payer to one payee."""

    control_number: str  # ST02
    handling: str  # BPR01: I remittance only, C payment + remittance, H notification only, ...
    payment_amount: Decimal  # BPR02
    credit_debit: str  # BPR03: C or D
    payment_method: str  # BPR04, see PAYMENT_METHODS
    payment_format: str = ""  # BPR05: CCP, CTX
    payment_date: datetime.date | None = None  # BPR16
    trace_type: str = ""  # TRN01
    trace_number: str = ""  # TRN02: EFT trace or check number
    trace_originator: str = ""  # TRN03: payer's company id
    receiver_id: str = ""  # REF*EV
    production_date: datetime.date | None = None  # DTM*405
    payer: Payer = field(default_factory=Payer)
    payee: Payee = field(default_factory=Payee)
    claims: list[EraClaim] = field(default_factory=list)
    provider_adjustments: list[ProviderAdjustment] = field(default_factory=list)
    implementation: str = ""  # ST03
    group_control_number: str = ""  # GS06
    interchange_control_number: str = ""  # ISA13
    segment_range: tuple[int, int] = (0, 0)  # numbers of its ST and SE in the file

    @property
    def total_paid(self) -> Decimal:
        """Σ CLP04."""
        return sum((claim.paid for claim in self.claims), ZERO)

    @property
    def provider_adjustment_total(self) -> Decimal:
        """Σ PLB amounts (positive = withheld from the payment)."""
        return sum((adjustment.amount for adjustment in self.provider_adjustments), ZERO)


def balance_difference(remittance: Remittance835) -> Decimal:
    """BPR02 − (Σ CLP04 − Σ PLB): zero when the remittance balances.

    A debit (BPR03 = D) is money the payee owes, so BPR02 counts negative then.
    """
    payment = -remittance.payment_amount if remittance.credit_debit == "D" else remittance.payment_amount
    return payment - (remittance.total_paid - remittance.provider_adjustment_total)


def claim_balance_difference(claim: EraClaim) -> Decimal:
    """CLP03 − CLP04 − Σ CAS (claim and line level): zero when the claim's adjustments explain it."""
    return claim.charge - claim.paid - sum((adjustment.amount for adjustment in claim.all_adjustments), ZERO)


def line_balance_difference(line: EraLine) -> Decimal:
    """SVC02 − SVC03 − Σ line CAS: zero when the line's adjustments explain it."""
    return line.charge - line.paid - sum((adjustment.amount for adjustment in line.adjustments), ZERO)


# --- reading ---------------------------------------------------------------------------------

# Two readers share the code below. The reference reader takes the envelope from read_interchanges
# and reads each transaction set with _Reader, one method per segment id, every check in the order
# the errors are reported. The fast reader (_read_fast, further down) reads the common segments of
# big files inline, hands the others to the same _Reader methods, and gives the file to the
# reference reader when anything is wrong, so that the errors are the reference reader's.

# Where the reader is; each segment is allowed in some of these. The first three are the fast
# reader's: _CLOSED outside any interchange (before an ISA, after an IEA), _OUTSIDE in one but
# outside a transaction set, _START after ST, where BPR must come. The order matters to it.
_CLOSED, _OUTSIDE, _START, _HEADER, _PAYER, _PAYEE, _DETAIL, _CLAIM, _LINE, _SUMMARY = range(10)


class _Reader:
    """Reads one 835 transaction set, after its BPR, with a small state machine over its loops."""

    __slots__ = ("delimiters", "remittance", "state", "has_trace", "lx_number", "claim", "line")

    def __init__(self, delimiters: Delimiters, remittance: Remittance835) -> None:
        self.delimiters = delimiters
        self.remittance = remittance
        self.state = _HEADER
        self.has_trace = False
        self.lx_number: int | None = None
        self.claim: EraClaim | None = None
        self.line: EraLine | None = None

    def read(self, segments: list[Segment], trailer: Segment) -> Remittance835:
        """Read the segments after the BPR; `trailer` is the SE."""
        for segment in segments:
            handler = _HANDLERS.get(segment[0])
            if handler is None:
                raise segment.error(f"unexpected segment {segment[0]} in an 835")
            handler(self, segment)
        self._require_parties(trailer)
        return self.remittance

    # The claim and line being read; the state machine only asks for them in the states that have them.
    @property
    def _claim(self) -> EraClaim:
        assert self.claim is not None
        return self.claim

    @property
    def _line(self) -> EraLine:
        assert self.line is not None
        return self.line

    # --- order checks

    def _misplaced(self, segment: Segment, where: str) -> X12Error:
        return segment.error(f"{segment.id} is out of order: it belongs {where}")

    def _require_trace(self, segment: Segment) -> None:
        if not self.has_trace:
            raise segment.error(f"TRN (reassociation trace number) is required in the 835 header, before {segment.id}")

    def _require_parties(self, segment: Segment) -> None:
        self._require_trace(segment)
        if self.state in (_HEADER, _PAYER):
            missing = "N1*PR (payer)" if self.state == _HEADER else "N1*PE (payee)"
            raise segment.error(f"{missing} is required before {segment.id}")

    # --- header

    def _trn(self, segment: Segment) -> None:
        if self.state != _HEADER or self.has_trace:
            raise self._misplaced(segment, "once in the header, after BPR")
        remittance = self.remittance
        remittance.trace_type = segment.required(1)
        remittance.trace_number = segment.required(2)
        remittance.trace_originator = segment.required(3)
        self.has_trace = True

    def _header_only(self, segment: Segment) -> None:
        if self.state != _HEADER:
            raise self._misplaced(segment, "in the header, before the payer N1")

    def _ref(self, segment: Segment) -> None:
        qualifier = segment.required(1)
        value = segment.required(2)
        if self.state == _HEADER:
            if qualifier == "EV":
                self.remittance.receiver_id = value
        elif self.state == _PAYER:
            self.remittance.payer.references[qualifier] = value
            if qualifier == "2U":
                self.remittance.payer.id = value
        elif self.state == _PAYEE:
            self.remittance.payee.references[qualifier] = value
        elif self.state == _CLAIM:
            self._claim.references[qualifier] = value
        elif self.state == _LINE:
            self._line.references[qualifier] = value
            if qualifier == "6R":
                self._line.control_number = value
        else:
            raise self._misplaced(segment, "in the header, a payer/payee loop, a claim or a service line")

    def _dtm(self, segment: Segment) -> None:
        qualifier = segment.required(1)
        value = segment.required_date(2)
        if self.state == _HEADER:
            if qualifier == "405":
                self.remittance.production_date = value
        elif self.state == _CLAIM:
            claim = self._claim
            claim.dates[qualifier] = value
            if qualifier == "232":
                claim.statement_from = value
            elif qualifier == "233":
                claim.statement_to = value
            elif qualifier == "050":
                claim.received_date = value
        elif self.state == _LINE:
            line = self._line
            if qualifier in ("472", "150"):
                line.service_date_from = value
            if qualifier in ("472", "151"):
                line.service_date_to = value
        else:
            raise self._misplaced(segment, "in the header, a claim or a service line")

    # --- payer and payee

    def _n1(self, segment: Segment) -> None:
        entity = segment.required(1)
        remittance = self.remittance
        if entity == "PR":
            if self.state != _HEADER:
                raise self._misplaced(segment, "once, after the header (loop 1000A)")
            self._require_trace(segment)
            remittance.payer.name = segment.required(2)
            remittance.payer.id_qualifier = segment.get(3)
            remittance.payer.id = remittance.payer.id or segment.get(4)
            self.state = _PAYER
        elif entity == "PE":
            if self.state != _PAYER:
                raise self._misplaced(segment, "once, after the payer N1*PR (loop 1000B)")
            remittance.payee.name = segment.required(2)
            remittance.payee.id_qualifier = segment.get(3)
            remittance.payee.id = segment.get(4)
            self.state = _PAYEE
        else:
            raise segment.error(f"{entity!r} is not an 835 party: N1*PR payer or N1*PE payee", 1)

    def _party_detail(self, segment: Segment) -> None:
        if self.state not in (_PAYER, _PAYEE):
            raise self._misplaced(segment, "in the payer or payee loop")

    def _per(self, segment: Segment) -> None:
        if self.state not in (_PAYER, _PAYEE, _CLAIM):
            raise self._misplaced(segment, "in the payer loop or a claim")

    # --- claims

    def _lx(self, segment: Segment) -> None:
        if self.state == _SUMMARY:
            raise self._misplaced(segment, "before PLB")
        self._require_parties(segment)
        self.lx_number = segment.required_integer(1)
        self.claim = self.line = None
        self.state = _DETAIL

    def _provider_summary(self, segment: Segment) -> None:
        if self.state != _DETAIL:
            raise self._misplaced(segment, "right after LX, before the first CLP")

    def _clp(self, segment: Segment) -> None:
        if self.state == _SUMMARY:
            raise self._misplaced(segment, "before PLB")
        self._require_parties(segment)
        claim = EraClaim(
            patient_control_number=segment.required(1),
            status_code=segment.required(2),
            charge=segment.required_amount(3),
            paid=segment.required_amount(4),
            patient_responsibility=segment.amount(5) or ZERO,
            filing_indicator=segment.get(6),
            payer_claim_control_number=segment.get(7),
            facility_type=segment.get(8),
            frequency=segment.get(9),
            drg_code=segment.get(11),
            lx_number=self.lx_number,
            segment_number=segment.number,
        )
        self.remittance.claims.append(claim)
        self.claim = claim
        self.line = None
        self.state = _CLAIM

    def _cas(self, segment: Segment) -> None:
        if self.state == _CLAIM:
            target = self._claim.adjustments
        elif self.state == _LINE:
            target = self._line.adjustments
        else:
            raise self._misplaced(segment, "after a CLP or an SVC")
        group = segment.required(1)
        segment.required(2)
        # Up to six reason/amount/quantity triples: CAS02-04, 05-07, 08-10, 11-13, 14-16, 17-19.
        for index in range(2, min(len(segment), 20), 3):
            reason = segment[index]
            if not reason:
                if any(segment[index + 1 : index + 3]):
                    raise segment.error(f"{segment.element_name(index)} (reason) is required with an amount", index)
                continue
            quantity = segment.decimal(index + 2) if index + 2 < len(segment) else None
            target.append(Adjustment(group=group, reason=reason, amount=segment.required_amount(index + 1), quantity=quantity))

    def _nm1(self, segment: Segment) -> None:
        if self.state != _CLAIM:
            raise self._misplaced(segment, "in a claim, after CLP and before its first SVC")
        claim = self._claim
        entity = Entity(
            entity_code=segment.required(1),
            entity_type=segment.required(2),
            last_name=segment.get(3),
            first_name=segment.get(4),
            middle_name=segment.get(5),
            suffix=segment.get(7),
            id_qualifier=segment.get(8),
            id=segment.get(9),
        )
        if entity.entity_code == "QC":
            claim.patient = entity
        elif entity.entity_code == "IL":
            claim.insured = entity
        elif entity.entity_code == "74":
            claim.corrected_patient = entity
        elif entity.entity_code == "82":
            claim.rendering_provider = entity
        else:
            claim.other_entities.append(entity)

    def _mia(self, segment: Segment) -> None:
        if self.state != _CLAIM:
            raise self._misplaced(segment, "in a claim, after CLP and before its first SVC")
        segment.required(1)
        self._remarks(segment, (5, 20, 21, 22, 23))

    def _moa(self, segment: Segment) -> None:
        if self.state != _CLAIM:
            raise self._misplaced(segment, "in a claim, after CLP and before its first SVC")
        self._remarks(segment, (3, 4, 5, 6, 7))

    def _remarks(self, segment: Segment, indexes: tuple[int, ...]) -> None:
        codes = self._claim.remark_codes
        for index in indexes:
            code = segment.get(index)
            if code:
                codes.append(code)

    def _amt(self, segment: Segment) -> None:
        qualifier = segment.required(1)
        amount = segment.required_amount(2)
        if self.state == _CLAIM:
            self._claim.amounts[qualifier] = amount
        elif self.state == _LINE:
            self._line.amounts[qualifier] = amount
            if qualifier == "B6":
                self._line.allowed_amount = amount
        else:
            raise self._misplaced(segment, "in a claim or a service line")

    def _qty(self, segment: Segment) -> None:
        qualifier = segment.required(1)
        segment.required(2)
        quantity = segment.decimal(2)
        assert quantity is not None  # required above
        if self.state == _CLAIM:
            self._claim.quantities[qualifier] = quantity
        elif self.state == _LINE:
            self._line.quantities[qualifier] = quantity
        else:
            raise self._misplaced(segment, "in a claim or a service line")

    # --- service lines

    def _procedure(self, segment: Segment, index: int) -> Procedure:
        parts = self.delimiters.components(segment.get(index))
        if len(parts) < 2 or not parts[0] or not parts[1]:
            raise segment.error(f"{segment.get(index)!r} is not a procedure (qualifier{self.delimiters.component}code)", index)
        return Procedure(
            qualifier=parts[0],
            code=parts[1],
            modifiers=[modifier for modifier in parts[2:6] if modifier],
            description=parts[6] if len(parts) > 6 else "",
        )

    def _svc(self, segment: Segment) -> None:
        if self.state not in (_CLAIM, _LINE):
            raise self._misplaced(segment, "in a claim, after its CLP")
        segment.required(1)
        line = EraLine(
            procedure=self._procedure(segment, 1),
            charge=segment.required_amount(2),
            paid=segment.required_amount(3),
            revenue_code=segment.get(4),
            units=_units(segment.decimal(5)),
            original_procedure=self._procedure(segment, 6) if segment.get(6) else None,
            original_units=segment.decimal(7),
            segment_number=segment.number,
        )
        self._claim.lines.append(line)
        self.line = line
        self.state = _LINE

    def _lq(self, segment: Segment) -> None:
        if self.state != _LINE:
            raise self._misplaced(segment, "in a service line, after its SVC")
        qualifier = segment.required(1)
        code = segment.required(2)
        if qualifier == "HE":
            self._line.remark_codes.append(code)
        else:
            self._line.reject_codes.append(code)

    # --- summary

    def _plb(self, segment: Segment) -> None:
        self._require_parties(segment)
        self.state = _SUMMARY
        self.claim = self.line = None
        provider_id = segment.required(1)
        fiscal_period_date = segment.required_date(2)
        segment.required(3)
        # Up to six reason/amount pairs: PLB03-04, 05-06, ..., 13-14.
        for index in range(3, 15, 2):
            reason_composite = segment.get(index)
            if not reason_composite:
                if segment.get(index + 1):
                    raise segment.error(f"{segment.element_name(index)} (reason) is required with an amount", index)
                continue
            parts = self.delimiters.components(reason_composite)
            self.remittance.provider_adjustments.append(
                ProviderAdjustment(
                    provider_id=provider_id,
                    fiscal_period_date=fiscal_period_date,
                    reason=parts[0],
                    reference=parts[1] if len(parts) > 1 else "",
                    amount=segment.required_amount(index + 1),
                    segment_number=segment.number,
                )
            )


def _read_bpr(segment: Segment, *, control_number: str, implementation: str, group_control_number: str,
              interchange_control_number: str, segment_range: tuple[int, int]) -> Remittance835:
    """The remittance a transaction set's BPR starts (`segment` is the first segment after ST)."""
    if segment.id != "BPR":
        raise segment.error(f"an 835 starts with BPR after ST, found {segment.id}")
    handling = segment.required(1)
    payment_amount = segment.required_amount(2)
    credit_debit = segment.required(3)
    if credit_debit not in CREDIT_DEBIT:
        raise segment.error(f"{credit_debit!r} is neither C (credit) nor D (debit)", 3)
    method = segment.required(4)
    if method not in PAYMENT_METHODS:
        raise segment.error(f"{method!r} is not a payment method ({', '.join(PAYMENT_METHODS)})", 4)
    return Remittance835(
        control_number=control_number,
        handling=handling,
        payment_amount=payment_amount,
        credit_debit=credit_debit,
        payment_method=method,
        payment_format=segment.get(5),
        payment_date=segment.date(16),
        implementation=implementation,
        group_control_number=group_control_number,
        interchange_control_number=interchange_control_number,
        segment_range=segment_range,
    )


# Segment id → reader method. Kept off the instance: bound methods there would make every reader a
# reference cycle that holds all its segments until the next garbage collection.
_HANDLERS: dict[str, Callable[[_Reader, Segment], None]] = {
    "TRN": _Reader._trn,
    "CUR": _Reader._header_only,
    "REF": _Reader._ref,
    "DTM": _Reader._dtm,
    "N1": _Reader._n1,
    "N3": _Reader._party_detail,
    "N4": _Reader._party_detail,
    "RDM": _Reader._party_detail,
    "PER": _Reader._per,
    "LX": _Reader._lx,
    "TS3": _Reader._provider_summary,
    "TS2": _Reader._provider_summary,
    "CLP": _Reader._clp,
    "CAS": _Reader._cas,
    "NM1": _Reader._nm1,
    "MIA": _Reader._mia,
    "MOA": _Reader._moa,
    "AMT": _Reader._amt,
    "QTY": _Reader._qty,
    "SVC": _Reader._svc,
    "LQ": _Reader._lq,
    "PLB": _Reader._plb,
}


def _units(value: Decimal | None) -> Decimal:
    # SVC05 may be left out when one unit was paid.
    return Decimal(1) if value is None else value


def parse_835(data: str | bytes) -> list[Remittance835]:
    """Every 835 transaction set of an X12 file, in file order (several GS and ST are fine).

    Raises X12Error, naming segment number, id and element, for an envelope that does not add up,
    a transaction set that is not an 835, an amount or date that does not parse, a missing
    required element, or a segment out of order (an SVC before any CLP, say).
    """
    with paused_gc():
        # The segments die with the readers' frames, before the collector runs again.
        try:
            return _read_fast(data)
        except (_Fallback, X12Error):
            # Something is wrong, or unusual enough for the fast reader to leave it: the reference
            # reader raises the error the file deserves (envelope first, then each transaction set
            # in order), or reads the file.
            return _read_reference(data)


def _read_reference(data: str | bytes) -> list[Remittance835]:
    """parse_835 by the reference reader: the envelope checked whole, then each transaction set."""
    remittances = []
    for interchange in read_interchanges(data):
        for group in interchange.groups:
            for transaction in group.transactions:
                if transaction.transaction_set != "835":
                    raise transaction.header.error(f"transaction set {transaction.transaction_set!r} is not an 835", 1)
                body = transaction.body
                remittance = _read_bpr(
                    body[0] if body else transaction.trailer,
                    control_number=transaction.control_number,
                    implementation=transaction.implementation,
                    group_control_number=group.control_number,
                    interchange_control_number=interchange.control_number,
                    segment_range=(transaction.header.number, transaction.trailer.number),
                )
                remittances.append(_Reader(interchange.delimiters, remittance).read(body[1:], transaction.trailer))
    return remittances


# --- the fast reader -------------------------------------------------------------------------


class _Fallback(Exception):
    """The fast reader leaves the file to the reference reader."""


class _OtherDelimiters(_Fallback):
    """An interchange after the first has delimiters of its own (_read_fast reads each on its own)."""


# Caches of the fast reader, value by text: amounts, dates, units and procedure composites repeat
# thousands of times in a big remittance, and a dict lookup costs far less than parsing. The
# values are immutable (Decimal, date, tuples of str). They are plain dicts, read with `cache[text]`
# in a try block (a subclass with __missing__ makes every lookup slower); a miss calls the function
# below, which parses the text, raises _Fallback when it is not a valid value, and empties the
# cache when it holds _CACHE_SIZE texts, so that distinct values cannot grow it without bound.
_CACHE_SIZE = 16384  # as parse_cents's: a few MB at most
_AMOUNTS: dict[str, Decimal] = {}  # amounts to the cent; "" and fractions of a cent are refused
_DATES: dict[str, datetime.date] = {}
_NUMBERS: dict[str, Decimal] = {}
_PROCEDURES: dict[str, dict[str, tuple[str, str, tuple[str, ...], str]]] = {}  # by component separator


def _remember(cache: dict[str, Any], text: str, value: Any) -> Any:
    if value is None:
        raise _Fallback
    if len(cache) >= _CACHE_SIZE:
        cache.clear()
    cache[text] = value
    return value


def _amount(text: str) -> Decimal:
    return _remember(_AMOUNTS, text, parse_cents(text))


def _date(text: str) -> datetime.date:
    return _remember(_DATES, text, parse_ccyymmdd(text))


def _number(text: str) -> Decimal:
    return _remember(_NUMBERS, text, parse_number(text))


def _procedure(component: str, text: str) -> tuple[str, str, tuple[str, ...], str]:
    """Qualifier, code, modifiers and description of a procedure composite."""
    parts = text.split(component)
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise _Fallback
    value = parts[0], parts[1], tuple(modifier for modifier in parts[2:6] if modifier), parts[6] if len(parts) > 6 else ""
    return _remember(_PROCEDURES[component], text, value)


_ONE = Decimal(1)
# Empty elements that pad a CLP or NM1 of n elements to 12, so that every element reads by index.
_PADDING = [[""] * (12 - n) for n in range(12)]


def _read_fast(data: str | bytes) -> list[Remittance835]:
    """parse_835 in one pass over the segments; _Fallback (or X12Error) when anything is wrong."""
    text = _as_text(data)
    start = _skip_blanks(text, 0)
    delimiters = read_delimiters(text, start)
    try:
        # The whole file at once, split with its first ISA's delimiters, as most files have one
        # interchange (or several alike; finding where each ends would be another pass).
        return _read_segments(delimiters, segment_texts(text[start:], delimiters, exact=False))
    except _OtherDelimiters:
        return [
            remittance
            for delimiters, number, texts in interchange_texts(text, exact=False)
            for remittance in _read_segments(delimiters, texts, number)
        ]


def _read_segments(delimiters: Delimiters, texts: list[str], first_number: int = 1) -> list[Remittance835]:
    """Read the segments `texts` of one or more interchanges, all with `delimiters`, the first
    segment (an ISA) numbered `first_number`; _OtherDelimiters at an ISA with other delimiters.

    The segments of claims and service lines in their usual shape are read here, with the
    reference reader's checks in cheaper form: an element that is missing or does not parse, or a
    segment out of place, leaves the segment to the reference reader's method (as are the rare
    segments), which raises X12Error or reads it. The envelope is checked as read_interchanges
    checks it.
    """
    element = delimiters.element
    component = delimiters.component
    amounts, dates, numbers = _AMOUNTS, _DATES, _NUMBERS
    procedures = _PROCEDURES.setdefault(component, {})
    new = object.__new__
    remittances: list[Remittance835] = []
    state = _CLOSED
    reader: _Reader = None  # type: ignore[assignment]  # set by BPR, before any segment that uses it
    remittance: Remittance835 = None  # type: ignore[assignment]
    claim: EraClaim = None  # type: ignore[assignment]
    line: EraLine = None  # type: ignore[assignment]
    claims: list[EraClaim] = []
    isa = group = st = Segment()  # the open interchange's ISA, functional group's GS, transaction set's ST
    groups = transactions = 0
    number = first_number - 1

    for text in texts:
        number += 1
        e = text.split(element)
        sid = e[0]
        n = len(e)
        if sid == "DTM":
            if n > 2 and e[1] and (state == _LINE or state == _CLAIM):
                qualifier = e[1]
                try:
                    value = dates[e[2]]
                except KeyError:
                    value = _date(e[2])
                if state == _LINE:
                    if qualifier == "472" or qualifier == "150":
                        line.service_date_from = value
                    if qualifier == "472" or qualifier == "151":
                        line.service_date_to = value
                else:
                    claim.dates[qualifier] = value
                    if qualifier == "232":
                        claim.statement_from = value
                    elif qualifier == "233":
                        claim.statement_to = value
                    elif qualifier == "050":
                        claim.received_date = value
                continue
        elif sid == "CAS":
            # One reason and amount, the usual CAS; more triples or a quantity go to _Reader._cas.
            if n == 4 and e[1] and e[2] and (state == _LINE or state == _CLAIM):
                try:
                    amount = amounts[e[3]]
                except KeyError:
                    amount = _amount(e[3])
                adjustment = new(Adjustment)
                adjustment.group = e[1]
                adjustment.reason = e[2]
                adjustment.amount = amount
                adjustment.quantity = None
                (line if state == _LINE else claim).adjustments.append(adjustment)
                continue
        elif sid == "REF":
            if n > 2 and e[1] and e[2]:
                if state == _LINE:
                    line.references[e[1]] = e[2]
                    if e[1] == "6R":
                        line.control_number = e[2]
                    continue
                if state == _CLAIM:
                    claim.references[e[1]] = e[2]
                    continue
        elif sid == "SVC":
            # SVC01-05; a line with SVC06 (the procedure billed, when another was paid) goes to _Reader._svc.
            if 3 < n < 7 and (state == _LINE or state == _CLAIM):
                try:
                    qualifier, code, modifiers, description = procedures[e[1]]
                except KeyError:
                    qualifier, code, modifiers, description = _procedure(component, e[1])
                try:
                    charge, paid = amounts[e[2]], amounts[e[3]]
                except KeyError:
                    charge, paid = _amount(e[2]), _amount(e[3])
                if n > 5 and e[5]:
                    try:
                        units = numbers[e[5]]
                    except KeyError:
                        units = _number(e[5])
                else:
                    units = _ONE
                procedure = new(Procedure)
                procedure.qualifier = qualifier
                procedure.code = code
                procedure.modifiers = [*modifiers]
                procedure.description = description
                # EraLine(...) without its __init__, as _new_claim (inline: there are more lines than claims).
                line = new(EraLine)
                line.procedure = procedure
                line.charge = charge
                line.paid = paid
                line.revenue_code = e[4] if n > 4 else ""
                line.units = units
                line.original_procedure = line.original_units = line.service_date_from = line.service_date_to = None
                line.adjustments = []
                line.control_number = ""
                line.remark_codes = []
                line.reject_codes = []
                line.allowed_amount = None
                line.amounts = {}
                line.quantities = {}
                line.references = {}
                line.segment_number = number
                claim.lines.append(line)
                state = _LINE
                continue
        elif sid == "AMT":
            if n > 2 and e[1] and (state == _LINE or state == _CLAIM):
                qualifier = e[1]
                try:
                    amount = amounts[e[2]]
                except KeyError:
                    amount = _amount(e[2])
                if state == _LINE:
                    line.amounts[qualifier] = amount
                    if qualifier == "B6":
                        line.allowed_amount = amount
                else:
                    claim.amounts[qualifier] = amount
                continue
        elif sid == "CLP":
            # After the payee loop (an LX is optional), not in the summary.
            if n > 4 and e[1] and e[2] and _PAYEE <= state <= _LINE:
                try:
                    charge, paid, responsibility = amounts[e[3]], amounts[e[4]], amounts[e[5]] if n > 5 and e[5] else ZERO
                except KeyError:
                    charge, paid, responsibility = _amount(e[3]), _amount(e[4]), _amount(e[5]) if n > 5 and e[5] else ZERO
                if n < 12:
                    e += _PADDING[n]
                claim = _new_claim(e, charge, paid, responsibility or ZERO, reader.lx_number, number)
                claims.append(claim)
                line = None  # type: ignore[assignment]
                state = _CLAIM
                continue
        elif sid == "NM1":
            if n > 2 and e[1] and e[2] and state == _CLAIM:
                if n < 12:
                    e += _PADDING[n]
                entity = _new_entity(e)
                code = e[1]
                if code == "QC":
                    claim.patient = entity
                elif code == "IL":
                    claim.insured = entity
                elif code == "74":
                    claim.corrected_patient = entity
                elif code == "82":
                    claim.rendering_provider = entity
                else:
                    claim.other_entities.append(entity)
                continue
        elif sid == "LQ":
            if n > 2 and e[1] and e[2] and state == _LINE:
                (line.remark_codes if e[1] == "HE" else line.reject_codes).append(e[2])
                continue
        # The envelope: any error in it is the reference reader's to report.
        elif sid == "BPR":
            if state != _START:
                raise _Fallback
            remittance = _read_bpr(
                Segment(e, number),
                control_number=st.get(2),
                implementation=st.get(3),
                group_control_number=group.get(6),
                interchange_control_number=isa.get(13),
                segment_range=(st.number, 0),  # the SE's number when it comes
            )
            reader = _Reader(delimiters, remittance)
            claims = remittance.claims
            state = _HEADER
            continue
        elif sid == "SE":
            if state <= _PAYER or not reader.has_trace:  # as _Reader.read's _require_parties
                raise _Fallback
            trailer = Segment(e, number)
            _check_count(trailer, 1, number - st.number + 1, "segments from ST through SE")
            _check_control(trailer, 2, st, 2)
            remittance.segment_range = (st.number, number)
            remittances.append(remittance)
            transactions += 1
            state = _OUTSIDE
            continue
        elif sid == "ST":
            if state != _OUTSIDE or not group or n < 3 or e[1] != "835" or not e[2]:
                raise _Fallback
            st = Segment(e, number)
            state = _START
            continue
        elif sid == "GS":
            if state != _OUTSIDE or group or n < 7 or not e[1] or not e[6]:
                raise _Fallback
            group = Segment(e, number)
            transactions = 0
            continue
        elif sid == "GE":
            if state != _OUTSIDE or not group:
                raise _Fallback
            trailer = Segment(e, number)
            _check_count(trailer, 1, transactions, "transaction sets")
            _check_control(trailer, 2, group, 6)
            groups += 1
            group = Segment()
            continue
        elif sid == "IEA":
            if state != _OUTSIDE or group:
                raise _Fallback
            trailer = Segment(e, number)
            _check_count(trailer, 1, groups, "functional groups")
            _check_control(trailer, 2, isa, 13)
            state = _CLOSED
            continue
        elif sid == "ISA":
            # The first segment, or another interchange after an IEA.
            if state != _CLOSED:
                raise _Fallback
            if number > first_number and read_delimiters(text + delimiters.segment) != delimiters:
                raise _OtherDelimiters
            isa = Segment(e, number)
            groups = 0
            state = _OUTSIDE
            continue
        elif sid == "TA1":
            if state != _OUTSIDE or group:
                raise _Fallback
            continue
        # Any other segment, or one of the above in an unusual shape or place: the reference
        # reader's method reads it or raises (none for the envelope, nor before the BPR).
        handler = _HANDLERS.get(sid)
        if handler is None or state < _HEADER:
            if state == _CLOSED and number > first_number and text.startswith("ISA"):
                raise _OtherDelimiters  # another element separator
            raise _Fallback
        reader.state, reader.claim, reader.line = state, claim, line
        handler(reader, Segment(e, number))
        state, claim, line = reader.state, reader.claim, reader.line  # type: ignore[assignment]

    if state != _CLOSED:  # the file ends inside an interchange, or (no segments) has none
        raise _Fallback
    return remittances


# The dataclasses' own __init__ parses keywords and calls a factory per list and dict field;
# objects made by object.__new__ and the fields set one by one cost a fraction of that. The fast
# reader makes them so (test_era835_fast.py checks that both readers return equal objects, every
# field set: comparing a field left unset raises).


def _new_claim(e: list[str], charge: Decimal, paid: Decimal, responsibility: Decimal, lx_number: int | None, number: int) -> EraClaim:
    """The EraClaim of a CLP padded to 12 elements."""
    claim = object.__new__(EraClaim)
    claim.patient_control_number = e[1]
    claim.status_code = e[2]
    claim.charge = charge
    claim.paid = paid
    claim.patient_responsibility = responsibility
    claim.filing_indicator = e[6]
    claim.payer_claim_control_number = e[7]
    claim.facility_type = e[8]
    claim.frequency = e[9]
    claim.drg_code = e[11]
    claim.patient = claim.insured = claim.corrected_patient = claim.rendering_provider = None
    claim.other_entities = []
    claim.statement_from = claim.statement_to = claim.received_date = None
    claim.dates = {}
    claim.amounts = {}
    claim.quantities = {}
    claim.references = {}
    claim.remark_codes = []
    claim.adjustments = []
    claim.lines = []
    claim.lx_number = lx_number
    claim.segment_number = number
    return claim


def _new_entity(e: list[str]) -> Entity:
    """The Entity of an NM1 padded to 12 elements."""
    entity = object.__new__(Entity)
    entity.entity_code = e[1]
    entity.entity_type = e[2]
    entity.last_name = e[3]
    entity.first_name = e[4]
    entity.middle_name = e[5]
    entity.suffix = e[7]
    entity.id_qualifier = e[8]
    entity.id = e[9]
    return entity
