from __future__ import annotations

from django.db import models
from django.utils import timezone

from canonical.ids import uuid7
from tenants.models import Connection, Tenant


class CanonicalRecord(models.Model):
    """Fields every canonical record carries. Rows are written by the upsert engine
    (`canonical.upsert`), never by `save()` from a view: it keeps hash, version and the change
    event in step. Unique per tenant + source connection + external id."""

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")
    source_connection = models.ForeignKey(Connection, on_delete=models.PROTECT, related_name="+")
    external_id = models.CharField(max_length=200, help_text="The record's id in the source system.")
    public_id = models.UUIDField(default=uuid7, unique=True, editable=False)
    content_hash = models.CharField(max_length=32, editable=False)
    version = models.PositiveIntegerField(default=1, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now, editable=False)
    deleted_at = models.DateTimeField(null=True, blank=True, editable=False, help_text="Set when the source deleted it (tombstone).")

    class Meta:
        abstract = True
        constraints = [
            models.UniqueConstraint(fields=["tenant", "source_connection", "external_id"], name="%(class)s_unique_source"),
        ]
        indexes = [models.Index(fields=["tenant", "updated_at"], name="%(class)s_tenant_updated")]

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None


class ChildRow(models.Model):
    """A row owned by one canonical record (diagnoses of an encounter, identifiers of a patient).
    Replaced as a set whenever its parent changes; its public id is derived from the parent's and
    its position, so it stays stable across updates."""

    public_id = models.UUIDField(unique=True, editable=False)
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        abstract = True
        ordering = ["position"]

    def __str__(self) -> str:
        return f"#{self.position + 1}"
