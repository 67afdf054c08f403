"""835 health care claim payment/advice (005010X221A1) writer, as a payer (or the sandbox's test payer) sends it.

`write_835(remittances, ...)` writes one 835 transaction set per `RemittanceAdvice`: the payment
(BPR) and its reassociation trace (TRN), payer (1000A) and payee (1000B), one header number (LX)
with every claim payment (CLP) and its adjustments (CAS), names, remarks (MOA), dates and service
lines (SVC, with their CAS, REF*6R, AMT*B6 and LQ*HE), then the provider adjustments (PLB).

The payment amount is not given, it is computed: BPR02 = Σ CLP04 − Σ PLB, so a written remittance
always balances. Every claim and line must balance too (charge − paid = Σ CAS), as
`formats.x12.era835.claim_balance_difference` checks on reading; a remittance that does not is
refused with ValueError rather than written. Adjustments, procedures, names and provider
adjustments are the reader's own dataclasses (`Adjustment`, `Procedure`, `Entity`,
`ProviderAdjustment`), so what is written reads back equal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from formats.x12.era835 import Adjustment, Entity, Procedure, ProviderAdjustment
from formats.x12.model import Address
from formats.x12.tokenizer import Delimiters
from formats.x12.writer import (
    DEFAULT_DELIMITERS,
    Envelope,
    SegmentToWrite,
    format_amount,
    format_date,
    format_decimal,
    now,
    segment,
    write_interchange,
)

REMITTANCE_VERSION = "005010X221A1"
REMITTANCE_FUNCTIONAL_ID = "HP"  # GS01: health care claim payment/advice
TRANSACTION_SET_ID = "835"
ZERO = Decimal("0.00")

PAYMENT_METHODS = frozenset({"ACH", "CHK", "NON"})  # BPR04 written here (FWT and BOP exist but are rare)
CLAIM_STATUSES = frozenset({"1", "2", "3", "4", "19", "20", "21", "22", "23", "25"})
ADJUSTMENT_GROUPS = frozenset({"CO", "CR", "OA", "PI", "PR"})
MAX_CAS_TRIPLES = 6  # reason/amount/quantity triples per CAS
MAX_PLB_PAIRS = 6  # reason/amount pairs per PLB
MAX_CLAIM_REMARKS = 5  # MOA03-07
# CLP06 claim filing indicator codes of the 835. The 837's SBR09 has four more (11, BL, CI, FI) that
# the 835 does not know; `remittance_filing_indicator` maps them.
FILING_INDICATORS = frozenset({"12", "13", "14", "15", "16", "17", "AM", "CH", "DS", "HM", "LM", "MA", "MB", "MC", "OF", "TV", "VA",
                               "WC", "ZZ"})
_FILING_FROM_837 = {"CI": "15", "BL": "12", "11": "ZZ", "FI": "ZZ"}  # commercial → indemnity, Blue Cross → PPO, others → mutually defined


def remittance_filing_indicator(claim_filing_indicator: str) -> str:
    """The CLP06 code for an 837 SBR09 code (CI commercial becomes 15 indemnity, BL becomes 12 PPO…)."""
    code = _FILING_FROM_837.get(claim_filing_indicator, claim_filing_indicator)
    return code if code in FILING_INDICATORS else "ZZ"


@dataclass(frozen=True, kw_only=True)
class RemittancePayer:
    """Loop 1000A. `company_id` is TRN03 (and BPR10 for ACH): "1" followed by the payer's EIN."""

    name: str
    payer_id: str  # REF*2U
    address: Address  # N3/N4 are required in 1000A
    company_id: str
    contact_name: str = "EDI SUPPORT"  # PER*BL: the payer's technical contact, required
    contact_phone: str = ""
    contact_email: str = ""

    def __post_init__(self) -> None:
        if len(self.company_id) != 10:
            raise ValueError(f"the payer's company id (TRN03) is 10 characters, \"1\" and the EIN, got {self.company_id!r}")
        if not self.contact_phone and not self.contact_email:
            raise ValueError("the payer's technical contact (PER*BL) needs a phone or an email")


