"""Keeping inbound payloads raw, before anything interprets them (nothing arrives that is not kept)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from django.db import connection as db_connection
from django.utils import timezone

from canonical.choices import SourceStatus
from canonical.models import SourceRecord
from tenants.models import Connection, Tenant


@dataclass(frozen=True)
class Payload:
    resource_type: str
    external_id: str
    body: str
    content_type: str = "application/json"

    @property
    def payload_hash(self) -> str:
        return hashlib.sha256(self.body.encode()).hexdigest()


def store_payloads(
    payloads: Sequence[Payload], *, tenant: Tenant, connection: Connection, now: datetime | None = None
) -> list[int]:
    """Store each payload (a byte-identical one already kept is not stored again) and return the
    SourceRecord ids in the order given. Call inside the transaction that will use them."""
    if not payloads:
        return []
    now = now or timezone.now()
    stamp = db_connection.ops.adapt_datetimefield_value(now)
    qn = db_connection.ops.quote_name
    table = qn(SourceRecord._meta.db_table)
    keys = [(p.resource_type, p.external_id, p.payload_hash) for p in payloads]
    rows = [
        (tenant.pk, connection.pk, p.resource_type, p.external_id, p.body, p.content_type, digest, stamp, SourceStatus.RECEIVED, "", "")
        for p, (_, _, digest) in zip(payloads, keys, strict=True)
    ]
    with db_connection.cursor() as cursor:
        cursor.executemany(
            f"INSERT INTO {table} (tenant_id, connection_id, resource_type, external_id, body, content_type, payload_hash, "  # noqa: S608
            "received_at, status, error, error_path) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (tenant_id, connection_id, resource_type, external_id, payload_hash) DO NOTHING",
            rows,
        )
    found: dict[tuple[str, str, str], int] = {}
    wanted = sorted(set(keys))
    for start in range(0, len(wanted), 300):
        chunk = wanted[start : start + 300]
        hashes = {digest for _, _, digest in chunk}
        for pk, resource_type, external_id, digest in SourceRecord.objects.filter(
            tenant=tenant, connection=connection, payload_hash__in=hashes
        ).values_list("pk", "resource_type", "external_id", "payload_hash"):
            found[(resource_type, external_id, digest)] = pk
    return [found[key] for key in keys]


def mark_failed(source_ids: Sequence[int], *, error: str, path: str = "") -> None:
    SourceRecord.objects.filter(pk__in=source_ids).update(status=SourceStatus.FAILED, error=error[:5000], error_path=path[:300])


def mark_normalized(source_ids: Sequence[int]) -> None:
    SourceRecord.objects.filter(pk__in=source_ids).update(status=SourceStatus.NORMALIZED, error="", error_path="")
