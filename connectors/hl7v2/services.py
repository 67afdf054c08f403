"""Receiving HL7 v2 messages (keep raw + dedup key, commit, then ACK) and applying them (map into
canonical records, in a worker). The listener, `ingest_hl7` and the actor are thin doors onto these.

Receiving is kept small on purpose: a header read (no full parse), one INSERT … ON CONFLICT DO
NOTHING per message and one commit per frame. AA goes out only after that commit; mapping happens
later in `apply_message`, enqueued on commit.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from django.db import DataError, IntegrityError, transaction
from django.db import connection as db_connection
from django.utils import timezone

from canonical.models import Encounter, Patient, PatientIdentifier
from canonical.upsert import UpsertResult, delete_records, upsert_records
from connectors.hl7v2 import mapping
from connectors.hl7v2.choices import MessageStatus
from connectors.hl7v2.constants import RAW_KEEP_ON_OVERSIZE, SUPPORTED, VENDOR
from connectors.hl7v2.models import Hl7Message
from connectors.models import FailedJob
from connectors.scrub import scrub, signature
from formats.hl7v2 import Header, Hl7Error, build_ack, build_batch_ack, read_header, split_messages
from formats.hl7v2.message import DEFAULT_ENCODING, read_encoding
from tenants.models import Connection, Tenant

logger = logging.getLogger(__name__)

RECEIVE_ACTOR = "recheck_hl7_message"  # FailedJob.actor of rejected messages: a triage retry reads them again
APPLY_ACTOR = "apply_hl7_message"


def feed_connection(tenant: Tenant) -> Connection:
    """The tenant's HL7 v2 feed connection (vendor hl7v2, no base URL), created on first use."""
    found = Connection.objects.filter(tenant=tenant, vendor=VENDOR, base_url="").order_by("pk").first()
    if found is not None:
        return found
    connection, _ = Connection.objects.get_or_create(
        tenant=tenant, display_name="HL7 v2 feed", defaults={"vendor": VENDOR, "base_url": ""},
    )
    return connection


# --- receiving ------------------------------------------------------------------------------------

@dataclass
class Receipt:
    """What became of one received message, and the ACK that says so."""

    ack: str
    code: str  # AA, AE, AR
    message_id: int | None = None
    duplicate: bool = False
    control_id: str = ""
    message_type: str = ""
    reason: str = ""


