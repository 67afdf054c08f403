"""WellSky through a real `manage.py rundramatiq` worker on Redis and PostgreSQL (services run):
a chained full sync under faults, and an authorization-checked booking as a job."""

from __future__ import annotations

import pytest

from connectors.choices import RunStatus, WriteStatus
from connectors.models import SyncRun, VendorWrite
from connectors.tasks import enqueue_runs, perform_write
from connectors.writes import request_write
from tests.connectors.test_worker_process import broker_url, workers  # noqa: F401  (fixtures)
from tests.connectors.wellsky.conftest import connect
from tests.connectors.wellsky.expect import differences
from tests.connectors.wellsky.test_wellsky_writes import bookable, booking
from tests.support.processes import wait_for

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


def test_a_worker_syncs_wellsky_in_order_under_faults_and_books(tenant_a, sandbox, control, accounts, workers):  # noqa: F811
    connection = connect(tenant_a, sandbox, accounts["sunrise.admin"], options={"page_size": 50})
    control.post("/_sandbox/faults", json={"error_rate": 0.1, "drop_rate": 0.05, "latency_ms": 5})
    workers("wellsky", threads=2)

    runs = enqueue_runs(connection)
    ids = [run.pk for run in runs]
    wait_for(lambda: not SyncRun.objects.filter(pk__in=ids, finished_at__isnull=True).exists(), timeout=180,
             what="the chained runs to finish", interval=0.2)

    finished = list(SyncRun.objects.filter(pk__in=ids).order_by("pk"))
    assert [(r.resource, r.status) for r in finished] == [(r.resource, RunStatus.SUCCEEDED) for r in runs]
    assert all(earlier.finished_at <= later.started_at for earlier, later in zip(finished, finished[1:], strict=False))
    assert differences(sandbox, connection) == []

    authorization, practitioner, start = bookable(connection)
    write, _ = request_write(connection, "book_appointment", booking(authorization, practitioner, start), idempotency_key="worker-1")
    perform_write.send(write_id=write.pk)
    done = wait_for(lambda: VendorWrite.objects.exclude(status=WriteStatus.PENDING).filter(pk=write.pk).first(), timeout=60,
                    what="the booking job")
    assert (done.status, done.error) == (WriteStatus.SUCCEEDED, "")
