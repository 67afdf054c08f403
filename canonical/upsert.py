"""The upsert engine: apply a batch of normalized records of one kind to the canonical store.

One call, one transaction: records whose content hash is unchanged are skipped after a single
read; new and changed ones go in with `INSERT … ON CONFLICT DO UPDATE … WHERE hash differs`
(PostgreSQL and SQLite ≥ 3.35 both speak it), which is what makes concurrent upserts of the same
records safe: no duplicates, and a version bump per real change, never a lost update. Children
(identifiers, diagnoses, …) are replaced as a set when their parent changes. Every create,
update and delete writes a ChangeEvent in the same transaction.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson
from django.db import connection as db_connection
from django.db import models, transaction
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from canonical.events import lock_cursor, write_events
from canonical.kinds import ChildSpec, KindSpec, get_kind
from tenants.models import Connection, Tenant

CHUNK = 400  # rows per statement: well under SQLite's and PostgreSQL's bound-parameter limits


@dataclass
class Rejected:
    external_id: str
    path: str
    reason: str


@dataclass
class UpsertResult:
    kind: str
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    # database ids of rows created or updated (for follow-up work such as identity matching)
    changed_ids: list[int] = field(default_factory=list)

    def merge(self, other: UpsertResult) -> None:
        self.created += other.created
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.deleted += other.deleted
        self.rejected.extend(other.rejected)
        self.changed_ids.extend(other.changed_ids)


class RecordInvalid(ValueError):
    def __init__(self, path: str, reason: str):
        self.path, self.reason = path, reason
        super().__init__(f"{path}: {reason}")


def content_hash(record: dict[str, Any]) -> str:
    """Stable digest of a normalized record (keys sorted; Decimal as text)."""
    return hashlib.blake2b(orjson.dumps(record, option=orjson.OPT_SORT_KEYS, default=str), digest_size=16).hexdigest()


# --- column preparation ----------------------------------------------------------------------------

@dataclass(frozen=True)
class _Column:
    name: str  # key in the normalized record
    column: str
    prepare: Any  # value -> database parameter; raises RecordInvalid


def _field_preparer(f: models.Field):
    """A fast converter for one model field: coerce, validate cheaply, adapt for this database."""
    ops = db_connection.ops
    nullable = f.null
    has_default = f.has_default()
    default = f.get_default() if has_default else None
    blank_text = isinstance(f, models.CharField | models.TextField) and f.blank
    choices = {str(value) for value, _ in f.flatchoices} if f.choices else None
    name = f.name

    def missing():
        if has_default:
            return default
        if nullable:
            return None
        if blank_text:
            return ""
        raise RecordInvalid(name, "is required")

    if isinstance(f, models.JSONField):
        adapt_json, encoder = ops.adapt_json_value, f.encoder

        def prep(v):
            v = missing() if v is None else v
            return adapt_json(v, encoder)
    elif isinstance(f, models.DateTimeField):
        def prep(v):
            if v is None:
                return missing()
            if isinstance(v, str):
                parsed = parse_datetime(v)
                if parsed is None:
                    raise RecordInvalid(name, f"{v!r} is not a date-time")
                v = parsed
            if not isinstance(v, datetime):
                raise RecordInvalid(name, f"{v!r} is not a date-time")
            if timezone.is_naive(v):
                raise RecordInvalid(name, f"{v.isoformat()} has no time zone")
            return ops.adapt_datetimefield_value(v)
    elif isinstance(f, models.DateField):
        def prep(v):
            if v is None:
                return missing()
            if isinstance(v, str):
                parsed = parse_date(v)
                if parsed is None:
                    raise RecordInvalid(name, f"{v!r} is not a date (YYYY-MM-DD)")
                v = parsed
            if isinstance(v, datetime) or not isinstance(v, date):
                raise RecordInvalid(name, f"{v!r} is not a date")
            return ops.adapt_datefield_value(v)
    elif isinstance(f, models.DecimalField):
        limit = Decimal(10) ** (f.max_digits - f.decimal_places)

        def prep(v):
            if v is None:
                return missing()
            try:
                d = Decimal(str(v))
            except InvalidOperation:
                raise RecordInvalid(name, f"{v!r} is not a number") from None
            if not d.is_finite() or abs(d) >= limit:
                raise RecordInvalid(name, f"{v!r} is out of range")
            return ops.adapt_decimalfield_value(d, f.max_digits, f.decimal_places)
    elif isinstance(f, models.BooleanField):
        def prep(v):
            if v is None:
                return missing()
            if not isinstance(v, bool):
                raise RecordInvalid(name, f"{v!r} is not true or false")
            return v
    elif isinstance(f, (models.IntegerField,)):
        def prep(v):
            if v is None:
                return missing()
            if isinstance(v, bool) or not isinstance(v, int):
                raise RecordInvalid(name, f"{v!r} is not a whole number")
            if isinstance(f, models.PositiveIntegerField | models.PositiveSmallIntegerField) and v < 0:
                raise RecordInvalid(name, f"{v} is negative")
            return v
    else:  # text
        max_length = f.max_length

        def prep(v):
            if v is None:
                return missing()
            if not isinstance(v, str):
                raise RecordInvalid(name, f"{v!r} is not text")
            if max_length is not None and len(v) > max_length:
                raise RecordInvalid(name, f"is {len(v)} characters long; the limit is {max_length}")
            if choices is not None and v not in choices and not (v == "" and f.blank):
                raise RecordInvalid(name, f"{v!r} is not one of {', '.join(sorted(choices))}")
            return v
    return prep


def _columns(model: type[models.Model], names: Sequence[str]) -> list[_Column]:
    return [_Column(n, model._meta.get_field(n).column, _field_preparer(model._meta.get_field(n))) for n in names]


def _uuid_converter():
    """uuid -> database parameter, decided once per call (the connection proxy is slow per row)."""
    return (lambda value: value) if db_connection.features.has_native_uuid_field else (lambda value: value.hex)


def _as_uuid(value) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


# --- reading what exists ---------------------------------------------------------------------------

def _chunks(items: Sequence, size: int = CHUNK) -> Iterable[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _existing(spec: KindSpec, tenant: Tenant, connection: Connection, external_ids: Sequence[str]) -> dict[str, tuple[int, str, bool]]:
    """external id -> (id, content hash, is tombstoned)."""
    qn = db_connection.ops.quote_name
    found: dict[str, tuple[int, str, bool]] = {}
    with db_connection.cursor() as cursor:
        for chunk in _chunks(external_ids):
            marks = ", ".join(["%s"] * len(chunk))
            cursor.execute(
                f"SELECT external_id, id, content_hash, deleted_at IS NOT NULL FROM {qn(spec.table)} "  # noqa: S608
                f"WHERE tenant_id = %s AND source_connection_id = %s AND external_id IN ({marks})",
                [tenant.pk, connection.pk, *chunk],
            )
            for external_id, pk, digest, deleted in cursor.fetchall():
                found[external_id] = (pk, digest, bool(deleted))
    return found


def resolve_ids(kind: str, tenant: Tenant, connection: Connection, external_ids: Iterable[str]) -> dict[str, int]:
    """external id -> database id for records of `kind` from this tenant's connection."""
    spec = get_kind(kind)
    wanted = sorted({e for e in external_ids if e})
    return {external_id: pk for external_id, (pk, _, _) in _existing(spec, tenant, connection, wanted).items()}


