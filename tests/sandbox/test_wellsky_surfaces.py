"""WellSky's OAuth2 surfaces in the sandbox: Personal Care Connect (/v1/) and FHIR R4 Connect (/fhir/)."""

from __future__ import annotations

import importlib
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.operationoutcome import OperationOutcome

from sandbox.build import build_sandbox
from sandbox.server import Sandbox
from sandbox.wellsky import pcc

WRITER = ("sunrise-client", "secret-1")  # account sunrise.api, seed 1
READER = ("lakeside-client", "lakeside-1")  # account lakeside.viewer: no write licence
FHIR_MODULES = {"Patient": "patient", "Practitioner": "practitioner", "Location": "location", "Appointment": "appointment",
                "Encounter": "encounter", "Coverage": "coverage", "CarePlan": "careplan", "ServiceRequest": "servicerequest",
                "Condition": "condition"}


@contextmanager
def running_sandbox() -> Iterator[Sandbox]:
    """build_sandbox(scale=40), served with a short poll interval so that stopping it is quick."""
    sb = build_sandbox(scale=40)
    threading.Thread(target=sb.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    try:
        yield sb
    finally:
        sb.stop()


@pytest.fixture(scope="module")
def shared_sandbox() -> Iterator[Sandbox]:
    """One sandbox for the tests that change nothing in it (no faults, no mutations)."""
    with running_sandbox() as sb:
        yield sb


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    """A sandbox of the test's own, for tests that set faults or change records."""
    with running_sandbox() as sb:
        yield sb


@pytest.fixture
def client(sandbox) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sandbox.url + "/wellsky", timeout=10) as http:
        yield http


@pytest.fixture
def reading_client(shared_sandbox) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=shared_sandbox.url + "/wellsky", timeout=10) as http:
        yield http


def pcc_token(client: httpx.Client, credentials: tuple[str, str] = WRITER) -> dict[str, str]:
    answer = client.post("/oauth/accesstoken", data={"grant_type": "client_credentials"}, auth=credentials)
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def connect_token(client: httpx.Client, credentials: tuple[str, str] = WRITER) -> dict[str, str]:
    answer = client.post("/fhir/oauth/token", data={"grant_type": "client_credentials"}, auth=credentials)
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def state(sandbox) -> dict[str, int]:
    return httpx.get(sandbox.url + "/_sandbox/state").json()["wellsky"]


def follow(client: httpx.Client, url: str, headers: dict[str, str]) -> Iterator[dict]:
    """Every page of a search, following Bundle.link[next]."""
    while url:
        answer = client.get(url, headers=headers)
        assert answer.status_code == 200, answer.text
        bundle = answer.json()
        yield bundle
        url = next((link["url"] for link in bundle.get("link", []) if link["relation"] == "next"), None)


def fhir_class(type_name: str):
    return getattr(importlib.import_module(f"fhir.resources.R4B.{FHIR_MODULES[type_name]}"), type_name)


# --- tokens ---------------------------------------------------------------------------------------------------
def test_token_flows_on_both_surfaces(reading_client):
    # Basic auth and form fields both identify the reading_client.
    by_form = reading_client.post("/oauth/accesstoken", data={"grant_type": "client_credentials", "client_id": WRITER[0],
                                                      "client_secret": WRITER[1]})
    assert by_form.status_code == 200
    assert by_form.json()["token_type"] == "Bearer" and by_form.json()["expires_in"] == 3600
    assert reading_client.get("/v1/patients/", headers=pcc_token(reading_client)).status_code == 200

    for path in ("/oauth/accesstoken", "/fhir/oauth/token"):
        wrong = reading_client.post(path, data={"grant_type": "client_credentials"}, auth=(WRITER[0], "nope"))
        assert (wrong.status_code, wrong.json()["error"]) == (401, "invalid_client")
        unknown = reading_client.post(path, data={"grant_type": "client_credentials", "client_id": "who", "client_secret": "x"})
        assert (unknown.status_code, unknown.json()["error"]) == (401, "invalid_client")
        grant = reading_client.post(path, data={"grant_type": "password"}, auth=WRITER)
        assert (grant.status_code, grant.json()["error"]) == (400, "unsupported_grant_type")

    assert reading_client.get("/v1/patients/").status_code == 401
    assert reading_client.get("/v1/patients/", headers={"Authorization": "Bearer forged"}).status_code == 401
    refused = reading_client.get("/fhir/Patient")
    assert refused.status_code == 401 and refused.headers["content-type"] == "application/fhir+json"
    OperationOutcome.model_validate(refused.json())
    # A PCC token is no Connect token.
    assert reading_client.get("/fhir/Patient", headers=pcc_token(reading_client)).status_code == 401


