"""Posting a confirmed match: payment, contractual adjustments (CO), patient responsibility (PR:
deductible, coinsurance, copay), other adjustments and denials; a reversal (CLP02 = 22) undoes
every live posting of the claim; then the claim's status follows from what is posted.

Postings are never edited or deleted: a reversal adds the negatives, each pointing at what it undoes.
A remittance claim posts once; re-running changes nothing.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from decimal import Decimal

from django.db.models import Sum

from hub.bulk import update_rows
from reconciliation.choices import ClaimStatus, MatchStatus, PostingKind
from reconciliation.models import Claim, Posting, Remittance, RemittanceClaim

REVERSAL = "22"  # CLP02: reversal of a previous payment
DENIED = "4"  # CLP02: denied
KIND_OF_GROUP = {"CO": PostingKind.CONTRACTUAL, "PR": PostingKind.PATIENT_RESPONSIBILITY}
BATCH = 1000  # rows per INSERT, claims per totals query


def post_remittance(remittance: Remittance) -> list[Posting]:
    """Post every confirmed CLP of a remittance just stored. A claim answered once in the file posts
    in batches; a reversal, or a claim answered several times (reversal then correction), posts
    one CLP at a time in file order, since each depends on what the one before posted."""
    confirmed = list(remittance.claims.filter(match__status=MatchStatus.CONFIRMED).select_related("match__claim")
                     .prefetch_related("adjustments").order_by("position"))
    answers = Counter(clp.match.claim_id for clp in confirmed)
    simple = [clp for clp in confirmed if clp.status_code != REVERSAL and answers[clp.match.claim_id] == 1]
    rows = [posting for clp in simple for posting in _postings(clp, clp.match.claim, list(clp.adjustments.all()))]
    Posting.objects.bulk_create(rows, batch_size=BATCH)
    _update_statuses([(clp.match.claim, clp) for clp in simple])
    batched = {clp.pk for clp in simple}
    for clp in confirmed:
        if clp.pk not in batched:
            rows += post_claim(clp, clp.match.claim)
    return rows


def post_claim(clp: RemittanceClaim, claim: Claim) -> list[Posting]:
    if clp.postings.exists():
        return []
    if clp.status_code == REVERSAL:
        live = claim.postings.filter(reverses__isnull=True, reversed_by__isnull=True).exclude(remittance_claim=clp)
        rows = [Posting(tenant_id=claim.tenant_id, claim=claim, remittance_claim=clp, kind=p.kind, group=p.group, reason=p.reason,
                        amount=-p.amount, reverses=p) for p in live]
    else:
        rows = _postings(clp, claim, list(clp.adjustments.all()))
    Posting.objects.bulk_create(rows)
    update_status(claim, last=clp)
    return rows


def _postings(clp: RemittanceClaim, claim: Claim, adjustments) -> list[Posting]:
    """What a (non-reversal) CLP posts: the payment, then each adjustment by its group."""
    rows = []
    if clp.paid:
        rows.append(Posting(tenant_id=claim.tenant_id, claim=claim, remittance_claim=clp, kind=PostingKind.PAYMENT, amount=clp.paid))
    for adjustment in adjustments:
        kind = KIND_OF_GROUP.get(adjustment.group, PostingKind.OTHER_ADJUSTMENT)
        if clp.status_code == DENIED and adjustment.group != "PR":
            kind = PostingKind.DENIAL  # on a denied claim the payer's adjustment is the denial and its reason
        rows.append(Posting(tenant_id=claim.tenant_id, claim=claim, remittance_claim=clp, kind=kind, group=adjustment.group,
                            reason=adjustment.reason, amount=adjustment.amount))
    return rows


def totals(claim: Claim) -> dict[str, Decimal]:
    """Live amounts by posting kind (reversed postings and their reversals cancel out)."""
    sums = claim.postings.values("kind").annotate(total=Sum("amount"))
    return {row["kind"]: row["total"] or Decimal(0) for row in sums}


def update_status(claim: Claim, *, last: RemittanceClaim) -> str:
    _update_statuses([(claim, last)])
    return Claim.objects.only("status").get(pk=claim.pk).status


def status_for(claim: Claim, by_kind: dict[str, Decimal], last: RemittanceClaim) -> str:
    """A claim's status from its live posted totals and the last CLP that answered it."""
    paid = by_kind.get(PostingKind.PAYMENT, Decimal(0))
    explained = paid + sum((by_kind.get(k, Decimal(0)) for k in (PostingKind.CONTRACTUAL, PostingKind.PATIENT_RESPONSIBILITY,
                                                                  PostingKind.OTHER_ADJUSTMENT)), Decimal(0))
    if last.status_code == REVERSAL and not any(by_kind.values()):
        return ClaimStatus.REVERSED
    if by_kind.get(PostingKind.DENIAL, Decimal(0)) and paid == 0:
        return ClaimStatus.DENIED
    if explained > 0 and explained >= claim.total_charge:
        return ClaimStatus.PAID  # all of it settled: by the payer, by write-off, or left to the patient (copay, deductible)
    if paid > 0:
        return ClaimStatus.PARTIALLY_PAID
    return claim.status


def _update_statuses(answered: list[tuple[Claim, RemittanceClaim]]) -> None:
    """Each claim's status (one totals query per thousand claims, one batched UPDATE), and the
    payer's claim number where the claim has none yet."""
    if not answered:
        return
    ids = [claim.pk for claim, _ in answered]
    by_claim: dict[int, dict[str, Decimal]] = defaultdict(dict)
    for start in range(0, len(ids), BATCH):
        for row in Posting.objects.filter(claim_id__in=ids[start:start + BATCH]).values("claim_id", "kind").annotate(total=Sum("amount")):
            by_claim[row["claim_id"]][row["kind"]] = row["total"] or Decimal(0)
    rows = []
    for claim, last in answered:
        payer_number = claim.payer_claim_control_number or last.payer_claim_control_number  # the payer's first answer names it
        rows.append((status_for(claim, by_claim[claim.pk], last), payer_number, claim.pk))
    update_rows(Claim, ["status", "payer_claim_control_number"], rows, also="updated_at = CURRENT_TIMESTAMP")
