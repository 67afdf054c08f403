from __future__ import annotations

from django.db import models
from django.utils import timezone

from canonical.choices import MatchStatus
from canonical.ids import uuid7
from tenants.models import Tenant


class MasterPatient(models.Model):
    """One person, whatever connections they were synced from. Patients link to it."""

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")
    public_id = models.UUIDField(default=uuid7, unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"master patient {self.public_id}"


class MatchReview(models.Model):
    """A candidate pair scored between the thresholds, waiting for a person to link or keep apart."""

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")
    patient = models.ForeignKey("canonical.Patient", on_delete=models.PROTECT, related_name="+")
    candidate = models.ForeignKey("canonical.Patient", on_delete=models.PROTECT, related_name="+")
    score = models.DecimalField(max_digits=4, decimal_places=3)
    reasons = models.JSONField(default=list)
    status = models.CharField(max_length=16, choices=MatchStatus.choices, default=MatchStatus.PENDING)
    decided_by = models.ForeignKey("auth.User", on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    decided_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["status", "-score"]
        constraints = [models.UniqueConstraint(fields=["patient", "candidate"], name="matchreview_unique_pair")]

    def __str__(self) -> str:
        return f"{self.patient_id} ~ {self.candidate_id} ({self.score})"
