"""Claims the hub sends and the remittances (835) that pay them.

A remittance file is kept raw, once per tenant (by its SHA-256); each ST/SE transaction in it is a
Remittance, unique per tenant by payer and trace number, so the same check is never posted twice.
Money is Decimal to the cent; clinical and financial foreign keys PROTECT.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from canonical.ids import uuid7
from reconciliation.choices import (
    AdjustmentGroup,
    BatchStatus,
    ClaimFilingIndicator,
    ClaimStatus,
    EligibilityStatus,
    MatchMethod,
    MatchStatus,
    PostingKind,
)
from tenants.models import Tenant

_PROTECT = models.PROTECT
MONEY = {"max_digits": 14, "decimal_places": 2}


class ClaimBatch(models.Model):
    """One 837 interchange as sent (ISA13/GS06 = `control_number`) and the 999 that answered it."""

    tenant = models.ForeignKey(Tenant, on_delete=_PROTECT, related_name="+")
    public_id = models.UUIDField(default=uuid7, unique=True, editable=False)
    kind = models.CharField(max_length=1, choices=[("P", "Professional (837P)"), ("I", "Institutional (837I)")])
    control_number = models.PositiveIntegerField(help_text="ISA13 and GS06; a 999 names it in AK102.")
    body = models.TextField(help_text="The 837 as sent.")
    status = models.CharField(max_length=20, choices=BatchStatus.choices, default=BatchStatus.SENT)
    ack_body = models.TextField(blank=True, help_text="The 999 as received.")
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    clearinghouse_reference = models.CharField(max_length=100, blank=True, help_text="The clearinghouse's id for the batch.")
    request_key = models.CharField(max_length=200, blank=True, help_text="The write that built it: a retry finds this batch again.")
    era_file = models.ForeignKey("RemittanceFile", on_delete=_PROTECT, null=True, blank=True, related_name="+",
                                 help_text="The 835 the clearinghouse made available for the batch, once imported.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["tenant", "control_number"], name="claimbatch_tenant_control")]
        constraints = [models.UniqueConstraint(fields=["tenant", "request_key"], condition=~models.Q(request_key=""),
                                               name="claimbatch_unique_request")]

    def __str__(self) -> str:
        return f"837{self.kind} batch {self.control_number} ({self.status})"


class Claim(models.Model):
    """One professional (837P) or institutional (837I) claim, CLM01 = patient control number.

    The 837I fields (facility type, statement dates, admission, patient status, attending) are blank
    on professional claims; an institutional claim needs the facility type, statement dates and
    patient status to be exported.
    """

    tenant = models.ForeignKey(Tenant, on_delete=_PROTECT, related_name="+")
    public_id = models.UUIDField(default=uuid7, unique=True, editable=False)
    patient = models.ForeignKey("canonical.Patient", on_delete=_PROTECT, related_name="claims")
    coverage = models.ForeignKey("canonical.Coverage", on_delete=_PROTECT, null=True, blank=True, related_name="claims")
    encounters = models.ManyToManyField("canonical.Encounter", blank=True, related_name="claims")
    payer_name = models.CharField(max_length=200)
    payer_id = models.CharField(max_length=80)
    kind = models.CharField(max_length=1, choices=[("P", "Professional (837P)"), ("I", "Institutional (837I)")], default="P")
    patient_control_number = models.CharField(max_length=38, help_text="CLM01, echoed as CLP01 in the 835.")
    frequency_code = models.CharField(max_length=1, default="1", help_text="1 original, 7 replacement, 8 void.")
    place_of_service = models.CharField(max_length=2, default="12", help_text="12 = home.")
    claim_filing_indicator = models.CharField(max_length=2, choices=ClaimFilingIndicator.choices,
                                              default=ClaimFilingIndicator.COMMERCIAL, help_text="SBR09.")
    facility_type_code = models.CharField(max_length=2, blank=True, help_text=(
        "837I: CLM05-1, the type of bill without its frequency digit (32 home health, 81 or 82 hospice)."))
    statement_from = models.DateField(null=True, blank=True, help_text="837I: DTP*434.")
    statement_to = models.DateField(null=True, blank=True, help_text="837I: DTP*434.")
    admission_date = models.DateField(null=True, blank=True, help_text="837I: DTP*435.")
    admission_type_code = models.CharField(max_length=1, blank=True, help_text="837I: CL101.")
    admission_source_code = models.CharField(max_length=1, blank=True, help_text="837I: CL102.")
    patient_status_code = models.CharField(max_length=2, blank=True, help_text="837I: CL103 (30 still a patient, 01 discharged home).")
    attending_practitioner = models.ForeignKey("canonical.Practitioner", on_delete=_PROTECT, null=True, blank=True,
                                               related_name="attended_claims", help_text="837I: 2310A.")
    batch = models.ForeignKey(ClaimBatch, on_delete=_PROTECT, null=True, blank=True, related_name="claims",
                              help_text="The 837 that last carried the claim.")
    transaction_control_number = models.CharField(max_length=9, blank=True, help_text="ST02 of its transaction in the batch.")
    rejection_reason = models.TextField(blank=True, help_text="Why the 999 rejected it.")
    total_charge = models.DecimalField(**MONEY)
    payer_claim_control_number = models.CharField(max_length=50, blank=True, help_text="CLP07 of the payer's first answer.")
    status = models.CharField(max_length=16, choices=ClaimStatus.choices, default=ClaimStatus.DRAFT)
    submitted_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "patient_control_number"], name="claim_unique_pcn")]
        indexes = [models.Index(fields=["tenant", "status"], name="claim_tenant_status")]

    def __str__(self) -> str:
        return f"claim {self.patient_control_number} ({self.status})"


class ClaimLine(models.Model):
    """One service line (SV1/SV2)."""

    claim = models.ForeignKey(Claim, on_delete=models.CASCADE, related_name="lines")
    position = models.PositiveSmallIntegerField()
    procedure_code = models.CharField(max_length=10)
    modifiers = models.JSONField(default=list, blank=True)
    units = models.DecimalField(max_digits=10, decimal_places=2)
    charge = models.DecimalField(**MONEY)
    service_date = models.DateField()
    revenue_code = models.CharField(max_length=4, blank=True, help_text="837I only.")
    authorization = models.ForeignKey("canonical.Authorization", on_delete=_PROTECT, null=True, blank=True, related_name="claim_lines")
    line_control_number = models.CharField(max_length=50, blank=True, help_text="REF*6R, echoed in the 835.")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["claim", "position"], name="claimline_unique_position")]
        ordering = ["position"]

    def __str__(self) -> str:
        return f"line {self.position}: {self.procedure_code}"


class RemittanceFile(models.Model):
    """An 835 file as it came, kept once per tenant: re-importing the same bytes changes nothing."""

    tenant = models.ForeignKey(Tenant, on_delete=_PROTECT, related_name="+")
    name = models.CharField(max_length=255, blank=True)
    sha256 = models.CharField(max_length=64)
    body = models.TextField()
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "sha256"], name="remittancefile_unique_body")]

    def __str__(self) -> str:
        return self.name or self.sha256[:12]


class Remittance(models.Model):
    """One 835 transaction set: one payment (or notice) from one payer."""

    tenant = models.ForeignKey(Tenant, on_delete=_PROTECT, related_name="+")
    public_id = models.UUIDField(default=uuid7, unique=True, editable=False)
    file = models.ForeignKey(RemittanceFile, on_delete=_PROTECT, related_name="remittances")
    control_number = models.CharField(max_length=9, help_text="ST02.")
    payer_name = models.CharField(max_length=200, blank=True)
    payer_id = models.CharField(max_length=80, blank=True)
    payee_name = models.CharField(max_length=200, blank=True)
    payee_id = models.CharField(max_length=80, blank=True)
    payment_amount = models.DecimalField(**MONEY, help_text="BPR02.")
    credit_debit = models.CharField(max_length=1, default="C")
    payment_method = models.CharField(max_length=3, help_text="BPR04: ACH, CHK, NON, FWT, BOP.")
    payment_date = models.DateField(null=True, blank=True)
    trace_number = models.CharField(max_length=50, help_text="TRN02: EFT trace or check number.")
    trace_originator = models.CharField(max_length=10, blank=True, help_text="TRN03: the payer's company id.")
    balanced = models.BooleanField(default=True)
    difference = models.DecimalField(**MONEY, default=0, help_text="BPR02 − (Σ CLP04 − Σ PLB).")
    imported_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "trace_originator", "trace_number"], name="remittance_unique_trace")]

    def __str__(self) -> str:
        return f"{self.payer_name} {self.trace_number}"


class RemittanceClaim(models.Model):
    """One CLP loop: the payer's answer for one claim."""

    remittance = models.ForeignKey(Remittance, on_delete=models.CASCADE, related_name="claims")
    position = models.PositiveIntegerField()
    patient_control_number = models.CharField(max_length=38, db_index=True)
    status_code = models.CharField(max_length=2, help_text="CLP02: 1 primary, 2 secondary, 4 denied, 22 reversal, …")
    charge = models.DecimalField(**MONEY)
    paid = models.DecimalField(**MONEY)
    patient_responsibility = models.DecimalField(**MONEY, default=0)
    payer_claim_control_number = models.CharField(max_length=50, blank=True)
    filing_indicator = models.CharField(max_length=2, blank=True)
    member_id = models.CharField(max_length=80, blank=True)
    patient_last_name = models.CharField(max_length=100, blank=True)
    patient_first_name = models.CharField(max_length=100, blank=True)
    service_date_from = models.DateField(null=True, blank=True)
    service_date_to = models.DateField(null=True, blank=True)
    remark_codes = models.JSONField(default=list, blank=True, help_text="RARC from MIA/MOA.")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["remittance", "position"], name="remittanceclaim_unique_position")]
        ordering = ["position"]

    def __str__(self) -> str:
        return f"CLP {self.patient_control_number}"