@dataclass(frozen=True, kw_only=True)
class RemittancePayee:
    """Loop 1000B: the provider paid, by NPI (N1*PE …*XX), with its tax id (REF*TJ)."""

    name: str
    npi: str
    tax_id: str = ""
    address: Address | None = None


@dataclass(frozen=True, kw_only=True)
class LinePayment:
    """Loop 2110: one service line paid (SVC). Balanced when charge − paid = Σ adjustments."""

    procedure: Procedure  # SVC01: qualifier HC/NU/…, code, modifiers
    charge: Decimal  # SVC02
    paid: Decimal  # SVC03
    revenue_code: str = ""  # SVC04 (institutional, with an HCPCS procedure)
    units: Decimal = Decimal(1)  # SVC05, written only when it is not one
    original_procedure: Procedure | None = None  # SVC06, when the payer paid another code than billed
    service_date: date | None = None  # DTM*472 (or DTM*150/151 for a range)
    service_date_to: date | None = None
    adjustments: Sequence[Adjustment] = ()
    control_number: str = ""  # REF*6R: the 837's line item control number
    allowed_amount: Decimal | None = None  # AMT*B6
    remark_codes: Sequence[str] = ()  # LQ*HE (RARC)


@dataclass(frozen=True, kw_only=True)
class ClaimPayment:
    """Loop 2100: one claim paid, partially paid, denied or reversed (CLP).

    `patient_responsibility` (CLP05) defaults to the sum of the PR adjustments. A reversal (status
    22) carries the original payment's amounts negated and its payer claim control number.
    `original_reference` (REF*F8) is the payer claim control number of the claim this one corrects.
    """

    patient_control_number: str  # CLP01: the 837's CLM01
    status: str  # CLP02: 1, 2, 3 processed, 4 denied, 22 reversal…
    charge: Decimal  # CLP03
    paid: Decimal  # CLP04
    patient: Entity  # NM1*QC
    patient_responsibility: Decimal | None = None  # CLP05
    filing_indicator: str = "12"  # CLP06 (FILING_INDICATORS): 12 PPO, 15 indemnity, MC Medicaid, MB Medicare Part B…
    payer_claim_control_number: str = ""  # CLP07
    facility_type: str = ""  # CLP08: place of service (professional) or facility type (institutional)
    frequency: str = ""  # CLP09
    insured: Entity | None = None  # NM1*IL, when the patient is not the subscriber
    rendering_provider: Entity | None = None  # NM1*82
    adjustments: Sequence[Adjustment] = ()  # claim-level CAS
    remark_codes: Sequence[str] = ()  # MOA03-07 (outpatient remarks)
    original_reference: str = ""  # REF*F8
    statement_from: date | None = None  # DTM*232
    statement_to: date | None = None  # DTM*233
    received_date: date | None = None  # DTM*050
    coverage_amount: Decimal | None = None  # AMT*AU
    lines: Sequence[LinePayment] = ()

    @property
    def total_patient_responsibility(self) -> Decimal:
        if self.patient_responsibility is not None:
            return self.patient_responsibility
        adjustments = [*self.adjustments, *(a for line in self.lines for a in line.adjustments)]
        return sum((a.amount for a in adjustments if a.group == "PR"), ZERO)


@dataclass(frozen=True, kw_only=True)
class RemittanceAdvice:
    """One 835 transaction set: one payment from one payer to one payee.

    `payment_method` is CHK (check), ACH (EFT) or NON (no payment); a remittance paying nothing is
    always written as a notification (BPR01 H, BPR04 NON). For ACH, the payer's and payee's bank
    routing (9 digits) and account numbers go in BPR06-15. `trace_number` is TRN02: the check
    number or the EFT trace number the payee reassociates the money with.
    """

    payer: RemittancePayer
    payee: RemittancePayee
    payment_method: str
    trace_number: str
    payment_date: date  # BPR16: check issue or EFT effective date
    claims: Sequence[ClaimPayment] = ()
    provider_adjustments: Sequence[ProviderAdjustment] = ()
    production_date: date | None = None  # DTM*405
    receiver_id: str = ""  # REF*EV: the receiver's id at the payer
    payer_routing_number: str = ""
    payer_account_number: str = ""
    payee_routing_number: str = ""
    payee_account_number: str = ""

    @property
    def payment_amount(self) -> Decimal:
        """BPR02 = Σ CLP04 − Σ PLB (a positive PLB withholds, a negative one adds)."""
        paid = sum((claim.paid for claim in self.claims), ZERO)
        return paid - sum((adjustment.amount for adjustment in self.provider_adjustments), ZERO)


