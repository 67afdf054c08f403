"""The sandbox's own contract: deterministic data, the control paths, validation, paging under change."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from sandbox.build import build_sandbox
from sandbox.wellsky.data import Agency, npi_with_check_digit

ROOT = Path(__file__).resolve().parents[2]


def test_the_same_seed_gives_the_same_agency_and_another_seed_another():
    one, same, other = Agency(seed=5, scale=30), Agency(seed=5, scale=30), Agency(seed=6, scale=30)
    for table in one.tables:
        first = range(min(5, one.table(table).count))
        assert [one.table(table).get(i) | {"updated_at": ""} for i in first] == [same.table(table).get(i) | {"updated_at": ""} for i in first]
    assert one.table("patients").get(0)["last_name"] != other.table("patients").get(0)["last_name"] or \
        one.table("patients").get(0)["date_of_birth"] != other.table("patients").get(0)["date_of_birth"]


def test_the_agency_has_the_shape_of_a_home_care_agency():
    agency = Agency(seed=1, scale=120)
    assert {name: t.live_count() for name, t in agency.tables.items()} == {
        "patients": 120, "practitioners": 30, "locations": 2, "authorizations": 150, "appointments": 900, "encounters": 400,
        "care-plans": 60, "referrals": 12}
    # every reference points at a record that exists, and every visit fits its authorization at the start
    for index in range(agency.sizes["appointments"]):
        visit = agency.table("appointments").get(index)
        for field, table in (("patient_id", "patients"), ("practitioner_id", "practitioners"), ("authorization_id", "authorizations")):
            assert agency.table(table).get(agency.table(table).index_of(visit[field])) is not None
    for index in range(agency.scale):
        auth = agency.table("authorizations").get(index)
        assert agency.units_used(index) <= auth["units_allowed"]
    practitioner = agency.table("practitioners").get(3)
    assert practitioner["npi"] == npi_with_check_digit(practitioner["npi"][:9]) and practitioner["npi"][0] in "12"


def test_npi_check_digit_matches_a_published_example():
    assert npi_with_check_digit("123456789") == "1234567893"  # CMS's worked example


def test_a_hundred_thousand_patients_are_ready_at_once():
    started = time.monotonic()
    with build_sandbox(scale=100_000) as sandbox:
        state = httpx.get(f"{sandbox.url}/_sandbox/state", timeout=10).json()["wellsky"]
    assert time.monotonic() - started < 5
    assert (state["patients"], state["appointments"], state["encounters"]) == (100_000, 750_000, 333_333)


@pytest.fixture(scope="module")
def sandbox():
    with build_sandbox(scale=40, seed=9) as server:
        yield server


@pytest.fixture
def control(sandbox):
    with httpx.Client(base_url=sandbox.url, timeout=10) as client:
        yield client
        client.post("/_sandbox/faults", json={"error_rate": 0, "rate_limit": 0, "latency_ms": 0, "session_ttl_s": 0,
                                              "malformed_rate": 0, "drop_rate": 0, "churn_per_page": 0})


@pytest.mark.parametrize(("body", "message"), [
    ({"error_rate": 2}, "error_rate must be between 0 and 1"),
    ({"rate_limit": -1}, "rate_limit must be a whole number"),
    ({"latency_ms": 1e300}, "latency_ms must be a whole number from 0 to 60000"),
    ({"latency": 5}, "unknown fault 'latency'"),
    ({"drop_rate": "lots"}, "drop_rate must be a number"),
    ([1, 2], "the body must be a JSON object"),
])
def test_bad_fault_settings_are_refused_and_change_nothing(control, body, message):
    before = control.get("/_sandbox/faults").json()
    answer = control.post("/_sandbox/faults", json={"latency_ms": 5, **body} if isinstance(body, dict) else body)
    assert answer.status_code == 400 and message in answer.json()["detail"]
    assert control.get("/_sandbox/faults").json() == before


def test_mutate_changes_what_state_reports(control):
    before = control.get("/_sandbox/state").json()["wellsky"]
    done = control.post("/_sandbox/mutate", json={"vendor": "wellsky", "creates": 2, "changes": 3, "deletes": 1, "resource": "appointments"})
    after = control.get("/_sandbox/state").json()["wellsky"]
    assert after["appointments"] == before["appointments"] + 2 - 1
    assert {k: len(v["appointments"]) for k, v in done.json().items()} == {"created": 2, "changed": 3, "deleted": 1}
    assert control.post("/_sandbox/mutate", json={"vendor": "nobody"}).status_code == 404
    assert control.post("/_sandbox/mutate", json={"vendor": "wellsky", "changes": -1}).status_code == 400
    assert control.post("/_sandbox/mutate", json={"vendor": "wellsky", "resource": "invoices", "changes": 1}).status_code == 400


def test_paging_through_churn_sees_every_live_record(sandbox):
    table = sandbox.vendor("wellsky").agency.table("appointments")
    seen, cursor = {}, ""
    while True:
        page, cursor = table.page(cursor=cursor, limit=25, include_deleted=True)
        for record in page:
            seen[record["id"]] = record
        sandbox.vendor("wellsky").mutate({"creates": 2, "changes": 5, "deletes": 2, "resource": "appointments"})
        if cursor is None:
            break
    live = {table.id_of(i) for i in table.live_indices()}
    kept = {rid for rid, record in seen.items() if not record.get("deleted")}
    assert live - kept <= {rid for rid in live if table.stamps.get(table.index_of(rid), "") > max(r["updated_at"] for r in seen.values())}


def test_the_portal_refuses_calls_without_the_session_cookie(sandbox, control):
    account = next(a for a in control.get("/_sandbox/accounts").json()["wellsky"] if a["username"] == "sunrise.api")
    opened = control.post("/wellsky/sessions", json={"username": account["username"], "password": account["password"]})
    token = opened.json()["token"]
    bare = httpx.get(f"{sandbox.url}/wellsky/patients", headers={"Authorization": f"Bearer {token}"})
    assert (bare.status_code, bare.json()["code"]) == (401, "invalid_session")
    cookie = opened.cookies["WSSID"]
    ok = httpx.get(f"{sandbox.url}/wellsky/patients", headers={"Authorization": f"Bearer {token}", "Cookie": f"WSSID={cookie}"})
    assert ok.status_code == 200
    bad_limit = httpx.get(f"{sandbox.url}/wellsky/patients?limit=9999", headers={"Authorization": f"Bearer {token}",
                                                                                "Cookie": f"WSSID={cookie}"})
    assert (bad_limit.status_code, bad_limit.json()["errors"]) == (400, [{"field": "limit"}])


def test_manage_py_sandbox_serves_until_terminated():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "DRAMATIQ_BROKER_URL", "HUB_PROFILE", "SECRET_KEY"}}
    process = subprocess.Popen([sys.executable, "manage.py", "sandbox", "--port", str(port), "--seed", "4", "--scale", "20",
                                "--error-rate", "0.5"], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert "Sandbox serving /wellsky/" in process.stdout.readline()
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/_sandbox/state", timeout=5).json()["wellsky"]["patients"] == 20
        assert httpx.get(f"{base}/_sandbox/faults", timeout=5).json()["error_rate"] == 0.5
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0


def raw_request(sandbox, head: bytes) -> bytes:
    host, port = sandbox.server_address[:2]
    with socket.create_connection((host, port), timeout=5) as conn:
        conn.sendall(head)
        return conn.makefile("rb").read()  # the server closes after refusing: read to the end


@pytest.mark.parametrize("length", [b"abc", b"-1"])
def test_a_broken_content_length_is_refused_not_hung_on(sandbox, length):
    answer = raw_request(sandbox, b"POST /wellsky/sessions HTTP/1.1\r\nHost: x\r\nContent-Length: " + length + b"\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400") and b"Content-Length must be a whole number" in answer


def test_hostile_parameters_get_answers_and_the_server_stays_up(sandbox, control):
    account = next(a for a in control.get("/_sandbox/accounts").json()["wellsky"] if a["username"] == "sunrise.api")
    opened = control.post("/wellsky/sessions", json={"username": account["username"], "password": account["password"]})
    auth = {"Authorization": f"Bearer {opened.json()['token']}", "Cookie": f"WSSID={opened.cookies['WSSID']}"}
    far_past = control.get("/wellsky/patients", params={"updated_since": "0001-01-01T00:00:00+01:00"}, headers=auth)
    assert far_past.status_code in (200, 400)
    year_one = control.post("/wellsky/appointments", headers=auth, json={
        "patient_id": "PT0000001", "practitioner_id": "PR0000001", "service_code": "PCS",
        "start": "0001-01-01T00:30:00+01:00", "end": "0001-01-01T01:30:00+01:00"})
    assert 400 <= year_one.status_code < 500
    assert control.post("/_sandbox/mutate", json={"vendor": "wellsky", "resource": ["patients"], "changes": 1}).status_code == 400
    assert control.post("/_sandbox/accounts", json={"vendor": "wellsky", "username": "sunrise.sms", "mfa": "pigeon"}).status_code == 400
    assert control.get("/_sandbox/state").status_code == 200  # still serving
