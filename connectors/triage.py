"""The failed-job queue: recording final failures, and the staff actions on them."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from connectors.choices import FailedJobStatus, RunStatus
from connectors.models import FailedJob, SyncRun
from connectors.scrub import scrub, signature
from tenants.audit import record_audit
from tenants.choices import AuditAction
from tenants.models import Connection


def _context(args: list, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Find the run, connection and source record the job was about, from its id arguments."""
    context: dict[str, Any] = {}
    if kwargs.get("run_id"):
        run = SyncRun.objects.filter(pk=kwargs["run_id"]).select_related("connection").first()
        if run:
            context.update(sync_run=run, connection=run.connection, tenant_id=run.tenant_id)
    connection_id = kwargs.get("connection_id")
    if connection_id and "connection" not in context:
        connection = Connection.objects.filter(pk=connection_id).first()
        if connection:
            context.update(connection=connection, tenant_id=connection.tenant_id)
    if kwargs.get("source_record_id"):
        context["source_record_id"] = kwargs["source_record_id"]
    return context


def record_failed_job(
    *, actor: str, args: list, kwargs: dict[str, Any], exception: BaseException, traceback_text: str = "", attempts: int = 1,
) -> FailedJob:
    """One row per final failure. Our actors take keyword ids (run_id, connection_id, …), which is
    how the row finds its tenant, connection, run and source record."""
    exception_type = f"{type(exception).__module__}.{type(exception).__qualname__}"
    message = scrub(str(exception))
    context = _context(args, kwargs)
    run = context.get("sync_run")
    if run is not None:
        # A run whose job gave up is over: without this it would read "running" for ever (and
        # `manage.py sync --wait` would wait for it until its timeout).
        SyncRun.objects.filter(pk=run.pk, status__in=(RunStatus.QUEUED, RunStatus.RUNNING)).update(
            status=RunStatus.FAILED, finished_at=timezone.now(), error=message,
        )
    return FailedJob.objects.create(
        actor=actor,
        arguments={"args": args, "kwargs": kwargs},
        exception_type=exception_type,
        message=message,
        signature=signature(actor, exception_type, message),
        traceback=scrub(traceback_text, 20000),
        attempts=attempts,
        **context,
    )


def retry_failed_jobs(queryset, *, user) -> int:
    """Re-enqueue each open job with its original arguments (after commit) and mark it retried."""
    import dramatiq

    count = 0
    with transaction.atomic():
        for job in _locked_open(queryset):
            actor = dramatiq.get_broker().get_actor(job.actor)
            args = job.arguments.get("args", [])
            kwargs = job.arguments.get("kwargs", {})
            transaction.on_commit(lambda actor=actor, args=args, kwargs=kwargs: actor.send(*args, **kwargs))
            FailedJob.objects.filter(pk=job.pk).update(status=FailedJobStatus.RETRIED, resolved_by=user, resolution="re-enqueued")
            _audit(job, user, "retry")
            count += 1
    return count


def dismiss_failed_jobs(queryset, *, user, reason: str) -> int:
    if not reason.strip():
        raise ValueError("A reason is required to dismiss a failed job.")
    count = 0
    with transaction.atomic():
        for job in _locked_open(queryset):
            FailedJob.objects.filter(pk=job.pk).update(status=FailedJobStatus.DISMISSED, resolved_by=user, resolution=reason[:300])
            _audit(job, user, "dismiss", reason=reason[:300])
            count += 1
    return count


def _locked_open(queryset):
    """The open jobs among `queryset`, locked. Locked by id in a plain query: the admin's queryset
    outer-joins nullable foreign keys, which PostgreSQL cannot lock FOR UPDATE."""
    ids = list(queryset.values_list("pk", flat=True))
    return FailedJob.objects.select_for_update().filter(pk__in=ids, status=FailedJobStatus.OPEN).order_by("pk")


def _audit(job: FailedJob, user, action: str, **extra) -> None:
    record_audit(
        AuditAction.UPDATE, object_type="connectors.failedjob", object_id=job.pk, tenant=job.tenant, user=user,
        detail={"action": action, "actor": job.actor, **extra},
    )