# --- segments --------------------------------------------------------------------------------------


def _address(address: Address) -> list[SegmentToWrite]:
    return [segment("N3", address.line1, address.line2), segment("N4", address.city, address.state, address.postal_code, address.country)]


def _procedure(procedure: Procedure) -> tuple[str, ...]:
    if len(procedure.modifiers) > 4:
        raise ValueError(f"procedure {procedure.code}: at most four modifiers")
    modifiers = list(procedure.modifiers) + [""] * (4 - len(procedure.modifiers))
    return (procedure.qualifier, procedure.code, *modifiers, procedure.description)


def _cas(adjustments: Sequence[Adjustment], where: str) -> list[SegmentToWrite]:
    """One CAS per group (in the order the groups first appear), six triples a segment."""
    groups: dict[str, list[Adjustment]] = {}
    for adjustment in adjustments:
        if adjustment.group not in ADJUSTMENT_GROUPS:
            raise ValueError(f"{where}: {adjustment.group!r} is not an adjustment group ({', '.join(sorted(ADJUSTMENT_GROUPS))})")
        if not adjustment.reason:
            raise ValueError(f"{where}: an adjustment needs a reason code (CARC)")
        groups.setdefault(adjustment.group, []).append(adjustment)
    segments = []
    for group, members in groups.items():
        for start in range(0, len(members), MAX_CAS_TRIPLES):
            elements: list[str] = []
            for adjustment in members[start : start + MAX_CAS_TRIPLES]:
                quantity = "" if adjustment.quantity is None else format_decimal(adjustment.quantity)
                elements += [adjustment.reason, format_amount(adjustment.amount), quantity]
            segments.append(segment("CAS", group, *elements))
    return segments


def _entity(entity: Entity) -> SegmentToWrite:
    return segment("NM1", entity.entity_code, entity.entity_type, entity.last_name, entity.first_name, entity.middle_name, "",
                   entity.suffix, entity.id_qualifier, entity.id)


def _dates(qualifier_single: str, start: date | None, end: date | None) -> list[SegmentToWrite]:
    if start is None:
        return []
    if end is None or end == start:
        return [segment("DTM", qualifier_single, format_date(start))]
    return [segment("DTM", "150", format_date(start)), segment("DTM", "151", format_date(end))]


def _check_balanced(claim: ClaimPayment) -> None:
    name = f"claim {claim.patient_control_number}"
    if claim.status not in CLAIM_STATUSES:
        raise ValueError(f"{name}: {claim.status!r} is not a claim status code (CLP02)")
    if claim.filing_indicator not in FILING_INDICATORS:
        raise ValueError(f"{name}: {claim.filing_indicator!r} is not an 835 claim filing indicator (CLP06); see remittance_filing_indicator")
    if len(claim.remark_codes) > MAX_CLAIM_REMARKS:
        raise ValueError(f"{name}: MOA carries at most {MAX_CLAIM_REMARKS} remark codes")
    total = sum((a.amount for a in claim.adjustments), ZERO)
    for number, line in enumerate(claim.lines, start=1):
        line_adjustments = sum((a.amount for a in line.adjustments), ZERO)
        if line.charge - line.paid != line_adjustments:
            raise ValueError(f"{name}, line {number}: charge {line.charge} − paid {line.paid} is not the sum of its adjustments "
                             f"{line_adjustments}")
        total += line_adjustments
    if claim.charge - claim.paid != total:
        raise ValueError(f"{name}: charge {claim.charge} − paid {claim.paid} is not the sum of the claim and line adjustments {total}")


