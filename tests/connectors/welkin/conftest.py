"""A Welkin sandbox on loopback and a tenant connected to it (v8 API client)."""

from __future__ import annotations

import json

import httpx
import pytest

import connectors.welkin  # noqa: F401  (registers the "welkin" connector)
from connectors.choices import RunStatus
from connectors.http import RetryPolicy
from connectors.models import SyncRun
from connectors.sync import create_runs, run_sync
from connectors.welkin.connector import WelkinConnector
from sandbox.server import Sandbox
from sandbox.welkin import Welkin
from tenants.choices import Capability
from tests.factories import ConnectionFactory, CredentialFactory, EntitlementFactory


@pytest.fixture
def sandbox():
    with Sandbox([Welkin(seed=3, scale=24, retry_base_s=0.05)], port=0, seed=3) as server:
        yield server


@pytest.fixture
def control(sandbox):
    with httpx.Client(base_url=sandbox.url, timeout=10) as client:
        yield client


@pytest.fixture
def accounts(control) -> dict[str, dict]:
    return {a["username"]: a for a in control.get("/_sandbox/accounts").json()["welkin"]}


@pytest.fixture(autouse=True)
def _quick_retries(monkeypatch):
    monkeypatch.setattr(WelkinConnector, "retry_policy", RetryPolicy(max_attempts=8, backoff_base=0.01, backoff_cap=0.05))


def connect(tenant, sandbox, account: dict, *, options=None, secret: str | None = None, webhook_secret: str | None = None,
            entitled=True):
    """A connection of `tenant` to the account's Welkin tenant, with its API client, webhook secret and every entitlement."""
    connection = ConnectionFactory(
        tenant=tenant, vendor="welkin", base_url=f"{sandbox.url}/welkin", display_name=f"Welkin {account['username']}",
        options={"tenant_name": account["username"], "instance_name": account["instance"], **(options or {})},
    )
    CredentialFactory(connection=connection, username="", password="", totp_secret="", client_id=account["client_id"],
                      client_secret=account["client_secret"] if secret is None else secret,
                      extra=json.dumps({"webhook_secret": account["webhook_secret"] if webhook_secret is None else webhook_secret}))
    if entitled:
        for capability in Capability.values:
            EntitlementFactory(tenant=tenant, connection=None, capability=capability)
    return connection


@pytest.fixture
def welkin(tenant_a, sandbox, accounts):
    return connect(tenant_a, sandbox, accounts["northwind"])


def sync_all(connection, resources=None, *, partial=False) -> list[SyncRun]:
    """Every resource's run, in the connector's order, in this process (the job's own function)."""
    runs = create_runs(connection, resources=resources)
    for run in runs:
        run_sync(run.pk)
    finished = list(SyncRun.objects.filter(pk__in=[r.pk for r in runs]).order_by("pk"))
    allowed = (RunStatus.SUCCEEDED, RunStatus.PARTIAL) if partial else (RunStatus.SUCCEEDED,)
    assert all(r.status in allowed for r in finished), [(r.resource, r.status, r.error) for r in finished]
    return finished
