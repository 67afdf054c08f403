"""A WellSky sandbox on loopback and a tenant connected to it (portal surface, TOTP login)."""

from __future__ import annotations

import httpx
import pytest

from connectors.choices import RunStatus
from connectors.http import RetryPolicy
from connectors.models import SyncRun
from connectors.sync import create_runs, run_sync
from connectors.wellsky.connector import WellSkyConnector
from sandbox.build import build_sandbox
from tenants.choices import Capability, MappingCategory
from tests.factories import CodeMappingFactory, ConnectionFactory, CredentialFactory, EntitlementFactory

SERVICE_MAPPINGS = {"PCS": "T1019", "HHA": "S9122", "SN": "G0299", "PT": "G0151"}  # RESP stays unmapped on purpose


@pytest.fixture
def sandbox():
    with build_sandbox(scale=40, seed=3) as server:
        yield server


@pytest.fixture
def control(sandbox):
    with httpx.Client(base_url=sandbox.url, timeout=10) as client:
        yield client


@pytest.fixture
def accounts(control) -> dict[str, dict]:
    return {a["username"]: a for a in control.get("/_sandbox/accounts").json()["wellsky"]}


@pytest.fixture(autouse=True)
def _quick_retries(monkeypatch):
    monkeypatch.setattr(WellSkyConnector, "retry_policy", RetryPolicy(max_attempts=8, backoff_base=0.01, backoff_cap=0.05))
    monkeypatch.setattr(WellSkyConnector, "mfa_poll_s", 0.05)


# vendor key -> (path below the sandbox, display name, credential fields it uses)
SURFACES = {
    "wellsky": ("/wellsky", "WellSky Sunrise", ("username", "password", "totp_secret")),
    "wellsky_pcc": ("/wellsky", "WellSky PCC Sunrise", ("client_id", "client_secret")),
    "wellsky_connect": ("/wellsky/fhir", "WellSky Connect", ("client_id", "client_secret")),
}


def connect(tenant, sandbox, account: dict, *, entitled=True, options=None, vendor="wellsky"):
    """A connection of `tenant` to one WellSky surface of the sandbox, with the account's credential,
    every entitlement (tenant-wide) and the service-code mappings."""
    path, name, fields = SURFACES[vendor]
    connection = ConnectionFactory(tenant=tenant, vendor=vendor, base_url=f"{sandbox.url}{path}", display_name=name, options=options or {})
    secrets = dict.fromkeys(("username", "password", "totp_secret", "client_id", "client_secret"), "")
    CredentialFactory(connection=connection, **{**secrets, **{f: account[f] for f in fields}})
    if entitled:
        for capability in Capability.values:
            EntitlementFactory(tenant=tenant, connection=None, capability=capability)
    for code, target in SERVICE_MAPPINGS.items():
        CodeMappingFactory(tenant=tenant, category=MappingCategory.SERVICE_CODE, source_system="wellsky", source_code=code,
                           target_system="HCPCS", target_code=target)
    return connection


@pytest.fixture
def wellsky(tenant_a, sandbox, accounts):
    return connect(tenant_a, sandbox, accounts["sunrise.admin"])


def sync_all(connection, resources=None) -> list[SyncRun]:
    """Every resource's run, in the connector's order, in this process (the job's own function)."""
    runs = create_runs(connection, resources=resources)
    for run in runs:
        run_sync(run.pk)
    finished = list(SyncRun.objects.filter(pk__in=[r.pk for r in runs]).order_by("pk"))
    assert all(r.status in (RunStatus.SUCCEEDED, RunStatus.PARTIAL) for r in finished), [(r.resource, r.status, r.error) for r in finished]
    return finished
