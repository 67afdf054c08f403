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


class MatchMethod(models.TextChoices):
    PATIENT_CONTROL_NUMBER = "pcn", "Patient control number (CLP01 = CLM01)"
    PAYER_CLAIM_NUMBER = "payer_ccn", "Payer claim control number (CLP07)"
    PATIENT_DATE_CHARGE = "patient_dos_charge", "Patient, date of service and charge"
    MANUAL = "manual", "Matched by hand"


class MatchStatus(models.TextChoices):
    CONFIRMED = "confirmed", "Confirmed (exact, or by a biller)"
    PROPOSED = "proposed", "Proposed (a biller confirms or rejects)"
    REJECTED = "rejected", "Rejected by a biller"
    UNMATCHED = "unmatched", "No claim found (worklist)"


class PostingKind(models.TextChoices):
    PAYMENT = "payment"
    CONTRACTUAL = "contractual", "Contractual adjustment (CO)"
    PATIENT_RESPONSIBILITY = "patient_responsibility", "Patient responsibility (PR)"
    OTHER_ADJUSTMENT = "other_adjustment", "Other adjustment (OA/PI/CR)"
    DENIAL = "denial"
