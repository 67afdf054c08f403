"""Applying a 999 to the claims of the 837 it answers.

    result = apply_999(tenant, text, actor_label="system:import_999")

A 999 answers one functional group (AK102 = the GS06 of our 837, kept as `ClaimBatch.control_number`)
and, in it, each transaction set (AK202 = ST02). Claims of an accepted transaction set (IK501 A or E)
become ACCEPTED; claims of a rejected one (R, M, W, X) become REJECTED with the reason the 999 gives
(segment, loop, element, error and the claim named in CTX), so a biller can fix and resubmit them.
Only SUBMITTED claims move: applying the same 999 again, or a late 999 after the payer already paid,
changes nothing. The batch keeps the 999 and the group's verdict (AK901). One audit event per
batch, with counts only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from formats.x12.ack999 import (
    ACCEPTED,
    ELEMENT_ERRORS,
    SEGMENT_ERRORS,
    TRANSACTION_STATUS,
    Ack999,
    TransactionAck,
    parse_999,
)
from formats.x12.claim837 import INSTITUTIONAL_VERSION, PROFESSIONAL_VERSION
from reconciliation.choices import BatchStatus, ClaimStatus
from reconciliation.models import Claim, ClaimBatch
from tenants.audit import record_audit
from tenants.choices import AuditAction
from tenants.models import Tenant

AUDIT_OBJECT_TYPE = "reconciliation.claimbatch"
_KIND_OF_VERSION = {PROFESSIONAL_VERSION: "P", INSTITUTIONAL_VERSION: "I"}
_GROUP_STATUS = {"A": BatchStatus.ACCEPTED, "E": BatchStatus.ACCEPTED, "P": BatchStatus.PARTIALLY_ACCEPTED}


@dataclass
class AckResult:
    batches: list[dict] = field(default_factory=list)  # per 999: batch id, control number, verdict, counts
    problems: list[str] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        return sum(batch["accepted"] for batch in self.batches)

    @property
    def rejected(self) -> int:
        return sum(batch["rejected"] for batch in self.batches)


def apply_999(tenant: Tenant, body: str | bytes, *, actor_label: str, batch: ClaimBatch | None = None,
              now: datetime | None = None) -> AckResult:
    """Apply every 999 in `body` to the tenant's claims. Raises X12Error (nothing applied) when the
    file does not read as 999s. `batch` pins the batch when the caller knows it (a clearinghouse
    answer to our own submission); otherwise the batch is found by its control number and version."""
    acks = parse_999(body)
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    now = now or timezone.now()
    result = AckResult()
    with transaction.atomic():
        for ack in acks:
            target = batch if batch is not None else _batch_for(tenant, ack)
            if target is None:
                result.problems.append(
                    f"999 {ack.control_number} answers group {ack.group_control_number} ({ack.version or 'no version'}), "
                    "which no 837 batch of this tenant carries")
                continue
            result.batches.append(_apply(target, ack, text, now, actor_label))
    return result


def _batch_for(tenant: Tenant, ack: Ack999) -> ClaimBatch | None:
    if not ack.group_control_number.isdigit():
        return None
    batches = ClaimBatch.objects.filter(tenant=tenant, control_number=int(ack.group_control_number))
    kind = _KIND_OF_VERSION.get(ack.version)
    if kind:
        batches = batches.filter(kind=kind)
    return batches.order_by("-created_at", "-pk").first()


def _apply(batch: ClaimBatch, ack: Ack999, text: str, now: datetime, actor_label: str) -> dict:
    accepted = rejected = 0
    answered = set()
    for answer in ack.transactions:
        number = answer.control_number.lstrip("0")
        answered.add(number)
        claims = Claim.objects.filter(batch=batch, status=ClaimStatus.SUBMITTED,
                                      transaction_control_number__in=_spellings(answer.control_number))
        if answer.accepted:
            accepted += claims.update(status=ClaimStatus.ACCEPTED, rejection_reason="", updated_at=now)
        else:
            rejected += claims.update(status=ClaimStatus.REJECTED, rejection_reason=describe_rejection(answer), updated_at=now)
    if ack.group_status and ack.group_status not in ACCEPTED and ack.group_status != "P":
        # A rejected group rejects every transaction in it, answered one by one or not.
        reason = f"the 999 rejected the whole functional group {ack.group_control_number} (AK901 {ack.group_status})"
        rejected += Claim.objects.filter(batch=batch, status=ClaimStatus.SUBMITTED).exclude(
            transaction_control_number__in=[_spelled(n) for n in answered]).update(
            status=ClaimStatus.REJECTED, rejection_reason=reason, updated_at=now)
    batch.status = _GROUP_STATUS.get(ack.group_status, BatchStatus.REJECTED)
    batch.ack_body, batch.acknowledged_at = text, now
    batch.save(update_fields=["status", "ack_body", "acknowledged_at"])
    summary = {"batch": str(batch.public_id), "control_number": batch.control_number, "status": batch.status,
               "accepted": accepted, "rejected": rejected}
    record_audit(AuditAction.UPDATE, object_type=AUDIT_OBJECT_TYPE, object_id=batch.public_id, tenant=batch.tenant,
                 actor_label=actor_label, detail={"999": ack.control_number, **summary})
    return summary


def describe_rejection(answer: TransactionAck) -> str:
    """The 999's reasons for one rejected transaction set, in words, each naming where."""
    status = TRANSACTION_STATUS.get(answer.status, f"status {answer.status}")
    parts = [f"the 999 {status} transaction set {answer.control_number}"]
    for error in answer.segment_errors:
        where = f"segment {error.segment_id} at position {error.position}" + (f" (loop {error.loop_id})" if error.loop_id else "")
        claim = _claim_named(error.context)
        what = SEGMENT_ERRORS.get(error.code, f"error {error.code}")
        text = f"{where}{claim}: {what}"
        for element in error.element_errors:
            element_text = ELEMENT_ERRORS.get(element.code, f"error {element.code}")
            bad = f" (value {element.bad_data!r})" if element.bad_data else ""
            text += f"; element {error.segment_id}{element.position:02d}: {element_text}{bad}"
        parts.append(text)
    if answer.error_codes:
        parts.append("IK5 codes " + ", ".join(answer.error_codes))
    return "; ".join(parts)


def _claim_named(context: list[list[str]]) -> str:
    """The claim a CTX*CLM01 names: CTX01 is the composite "CLM01" + component separator + CLM01."""
    for values in context:
        if values and values[0][:5].upper() == "CLM01" and len(values[0]) > 6:
            return f" in claim {values[0][6:]}"
    return ""


def _spellings(control_number: str) -> list[str]:
    """ST02 as we wrote it (0001) and as a receiver may echo it (1)."""
    return sorted({control_number, _spelled(control_number.lstrip("0"))})


def _spelled(number: str) -> str:
    return number.zfill(4) if number.isdigit() else number
