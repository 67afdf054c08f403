"""The generic FHIR R4 connector against three servers: the sandbox's eClinicalWorks FHIR surface
(SMART Backend Services, Bulk $export first load), the sandbox's WellSky Connect (client
credentials, no Bulk Data: searched, then incremental by _lastUpdated), and fhirsnake, a FHIR server
from PyPI we did not write (open, search without parameters)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import fhirsnake
import httpx
import pytest

from canonical.models import Appointment, Location, Patient, Practitioner
from connectors.choices import RunStatus
from connectors.fhir.connector import FhirConnector
from connectors.models import SyncRun
from connectors.sync import create_runs, run_sync
from sandbox.build import build_sandbox
from tenants.choices import Capability
from tests.factories import ConnectionFactory, CredentialFactory, EntitlementFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _quick_waits(monkeypatch):
    monkeypatch.setattr(FhirConnector, "sleep", staticmethod(lambda seconds: time.sleep(min(seconds, 0.2))))


def connect(tenant, base_url: str, *, credential: dict | None = None, **options):
    connection = ConnectionFactory(tenant=tenant, vendor="fhir", base_url=base_url, options=options)
    CredentialFactory(connection=connection, **{"username": "", "password": "", "totp_secret": "", "client_id": "", "client_secret": "",
                                                **(credential or {})})
    for capability in Capability.values:
        EntitlementFactory(tenant=tenant, connection=None, capability=capability)
    return connection


def sync(connection, resources=None) -> dict[str, SyncRun]:
    runs = create_runs(connection, resources=resources)
    for run in runs:
        run_sync(run.pk)
    finished = {r.resource: r for r in SyncRun.objects.filter(pk__in=[r.pk for r in runs])}
    assert all(r.status == RunStatus.SUCCEEDED for r in finished.values()), [(r.resource, r.status, r.error) for r in finished.values()]
    return finished


@pytest.fixture
def sandbox():
    with build_sandbox(scale=40, seed=5) as server:
        server.vendor("eclinicalworks").fhir_export_retry_after_s = 0
        yield server


def test_smart_backend_services_and_a_bulk_first_load_then_incremental_searches(tenant_a, sandbox):
    accounts = {a["username"]: a for a in httpx.get(f"{sandbox.url}/_sandbox/accounts").json()["eclinicalworks"]}
    backend = accounts["riverbend-backend-bulk"]
    base = backend["fhir_base_url"] if backend["fhir_base_url"].startswith("http") else f"{sandbox.url}{backend['fhir_base_url']}"
    connection = connect(tenant_a, base, credential={"client_id": backend["client_id"], "private_key_pem": backend["private_key_pem"]},
                         auth="smart_backend", group_id="all-patients")

    first = sync(connection, ["locations", "practitioners", "patients", "appointments"])

    state = httpx.get(f"{sandbox.url}/_sandbox/state").json()["eclinicalworks"]
    assert state["fhir_exports"] == 4  # one per type: the first load is bulk
    assert Patient.objects.filter(tenant=tenant_a).count() == state["patients"] == first["patients"].created
    assert Appointment.objects.filter(tenant=tenant_a).count() == state["appointments"]
    assert Location.objects.filter(tenant=tenant_a).count() == state["facilities"]
    assert Practitioner.objects.filter(tenant=tenant_a).exclude(npi="").count() == state["providers"]

    httpx.post(f"{sandbox.url}/_sandbox/mutate", json={"vendor": "eclinicalworks", "resource": "patients", "changes": 2})
    again = sync(connection, ["patients"])

    assert httpx.get(f"{sandbox.url}/_sandbox/state").json()["eclinicalworks"]["fhir_exports"] == 4  # searched, not exported
    assert again["patients"].updated == 2 and again["patients"].fetched < state["patients"]


def test_client_credentials_on_a_server_without_bulk_data_searches_then_follows_last_updated(tenant_a, sandbox):
    client = {a["username"]: a for a in httpx.get(f"{sandbox.url}/_sandbox/accounts").json()["wellsky"]}["sunrise.api"]
    connection = connect(tenant_a, f"{sandbox.url}/wellsky/fhir", credential={"client_id": client["client_id"],
                                                                              "client_secret": client["client_secret"]},
                         token_url=f"{sandbox.url}/wellsky/fhir/oauth/token", scope="")

    first = sync(connection, ["locations", "practitioners", "patients"])

    live = httpx.get(f"{sandbox.url}/_sandbox/state").json()["wellsky"]
    assert first["patients"].created == Patient.objects.filter(tenant=tenant_a).count() == live["patients"]
    again = sync(connection, ["patients"])
    assert again["patients"].fetched == 0  # nothing changed since the high water


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def snake(tmp_path):
    """fhirsnake serving a folder of resources written here, in a process of its own."""
    folder = tmp_path / "resources"
    for fhir_type, resources in RESOURCES.items():
        (folder / fhir_type).mkdir(parents=True)
        for resource in resources:
            (folder / fhir_type / f"{resource['id']}.json").write_text(json.dumps(resource))
    port = _free_port()
    package = Path(fhirsnake.__file__).parent
    process = subprocess.Popen([sys.executable, "-m", "uvicorn", "main:app", "--port", str(port), "--log-level", "warning"],  # noqa: S603
                               cwd=tmp_path, env={"PYTHONPATH": str(package), "PATH": "/usr/bin:/bin"},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{url}/", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and process.poll() is None, "fhirsnake did not start"
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


RESOURCES = {
    "Patient": [
        {"resourceType": "Patient", "id": "snake-1", "meta": {"lastUpdated": "2026-11-01T10:00:00Z"},
         "identifier": [{"system": "urn:oid:2.16.840.1.113883.3.0", "value": "MRN-1"}], "name": [{"family": "Okafor", "given": ["Ada"]}],
         "gender": "female", "birthDate": "1961-04-02"},
        {"resourceType": "Patient", "id": "snake-2", "meta": {"lastUpdated": "2026-11-02T10:00:00Z"},
         "identifier": [{"system": "urn:oid:2.16.840.1.113883.3.0", "value": "MRN-2"}], "name": [{"family": "Lindqvist", "given": ["Bo"]}],
         "gender": "male", "birthDate": "1954-12-30"},
    ],
    "Practitioner": [
        {"resourceType": "Practitioner", "id": "snake-dr", "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": "1234567893"}],
         "name": [{"family": "Welby", "given": ["Marcus"]}]},
    ],
}


def test_a_fhir_server_we_did_not_write(tenant_a, snake):
    connection = connect(tenant_a, snake, auth="none")

    runs = sync(connection, ["practitioners", "patients"])

    assert runs["patients"].created == 2 and runs["practitioners"].created == 1
    ada = Patient.objects.get(tenant=tenant_a, external_id="snake-1")
    assert (ada.family_name, ada.given_names, str(ada.birth_date), ada.sex) == ("Okafor", ["Ada"], "1961-04-02", "female")
    assert Practitioner.objects.get(tenant=tenant_a, external_id="snake-dr").npi == "1234567893"
    again = sync(connection, ["patients"])  # fhirsnake ignores _lastUpdated: everything again, nothing changed
    assert (again["patients"].created, again["patients"].updated) == (0, 0)
