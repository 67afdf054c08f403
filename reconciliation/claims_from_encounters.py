"""Professional claims drafted from finished encounters, priced by the tenant's fee schedule.

    result = claims_from_encounters(tenant, encounters)   # DraftResult(claims, problems)

One claim per encounter, READY for `export_claims`: the patient's primary coverage (its payer and
member), one line per procedure (charge = fee × units, the modifiers kept), the encounter linked so
its diagnoses go on the claim. The patient control number is `SB` + the encounter's row number, so
drafting the same encounter twice finds the claim it already has instead of billing it again.
An encounter that cannot be billed (not finished, deleted, no procedures, no diagnoses, no active
primary coverage, a procedure with no fee) is reported with the reason and drafts nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.db import transaction
from django.utils import timezone

from canonical.choices import CoverageStatus, EncounterStatus
from canonical.models import Coverage, Encounter
from reconciliation.choices import ClaimStatus
from reconciliation.models import Claim, ClaimLine, FeeScheduleEntry
from tenants.models import Tenant

PCN_PREFIX = "SB"


@dataclass
class DraftResult:
    claims: list[Claim] = field(default_factory=list)  # drafted now, or drafted earlier for the same encounter
    problems: list[str] = field(default_factory=list)


def patient_control_number(encounter: Encounter) -> str:
    return f"{PCN_PREFIX}{encounter.pk:010d}"


def claims_from_encounters(tenant: Tenant, encounters: Iterable[Encounter], *, place_of_service: str = "11") -> DraftResult:
    fees = {(entry.procedure_code, entry.modifier): entry for entry in FeeScheduleEntry.objects.filter(tenant=tenant)}
    result = DraftResult()
    for encounter in encounters:
        if encounter.tenant_id != tenant.pk:
            raise ValueError(f"encounter {encounter.public_id} belongs to another tenant")
        existing = Claim.objects.filter(tenant=tenant, patient_control_number=patient_control_number(encounter)).first()
        if existing is not None:
            result.claims.append(existing)
            continue
        try:
            result.claims.append(_draft(tenant, encounter, fees, place_of_service))
        except _Unbillable as exc:
            result.problems.append(f"encounter {encounter.public_id}: {exc}")
    return result


class _Unbillable(Exception):
    pass


def _draft(tenant: Tenant, encounter: Encounter, fees: dict, place_of_service: str) -> Claim:
    if encounter.deleted_at is not None:
        raise _Unbillable("deleted at the source")
    if encounter.status != EncounterStatus.FINISHED:
        raise _Unbillable(f"status {encounter.status}, not finished")
    procedures = list(encounter.procedures.all())
    if not procedures:
        raise _Unbillable("no procedures to bill")
    if not encounter.diagnoses.exists():
        raise _Unbillable("no diagnoses")
    coverage = (Coverage.objects.filter(tenant=tenant, patient=encounter.patient, priority=1, deleted_at__isnull=True,
                                        status=CoverageStatus.ACTIVE).order_by("-updated_at").first())
    if coverage is None:
        raise _Unbillable("the patient has no active primary coverage")
    lines = []
    for position, procedure in enumerate(procedures, start=1):
        modifier = str(procedure.modifiers[0]) if procedure.modifiers else ""
        fee = fees.get((procedure.code, modifier)) or fees.get((procedure.code, ""))
        if fee is None:
            raise _Unbillable(f"procedure {procedure.code} has no fee in the fee schedule")
        units = procedure.units or Decimal(1)
        lines.append(ClaimLine(position=position, procedure_code=procedure.code, modifiers=list(procedure.modifiers or []),
                               units=units, charge=(fee.charge * units).quantize(Decimal("0.01")),
                               service_date=timezone.localtime(encounter.period_start, ZoneInfo(tenant.timezone)).date(),
                               line_control_number=f"{patient_control_number(encounter)}-{position}"))
    with transaction.atomic():
        claim = Claim.objects.create(
            tenant=tenant, patient=encounter.patient, coverage=coverage, payer_name=coverage.payer,
            payer_id=coverage.payer_id or coverage.payer, patient_control_number=patient_control_number(encounter),
            place_of_service=place_of_service, claim_filing_indicator=coverage.claim_filing_indicator or "CI", total_charge=sum((line.charge for line in lines), Decimal(0)),
            status=ClaimStatus.READY)
        for line in lines:
            line.claim = claim
        ClaimLine.objects.bulk_create(lines)
        claim.encounters.add(encounter)
    return claim