class RemittanceLine(models.Model):
    """One SVC loop."""

    claim = models.ForeignKey(RemittanceClaim, on_delete=models.CASCADE, related_name="lines")
    position = models.PositiveIntegerField()
    procedure_qualifier = models.CharField(max_length=2, default="HC")
    procedure_code = models.CharField(max_length=48)
    modifiers = models.JSONField(default=list, blank=True)
    charge = models.DecimalField(**MONEY)
    paid = models.DecimalField(**MONEY)
    units = models.DecimalField(max_digits=10, decimal_places=2, default=1)
    service_date = models.DateField(null=True, blank=True)
    line_control_number = models.CharField(max_length=50, blank=True)
    remark_codes = models.JSONField(default=list, blank=True, help_text="LQ*HE (RARC).")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["claim", "position"], name="remittanceline_unique_position")]
        ordering = ["position"]

    def __str__(self) -> str:
        return f"SVC {self.procedure_code}"


class Adjustment(models.Model):
    """One CAS triple, at claim level (line empty) or line level."""

    claim = models.ForeignKey(RemittanceClaim, on_delete=models.CASCADE, related_name="adjustments")
    line = models.ForeignKey(RemittanceLine, on_delete=models.CASCADE, null=True, blank=True, related_name="adjustments")
    group = models.CharField(max_length=2, choices=AdjustmentGroup.choices)
    reason = models.CharField(max_length=5, help_text="CARC.")
    amount = models.DecimalField(**MONEY)
    quantity = models.DecimalField(max_digits=10, decimal_places=2, null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.group}-{self.reason} {self.amount}"