def test_tokens_expire_with_the_session_ttl_fault(sandbox, client):
    assert httpx.post(sandbox.url + "/_sandbox/faults", json={"session_ttl_s": 1}).status_code == 200
    answer = client.post("/oauth/accesstoken", data={"grant_type": "client_credentials"}, auth=WRITER)
    assert answer.json()["expires_in"] == 1
    headers = {"Authorization": f"Bearer {answer.json()['access_token']}"}
    fhir_headers = connect_token(client)
    assert client.get("/v1/locations/", headers=headers).status_code == 200
    assert client.get("/fhir/Location", headers=fhir_headers).status_code == 200
    time.sleep(1.1)
    expired = client.get("/v1/locations/", headers=headers)
    assert (expired.status_code, expired.json()["code"]) == (401, "token_expired")
    assert client.get("/fhir/Location", headers=fhir_headers).status_code == 401


# --- Personal Care Connect ----------------------------------------------------------------------------------------
def test_pcc_paths_need_their_trailing_slash(reading_client):
    headers = pcc_token(reading_client)
    for path in ("/v1/patients", "/v1/patients/PT0000001", "/v1/encounter/EN0000001/clock_in"):
        answer = reading_client.get(path, headers=headers)
        assert answer.status_code == 404 and "slash" in answer.json()["detail"], path
    assert reading_client.post("/v1/patients/_search", headers=headers).status_code == 404
    one = reading_client.get("/v1/patients/PT0000001/", headers=headers).json()
    assert one["resourceType"] == "Patient" and one["meta"]["tag"] == [{"system": "agency", "code": "sunrise"}]
    clock = reading_client.get("/v1/encounter/EN0000001/clock_in/", headers=headers).json()
    assert clock["time"] == reading_client.get("/v1/encounter/EN0000001/", headers=headers).json()["period"]["start"]


def test_pcc_shift_search_needs_a_person_and_dates(reading_client):
    headers = pcc_token(reading_client)
    start = (date.today() - timedelta(days=20)).strftime("%Y%m%d")
    for params in ({}, {"patient": "PT0000001"}, {"start_date": start, "days": "31"}, {"patient": "PT0000001", "start_date": start},
                   {"patient": "PT0000001", "start_date": "2024-01-01", "days": "7"},
                   {"patient": "PT0000001", "start_date": start, "days": "0"}, {"patient": "PT0000001", "start_date": start, "days": "32"}):
        answer = reading_client.get("/v1/appointment/", params=params, headers=headers)
        assert answer.status_code == 400, params
        assert "start_date" in answer.json()["detail"] or "days" in answer.json()["detail"]
    shifts = reading_client.get("/v1/appointment/", params={"patient": "PT0000001", "start_date": start, "days": "31"}, headers=headers).json()
    assert shifts["resourceType"] == "Bundle" and shifts["total"] == len(shifts["entry"]) > 0
    for entry in shifts["entry"]:
        assert {"reference": "Patient/PT0000001"} in [p["actor"] for p in entry["resource"]["participant"]]
    by_post = reading_client.post("/v1/appointment/_search/", data={"practitioner": "PR0000001", "start_date": start, "days": "31"},
                          headers=headers).json()
    assert by_post["total"] > 0
    for entry in by_post["entry"]:
        assert {"reference": "Practitioner/PR0000001"} in [p["actor"] for p in entry["resource"]["participant"]]


