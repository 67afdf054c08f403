"""Exporting a tenant's ready claims as one 837P or 837I interchange.

    result = export_ready_claims(tenant, kind="P")  # ExportResult(text, claim_ids, problems, batch)
    if result.text: Path("claims.837").write_text(result.text)

What is read:
- the billing provider, submitter and receiver from the tenant's `BillingProfile` (a missing or
  incomplete profile raises `BillingProfileError`, naming what to set in the admin);
- for each claim of that kind in status READY: the subscriber from its coverage and patient, the
  payer from `Claim.payer_name`/`payer_id` and SBR09 from `claim_filing_indicator`, the ICD-10-CM
  diagnoses of its encounters, and its lines (procedure, modifiers, units, charge, date of service,
  prior authorization; the revenue code on institutional lines);
- for an institutional claim also the facility type code, statement dates, admission, patient
  status (CL103) and attending practitioner (2310A).

A claim that cannot be written (no coverage, no diagnoses, a total that is not the sum of its lines,
an institutional claim without statement dates, a value the guide cannot carry…) is skipped with a
problem naming its patient control number and the reason; it stays READY. The others are written
and, in one transaction, marked SUBMITTED with `submitted_at`, and the interchange is kept as a
`ClaimBatch` that each claim points at, with the ST02 of its transaction, so the 999 that answers
it can be applied (`reconciliation.acknowledgements`). The claims are locked while the file is
built and the update is conditional on status READY, so two exports running at once never send a
claim twice (if the update does not touch every written claim, `ExportConflict` is raised and
nothing is marked). One audit event (`export`, `reconciliation.claim`) records the count and the
control number, never PHI.

The interchange control number (ISA13/GS06): the `control_number` argument when given, otherwise
the next after the tenant's last export — the larger of (the control number in the tenant's last
`export` audit event of claims) + 1 and (the number of the tenant's claims ever submitted) + 1.
The count alone would repeat a number once a rejected claim is resubmitted (it is counted once).
"""

from __future__ import annotations

import string
import unicodedata
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.db import transaction
from django.db.models import Prefetch
from django.utils import timezone

from canonical.choices import CoverageStatus, Sex
from canonical.models import Encounter, EncounterDiagnosis
from canonical.validators import npi_is_valid
from formats.x12 import model as x12
from formats.x12.claim837 import MAX_CLAIMS_PER_TRANSACTION, write_837i, write_837p
from formats.x12.writer import MAX_INTERCHANGE_CONTROL_NUMBER
from reconciliation.choices import ClaimStatus
from reconciliation.models import BillingProfile, Claim, ClaimBatch, ClaimLine
from tenants.audit import record_audit
from tenants.choices import AuditAction
from tenants.models import AuditEvent, Tenant

AUDIT_OBJECT_TYPE = "reconciliation.claim"
PROFESSIONAL = "P"
INSTITUTIONAL = "I"
SUBMITTER_CONTACT_NAME = "BILLING"
_SEX = {Sex.MALE: "M", Sex.FEMALE: "F"}
_US = {"", "US", "USA", "UNITED STATES", "UNITED STATES OF AMERICA"}


class ClaimExportError(Exception):
    """The export cannot run at all (nothing is written or marked)."""


class BillingProfileError(ClaimExportError):
    """The tenant has no billing profile, or one the 837 cannot carry."""


class ExportConflict(ClaimExportError):
    """Another export marked some of these claims first; nothing was marked by this one."""


@dataclass
class ExportResult:
    text: str = ""  # the 837 interchange, "" when no claim was written
    claim_ids: list[int] = field(default_factory=list)  # primary keys of the claims written (now SUBMITTED)
    problems: list[str] = field(default_factory=list)
    control_number: int | None = None
    ready: int = 0  # claims of this kind that were READY when the export started
    other_kind_ready: int = 0  # READY claims of the other kind, left for their own export
    batch: ClaimBatch | None = None


class _Skip(Exception):
    """One claim cannot be written; the message is its problem."""


