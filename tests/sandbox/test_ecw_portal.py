"""The simulated eClinicalWorks portal: its data, logins, lists, bookings, and the clearinghouse path."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from formats.x12.claim837 import write_837p
from formats.x12.era835 import parse_835
from formats.x12.model import Address, Claim, ClaimLine, Party, Payer, Receiver, Submitter, Subscriber
from sandbox.clearinghouse.vendor import CLEARINGHOUSE_ID
from sandbox.ecw.data import (
    AMENDMENT_REASONS,
    DAY_NAMES,
    PSYCHOTHERAPY_MINUTES,
    VISIT_TYPES,
    Practice,
    gad7_severity,
    minutes_of,
    phq9_severity,
)
from sandbox.ecw.errors import ERRORS
from sandbox.server import Sandbox
from sandbox.wellsky.data import npi_with_check_digit
from tests.sandbox.ecw_helpers import (
    SCALE,
    account,
    bearer,
    booking,
    free_slot,
    local,
    login,
    next_weekday,
    outbox,
    patient_of_kind,
    running_sandbox,
    state,
    vendor_of,
    walk,
)

RESOURCES = ("facilities", "providers", "patients", "appointments", "encounters")
TODAY = date(2026, 3, 4)


@pytest.fixture(scope="module")
def shared_sandbox() -> Iterator[Sandbox]:
    """One sandbox for the tests that change nothing in it."""
    with running_sandbox() as sb:
        yield sb


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    """A sandbox of the test's own, for tests that change records or faults."""
    with running_sandbox() as sb:
        yield sb


@pytest.fixture
def client(sandbox) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sandbox.url + "/ecw", timeout=10) as http:
        yield http


@pytest.fixture
def reader(shared_sandbox) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=shared_sandbox.url + "/ecw", timeout=10) as http:
        yield http


@pytest.fixture(scope="module")
def practice() -> Practice:
    return Practice(seed=3, scale=300, today=TODAY)


def refused(answer: httpx.Response, code: int) -> dict:
    """Assert a structured refusal: the numeric code, its rule, its HTTP status; the body."""
    rule, status = ERRORS[code]
    body = answer.json()
    assert (answer.status_code, body["code"], body["rule"]) == (status, code, rule), answer.text
    assert isinstance(body["detail"], str) and isinstance(body["details"], dict)
    return body


# --- the data ----------------------------------------------------------------------------------------------
def test_the_same_seed_gives_the_same_practice_and_another_seed_another():
    one, same, other = (Practice(seed=s, scale=60, today=TODAY) for s in (5, 5, 6))
    for resource in RESOURCES:
        indices = range(min(6, one.table(resource).count))
        assert [one.record(resource, i) for i in indices] == [same.record(resource, i) for i in indices]
    assert [one.record("patients", i)["last_name"] for i in range(6)] != [other.record("patients", i)["last_name"] for i in range(6)]