class ProviderAdjustment(models.Model):
    """One PLB amount: interest (L6), forward balance (FB), withholding…; positive reduces the payment."""

    remittance = models.ForeignKey(Remittance, on_delete=models.CASCADE, related_name="provider_adjustments")
    provider_id = models.CharField(max_length=50)
    fiscal_period_date = models.DateField()
    reason = models.CharField(max_length=2)
    reference = models.CharField(max_length=50, blank=True)
    amount = models.DecimalField(**MONEY)

    def __str__(self) -> str:
        return f"PLB {self.reason} {self.amount}"


class Match(models.Model):
    """Which claim a remittance claim (CLP) pays, how it was found, and how sure."""

    tenant = models.ForeignKey(Tenant, on_delete=_PROTECT, related_name="+")
    remittance_claim = models.OneToOneField(RemittanceClaim, on_delete=models.CASCADE, related_name="match")
    claim = models.ForeignKey(Claim, on_delete=_PROTECT, null=True, blank=True, related_name="matches")
    method = models.CharField(max_length=20, choices=MatchMethod.choices, blank=True)
    confidence = models.DecimalField(max_digits=3, decimal_places=2, default=0)
    status = models.CharField(max_length=12, choices=MatchStatus.choices)
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=_PROTECT, null=True, blank=True, related_name="+")
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["tenant", "status"], name="match_tenant_status")]

    def __str__(self) -> str:
        return f"{self.remittance_claim} → {self.claim or '—'} ({self.status})"


class Posting(models.Model):
    """One amount posted to a claim from a remittance claim. A reversal posts the negatives of
    what it undoes, each pointing at the posting it reverses; nothing is ever edited or deleted."""

    tenant = models.ForeignKey(Tenant, on_delete=_PROTECT, related_name="+")
    claim = models.ForeignKey(Claim, on_delete=_PROTECT, related_name="postings")
    remittance_claim = models.ForeignKey(RemittanceClaim, on_delete=_PROTECT, related_name="postings")
    kind = models.CharField(max_length=24, choices=PostingKind.choices)
    group = models.CharField(max_length=2, blank=True)
    reason = models.CharField(max_length=5, blank=True, help_text="CARC (adjustments and denials).")
    amount = models.DecimalField(**MONEY)
    reverses = models.OneToOneField("self", on_delete=_PROTECT, null=True, blank=True, related_name="reversed_by")
    posted_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["claim", "kind"], name="posting_claim_kind")]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount}"


