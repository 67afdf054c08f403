"""Sessions with vendors, sync bookkeeping and the failed-job triage queue."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from fernet_fields import EncryptedTextField

from canonical.ids import uuid7
from connectors.choices import FailedJobStatus, LoginMethod, RunStatus, SessionState, SyncMode, Trigger, WriteStatus
from tenants.models import Connection, Tenant


class VendorSession(models.Model):
    """The live login at a vendor for one connection. Tokens and cookies are encrypted at rest and
    never leave the hub: the admin and API show only the state."""

    connection = models.OneToOneField(Connection, on_delete=models.CASCADE, related_name="vendor_session")
    state = models.CharField(max_length=16, choices=SessionState.choices, default=SessionState.EXPIRED)
    method = models.CharField(max_length=16, choices=LoginMethod.choices, blank=True)
    access_token = EncryptedTextField(blank=True, default="")
    refresh_token = EncryptedTextField(blank=True, default="")
    cookies = EncryptedTextField(blank=True, default="", help_text="JSON object of cookie name → value.")
    obtained_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    rotated_at = models.DateTimeField(null=True, blank=True, help_text="When the vendor last handed us a new token or cookie.")
    logins = models.PositiveIntegerField(default=0)
    detail = models.CharField(max_length=300, blank=True, help_text="Why the last login failed (no secrets).")

    def __str__(self) -> str:
        return f"session of {self.connection} ({self.state})"

    def __repr__(self) -> str:
        return f"<VendorSession connection={self.connection_id} state={self.state}>"

    @property
    def usable(self) -> bool:
        return self.state == SessionState.ACTIVE and (self.expires_at is None or self.expires_at > timezone.now())


class MfaCode(models.Model):
    """A one-time code relayed to the hub by an SMS gateway or mailbox forwarder, for a login that waits on it."""

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="+")
    channel = models.CharField(max_length=8, choices=[("sms", "SMS"), ("email", "Email")])
    code = EncryptedTextField()
    received_at = models.DateTimeField(default=timezone.now)
    consumed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["connection", "received_at"], name="mfacode_lookup")]

    def __str__(self) -> str:
        return f"{self.channel} code for {self.connection_id} at {self.received_at:%H:%M:%S}"


class SyncCursor(models.Model):
    """Where the last committed page of a resource's sync left off (e.g. updated_since, next page)."""

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="+")
    resource = models.CharField(max_length=64)
    state = models.JSONField(default=dict)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["connection", "resource"], name="synccursor_unique")]

    def __str__(self) -> str:
        return f"{self.connection_id}/{self.resource}: {self.state}"


class SyncRun(models.Model):
    """One run of one resource's sync: what it fetched and did, and how it ended."""

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")
    connection = models.ForeignKey(Connection, on_delete=models.PROTECT, related_name="sync_runs")
    resource = models.CharField(max_length=64)
    mode = models.CharField(max_length=16, choices=SyncMode.choices)
    trigger = models.CharField(max_length=16, choices=Trigger.choices, default=Trigger.MANUAL)
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.QUEUED)
    pages = models.PositiveIntegerField(default=0)
    fetched = models.PositiveIntegerField(default=0)
    created = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    unchanged = models.PositiveIntegerField(default=0)
    deleted = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    queued_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True, help_text="Why the run failed (scrubbed of PHI and secrets).")

    class Meta:
        ordering = ["-queued_at"]
        indexes = [models.Index(fields=["connection", "resource", "-queued_at"], name="syncrun_lookup")]

    def __str__(self) -> str:
        return f"{self.resource} run {self.pk} ({self.status})"

    @property
    def duration(self):
        if self.started_at and self.finished_at:
            return self.finished_at - self.started_at
        return None


class SyncSeen(models.Model):
    """The external ids one page of a full_diff run saw, written in that page's transaction (one
    row per page, not per id: a no-change poll of 100,000 records writes 100 rows). What no page
    of the run saw is deleted at its end."""

    run = models.ForeignKey(SyncRun, on_delete=models.CASCADE, related_name="+")
    external_ids = models.JSONField(default=list)

    def __str__(self) -> str:
        return f"{len(self.external_ids)} ids seen by run {self.run_id}"


class FailedJob(models.Model):
    """A job that failed for the last time, or a record that failed to normalize: kept for triage."""

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    connection = models.ForeignKey(Connection, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    actor = models.CharField(max_length=100)
    arguments = models.JSONField(default=dict, help_text="The job's arguments (ids only).")
    exception_type = models.CharField(max_length=200)
    message = models.TextField(help_text="Scrubbed of PHI and secrets.")
    signature = models.CharField(max_length=64, db_index=True, help_text="Groups failures with the same cause.")
    traceback = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=1)
    first_failed_at = models.DateTimeField(default=timezone.now)
    last_failed_at = models.DateTimeField(default=timezone.now)
    sync_run = models.ForeignKey(SyncRun, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    source_record = models.ForeignKey("canonical.SourceRecord", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    status = models.CharField(max_length=16, choices=FailedJobStatus.choices, default=FailedJobStatus.OPEN)
    resolution = models.CharField(max_length=300, blank=True)
    resolved_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+")

    class Meta:
        ordering = ["-last_failed_at"]
        indexes = [models.Index(fields=["status", "-last_failed_at"], name="failedjob_open")]

    def __str__(self) -> str:
        return f"{self.actor}: {self.exception_type}"


class VendorWrite(models.Model):
    """One write to a vendor, keyed by its idempotency key: a retried job or a repeated request
    finds this row and never writes twice. The request holds public ids, never database keys."""

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")
    connection = models.ForeignKey(Connection, on_delete=models.PROTECT, related_name="writes")
    public_id = models.UUIDField(default=uuid7, unique=True, editable=False)
    operation = models.CharField(max_length=64)
    idempotency_key = models.CharField(max_length=200)
    request = models.JSONField(help_text="What was asked (canonical terms; references by public id).")
    fingerprint = models.CharField(max_length=64, help_text="SHA-256 of operation and request: a reused key must ask the same.")
    status = models.CharField(max_length=16, choices=WriteStatus.choices, default=WriteStatus.PENDING)
    rule = models.CharField(max_length=64, blank=True, help_text="The rule that refused it (refused writes).")
    error = models.TextField(blank=True, help_text="Why it was refused or failed (no PHI).")
    details = models.JSONField(default=dict, blank=True, help_text="Figures behind a refusal (units remaining, dates).")
    external_id = models.CharField(max_length=200, blank=True, help_text="The vendor's id for the written record.")
    record_kind = models.CharField(max_length=32, blank=True)
    record_public_id = models.UUIDField(null=True, blank=True, help_text="The canonical record the write ended in.")
    actor_label = models.CharField(max_length=200, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["connection", "idempotency_key"], name="vendorwrite_unique_key")]

    def __str__(self) -> str:
        return f"{self.operation} ({self.status})"