def export_ready_claims(
    tenant: Tenant,
    *,
    kind: str = PROFESSIONAL,
    control_number: int | None = None,
    now: datetime | None = None,
    usage_indicator: str = "P",
    actor_label: str = "system:export_claims",
) -> ExportResult:
    """Write the tenant's READY claims of `kind` ("P" or "I") as one 837P or 837I and mark them SUBMITTED.

    Raises `BillingProfileError` when the tenant's billing profile is missing or incomplete,
    `ExportConflict` when a concurrent export took some of the claims, and ValueError for a
    control number out of 1..999999999. Returns an empty `text` when no claim could be written.
    """
    write = {PROFESSIONAL: write_837p, INSTITUTIONAL: write_837i}.get(kind)
    if write is None:
        raise ValueError(f"the kind of claim must be P (837P) or I (837I), got {kind!r}")
    if control_number is not None and not 1 <= control_number <= MAX_INTERCHANGE_CONTROL_NUMBER:
        raise ValueError(f"the control number must be 1 to {MAX_INTERCHANGE_CONTROL_NUMBER}, got {control_number}")
    profile = _profile(tenant)
    submitter, receiver, provider = _parties(profile)
    now = now or timezone.now()
    zone = ZoneInfo(tenant.timezone)
    created_at = timezone.localtime(now, zone)
    result = ExportResult()

    with transaction.atomic():
        rows = _ready_claims(tenant, kind)
        result.ready = len(rows)
        result.other_kind_ready = Claim.objects.filter(tenant=tenant, status=ClaimStatus.READY).exclude(kind=kind).count()
        if not rows:
            return result
        result.control_number = control_number or next_control_number(tenant)
        written: list[tuple[Claim, x12.Claim]] = []
        for row in rows:
            try:
                claim = _claim(row, provider, zone)
                # Write it alone first: every check of the writer (totals, pointers, delimiters) for this claim only.
                alone = write([claim], submitter=submitter, receiver=receiver, control_number=result.control_number,
                                   created_at=created_at, usage_indicator=usage_indicator)
                if not alone.isascii():
                    raise _Skip("a value holds characters outside ASCII, which X12 does not carry")
            except (_Skip, ValueError) as exc:
                result.problems.append(_problem(row, exc))
                continue
            written.append((row, claim))
        if not written:
            return result
        text = write([claim for _, claim in written], submitter=submitter, receiver=receiver,
                          control_number=result.control_number, created_at=created_at, usage_indicator=usage_indicator)
        ids = [row.pk for row, _ in written]
        batch = ClaimBatch.objects.create(tenant=tenant, kind=kind, control_number=result.control_number, body=text,
                                          created_at=now)
        marked = 0
        # The writer puts claims 1–5000 in ST02 0001, the next 5000 in 0002… (the guides' limit per transaction).
        for start in range(0, len(ids), MAX_CLAIMS_PER_TRANSACTION):
            marked += Claim.objects.filter(
                pk__in=ids[start : start + MAX_CLAIMS_PER_TRANSACTION], tenant=tenant, status=ClaimStatus.READY,
            ).update(status=ClaimStatus.SUBMITTED, submitted_at=now, updated_at=now, batch=batch, rejection_reason="",
                     transaction_control_number=f"{start // MAX_CLAIMS_PER_TRANSACTION + 1:04d}")
        if marked != len(ids):
            raise ExportConflict(
                f"{len(ids) - marked} of {len(ids)} claims were submitted by another export meanwhile; nothing was "
                "marked by this one — run the export again")
        record_audit(AuditAction.EXPORT, object_type=AUDIT_OBJECT_TYPE, tenant=tenant, actor_label=actor_label,
                     detail={"format": f"837{kind}", "claims": len(ids), "skipped": len(result.problems),
                             "control_number": result.control_number, "batch": str(batch.public_id)})
        result.batch = batch
    result.text, result.claim_ids = text, ids
    return result


def next_control_number(tenant: Tenant) -> int:
    """The next interchange control number after the tenant's last export (see the module doc)."""
    last = 0
    details = AuditEvent.objects.filter(tenant=tenant, action=AuditAction.EXPORT, object_type=AUDIT_OBJECT_TYPE)
    for detail in details.order_by("-pk").values_list("detail", flat=True)[:1]:
        number = (detail or {}).get("control_number")
        if isinstance(number, int):
            last = number
    submitted = Claim.objects.filter(tenant=tenant, submitted_at__isnull=False).count()
    number = max(last, submitted) + 1
    if number > MAX_INTERCHANGE_CONTROL_NUMBER:
        raise ValueError(f"the next control number {number} is past {MAX_INTERCHANGE_CONTROL_NUMBER}: pass one explicitly")
    return number


# --- billing profile ----------------------------------------------------------------------------


