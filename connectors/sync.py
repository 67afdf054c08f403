"""The sync engine: one connection, one resource, page by page.

Each page is one transaction: keep the raw payloads, normalize, upsert, record what a full_diff
run has seen, advance the cursor, add to the run's counts. A crash loses at most the page in
flight, which the retry fetches again from the last committed cursor: nothing lost, nothing
doubled. A record that fails to normalize fails alone, into triage; the page goes on.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import orjson
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from canonical.choices import SourceStatus
from canonical.codes import CodeMapper
from canonical.identity import IdentityReport, link_unlinked_patients
from canonical.kinds import get_kind
from canonical.models import ChangeEvent, SourceRecord
from canonical.sources import Payload, store_payloads
from canonical.upsert import delete_records, upsert_records
from connectors.base import Connector, ResourceSpec
from connectors.choices import RunStatus, SyncMode, Trigger
from connectors.errors import AuthenticationFailed, EntitlementRefused, InvalidPayload, MfaRequired, VendorError
from connectors.models import FailedJob, SyncCursor, SyncRun, SyncSeen
from connectors.registry import connector_for
from connectors.scrub import scrub, signature
from hub.bulk import StatisticsKeeper
from tenants.choices import ConnectionStatus
from tenants.entitlements import EntitlementMissing, require_entitlement
from tenants.models import Connection

logger = logging.getLogger(__name__)


@dataclass
class PageOutcome:
    fetched: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    failed: int = 0


def create_runs(connection: Connection, *, resources: list[str] | None = None, trigger: str = Trigger.MANUAL) -> list[SyncRun]:
    """Queued runs for the connection's pollable resources (or the named ones)."""
    connector = connector_for(connection)
    specs = [connector.resource(name) for name in resources] if resources else [r for r in connector.resources if r.mode != SyncMode.PUSH]
    return [
        SyncRun.objects.create(tenant=connection.tenant, connection=connection, resource=spec.name, mode=spec.mode, trigger=trigger)
        for spec in specs
    ]


def run_sync(run_id: int) -> SyncRun | None:
    """Run (or resume) a sync run to its end. Raises VendorError subclasses for the job to judge."""
    run = SyncRun.objects.select_related("connection__tenant").filter(pk=run_id).first()
    if run is None:
        logger.warning("sync run %s is gone", run_id)
        return None
    if run.status in (RunStatus.SUCCEEDED, RunStatus.PARTIAL):
        return run  # a redelivered message for a finished run
    connection = run.connection
    connector = connector_for(connection)
    spec = connector.resource(run.resource)
    try:
        if not connection.enabled:
            raise EntitlementRefused(f"connection '{connection.display_name}' is disabled")
        require_entitlement(connection.tenant, spec.capability, connection)
    except EntitlementMissing as exc:
        refused = _refusal(exc)
        _finish(run, RunStatus.FAILED, str(refused))
        raise refused from None
    except EntitlementRefused as exc:
        _finish(run, RunStatus.FAILED, str(exc))
        raise

    SyncRun.objects.filter(pk=run.pk).update(status=RunStatus.RUNNING, started_at=run.started_at or timezone.now(), error="")
    cursor, _ = SyncCursor.objects.get_or_create(connection=connection, resource=spec.name)
    state = dict(cursor.state)
    statistics = StatisticsKeeper(tables_of(spec.kind))
    complete = True
    try:
        for _ in range(connector.options.max_pages):
            page = connector.fetch_page(spec, state)
            complete = complete and page.complete
            with transaction.atomic():
                outcome = apply_page(connector, spec, run, page.records, deleted_ids=page.deleted_ids)
                state = page.next_state
                SyncCursor.objects.filter(pk=cursor.pk).update(state=state, updated_at=timezone.now())
                SyncRun.objects.filter(pk=run.pk).update(
                    pages=F("pages") + 1, fetched=F("fetched") + outcome.fetched, created=F("created") + outcome.created,
                    updated=F("updated") + outcome.updated, unchanged=F("unchanged") + outcome.unchanged,
                    deleted=F("deleted") + outcome.deleted, failed=F("failed") + outcome.failed,
                )
            statistics.grew(outcome.created)
            if page.done:
                break
        else:
            raise VendorError(f"{spec.name}: stopped after {connector.options.max_pages} pages (max_pages); the feed did not end")
        if spec.mode == SyncMode.FULL_DIFF:
            with transaction.atomic():
                gone = _vanished(run, spec) if complete else []
                result = delete_records(spec.kind, gone, tenant=connection.tenant, connection=connection)
                SyncRun.objects.filter(pk=run.pk).update(deleted=F("deleted") + result.deleted)
                SyncSeen.objects.filter(run=run).delete()
    except VendorError as exc:
        refused = isinstance(exc, AuthenticationFailed | MfaRequired) or exc.status in (401, 403)
        status = ConnectionStatus.AUTH_FAILED if refused else ConnectionStatus.ERROR
        Connection.objects.filter(pk=connection.pk).update(status=status, status_detail=scrub(str(exc), 500))
        if not exc.retryable:
            _finish(run, RunStatus.FAILED, str(exc))
        else:
            SyncRun.objects.filter(pk=run.pk).update(error=scrub(str(exc)))
        raise
    run.refresh_from_db()
    _finish(run, RunStatus.PARTIAL if run.failed else RunStatus.SUCCEEDED, "")
    Connection.objects.filter(pk=connection.pk).update(status=ConnectionStatus.OK, status_detail="", last_synced_at=timezone.now())
    run.refresh_from_db()
    return run