# --- writing -------------------------------------------------------------------------------------

_META_COLUMNS = ("tenant_id", "source_connection_id", "external_id", "public_id", "content_hash", "version", "created_at", "updated_at", "deleted_at")


def _upsert_sql(spec: KindSpec, data_columns: list[str], rows: int) -> str:
    qn = db_connection.ops.quote_name
    table = qn(spec.table)
    columns = [*_META_COLUMNS, *data_columns]
    marks = "(" + ", ".join(["%s"] * len(columns)) + ")"
    updates = ", ".join(
        [f"{qn(c)} = excluded.{qn(c)}" for c in ("content_hash", "updated_at", *data_columns)]
        + [f"{qn('version')} = {table}.{qn('version')} + 1", f"{qn('deleted_at')} = NULL"]
    )
    return (
        f"INSERT INTO {table} ({', '.join(qn(c) for c in columns)}) VALUES {', '.join([marks] * rows)} "  # noqa: S608
        f"ON CONFLICT (tenant_id, source_connection_id, external_id) DO UPDATE SET {updates} "
        f"WHERE {table}.content_hash <> excluded.content_hash OR {table}.deleted_at IS NOT NULL "
        f"RETURNING id, public_id, external_id, {qn('version')}"
    )


@dataclass
class _ChildPlan:
    """A child list's columns and reference lookups, built once per call."""

    spec: ChildSpec
    columns: list[_Column]
    ref_ids: dict[str, dict[str, int]]

    def prepare(self, record: dict) -> list[list]:
        """Validate and convert the record's items: [position, *ref ids, *values] each."""
        items = record.get(self.spec.name) or []
        if not isinstance(items, list):
            raise RecordInvalid(self.spec.name, "must be a list")
        rows = []
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                raise RecordInvalid(f"{self.spec.name}[{index}]", "must be an object")
            row: list = [index]
            for name, kind in self.spec.refs.items():
                pk = self.ref_ids[name].get(item.get(name))
                if pk is None:
                    raise RecordInvalid(f"{self.spec.name}[{index}].{name}", f"{kind} {item.get(name)!r} was not found in this connection")
                row.append(pk)
            try:
                row.extend([c.prepare(item.get(c.name)) for c in self.columns])
            except RecordInvalid as exc:
                raise RecordInvalid(f"{self.spec.name}[{index}].{exc.path}", exc.reason) from None
            rows.append(row)
        return rows

    def write(self, tenant: Tenant, parents: list[tuple[int, uuid.UUID, list[list], bool]], uuid_param) -> None:
        """Replace the rows of every parent (id, public id, prepared rows, existed before)."""
        qn = db_connection.ops.quote_name
        model = self.spec.model
        table = qn(model._meta.db_table)
        parent_column = model._meta.get_field(self.spec.parent_field).column
        ref_columns = [model._meta.get_field(name).column for name in self.spec.refs]
        names = ["public_id", parent_column, *(["tenant_id"] if self.spec.tenant_column else []), "position", *ref_columns,
                 *(c.column for c in self.columns)]
        extra = [tenant.pk] if self.spec.tenant_column else []
        prefix = f"{self.spec.name}/"
        params = [
            [uuid_param(uuid.uuid5(public_id, f"{prefix}{row[0]}")), pk, *extra, *row]
            for pk, public_id, rows, _ in parents
            for row in rows
        ]
        with db_connection.cursor() as cursor:
            stale = [pk for pk, _, _, existed in parents if existed]
            for chunk in _chunks(stale):
                cursor.execute(f"DELETE FROM {table} WHERE {qn(parent_column)} IN ({', '.join(['%s'] * len(chunk))})", list(chunk))  # noqa: S608
            if params:
                cursor.executemany(
                    f"INSERT INTO {table} ({', '.join(qn(n) for n in names)}) VALUES ({', '.join(['%s'] * len(names))})",  # noqa: S608
                    params,
                )


