"""The billers' worklist, and what a biller decides on it.

Sections: remittance claims not matched (or only proposed), denied claims by reason, partially
paid claims, submitted claims unpaid past the tenant's threshold, and remittances out of balance.
Decisions (confirm, reject, match by hand) post through reconciliation.posting and are audited.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import transaction
from django.db.models import Count, Q, Sum
from django.utils import timezone

from reconciliation.choices import ClaimStatus, MatchMethod, MatchStatus, PostingKind
from reconciliation.models import BillingProfile, Claim, Match, Posting, Remittance
from reconciliation.posting import post_claim
from tenants.audit import record_audit
from tenants.choices import AuditAction

DEFAULT_UNPAID_DAYS = 45


@dataclass
class Section:
    key: str
    title: str
    columns: tuple[str, ...]
    rows: list[tuple] = field(default_factory=list)
    total: Decimal = Decimal(0)  # the money the section stands for


def build_worklist(tenants, *, now: datetime | None = None) -> list[Section]:
    """The sections for these tenants (a queryset or list), newest problems first."""
    now = now or timezone.now()
    tenant_ids = [t.pk for t in tenants]
    sections = [
        _unmatched(tenant_ids), _denied(tenant_ids), _partially_paid(tenant_ids), _unpaid(tenant_ids, now), _out_of_balance(tenant_ids),
    ]
    return sections


def _unmatched(tenant_ids) -> Section:
    section = Section("unmatched", "Remittance claims not matched", ("tenant", "payer", "trace", "CLP01", "status", "paid", "match"))
    for match in (Match.objects.filter(tenant_id__in=tenant_ids, status__in=(MatchStatus.UNMATCHED, MatchStatus.PROPOSED))
                  .select_related("tenant", "remittance_claim__remittance").order_by("-remittance_claim__remittance__imported_at")):
        clp = match.remittance_claim
        section.rows.append((match.tenant.slug, clp.remittance.payer_name, clp.remittance.trace_number, clp.patient_control_number,
                             clp.status_code, clp.paid, match.get_status_display()))
        section.total += clp.paid
    return section


def _denied(tenant_ids) -> Section:
    section = Section("denied", "Denied claims by reason (CARC)", ("tenant", "reason", "claims", "amount"))
    rows = (Posting.objects.filter(tenant_id__in=tenant_ids, kind=PostingKind.DENIAL, claim__status=ClaimStatus.DENIED)
            .values("tenant__slug", "reason").annotate(claims=Count("claim", distinct=True), amount=Sum("amount")).order_by("-amount"))
    for row in rows:
        section.rows.append((row["tenant__slug"], row["reason"], row["claims"], row["amount"]))
        section.total += row["amount"] or 0
    return section


def _partially_paid(tenant_ids) -> Section:
    section = Section("partially_paid", "Partially paid claims", ("tenant", "claim", "payer", "charge", "paid"))
    claims = (Claim.objects.filter(tenant_id__in=tenant_ids, status=ClaimStatus.PARTIALLY_PAID).select_related("tenant")
              .annotate(paid=Sum("postings__amount", filter=Q(postings__kind=PostingKind.PAYMENT))).order_by("-updated_at"))
    for claim in claims:
        section.rows.append((claim.tenant.slug, claim.patient_control_number, claim.payer_name, claim.total_charge, claim.paid or 0))
        section.total += claim.total_charge - (claim.paid or 0)
    return section


def _unpaid(tenant_ids, now: datetime) -> Section:
    section = Section("unpaid", "Submitted claims unpaid past the threshold", ("tenant", "claim", "payer", "charge", "submitted"))
    days = dict(BillingProfile.objects.filter(tenant_id__in=tenant_ids).values_list("tenant_id", "unpaid_after_days"))
    overdue = Q()
    for tenant_id in tenant_ids:  # each tenant's own threshold, in one query
        overdue |= Q(tenant_id=tenant_id, submitted_at__lt=now - timedelta(days=days.get(tenant_id, DEFAULT_UNPAID_DAYS)))
    claims = (Claim.objects.filter(overdue, status__in=(ClaimStatus.SUBMITTED, ClaimStatus.ACCEPTED)).select_related("tenant")
              .order_by("submitted_at")) if tenant_ids else Claim.objects.none()
    for claim in claims:
        section.rows.append((claim.tenant.slug, claim.patient_control_number, claim.payer_name, claim.total_charge, claim.submitted_at.date()))
        section.total += claim.total_charge
    return section


def _out_of_balance(tenant_ids) -> Section:
    section = Section("out_of_balance", "Remittances out of balance", ("tenant", "payer", "trace", "payment", "difference"))
    for remittance in Remittance.objects.filter(tenant_id__in=tenant_ids, balanced=False).select_related("tenant").order_by("-imported_at"):
        section.rows.append((remittance.tenant.slug, remittance.payer_name, remittance.trace_number, remittance.payment_amount,
                             remittance.difference))
        section.total += abs(remittance.difference)
    return section


def worklist_csv(sections: list[Section]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    for section in sections:
        writer.writerow([section.title, f"total {section.total:.2f}"])
        writer.writerow(section.columns)
        writer.writerows([[f"{v:.2f}" if isinstance(v, Decimal) else v for v in row] for row in section.rows])
        writer.writerow([])
    return out.getvalue()


# --- a biller's decisions -----------------------------------------------------------------------------------
def confirm(match: Match, *, user) -> bool:
    """Confirm a proposed match and post it; False when it was decided meanwhile or has no claim."""
    return _decide(match, user=user, status=MatchStatus.CONFIRMED, claim=match.claim, expect=(MatchStatus.PROPOSED,))


def reject(match: Match, *, user) -> bool:
    return _decide(match, user=user, status=MatchStatus.REJECTED, claim=None, expect=(MatchStatus.PROPOSED,))


def match_by_hand(match: Match, claim: Claim, *, user) -> bool:
    """Point an unmatched, proposed or rejected remittance claim at a claim of the same tenant, and post it."""
    if claim.tenant_id != match.tenant_id:
        raise ValueError("the claim belongs to another tenant")
    return _decide(match, user=user, status=MatchStatus.CONFIRMED, claim=claim, method=MatchMethod.MANUAL,
                   expect=(MatchStatus.UNMATCHED, MatchStatus.PROPOSED, MatchStatus.REJECTED))


def _decide(match: Match, *, user, status: str, claim: Claim | None, expect: tuple[str, ...], method: str | None = None) -> bool:
    if status == MatchStatus.CONFIRMED and claim is None:
        return False
    fields = {"status": status, "claim": claim, "decided_by": user, "decided_at": timezone.now()}
    if method:
        fields.update(method=method, confidence=Decimal("1.00"))
    with transaction.atomic():
        changed = Match.objects.filter(pk=match.pk, status__in=expect).update(**fields)  # one decision wins
        if not changed:
            return False
        match.refresh_from_db()
        if status == MatchStatus.CONFIRMED:
            post_claim(match.remittance_claim, claim)
        record_audit(AuditAction.UPDATE, object_type="reconciliation.match", object_id=match.pk, tenant=match.tenant, user=user,
                     detail={"decision": status, "method": match.method, "claim": str(claim.public_id) if claim else ""})
    return True
