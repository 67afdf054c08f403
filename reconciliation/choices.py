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


class ClaimFilingIndicator(models.TextChoices):
    """SBR09: the kind of plan the claim is filed with (X12 005010 code list 1032, the common ones)."""

    COMMERCIAL = "CI", "Commercial insurance"
    MEDICARE_A = "MA", "Medicare Part A"
    MEDICARE_B = "MB", "Medicare Part B"
    MEDICAID = "MC", "Medicaid"
    BLUE_CROSS = "BL", "Blue Cross/Blue Shield"
    HMO = "HM", "Health maintenance organization"
    PPO = "12", "Preferred provider organization"
    POS = "13", "Point of service"
    EPO = "14", "Exclusive provider organization"
    HMO_MEDICARE_RISK = "16", "HMO Medicare risk (Medicare Advantage)"
    VA = "VA", "Veterans Affairs plan"
    CHAMPVA_TRICARE = "CH", "CHAMPUS (TRICARE)"
    WORKERS_COMP = "WC", "Workers' compensation"
    OTHER_FEDERAL = "OF", "Other federal program"
    SELF_PAY = "09", "Self-pay"
    OTHER = "ZZ", "Mutually defined"


class EligibilityStatus(models.TextChoices):
    PENDING = "pending", "Asked, no answer yet"
    ACTIVE = "active", "Coverage active"
    INACTIVE = "inactive", "Coverage inactive"
    NOT_FOUND = "not_found", "Member not found"
    REJECTED = "rejected", "Payer could not answer"
    ERROR = "error", "Failed (see error)"


class BatchStatus(models.TextChoices):
    """An 837 batch as its 999 answered it (AK901)."""

    SENT = "sent", "Sent, not yet acknowledged"
    ACCEPTED = "accepted"
    PARTIALLY_ACCEPTED = "partially_accepted", "Partially accepted"
    REJECTED = "rejected"


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