def test_pcc_paging_totals_match_the_sandbox_state(sandbox, client):
    headers = pcc_token(client)

    def walk() -> tuple[int, list[str]]:
        pages = list(follow(client, "/v1/practitioners/?_count=3", headers))
        return pages[0]["total"], [e["resource"]["id"] for page in pages for e in page["entry"]]

    total, ids = walk()
    assert total == len(ids) == len(set(ids)) == state(sandbox)["practitioners"] == 10
    hired = client.get("/v1/practitioners/", params={"is_hired": "true"}, headers=headers).json()["total"]
    gone = client.get("/v1/practitioners/", params={"is_hired": "false"}, headers=headers).json()["total"]
    assert hired + gone == total
    assert client.get("/v1/practitioners/", params={"_count": "101"}, headers=headers).status_code == 400

    # Once records change, are created and deleted, the listing still counts every live record once.
    httpx.post(sandbox.url + "/_sandbox/mutate", json={"vendor": "wellsky", "resource": "practitioners", "creates": 2, "changes": 2,
                                                       "deletes": 1}).raise_for_status()
    total, ids = walk()
    assert total == len(ids) == len(set(ids)) == state(sandbox)["practitioners"] == 11
    by_post = client.post("/v1/practitioners/_search/", data={"_count": "5", "_page": "3"}, headers=headers).json()
    assert [e["resource"]["id"] for e in by_post["entry"]] == ids[10:]


def test_read_only_account_is_refused_writes(client):
    reader = pcc_token(client, READER)
    refused = client.post("/v1/patients/", json={"first_name": "Ann"}, headers=reader)
    assert (refused.status_code, refused.json()["code"]) == (403, "write_not_permitted")
    assert client.post("/v1/patients/_search/", data={"_count": "2"}, headers=reader).status_code == 200
    subscribed = client.post("/v1/subscriptions/", json={"criteria": "patient.created", "endpoint": "http://127.0.0.1:9/hook"},
                             headers=reader)
    assert subscribed.status_code == 201
    assert client.post("/v1/patients/", json={}, headers=pcc_token(client)).status_code == 405  # writers: no PCC writes simulated
    assert client.post("/fhir/Patient", json={}, headers=connect_token(client, READER)).status_code == 405


