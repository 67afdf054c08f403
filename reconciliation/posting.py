"""Posting a confirmed match: payment, contractual adjustments (CO), patient responsibility (PR:
deductible, coinsurance, copay), other adjustments and denials; a reversal (CLP02 = 22) undoes
every live posting of the claim; then the claim's status follows from what is posted.

Postings are never edited or deleted: a reversal adds the negatives, each pointing at what it undoes.
A remittance claim posts once; re-running changes nothing.
"""

from __future__ import annotations

from decimal import Decimal

from django.db.models import Sum

from reconciliation.choices import ClaimStatus, MatchStatus, PostingKind
from reconciliation.models import Claim, Posting, Remittance, RemittanceClaim

REVERSAL = "22"  # CLP02: reversal of a previous payment
DENIED = "4"  # CLP02: denied
KIND_OF_GROUP = {"CO": PostingKind.CONTRACTUAL, "PR": PostingKind.PATIENT_RESPONSIBILITY}


def post_remittance(remittance: Remittance) -> list[Posting]:
    posted: list[Posting] = []
    for clp in remittance.claims.filter(match__status=MatchStatus.CONFIRMED).select_related("match__claim").order_by("position"):
        posted += post_claim(clp, clp.match.claim)
    return posted


def post_claim(clp: RemittanceClaim, claim: Claim) -> list[Posting]:
    if clp.postings.exists():
        return []
    if clp.status_code == REVERSAL:
        live = claim.postings.filter(reverses__isnull=True, reversed_by__isnull=True).exclude(remittance_claim=clp)
        rows = [Posting(tenant_id=claim.tenant_id, claim=claim, remittance_claim=clp, kind=p.kind, group=p.group, reason=p.reason,
                        amount=-p.amount, reverses=p) for p in live]
    else:
        rows = []
        if clp.paid:
            rows.append(Posting(tenant_id=claim.tenant_id, claim=claim, remittance_claim=clp, kind=PostingKind.PAYMENT, amount=clp.paid))
        for adjustment in clp.adjustments.all():
            kind = KIND_OF_GROUP.get(adjustment.group, PostingKind.OTHER_ADJUSTMENT)
            if clp.status_code == DENIED and adjustment.group != "PR":
                kind = PostingKind.DENIAL  # on a denied claim the payer's adjustment is the denial and its reason
            rows.append(Posting(tenant_id=claim.tenant_id, claim=claim, remittance_claim=clp, kind=kind, group=adjustment.group,
                                reason=adjustment.reason, amount=adjustment.amount))
    Posting.objects.bulk_create(rows)
    update_status(claim, last=clp)
    return rows


def totals(claim: Claim) -> dict[str, Decimal]:
    """Live amounts by posting kind (reversed postings and their reversals cancel out)."""
    sums = claim.postings.values("kind").annotate(total=Sum("amount"))
    return {row["kind"]: row["total"] or Decimal(0) for row in sums}


def update_status(claim: Claim, *, last: RemittanceClaim) -> str:
    by_kind = totals(claim)
    paid = by_kind.get(PostingKind.PAYMENT, Decimal(0))
    explained = paid + sum((by_kind.get(k, Decimal(0)) for k in (PostingKind.CONTRACTUAL, PostingKind.PATIENT_RESPONSIBILITY,
                                                                  PostingKind.OTHER_ADJUSTMENT)), Decimal(0))
    if last.status_code == REVERSAL and not any(by_kind.values()):
        status = ClaimStatus.REVERSED
    elif by_kind.get(PostingKind.DENIAL, Decimal(0)) and paid == 0:
        status = ClaimStatus.DENIED
    elif paid > 0 and explained >= claim.total_charge:
        status = ClaimStatus.PAID
    elif paid > 0:
        status = ClaimStatus.PARTIALLY_PAID
    else:
        status = claim.status
    fields = {"status": status}
    if last.payer_claim_control_number and not claim.payer_claim_control_number:
        fields["payer_claim_control_number"] = last.payer_claim_control_number
    Claim.objects.filter(pk=claim.pk).update(**fields)
    return status
