"""FHIR R4 resources and Bundles into the canonical store.

`ingest_fhir` keeps every entry raw as a SourceRecord first, validates each resource with its R4B
model and the code checks the models do not make, maps the good ones (`normalize`) and upserts them
kind by kind in `KIND_ORDER`, so references inside the payload resolve. A bad resource is rejected
with its element path and kept (SourceRecord status failed); the rest go in.

References: "Patient/x" means the record with external id x in this connection; a resource exported
by a hub carries public ids instead, so an id that is no external id but the public id of a record
of this connection means that record. The same rule gives a resource's own external id.

Conditions, Procedures and Observations are parts of their encounter (diagnoses, procedures,
vitals). They are merged into it: an item replaces the one it was exported from (same public id),
else the first unclaimed one with the same code (and, for vitals, time), else it is appended. So a
payload sent twice changes nothing, and one that carries only a new Condition adds one diagnosis.

Counts are per accepted resource, by what happened to the record that holds it (an Observation
counts as `updated` when it changed its encounter).
"""

from __future__ import annotations

import copy
import json
import re
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction

from canonical.fhir.normalize import NORMALIZERS, Mapped, MappedChild, Ref, References
from canonical.fhir.validation import Problem, ResourceRefused, model_class, validate_resource
from canonical.identity import link_patients
from canonical.kinds import KIND_ORDER, get_kind
from canonical.models import Encounter
from canonical.serialize import record_to_dict
from canonical.sources import Payload, mark_failed, mark_normalized, store_payloads
from canonical.upsert import UpsertResult, resolve_ids, upsert_records
from tenants.audit import record_audit
from tenants.models import Connection, Tenant

UNKNOWN_TYPE = "unknown"  # SourceRecord.resource_type of a payload that names none
CHILD_LISTS = ("diagnoses", "procedures", "vitals")
_CHILD_PATH = re.compile(r"(diagnoses|procedures|vitals)\[(\d+)\]\.?(.*)")
_IN_CHUNK = 500  # ids per IN (...) lookup


@dataclass
class IngestReport:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: list[dict[str, str]] = field(default_factory=list)
    # Set when the payload as a whole could not be read (not JSON): nothing else happened.
    payload_error: str = ""
    source_records_created: int = 0

    def as_json(self) -> dict[str, Any]:
        return {"created": self.created, "updated": self.updated, "unchanged": self.unchanged, "rejected": [dict(r) for r in self.rejected]}


@dataclass
class _Entry:
    index: int
    body: str
    resource: Any
    resource_type: str
    resource_id: str
    full_url: str = ""
    source_id: int | None = None
    problems: list[Problem] = field(default_factory=list)
    mapped: Mapped | MappedChild | None = None
    external_id: str = ""
    outcome: str = ""

    @property
    def label(self) -> str:
        if self.resource_id:
            return f"{self.resource_type}/{self.resource_id}"
        return f"{self.resource_type}/entry[{self.index}]" if self.index >= 0 else self.resource_type

    def refuse(self, path: str, reason: str) -> None:
        self.problems.append(Problem(path, reason))


def ingest_fhir(payload: str | bytes, *, tenant: Tenant, connection: Connection, actor_label: str = "system") -> IngestReport:
    """Ingest one FHIR resource or Bundle (collection, transaction, batch, searchset) for `connection`.

    Never raises for bad content: a payload that is not JSON is kept as one failed SourceRecord and
    reported in `payload_error`; a bad resource is rejected with its path. Raises ValueError when
    the connection belongs to another tenant.
    """
    if connection.tenant_id != tenant.pk:
        raise ValueError("the connection belongs to another tenant")
    report = IngestReport()
    with transaction.atomic():
        text, unreadable = _text(payload)
        data: Any = None
        if not unreadable:
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                unreadable = (f"line {exc.lineno}, column {exc.colno}", f"not valid JSON: {exc.msg.removesuffix(' at')}")
        if unreadable:
            where, reason = unreadable
            entry = _Entry(-1, text, None, UNKNOWN_TYPE, "")
            entry.refuse(where, reason)
            report.source_records_created = _keep(tenant, connection, [entry])
            _mark(tenant, connection, [entry])
            report.payload_error = f"{reason} (at {where})"
            report.rejected.append({"resource": "payload", "path": where, "reason": reason})
            _audit(tenant, connection, actor_label, report, "", 0)
            return report

        entries = _entries(data, text)
        report.source_records_created = _keep(tenant, connection, entries)
        refs = References({e.full_url: (e.resource_type, e.resource_id) for e in entries if e.full_url and e.resource_id})
        for entry in entries:
            _check_and_map(entry, refs)
        applier = _Applier(tenant, connection, entries)
        applier.apply()
        _mark(tenant, connection, entries)

        for entry in entries:
            if entry.problems:
                report.rejected += [{"resource": entry.label, "path": p.path, "reason": p.reason} for p in entry.problems]
            elif entry.outcome:
                setattr(report, entry.outcome, getattr(report, entry.outcome) + 1)
        bundle_id = data.get("id", "") if isinstance(data, dict) and data.get("resourceType") == "Bundle" else ""
        _audit(tenant, connection, actor_label, report, bundle_id, len(entries))
    if applier.changed_patient_ids:
        # After commit, in its own transaction: identity never holds up or rolls back the ingest.
        link_patients(tenant, applier.changed_patient_ids)
    return report