@dataclass
class _Incoming:
    text: str
    header: Header | None = None
    error: Hl7Error | None = None
    receipt: Receipt | None = None
    new_id: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def decode(data: bytes) -> str:
    """Frame bytes → text: UTF-8 when it is, else Latin-1 (MSH-18 names 8859/1 more often than not);
    never fails, so every message can be kept raw."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _check(item: _Incoming) -> None:
    if isinstance(item.text, _Unreadable):
        item.error = Hl7Error(item.text.reason, "MLLP", code=item.text.code)
        item.text = str(item.text)
        return
    try:
        header = read_header(item.text)
        item.header = header
        if header.message_type not in SUPPORTED:
            raise Hl7Error(f"message type {header.message_type} is not accepted here", "MSH-9", code="200")
        if header.trigger not in SUPPORTED[header.message_type]:
            raise Hl7Error(f"event {header.message_type}^{header.trigger} is not accepted here", "MSH-9", code="201")
        if "\x00" in item.text:
            raise Hl7Error("the message contains NUL characters", "MSH", code="102")
    except Hl7Error as exc:
        item.error = exc


def receive_messages(
    texts: Sequence[str], *, tenant: Tenant, connection: Connection, now: datetime | None = None, enqueue: bool = True,
) -> list[Receipt]:
    """Keep each message raw with its dedup key in one transaction, then (after commit) enqueue the
    new ones for mapping and return one Receipt per message, in order. Rejected messages are kept
    too (status rejected, with a FailedJob for triage) and answered AR (cannot be read / not
    supported). A message already received (same sender and control id) is answered AA and not
    applied again. Database errors propagate: the caller answers AE and the sender retries.
    `enqueue=False` leaves the mapping to the caller (`ingest_hl7` applies in its own process)."""
    now = now or timezone.now()
    items = [_Incoming(text) for text in texts]
    for item in items:
        _check(item)
    stamp = db_connection.ops.adapt_datetimefield_value(now)
    qn = db_connection.ops.quote_name
    table = qn(Hl7Message._meta.db_table)
    columns = ("tenant_id", "connection_id", "sender", "control_id", "message_type", "trigger", "version", "raw",
               "received_at", "status", "ack_code", "error", "detail")
    insert = f"INSERT INTO {table} ({', '.join(qn(c) for c in columns)}) VALUES ({', '.join(['%s'] * len(columns))})"  # noqa: S608
    on_conflict = f" ON CONFLICT (tenant_id, sender, control_id) WHERE NOT ({qn('status')} = 'rejected') DO NOTHING RETURNING id"
    new_ids: list[int] = []
    # One good message (the usual frame): its INSERT is a transaction of its own in autocommit mode,
    # committed (and on PostgreSQL flushed) when it returns: one round trip instead of BEGIN/INSERT/COMMIT.
    alone = len(items) == 1 and items[0].error is None and not db_connection.in_atomic_block
    with nullcontext() if alone else transaction.atomic(), db_connection.cursor() as cursor:
        for item in items:
            header = item.header
            if item.error is None and header is not None:
                cursor.execute(insert + on_conflict, [
                    tenant.pk, connection.pk, header.sender[:200], header.control_id, header.message_type[:3], header.trigger[:3],
                    header.version[:10], item.text, stamp, MessageStatus.RECEIVED, "AA", "", "{}",
                ])
                row = cursor.fetchone()
                if row is None:
                    item.receipt = Receipt(build_ack(header, "AA", "duplicate: already received, not applied again"), "AA",
                                           duplicate=True, control_id=header.control_id, message_type=f"{header.message_type}^{header.trigger}")
                else:
                    item.new_id = row[0]
                    new_ids.append(row[0])
                continue
            error = item.error or Hl7Error("unreadable")
            code = "AR" if error.reject else "AE"
            raw = item.text if len(item.text) <= RAW_KEEP_ON_OVERSIZE else item.text[:RAW_KEEP_ON_OVERSIZE]
            raw = raw.replace("\x00", "\\x00")  # PostgreSQL text holds no NUL: kept as the four characters \x00
            def clean(value: str, limit: int) -> str:
                return value.replace("\x00", "")[:limit]

            cursor.execute(insert + " RETURNING id", [
                tenant.pk, connection.pk, clean(header.sender if header else "", 200), clean(header.control_id if header else "", 200),
                clean(header.message_type if header else "", 3), clean(header.trigger if header else "", 3),
                clean(header.version if header else "", 10), raw, stamp, MessageStatus.REJECTED, code, clean(str(error), 2000), "{}",
            ])
            item.new_id = cursor.fetchone()[0]
            _triage(tenant, connection, item.new_id, error, RECEIVE_ACTOR, "formats.hl7v2.message.Hl7Error")
            item.receipt = Receipt(
                _nack(item, code, error), code, item.new_id, control_id=header.control_id if header else "",
                message_type=f"{header.message_type}^{header.trigger}" if header else "", reason=str(error),
            )
        if new_ids and enqueue:
            transaction.on_commit(lambda: _enqueue(new_ids))  # outside a transaction: now, after the commit
    for item in items:
        if item.receipt is None and item.header is not None:
            item.receipt = Receipt(build_ack(item.header, "AA"), "AA", item.new_id, control_id=item.header.control_id,
                                   message_type=f"{item.header.message_type}^{item.header.trigger}")
    return [item.receipt for item in items if item.receipt is not None]


def _nack(item: _Incoming, code: str, error: Hl7Error) -> str:
    if item.header is not None:
        return build_ack(item.header, code, error.reason, error_code=error.code, error_where=error.where)
    try:  # answer in the message's own characters when at least MSH-1/MSH-2 read
        encoding = read_encoding(item.text[:200]) if item.text.startswith("MSH") else DEFAULT_ENCODING
    except Hl7Error:
        encoding = DEFAULT_ENCODING
    return build_ack(None, code, error.reason, error_code=error.code, error_where=error.where, encoding=encoding)


def reject_unreadable(reason: str, head: bytes, *, tenant: Tenant, connection: Connection, code: str = "102") -> Receipt:
    """A frame that could not even be split into messages (too large, bytes outside a frame): kept
    (its first bytes) as a rejected message in triage, answered AR."""
    return receive_messages([_Unreadable(decode(head), reason, code)], tenant=tenant, connection=connection)[0]


class _Unreadable(str):
    """Text that `_check` rejects with the given reason whatever it holds."""

    def __new__(cls, text: str, reason: str, code: str):
        obj = super().__new__(cls, text or "(empty)")
        obj.reason, obj.code = reason, code
        return obj


def receive_frame(data: bytes | str, *, tenant: Tenant, connection: Connection) -> tuple[str, list[Receipt]]:
    """One MLLP frame (a message or a batch) → (the ACK text to send back, receipts)."""
    text = decode(data) if isinstance(data, bytes) else data
    messages = split_messages(text)
    if not messages:
        receipt = reject_unreadable("the frame holds no message", b"", tenant=tenant, connection=connection, code="100")
        return receipt.ack, [receipt]
    receipts = receive_messages(messages, tenant=tenant, connection=connection)
    batch = text.lstrip("\r\n")[:3] in ("FHS", "BHS") or len(receipts) > 1
    if not batch:
        return receipts[0].ack, receipts
    try:
        encoding = read_encoding(text.lstrip("\r\n")[:200])
    except Hl7Error:
        encoding = DEFAULT_ENCODING
    return build_batch_ack([r.ack for r in receipts], encoding), receipts


def _enqueue(message_ids: list[int]) -> None:
    from connectors.hl7v2.tasks import apply_hl7_message

    for message_id in message_ids:
        apply_hl7_message.send(message_id=message_id)


def _reason(error: Exception) -> str:
    """The error for staff: where (a field name such as SCH-11.5, ours) and why, the why scrubbed of PHI."""
    where = getattr(error, "where", "")
    reason = getattr(error, "reason", str(error))
    return f"{where}: {scrub(reason)}" if where else scrub(reason)


def _triage(tenant: Tenant, connection: Connection, message_id: int, error: Exception, actor: str, exception_type: str) -> None:
    message = _reason(error)
    FailedJob.objects.create(
        tenant=tenant, connection=connection, actor=actor, arguments={"args": [], "kwargs": {"message_id": message_id}},
        exception_type=exception_type, message=message, signature=signature(actor, exception_type, message),
    )


# --- applying -------------------------------------------------------------------------------------

_PATIENT_FIELDS = ("family_name", "given_names", "phone", "email", "address_line1", "address_line2", "city", "state",
                   "postal_code", "country", "birth_date", "sex", "language")

APPLY_BATCH = 200  # messages one worker maps and writes per transaction


def apply_message(message_id: int, *, batch: int = APPLY_BATCH) -> Hl7Message | None:
    """`apply_pending` for one message, returning the message as it ends (None if it is gone)."""
    apply_pending(message_id, batch=batch)
    return Hl7Message.objects.filter(pk=message_id).first()


def apply_pending(message_id: int, *, batch: int = APPLY_BATCH) -> None:
    """Map a received message into canonical records, together with up to `batch - 1` other
    messages of its connection still waiting, oldest first (one transaction, one upsert per kind:
    a worker keeps up with the listener this way; their own actors then find them applied, at the
    cost of one indexed read each).

    Idempotent: applied, ignored and rejected messages are left alone. A message that cannot be
    mapped is marked failed with the reason and kept in triage (not raised: retrying cannot help);
    database errors propagate for the actor's retry."""
    row = Hl7Message.objects.filter(pk=message_id).values_list("status", "connection_id").first()
    if row is None:
        logger.warning("HL7 message %s is gone", message_id)
        return
    status, connection_id = row
    if status not in (MessageStatus.RECEIVED, MessageStatus.FAILED):
        return
    connection = Connection.objects.select_related("tenant").get(pk=connection_id)
    ids = [message_id]
    if batch > 1:
        ids += list(Hl7Message.objects.filter(connection_id=connection_id, status=MessageStatus.RECEIVED)
                    .exclude(pk=message_id).order_by("pk").values_list("pk", flat=True)[: batch - 1])
    apply_messages(ids, tenant=connection.tenant, connection=connection)


