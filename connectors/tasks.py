"""Dramatiq actors: thin doors. They take ids, reload, call one function in connectors.sync.

Retry policy: retryable vendor errors (429, 5xx, timeouts) back off and retry; final errors
(refused login, missing entitlement, invalid payloads) go straight to triage.
"""

from __future__ import annotations

import logging

import dramatiq
from django.db import OperationalError, transaction

from canonical.identity import IdentityBusy
from connectors import sync
from connectors.errors import FinalError, RetryableError
from connectors.models import SyncRun
from tenants.models import Connection

logger = logging.getLogger(__name__)


def _retry_when(retries: int, exception: BaseException) -> bool:
    return retries < 6 and isinstance(exception, RetryableError | OperationalError)


_OPTIONS = {"retry_when": _retry_when, "throws": (FinalError,), "min_backoff": 2_000, "max_backoff": 600_000}


@dramatiq.actor(queue_name="sync", time_limit=6 * 60 * 60 * 1000, **_OPTIONS)
def sync_resource(*, run_id: int, then: list[int] | None = None) -> None:
    """Run one resource's sync, then hand over to the next run of the chain (`then`): resources
    sync in the connector's order, so appointments find the patients they refer to. A run that
    fails for good still hands over; one that will be retried hands over when it ends."""
    try:
        run = sync.run_sync(run_id)
    except FinalError:
        _hand_over(then)
        raise
    if run is not None and sync.matches_patients(run):
        link_run_patients.send(run_id=run.pk)
    _hand_over(then)


def _hand_over(then: list[int] | None) -> None:
    if then:
        sync_resource.send(run_id=then[0], then=then[1:])


def _retry_identity(retries: int, exception: BaseException) -> bool:
    return retries < 6 and isinstance(exception, IdentityBusy | OperationalError)


@dramatiq.actor(queue_name="identity", time_limit=60 * 60 * 1000, retry_when=_retry_identity, min_backoff=2_000, max_backoff=120_000)
def link_run_patients(*, run_id: int) -> None:
    """Identity matching for the patients a sync run created or changed (after the run)."""
    sync.link_run_patients(run_id)


@dramatiq.actor(queue_name="sync", max_retries=3, throws=(FinalError,))
def sync_connection(*, connection_id: int, trigger: str = "manual", resources: list[str] | None = None) -> None:
    """Fan out: one queued SyncRun and one sync_resource message per resource."""
    connection = Connection.objects.select_related("tenant").filter(pk=connection_id).first()
    if connection is None:
        logger.warning("connection %s is gone", connection_id)
        return
    enqueue_runs(connection, trigger=trigger, resources=resources)


def enqueue_runs(connection: Connection, *, trigger: str = "manual", resources: list[str] | None = None) -> list[SyncRun]:
    with transaction.atomic():
        runs = sync.create_runs(connection, resources=resources, trigger=trigger)
        if runs:
            first, *rest = [run.pk for run in runs]
            transaction.on_commit(lambda: sync_resource.send(run_id=first, **({"then": rest} if rest else {})))
    return runs


@dramatiq.actor(queue_name="pull", **_OPTIONS)
def pull_resource(*, connection_id: int, resource: str, external_id: str) -> None:
    connection = Connection.objects.select_related("tenant").filter(pk=connection_id).first()
    if connection is None:
        logger.warning("connection %s is gone", connection_id)
        return
    sync.pull_record(connection, resource, external_id)


@dramatiq.actor(queue_name="default", max_retries=0, throws=(FinalError,))
def replay_source_record(*, source_record_id: int) -> None:
    sync.replay_source_record(source_record_id)


@dramatiq.actor(queue_name="default", max_retries=0, throws=(FinalError,))
def open_session(*, connection_id: int) -> None:
    from connectors.registry import connector_for
    from connectors.sessions import SessionManager

    connection = Connection.objects.select_related("tenant").filter(pk=connection_id).first()
    if connection is None:
        return
    SessionManager(connector_for(connection)).login()


@dramatiq.actor(queue_name="writes", **_OPTIONS)
def perform_write(*, write_id: int) -> None:
    """One write to a vendor (connectors.writes); retried on 429/5xx under the same idempotency key."""
    from connectors import writes

    writes.perform_write(write_id)


@dramatiq.actor(queue_name="writes", **_OPTIONS)
def follow_up_write(*, write_id: int, step: int = 0) -> None:
    """What a write does after it succeeded, one step per message (an 835 to look for, then import),
    each next step sent with the delay the connector asks for."""
    from connectors import writes

    delay = writes.follow_up(write_id, step)
    if delay is not None:
        follow_up_write.send_with_options(kwargs={"write_id": write_id, "step": step + 1}, delay=max(1, int(delay * 1000)))
