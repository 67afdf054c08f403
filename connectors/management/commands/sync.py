import time
import uuid

import dramatiq
from django.core.management.base import BaseCommand, CommandError
from dramatiq.errors import QueueJoinTimeout

from connectors.choices import RunStatus
from connectors.models import SyncRun
from connectors.tasks import enqueue_runs
from hub.worker import ensure_inprocess_worker
from tenants.models import Connection, Tenant

FINISHED = {RunStatus.SUCCEEDED, RunStatus.PARTIAL, RunStatus.FAILED}


class Command(BaseCommand):
    help = "Sync a tenant's connections now (all, one, or one resource). With --wait, report the runs' counts."

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True, help="tenant slug")
        parser.add_argument("--connection", help="connection public id (default: every enabled connection)")
        parser.add_argument("--resource", help="one resource name, e.g. patients")
        parser.add_argument("--wait", action="store_true", help="return when the runs end and print their counts")
        parser.add_argument("--timeout", type=float, default=3600, help="seconds to wait at most with --wait")

    def handle(self, tenant, connection, resource, wait, timeout, **options):
        tenant_obj = Tenant.objects.filter(slug=tenant).first()
        if tenant_obj is None:
            raise CommandError(f"No tenant with slug '{tenant}'.")
        connections = Connection.objects.filter(tenant=tenant_obj, enabled=True).select_related("tenant")
        if connection:
            try:
                uuid.UUID(connection)
            except ValueError:
                raise CommandError(f"--connection takes a connection's public id (a UUID), not {connection!r}.") from None
            connections = connections.filter(public_id=connection)
            if not connections.exists():
                raise CommandError(f"Tenant '{tenant}' has no enabled connection {connection}.")
        inprocess = ensure_inprocess_worker()
        runs = []
        for conn in connections:
            try:
                runs.extend(enqueue_runs(conn, resources=[resource] if resource else None))
            except KeyError as exc:
                raise CommandError(str(exc).strip('"')) from None
        self.stdout.write(f"Queued {len(runs)} run(s).")
        if not wait:
            return
        deadline = time.monotonic() + timeout
        ids = [r.pk for r in runs]
        while time.monotonic() < deadline:
            if SyncRun.objects.filter(pk__in=ids).exclude(status__in=FINISHED).count() == 0:
                break
            time.sleep(0.5)
        if inprocess is not None:  # embedded: the identity job that follows a patient run runs in this process too
            _drain(("sync", "identity"), deadline)
        failed = False
        for run in SyncRun.objects.filter(pk__in=ids).select_related("connection").order_by("pk"):
            seconds = run.duration.total_seconds() if run.duration else 0.0
            self.stdout.write(
                f"{run.connection.display_name} {run.resource}: {run.status} — fetched {run.fetched}, created {run.created}, "
                f"updated {run.updated}, unchanged {run.unchanged}, deleted {run.deleted}, failed {run.failed} in {seconds:.1f}s"
                + (f" — {run.error}" if run.error else "")
            )
            failed |= run.status not in (RunStatus.SUCCEEDED, RunStatus.PARTIAL)
        if failed:
            raise CommandError("Some runs did not succeed (see above; failed jobs are in the admin's triage).")


def _drain(queues: tuple[str, ...], deadline: float) -> None:
    """Wait (until the deadline) for the in-process worker's queues to empty and their messages to finish."""
    broker = dramatiq.get_broker()
    for queue in queues:
        if queue in broker.queues:
            try:
                broker.join(queue, timeout=max(1, int((deadline - time.monotonic()) * 1000)), fail_fast=False)
            except QueueJoinTimeout:
                return