def _profile(tenant: Tenant) -> BillingProfile:
    profile = BillingProfile.objects.filter(tenant=tenant).first()
    if profile is None:
        raise BillingProfileError(
            f"tenant '{tenant.slug}' has no billing profile: add one in the admin (Reconciliation › Billing profiles) "
            "with the organization name, NPI, tax id, address, phone, submitter id, receiver id and receiver name")
    missing = [label for name, label in (
        ("organization_name", "organization name"), ("npi", "NPI"), ("tax_id", "tax id"), ("address_line1", "address"),
        ("city", "city"), ("state", "state"), ("postal_code", "postal code"), ("phone", "phone"),
        ("submitter_id", "submitter id"), ("receiver_id", "receiver id"), ("receiver_name", "receiver name"),
    ) if not getattr(profile, name).strip()]
    wrong = []
    if profile.npi and not npi_is_valid(profile.npi.strip()):
        wrong.append(f"the NPI {profile.npi!r} is not valid (10 digits with a Luhn check digit)")
    if profile.tax_id and not _digits(profile.tax_id.replace("-", ""), 9):
        wrong.append("the tax id must be the 9 digits of the EIN")
    if profile.postal_code and not _digits(profile.postal_code.replace("-", ""), 9):
        wrong.append("the postal code must be the 9 digits of the ZIP+4 (the 837 billing provider needs it)")
    if profile.state and not _state(profile.state):
        wrong.append("the state must be a 2-letter code")
    if profile.phone and not _digits(profile.phone, 10):
        wrong.append("the phone must be 10 digits")
    if missing or wrong:
        parts = ([f"set {', '.join(missing)}"] if missing else []) + wrong
        raise BillingProfileError(f"the billing profile of tenant '{tenant.slug}' is incomplete: {'; '.join(parts)} (in the admin)")
    return profile


def _parties(profile: BillingProfile) -> tuple[x12.Submitter, x12.Receiver, x12.Party]:
    try:
        # The profile has no contact name or email: PER names the billing office, with the profile's phone.
        submitter = x12.Submitter(profile.organization_name.strip(), profile.submitter_id.strip(), SUBMITTER_CONTACT_NAME,
                                  contact_phone=profile.phone.strip())
        receiver = x12.Receiver(profile.receiver_name.strip(), profile.receiver_id.strip())
        provider = x12.Party(
            organization_name=profile.organization_name.strip(),
            npi=profile.npi.strip(),
            tax_id=profile.tax_id.strip(),
            address=x12.Address(profile.address_line1.strip(), profile.city.strip(), profile.state.strip().upper(),
                                profile.postal_code.strip()),
            phone=profile.phone.strip(),
        )
    except ValueError as exc:
        raise BillingProfileError(f"the billing profile of tenant '{profile.tenant.slug}' cannot be used: {exc}") from None
    return submitter, receiver, provider


# --- claims -------------------------------------------------------------------------------------


def _ready_claims(tenant: Tenant, kind: str) -> list[Claim]:
    """The tenant's READY claims of `kind` with everything the mapping reads, locked until the transaction ends
    (rows another export holds are skipped: that export sends them)."""
    encounters = Encounter.objects.filter(deleted_at__isnull=True).prefetch_related(
        Prefetch("diagnoses", queryset=EncounterDiagnosis.objects.order_by("rank", "position")))
    queryset = (
        Claim.objects.select_for_update(skip_locked=True, of=("self",))
        .filter(tenant=tenant, status=ClaimStatus.READY, kind=kind)
        .select_related("patient", "coverage", "coverage__patient", "attending_practitioner")
        .prefetch_related(
            Prefetch("lines", queryset=ClaimLine.objects.select_related("authorization").order_by("position")),
            Prefetch("encounters", queryset=encounters),
        )
        .order_by("pk")
    )
    return list(queryset)


def _problem(row: Claim, exc: Exception) -> str:
    message = str(exc)
    prefix = f"claim {row.patient_control_number}"
    if message.startswith(prefix):  # the writer's messages already name the claim
        return message
    return f"{prefix}: {message}"