class FeeScheduleEntry(models.Model):
    """What the tenant charges for a procedure (with a modifier, or for any): a claim line's charge is this × units."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    procedure_code = models.CharField(max_length=10, help_text="CPT/HCPCS.")
    modifier = models.CharField(max_length=2, blank=True, help_text="Blank: any modifier.")
    charge = models.DecimalField(**MONEY, help_text="Per unit.")
    revenue_code = models.CharField(max_length=4, blank=True, help_text="UB-04 revenue code for 837I lines.")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "procedure_code", "modifier"], name="fee_unique_code")]
        verbose_name_plural = "fee schedule"

    def __str__(self) -> str:
        return f"{self.procedure_code}{'-' + self.modifier if self.modifier else ''}: {self.charge}"


class BillingProfile(models.Model):
    """How a tenant bills: the billing provider on its 837s, the clearinghouse ids, the worklist's threshold."""

    tenant = models.OneToOneField(Tenant, on_delete=models.CASCADE, related_name="billing_profile")
    organization_name = models.CharField(max_length=60)
    npi = models.CharField(max_length=10, verbose_name="NPI")
    tax_id = models.CharField(max_length=9, help_text="EIN, nine digits.")
    address_line1 = models.CharField(max_length=55)
    city = models.CharField(max_length=30)
    state = models.CharField(max_length=2)
    postal_code = models.CharField(max_length=9, help_text="ZIP+4, nine digits (837 billing provider).")
    phone = models.CharField(max_length=10, blank=True)
    submitter_id = models.CharField(max_length=15, help_text="ISA06/GS02: our id at the clearinghouse.")
    receiver_id = models.CharField(max_length=15, help_text="ISA08/GS03: the clearinghouse's id.")
    receiver_name = models.CharField(max_length=60)
    unpaid_after_days = models.PositiveIntegerField(default=45, help_text="Submitted claims unpaid this long go to the worklist.")

    def __str__(self) -> str:
        return f"billing profile of {self.tenant}"


class EligibilityCheck(models.Model):
    """One real-time eligibility question (270) to a payer about a patient on a date, and its answer (271)."""

    tenant = models.ForeignKey(Tenant, on_delete=_PROTECT, related_name="+")
    public_id = models.UUIDField(default=uuid7, unique=True, editable=False)
    patient = models.ForeignKey("canonical.Patient", on_delete=_PROTECT, related_name="eligibility_checks")
    coverage = models.ForeignKey("canonical.Coverage", on_delete=_PROTECT, null=True, blank=True, related_name="eligibility_checks")
    connection = models.ForeignKey("tenants.Connection", on_delete=_PROTECT, null=True, blank=True, related_name="+",
                                   help_text="The connection the question went through.")
    service_date = models.DateField()
    service_types = models.JSONField(default=list, help_text="EQ01 codes asked, e.g. 30 plan coverage.")
    status = models.CharField(max_length=12, choices=EligibilityStatus.choices, default=EligibilityStatus.PENDING)
    payer_name = models.CharField(max_length=200, blank=True)
    payer_id = models.CharField(max_length=80, blank=True)
    member_id = models.CharField(max_length=80, blank=True)
    plan_name = models.CharField(max_length=200, blank=True)
    coverage_start = models.DateField(null=True, blank=True)
    coverage_end = models.DateField(null=True, blank=True)
    copay = models.DecimalField(**MONEY, null=True, blank=True)
    coinsurance_percent = models.DecimalField(max_digits=5, decimal_places=2, null=True, blank=True, help_text="20.00 = 20%.")
    deductible = models.DecimalField(**MONEY, null=True, blank=True)
    deductible_remaining = models.DecimalField(**MONEY, null=True, blank=True)
    reason = models.CharField(max_length=300, blank=True, help_text="Why the payer could not answer (AAA) or why the check failed.")
    trace_number = models.CharField(max_length=50, blank=True, help_text="TRN02 of the 270, echoed in the 271.")
    request_x12 = models.TextField(blank=True)
    response_x12 = models.TextField(blank=True)
    requested_at = models.DateTimeField(default=timezone.now)
    answered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["tenant", "patient", "service_date"], name="eligibility_tenant_patient")]

    def __str__(self) -> str:
        return f"eligibility {self.service_date} ({self.status})"
