"""Keeping inbound payloads raw, whatever becomes of them (nothing arrives that is not kept)."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from django.db import IntegrityError, transaction
from django.db import connection as db_connection
from django.utils import timezone

from canonical.choices import SourceStatus
from canonical.models import SourceRecord
from hub.bulk import in_values
from tenants.models import Connection, Tenant

_COLUMNS = (
    "tenant_id", "connection_id", "resource_type", "external_id", "body", "content_type", "payload_hash",
    "received_at", "status", "error", "error_path",
)
_TYPES = ("bigint", "bigint", "text", "text", "text", "text", "text", "timestamptz", "text", "text", "text")


@dataclass(frozen=True)
class Payload:
    """One inbound payload and, when the caller already knows it, what became of it: a sync
    normalizes a page before it stores it (one transaction), so each row is written once with
    its final status instead of written as received and updated."""

    resource_type: str
    external_id: str
    body: str
    content_type: str = "application/json"
    status: str = SourceStatus.RECEIVED
    error: str = ""
    error_path: str = ""

    @property
    def payload_hash(self) -> str:
        return hashlib.sha256(self.body.encode()).hexdigest()


class StoredIds(list):
    """SourceRecord ids in the order the payloads were given; `created` counts the new rows."""

    created: int = 0


def store_payloads(
    payloads: Sequence[Payload], *, tenant: Tenant, connection: Connection, now: datetime | None = None
) -> StoredIds:
    """Store each payload (a byte-identical one already kept is not stored again, only given the
    payload's status if that is known and differs) and return the SourceRecord ids in the order
    given. Call inside the transaction that will use them.

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
        stamp = now or timezone.now()
        rows = [
            (tenant.pk, connection.pk, *key[:2], p.body, p.content_type, key[2], stamp, p.status, p.error[:5000], p.error_path[:300])
            for key, p in missing.items()
        ]
        inserted, created = _insert(rows)
        found.update(inserted)
    _restate([(found[key], p) for key, p in zip(keys, payloads, strict=True) if key not in missing and p.status != SourceStatus.RECEIVED])
    stored = StoredIds(found[key] for key in keys)
    stored.created = created if missing else 0
    return stored


def _insert(rows: list[tuple]) -> tuple[dict[tuple[str, str, str], int], int]:
    """INSERT the rows (looked up as missing just before), skipping any that a concurrent writer
    stored in between. Returns ((resource type, external id, hash) -> id of each row, rows added)."""
    qn = db_connection.ops.quote_name
    table, names = qn(SourceRecord._meta.db_table), ", ".join(qn(c) for c in _COLUMNS)
    conflict = "ON CONFLICT (tenant_id, connection_id, resource_type, external_id, payload_hash) DO NOTHING"
    if db_connection.vendor == "postgresql":
        ids = _next_ids(SourceRecord._meta.db_table, len(rows))
        try:  # COPY with ids drawn up front: bodies travel as they are, no SQL literals, no second lookup
            with transaction.atomic(), db_connection.cursor() as cursor, cursor.copy(f"COPY {table} (id, {names}) FROM STDIN") as copy:
                for pk, row in zip(ids, rows, strict=True):
                    copy.write_row((pk, *row))
            return {(row[2], row[3], row[6]): pk for pk, row in zip(ids, rows, strict=True)}, len(rows)
        except (IntegrityError, db_connection.Database.IntegrityError):  # COPY raises the driver's own error
            # a concurrent writer kept one of them first: insert around it
            arrays = ", ".join(f"%s::{t}[]" for t in _TYPES)
            with db_connection.cursor() as cursor:
                cursor.execute(
                    f"INSERT INTO {table} ({names}) SELECT * FROM unnest({arrays}) {conflict}",  # noqa: S608
                    [list(column) for column in zip(*rows, strict=True)],
                )
                created = cursor.rowcount
    else:
        adapt = db_connection.ops.adapt_datetimefield_value
        with db_connection.cursor() as cursor:
            cursor.executemany(
                f"INSERT INTO {table} ({names}) VALUES ({', '.join(['%s'] * len(_COLUMNS))}) {conflict}",  # noqa: S608
                [(*row[:7], adapt(row[7]), *row[8:]) for row in rows],
            )
            created = cursor.rowcount
    tenant_id, connection_id = rows[0][:2]
    return _lookup_ids(tenant_id, connection_id, [(row[2], row[3], row[6]) for row in rows]), created


def _next_ids(table: str, count: int) -> list[int]:
    """`count` values of the table's id sequence (PostgreSQL), in one round trip."""
    with db_connection.cursor() as cursor:
        cursor.execute("SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)", [table, count])
        return [pk for (pk,) in cursor.fetchall()]


def _lookup(tenant: Tenant, connection: Connection, keys: Sequence[tuple[str, str, str]]) -> dict[tuple[str, str, str], int]:
    return _lookup_ids(tenant.pk, connection.pk, keys)


def _lookup_ids(tenant_id: int, connection_id: int, keys: Sequence[tuple[str, str, str]]) -> dict[tuple[str, str, str], int]:
    """Ids of kept payloads, found through the (tenant, connection, resource type, external id) index."""
    wanted = set(keys)
    by_type: dict[str, set[str]] = defaultdict(set)
    for resource_type, external_id, _ in wanted:
        by_type[resource_type].add(external_id)
    found: dict[tuple[str, str, str], int] = {}
    table = db_connection.ops.quote_name(SourceRecord._meta.db_table)
    with db_connection.cursor() as cursor:
        for resource_type, external_ids in by_type.items():
            for condition, params in in_values("external_id", sorted(external_ids)):
                cursor.execute(
                    f"SELECT external_id, payload_hash, id FROM {table} "  # noqa: S608
                    f"WHERE tenant_id = %s AND connection_id = %s AND resource_type = %s AND {condition}",
                    [tenant_id, connection_id, resource_type, *params],
                )
                for external_id, digest, pk in cursor.fetchall():
                    if (key := (resource_type, external_id, digest)) in wanted:
                        found[key] = pk
    return found


def _restate(kept: list[tuple[int, Payload]]) -> None:
    """Give already-kept payloads their new status where it changed (a replay that now succeeds)."""
    if not kept:
        return
    by_outcome: dict[tuple[str, str, str], list[int]] = defaultdict(list)
    for pk, payload in kept:
        by_outcome[(payload.status, payload.error[:5000], payload.error_path[:300])].append(pk)
    for (status, error, path), ids in by_outcome.items():
        _set_status(ids, status, error, path)


def _set_status(source_ids: Sequence[int], status: str, error: str, path: str) -> None:
    """UPDATE only the rows whose status or error differ: a no-change re-sync writes nothing."""
    table = db_connection.ops.quote_name(SourceRecord._meta.db_table)
    with db_connection.cursor() as cursor:
        for condition, params in in_values("id", sorted(set(source_ids))):
            cursor.execute(
                f"UPDATE {table} SET status = %s, error = %s, error_path = %s "  # noqa: S608
                f"WHERE {condition} AND (status <> %s OR error <> %s OR error_path <> %s)",
                [status, error, path, *params, status, error, path],
            )


def mark_failed(source_ids: Sequence[int], *, error: str, path: str = "") -> None:
    _set_status(source_ids, SourceStatus.FAILED, error[:5000], path[:300])


def mark_normalized(source_ids: Sequence[int]) -> None:
    _set_status(source_ids, SourceStatus.NORMALIZED, "", "")