def _claim(row: Claim, provider: x12.Party, zone: ZoneInfo) -> x12.Claim:
    lines = list(row.lines.all())
    if not lines:
        raise _Skip("no service lines")
    for line in lines:
        if not line.procedure_code.strip():
            raise _Skip(f"line {line.position} has no procedure code")
        if line.units <= 0:
            raise _Skip(f"line {line.position} has {line.units} units")
        if row.kind == INSTITUTIONAL and not line.revenue_code.strip():
            raise _Skip(f"line {line.position} has no revenue code, which every institutional line needs (SV201)")
    subscriber = _subscriber(row)
    if not row.payer_name.strip() or not row.payer_id.strip():
        raise _Skip("no payer name or payer id on the claim")
    _check_length("payer name", row.payer_name.strip(), 60)
    _check_length("payer id", row.payer_id.strip(), 80, minimum=2)
    diagnoses, pointers_by_day = _diagnoses(row, zone)
    if not diagnoses:
        raise _Skip("no diagnoses: link the claim to an encounter with ICD-10-CM diagnoses")
    lines_total = sum((line.charge for line in lines), Decimal(0))
    if lines_total != row.total_charge:
        raise _Skip(f"total charge {row.total_charge} is not the sum of the line charges {lines_total}")
    auth_numbers = [line.authorization.auth_number.strip() if line.authorization_id else "" for line in lines]
    claim_auth = auth_numbers[0] if len(set(auth_numbers)) == 1 else ""
    default_pointers = tuple(range(1, min(len(diagnoses), x12.MAX_DIAGNOSIS_POINTERS) + 1))
    x12_lines = [
        x12.ClaimLine(
            procedure_code=line.procedure_code.strip().upper(),
            charge=line.charge,
            service_date=line.service_date,
            units=line.units,
            modifiers=tuple(str(m).strip().upper() for m in (line.modifiers or []) if str(m).strip()),
            diagnosis_pointers=pointers_by_day.get(line.service_date, default_pointers),
            line_control_number=line.line_control_number.strip(),
            prior_authorization="" if claim_auth else auth,
            revenue_code=line.revenue_code.strip() if row.kind == INSTITUTIONAL else "",
        )
        for line, auth in zip(lines, auth_numbers, strict=True)
    ]
    institutional = _institutional_fields(row) if row.kind == INSTITUTIONAL else {}
    return x12.Claim(
        patient_control_number=row.patient_control_number.strip(),
        total_charge=row.total_charge,
        diagnoses=tuple(diagnoses),
        lines=x12_lines,
        billing_provider=provider,
        subscriber=subscriber,
        payer=x12.Payer(row.payer_name.strip(), row.payer_id.strip()),
        place_of_service=row.place_of_service.strip() if row.kind == PROFESSIONAL else "",
        frequency_code=row.frequency_code.strip() or x12.FREQUENCY_ORIGINAL,
        prior_authorization=claim_auth,
        payer_claim_control_number=(
            row.payer_claim_control_number.strip() if row.frequency_code in x12.CORRECTION_FREQUENCIES else ""),
        **institutional,
    )


def _institutional_fields(row: Claim) -> dict:
    """The 837I's claim-level fields, or `_Skip` naming the first one missing (never invented)."""
    if not row.facility_type_code.strip():
        raise _Skip("no facility type code (CLM05-1, e.g. 32 home health, 81 hospice): set it on the claim")
    if row.statement_from is None or row.statement_to is None:
        raise _Skip("no statement dates (DTP*434): set the statement period on the claim")
    if row.statement_to < row.statement_from:
        raise _Skip(f"the statement period ends ({row.statement_to}) before it starts ({row.statement_from})")
    if not row.patient_status_code.strip():
        raise _Skip("no patient status code (CL103, e.g. 30 still a patient, 01 discharged home)")
    practitioner = row.attending_practitioner
    if practitioner is None:
        raise _Skip("no attending practitioner (2310A), which an institutional claim for care needs")
    given = [_ascii(name) for name in (practitioner.given_names or []) if str(name).strip()]
    if not practitioner.family_name.strip() or not practitioner.npi.strip():
        raise _Skip(f"the attending practitioner {practitioner.public_id} has no family name or no NPI")
    attending = x12.Party(last_name=_ascii(practitioner.family_name), first_name=given[0] if given else "",
                          npi=practitioner.npi.strip())
    return {
        "facility_type_code": row.facility_type_code.strip(),
        "statement_from": row.statement_from,
        "statement_to": row.statement_to,
        "admission_date": row.admission_date,
        "admission_type_code": row.admission_type_code.strip(),
        "admission_source_code": row.admission_source_code.strip(),
        "patient_status_code": row.patient_status_code.strip(),
        "attending_provider": attending,
    }


