"""Periodic syncs: one APScheduler job per connection with a cron schedule, kept in step with the table."""

from __future__ import annotations

import logging

from hub.cron import cron_trigger
from tenants.models import Connection

logger = logging.getLogger(__name__)


def _enqueue(connection_id: int) -> None:
    from connectors.tasks import sync_connection

    sync_connection.send(connection_id=connection_id, trigger="schedule")


def refresh_jobs(scheduler) -> dict[str, str]:
    """Add, change and remove jobs so they match enabled connections' schedules. Returns job id → schedule."""
    wanted: dict[str, tuple[int, str, str]] = {}
    for connection in Connection.objects.filter(enabled=True, tenant__active=True).exclude(sync_schedule="").select_related("tenant"):
        wanted[f"sync-{connection.pk}"] = (connection.pk, connection.sync_schedule, connection.tenant.timezone)
    for job in scheduler.get_jobs():
        if job.id.startswith("sync-") and job.id not in wanted:
            scheduler.remove_job(job.id)
    for job_id, (pk, schedule, tz) in wanted.items():
        existing = scheduler.get_job(job_id)
        if existing is not None and getattr(existing, "name", "") == f"{schedule} {tz}":
            continue
        if existing is not None:
            # Remove, then add: a scheduler that has not started yet keeps both under one id
            # instead of replacing (APScheduler 3 queues pending jobs without deduplicating).
            scheduler.remove_job(job_id)
        scheduler.add_job(_enqueue, cron_trigger(schedule, tz), args=[pk], id=job_id,
                          name=f"{schedule} {tz}", replace_existing=True, max_instances=1, coalesce=True)
    return {job_id: schedule for job_id, (_, schedule, _) in wanted.items()}