# --- reading the payload --------------------------------------------------------------------------

def _text(payload: str | bytes) -> tuple[str, tuple[str, str] | None]:
    if isinstance(payload, str):
        return payload, None
    try:
        return payload.decode("utf-8-sig"), None
    except UnicodeDecodeError as exc:
        return payload.decode("utf-8", errors="replace"), (f"byte {exc.start}", "not UTF-8 text")


def _id_from_full_url(full_url: str) -> str:
    if full_url.startswith("urn:uuid:"):
        return full_url.removeprefix("urn:uuid:")
    return ""


def _entry(index: int, body: str, resource: Any, full_url: str = "") -> _Entry:
    resource_type = resource.get("resourceType") if isinstance(resource, dict) else None
    resource_id = resource.get("id") if isinstance(resource, dict) else None
    return _Entry(
        index, body, resource,
        resource_type if isinstance(resource_type, str) and resource_type else UNKNOWN_TYPE,
        resource_id if isinstance(resource_id, str) and resource_id else _id_from_full_url(full_url),
        full_url,
    )


def _entries(data: Any, text: str) -> list[_Entry]:
    """One entry per resource: the Bundle's entries (each kept as its own JSON text), or the payload."""
    if not (isinstance(data, dict) and data.get("resourceType") == "Bundle"):
        return [_entry(-1, text, data)]
    raw = data.get("entry", [])
    if not isinstance(raw, list):
        bundle = _entry(-1, text, data)
        bundle.refuse("entry", "must be a list")
        return [bundle]
    entries = []
    for index, item in enumerate(raw):
        body = json.dumps(item, ensure_ascii=False)
        if not isinstance(item, dict):
            entry = _entry(index, body, None)
            entry.refuse(f"entry[{index}]", "must be an object")
        else:
            full_url = item.get("fullUrl") if isinstance(item.get("fullUrl"), str) else ""
            entry = _entry(index, body, item.get("resource"), full_url)
            if item.get("resource") is None:
                entry.refuse("resource", "is required (an entry without a resource, such as a delete, is not applied)")
        entries.append(entry)
    return entries


def _chunks(items: list, size: int = _IN_CHUNK) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _keep(tenant: Tenant, connection: Connection, entries: list[_Entry]) -> int:
    """Store each entry's body as a SourceRecord, reusing an identical one. Returns how many are new."""
    ids = store_payloads(
        [Payload(e.resource_type[:64], e.resource_id[:200], e.body) for e in entries], tenant=tenant, connection=connection
    )
    for entry, source_id in zip(entries, ids, strict=True):
        entry.source_id = source_id
    return ids.created


def _mark(tenant: Tenant, connection: Connection, entries: list[_Entry]) -> None:
    """Each SourceRecord's status: normalized, or failed with the first problem's path and all reasons."""
    ok = []
    for entry in entries:
        if entry.problems:
            error = "; ".join(f"{p.path}: {p.reason}" if p.path else p.reason for p in entry.problems)
            mark_failed([entry.source_id], error=error, path=entry.problems[0].path)
        else:
            ok.append(entry.source_id)
    mark_normalized(ok)


