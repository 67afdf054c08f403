"""HL7 v2 messages as received: the raw text, its dedup key and what became of it."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone

from connectors.hl7v2.choices import MessageStatus
from tenants.models import Connection, Tenant


class Hl7Message(models.Model):
    """One inbound HL7 v2 message, kept raw before it is acknowledged. Sender (MSH-3/MSH-4) and
    control id (MSH-10) are unique per tenant among accepted messages, so a resent message is
    acknowledged and not applied twice; rejected ones do not take the key (a fixed resend may)."""

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")
    connection = models.ForeignKey(Connection, on_delete=models.PROTECT, related_name="hl7_messages")
    sender = models.CharField(max_length=200, blank=True, help_text="MSH-3/MSH-4: sending application/facility.")
    control_id = models.CharField(max_length=200, blank=True, help_text="MSH-10.")
    message_type = models.CharField(max_length=3, blank=True, help_text="MSH-9.1, e.g. ADT.")
    trigger = models.CharField(max_length=3, blank=True, help_text="MSH-9.2, e.g. A08.")
    version = models.CharField(max_length=10, blank=True, help_text="MSH-12.")
    raw = models.TextField(help_text="The message as received (segments separated by <CR>).")
    received_at = models.DateTimeField(default=timezone.now)
    status = models.CharField(max_length=10, choices=MessageStatus.choices, default=MessageStatus.RECEIVED)
    ack_code = models.CharField(max_length=2, blank=True, help_text="AA, AE or AR as sent.")
    error = models.TextField(blank=True, help_text="Why it was rejected or failed (no PHI).")
    detail = models.JSONField(default=dict, blank=True, help_text="What applying it did (counts, merge survivor).")
    applied_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "sender", "control_id"], condition=~Q(status="rejected"), name="hl7message_unique_control_id",
            ),
        ]
        indexes = [models.Index(fields=["status", "received_at"], name="hl7message_status")]

    def __str__(self) -> str:
        return f"{self.message_type}^{self.trigger} {self.control_id} ({self.status})"
