"""Writes to a vendor: entitlement, local rule checks, one vendor call per idempotency key, and
the vendor's answer applied to the canonical store like a synced record.

    write = request_write(connection, "book_appointment", {...}, idempotency_key=..., actor_label=...)
    perform_write(write.pk)          # the job (connectors.tasks.perform_write) runs this

The request names records by public id ({"patient": "<uuid>"}); they must belong to the
connection, since the vendor knows only its own ids. Times are ISO 8601 with a zone.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from canonical.kinds import KINDS, get_kind
from connectors.choices import WriteStatus
from connectors.errors import FinalError, WriteRefused
from connectors.models import VendorWrite
from connectors.registry import connector_for
from connectors.scrub import scrub
from connectors.sync import apply_page
from tenants.audit import record_audit
from tenants.choices import AuditAction
from tenants.entitlements import EntitlementMissing, require_entitlement
from tenants.models import Connection

logger = logging.getLogger(__name__)

# Fields of a write request that name canonical records, and the kind each names.
REFERENCES = {"patient": "patient", "practitioner": "practitioner", "location": "location", "appointment": "appointment"}
TIMES = ("start", "end")


class WriteConflict(ValueError):
    """The idempotency key was used before for a different request."""


def fingerprint(operation: str, request: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps([operation, request], sort_keys=True, default=str).encode()).hexdigest()


def request_write(connection: Connection, operation: str, request: dict[str, Any], *, idempotency_key: str,
                  actor_label: str = "system") -> tuple[VendorWrite, bool]:
    """The write row for this key, created pending if new; (row, created). Raises WriteConflict
    when the key was used for another request, KeyError for an operation the vendor lacks."""
    connector_for(connection).write_spec(operation)  # KeyError names what the vendor can do
    if not idempotency_key or len(idempotency_key) > 200:
        raise ValueError("an idempotency key of 1–200 characters is required")
    digest = fingerprint(operation, request)
    try:
        with transaction.atomic():
            write = VendorWrite.objects.create(
                tenant=connection.tenant, connection=connection, operation=operation, idempotency_key=idempotency_key,
                request=request, fingerprint=digest, actor_label=actor_label,
            )
            return write, True
    except IntegrityError:
        write = VendorWrite.objects.get(connection=connection, idempotency_key=idempotency_key)
        if write.fingerprint != digest:
            raise WriteConflict(f"idempotency key {idempotency_key!r} was used for a different request") from None
        return write, False


def perform_write(write_id: int) -> VendorWrite | None:
    """Run a pending write to its end. Retryable vendor errors propagate (the job retries; the
    vendor's idempotency key makes the retry safe); refusals and final errors end the row."""
    write = VendorWrite.objects.select_related("connection__tenant").filter(pk=write_id).first()
    if write is None:
        logger.warning("vendor write %s is gone", write_id)
        return None
    if write.status != WriteStatus.PENDING:
        return write  # done before: a redelivered message, or a repeated request
    connection = write.connection
    connector = connector_for(connection)
    spec = connector.write_spec(write.operation)
    first_attempt = write.attempts == 0
    VendorWrite.objects.filter(pk=write.pk).update(attempts=F("attempts") + 1)
    try:
        if not connection.enabled:
            raise WriteRefused("connection_disabled", f"connection '{connection.display_name}' is disabled")
        try:
            require_entitlement(connection.tenant, spec.capability, connection)
        except EntitlementMissing as exc:
            raise WriteRefused("entitlement_missing", str(exc), details={"capability": spec.capability}) from None
        missing = [name for name in spec.required if write.request.get(name) in (None, "", [])]
        if missing:
            raise WriteRefused("invalid_request", f"{missing[0]}: is required", details={"missing": missing})
        payload = resolve(connection, write.request)
        if first_attempt:
            # A retry resends the same idempotency key: the vendor answers the first attempt's outcome.
            # Checking again here would count a booking that reached the vendor (and was synced since)
            # against itself, and refuse what the vendor in fact booked.
            connector.check_write(write.operation, payload)
        result = connector.write(write.operation, payload, idempotency_key=f"switchboard-{write.public_id}")
    except WriteRefused as exc:
        return _finish(write, WriteStatus.REFUSED, error=str(exc), rule=exc.rule, details=exc.details)
    except FinalError as exc:
        return _finish(write, WriteStatus.FAILED, error=scrub(str(exc), 500))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:  # a request shaped unlike the operation's contract
        return _finish(write, WriteStatus.FAILED, error=f"the request does not fit {write.operation}: {type(exc).__name__}")
    if spec.kind not in KINDS:
        # A write whose outcome is not a synced record (an eligibility check, a claim batch): the
        # connector keeps it in its own model, in the same transaction as the write's end.
        with transaction.atomic():
            record = connector.keep_write_result(write.operation, payload, result)
            if spec.follow_up:
                from connectors.tasks import follow_up_write

                transaction.on_commit(lambda: follow_up_write.send(write_id=write.pk))
            return _finish(write, WriteStatus.SUCCEEDED, external_id=result.external_id, kind=spec.kind, record=record)
    resource = connector.resource_for_kind(spec.kind)
    with transaction.atomic():
        for name, raw in result.related:
            apply_page(connector, connector.resource(name), None, [raw])
        outcome = apply_page(connector, resource, None, [result.record])
        model = get_kind(spec.kind).model
        record = model.objects.filter(tenant=connection.tenant, source_connection=connection, external_id=result.external_id).first()
        if outcome.failed or record is None:
            return _finish(write, WriteStatus.FAILED, external_id=result.external_id,
                           error="the vendor accepted the write, but its answer did not normalize (see failed jobs)")
        return _finish(write, WriteStatus.SUCCEEDED, external_id=result.external_id, kind=spec.kind, record=record)


def resolve(connection: Connection, request: dict[str, Any]) -> dict[str, Any]:
    """Public ids → this connection's canonical records; ISO times → aware datetimes. Refuses clearly."""
    payload = dict(request)
    for field, kind in REFERENCES.items():
        value = payload.get(field)
        if value in (None, ""):
            payload[field] = None
            continue
        model = get_kind(kind).model
        record = model.objects.filter(tenant=connection.tenant, public_id=_uuid_or_none(value), deleted_at__isnull=True).first()
        if record is None:
            raise WriteRefused("unknown_reference", f"{field}: no {kind} {value} in this tenant")
        if record.source_connection_id != connection.pk:
            raise WriteRefused("other_connection", f"{field}: {kind} {value} comes from another connection, which this vendor cannot see")
        payload[field] = record
    for field in TIMES:
        if field in payload:
            try:
                moment = datetime.fromisoformat(str(payload[field]))
            except ValueError:
                raise WriteRefused("invalid_time", f"{field}: {payload[field]!r} is not an ISO 8601 date-time") from None
            if moment.tzinfo is None:
                raise WriteRefused("invalid_time", f"{field}: {payload[field]!r} has no time zone")
            payload[field] = moment
    return payload


def _uuid_or_none(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


MAX_FOLLOW_UPS = 100_000  # a bound on every follow-up loop; connectors set tighter ones (e.g. era_poll_limit)


def follow_up(write_id: int, step: int = 0) -> float | None:
    """One step of what a succeeded write does afterwards (`Connector.follow_up`); the seconds until
    the next step, or None when done. Retryable vendor errors propagate (the job retries)."""
    write = VendorWrite.objects.select_related("connection__tenant").filter(pk=write_id).first()
    if write is None or write.status != WriteStatus.SUCCEEDED or step >= MAX_FOLLOW_UPS:
        return None
    connector = connector_for(write.connection)
    spec = connector.write_spec(write.operation)
    if not spec.follow_up:
        return None
    limit = getattr(connector.options, "era_poll_limit", MAX_FOLLOW_UPS)
    if step >= limit:
        logger.warning("vendor write %s: follow-up stopped after %s steps", write.public_id, step)
        return None
    record = _kept_record(spec.kind, write)
    return connector.follow_up(write.operation, record)


def _kept_record(kind: str, write: VendorWrite):
    """The row a non-canonical write kept (by its public id), found through the models that can hold it."""
    from reconciliation.models import ClaimBatch, EligibilityCheck

    model = {"claim_batch": ClaimBatch, "eligibility_check": EligibilityCheck}.get(kind)
    if model is None or write.record_public_id is None:
        return None
    return model.objects.filter(tenant=write.tenant, public_id=write.record_public_id).first()


def give_up(write_id: int, error: str) -> None:
    """The job ran out of retries (the vendor kept failing): the write ends failed, not pending forever."""
    write = VendorWrite.objects.select_related("connection", "tenant").filter(pk=write_id).first()
    if write is not None:
        _finish(write, WriteStatus.FAILED, error=scrub(error, 500))


def _finish(write: VendorWrite, status: str, *, error: str = "", rule: str = "", details: dict | None = None, external_id: str = "",
            kind: str = "", record=None) -> VendorWrite:
    """End a pending write once: a duplicate delivery of the same job finds it ended and changes nothing."""
    fields = {"status": status, "error": error, "rule": rule, "details": details or {}, "external_id": external_id, "record_kind": kind,
              "record_public_id": record.public_id if record is not None else None, "finished_at": timezone.now()}
    with transaction.atomic():
        ended = VendorWrite.objects.filter(pk=write.pk, status=WriteStatus.PENDING).update(**fields)
        if ended:
            record_audit(
                AuditAction.CREATE if status == WriteStatus.SUCCEEDED else AuditAction.UPDATE, object_type="connectors.vendorwrite",
                object_id=write.public_id, tenant=write.tenant, actor_label=write.actor_label or "system",
                detail={"operation": write.operation, "status": status, "rule": rule, "connection": str(write.connection.public_id),
                        "record": str(fields["record_public_id"] or "")},
            )
    write.refresh_from_db()
    return write