def _check_and_map(entry: _Entry, refs: References) -> None:
    if entry.problems:
        return
    resource = entry.resource
    if not isinstance(resource, dict):
        entry.refuse("", "must be a JSON object (a FHIR resource or Bundle)")
        return
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str) or not resource_type:
        entry.refuse("resourceType", "is required")
        return
    klass = model_class(resource_type)
    if klass is None:
        entry.refuse("resourceType", f"{resource_type!r} is not a FHIR R4 resource type")
        return
    normalizer = NORMALIZERS.get(resource_type)
    if normalizer is None:
        entry.refuse("resourceType", f"{resource_type} resources are not kept by the hub (it keeps {', '.join(NORMALIZERS)})")
        return
    problems = validate_resource(resource, klass)
    if problems:
        entry.problems += problems
        return
    if not entry.resource_id:
        entry.refuse("id", "is required (or a fullUrl urn:uuid:…)")
        return
    try:
        entry.mapped = normalizer(resource, refs)
    except ResourceRefused as exc:
        entry.problems.append(exc.problem)


# --- applying what was accepted ---------------------------------------------------------------------

def _natural_key(list_name: str, item: dict) -> tuple:
    if list_name == "diagnoses":
        return (item.get("system") or "http://hl7.org/fhir/sid/icd-10-cm", item.get("code"))
    if list_name == "procedures":
        return (item.get("system"), item.get("code"))
    return (item.get("loinc"), item.get("effective_at"))


@dataclass
class _Target:
    """One encounter that receives parts: the record to upsert and who supplied each part."""

    record: dict[str, Any]
    entry: _Entry | None  # the payload's Encounter, if it has one
    stored: dict[str, Any] | None  # the stored record as a dict, if there is one
    suppliers: dict[str, list[_Entry | None]] = field(default_factory=dict)
    parts: list[_Entry] = field(default_factory=list)
    revive: bool = False  # the stored encounter is a tombstone

    def entries(self) -> list[_Entry]:
        """The payload entries this encounter holds that are still accepted."""
        return [e for e in ([self.entry] if self.entry else []) + self.parts if not e.problems]