def test_sizes_grow_linearly_with_the_scale():
    for scale in (400, 4000, 8000):
        sizes = Practice(seed=1, scale=scale, today=TODAY).sizes
        assert (sizes["patients"], sizes["appointments"], sizes["facilities"]) == (scale, 3 * scale, max(2, scale // 2000))
        assert abs(sizes["encounters"] - 1.5 * scale) <= 0.02 * scale
        assert scale // 90 <= sizes["providers"] <= scale // 45 + 4


def test_every_generated_appointment_fits_its_providers_template_and_none_overlap(practice):
    held: set[tuple[str, str]] = set()
    facilities_of: dict[str, set[str]] = {}
    for appointment in practice.live_records("appointments"):
        provider = practice.get("providers", appointment["provider_id"])
        start = datetime.fromisoformat(appointment["start"])
        minute = start.hour * 60 + start.minute
        block = next(b for b in provider["templates"] if b["weekday"] == start.isoweekday() and b["facility_id"] == appointment["facility_id"]
                     and minutes_of(b["start"]) <= minute < minutes_of(b["end"]))
        assert (minute - minutes_of(block["start"])) % block["slot_minutes"] == 0
        assert appointment["duration_minutes"] == block["slot_minutes"] and appointment["visit_type"] in block["visit_types"]
        assert (appointment["provider_id"], appointment["start"]) not in held
        held.add((appointment["provider_id"], appointment["start"]))
        assert TODAY - timedelta(days=14) <= start.date() < TODAY + timedelta(days=14)
        past = start.date() < TODAY
        assert appointment["status"] in (("checked_out", "no_show", "cancelled") if past else ("scheduled", "confirmed"))
        assert (appointment["encounter_id"] is not None) == (appointment["status"] == "checked_out")
        assert appointment["telehealth"] == (appointment["healow"] is not None) == (appointment["visit_mode"] == "telehealth")
        facilities_of.setdefault(appointment["patient_id"], set()).add(appointment["facility_id"])
        if appointment["encounter_id"]:
            encounter = practice.get("encounters", appointment["encounter_id"])
            assert (encounter["appointment_id"], encounter["patient_id"], encounter["start"]) == (
                appointment["id"], appointment["patient_id"], appointment["start"])
    patient = practice.record("patients", 0)
    assert set(patient["facility_ids"]) == facilities_of[patient["id"]] and patient["home_facility_id"] in patient["facility_ids"]
    provider = practice.record("providers", 0)
    assert {b["day"] for b in provider["templates"]} <= set(DAY_NAMES[:5])
    assert len({b["facility_id"] for p in practice.live_records("providers") for b in p["templates"]}) == practice.sizes["facilities"]


def test_providers_have_valid_npis_and_both_editions(practice):
    providers = list(practice.live_records("providers"))
    for provider in providers:
        assert provider["npi"] == npi_with_check_digit(provider["npi"][:9]) and provider["npi"][0] == "1"
    assert len({p["npi"] for p in providers}) == len(providers)
    assert {p["edition"] for p in providers} == {"primary_care", "behavioral_health"}
    facility = practice.record("facilities", 0)
    assert facility["npi"] == npi_with_check_digit(facility["npi"][:9])


def test_encounters_differ_by_edition_and_notes_have_sign_lock_state(practice):
    encounters = list(practice.live_records("encounters"))
    by_edition = Counter(e["edition"] for e in encounters)
    assert set(by_edition) == {"primary_care", "behavioral_health"}
    for encounter in encounters:
        assert encounter["diagnoses"] and all(d["system"] == "ICD-10-CM" for d in encounter["diagnoses"])
        if encounter["edition"] == "primary_care":
            assert {"chief_complaint", "vitals", "procedures"} <= encounter.keys()
            assert not {"session_minutes", "assessments", "psychotherapy_cpt"} & encounter.keys()
            assert (encounter["vitals"] is None) == encounter["telehealth"]
            assert all(Decimal(p["charge"]) > 0 and len(p["code"]) == 5 for p in encounter["procedures"])
        else:
            assert not {"chief_complaint", "vitals", "procedures"} & encounter.keys()
            low, high = PSYCHOTHERAPY_MINUTES[encounter["psychotherapy_cpt"]]
            assert low <= encounter["session_minutes"] <= high
            phq9, gad7 = encounter["assessments"]["phq9"], encounter["assessments"]["gad7"]
            assert 0 <= phq9["score"] <= 27 and phq9["severity"] == phq9_severity(phq9["score"])
            assert 0 <= gad7["score"] <= 21 and gad7["severity"] == gad7_severity(gad7["score"])
            assert encounter["risk_assessment"]["suicide_risk"] in ("none", "low", "moderate", "high")
        note = encounter["progress_note"]
        assert note["status"] in ("draft", "signed", "locked")
        assert (note["signed_at"] is None) == (note["status"] == "draft")
        assert (note["locked_at"] is None) == (note["status"] != "locked")
        if note["ai_generated"]:
            assert (note["source"], note["ai_vendor"], note["status"], note["signed_by"]) == ("sunoh_ai", "Sunoh.ai", "draft", None)
        for amendment in note["amendments"]:
            assert note["status"] in ("signed", "locked") and amendment["reason_code"] in AMENDMENT_REASONS
            assert amendment["amended_at"] >= note["signed_at"] and amendment["amended_by"] == encounter["provider_id"]
    notes = Counter(e["progress_note"]["status"] for e in encounters)
    assert set(notes) == {"draft", "signed", "locked"}
    assert any(e["progress_note"]["ai_generated"] for e in encounters)
    assert any(e["progress_note"]["amendments"] for e in encounters)


def test_coverage_is_mostly_active_with_a_few_self_pay_inactive_and_unknown(practice):
    kinds = Counter(practice.coverage_kind(i) for i in range(practice.scale))
    assert set(kinds) == {"active", "inactive", "unknown", "none"} and kinds["active"] > 0.8 * practice.scale
    for index in range(40):
        patient = practice.record("patients", index)
        view = practice.payer_view(index)
        if practice.coverage_kind(index) == "none":
            assert (patient["coverage"], patient["financial_class"], view) == ([], "self_pay", None)
            continue
        member_id = patient["coverage"][0]["member_id"]
        assert practice.patient_of_member(member_id) == index
        if practice.coverage_kind(index) == "unknown":
            assert view is None
        else:
            assert view["active"] == (practice.coverage_kind(index) == "active") and view["member_id"] == member_id
            assert (view["coverage_end"] is None) == view["active"]
    assert practice.patient_of_member("W000000000") is None and practice.patient_of_member(None) is None


def test_a_hundred_thousand_patients_are_ready_at_once_and_generated_in_seconds():
    started = time.monotonic()
    big = Practice(seed=1, scale=100_000)
    first_page, total = big.page("patients", 1, 500)
    last_page, _ = big.page("appointments", 600, 500)
    ready = time.monotonic() - started
    assert total == 100_000 and len(first_page) == 500 and last_page[-1]["id"] == "APT0299999"
    assert big.sizes["appointments"] == 300_000 and 145_000 < big.sizes["encounters"] < 155_000
    ids = [record["id"] for page in range(1, 201) for record in big.page("patients", page, 500)[0]]  # what a full poll generates
    generated = time.monotonic() - started - ready
    print(f"100,000 patients: ready in {ready:.2f} s, every patient generated in {generated:.2f} s")  # noqa: T201
    assert len(set(ids)) == 100_000
    assert ready < 10 and generated < 60  # generous: about 0.3 s and 6 s on a laptop


# --- logins ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("username", "method"), [("riverbend.admin", "totp code"), ("riverbend.frontdesk", "sms code"),
                                                  ("riverbend.billing", "email code"), ("riverbend.api", "password")])
