"""Value sets of claims and remittances."""

from __future__ import annotations

from django.db import models


class ClaimStatus(models.TextChoices):
    DRAFT = "draft"
    READY = "ready", "Ready to submit"
    SUBMITTED = "submitted"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    PAID = "paid"
    PARTIALLY_PAID = "partially_paid", "Partially paid"
    DENIED = "denied"
    REVERSED = "reversed"


class AdjustmentGroup(models.TextChoices):
    """CAS01 claim adjustment group codes (X12 005010)."""

    CO = "CO", "Contractual obligation"
    PR = "PR", "Patient responsibility"
    OA = "OA", "Other adjustment"
    PI = "PI", "Payer initiated reduction"
    CR = "CR", "Correction and reversal"
