import pytest

import tests.support.loopback  # noqa: F401  (registers the "loopback" connector)
from connectors.ratelimit import reset_backend
from tests.factories import ConnectionFactory, CredentialFactory, EntitlementFactory
from tests.support.loopback import LoopbackVendor


@pytest.fixture
def vendor():
    with LoopbackVendor() as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    reset_backend()
    yield
    reset_backend()


@pytest.fixture
def loopback_connection(tenant_a, vendor):
    connection = ConnectionFactory(tenant=tenant_a, vendor="loopback", base_url=vendor.url, display_name="Loopback")
    CredentialFactory(connection=connection, username="ops", password="pw-123", totp_secret="JBSWY3DPEHPK3PXP")
    EntitlementFactory(tenant=tenant_a, capability="patients.read")
    return connection
