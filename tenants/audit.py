"""Writing audit events. Call inside the transaction of the action it records."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import connection as db_connection
from django.db.models import Model
from django.utils import timezone

from hub.bulk import insert_rows
from hub.request_context import get_request_id
from tenants.models import AuditEvent, PartnerApp, Tenant


def actor_label_for(user=None, partner_app: PartnerApp | None = None) -> str:
    if partner_app is not None:
        return f"partner:{partner_app.name}"
    if user is not None and getattr(user, "is_authenticated", False):
        return f"staff:{user.get_username()}"
    return "system"


def record_audit(
    action: str,
    *,
    object_type: str,
    object_id: Any = "",
    tenant: Tenant | None = None,
    user=None,
    partner_app: PartnerApp | None = None,
    ip: str | None = None,
    detail: dict[str, Any] | None = None,
    actor_label: str | None = None,
) -> AuditEvent:
    """Append one audit event. `detail` holds ids and counts only: never PHI, never secrets."""
    staff = user if (user is not None and getattr(user, "is_authenticated", False) and getattr(user, "pk", None)) else None
    return AuditEvent.objects.create(
        tenant=tenant,
        actor_user=staff,
        actor_partner_app=partner_app,
        actor_label=actor_label or actor_label_for(staff, partner_app),
        action=action,
        object_type=object_type,
        object_id=str(object_id or ""),
        request_id=get_request_id() if get_request_id() != "-" else "",
        ip=ip,
        detail=detail or {},
    )


def record_audits(
    events: list[tuple[str, str, Any, dict[str, Any]]], *, tenant: Tenant | None = None, actor_label: str | None = None,
    now: datetime | None = None,
) -> None:
    """Many system events `(action, object_type, object_id, detail)` in one bulk INSERT (COPY on
    PostgreSQL): the same rows `record_audit` writes, for jobs that decide thousands of things at
    once (Django's bulk_create of a thousand events cost more than identity matching itself)."""
    if not events:
        return
    ops = db_connection.ops
    request_id = get_request_id()
    head = (ops.adapt_datetimefield_value(now or timezone.now()), tenant.pk if tenant else None, None, None, actor_label or actor_label_for())
    request = "" if request_id == "-" else request_id
    rows = [
        (*head, action, object_type, str(object_id or ""), request, None, ops.adapt_json_value(detail or {}, None))
        for action, object_type, object_id, detail in events
    ]
    insert_rows(AuditEvent._meta.db_table, [AuditEvent._meta.get_field(name).column for name in _BULK_FIELDS], rows)


_BULK_FIELDS = ("occurred_at", "tenant", "actor_user", "actor_partner_app", "actor_label", "action", "object_type", "object_id", "request_id", "ip", "detail")


def object_type_of(obj: Model | type[Model]) -> str:
    return obj._meta.label_lower


def client_ip(request) -> str | None:
    """The peer address. Behind a proxy, the proxy must set REMOTE_ADDR (e.g. gunicorn --forwarded-allow-ips)."""
    return request.META.get("REMOTE_ADDR") or None