def tables_of(kind: str) -> list[str]:
    """The tables a sync of `kind` grows: the kind's, its children's, kept payloads, change events."""
    spec = get_kind(kind)
    return [spec.table, *(child.model._meta.db_table for child in spec.children), SourceRecord._meta.db_table, ChangeEvent._meta.db_table]


def matches_patients(run: SyncRun) -> bool:
    """Whether the run synced patients, so identity matching should follow it (`link_run_patients`)."""
    return connector_for(run.connection).resource(run.resource).kind == "patient"


def link_run_patients(run_id: int) -> IdentityReport | None:
    """Identity matching after a patient sync run: every patient of the connection that has no
    master patient yet, or that changed since the run started. A job of its own, not part of the
    pages: matching reads across the tenant's patients and may wait on a concurrent run's locks,
    and records should land at the vendor's pace whatever it does. Patients a crash left without a
    master are picked up by the next run's pass."""
    run = SyncRun.objects.select_related("connection__tenant").filter(pk=run_id).first()
    if run is None or run.started_at is None:
        return None
    return link_unlinked_patients(run.connection, changed_since=run.started_at)


def apply_page(connector: Connector, spec: ResourceSpec, run: SyncRun | None, raws: list[Any], *, deleted_ids: list[str] = ()) -> PageOutcome:
    """Normalize, upsert and keep one page (the caller holds the transaction).

    Every raw payload is kept, with what became of it: normalized, or failed with the error and
    its path. The page normalizes first so that each payload is written once, with its final
    status; the caller's transaction makes the page land whole or not at all.
    """
    connection, tenant = connector.connection, connector.tenant
    outcome = PageOutcome(fetched=len(raws))
    ids: list[str] = []
    bodies: list[str] = []
    for raw in raws:
        try:
            ids.append(connector.external_id(spec, raw))
        except InvalidPayload:
            ids.append("")
        bodies.append(raw if isinstance(raw, str) else _dumps(raw))

    mapper = CodeMapper(tenant)
    normalized: list[dict] = []
    index_of: dict[str, int] = {}
    errors: dict[int, tuple[str, str]] = {}  # page index -> (message, path)
    for index, (raw, external_id) in enumerate(zip(raws, ids, strict=True)):
        try:
            if not external_id:
                raise InvalidPayload("the record has no id", path="id")
            record = connector.normalize(spec, raw, mapper)
        except InvalidPayload as exc:
            errors[index] = (str(exc), exc.path)
            continue
        except (KeyError, TypeError, ValueError, AttributeError) as exc:  # a payload shaped unlike the vendor's contract
            errors[index] = (f"unexpected payload shape: {type(exc).__name__}: {exc}", "")
            continue
        normalized.append(record)
        index_of[record["external_id"]] = index
    result = upsert_records(spec.kind, normalized, tenant=tenant, connection=connection)
    for rejected in result.rejected:
        if (index := index_of.get(rejected.external_id)) is not None:
            errors[index] = (f"{rejected.path}: {rejected.reason}", rejected.path)

    payloads = [
        Payload(spec.name, external_id or f"#unidentified-{index}", body, status=SourceStatus.FAILED, error=errors[index][0], error_path=errors[index][1])
        if index in errors else Payload(spec.name, external_id, body, status=SourceStatus.NORMALIZED)
        for index, (external_id, body) in enumerate(zip(ids, bodies, strict=True))
    ]
    source_ids = store_payloads(payloads, tenant=tenant, connection=connection)
    for index, (message, _) in errors.items():
        _triage_record(run, connector, spec, source_ids[index], message)
    mapper.flush()
    if deleted_ids:
        outcome.deleted += delete_records(spec.kind, deleted_ids, tenant=tenant, connection=connection).deleted
    if run is not None and spec.mode == SyncMode.FULL_DIFF:
        _remember_seen(run, [i for i in ids if i])
    outcome.created, outcome.updated, outcome.unchanged = result.created, result.updated, result.unchanged
    outcome.failed = len(errors)
    return outcome


