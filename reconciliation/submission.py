"""The reconciliation side of sending claims through a vendor's clearinghouse path.

A connector's claim submission runs in three steps, each safe to repeat:
1. `prepare_batch(tenant, kind, request_key)` exports the ready claims once for this request (a
   retry after a lost answer finds the same batch, so no claim is exported twice);
2. after the vendor answered, `record_acknowledgement(batch, ack_999, reference)` keeps the
   clearinghouse's reference and applies the 999 to the batch's claims;
3. when the clearinghouse makes the 835 available, `import_batch_era(batch, text)` imports,
   matches and posts it (`reconciliation.remittances`), once.
"""

from __future__ import annotations

from django.db import transaction

from reconciliation.acknowledgements import AckResult, apply_999
from reconciliation.claims_export import ExportResult, export_ready_claims
from reconciliation.models import ClaimBatch, RemittanceFile
from reconciliation.remittances import ImportSummary, import_remittance_file
from tenants.models import Tenant


def prepare_batch(tenant: Tenant, kind: str, request_key: str, *, actor_label: str) -> tuple[ClaimBatch | None, ExportResult | None]:
    """The batch built for `request_key`, exporting the tenant's ready claims of `kind` the first
    time. (None, result) when nothing could be exported: the result says why."""
    existing = ClaimBatch.objects.filter(tenant=tenant, request_key=request_key).first()
    if existing is not None:
        return existing, None
    with transaction.atomic():
        result = export_ready_claims(tenant, kind=kind, actor_label=actor_label)
        if result.batch is None:
            return None, result
        ClaimBatch.objects.filter(pk=result.batch.pk).update(request_key=request_key)
        result.batch.request_key = request_key
    return result.batch, result


def record_acknowledgement(batch: ClaimBatch, ack_999: str, reference: str, *, actor_label: str) -> AckResult:
    with transaction.atomic():
        ClaimBatch.objects.filter(pk=batch.pk).update(clearinghouse_reference=reference)
        batch.clearinghouse_reference = reference
        return apply_999(batch.tenant, ack_999, actor_label=actor_label, batch=batch)


def import_batch_era(batch: ClaimBatch, era: str | bytes, *, actor_label: str) -> ImportSummary | None:
    """Import the 835 for `batch` (None when it was imported before). Raises X12Error, storing nothing,
    when the file does not parse."""
    if batch.era_file_id is not None:
        return None
    with transaction.atomic():
        summary = import_remittance_file(tenant=batch.tenant, body=era, name=f"era-{batch.clearinghouse_reference or batch.control_number}.835",
                                         actor_label=actor_label)
        ClaimBatch.objects.filter(pk=batch.pk).update(era_file_id=summary.file_id)
        batch.era_file = RemittanceFile.objects.get(pk=summary.file_id)
    return summary
