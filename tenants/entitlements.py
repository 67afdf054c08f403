"""The one answer to "may tenant T do capability C on connection X now?". Everything calls this."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Q
from django.utils import timezone

from tenants.choices import Capability
from tenants.models import Connection, Entitlement, Tenant


class EntitlementMissing(PermissionError):
    """Raised when a tenant has not licensed a capability; the message names it."""

    def __init__(self, capability: str, tenant: Tenant, connection: Connection | None = None, reason: str = ""):
        self.capability = capability
        self.tenant = tenant
        self.connection = connection
        where = f" on connection '{connection.display_name}'" if connection is not None else ""
        super().__init__(
            reason or f"Tenant '{tenant.slug}' is not entitled to '{capability}'{where}."
        )


def is_entitled(tenant: Tenant, capability: str, connection: Connection | None = None, at: datetime | None = None) -> bool:
    """True when an entitlement for `capability` covers `connection` (or the tenant) at `at`.

    A tenant-wide entitlement (no connection) covers every connection of the tenant. An inactive
    tenant or a disabled connection is entitled to nothing.
    """
    return _refusal(tenant, capability, connection, at) is None


def require_entitlement(
    tenant: Tenant, capability: str, connection: Connection | None = None, at: datetime | None = None
) -> None:
    """Raise EntitlementMissing (naming the capability) unless `is_entitled`."""
    reason = _refusal(tenant, capability, connection, at)
    if reason is not None:
        raise EntitlementMissing(capability, tenant, connection, reason)


def _refusal(tenant: Tenant, capability: str, connection: Connection | None, at: datetime | None) -> str | None:
    if capability not in Capability.values:
        raise ValueError(f"unknown capability {capability!r}; known: {', '.join(Capability.values)}")
    if not tenant.active:
        return f"Tenant '{tenant.slug}' is inactive."
    if connection is not None:
        if connection.tenant_id != tenant.pk:
            raise ValueError("connection belongs to another tenant")
        if not connection.enabled:
            return f"Connection '{connection.display_name}' is disabled."
    now = at or timezone.now()
    scope = Q(connection__isnull=True)
    if connection is not None:
        scope |= Q(connection=connection)
    covered = (
        Entitlement.objects.filter(tenant=tenant, capability=capability)
        .filter(scope)
        .filter(valid_from__lte=now)
        .filter(Q(valid_to__isnull=True) | Q(valid_to__gt=now))
        .exists()
    )
    if covered:
        return None
    where = f" on connection '{connection.display_name}'" if connection is not None else ""
    return f"Tenant '{tenant.slug}' is not entitled to '{capability}'{where} (no entitlement valid now)."
