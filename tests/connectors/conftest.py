from __future__ import annotations

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker

import tests.support.loopback  # noqa: F401  (registers the "loopback" connector)
from connectors.ratelimit import reset_backend
from tests.factories import ConnectionFactory, CredentialFactory, EntitlementFactory
from tests.support.loopback import LoopbackVendor


def pytest_configure(config):
    config.addinivalue_line("markers", "vendor(**options): options for the loopback vendor (totp_secret=…, sms=True, password=…)")


@pytest.fixture
def vendor(request):
    marker = request.node.get_closest_marker("vendor")
    with LoopbackVendor(**(marker.kwargs if marker else {})) as server:
        yield server


@pytest.fixture
def broker():
    """The configured broker (StubBroker on the embedded default, Redis in the services run), empty."""
    broker = dramatiq.get_broker()
    broker.flush_all()
    yield broker
    broker.flush_all()


@pytest.fixture
def sent(broker, monkeypatch):
    """Every message enqueued during the test, as (actor name, kwargs), in order; still enqueued."""
    messages: list[tuple[str, dict]] = []
    enqueue = broker.enqueue

    def recording_enqueue(message, *, delay=None):
        if delay is None:  # a retry's re-enqueue is the broker's business, not a new message
            messages.append((message.actor_name, dict(message.kwargs)))
        return enqueue(message, delay=delay)

    monkeypatch.setattr(broker, "enqueue", recording_enqueue)
    return messages


@pytest.fixture
def worker(broker):
    """A real Dramatiq worker in this process with one thread (SQLite takes one writer at a time).

    Tests that use it need `django_db(transaction=True)`: the worker thread has its own connection.
    """
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=100)
    worker.start()
    yield worker
    worker.stop()
    # A Worker registers a middleware on the broker and never takes it off; the next test's worker
    # would otherwise be the second of its kind on the same broker.
    broker.middleware[:] = [m for m in broker.middleware if getattr(m, "worker", None) is not worker]


@pytest.fixture
def drain(broker, worker):
    """drain("sync", …): wait (bounded) until those queues, their delay queues and the worker are idle."""

    def wait(*queues: str, timeout_s: float = 10.0) -> None:
        for queue in queues or ("default",):
            if isinstance(broker, StubBroker):
                broker.join(queue, timeout=int(timeout_s * 1000), fail_fast=False)
            else:
                broker.join(queue, timeout=int(timeout_s * 1000))
        worker.join()

    return wait


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    reset_backend()
    yield
    reset_backend()


TOTP_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"  # 160 bits: pyotp refuses secrets under 112


@pytest.fixture
def loopback_connection(tenant_a, vendor):
    connection = ConnectionFactory(tenant=tenant_a, vendor="loopback", base_url=vendor.url, display_name="Loopback")
    CredentialFactory(connection=connection, username="ops", password="pw-123", totp_secret=TOTP_SECRET)
    EntitlementFactory(tenant=tenant_a, capability="patients.read")
    return connection