def _claim(claim: ClaimPayment) -> list[SegmentToWrite]:
    _check_balanced(claim)
    segments = [
        segment("CLP", claim.patient_control_number, claim.status, format_amount(claim.charge), format_amount(claim.paid),
                format_amount(claim.total_patient_responsibility), claim.filing_indicator, claim.payer_claim_control_number,
                claim.facility_type, claim.frequency),
        *_cas(claim.adjustments, f"claim {claim.patient_control_number}"),
        _entity(claim.patient),
    ]
    if claim.insured is not None:
        segments.append(_entity(claim.insured))
    if claim.rendering_provider is not None:
        segments.append(_entity(claim.rendering_provider))
    if claim.remark_codes:
        segments.append(segment("MOA", "", "", *claim.remark_codes))
    if claim.original_reference:
        segments.append(segment("REF", "F8", claim.original_reference))
    if claim.statement_from is not None:
        segments.append(segment("DTM", "232", format_date(claim.statement_from)))
    if claim.statement_to is not None:
        segments.append(segment("DTM", "233", format_date(claim.statement_to)))
    if claim.received_date is not None:
        segments.append(segment("DTM", "050", format_date(claim.received_date)))
    if claim.coverage_amount is not None:
        segments.append(segment("AMT", "AU", format_amount(claim.coverage_amount)))
    for number, line in enumerate(claim.lines, start=1):
        segments.extend(_line(claim, number, line))
    return segments


def _line(claim: ClaimPayment, number: int, line: LinePayment) -> list[SegmentToWrite]:
    units = "" if line.units == 1 else format_decimal(line.units)
    original = _procedure(line.original_procedure) if line.original_procedure is not None else None
    segments = [
        segment("SVC", _procedure(line.procedure), format_amount(line.charge), format_amount(line.paid), line.revenue_code, units,
                original),
        *_dates("472", line.service_date, line.service_date_to),
        *_cas(line.adjustments, f"claim {claim.patient_control_number}, line {number}"),
    ]
    if line.control_number:
        segments.append(segment("REF", "6R", line.control_number))
    if line.allowed_amount is not None:
        segments.append(segment("AMT", "B6", format_amount(line.allowed_amount)))
    segments.extend(segment("LQ", "HE", code) for code in line.remark_codes)
    return segments


def _provider_adjustments(adjustments: Sequence[ProviderAdjustment]) -> list[SegmentToWrite]:
    """One PLB per provider and fiscal period, six reason/amount pairs a segment."""
    grouped: dict[tuple[str, date], list[ProviderAdjustment]] = {}
    for adjustment in adjustments:
        grouped.setdefault((adjustment.provider_id, adjustment.fiscal_period_date), []).append(adjustment)
    segments = []
    for (provider_id, fiscal_period), members in grouped.items():
        for start in range(0, len(members), MAX_PLB_PAIRS):
            elements: list[str | tuple[str, ...]] = []
            for adjustment in members[start : start + MAX_PLB_PAIRS]:
                reason = (adjustment.reason, adjustment.reference) if adjustment.reference else adjustment.reason
                elements += [reason, format_amount(adjustment.amount)]
            segments.append(segment("PLB", provider_id, format_date(fiscal_period), *elements))
    return segments


def _bpr(remittance: RemittanceAdvice, amount: Decimal) -> SegmentToWrite:
    day = format_date(remittance.payment_date)
    if amount == 0 or remittance.payment_method == "NON":
        if amount != 0:
            raise ValueError(f"trace {remittance.trace_number}: a payment of {amount} cannot be sent as NON (no payment)")
        return segment("BPR", "H", "0", "C", "NON", *[""] * 11, day)
    if remittance.payment_method == "CHK":
        return segment("BPR", "I", format_amount(amount), "C", "CHK", *[""] * 11, day)
    banking = (remittance.payer_routing_number, remittance.payer_account_number, remittance.payee_routing_number,
               remittance.payee_account_number)
    if not all(banking):
        raise ValueError(f"trace {remittance.trace_number}: an ACH payment needs the payer's and payee's routing and account numbers")
    return segment("BPR", "I", format_amount(amount), "C", "ACH", "CCP", "01", remittance.payer_routing_number, "DA",
                   remittance.payer_account_number, remittance.payer.company_id, "", "01", remittance.payee_routing_number, "DA",
                   remittance.payee_account_number, day)