def _dumps(raw: Any) -> str:
    """The payload as kept: canonical JSON, so an unchanged record hashes the same on every poll."""
    return orjson.dumps(raw, option=orjson.OPT_SORT_KEYS, default=str).decode()


def _triage_record(run: SyncRun | None, connector: Connector, spec: ResourceSpec, source_id: int | None, message: str) -> None:
    clean = scrub(message)
    actor = "replay_source_record"
    FailedJob.objects.create(
        tenant=connector.tenant, connection=connector.connection, actor=actor,
        arguments={"args": [], "kwargs": {"source_record_id": source_id}},
        exception_type="connectors.errors.InvalidPayload", message=f"{spec.name}: {clean}",
        signature=signature(actor, spec.name, clean), sync_run=run, source_record_id=source_id,
    )


def _remember_seen(run: SyncRun, external_ids: list[str]) -> None:
    SyncSeen.objects.create(run=run, external_ids=external_ids)


def _vanished(run: SyncRun, spec: ResourceSpec) -> list[str]:
    """Live records of this connection and kind that no page of the run saw."""
    seen: set[str] = set()
    for ids in SyncSeen.objects.filter(run=run).values_list("external_ids", flat=True).iterator():
        seen.update(ids)
    live = get_kind(spec.kind).model.objects.filter(tenant=run.tenant, source_connection=run.connection, deleted_at__isnull=True)
    return [external_id for external_id in live.values_list("external_id", flat=True).iterator(chunk_size=10_000) if external_id not in seen]


def _refusal(exc: EntitlementMissing) -> EntitlementRefused:
    # The capability goes first and unquoted: scrubbing (for runs and triage) blanks quoted values.
    return EntitlementRefused(f"missing entitlement {exc.capability}: {exc}")


def _finish(run: SyncRun, status: str, error: str) -> None:
    SyncRun.objects.filter(pk=run.pk).update(status=status, finished_at=timezone.now(), error=scrub(error))


def pull_record(connection: Connection, resource: str, external_id: str) -> PageOutcome:
    """Push mode: the vendor pinged that a record changed; fetch it and apply it (or tombstone it)."""
    connector = connector_for(connection)
    spec = connector.resource(resource)
    try:
        require_entitlement(connection.tenant, spec.capability, connection)
    except EntitlementMissing as exc:
        raise _refusal(exc) from None
    raw = connector.fetch_one(spec, external_id)
    with transaction.atomic():
        if raw is None:
            return PageOutcome(deleted=delete_records(spec.kind, [external_id], tenant=connection.tenant, connection=connection).deleted)
        return apply_page(connector, spec, None, [raw])


def replay_source_record(source_record_id: int) -> PageOutcome | None:
    """Normalize a kept payload again (after a fix to the mapping or the code mappings)."""
    source = SourceRecord.objects.select_related("connection__tenant").filter(pk=source_record_id).first()
    if source is None:
        logger.warning("source record %s is gone", source_record_id)
        return None
    connector = connector_for(source.connection)
    spec = connector.resource(source.resource_type)
    try:
        raw = json.loads(source.body)
    except ValueError as exc:
        raise InvalidPayload(f"the kept payload is not JSON (line {exc.lineno}, column {exc.colno})") from None
    with transaction.atomic():
        outcome = apply_page(connector, spec, None, [raw])
        if not outcome.failed:
            # Open, or re-enqueued from triage (retried): either way the replay has now fixed it.
            FailedJob.objects.filter(source_record_id=source.pk, status__in=("open", "retried")).update(
                status="resolved", resolution="replayed")
    return outcome