def apply_messages(message_ids: Sequence[int], *, tenant: Tenant, connection: Connection) -> dict[str, int]:
    """Apply these messages (of one connection) in id order, in one transaction. Returns counts by outcome."""
    tz = ZoneInfo(tenant.timezone)
    now = timezone.now()
    with transaction.atomic():
        claim = Hl7Message.objects.filter(pk__in=message_ids, connection=connection,
                                          status__in=(MessageStatus.RECEIVED, MessageStatus.FAILED)).order_by("pk")
        if db_connection.features.has_select_for_update_skip_locked:
            claim = claim.select_for_update(skip_locked=True)  # another worker's batch: not ours to wait for
        rows = list(claim.values_list("pk", "raw"))
        plans: dict[int, mapping.Plan] = {}
        failures: dict[int, Exception] = {}
        for pk, raw in rows:
            try:
                plans[pk] = mapping.map_message(raw, tz)
            except Exception as exc:  # noqa: BLE001  pure code over one message's text: whatever it raises, that message is final, not the batch
                failures[pk] = exc if isinstance(exc, mapping.MappingError | Hl7Error) else mapping.MappingError(
                    "message", f"cannot be mapped ({type(exc).__name__})")
        details: dict[int, dict[str, Any]] = {}
        try:
            with transaction.atomic():
                details = _write(plans, tenant, connection)
        except _RECORD_ERRORS as exc:
            if len(plans) == 1:
                failures[next(iter(plans))] = _as_mapping_error(exc)
            else:  # find the one at fault: each on its own
                for pk, plan in plans.items():
                    try:
                        with transaction.atomic():
                            details.update(_write({pk: plan}, tenant, connection))
                    except _RECORD_ERRORS as single:
                        failures[pk] = _as_mapping_error(single)
        outcomes: dict[tuple[str, bytes], list[int]] = {}  # one UPDATE per distinct outcome, not per message
        for pk, detail in details.items():
            status = MessageStatus.APPLIED if detail.pop("records") else MessageStatus.IGNORED
            outcomes.setdefault((status, orjson.dumps(detail, option=orjson.OPT_SORT_KEYS)), []).append(pk)
        for (status, detail_json), pks in outcomes.items():
            Hl7Message.objects.filter(pk__in=pks).update(status=status, error="", detail=orjson.loads(detail_json), applied_at=now)
        for pk, exc in failures.items():
            Hl7Message.objects.filter(pk=pk).update(status=MessageStatus.FAILED, error=_reason(exc))
            _triage(tenant, connection, pk, exc, APPLY_ACTOR, f"{type(exc).__module__}.{type(exc).__qualname__}")
    counts = {"applied": 0, "ignored": 0, "failed": len(failures)}
    for (status, _), pks in outcomes.items():
        counts[status] += len(pks)
    return counts


