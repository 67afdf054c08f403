"""The eClinicalWorks FHIR connector against the simulated practice's FHIR R4 surface, over loopback:
SMART Backend Services (RS384), every resource read by Bulk $export and diffed, the practice's rate
limit kept in steady state, and a 429 without Retry-After waited out to the next window."""

from __future__ import annotations

import time

import httpx
import pytest

from canonical.models import ChangeEvent, Coverage, Encounter, Location, Patient
from connectors.choices import RunStatus
from connectors.eclinicalworks.fhir import EClinicalWorksFhirConnector, until_next_window
from connectors.models import SyncRun
from connectors.sync import create_runs, run_sync
from sandbox.build import build_sandbox
from tenants.choices import Capability
from tests.factories import ConnectionFactory, CredentialFactory, EntitlementFactory

pytestmark = pytest.mark.django_db
BACKEND = "riverbend-backend-sync"


@pytest.fixture
def practice():
    with build_sandbox(scale=50, seed=3) as server:
        vendor = server.vendor("eclinicalworks")
        vendor.fhir_export_retry_after_s = 0  # the real one says 120; the protocol is the same
        yield server, vendor


@pytest.fixture(autouse=True)
def _quick_waits(monkeypatch):
    monkeypatch.setattr(EClinicalWorksFhirConnector, "sleep", staticmethod(lambda seconds: time.sleep(min(seconds, 3))))


def connect(tenant, server, **options):
    accounts = {a["username"]: a for a in httpx.get(f"{server.url}/_sandbox/accounts").json()["eclinicalworks"]}
    account = accounts[BACKEND]
    connection = ConnectionFactory(tenant=tenant, vendor="eclinicalworks_fhir", base_url=f"{server.url}{account['fhir_base_url']}"
                                   if account["fhir_base_url"].startswith("/") else account["fhir_base_url"], options=options)
    CredentialFactory(connection=connection, username="", password="", totp_secret="", client_id=account["client_id"],
                      private_key_pem=account["private_key_pem"])
    for capability in Capability.values:
        EntitlementFactory(tenant=tenant, connection=None, capability=capability)
    return connection


def sync(connection) -> list[SyncRun]:
    runs = create_runs(connection)
    for run in runs:
        run_sync(run.pk)
    finished = list(SyncRun.objects.filter(pk__in=[r.pk for r in runs]).order_by("pk"))
    assert all(r.status == RunStatus.SUCCEEDED for r in finished), [(r.resource, r.status, r.error) for r in finished]
    return finished


def test_every_resource_arrives_through_bulk_export_and_an_unchanged_poll_changes_nothing(tenant_a, practice):
    server, vendor = practice
    connection = connect(tenant_a, server)

    first = sync(connection)

    state = httpx.get(f"{server.url}/_sandbox/state").json()["eclinicalworks"]
    assert state["fhir_exports"] == 6 and state["fhir_429s"] == 0
    assert Patient.objects.filter(tenant=tenant_a).count() == state["patients"]
    assert Location.objects.filter(tenant=tenant_a).count() == state["facilities"]
    assert Encounter.objects.filter(tenant=tenant_a).count() == state["encounters"]
    assert Coverage.objects.filter(tenant=tenant_a).count() == sum(len(p["coverage"]) for p in vendor.practice.live_records("patients"))
    assert {r.resource: r.failed for r in first} == dict.fromkeys(["locations", "practitioners", "patients", "coverage", "appointments",
                                                                    "encounters"], 0)
    patient = Patient.objects.get(tenant=tenant_a, external_id="PAT0000001")
    source = vendor.practice.get("patients", "PAT0000001")
    assert (patient.family_name, str(patient.birth_date)) == (source["last_name"], source["date_of_birth"])
    events = ChangeEvent.objects.count()

    again = sync(connection)

    assert ChangeEvent.objects.count() == events
    assert all(r.created == r.updated == r.deleted == 0 and r.unchanged == r.fetched for r in again)


def test_changes_and_deletions_at_the_practice_arrive_once(tenant_a, practice):
    server, _ = practice
    connection = connect(tenant_a, server)
    sync(connection)
    last_event = ChangeEvent.objects.order_by("-pk").values_list("pk", flat=True).first()
    mutated = httpx.post(f"{server.url}/_sandbox/mutate", json={"vendor": "eclinicalworks", "resource": "patients", "changes": 3,
                                                                "deletes": 2}).json()

    runs = {r.resource: r for r in sync(connection)}

    assert (runs["patients"].updated, runs["patients"].deleted) == (3, 2), mutated
    for external_id in mutated["deleted"]["patients"]:
        assert Patient.objects.get(tenant=tenant_a, external_id=external_id).deleted_at is not None
    for external_id in mutated["changed"]["patients"]:
        assert Patient.objects.get(tenant=tenant_a, external_id=external_id).version == 2
    patient_events = ChangeEvent.objects.filter(pk__gt=last_event, resource_type="patient")
    assert sorted(patient_events.values_list("action", flat=True)) == ["delete", "delete", "update", "update", "update"]


def test_the_practice_rate_limit_is_kept_without_a_429_in_steady_state(tenant_a, practice):
    server, vendor = practice
    vendor.fhir_rate_limit_per_minute, vendor.fhir_rate_window_s = 10, 2  # 10 requests per 2 s window (the real one: 250 a minute)
    connection = connect(tenant_a, server, bulk_export=False, page_size=10, rate_limit=8, rate_window_s=2)

    runs = sync(connection)

    assert sum(r.pages for r in runs) > 20  # more calls than two windows hold: the limiter had to wait
    assert httpx.get(f"{server.url}/_sandbox/state").json()["eclinicalworks"]["fhir_429s"] == 0
    assert Patient.objects.filter(tenant=tenant_a).count() == 50


def test_a_429_without_retry_after_is_waited_out_to_the_next_window(tenant_a, practice):
    server, vendor = practice
    vendor.fhir_rate_limit_per_minute, vendor.fhir_rate_window_s = 6, 2
    connection = connect(tenant_a, server, bulk_export=False, page_size=25, rate_limit=100, rate_window_s=2)  # we ask too fast

    sync(connection)

    assert httpx.get(f"{server.url}/_sandbox/state").json()["eclinicalworks"]["fhir_429s"] > 0
    assert Patient.objects.filter(tenant=tenant_a).count() == 50


def test_until_next_window_waits_for_the_clock_window_to_turn():
    assert until_next_window(60.0, clock=lambda: 120.0 + 45.5) == pytest.approx(15.5)
    assert until_next_window(2.0, clock=lambda: 10.5) == pytest.approx(1.7)


def test_only_an_rs384_key_pair_logs_in(tenant_a, practice):
    server, _ = practice
    connection = connect(tenant_a, server)
    connection.credential.private_key_pem = "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n"
    connection.credential.save()
    [first, *_] = create_runs(connection)
    with pytest.raises(Exception, match="cannot sign the client assertion"):
        run_sync(first.pk)
