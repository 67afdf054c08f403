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


class StoredIds(list):
    """SourceRecord ids in the order the payloads were given; `created` counts the new rows."""

    created: int = 0


def store_payloads(
    payloads: Sequence[Payload], *, tenant: Tenant, connection: Connection, now: datetime | None = None
) -> StoredIds:
    """Store each payload (a byte-identical one already kept is not stored again) and return the
    SourceRecord ids in the order given. Call inside the transaction that will use them.

    Looks before it writes: a re-sync of unchanged data finds every payload kept and writes nothing.
    """
    if not payloads:
        return StoredIds()
    keys = [(p.resource_type, p.external_id, p.payload_hash) for p in payloads]
    found = _lookup(tenant, connection, keys)
    missing: dict[tuple[str, str, str], Payload] = {}
    for payload, key in zip(payloads, keys, strict=True):
        if key not in found:
            missing.setdefault(key, payload)
    if missing:
        stamp = db_connection.ops.adapt_datetimefield_value(now or timezone.now())
        table = db_connection.ops.quote_name(SourceRecord._meta.db_table)
        with db_connection.cursor() as cursor:
            cursor.executemany(
                f"INSERT INTO {table} (tenant_id, connection_id, resource_type, external_id, body, content_type, payload_hash, "  # noqa: S608
                "received_at, status, error, error_path) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (tenant_id, connection_id, resource_type, external_id, payload_hash) DO NOTHING",
                [
                    (tenant.pk, connection.pk, *key[:2], p.body, p.content_type, key[2], stamp, SourceStatus.RECEIVED, "", "")
                    for key, p in missing.items()
                ],
            )
        found.update(_lookup(tenant, connection, list(missing)))
    stored = StoredIds(found[key] for key in keys)
    stored.created = len(missing)
    return stored


def _lookup(tenant: Tenant, connection: Connection, keys: Sequence[tuple[str, str, str]]) -> dict[tuple[str, str, str], int]:
    found: dict[tuple[str, str, str], int] = {}
    wanted = set(keys)
    hashes = sorted({digest for _, _, digest in keys})
    for start in range(0, len(hashes), 500):
        rows = SourceRecord.objects.filter(tenant=tenant, connection=connection, payload_hash__in=hashes[start : start + 500])
        for pk, resource_type, external_id, digest in rows.values_list("pk", "resource_type", "external_id", "payload_hash"):
            if (resource_type, external_id, digest) in wanted:
                found[(resource_type, external_id, digest)] = pk
    return found


def mark_failed(source_ids: Sequence[int], *, error: str, path: str = "") -> None:
    SourceRecord.objects.filter(pk__in=source_ids).update(status=SourceStatus.FAILED, error=error[:5000], error_path=path[:300])


def mark_normalized(source_ids: Sequence[int]) -> None:
    SourceRecord.objects.filter(pk__in=source_ids).update(status=SourceStatus.NORMALIZED, error="", error_path="")