class _Receiver(ThreadingHTTPServer):
    """A webhook endpoint: records each delivery; answers 500 to the first `failures[path]` posts to a path."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ReceiverHandler)
        self.calls: list[tuple[str, dict, str]] = []
        self.failures: dict[str, int] = {}
        self.lock = threading.Lock()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"

    def wait_for(self, n: int, timeout: float = 5) -> list[tuple[str, dict, str]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.calls) >= n:
                    return list(self.calls)
            time.sleep(0.02)
        raise AssertionError(f"expected {n} deliveries, got {self.calls}")


class _ReceiverHandler(BaseHTTPRequestHandler):
    server: _Receiver

    def log_message(self, *args) -> None:
        return

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        with self.server.lock:
            self.server.calls.append((self.path, body, self.headers.get("X-PCC-Event", "")))
            failing = self.server.failures.get(self.path, 0)
            self.server.failures[self.path] = max(0, failing - 1)
        self.send_response(500 if failing else 204)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def receiver():
    server = _Receiver()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_subscriptions_receive_the_thin_payload(sandbox, client, receiver):
    headers = pcc_token(client)
    vendor = sandbox.vendor("wellsky")
    bad = client.post("/v1/subscriptions/", json={"criteria": "patient.deleted", "endpoint": "ftp://x"}, headers=headers)
    assert bad.status_code == 422
    made = client.post("/v1/subscriptions/", json={"criteria": "patient.created", "endpoint": receiver.url("/patients")}, headers=headers)
    assert made.status_code == 201
    subscription = made.json()["id"]
    client.post("/v1/subscriptions/", json={"criteria": "encounter.clockout.changed", "endpoint": receiver.url("/flaky")}, headers=headers)
    listed = client.get("/v1/subscriptions/", headers=headers).json()
    assert listed["total"] == 2 and client.get("/v1/subscriptions/", headers=pcc_token(client, READER)).json()["total"] == 0

    # A patient created in the vendor: the hook gets {resourceType, id} and nothing more.
    done = vendor.mutate({"creates": 1, "resource": "patients"})
    threads = pcc.notify_mutation(vendor, done)
    assert len(threads) == 1
    path, body, event = receiver.wait_for(1)[0]
    assert (path, body, event) == ("/patients", {"resourceType": "Patient", "id": done["created"]["patients"][0]}, "patient.created")
    fetched = client.get(f"/v1/patients/{body['id']}/", headers=headers)  # ping, then pull
    assert fetched.status_code == 200

    # A failing endpoint is retried after a pause.
    receiver.failures["/flaky"] = 1
    for thread in pcc.notify(vendor, "encounter.clockout.changed", "Encounter", "EN0000003"):
        thread.join(timeout=5)
    flaky = [call for call in receiver.wait_for(3) if call[0] == "/flaky"]
    assert [call[1] for call in flaky] == [{"resourceType": "Encounter", "id": "EN0000003"}] * 2

    assert pcc.notify(vendor, "practitioner.created", "Practitioner", "PR0000001") == []  # nobody subscribed
    assert client.delete(f"/v1/subscriptions/{subscription}/", headers=headers).status_code == 204
    assert client.delete(f"/v1/subscriptions/{subscription}/", headers=headers).status_code == 404
    assert pcc.notify(vendor, "patient.created", "Patient", "PT0000001") == []


# --- FHIR Connect -------------------------------------------------------------------------------------------------
def test_connect_metadata_needs_no_token(reading_client):
    answer = reading_client.get("/fhir/metadata")
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/fhir+json"
    capability = CapabilityStatement.model_validate(answer.json())
    assert {r.type for r in capability.rest[0].resource} >= {"Patient", "Practitioner", "Location", "Appointment", "Encounter",
                                                              "Coverage", "CarePlan"}


def test_connect_paging_follows_next_links(sandbox, client):
    headers = connect_token(client)
    pages = list(follow(client, "/fhir/Patient?_count=7", headers))
    ids = [e["resource"]["id"] for page in pages for e in page["entry"]]
    assert len(pages) == 6 and pages[0]["total"] == len(ids) == len(set(ids)) == state(sandbox)["patients"]
    assert all(len(page["entry"]) <= 7 for page in pages)
    assert client.get("/fhir/Patient?_count=7&_cursor=!!", headers=headers).status_code == 400
    assert client.get("/fhir/Patient?name=x", headers=headers).status_code == 400

    # _lastUpdated finds what changed since a moment, and paging by cursor sees each record once.
    since = max(e["resource"]["meta"]["lastUpdated"] for page in pages for e in page["entry"])
    changed = sandbox.vendor("wellsky").mutate({"changes": 3, "resource": "patients"})["changed"]["patients"]
    recent = list(follow(client, f"/fhir/Patient?_count=2&_lastUpdated=gt{since}", headers))
    assert sorted({e["resource"]["id"] for page in recent for e in page.get("entry", [])}) == sorted(set(changed))
    after = [e["resource"]["id"] for page in follow(client, "/fhir/Patient?_count=9", headers) for e in page["entry"]]
    assert sorted(after) == sorted(ids)
    coverage = list(follow(client, "/fhir/Coverage?patient=Patient/PT0000001", headers))
    assert all(e["resource"]["beneficiary"]["reference"] == "Patient/PT0000001" for e in coverage[0]["entry"])


@pytest.mark.parametrize("type_name", list(FHIR_MODULES))
def test_connect_resources_are_valid_fhir_r4(reading_client, type_name):
    headers = connect_token(reading_client)
    model = fhir_class(type_name)
    count = 0
    for bundle in follow(reading_client, f"/fhir/{type_name}?_count=200", headers):
        Bundle.model_validate(bundle)
        for entry in bundle.get("entry", []):
            model.model_validate(entry["resource"])
            count += 1
    assert count > 0
    one = reading_client.get(f"/fhir/{type_name}/{entry['resource']['id']}", headers=headers)
    assert one.status_code == 200 and one.headers["content-type"] == "application/fhir+json"
    assert model.model_validate(one.json()).id == entry["resource"]["id"]
    missing = reading_client.get(f"/fhir/{type_name}/XX0000000", headers=headers)
    assert missing.status_code == 404
    OperationOutcome.model_validate(missing.json())
