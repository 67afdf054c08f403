"""Which claim each remittance claim (CLP) pays.

In order: the patient control number (CLP01 = CLM01, exact: confirmed); the payer's claim
control number (CLP07, from an earlier answer: confirmed); the patient (member id, else last name),
a date of service and the charge (proposed: a biller confirms or rejects it). Nothing found: the
CLP goes to the worklist unmatched. A CLP is matched once; re-running changes nothing.
"""

from __future__ import annotations

from decimal import Decimal

from django.db.models import Q

from reconciliation.choices import MatchMethod, MatchStatus
from reconciliation.models import Claim, Match, Remittance, RemittanceClaim

CONFIDENCE = {
    MatchMethod.PATIENT_CONTROL_NUMBER: Decimal("1.00"),
    MatchMethod.PAYER_CLAIM_NUMBER: Decimal("0.95"),
    MatchMethod.PATIENT_DATE_CHARGE: Decimal("0.80"),
}
CONFIRMED_METHODS = (MatchMethod.PATIENT_CONTROL_NUMBER, MatchMethod.PAYER_CLAIM_NUMBER)


BATCH = 1000  # patient control numbers per lookup


def match_remittance(remittance: Remittance) -> list[Match]:
    """A Match for every CLP of the remittance that has none yet. Exact matches are looked up a
    thousand control numbers at a time; only the rest try the slower rules one by one."""
    pending = list(remittance.claims.filter(match__isnull=True).order_by("position"))
    exact = claims_by_control_number(remittance.tenant_id, [clp.patient_control_number for clp in pending])
    made = []
    for clp in pending:
        claim = exact.get(clp.patient_control_number)
        method = MatchMethod.PATIENT_CONTROL_NUMBER if claim is not None else None
        if claim is None:
            claim, method = find_claim(remittance.tenant_id, clp)
        status = MatchStatus.UNMATCHED if claim is None else MatchStatus.CONFIRMED if method in CONFIRMED_METHODS else MatchStatus.PROPOSED
        made.append(Match(tenant_id=remittance.tenant_id, remittance_claim=clp, claim=claim, method=method or "",
                          confidence=CONFIDENCE.get(method, Decimal(0)), status=status))
    return Match.objects.bulk_create(made, batch_size=BATCH)


def claims_by_control_number(tenant_id: int, numbers: list[str]) -> dict[str, Claim]:
    found: dict[str, Claim] = {}
    unique = sorted(set(numbers))
    for start in range(0, len(unique), BATCH):
        found.update((c.patient_control_number, c) for c in Claim.objects.filter(tenant_id=tenant_id,
                                                                                 patient_control_number__in=unique[start:start + BATCH]))
    return found


def find_claim(tenant_id: int, clp: RemittanceClaim) -> tuple[Claim | None, str | None]:
    """The slower rules, for a CLP whose control number names no claim of the tenant."""
    claims = Claim.objects.filter(tenant_id=tenant_id)
    found = claims.filter(patient_control_number=clp.patient_control_number).first()
    if found is not None:
        return found, MatchMethod.PATIENT_CONTROL_NUMBER
    if clp.payer_claim_control_number:
        found = claims.filter(payer_claim_control_number=clp.payer_claim_control_number).first()
        if found is not None:
            return found, MatchMethod.PAYER_CLAIM_NUMBER
    who = Q(coverage__member_id=clp.member_id) if clp.member_id else Q(patient__family_name__iexact=clp.patient_last_name)
    if not clp.member_id and not clp.patient_last_name:
        return None, None
    candidates = claims.filter(who, total_charge=clp.charge)
    if clp.service_date_from:
        candidates = candidates.filter(lines__service_date=clp.service_date_from)
    candidates = list(candidates.distinct()[:2])
    if len(candidates) == 1:  # two candidates is a guess; a biller decides by hand
        return candidates[0], MatchMethod.PATIENT_DATE_CHARGE
    return None, None
