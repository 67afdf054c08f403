"""Tenants and everything that says what a tenant may do and who did what."""

from __future__ import annotations

import json

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from fernet_fields import EncryptedTextField

from connectors.registry import vendor_choices
from hub.models import PublicIdModel, TimestampedModel
from tenants.choices import AuditAction, Capability, ConnectionStatus, MappingCategory
from tenants.validators import validate_cron, validate_timezone, validate_vendor_base_url


class Tenant(TimestampedModel):
    """A care organization whose systems the hub connects. Every record belongs to exactly one."""

    slug = models.SlugField(max_length=63, unique=True, help_text="Short, permanent name used in commands and URLs.")
    name = models.CharField(max_length=200)
    timezone = models.CharField(
        max_length=64, default="America/New_York", validators=[validate_timezone],
        help_text="IANA time zone of the agency, used for schedules and alerts (e.g. America/Chicago).",
    )
    active = models.BooleanField(default=True, help_text="An inactive tenant's keys and jobs are refused.")

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return f"{self.name} ({self.slug})"


class Connection(PublicIdModel, TimestampedModel):
    """One tenant's account at one vendor: where it lives, when it syncs, how it is doing."""

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="connections")
    vendor = models.CharField(max_length=32, choices=vendor_choices)
    display_name = models.CharField(max_length=200, help_text="How staff tell this connection apart, e.g. 'WellSky – North branch'.")
    base_url = models.URLField(
        max_length=500, blank=True, validators=[validate_vendor_base_url],
        help_text="The vendor's API root for this tenant, e.g. https://api.vendor.example/v1 (empty for inbound-only feeds).",
    )
    enabled = models.BooleanField(default=True, help_text="Disabled connections are never synced or written to.")
    sync_schedule = models.CharField(
        max_length=100, blank=True, validators=[validate_cron],
        help_text="Cron schedule for periodic syncs (minute hour day month weekday), e.g. '*/15 * * * *'. Empty: manual only.",
    )
    options = models.JSONField(
        default=dict, blank=True,
        help_text="Vendor-specific settings, checked against the vendor's schema, e.g. {\"rate_limit_per_second\": 10}.",
    )
    status = models.CharField(max_length=16, choices=ConnectionStatus.choices, default=ConnectionStatus.NEW, editable=False)
    status_detail = models.CharField(max_length=500, blank=True, editable=False)
    last_synced_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["tenant__slug", "display_name"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "display_name"], name="connection_unique_name_per_tenant"),
        ]

    def __str__(self) -> str:
        return f"{self.display_name} [{self.vendor}]"


class Credential(TimestampedModel):
    """How the hub logs into a connection's vendor. Secrets are Fernet-encrypted and write-only."""

    SECRET_FIELDS = ("password", "totp_secret", "client_secret", "private_key_pem", "extra")

    connection = models.OneToOneField(Connection, on_delete=models.CASCADE, related_name="credential")
    username = models.CharField(max_length=200, blank=True)
    password = EncryptedTextField(blank=True, default="")
    totp_secret = EncryptedTextField(
        blank=True, default="", verbose_name="TOTP secret",
        help_text="Base32 seed of the vendor account's authenticator app, for MFA by TOTP.",
    )
    client_id = models.CharField(max_length=200, blank=True, verbose_name="OAuth client id")
    client_secret = EncryptedTextField(blank=True, default="", verbose_name="OAuth client secret")
    private_key_pem = EncryptedTextField(
        blank=True, default="", verbose_name="private key (PEM)",
        help_text="For signed JWT client assertions (SMART Backend Services).",
    )
    extra = EncryptedTextField(blank=True, default="", help_text="JSON object of vendor-specific secrets.")

    def __str__(self) -> str:
        return f"credential for {self.connection}"

    def __repr__(self) -> str:  # never the secrets
        return f"<Credential connection={self.connection_id} set={sorted(self.secrets_set())}>"

    def secrets_set(self) -> set[str]:
        return {name for name in self.SECRET_FIELDS if getattr(self, name)}

    @property
    def extra_data(self) -> dict:
        return json.loads(self.extra) if self.extra else {}


