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


def match_remittance(remittance: Remittance) -> list[Match]:
    """A Match for every CLP of the remittance that has none yet."""
    made = []
    for remittance_claim in remittance.claims.filter(match__isnull=True).order_by("position"):
        claim, method = find_claim(remittance.tenant_id, remittance_claim)
        status = MatchStatus.UNMATCHED if claim is None else MatchStatus.CONFIRMED if method in CONFIRMED_METHODS else MatchStatus.PROPOSED
        made.append(Match.objects.create(
            tenant_id=remittance.tenant_id, remittance_claim=remittance_claim, claim=claim, method=method or "",
            confidence=CONFIDENCE.get(method, Decimal(0)), status=status,
        ))
    return made


def find_claim(tenant_id: int, clp: RemittanceClaim) -> tuple[Claim | None, str | None]:
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
