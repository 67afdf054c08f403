"""An eClinicalWorks sandbox (with its clearinghouse) on loopback, and a tenant connected to it."""

from __future__ import annotations

import httpx
import pytest

from connectors.choices import RunStatus
from connectors.eclinicalworks.connector import EClinicalWorksConnector
from connectors.http import RetryPolicy
from connectors.models import SyncRun
from connectors.sync import create_runs, run_sync
from sandbox.build import build_sandbox
from tenants.choices import Capability
from tests.factories import ConnectionFactory, CredentialFactory, EntitlementFactory

SEED = 3
SCALE = 60
# What a sync needs: the read capabilities of the connector's resources (writes are granted per test).
READS = (Capability.PATIENTS_READ, Capability.PRACTITIONERS_READ, Capability.APPOINTMENTS_READ, Capability.ENCOUNTERS_READ)
RESOURCES = ["facilities", "providers", "patients", "coverage", "appointments", "encounters"]


@pytest.fixture
def sandbox():
    with build_sandbox(scale=SCALE, seed=SEED) as server:
        yield server


@pytest.fixture
def control(sandbox):
    with httpx.Client(base_url=sandbox.url, timeout=10) as client:
        yield client


@pytest.fixture
def accounts(control) -> dict[str, dict]:
    return {a["username"]: a for a in control.get("/_sandbox/accounts").json()["eclinicalworks"]}


@pytest.fixture(autouse=True)
def _quick_retries(monkeypatch):
    monkeypatch.setattr(EClinicalWorksConnector, "retry_policy", RetryPolicy(max_attempts=8, backoff_base=0.01, backoff_cap=0.05))
    monkeypatch.setattr(EClinicalWorksConnector, "mfa_poll_s", 0.05)


def connect(tenant, sandbox, account: dict, *, capabilities=READS, options=None):
    """A connection of `tenant` to the sandbox's eClinicalWorks portal with the account's credential,
    and exactly `capabilities` entitled (tenant-wide)."""
    connection = ConnectionFactory(tenant=tenant, vendor="eclinicalworks", base_url=f"{sandbox.url}/ecw",
                                   display_name="eClinicalWorks", options=options or {})
    CredentialFactory(connection=connection, username=account["username"], password=account["password"],
                      totp_secret=account.get("totp_secret", ""), client_id="", client_secret="")
    for capability in capabilities:
        EntitlementFactory(tenant=tenant, connection=None, capability=capability)
    return connection


def entitle(tenant, *capabilities) -> None:
    for capability in capabilities:
        EntitlementFactory(tenant=tenant, connection=None, capability=capability)


@pytest.fixture
def ecw(tenant_a, sandbox, accounts):
    return connect(tenant_a, sandbox, accounts["riverbend.admin"])


def sync_all(connection, resources=None) -> list[SyncRun]:
    """Every resource's run, in the connector's order, in this process (the job's own function)."""
    runs = create_runs(connection, resources=resources)
    for run in runs:
        run_sync(run.pk)
    finished = list(SyncRun.objects.filter(pk__in=[r.pk for r in runs]).order_by("pk"))
    assert all(r.status in (RunStatus.SUCCEEDED, RunStatus.PARTIAL) for r in finished), [(r.resource, r.status, r.error) for r in finished]
    return finished


def vendor(sandbox):
    return sandbox.vendor("eclinicalworks")
