"""Writing change events (the outbox) with per-tenant cursors handed out in commit order."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from django.db import connection as db_connection

from canonical.models import ChangeCursor, ChangeEvent
from hub.bulk import insert_rows
from tenants.models import Tenant


def lock_cursor(tenant: Tenant) -> None:
    """Take the tenant's cursor row lock for the rest of the transaction.

    Every writer of a tenant's events takes it first, before touching records, so writers of one
    tenant queue here (never deadlock on record rows) and cursors follow commit order.
    """
    ChangeCursor.objects.get_or_create(tenant=tenant)
    list(ChangeCursor.objects.select_for_update().filter(tenant=tenant).values_list("pk", flat=True))


def write_events(tenant: Tenant, rows: Sequence[tuple[str, uuid.UUID, str, int]], now: datetime) -> int:
    """Append events `(resource_type, record public id, action, version)`; the caller holds `lock_cursor`."""
    if not rows:
        return 0
    qn = db_connection.ops.quote_name
    table = qn(ChangeCursor._meta.db_table)
    with db_connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET value = value + %s WHERE tenant_id = %s", [len(rows), tenant.pk])  # noqa: S608
        cursor.execute(f"SELECT value FROM {table} WHERE tenant_id = %s", [tenant.pk])  # noqa: S608
        last = cursor.fetchone()[0]
    first = last - len(rows) + 1
    native_uuid = db_connection.features.has_native_uuid_field
    occurred = db_connection.ops.adapt_datetimefield_value(now)
    params = [
        (tenant.pk, first + i, resource_type, record_id if native_uuid else record_id.hex, action, version, occurred)
        for i, (resource_type, record_id, action, version) in enumerate(rows)
    ]
    insert_rows(ChangeEvent._meta.db_table, ["tenant_id", "cursor", "resource_type", "record_id", "action", "version", "occurred_at"], params)
    return len(rows)