class _Applier:
    """Resolves references, assembles encounters with their parts and upserts kind by kind."""

    def __init__(self, tenant: Tenant, connection: Connection, entries: list[_Entry]):
        self.tenant, self.connection = tenant, connection
        self.entries = entries
        self.accepted = [e for e in entries if e.mapped is not None and not e.problems]
        self.resolved: dict[tuple[str, str], str] = {}
        self.changed_patient_ids: list[int] = []  # for identity matching once the ingest commits

    def apply(self) -> None:
        self._resolve()
        targets = self._encounters()
        for kind in KIND_ORDER:
            if kind == "encounter":
                self._upsert_encounters(targets)
                continue
            entries = [e for e in self.accepted if isinstance(e.mapped, Mapped) and e.mapped.kind == kind and not e.problems]
            if entries:
                self._upsert(kind, [(e.mapped.record, [e]) for e in entries])

    # references

    def _refs(self, mapped: Mapped | MappedChild) -> Iterable[Ref]:
        if isinstance(mapped, MappedChild):
            yield mapped.encounter
            return
        for value in mapped.record.values():
            if isinstance(value, Ref):
                yield value
            elif isinstance(value, list):
                for item in value:
                    if isinstance(item, dict):
                        yield from (v for v in item.values() if isinstance(v, Ref))

    def _resolve(self) -> None:
        wanted: dict[str, set[str]] = defaultdict(set)
        for entry in self.accepted:
            if isinstance(entry.mapped, Mapped):
                wanted[entry.mapped.kind].add(entry.resource_id)
            for ref in self._refs(entry.mapped):
                wanted[ref.kind].add(ref.id)
        for kind, ids in wanted.items():
            self.resolved.update({(kind, fhir_id): external_id for fhir_id, external_id in self._external_ids(kind, ids).items()})
        for entry in self.accepted:
            mapped = entry.mapped
            if isinstance(mapped, Mapped):
                entry.external_id = self.resolved[(mapped.kind, entry.resource_id)]
                mapped.record = self._substitute(mapped.record)
                mapped.record["external_id"] = entry.external_id
            else:
                entry.external_id = self.resolved[(mapped.encounter.kind, mapped.encounter.id)]

    def _substitute(self, value: Any) -> Any:
        if isinstance(value, Ref):
            return self.resolved[(value.kind, value.id)]
        if isinstance(value, dict):
            return {key: self._substitute(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self._substitute(item) for item in value]
        return value

    def _external_ids(self, kind: str, ids: set[str]) -> dict[str, str]:
        """FHIR id -> external id: itself if a record has it as external id, else the external id of
        the record whose public id it is, else itself (a new record)."""
        model = get_kind(kind).model
        scope = {"tenant": self.tenant, "source_connection": self.connection}
        known: set[str] = set()
        for chunk in _chunks(sorted(ids)):
            known.update(model.objects.filter(**scope, external_id__in=chunk).values_list("external_id", flat=True))
        as_uuid: dict[uuid.UUID, str] = {}
        for fhir_id in ids - known:
            try:
                as_uuid[uuid.UUID(fhir_id)] = fhir_id
            except ValueError:
                continue
        result = {fhir_id: fhir_id for fhir_id in ids}
        for chunk in _chunks(sorted(as_uuid, key=str)):
            for public_id, external_id in model.objects.filter(**scope, public_id__in=chunk).values_list("public_id", "external_id"):
                result[as_uuid[public_id]] = external_id
        return result

    # encounters and their parts

    def _encounters(self) -> dict[str, _Target]:
        targets: dict[str, _Target] = {}
        rejected_encounters = {e.resource_id for e in self.entries if e.resource_type == "Encounter" and e.problems}
        for entry in self.accepted:
            if isinstance(entry.mapped, Mapped) and entry.mapped.kind == "encounter":
                targets[entry.external_id] = _Target(entry.mapped.record, entry, None)
        parts = [e for e in self.accepted if isinstance(e.mapped, MappedChild)]
        wanted = sorted({e.external_id for e in parts} | set(targets))
        stored: dict[str, Encounter] = {}
        for chunk in _chunks(wanted):
            rows = (
                Encounter.objects.filter(tenant=self.tenant, source_connection=self.connection, external_id__in=chunk)
                .select_related("patient", "practitioner", "location", "appointment")
                .prefetch_related("diagnoses", "procedures", "vitals", "notes")
            )
            stored.update({row.external_id: row for row in rows})
        for entry in parts:
            found = entry.mapped.encounter
            if found.id in rejected_encounters and entry.external_id not in targets:
                entry.refuse("encounter", f"Encounter/{found.id} in this payload was rejected")
                continue
            if entry.external_id not in targets:
                if entry.external_id not in stored:
                    entry.refuse("encounter", f"Encounter {found.id!r} was not found in this payload or this connection")
                    continue
                record = record_to_dict(stored[entry.external_id])
                targets[entry.external_id] = _Target(copy.deepcopy(record), None, record)
            targets[entry.external_id].parts.append(entry)
        for external_id, target in targets.items():
            row = stored.get(external_id)
            if row is not None:
                target.revive = row.is_deleted
                if target.stored is None:
                    target.stored = record_to_dict(row)
            self._merge(target, row)
        return targets

    def _merge(self, target: _Target, row: Encounter | None) -> None:
        stored = target.stored or {}
        ranks = target.entry.mapped.diagnoses if target.entry is not None else {}

        def order(entry: _Entry) -> tuple:
            """Exported position first, then the order of Encounter.diagnosis, then payload order."""
            position = entry.mapped.position
            listed = ranks.get(f"Condition/{entry.resource_id}", (None, None))[0]
            first = position if position is not None else listed if listed is not None else 10**9
            return (first, entry.index)

        for list_name in CHILD_LISTS:
            current = list(stored.get(list_name, []))
            suppliers: list[_Entry | None] = [None] * len(current)
            exported_from = {}
            if row is not None:
                exported_from = {str(child.public_id): child.position for child in getattr(row, list_name).all()}

            incoming = sorted((e for e in target.parts if e.mapped.list_name == list_name), key=order)
            claimed: set[int] = set()
            for entry in incoming:
                item = dict(entry.mapped.item)
                slot = exported_from.get(entry.resource_id)
                if slot is None or slot in claimed or slot >= len(current):
                    slot = next((i for i, old in enumerate(current) if i not in claimed and _natural_key(list_name, old) == entry.mapped.natural_key), None)
                if list_name == "diagnoses":
                    rank = ranks.get(f"Condition/{entry.resource_id}", (None, None))[1]
                    item["rank"] = rank if rank is not None else current[slot].get("rank", 1) if slot is not None else 1
                if slot is None:
                    current.append(item)
                    suppliers.append(entry)
                    slot = len(current) - 1
                else:
                    current[slot] = item
                    suppliers[slot] = entry
                claimed.add(slot)
            target.record[list_name] = current
            target.suppliers[list_name] = suppliers

    def _upsert_encounters(self, targets: dict[str, _Target]) -> None:
        pending = list(targets.values())
        while pending:
            todo = []
            for target in pending:
                if target.stored is not None and not target.revive and target.record == target.stored:
                    # nothing new (compared as values: Decimal("132.0000") == Decimal("132")); no version bump
                    for entry in target.entries():
                        entry.outcome = "unchanged"
                else:
                    todo.append(target)
            if not todo:
                return
            outcomes, rejected = self._run("encounter", [target.record for target in todo])
            pending = []
            for target in todo:
                external_id = target.record["external_id"]
                if external_id in rejected:
                    if self._drop_part(target, rejected[external_id]):
                        pending.append(target)
                    continue
                for entry in target.entries():
                    entry.outcome = outcomes[external_id]

    def _drop_part(self, target: _Target, rejection: Any) -> bool:
        """Reject the part an engine rejection points at and drop it, so the encounter can go in
        without it; or reject the encounter and its parts. True when worth another try."""
        match = _CHILD_PATH.fullmatch(rejection.path)
        if match:
            list_name, index, rest = match.group(1), int(match.group(2)), match.group(3)
            supplier = target.suppliers[list_name][index] if index < len(target.suppliers[list_name]) else None
            if supplier is not None:
                supplier.refuse(_fhir_path(supplier.mapped.paths, rest), rejection.reason)
                del target.record[list_name][index]
                del target.suppliers[list_name][index]
                return True
        if target.entry is not None:
            target.entry.refuse(_fhir_path(target.entry.mapped.paths, rejection.path), rejection.reason)
            label = target.entry.label
            for part in target.parts:
                if not part.problems:
                    part.refuse("encounter", f"{label} was rejected")
        else:
            for part in target.parts:
                if not part.problems:
                    part.refuse("encounter", f"the stored encounter would not take it: {rejection.path}: {rejection.reason}")
        return False

    def _upsert(self, kind: str, batch: list[tuple[dict, list[_Entry]]]) -> None:
        outcomes, rejected = self._run(kind, [record for record, _ in batch])
        for record, entries in batch:
            external_id = record["external_id"]
            for entry in entries:
                if external_id in rejected:
                    rejection = rejected[external_id]
                    entry.refuse(_fhir_path(entry.mapped.paths, rejection.path), rejection.reason)
                else:
                    entry.outcome = outcomes[external_id]

    def _run(self, kind: str, records: list[dict]) -> tuple[dict[str, str], dict[str, Any]]:
        """Upsert `records`; each external id's outcome (created/updated/unchanged) or rejection."""
        external_ids = [record["external_id"] for record in records]
        before = resolve_ids(kind, self.tenant, self.connection, external_ids)
        result: UpsertResult = upsert_records(kind, records, tenant=self.tenant, connection=self.connection)
        if kind == "patient":
            self.changed_patient_ids.extend(result.changed_ids)
        rejected = {r.external_id: r for r in result.rejected}
        changed = set(result.changed_ids)
        outcomes = {}
        for external_id in external_ids:
            if external_id in rejected:
                continue
            if external_id not in before:
                outcomes[external_id] = "created"
            else:
                outcomes[external_id] = "updated" if before[external_id] in changed else "unchanged"
        return outcomes, rejected


def _fhir_path(paths: dict[str, str], path: str) -> str:
    """The FHIR element behind a canonical path from the engine ("notes[0].text" -> "contained[0].text")."""
    if path == "external_id":
        return "id"
    if path in paths:
        return paths[path]
    head, _, rest = path.partition(".")
    if rest and head in paths:
        return f"{paths[head]}.{rest}"
    return path


def _audit(tenant: Tenant, connection: Connection, actor_label: str, report: IngestReport, bundle_id: Any, entries: int) -> None:
    record_audit(
        "import",
        object_type="fhir.bundle",
        object_id=str(bundle_id)[:100] if isinstance(bundle_id, str) else "",
        tenant=tenant,
        actor_label=actor_label,
        detail={
            "connection": str(connection.public_id),
            "entries": entries,
            "created": report.created,
            "updated": report.updated,
            "unchanged": report.unchanged,
            "rejected": len(report.rejected),
            "source_records_created": report.source_records_created,
        },
    )
