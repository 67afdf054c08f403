"""837 claim writers: professional (005010X222A1) and institutional (005010X223A2).

Claims are grouped into the hierarchy the guides require: one 2000A per billing provider, one
2000B per subscriber and payer under it, and, when the patient is not the subscriber, one 2000C per
patient under the subscriber (the claims then sit in the 2000C). Order is kept as given.

Each function returns the complete interchange as text (ISA to IEA). The guides recommend at most
5000 claims (CLM) per transaction, so bigger batches are split into several ST/SE in one group; a
2000B/2000C holds at most 100 claims, so a subscriber with more is repeated.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from formats.x12.model import (
    RELATIONSHIP_SELF,
    Address,
    Claim,
    ClaimLine,
    Party,
    Patient,
    Payer,
    Receiver,
    Submitter,
    Subscriber,
)
from formats.x12.writer import (
    DEFAULT_DELIMITERS,
    Delimiters,
    Envelope,
    SegmentToWrite,
    format_amount,
    format_date,
    format_decimal,
    format_time,
    now,
    segment,
    write_interchange,
)

PROFESSIONAL_VERSION = "005010X222A1"
INSTITUTIONAL_VERSION = "005010X223A2"
CLAIM_FUNCTIONAL_ID = "HC"  # GS01: health care claim
TRANSACTION_SET_ID = "837"

MAX_CLAIMS_PER_TRANSACTION = 5000  # the guides' recommended maximum of CLM segments per ST
MAX_CLAIMS_PER_HL = 100  # 2300 repeats at most 100 times under a 2000B or 2000C
MAX_LINES_PROFESSIONAL = 50  # 2400 repeat in 005010X222A1
MAX_LINES_INSTITUTIONAL = 999  # 2400 repeat in 005010X223A2
MAX_OTHER_DIAGNOSES_INSTITUTIONAL = 24  # two HI*ABF segments of 12
DIAGNOSES_PER_HI = 12

# BHT
BHT_STRUCTURE = "0019"  # information source, subscriber, dependent
BHT_ORIGINAL = "00"
TRANSACTION_TYPE_CHARGEABLE = "CH"  # a claim for payment (RP would be an encounter report)

# HL03 hierarchical level codes
LEVEL_BILLING_PROVIDER = "20"
LEVEL_SUBSCRIBER = "22"
LEVEL_PATIENT = "23"

# ICD-10-CM code list qualifiers
PRINCIPAL_DIAGNOSIS = "ABK"
OTHER_DIAGNOSIS = "ABF"
ADMITTING_DIAGNOSIS = "ABJ"

PROCEDURE_QUALIFIER = "HC"  # HCPCS/CPT
NPI_QUALIFIER = "XX"
PROVIDER_TAXONOMY_QUALIFIER = "PXC"


ClaimSegments = Callable[[Claim], list[SegmentToWrite]]


@dataclass
class _PatientGroup:
    patient: Patient | None
    claims: list[Claim]


def write_837p(
    claims: Sequence[Claim],
    *,
    submitter: Submitter,
    receiver: Receiver,
    control_number: int,
    created_at: datetime | None = None,
    usage_indicator: str = "T",
    reference: str = "",
    delimiters: Delimiters = DEFAULT_DELIMITERS,
    line_breaks: bool = False,
) -> str:
    """An 837P (005010X222A1) interchange for professional `claims`.

    `control_number` is ISA13/GS06; `reference` is BHT03 (defaults to the control number);
    `usage_indicator` is ISA15, T (test) or P (production). Raises ValueError for a claim the guide
    cannot carry (no place of service, more than 50 lines or 12 diagnoses, a diagnosis pointer past
    the list) and `DelimiterInValueError` (a ValueError) for a value containing a delimiter.
    """
    for claim in claims:
        _check_professional(claim)
    return _write(
        claims,
        version=PROFESSIONAL_VERSION,
        claim_segments=_professional_claim,
        submitter=submitter,
        receiver=receiver,
        control_number=control_number,
        created_at=created_at,
        usage_indicator=usage_indicator,
        reference=reference,
        delimiters=delimiters,
        line_breaks=line_breaks,
    )


def write_837i(
    claims: Sequence[Claim],
    *,
    submitter: Submitter,
    receiver: Receiver,
    control_number: int,
    created_at: datetime | None = None,
    usage_indicator: str = "T",
    reference: str = "",
    delimiters: Delimiters = DEFAULT_DELIMITERS,
    line_breaks: bool = False,
) -> str:
    """An 837I (005010X223A2) interchange for institutional `claims`.

    Same parameters and errors as `write_837p`. Each claim needs a facility type code (the type of
    bill is that plus the frequency code), statement dates, a patient status code (CL103) and a
    revenue code on every line.
    """
    for claim in claims:
        _check_institutional(claim)
    return _write(
        claims,
        version=INSTITUTIONAL_VERSION,
        claim_segments=_institutional_claim,
        submitter=submitter,
        receiver=receiver,
        control_number=control_number,
        created_at=created_at,
        usage_indicator=usage_indicator,
        reference=reference,
        delimiters=delimiters,
        line_breaks=line_breaks,
    )


def _write(
    claims: Sequence[Claim],
    *,
    version: str,
    claim_segments: ClaimSegments,
    submitter: Submitter,
    receiver: Receiver,
    control_number: int,
    created_at: datetime | None,
    usage_indicator: str,
    reference: str,
    delimiters: Delimiters,
    line_breaks: bool,
) -> str:
    if not claims:
        raise ValueError("an 837 needs at least one claim")
    created_at = created_at or now()
    envelope = Envelope.between(submitter, receiver, control_number=control_number, functional_id=CLAIM_FUNCTIONAL_ID, version=version,
                                created_at=created_at, usage_indicator=usage_indicator)
    reference = reference or str(control_number)
    transactions = []
    for start in range(0, len(claims), MAX_CLAIMS_PER_TRANSACTION):
        chunk = claims[start : start + MAX_CLAIMS_PER_TRANSACTION]
        body = _header(submitter, receiver, reference, created_at)
        body.extend(_hierarchy(chunk, claim_segments))
        transactions.append(body)
    return write_interchange(envelope, TRANSACTION_SET_ID, transactions, delimiters=delimiters, line_breaks=line_breaks)


def _header(submitter: Submitter, receiver: Receiver, reference: str, created_at: datetime) -> list[SegmentToWrite]:
    contact: list[str] = []
    if submitter.contact_phone:
        contact += ["TE", submitter.contact_phone]
    if submitter.contact_email:
        contact += ["EM", submitter.contact_email]
    return [
        segment("BHT", BHT_STRUCTURE, BHT_ORIGINAL, reference, format_date(created_at), format_time(created_at),
                TRANSACTION_TYPE_CHARGEABLE),
        # 1000A submitter: NM108 46 = electronic transmitter identification number (ETIN)
        segment("NM1", "41", "1" if submitter.is_person else "2", submitter.name, "", "", "", "", "46", submitter.identifier),
        segment("PER", "IC", submitter.contact_name, *contact),
        # 1000B receiver
        segment("NM1", "40", "2", receiver.name, "", "", "", "", "46", receiver.identifier),
    ]


def _group(claims: Iterable[Claim]) -> dict[Party, dict[tuple[Subscriber, Payer, bool], list[_PatientGroup]]]:
    """billing provider → (subscriber, payer, has dependents) → patients with their claims, in order.

    Claims where the subscriber is the patient and claims for dependents of the same subscriber go
    to separate 2000B levels: the first carry their claims in 2000B, the second in 2000C.
    """
    providers: dict[Party, dict[tuple[Subscriber, Payer, bool], list[_PatientGroup]]] = {}
    for claim in claims:
        subscribers = providers.setdefault(claim.billing_provider, {})
        patients = subscribers.setdefault((claim.subscriber, claim.payer, claim.patient is not None), [])
        for group in patients:
            if group.patient == claim.patient:
                group.claims.append(claim)
                break
        else:
            patients.append(_PatientGroup(claim.patient, [claim]))
    return providers


def _chunks(claims: list[Claim], size: int) -> list[list[Claim]]:
    return [claims[start : start + size] for start in range(0, len(claims), size)]


def _hierarchy(claims: Sequence[Claim], claim_segments: ClaimSegments) -> list[SegmentToWrite]:
    segments: list[SegmentToWrite] = []
    level = 0
    for provider, subscribers in _group(claims).items():
        level += 1
        provider_level = level
        segments.append(segment("HL", str(provider_level), "", LEVEL_BILLING_PROVIDER, "1"))
        segments.extend(_billing_provider(provider))
        for (subscriber, payer, has_dependents), patient_groups in subscribers.items():
            if not has_dependents:
                # The subscriber is the patient: claims sit in 2000B, at most 100 per level.
                for chunk in _chunks(patient_groups[0].claims, MAX_CLAIMS_PER_HL):
                    level += 1
                    segments.append(segment("HL", str(level), str(provider_level), LEVEL_SUBSCRIBER, "0"))
                    segments.extend(_subscriber(subscriber, payer, is_patient=True))
                    for claim in chunk:
                        segments.extend(claim_segments(claim))
                continue
            level += 1
            subscriber_level = level
            segments.append(segment("HL", str(subscriber_level), str(provider_level), LEVEL_SUBSCRIBER, "1"))
            segments.extend(_subscriber(subscriber, payer, is_patient=False))
            for group in patient_groups:
                assert group.patient is not None  # grouped under has_dependents
                for chunk in _chunks(group.claims, MAX_CLAIMS_PER_HL):
                    level += 1
                    segments.append(segment("HL", str(level), str(subscriber_level), LEVEL_PATIENT, "0"))
                    segments.extend(_patient(group.patient))
                    for claim in chunk:
                        segments.extend(claim_segments(claim))
    return segments


def _name(party: Party) -> tuple[str, str, str, str]:
    """NM102 entity type, NM103 last or organization name, NM104 first, NM105 middle."""
    if party.is_person:
        return "1", party.last_name, party.first_name, party.middle_name
    return "2", party.organization_name, "", ""


def _address(address: Address) -> list[SegmentToWrite]:
    return [
        segment("N3", address.line1, address.line2),
        segment("N4", address.city, address.state, address.postal_code, address.country),
    ]


def _billing_provider(provider: Party) -> list[SegmentToWrite]:
    if provider.address is None:
        raise ValueError(f"billing provider {provider.npi}: an address is required (2010AA N3/N4)")
    if len(provider.address.postal_code) != 9:
        raise ValueError(f"billing provider {provider.npi}: the postal code must have 9 digits, got {provider.address.postal_code!r}")
    if not provider.tax_id:
        raise ValueError(f"billing provider {provider.npi}: a tax id (EIN) is required (REF*EI)")
    segments = []
    if provider.taxonomy_code:
        segments.append(segment("PRV", "BI", PROVIDER_TAXONOMY_QUALIFIER, provider.taxonomy_code))
    segments.append(segment("NM1", "85", *_name(provider), "", "", NPI_QUALIFIER, provider.npi))
    segments.extend(_address(provider.address))
    segments.append(segment("REF", "EI", provider.tax_id))
    return segments


def _subscriber(subscriber: Subscriber, payer: Payer, *, is_patient: bool) -> list[SegmentToWrite]:
    # SBR02 says "18" only when the subscriber is the patient; otherwise it is left empty.
    relationship = subscriber.relationship if is_patient else ""
    group_name = "" if subscriber.group_number else subscriber.group_name
    segments = [
        segment("SBR", subscriber.payer_responsibility, relationship, subscriber.group_number, group_name,
                "", "", "", "", subscriber.claim_filing_indicator),
        segment("NM1", "IL", "1", subscriber.last_name, subscriber.first_name, subscriber.middle_name, "", "",
                "MI", subscriber.member_id),
    ]
    if subscriber.address is not None:
        segments.extend(_address(subscriber.address))
    elif is_patient:
        raise ValueError(f"subscriber {subscriber.member_id}: an address is required when the subscriber is the patient")
    if subscriber.birth_date is not None:
        segments.append(segment("DMG", "D8", format_date(subscriber.birth_date), subscriber.sex))
    elif is_patient:
        raise ValueError(f"subscriber {subscriber.member_id}: a birth date is required when the subscriber is the patient")
    segments.append(segment("NM1", "PR", "2", payer.name, "", "", "", "", "PI", payer.payer_id))
    if payer.address is not None:
        segments.extend(_address(payer.address))
    return segments


def _patient(patient: Patient) -> list[SegmentToWrite]:
    if patient.relationship == RELATIONSHIP_SELF:
        raise ValueError("a patient with relationship 18 (self) is the subscriber: leave Claim.patient empty")
    return [
        segment("PAT", patient.relationship),
        segment("NM1", "QC", "1", patient.last_name, patient.first_name, patient.middle_name),
        *_address(patient.address),
        segment("DMG", "D8", format_date(patient.birth_date), patient.sex),
    ]


def _diagnosis(code: str) -> str:
    """ICD-10-CM without the dot, as X12 carries it (E11.9 → E119)."""
    return code.replace(".", "").strip().upper()


def _claim_references(claim: Claim) -> list[SegmentToWrite]:
    segments = []
    if claim.prior_authorization:
        segments.append(segment("REF", "G1", claim.prior_authorization))
    if claim.payer_claim_control_number:
        segments.append(segment("REF", "F8", claim.payer_claim_control_number))
    return segments


def _provider(entity_code: str, party: Party, *, specialty_code: str = "") -> list[SegmentToWrite]:
    segments = [segment("NM1", entity_code, *_name(party), "", "", NPI_QUALIFIER, party.npi)]
    if specialty_code and party.taxonomy_code:
        segments.append(segment("PRV", specialty_code, PROVIDER_TAXONOMY_QUALIFIER, party.taxonomy_code))
    return segments


def _procedure(line: ClaimLine) -> tuple[str, ...]:
    return (PROCEDURE_QUALIFIER, line.procedure_code, *line.modifiers)


def _service_date(line: ClaimLine) -> SegmentToWrite:
    if line.service_date_to is None or line.service_date_to == line.service_date:
        return segment("DTP", "472", "D8", format_date(line.service_date))
    return segment("DTP", "472", "RD8", f"{format_date(line.service_date)}-{format_date(line.service_date_to)}")


# --- 837P -------------------------------------------------------------------------------------


def _check_total(claim: Claim) -> None:
    # Payers reject a claim whose CLM02 is not the sum of its line charges; say so before sending.
    lines_total = sum((line.charge for line in claim.lines), Decimal(0))
    if lines_total != claim.total_charge:
        raise ValueError(
            f"claim {claim.patient_control_number}: total charge {claim.total_charge} is not the sum of the line "
            f"charges {lines_total}"
        )


def _check_professional(claim: Claim) -> None:
    name = f"claim {claim.patient_control_number}"
    _check_total(claim)
    if not claim.place_of_service:
        raise ValueError(f"{name}: a professional claim needs a place of service (CLM05-1)")
    if len(claim.lines) > MAX_LINES_PROFESSIONAL:
        raise ValueError(f"{name}: an 837P claim has at most {MAX_LINES_PROFESSIONAL} lines, got {len(claim.lines)}")
    if len(claim.diagnoses) > DIAGNOSES_PER_HI:
        raise ValueError(f"{name}: an 837P claim has at most {DIAGNOSES_PER_HI} diagnoses, got {len(claim.diagnoses)}")
    for number, line in enumerate(claim.lines, start=1):
        if not line.diagnosis_pointers:
            raise ValueError(f"{name}, line {number}: a professional line needs at least one diagnosis pointer")
        for pointer in line.diagnosis_pointers:
            if not 1 <= pointer <= len(claim.diagnoses):
                raise ValueError(f"{name}, line {number}: diagnosis pointer {pointer} is not in 1..{len(claim.diagnoses)}")


def _professional_claim(claim: Claim) -> list[SegmentToWrite]:
    segments = [
        segment(
            "CLM",
            claim.patient_control_number,
            format_amount(claim.total_charge),
            "",
            "",
            (claim.place_of_service, "B", claim.frequency_code),  # B: place of service codes for professional claims
            claim.provider_signature_on_file,
            claim.assignment_code,
            claim.benefits_assigned,
            claim.release_of_information,
        ),
        *_claim_references(claim),
    ]
    principal, *others = claim.diagnoses
    segments.append(
        segment("HI", (PRINCIPAL_DIAGNOSIS, _diagnosis(principal)), *((OTHER_DIAGNOSIS, _diagnosis(code)) for code in others))
    )
    if claim.referring_provider is not None:
        segments.extend(_provider("DN", claim.referring_provider))  # 2310A
    if claim.rendering_provider is not None:
        segments.extend(_provider("82", claim.rendering_provider, specialty_code="PE"))  # 2310B
    for number, line in enumerate(claim.lines, start=1):
        segments.extend(_professional_line(claim, number, line))
    return segments


def _professional_line(claim: Claim, number: int, line: ClaimLine) -> list[SegmentToWrite]:
    place = line.place_of_service if line.place_of_service != claim.place_of_service else ""
    segments = [
        segment("LX", str(number)),
        segment(
            "SV1",
            _procedure(line),
            format_amount(line.charge),
            line.unit_basis,
            format_decimal(line.units),
            place,
            "",
            tuple(str(pointer) for pointer in line.diagnosis_pointers),
        ),
        _service_date(line),
    ]
    if line.prior_authorization:
        segments.append(segment("REF", "G1", line.prior_authorization))
    if line.line_control_number:
        segments.append(segment("REF", "6R", line.line_control_number))
    if line.rendering_provider is not None:
        segments.extend(_provider("82", line.rendering_provider, specialty_code="PE"))  # 2420A
    return segments


# --- 837I -------------------------------------------------------------------------------------


def _check_institutional(claim: Claim) -> None:
    name = f"claim {claim.patient_control_number}"
    _check_total(claim)
    if not claim.facility_type_code:
        raise ValueError(f"{name}: an institutional claim needs a facility type code (CLM05-1)")
    if claim.statement_from is None or claim.statement_to is None:
        raise ValueError(f"{name}: an institutional claim needs statement dates (DTP*434)")
    if not claim.patient_status_code:
        raise ValueError(f"{name}: an institutional claim needs a patient status code (CL103)")
    if len(claim.lines) > MAX_LINES_INSTITUTIONAL:
        raise ValueError(f"{name}: an 837I claim has at most {MAX_LINES_INSTITUTIONAL} lines, got {len(claim.lines)}")
    if len(claim.diagnoses) - 1 > MAX_OTHER_DIAGNOSES_INSTITUTIONAL:
        raise ValueError(f"{name}: an 837I claim has at most {MAX_OTHER_DIAGNOSES_INSTITUTIONAL} other diagnoses")
    for number, line in enumerate(claim.lines, start=1):
        if not line.revenue_code:
            raise ValueError(f"{name}, line {number}: an institutional line needs a revenue code (SV201)")


def _institutional_claim(claim: Claim) -> list[SegmentToWrite]:
    assert claim.statement_from is not None and claim.statement_to is not None  # _check_institutional
    segments = [
        segment(
            "CLM",
            claim.patient_control_number,
            format_amount(claim.total_charge),
            "",
            "",
            (claim.facility_type_code, "A", claim.frequency_code),  # A: uniform billing claim form bill type
            "",  # CLM06 is not used on institutional claims
            claim.assignment_code,
            claim.benefits_assigned,
            claim.release_of_information,
        ),
        segment("DTP", "434", "RD8", f"{format_date(claim.statement_from)}-{format_date(claim.statement_to)}"),
    ]
    if claim.admission_date is not None:
        segments.append(segment("DTP", "435", "D8", format_date(claim.admission_date)))
    segments.append(segment("CL1", claim.admission_type_code, claim.admission_source_code, claim.patient_status_code))
    segments.extend(_claim_references(claim))
    principal, *others = claim.diagnoses
    segments.append(segment("HI", (PRINCIPAL_DIAGNOSIS, _diagnosis(principal))))
    if claim.admitting_diagnosis:
        segments.append(segment("HI", (ADMITTING_DIAGNOSIS, _diagnosis(claim.admitting_diagnosis))))
    for start in range(0, len(others), DIAGNOSES_PER_HI):
        chunk = others[start : start + DIAGNOSES_PER_HI]
        segments.append(segment("HI", *((OTHER_DIAGNOSIS, _diagnosis(code)) for code in chunk)))
    if claim.attending_provider is not None:
        segments.extend(_provider("71", claim.attending_provider, specialty_code="AT"))  # 2310A
    if claim.rendering_provider is not None:
        segments.extend(_provider("82", claim.rendering_provider))  # 2310D
    if claim.referring_provider is not None:
        segments.extend(_provider("DN", claim.referring_provider))  # 2310F
    for number, line in enumerate(claim.lines, start=1):
        segments.extend(_institutional_line(number, line))
    return segments


def _institutional_line(number: int, line: ClaimLine) -> list[SegmentToWrite]:
    segments = [
        segment("LX", str(number)),
        segment(
            "SV2",
            line.revenue_code,
            _procedure(line) if line.procedure_code else None,
            format_amount(line.charge),
            line.unit_basis,
            format_decimal(line.units),
        ),
        _service_date(line),
    ]
    if line.line_control_number:
        segments.append(segment("REF", "6R", line.line_control_number))
    if line.rendering_provider is not None:
        segments.extend(_provider("82", line.rendering_provider))  # 2420C
    return segments