# What writing one message's records can raise that retrying will not cure (a value the database
# refuses, a reference that breaks a constraint). OperationalError is not here: the actor retries it.
_RECORD_ERRORS = (mapping.MappingError, DataError, IntegrityError, ValueError, TypeError, ArithmeticError)


def _as_mapping_error(exc: Exception) -> mapping.MappingError:
    if isinstance(exc, mapping.MappingError):
        return exc
    return mapping.MappingError("records", f"refused by the database ({type(exc).__name__})")


def _check_result(result: UpsertResult) -> None:
    if result.rejected:
        first = result.rejected[0]
        raise mapping.MappingError(f"{result.kind}.{first.path}", first.reason)


def _write(plans: dict[int, mapping.Plan], tenant: Tenant, connection: Connection) -> dict[int, dict[str, Any]]:
    """Write mapped messages in order. Messages up to a merge are written together (patients, then
    appointments, then encounters: one upsert each, later messages' changes laid over earlier
    ones'); a merge is written on its own after them. Raises MappingError if a record is refused."""
    details: dict[int, dict[str, Any]] = {}
    run: list[tuple[int, mapping.Plan]] = []
    for pk, plan in plans.items():
        if plan.merges:
            _write_run(run, tenant, connection, details)
            run = []
            _write_run([(pk, plan)], tenant, connection, details)
            details[pk]["merged"] = [_merge_patient(survivor, merged, tenant, connection) for survivor, merged in plan.merges]
            details[pk]["records"] += len(plan.merges)
        else:
            run.append((pk, plan))
    _write_run(run, tenant, connection, details)
    return details


def _write_run(run: list[tuple[int, mapping.Plan]], tenant: Tenant, connection: Connection, details: dict[int, dict[str, Any]]) -> None:
    if not run:
        return
    patients: dict[str, dict[str, Any]] = {}
    stored = _stored_patients({c["external_id"] for _, plan in run for c in plan.patients}, tenant, connection)
    appointments: dict[str, dict[str, Any]] = {}
    encounters: dict[str, dict[str, Any]] = {}
    stored_encounters = _stored_encounters({e["external_id"] for _, plan in run for e in plan.encounters}, tenant, connection)
    for pk, plan in run:
        for changes in plan.patients:
            key = changes["external_id"]
            patients[key] = _overlay_patient(changes, patients.get(key) or stored.get(key))
        for record in plan.appointments:
            appointments[record["external_id"]] = record
        for record in plan.encounters:
            key = record["external_id"]
            encounters[key] = _merge_encounter(record, encounters.get(key) or stored_encounters.get(key))
        detail: dict[str, Any] = {"patients": len(plan.patients), "appointments": len(plan.appointments), "encounters": len(plan.encounters)}
        detail["records"] = len(plan.patients) + len(plan.appointments) + len(plan.encounters)
        if plan.skipped:
            detail["skipped"] = plan.skipped[:50]
        details[pk] = detail
    for kind, records in (("patient", patients), ("appointment", appointments), ("encounter", encounters)):
        if records:
            _check_result(upsert_records(kind, list(records.values()), tenant=tenant, connection=connection))