def remittance_segments(remittance: RemittanceAdvice) -> list[SegmentToWrite]:
    """The body (BPR … PLB) of one 835 transaction set. Raises ValueError as `write_835` does."""
    if remittance.payment_method not in PAYMENT_METHODS:
        raise ValueError(f"payment method {remittance.payment_method!r} is not one of {', '.join(sorted(PAYMENT_METHODS))}")
    if not remittance.trace_number:
        raise ValueError("an 835 needs a trace number (TRN02): the check or EFT trace number")
    if not remittance.claims and not remittance.provider_adjustments:
        raise ValueError(f"trace {remittance.trace_number}: an 835 pays at least one claim or carries a provider adjustment")
    claim_segments = [seg for claim in remittance.claims for seg in _claim(claim)]  # checks each claim before the total
    amount = remittance.payment_amount
    if amount < 0:
        raise ValueError(
            f"trace {remittance.trace_number}: the payment Σ CLP04 − Σ PLB is {amount}; a payer carries a negative balance "
            "forward with a PLB FB (forward balance) adjustment so that the payment is zero or more"
        )
    payer, payee = remittance.payer, remittance.payee
    segments = [
        _bpr(remittance, amount),
        segment("TRN", "1", remittance.trace_number, payer.company_id),
    ]
    if remittance.receiver_id:
        segments.append(segment("REF", "EV", remittance.receiver_id))
    if remittance.production_date is not None:
        segments.append(segment("DTM", "405", format_date(remittance.production_date)))
    contact: list[str] = []
    if payer.contact_phone:
        contact += ["TE", payer.contact_phone]
    if payer.contact_email:
        contact += ["EM", payer.contact_email]
    segments += [
        segment("N1", "PR", payer.name),
        *_address(payer.address),
        segment("REF", "2U", payer.payer_id),
        segment("PER", "BL", payer.contact_name, *contact),
        segment("N1", "PE", payee.name, "XX", payee.npi),
    ]
    if payee.address is not None:
        segments.extend(_address(payee.address))
    if payee.tax_id:
        segments.append(segment("REF", "TJ", payee.tax_id))
    if remittance.claims:
        segments.append(segment("LX", "1"))
        segments.extend(claim_segments)
    segments.extend(_provider_adjustments(remittance.provider_adjustments))
    return segments


def write_835(
    remittances: Sequence[RemittanceAdvice],
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
    """An 835 interchange (ISA to IEA) with one transaction set per remittance, in one functional group.

    `sender_id` is the payer's (or clearinghouse's) interchange id, `receiver_id` the payee's;
    `control_number` is ISA13/GS06. Raises ValueError for a remittance that cannot be written as a
    valid 835: a claim or line that does not balance, a negative payment (carry it forward with a
    PLB FB), an ACH payment without bank details, an unknown status, group or payment method; and
    `DelimiterInValueError` (a ValueError) for a value containing one of `delimiters`.
    """
    if not remittances:
        raise ValueError("an 835 interchange needs at least one remittance")
    envelope = Envelope(
        sender_id=sender_id, receiver_id=receiver_id, sender_qualifier=sender_qualifier, receiver_qualifier=receiver_qualifier,
        control_number=control_number, functional_id=REMITTANCE_FUNCTIONAL_ID, version=REMITTANCE_VERSION,
        created_at=created_at or now(), usage_indicator=usage_indicator,
    )
    bodies = [remittance_segments(remittance) for remittance in remittances]
    text = write_interchange(envelope, TRANSACTION_SET_ID, bodies, delimiters=delimiters, line_breaks=line_breaks)
    return _without_st03(text, len(bodies), delimiters)


def _without_st03(text: str, transactions: int, delimiters: Delimiters) -> str:
    """Drop ST03 from each ST: the 835 guide marks it "not used" (validators refuse it), while the
    shared envelope writer always writes it. SE01 counts segments, so the counts stay right; the
    exact segment text cannot occur inside a value, because values never contain a delimiter."""
    element, terminator = delimiters.element, delimiters.segment
    for number in range(1, transactions + 1):
        header = f"ST{element}{TRANSACTION_SET_ID}{element}{number:04d}"
        with_st03 = f"{header}{element}{REMITTANCE_VERSION}{terminator}"
        if text.count(with_st03) != 1:
            raise RuntimeError(f"the envelope writer's ST changed shape: {with_st03!r} not found once")
        text = text.replace(with_st03, header + terminator)
    return text