def _subscriber(row: Claim) -> x12.Subscriber:
    coverage = row.coverage
    if coverage is None:
        raise _Skip("no coverage: set the patient's coverage on the claim")
    if coverage.deleted_at is not None or coverage.status == CoverageStatus.ENTERED_IN_ERROR:
        raise _Skip(f"its coverage {coverage.public_id} was deleted or entered in error at the source")
    patient = row.patient
    holder = coverage.patient
    same_person = holder.pk == patient.pk or (holder.master_id is not None and holder.master_id == patient.master_id)
    if not same_person:
        # Coverage has no relationship of the patient to the subscriber (PAT01): a dependent's claim
        # cannot be written without inventing it.
        raise _Skip("its coverage belongs to another person and the relationship to the subscriber is not recorded")
    if coverage.priority != 1:
        raise _Skip(
            f"its coverage has priority {coverage.priority}: claims to a secondary payer need the primary payer's "
            "adjudication (2320/2330 loops), which this export does not write")
    member_id = coverage.member_id.strip()
    if not member_id:
        raise _Skip("its coverage has no member id")
    _check_length("member id", member_id, 80, minimum=2)
    given = [_ascii(name) for name in (patient.given_names or []) if str(name).strip()]
    last, first, middle = _ascii(patient.family_name), (given[0] if given else ""), " ".join(given[1:])
    if not last:
        raise _Skip("the patient has no family name")
    _check_length("patient family name", last, 60)
    _check_length("patient first name", first, 35)
    _check_length("patient middle name", middle, 25)
    if patient.birth_date is None:
        raise _Skip("the patient has no birth date")
    return x12.Subscriber(
        member_id=member_id,
        last_name=last,
        first_name=first,
        middle_name=middle,
        birth_date=patient.birth_date,
        sex=_SEX.get(patient.sex, "U"),
        address=_patient_address(patient),
        relationship=x12.RELATIONSHIP_SELF,
        group_number=coverage.group_number.strip(),
        payer_responsibility="P",
        claim_filing_indicator=row.claim_filing_indicator or "CI",
    )


def _patient_address(patient) -> x12.Address:
    line1, line2 = _ascii(patient.address_line1), _ascii(patient.address_line2)
    city, state = _ascii(patient.city), patient.state.strip().upper()
    postal = patient.postal_code.strip().replace("-", "")
    country = patient.country.strip().upper()
    if not (line1 and city and state and postal):
        raise _Skip("the patient's address is incomplete (line 1, city, state and postal code are required)")
    if country not in _US:
        raise _Skip("the patient's address is outside the United States")
    _check_length("patient address line 1", line1, 55)
    _check_length("patient address line 2", line2, 55)
    _check_length("patient city", city, 30)
    if not _state(state):
        raise _Skip(f"the patient's state {state!r} is not a 2-letter code")
    if not (_digits(postal, 5) or _digits(postal, 9)):
        raise _Skip(f"the patient's postal code {patient.postal_code!r} is not 5 or 9 digits")
    return x12.Address(line1, city, state, postal, line2=line2)


def _diagnoses(row: Claim, zone: ZoneInfo) -> tuple[list[str], dict[date, tuple[int, ...]]]:
    """The claim's ICD-10-CM codes (principal first: by rank, then encounter date, then position;
    each once) and, per date of service, the pointers to the codes of that day's encounters."""
    entries = []
    for encounter in row.encounters.all():
        day = timezone.localtime(encounter.period_start, zone).date()
        for diagnosis in encounter.diagnoses.all():
            code = diagnosis.code.strip().upper()
            if code and _is_icd10(diagnosis.system):
                entries.append((diagnosis.rank, encounter.period_start, diagnosis.position, code, day))
    entries.sort(key=lambda entry: entry[:3])
    codes: list[str] = []
    number_of: dict[str, int] = {}
    by_day: dict[date, list[int]] = defaultdict(list)
    for _, _, _, code, day in entries:
        key = code.replace(".", "")
        if key not in number_of:
            codes.append(code)
            number_of[key] = len(codes)
        if number_of[key] not in by_day[day]:
            by_day[day].append(number_of[key])
    pointers = {day: tuple(sorted(numbers)[: x12.MAX_DIAGNOSIS_POINTERS]) for day, numbers in by_day.items()}
    return codes, pointers


def _ascii(value) -> str:
    """Letters without their accents (José → Jose): X12 carries ASCII only."""
    decomposed = unicodedata.normalize("NFKD", str(value).strip())
    return "".join(character for character in decomposed if not unicodedata.combining(character))


def _is_icd10(system: str) -> bool:
    system = system.strip().lower()
    return not system or "icd-10" in system or "icd10" in system


def _check_length(label: str, value: str, maximum: int, *, minimum: int = 0) -> None:
    if value and not minimum <= len(value) <= maximum:
        raise _Skip(f"the {label} must be {minimum or 1} to {maximum} characters, got {len(value)}")


def _digits(value: str, count: int) -> bool:
    return len(value) == count and value.isdigit()


def _state(value: str) -> bool:
    value = value.strip()
    return len(value) == 2 and all(character in string.ascii_letters for character in value)
