"""Importing 835 remittances: parse, keep the file once, store each transaction once, check the balance.

    summary = import_remittance_file(tenant=t, body=data, name="era.835", actor_label="staff:ann")

A file that does not parse raises X12Error (naming segment and element) and stores nothing. The
same file imported again changes nothing; a transaction whose payer trace number was imported
before (from any file) is reported and not stored twice: a check is never posted twice.
Each new transaction is then matched to claims (reconciliation.matching) and posted (reconciliation.posting).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db import transaction

from formats.x12.era835 import EraClaim, Remittance835, balance_difference, parse_835
from formats.x12.tokenizer import paused_gc
from reconciliation.choices import MatchStatus
from reconciliation.matching import match_remittance
from reconciliation.models import (
    Adjustment,
    Match,
    ProviderAdjustment,
    Remittance,
    RemittanceClaim,
    RemittanceFile,
    RemittanceLine,
)
from reconciliation.posting import post_remittance
from tenants.audit import record_audit
from tenants.choices import AuditAction
from tenants.models import Tenant

CENT = Decimal("0.01")
BATCH = 1000  # rows per INSERT


@dataclass
class ImportSummary:
    file_id: int
    new_file: bool
    remittances: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def decode(body: bytes | str) -> tuple[str, bytes]:
    """The text and the exact bytes (for the hash). X12 is ASCII; Latin-1 never fails to decode."""
    if isinstance(body, str):
        return body, body.encode("utf-8")
    try:
        return body.decode("utf-8"), body
    except UnicodeDecodeError:
        return body.decode("latin-1"), body


def import_remittance_file(*, tenant: Tenant, body: bytes | str, name: str = "", actor_label: str = "system") -> ImportSummary:
    text, raw = decode(body)
    parsed = parse_835(text)  # X12Error propagates: nothing is stored
    digest = hashlib.sha256(raw).hexdigest()
    # Tens of thousands of rows become Python objects with no reference cycles: the cyclic
    # collector's passes were a third of the import's time, for nothing (see paused_gc).
    with paused_gc(), transaction.atomic():
        file, new_file = RemittanceFile.objects.get_or_create(tenant=tenant, sha256=digest, defaults={"name": name[:255], "body": text})
        summary = ImportSummary(file_id=file.pk, new_file=new_file)
        for era in parsed:
            existing = Remittance.objects.filter(tenant=tenant, trace_originator=era.trace_originator, trace_number=era.trace_number).first()
            if existing is not None:
                if existing.file_id != file.pk:
                    summary.problems.append(
                        f"transaction {era.control_number}: trace number {era.trace_number} was imported before "
                        f"(remittance {existing.public_id}); not stored twice")
                summary.remittances.append(describe(era, existing))
                continue
            remittance = store(tenant, file, era)
            match_remittance(remittance)
            post_remittance(remittance)
            summary.remittances.append(describe(era, remittance))
        if new_file:
            record_audit(AuditAction.IMPORT, object_type="reconciliation.remittancefile", object_id=file.pk, tenant=tenant,
                         actor_label=actor_label, detail={"sha256": digest, "transactions": len(parsed)})
    return summary


def store(tenant: Tenant, file: RemittanceFile, era: Remittance835) -> Remittance:
    difference = balance_difference(era)
    remittance = Remittance.objects.create(
        tenant=tenant, file=file, control_number=era.control_number, payer_name=era.payer.name, payer_id=era.payer.id,
        payee_name=era.payee.name, payee_id=era.payee.id, payment_amount=era.payment_amount, credit_debit=era.credit_debit,
        payment_method=era.payment_method, payment_date=era.payment_date, trace_number=era.trace_number,
        trace_originator=era.trace_originator, balanced=difference == 0, difference=difference,
    )
    _store_claims(remittance, era.claims)
    ProviderAdjustment.objects.bulk_create([
        ProviderAdjustment(remittance=remittance, provider_id=plb.provider_id, fiscal_period_date=plb.fiscal_period_date,
                           reason=plb.reason, reference=plb.reference, amount=plb.amount)
        for plb in era.provider_adjustments
    ])
    return remittance


def _store_claims(remittance: Remittance, era_claims: list[EraClaim]) -> None:
    """Claims, then their lines, then every adjustment: three batched inserts, not three per claim
    (a payer's biggest file has tens of thousands of claims)."""
    rows = RemittanceClaim.objects.bulk_create([
        RemittanceClaim(
            remittance=remittance, position=position, patient_control_number=c.patient_control_number, status_code=c.status_code,
            charge=c.charge, paid=c.paid, patient_responsibility=c.patient_responsibility,
            payer_claim_control_number=c.payer_claim_control_number, filing_indicator=c.filing_indicator,
            member_id=c.patient.id if c.patient else "", patient_last_name=c.patient.last_name if c.patient else "",
            patient_first_name=c.patient.first_name if c.patient else "", service_date_from=c.statement_from,
            service_date_to=c.statement_to, remark_codes=list(c.remark_codes),
        )
        for position, c in enumerate(era_claims, start=1)
    ], batch_size=BATCH)
    placed = [(row, line, position) for row, c in zip(rows, era_claims, strict=True) for position, line in enumerate(c.lines, start=1)]
    lines = RemittanceLine.objects.bulk_create([
        RemittanceLine(
            claim=row, position=position, procedure_qualifier=line.procedure.qualifier, procedure_code=line.procedure.code,
            modifiers=list(line.procedure.modifiers), charge=line.charge, paid=line.paid, units=line.units,
            service_date=line.service_date_from, line_control_number=line.control_number, remark_codes=list(line.remark_codes),
        )
        for row, line, position in placed
    ], batch_size=BATCH)
    adjustments = [Adjustment(claim=row, group=a.group, reason=a.reason, amount=a.amount, quantity=a.quantity)
                   for row, c in zip(rows, era_claims, strict=True) for a in c.adjustments]
    adjustments += [Adjustment(claim=row, line=line_row, group=a.group, reason=a.reason, amount=a.amount, quantity=a.quantity)
                    for (row, line, _), line_row in zip(placed, lines, strict=True) for a in line.adjustments]
    Adjustment.objects.bulk_create(adjustments, batch_size=BATCH)


def describe(era: Remittance835, remittance: Remittance) -> dict[str, Any]:
    """A transaction as `import_era --json` reports it: amounts as strings with two decimals."""
    by_group: dict[str, Decimal] = defaultdict(Decimal)
    for claim in era.claims:
        for adjustment in claim.adjustments + [a for line in claim.lines for a in line.adjustments]:
            by_group[adjustment.group] += adjustment.amount
    difference = balance_difference(era)
    return {
        "payer": era.payer.name, "trace_number": era.trace_number, "payment_amount": money(era.payment_amount),
        "payment_method": era.payment_method, "claims": len(era.claims),
        "matched": Match.objects.filter(remittance_claim__remittance=remittance, status=MatchStatus.CONFIRMED).count(),
        "unmatched": Match.objects.filter(remittance_claim__remittance=remittance).exclude(status=MatchStatus.CONFIRMED).count(),
        "total_paid": money(era.total_paid),
        "adjustments": {group: money(amount) for group, amount in sorted(by_group.items())},
        "provider_adjustments": money(era.provider_adjustment_total), "balanced": difference == 0, "difference": money(difference),
    }


def money(amount: Decimal) -> str:
    return str(amount.quantize(CENT))
