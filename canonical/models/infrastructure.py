from __future__ import annotations

from django.db import models
from django.utils import timezone

from canonical.choices import ChangeAction, SourceStatus
from tenants.choices import MappingCategory
from tenants.models import Connection, Tenant


class SourceRecord(models.Model):
    """An inbound payload exactly as it arrived, kept before normalization so nothing is lost.

    A payload identical to one already kept (same source, resource, external id and hash) is not
    stored twice. A payload that fails to normalize stays here with its error, for replay."""

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")
    connection = models.ForeignKey(Connection, on_delete=models.PROTECT, related_name="+")
    resource_type = models.CharField(max_length=64)
    external_id = models.CharField(max_length=200, blank=True)
    body = models.TextField(help_text="The raw payload text.")
    content_type = models.CharField(max_length=100, default="application/json")
    payload_hash = models.CharField(max_length=64)
    received_at = models.DateTimeField(default=timezone.now, db_index=True)
    status = models.CharField(max_length=16, choices=SourceStatus.choices, default=SourceStatus.RECEIVED)
    error = models.TextField(blank=True, help_text="Why normalization failed: what and where.")
    error_path = models.CharField(max_length=300, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "connection", "resource_type", "external_id", "payload_hash"], name="sourcerecord_unique_payload"
            ),
        ]
        indexes = [
            models.Index(fields=["tenant", "connection", "resource_type", "external_id"], name="sourcerecord_lookup"),
            models.Index(fields=["tenant", "status"], name="sourcerecord_status"),
            models.Index(fields=["tenant", "connection", "external_id"], name="sourcerecord_by_external_id"),
        ]

    def __str__(self) -> str:
        return f"{self.resource_type}/{self.external_id or '?'} @ {self.received_at:%Y-%m-%d %H:%M:%S}"


class ChangeCursor(models.Model):
    """Per-tenant counter behind ChangeEvent.cursor. Writers lock this row for their transaction,
    so cursors are handed out in commit order: a reader that saw cursor N never later finds an
    event below N appearing (which a plain sequence allows under concurrency)."""

    tenant = models.OneToOneField(Tenant, on_delete=models.PROTECT, related_name="+")
    value = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"cursor {self.value} of tenant {self.tenant_id}"


class ChangeEvent(models.Model):
    """Outbox row written in the same transaction as each create, update or delete."""

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")
    cursor = models.BigIntegerField(help_text="Monotonic per tenant, in commit order.")
    resource_type = models.CharField(max_length=32)
    record_id = models.UUIDField(help_text="The record's public id.")
    action = models.CharField(max_length=8, choices=ChangeAction.choices)
    version = models.PositiveIntegerField()
    occurred_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["tenant", "cursor"]
        constraints = [models.UniqueConstraint(fields=["tenant", "cursor"], name="changeevent_unique_cursor")]
        indexes = [models.Index(fields=["record_id", "version"], name="changeevent_record")]

    def __str__(self) -> str:
        return f"#{self.cursor} {self.action} {self.resource_type}/{self.record_id} v{self.version}"


class UnmappedCode(models.Model):
    """A vendor code that arrived with no code mapping: kept as it came on the record, listed here."""

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")
    category = models.CharField(max_length=32, choices=MappingCategory.choices)
    source_system = models.CharField(max_length=100)
    source_code = models.CharField(max_length=100)
    occurrences = models.PositiveIntegerField(default=0)
    first_seen_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["tenant", "category", "-occurrences"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "category", "source_system", "source_code"], name="unmappedcode_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.category}: {self.source_system}/{self.source_code} ×{self.occurrences}"