def _prepare(spec: KindSpec, record: dict, columns: list[_Column], ref_ids: dict[str, dict[str, int]]) -> list:
    values = [c.prepare(record.get(c.name)) for c in columns]
    for name in spec.refs:
        ref = record.get(name)
        if ref in (None, ""):
            if name in spec.required_refs:
                raise RecordInvalid(name, "is required")
            values.append(None)
            continue
        pk = ref_ids[name].get(ref)
        if pk is None:
            raise RecordInvalid(name, f"{spec.refs[name]} {ref!r} was not found in this connection")
        values.append(pk)
    return values


def upsert_records(
    kind: str, records: Sequence[dict[str, Any]], *, tenant: Tenant, connection: Connection, now: datetime | None = None
) -> UpsertResult:
    """Apply `records` (normalized dicts of one kind from one connection). Idempotent.

    A record that fails validation or references a record that does not exist is reported in
    `rejected` with the path and reason; the others still go in.
    """
    if connection.tenant_id != tenant.pk:
        raise ValueError("the connection belongs to another tenant")
    spec = get_kind(kind)
    result = UpsertResult(kind=kind)
    now = now or timezone.now()

    batch: dict[str, tuple[dict, str]] = {}
    for index, record in enumerate(records):
        external_id = record.get("external_id") if isinstance(record, dict) else None
        if not isinstance(external_id, str) or not external_id or len(external_id) > 200:
            result.rejected.append(Rejected(str(external_id or f"#{index}"), "external_id", "a non-empty text of at most 200 characters is required"))
            continue
        batch[external_id] = (record, content_hash(record))  # the last copy of an id in a batch wins

    existing = _existing(spec, tenant, connection, list(batch))
    pending = {eid: rec for eid, rec in batch.items() if eid not in existing or existing[eid][1] != rec[1] or existing[eid][2]}
    result.unchanged = len(batch) - len(pending)
    if not pending:
        return result

    columns = _columns(spec.model, spec.fields)
    fk_columns = [spec.model._meta.get_field(name).column for name in spec.refs]
    ref_ids = {name: resolve_ids(target, tenant, connection, (r.get(name) for r, _ in pending.values())) for name, target in spec.refs.items()}
    children = [
        _ChildPlan(child, _columns(child.model, child.fields), {
            name: resolve_ids(target, tenant, connection, (
                i.get(name) for r, _ in pending.values() for i in (r.get(child.name) or []) if isinstance(i, dict)
            ))
            for name, target in child.refs.items()
        })
        for child in spec.children
    ]
    uuid_param = _uuid_converter()

    created_at = db_connection.ops.adapt_datetimefield_value(now)
    rows: list[list] = []
    prepared_children: dict[str, list[list[list]]] = {}
    for external_id, (record, digest) in pending.items():
        try:
            values = _prepare(spec, record, columns, ref_ids)
            child_rows = [plan.prepare(record) for plan in children]
        except RecordInvalid as exc:
            result.rejected.append(Rejected(external_id, exc.path, exc.reason))
            continue
        rows.append([tenant.pk, connection.pk, external_id, uuid_param(uuid.uuid4()), digest, 1, created_at, created_at, None, *values])
        prepared_children[external_id] = child_rows
    if not rows:
        return result

    data_columns = [c.column for c in columns] + fk_columns
    events: list[tuple[str, uuid.UUID, str, int]] = []
    parents: list[tuple[int, uuid.UUID, str, bool]] = []
    with transaction.atomic():
        lock_cursor(tenant)
        with db_connection.cursor() as cursor:
            for chunk in _chunks(rows):
                cursor.execute(_upsert_sql(spec, data_columns, len(chunk)), [value for row in chunk for value in row])
                for pk, public_id, external_id, version in cursor.fetchall():
                    public_uuid = _as_uuid(public_id)
                    created = version == 1
                    result.created += created
                    result.updated += not created
                    result.changed_ids.append(pk)
                    events.append((kind, public_uuid, "create" if created else "update", version))
                    parents.append((pk, public_uuid, external_id, not created))
        result.unchanged += len(rows) - len(parents)  # a concurrent writer got there first with the same content
        for index, plan in enumerate(children):
            plan.write(tenant, [(pk, public_uuid, prepared_children[eid][index], existed) for pk, public_uuid, eid, existed in parents], uuid_param)
        write_events(tenant, events, now)
    return result