def test_login_by_each_mfa_method_opens_a_session(shared_sandbox, reader, username, method):
    session = login(reader, shared_sandbox, username)
    assert (session["authenticated_with"], session["token_type"], session["expires_in"]) == (method, "Bearer", 900)
    assert session["practice"] == {"code": "ecw-demo-practice", "name": "Riverbend Community Health"}
    answer = reader.get("/facilities", headers={"Authorization": f"Bearer {session['session_token']}"})
    assert answer.status_code == 200 and answer.json()["total"] == 2


def test_sms_and_email_codes_go_to_the_accounts_phone_and_mailbox(sandbox, client):
    login(client, sandbox, "riverbend.frontdesk")
    login(client, sandbox, "riverbend.billing")
    (sms,), (mail,) = outbox(sandbox, "sms"), outbox(sandbox, "email")
    assert sms["to"] == "+15555550201" and sms["code"] in sms["text"] and "eClinicalWorks" in sms["text"]
    assert mail["to"] == "billing@riverbend.example" and mail["code"] in mail["text"]


def test_bad_credentials_codes_and_tokens_are_refused(sandbox, client):
    refused(client.post("/authenticate", json={"username": "riverbend.api", "password": "nope"}), 401)
    refused(client.post("/authenticate", json={"username": ["x"], "password": 1}), 401)
    challenge = client.post("/authenticate", json={"username": "riverbend.frontdesk", "password": account(sandbox, "riverbend.frontdesk")["password"]})
    challenge_id = challenge.json()["challenge_id"]
    code = outbox(sandbox, "sms")[-1]["code"]
    refused(client.post("/authenticate/mfa", json={"challenge_id": challenge_id, "code": "000000" if code != "000000" else "111111"}), 402)
    refused(client.post("/authenticate/mfa", json={"challenge_id": challenge_id, "code": 123456}), 402)
    assert client.post("/authenticate/mfa", json={"challenge_id": challenge_id, "code": code}).status_code == 200
    refused(client.post("/authenticate/mfa", json={"challenge_id": challenge_id, "code": code}), 403)  # used once only
    again = client.post("/authenticate", json={"username": "riverbend.frontdesk", "password": account(sandbox, "riverbend.frontdesk")["password"]})
    for _ in range(5):  # five wrong codes spend the challenge: the right one no longer works
        refused(client.post("/authenticate/mfa", json={"challenge_id": again.json()["challenge_id"], "code": "abc"}), 402)
    refused(client.post("/authenticate/mfa", json={"challenge_id": again.json()["challenge_id"], "code": outbox(sandbox, "sms")[-1]["code"]}), 403)
    refused(client.get("/patients"), 404)
    refused(client.get("/patients", headers={"Authorization": "Bearer forged"}), 404)
    refused(client.get("/authenticate"), 108)


def test_sessions_expire_with_the_session_ttl_fault_and_logout_ends_them(sandbox, client):
    assert httpx.post(sandbox.url + "/_sandbox/faults", json={"session_ttl_s": 1}).status_code == 200
    session = login(client, sandbox, "riverbend.api")
    headers = {"Authorization": f"Bearer {session['session_token']}"}
    assert session["expires_in"] == 1 and client.get("/patients", headers=headers).status_code == 200
    time.sleep(1.1)
    refused(client.get("/patients", headers=headers), 405)
    httpx.post(sandbox.url + "/_sandbox/faults", json={"session_ttl_s": 0})
    headers = bearer(client, sandbox)
    assert client.post("/logout", headers=headers).status_code == 204
    refused(client.get("/patients", headers=headers), 404)


class _Relay(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _RelayHandler)
        self.received: list[bytes] = []