class Entitlement(PublicIdModel, TimestampedModel):
    """A capability the tenant has licensed, tenant-wide or for one connection, for a period."""

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="entitlements")
    connection = models.ForeignKey(
        Connection, on_delete=models.CASCADE, null=True, blank=True, related_name="entitlements",
        help_text="Leave empty for every connection of the tenant.",
    )
    capability = models.CharField(max_length=40, choices=Capability.choices)
    valid_from = models.DateTimeField(default=timezone.now)
    valid_to = models.DateTimeField(null=True, blank=True, help_text="Empty: no end date.")
    note = models.CharField(max_length=200, blank=True, help_text="Contract or order reference.")

    class Meta:
        ordering = ["tenant__slug", "capability"]
        constraints = [
            models.CheckConstraint(
                condition=Q(valid_to__isnull=True) | Q(valid_to__gt=models.F("valid_from")),
                name="entitlement_valid_to_after_from",
            ),
        ]
        indexes = [models.Index(fields=["tenant", "capability"], name="entitlement_lookup")]

    def __str__(self) -> str:
        where = self.connection.display_name if self.connection_id else "all connections"
        return f"{self.capability} ({where})"

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        if self.connection_id and self.tenant_id and self.connection.tenant_id != self.tenant_id:
            raise ValidationError({"connection": "This connection belongs to another tenant."})
        if self.valid_to and self.valid_from and self.valid_to <= self.valid_from:
            raise ValidationError({"valid_to": "Must be after 'valid from'."})


class PartnerApp(PublicIdModel, TimestampedModel):
    """A partner's integration (CRM, analytics, RCM tool) acting for one tenant through the API."""

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="partner_apps")
    name = models.CharField(max_length=200)
    contact_email = models.EmailField(blank=True, help_text="Who we tell about failing webhooks or expiring keys.")
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["tenant__slug", "name"]
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="partnerapp_unique_name_per_tenant")]

    def __str__(self) -> str:
        return f"{self.name} ({self.tenant.slug})"


class ApiKey(PublicIdModel, TimestampedModel):
    """A partner's API key. Only the SHA-256 of its secret is stored; the key is shown once."""

    partner_app = models.ForeignKey(PartnerApp, on_delete=models.PROTECT, related_name="api_keys")
    name = models.CharField(max_length=200, blank=True)
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    secret_hash = models.CharField(max_length=64, editable=False)
    scopes = models.JSONField(default=list, help_text="Scopes such as patients:read; '*' grants all.")
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, editable=False, related_name="+"
    )

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"sb_live_{self.prefix}_… ({self.name or self.partner_app.name})"

    @property
    def tenant(self) -> Tenant:
        return self.partner_app.tenant


class CodeMapping(PublicIdModel, TimestampedModel):
    """Translates one vendor code into the hub's code for a tenant (e.g. a WellSky service code to HCPCS)."""

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="code_mappings")
    category = models.CharField(max_length=32, choices=MappingCategory.choices)
    source_system = models.CharField(max_length=100, help_text="Where the code comes from, e.g. 'wellsky'.")
    source_code = models.CharField(max_length=100)
    target_system = models.CharField(max_length=200, help_text="Code system of the result, e.g. 'HCPCS' or a URI.")
    target_code = models.CharField(max_length=100)
    display = models.CharField(max_length=200, blank=True)
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["tenant__slug", "category", "source_system", "source_code"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "category", "source_system", "source_code"], name="codemapping_unique_source"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.category}: {self.source_system}/{self.source_code} → {self.target_system}/{self.target_code}"


class AppendOnlyQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise PermissionError("Audit events are append-only: update is not allowed.")

    def delete(self):
        raise PermissionError("Audit events are append-only: delete is not allowed.")

    _raw_delete = delete


class AuditEvent(models.Model):
    """Append-only record of who read or changed what. Never updated, never deleted."""

    occurred_at = models.DateTimeField(default=timezone.now, db_index=True)
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    actor_partner_app = models.ForeignKey(PartnerApp, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    actor_label = models.CharField(max_length=200, help_text="Who, as it read at the time.")
    action = models.CharField(max_length=32, choices=AuditAction.choices)
    object_type = models.CharField(max_length=100)
    object_id = models.CharField(max_length=100, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True, verbose_name="IP address")
    detail = models.JSONField(default=dict, blank=True, help_text="Ids and counts; never PHI or secrets.")

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        ordering = ["-occurred_at", "-id"]
        indexes = [models.Index(fields=["tenant", "-occurred_at"], name="audit_tenant_time")]

    def __str__(self) -> str:
        return f"{self.occurred_at:%Y-%m-%d %H:%M:%S} {self.actor_label} {self.action} {self.object_type} {self.object_id}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise PermissionError("Audit events are append-only: an existing event cannot be saved again.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise PermissionError("Audit events are append-only: delete is not allowed.")