def delete_records(kind: str, external_ids: Iterable[str], *, tenant: Tenant, connection: Connection, now: datetime | None = None) -> UpsertResult:
    """Tombstone records the source deleted: `deleted_at` set, version bumped, a delete event each.
    Records already tombstoned, or never seen, are left alone."""
    spec = get_kind(kind)
    result = UpsertResult(kind=kind)
    now = now or timezone.now()
    ids = sorted(set(external_ids))
    if not ids:
        return result
    qn = db_connection.ops.quote_name
    table = qn(spec.table)
    stamp = db_connection.ops.adapt_datetimefield_value(now)
    events = []
    with transaction.atomic():
        lock_cursor(tenant)
        with db_connection.cursor() as cursor:
            for chunk in _chunks(ids):
                cursor.execute(
                    f"UPDATE {table} SET deleted_at = %s, updated_at = %s, {qn('version')} = {qn('version')} + 1 "  # noqa: S608
                    f"WHERE tenant_id = %s AND source_connection_id = %s AND deleted_at IS NULL "
                    f"AND external_id IN ({', '.join(['%s'] * len(chunk))}) RETURNING id, public_id, {qn('version')}",
                    [stamp, stamp, tenant.pk, connection.pk, *chunk],
                )
                for pk, public_id, version in cursor.fetchall():
                    events.append((kind, _as_uuid(public_id), "delete", version))
                    result.changed_ids.append(pk)
        result.deleted = len(events)
        write_events(tenant, events, now)
    return result