class _RelayHandler(BaseHTTPRequestHandler):
    server: _Relay

    def log_message(self, *args) -> None:
        return

    def do_POST(self) -> None:
        self.server.received.append(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()


def test_codes_are_forwarded_to_the_relay_an_account_names(sandbox, client):
    relay = _Relay()
    threading.Thread(target=relay.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{relay.server_address[1]}/hooks/mfa"
        configured = httpx.post(sandbox.url + "/_sandbox/accounts", json={"vendor": "eclinicalworks", "username": "riverbend.frontdesk",
                                                                          "relay_url": url})
        assert configured.status_code == 200 and configured.json()["relay_url"] == url
        client.post("/authenticate", json={"username": "riverbend.frontdesk", "password": account(sandbox, "riverbend.frontdesk")["password"]})
        deadline = time.monotonic() + 5
        while not relay.received and time.monotonic() < deadline:
            time.sleep(0.02)
        assert outbox(sandbox, "sms")[-1]["code"].encode() in relay.received[0]
    finally:
        relay.shutdown()
        relay.server_close()
    bad = httpx.post(sandbox.url + "/_sandbox/accounts", json={"vendor": "eclinicalworks", "username": "riverbend.api", "modules": ["crm"]})
    refused(bad, 106)


# --- reading -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("resource", RESOURCES)
def test_paging_covers_every_record_once_in_id_order(shared_sandbox, reader, resource):
    headers = bearer(reader, shared_sandbox)
    items = walk(reader, f"/{resource}", headers, page_size=37)
    ids = [item["id"] for item in items]
    assert ids == sorted(set(ids)) and len(ids) == state(shared_sandbox)[resource]
    assert all(item["modified"].endswith("Z") for item in items)
    one = reader.get(f"/{resource}/{ids[-1]}", headers=headers)
    assert one.status_code == 200 and one.json() == items[-1]
    beyond = reader.get(f"/{resource}", params={"page": 1000, "page_size": 500}, headers=headers).json()
    assert (beyond["items"], beyond["has_more"], beyond["total"]) == ([], False, len(ids))


def test_list_parameters_and_unknown_records_are_refused_clearly(shared_sandbox, reader):
    headers = bearer(reader, shared_sandbox)
    for params in ({"page": "0"}, {"page": "x"}, {"page_size": "501"}, {"page_size": "-1"}, {"page": "9" * 40}):
        refused(reader.get("/patients", params=params, headers=headers), 105)
    assert reader.get("/patients", headers=headers).json()["page_size"] == 100
    refused(reader.get("/patients/PAT9999999", headers=headers), 104)
    refused(reader.get("/patients/nonsense", headers=headers), 104)
    refused(reader.get("/invoices", headers=headers), 104)
    refused(reader.post("/patients", json={}, headers=headers), 108)


def test_mutations_show_in_the_lists_without_tombstones(sandbox, client):
    headers = bearer(client, sandbox)
    before = {p["id"]: p for p in walk(client, "/patients", headers, page_size=500)}
    done = httpx.post(sandbox.url + "/_sandbox/mutate", json={"vendor": "eclinicalworks", "resource": "patients", "creates": 2,
                                                              "changes": 3, "deletes": 2}).json()
    after = {p["id"]: p for p in walk(client, "/patients", headers, page_size=500)}
    created, changed, deleted = (set(done[k]["patients"]) for k in ("created", "changed", "deleted"))
    assert set(after) == (set(before) | created) - deleted and len(after) == state(sandbox)["patients"] == SCALE
    for record_id in changed - deleted:
        assert after[record_id]["modified"] > before[record_id]["modified"]
        assert after[record_id]["address"] != before[record_id]["address"] or after[record_id]["phone"] != before[record_id]["phone"]
    for record_id in deleted:
        refused(client.get(f"/patients/{record_id}", headers=headers), 104)
    unchanged = set(before) - changed - deleted
    assert all(after[i] == before[i] for i in unchanged)


def test_signing_and_amending_notes_change_their_encounters(sandbox, client):
    headers = bearer(client, sandbox)
    done = vendor_of(sandbox).mutate({"sign_notes": 3, "amend": 2})
    assert len(done["signed_notes"]) == 3 and len(done["amended_notes"]) == 2
    for encounter_id in done["signed_notes"]:
        note = client.get(f"/encounters/{encounter_id}", headers=headers).json()["progress_note"]
        assert note["status"] == "signed" and note["signed_by"] and note["signed_at"]
    for encounter_id in done["amended_notes"]:
        encounter = client.get(f"/encounters/{encounter_id}", headers=headers).json()
        latest = encounter["progress_note"]["amendments"][-1]
        assert latest["reason_code"] in AMENDMENT_REASONS and latest["amended_by"] == encounter["provider_id"]
        assert datetime.fromisoformat(latest["amended_at"]) <= datetime.fromisoformat(encounter["modified"])
    refused(httpx.post(sandbox.url + "/_sandbox/mutate", json={"vendor": "eclinicalworks", "resource": "invoices", "changes": 1}), 106)
    refused(httpx.post(sandbox.url + "/_sandbox/mutate", json={"vendor": "eclinicalworks", "sign_notes": -1}), 106)


def test_mutated_appointments_respect_templates_and_deletes_leave_the_list(sandbox, client):
    headers = bearer(client, sandbox)
    done = vendor_of(sandbox).mutate({"resource": "appointments", "creates": 5, "deletes": 3, "changes": 4})
    listed = {a["id"]: a for a in walk(client, "/appointments", headers, page_size=500)}
    assert len(listed) == state(sandbox)["appointments"] == 3 * SCALE + 5 - 3
    assert set(done["created"]["appointments"]) <= set(listed) and not set(done["deleted"]["appointments"]) & set(listed)
    taken = Counter((a["provider_id"], a["start"]) for a in listed.values() if a["status"] != "cancelled")
    assert max(taken.values()) == 1


def test_faults_break_listed_records_and_churn_the_practice(sandbox, client):
    headers = bearer(client, sandbox)
    httpx.post(sandbox.url + "/_sandbox/faults", json={"malformed_rate": 1}).raise_for_status()
    broken = client.get("/patients", params={"page_size": 20}, headers=headers).json()["items"]
    assert all("last_name" not in p or p["date_of_birth"] == "31/02/1950" for p in broken)
    httpx.post(sandbox.url + "/_sandbox/faults", json={"malformed_rate": 0, "churn_per_page": 4}).raise_for_status()
    appointments = vendor_of(sandbox).practice.table("appointments")
    assert not appointments.deleted
    client.get("/appointments", params={"page_size": 5}, headers=headers)
    assert len(appointments.deleted) == 1  # after each page the practice changed 4 records, created one and deleted one


# --- bookings ----------------------------------------------------------------------------------------------
def test_a_booking_inside_the_template_is_accepted_and_listed(sandbox, client):
    headers = bearer(client, sandbox)
    practice = vendor_of(sandbox).practice
    slot = free_slot(practice, 0)
    made = client.post("/create_appointment", json=booking(practice, 0, slot, reference="crm-1"), headers=headers)
    assert made.status_code == 201, made.text
    appointment = made.json()
    assert (appointment["start"], appointment["status"], appointment["reference"], appointment["booked_via"]) == (
        slot["start"], "scheduled", "crm-1", "api")
    assert client.get(f"/appointments/{appointment['id']}", headers=headers).json() == appointment
    assert state(sandbox)["appointments"] == 3 * SCALE + 1
    assert slot["start"] not in [s["start"] for s in client.get("/healow/slots", params={
        "provider_id": "PRV0000000", "date": slot["start"][:10]}, headers=headers).json()["slots"]]


def test_a_repeated_reference_answers_the_existing_appointment(sandbox, client):
    headers = bearer(client, sandbox)
    practice = vendor_of(sandbox).practice
    body = booking(practice, 0, free_slot(practice, 0), reference="retry-me")
    first = client.post("/create_appointment", json=body, headers=headers).json()
    again = refused(client.post("/create_appointment", json=body, headers=headers), 203)
    assert again["details"]["appointment_id"] == first["id"] and again["details"]["appointment"] == first
    other_slot = free_slot(practice, 1)  # same reference, another request: still the first appointment
    refused(client.post("/create_appointment", json=booking(practice, 1, other_slot, reference="retry-me"), headers=headers), 203)
    assert state(sandbox)["appointments"] == 3 * SCALE + 1


def test_bookings_outside_the_template_are_refused_and_change_nothing(sandbox, client):
    headers = bearer(client, sandbox)
    practice = vendor_of(sandbox).practice
    provider = practice.record("providers", 0)
    block = provider["templates"][0]
    monday_or_so = next_weekday(practice.today + timedelta(days=2), block["weekday"])
    saturday = next_weekday(practice.today + timedelta(days=2), 6)
    early = refused(client.post("/create_appointment", json=booking(practice, 0, {"facility_id": block["facility_id"], "start": local(monday_or_so, "07:00"),
                                                                                   "slot_minutes": block["slot_minutes"], "visit_types": ["FU"]}),
                                headers=headers), 301)
    assert early["details"]["blocks_that_day"]
    refused(client.post("/create_appointment", json=booking(practice, 0, {"facility_id": block["facility_id"], "start": local(saturday, "09:00"),
                                                                           "slot_minutes": block["slot_minutes"], "visit_types": ["FU"]}),
                        headers=headers), 301)
    elsewhere = next(f for f in ("FAC0000000", "FAC0000001") if f != block["facility_id"])
    if not any(b["facility_id"] == elsewhere and b["weekday"] == block["weekday"] for b in provider["templates"]):
        refused(client.post("/create_appointment", json=booking(practice, 0, {"facility_id": elsewhere, "start": local(monday_or_so, block["start"]),
                                                                               "slot_minutes": block["slot_minutes"], "visit_types": ["FU"]}),
                            headers=headers), 301)
    slot = free_slot(practice, 0)
    off_grid = datetime.fromisoformat(slot["start"]) + timedelta(minutes=5)
    refused(client.post("/create_appointment", json=booking(practice, 0, slot, start=off_grid.isoformat()), headers=headers), 304)
    refused(client.post("/create_appointment", json=booking(practice, 0, slot, duration_minutes=slot["slot_minutes"] + 5), headers=headers), 304)
    starts = datetime.fromisoformat(slot["start"])
    held_block = next(b for b in provider["templates"] if b["weekday"] == starts.isoweekday() and b["facility_id"] == slot["facility_id"]
                      and b["start"] <= starts.strftime("%H:%M") < b["end"])
    last = datetime.fromisoformat(local(starts.date(), held_block["end"])) - timedelta(minutes=held_block["slot_minutes"])
    past_the_end = booking(practice, 0, slot, start=last.isoformat(), duration_minutes=2 * held_block["slot_minutes"])
    assert refused(client.post("/create_appointment", json=past_the_end, headers=headers), 301)["details"]["block_end"] == held_block["end"]
    past = booking(practice, 0, slot, start=(datetime.fromisoformat(slot["start"]) - timedelta(days=21)).isoformat())
    refused(client.post("/create_appointment", json=past, headers=headers), 305)
    assert state(sandbox)["appointments"] == 3 * SCALE


def test_a_visit_type_the_block_does_not_allow_is_refused(sandbox, client):
    headers = bearer(client, sandbox)
    practice = vendor_of(sandbox).practice
    slot = free_slot(practice, 0)
    not_allowed = next(code for code, (_, edition) in VISIT_TYPES.items() if code not in slot["visit_types"] and edition == "primary_care")
    body = refused(client.post("/create_appointment", json=booking(practice, 0, slot, visit_type=not_allowed), headers=headers), 302)
    assert body["details"]["allowed"] == slot["visit_types"]
    refused(client.post("/create_appointment", json=booking(practice, 0, slot, visit_type="BH-IND"), headers=headers), 302)  # another edition's
    refused(client.post("/create_appointment", json=booking(practice, 0, slot, visit_type="XRAY"), headers=headers), 103)
    assert state(sandbox)["appointments"] == 3 * SCALE


def test_double_booking_is_refused_against_generated_and_created_appointments(sandbox, client):
    headers = bearer(client, sandbox)
    practice = vendor_of(sandbox).practice
    soon = practice.today + timedelta(days=2)
    held = next(a for a in practice.live_records("appointments")
                if a["status"] in ("scheduled", "confirmed") and datetime.fromisoformat(a["start"]).date() >= soon)
    provider = practice.index("providers", held["provider_id"])
    body = {"patient_id": "PAT0000002", "provider_id": held["provider_id"], "facility_id": held["facility_id"], "start": held["start"],
            "visit_type": held["visit_type"]}
    conflict = refused(client.post("/create_appointment", json=body, headers=headers), 303)
    assert conflict["details"]["conflicting_appointment_id"] == held["id"]

    slot = free_slot(practice, provider)
    first = client.post("/create_appointment", json=booking(practice, provider, slot), headers=headers).json()
    second = refused(client.post("/create_appointment", json=booking(practice, provider, slot, patient_id="PAT0000003"), headers=headers), 303)
    assert second["details"]["conflicting_appointment_id"] == first["id"]
    assert state(sandbox)["appointments"] == 3 * SCALE + 1


def test_unknown_records_and_bad_fields_are_refused_with_their_codes(sandbox, client):
    headers = bearer(client, sandbox)
    practice = vendor_of(sandbox).practice
    slot = free_slot(practice, 0)
    refused(client.post("/create_appointment", json=booking(practice, 0, slot, patient_id="PAT9999999"), headers=headers), 100)
    refused(client.post("/create_appointment", json=booking(practice, 0, slot, provider_id="PRV9999999"), headers=headers), 101)
    refused(client.post("/create_appointment", json=booking(practice, 0, slot, facility_id="FAC9999999"), headers=headers), 102)
    bad = refused(client.post("/create_appointment", json=booking(practice, 0, slot, start="tomorrow", telehealth="yes", duration_minutes=True),
                              headers=headers), 106)
    assert {e["field"] for e in bad["details"]["errors"]} == {"start", "telehealth", "duration_minutes"}
    refused(client.post("/create_appointment", content=b"{not json", headers=headers), 106)
    refused(client.post("/create_appointment", json=["a", "list"], headers=headers), 106)
    refused(client.post("/create_appointment", json=booking(practice, 0, slot, start="0001-01-01T00:30:00+01:00"), headers=headers), 106)
    refused(client.post("/create_appointment", json=booking(practice, 0, slot, reference="r" * 101), headers=headers), 106)
    too_big = client.post("/create_appointment", content=b"x" * ((1 << 20) + 1), headers=headers)
    assert too_big.status_code == 413
    assert state(sandbox)["appointments"] == 3 * SCALE
    assert client.get("/facilities", headers=headers).status_code == 200  # still serving


def test_telehealth_needs_healow_and_writes_need_a_contract(sandbox, client):
    practice = vendor_of(sandbox).practice
    provider = next(i for i in range(len(practice.plans)) if practice.record("providers", i)["edition"] == "behavioral_health")
    slot = free_slot(practice, provider)
    billing = bearer(client, sandbox, "riverbend.billing")  # ehr and rcm, no healow
    body = refused(client.post("/create_appointment", json=booking(practice, provider, slot, telehealth=True), headers=billing), 410)
    assert body["details"]["module"] == "healow"
    for path in ("/healow/visits", "/healow/slots"):
        refused(client.get(path, headers=billing), 410)
    refused(client.post("/healow/book", json=booking(practice, provider, slot), headers=billing), 410)
    viewer = bearer(client, sandbox, "riverbend.viewer")  # every module, no write contract
    refused(client.post("/create_appointment", json=booking(practice, provider, slot), headers=viewer), 411)
    refused(client.post("/healow/book", json=booking(practice, provider, slot), headers=viewer), 411)
    assert state(sandbox)["appointments"] == 3 * SCALE
    made = client.post("/create_appointment", json=booking(practice, provider, slot), headers=billing)  # in person: no healow needed
    assert made.status_code == 201 and made.json()["telehealth"] is False


def test_healow_lists_telehealth_visits_and_books_video_visits(sandbox, client):
    headers = bearer(client, sandbox, "riverbend.frontdesk")
    visits = walk(client, "/healow/visits", headers, page_size=25)
    assert visits and all(v["telehealth"] and v["healow"]["join_url"].startswith("https://") for v in visits)
    appointments = walk(client, "/appointments", headers, page_size=500)
    assert [v["id"] for v in visits] == [a["id"] for a in appointments if a["telehealth"]]
    mine = client.get("/healow/visits", params={"provider_id": visits[0]["provider_id"]}, headers=headers).json()
    assert mine["total"] == sum(v["provider_id"] == visits[0]["provider_id"] for v in visits)
    theirs = client.get("/healow/visits", params={"patient_id": visits[0]["patient_id"]}, headers=headers).json()
    assert {v["patient_id"] for v in theirs["items"]} == {visits[0]["patient_id"]}

    practice = vendor_of(sandbox).practice
    slot = free_slot(practice, 2)
    slots = client.get("/healow/slots", params={"provider_id": "PRV0000002", "date": slot["start"][:10]}, headers=headers).json()["slots"]
    assert slot in slots
    made = client.post("/healow/book", json=booking(practice, 2, slot, reference="healow-1"), headers=headers)
    assert made.status_code == 201, made.text
    assert (made.json()["telehealth"], made.json()["booked_via"]) == (True, "healow") and made.json()["healow"]["meeting_id"]
    after = client.get("/healow/visits", params={"page_size": 500}, headers=headers).json()
    assert after["total"] == len(visits) + 1 and after["items"][-1]["id"] == made.json()["id"]
    refused(client.get("/healow/slots", params={"provider_id": "PRV0000002", "date": "someday"}, headers=headers), 105)
    refused(client.get("/healow/slots", params={"provider_id": "PRV9999999", "date": slot["start"][:10]}, headers=headers), 101)
    refused(client.get("/healow/visits", params={"patient_id": "nobody"}, headers=headers), 105)


# --- eligibility and claims ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("kind", "status"), [("active", "active"), ("inactive", "inactive"), ("unknown", "not_found")])
def test_eligibility_goes_through_the_clearinghouse(shared_sandbox, reader, kind, status):
    headers = bearer(reader, shared_sandbox, "riverbend.billing")
    patient_id = patient_of_kind(vendor_of(shared_sandbox).practice, kind)
    answer = reader.get("/eligibility", params={"patient_id": patient_id, "date": date.today().isoformat()}, headers=headers)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["x12_270"].startswith("ISA") and "*270*" in body["x12_270"] and body["x12_271"].startswith("ISA")
    assert (body["patient_id"], body["service_type"], body["summary"]["status"]) == (patient_id, "30", status)
    assert body["summary"]["active"] == (status == "active")
    if status == "active":
        assert body["summary"]["plan_name"] and body["summary"]["coverage_start"]
    if status == "not_found":
        assert body["summary"]["rejections"]


def test_eligibility_refuses_self_pay_missing_modules_and_bad_parameters(shared_sandbox, reader):
    billing = bearer(reader, shared_sandbox, "riverbend.billing")
    refused(reader.get("/eligibility", params={"patient_id": patient_of_kind(vendor_of(shared_sandbox).practice, "none")}, headers=billing), 501)
    refused(reader.get("/eligibility", params={"patient_id": "PAT9999999"}, headers=billing), 100)
    refused(reader.get("/eligibility", params={"patient_id": "PAT0000001", "date": "03/04/2026"}, headers=billing), 105)
    refused(reader.get("/eligibility", params={"patient_id": "PAT0000001", "service_type": "30*1~"}, headers=billing), 105)
    frontdesk = bearer(reader, shared_sandbox, "riverbend.frontdesk")  # no rcm
    refused(reader.get("/eligibility", params={"patient_id": "PAT0000001"}, headers=frontdesk), 410)


def claim_file(practice: Practice, encounter_id: str) -> str:
    """An 837P for one primary-care encounter, as the hub's biller would write it."""
    encounter = practice.get("encounters", encounter_id)
    patient = practice.get("patients", encounter["patient_id"])
    coverage = patient["coverage"][0]
    address = Address(line1="1 Main Street", city="Westborough", state="MA", postal_code="015811234")
    provider = Party(organization_name="Riverbend Community Health", npi=npi_with_check_digit("150876543"), tax_id="043219876", address=address)
    service_date = date.fromisoformat(encounter["date"])
    lines = [ClaimLine(procedure_code=p["code"], charge=Decimal(p["charge"]), service_date=service_date, modifiers=tuple(p["modifiers"]))
             for p in encounter["procedures"]]
    claim = Claim(patient_control_number=encounter_id, total_charge=sum((line.charge for line in lines), Decimal(0)),
                  diagnoses=tuple(d["code"] for d in encounter["diagnoses"]), lines=lines, billing_provider=provider,
                  subscriber=Subscriber(member_id=coverage["member_id"], last_name=patient["last_name"], first_name=patient["first_name"],
                                        birth_date=date.fromisoformat(patient["date_of_birth"]), sex=patient["sex"], address=address,
                                        claim_filing_indicator=coverage["claim_filing_indicator"]),
                  payer=Payer(name=coverage["payer_name"], payer_id=coverage["payer_id"]), place_of_service=encounter["place_of_service"])
    return write_837p([claim], submitter=Submitter(name="Riverbend Community Health", identifier="RIVERBEND01", contact_name="Billing",
                                                   contact_phone="5085550100"),
                      receiver=Receiver(name="Sandbox Clearinghouse", identifier=CLEARINGHOUSE_ID), control_number=41)


def remittance(client: httpx.Client, sandbox: Sandbox, batch_id: str, headers: dict[str, str]):
    """The claim payments of a batch's 835, once the clearinghouse has released it."""
    deadline = time.monotonic() + 30
    while True:
        status = client.get(f"/claims/{batch_id}", headers=headers).json()
        if status["era_url"] or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert status["status"] == "remitted" and status["era_url"].startswith("/clearinghouse/")
    era = httpx.get(sandbox.url + status["era_url"])
    assert era.status_code == 200 and "*835*" in era.text
    return [claim for advice in parse_835(era.text) for claim in advice.claims]


def primary_care_encounter(practice: Practice, kind: str) -> dict:
    return next(e for e in practice.live_records("encounters")
                if e["edition"] == "primary_care" and practice.coverage_kind(practice.index("patients", e["patient_id"])) == kind)


def test_a_claim_file_is_acknowledged_and_its_era_follows(sandbox, client):
    practice = vendor_of(sandbox).practice
    encounter = primary_care_encounter(practice, "active")
    text = claim_file(practice, encounter["id"])
    billing = bearer(client, sandbox, "riverbend.billing")
    submitted = client.post("/submit_claim", content=text.encode(), headers={**billing, "Content-Type": "application/edi-x12"})
    assert submitted.status_code == 200, submitted.text
    body = submitted.json()
    assert body["accepted"] is True and body["errors"] == [] and body["ack_999"].startswith("ISA") and body["batch_id"]
    by_json = client.post("/submit_claim", json={"x12": text}, headers=billing)
    assert by_json.status_code == 200 and by_json.json()["batch_id"] != body["batch_id"]

    (payment,) = remittance(client, sandbox, body["batch_id"], billing)
    assert payment.patient_control_number == encounter["id"]
    assert "31" not in [a.reason for line in payment.lines for a in line.adjustments]  # the payer knows the member
    listed = client.get("/claims", headers=billing).json()
    assert listed["total"] == 2 and {b["batch_id"] for b in listed["items"]} == {body["batch_id"], by_json.json()["batch_id"]}


def test_the_payer_denies_claims_for_members_it_does_not_know_or_cover(sandbox, client):
    practice = vendor_of(sandbox).practice
    billing = bearer(client, sandbox, "riverbend.billing")
    for kind, reasons in (("unknown", {"31"}), ("inactive", {"26", "27"})):
        encounter = primary_care_encounter(practice, kind)
        submitted = client.post("/submit_claim", json={"x12": claim_file(practice, encounter["id"])}, headers=billing).json()
        assert submitted["accepted"] is True
        (payment,) = remittance(client, sandbox, submitted["batch_id"], billing)
        assert payment.status_code == "4" and {a.reason for line in payment.lines for a in line.adjustments} <= reasons


def test_claim_files_need_rcm_a_contract_and_an_x12_body(sandbox, client):
    frontdesk = bearer(client, sandbox, "riverbend.frontdesk")
    refused(client.post("/submit_claim", json={"x12": "ISA*"}, headers=frontdesk), 410)
    viewer = bearer(client, sandbox, "riverbend.viewer")
    refused(client.post("/submit_claim", json={"x12": "ISA*"}, headers=viewer), 411)
    billing = bearer(client, sandbox, "riverbend.billing")
    refused(client.post("/submit_claim", content=b"ISA*00", headers={**billing, "Content-Type": "application/pdf"}), 504)
    refused(client.post("/submit_claim", json={"x12": 5}, headers=billing), 106)
    refused(client.post("/submit_claim", content=b"  ", headers={**billing, "Content-Type": "application/edi-x12"}), 106)
    refused(client.post("/submit_claim", content=b"\xff\xfe", headers={**billing, "Content-Type": "application/edi-x12"}), 106)
    garbage = client.post("/submit_claim", content=b"this is no X12", headers={**billing, "Content-Type": "application/edi-x12"})
    assert garbage.status_code == 200 and garbage.json()["accepted"] is False and garbage.json()["errors"]
    assert garbage.json()["ack_999"].startswith("ISA")
    assert client.get(f"/claims/{garbage.json()['batch_id']}", headers=billing).json()["status"] == "rejected"
    refused(client.get("/claims/NOPE", headers=billing), 107)