def _stored_patients(external_ids: set[str], tenant: Tenant, connection: Connection) -> dict[str, dict[str, Any]]:
    """Stored patients as records (external id → record with identifiers), in two queries."""
    if not external_ids:
        return {}
    rows = list(Patient.objects.filter(tenant=tenant, source_connection=connection, external_id__in=external_ids)
                .values("pk", "external_id", *_PATIENT_FIELDS))
    identifiers: dict[int, list[dict[str, str]]] = {}
    for patient_id, system, value in (PatientIdentifier.objects.filter(patient_id__in=[r["pk"] for r in rows])
                                      .order_by("patient_id", "position").values_list("patient_id", "system", "value")):
        identifiers.setdefault(patient_id, []).append({"system": system, "value": value})
    out = {}
    for row in rows:
        pk = row.pop("pk")
        row["birth_date"] = row["birth_date"].isoformat() if row["birth_date"] else None
        row["identifiers"] = identifiers.get(pk, [])
        out[row["external_id"]] = row
    return out


def _overlay_patient(changes: dict[str, Any], stored: dict[str, Any] | None) -> dict[str, Any]:
    """HL7's update rule: what the message sends replaces, `""` clears, what it leaves out stays."""
    record = dict(stored or {})
    record["external_id"] = changes["external_id"]
    stored_given = record.get("given_names") or []
    if changes.get("partial_given_names") and stored_given[:1] == changes.get("given_names"):
        changes = {**changes, "given_names": stored_given}  # same first name, no middle sent: keep the stored middle
    for key in _PATIENT_FIELDS:
        value = changes.get(key)
        if value is not None:
            record[key] = value if value != "" or key != "birth_date" else None
    identifiers = list(record.get("identifiers", []))
    seen = {(i["system"], i["value"]) for i in identifiers}
    for identifier in changes.get("identifiers", []):
        if (identifier["system"], identifier["value"]) not in seen:
            seen.add((identifier["system"], identifier["value"]))
            identifiers.append(identifier)
    record["identifiers"] = identifiers
    return record


def _merge_patient(survivor: str, merged: str, tenant: Tenant, connection: Connection) -> dict[str, Any]:
    """A40: the merged patient's identifiers move to the survivor; the merged record is tombstoned."""
    stored = _stored_patients({survivor, merged}, tenant, connection)
    outcome: dict[str, Any] = {"survivor": survivor, "merged": merged, "found": merged in stored}
    if merged not in stored:
        return outcome
    target = stored.get(survivor)
    if target is None:  # the survivor was written just before from the PID; never missing here
        raise mapping.MappingError("PID-3", "the surviving patient was not found")
    seen = {(i["system"], i["value"]) for i in target["identifiers"]}
    moved = [i for i in stored[merged]["identifiers"] if (i["system"], i["value"]) not in seen]
    if moved:
        target["identifiers"] = target["identifiers"] + moved
        _check_result(upsert_records("patient", [target], tenant=tenant, connection=connection))
    delete_records("patient", [merged], tenant=tenant, connection=connection)
    PatientIdentifier.objects.filter(patient__tenant=tenant, patient__source_connection=connection, patient__external_id=merged).delete()
    outcome["identifiers_moved"] = len(moved)
    return outcome


def _stored_encounters(external_ids: set[str], tenant: Tenant, connection: Connection) -> dict[str, dict[str, Any]]:
    """Stored encounters as records with their children, in a few queries."""
    if not external_ids:
        return {}
    encounters = (Encounter.objects.filter(tenant=tenant, source_connection=connection, external_id__in=external_ids)
                  .select_related("patient", "practitioner", "location", "appointment")
                  .prefetch_related("diagnoses", "procedures", "vitals", "notes"))
    out = {}
    for stored in encounters:
        record: dict[str, Any] = {
            "external_id": stored.external_id, "patient": stored.patient.external_id,
            "status": stored.status, "visit_type": stored.visit_type, "period_start": stored.period_start,
            "period_end": stored.period_end, "reason": stored.reason, "details": stored.details,
            "diagnoses": [{"system": d.system, "code": d.code, "display": d.display, "rank": d.rank} for d in stored.diagnoses.all()],
            "procedures": [{"system": p.system, "code": p.code, "modifiers": p.modifiers, "units": p.units, "display": p.display}
                           for p in stored.procedures.all()],
            "vitals": [{"loinc": v.loinc, "display": v.display, "value": v.value, "unit": v.unit, "effective_at": v.effective_at}
                       for v in stored.vitals.all()],
            "notes": [{"author": n.author, "text": n.text, "status": n.status, "signed_at": n.signed_at, "signed_by": n.signed_by,
                       "locked": n.locked, "amendments": n.amendments} for n in stored.notes.all()],
        }
        for key in ("practitioner", "location", "appointment"):
            related = getattr(stored, key)
            if related is not None:
                record[key] = related.external_id
        out[stored.external_id] = record
    return out


def _merge_encounter(record: dict[str, Any], stored: dict[str, Any] | None) -> dict[str, Any]:
    """A new ORU's vitals or MDM's note join the encounter's stored children instead of replacing
    them (a visit gets many results and documents). A vital with the same LOINC code and time is
    a correction and replaces the stored one; an identical note is not added twice."""
    if stored is None:
        return {**record, "vitals": list(record.get("vitals", [])), "notes": list(record.get("notes", []))}
    merged = dict(stored)
    if record.get("patient"):
        merged["patient"] = record["patient"]
    if record.get("period_start") and record["period_start"] < stored["period_start"]:
        merged["period_start"] = record["period_start"]
    vitals = list(stored.get("vitals", []))
    if record.get("vitals"):
        new_keys = {(v["loinc"], v["effective_at"]) for v in record["vitals"]}
        vitals = [v for v in vitals if (v["loinc"], v["effective_at"]) not in new_keys] + record["vitals"]
    notes = list(stored.get("notes", []))
    for note in record.get("notes", []):
        if not any(n["author"] == note["author"] and n["text"] == note["text"] for n in notes):
            notes.append(note)
    merged["vitals"], merged["notes"] = vitals, notes
    return merged


def pending_message_ids(tenant: Tenant | None = None, limit: int = 10_000) -> list[int]:
    """Received messages not yet applied (the broker lost a message, or the workers were down)."""
    queryset = Hl7Message.objects.filter(status=MessageStatus.RECEIVED)
    if tenant is not None:
        queryset = queryset.filter(tenant=tenant)
    return list(queryset.order_by("pk").values_list("pk", flat=True)[:limit])


def enqueue_pending(tenant: Tenant) -> int:
    """Enqueue mapping for the tenant's received, unmapped messages (one actor message per batch:
    each applies the waiting messages of its connection). Returns how many were waiting."""
    ids = pending_message_ids(tenant, limit=1_000_000)
    if ids:
        _enqueue(ids[::APPLY_BATCH])
    return len(ids)


def recheck_message(message_id: int) -> Hl7Message | None:
    """Triage's retry of a rejected message: read it again with today's rules (a message type since
    supported, a fixed reader). Accepted now: it becomes received and is applied. Still refused: it
    stays rejected with the current reason. Already resent and accepted by its sender: stays
    rejected, saying so."""
    message = Hl7Message.objects.select_related("tenant", "connection").filter(pk=message_id).first()
    if message is None or message.status != MessageStatus.REJECTED:
        return message
    item = _Incoming(message.raw)
    _check(item)
    if item.error is not None or item.header is None:
        Hl7Message.objects.filter(pk=message.pk).update(error=str(item.error or "unreadable")[:2000])
    elif Hl7Message.objects.filter(tenant=message.tenant, sender=item.header.sender[:200], control_id=item.header.control_id).exclude(
            status=MessageStatus.REJECTED).exists():
        Hl7Message.objects.filter(pk=message.pk).update(error="resent by the sender and accepted since")
    else:
        header = item.header
        Hl7Message.objects.filter(pk=message.pk).update(
            status=MessageStatus.RECEIVED, error="", ack_code="", sender=header.sender[:200], control_id=header.control_id,
            message_type=header.message_type[:3], trigger=header.trigger[:3], version=header.version[:10],
        )
        apply_pending(message.pk)
    message.refresh_from_db()
    return message
