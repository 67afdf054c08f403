"""eClinicalWorks' FHIR R4 surface in the sandbox: SMART Backend Services, search and read, the rate limit, Bulk Data."""

from __future__ import annotations

import base64
import importlib
import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.group import Group
from fhir.resources.R4B.operationoutcome import OperationOutcome

from sandbox.ecw import fhir as ecw_fhir
from sandbox.ecw.data import PRACTICE_CODE
from sandbox.server import Sandbox
from tests.sandbox.ecw_helpers import SCALE, bearer, running_sandbox, state, vendor_of, walk

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
FHIR_MODULES = {"Patient": "patient", "Practitioner": "practitioner", "Location": "location", "Appointment": "appointment",
                "Encounter": "encounter", "Condition": "condition", "Procedure": "procedure", "Observation": "observation",
                "Coverage": "coverage"}
PORTAL_RESOURCES = {"Patient": "patients", "Practitioner": "providers", "Location": "facilities", "Appointment": "appointments",
                    "Encounter": "encounters"}


class FakeClock:
    """The FHIR surface's wall clock, moved by hand."""

    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


def next_minute_start() -> float:
    return (int(time.time()) // 60 + 1) * 60.0


@pytest.fixture(scope="module")
def shared_sandbox() -> Iterator[Sandbox]:
    """One sandbox for the tests that change nothing in it (no rate limit: they make hundreds of requests)."""
    with running_sandbox() as sb:
        vendor_of(sb).fhir_rate_limit_per_minute = 0
        yield sb


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    """A sandbox of the test's own, for tests that change records, knobs or the clock."""
    with running_sandbox() as sb:
        vendor_of(sb).fhir_rate_limit_per_minute = 0
        yield sb


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=20) as client:
        yield client


# --- helpers ------------------------------------------------------------------------------------------------------
def backend(sandbox: Sandbox, name: str = "sync") -> dict:
    accounts = httpx.get(f"{sandbox.url}/_sandbox/accounts").json()["eclinicalworks"]
    return next(a for a in accounts if a.get("kind") == "fhir_backend" and a["client_id"].endswith(name))


def assertion(account: dict, *, algorithm: str = "RS384", key: str | bytes | None = None, now: float | None = None,
              headers: dict | None = None, **claims) -> str:
    now = time.time() if now is None else now
    body = {"iss": account["client_id"], "sub": account["client_id"], "aud": account["token_url"], "exp": int(now) + 300,
            "iat": int(now), "jti": uuid.uuid4().hex, **claims}
    body = {k: v for k, v in body.items() if v is not None}
    return jwt.encode(body, key if key is not None else account["private_key_pem"], algorithm=algorithm, headers=headers)


def token_request(http: httpx.Client, account: dict, signed: str, **form) -> httpx.Response:
    data = {"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE, "client_assertion": signed, **form}
    return http.post(account["token_url"], data=data)


def token_headers(http: httpx.Client, account: dict, *, now: float | None = None, scope: str = "system/*.read") -> dict[str, str]:
    answer = token_request(http, account, assertion(account, now=now), scope=scope)
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def follow(http: httpx.Client, url: str, headers: dict[str, str]) -> Iterator[dict]:
    """Every page of a search, following Bundle.link[next]."""
    while url:
        answer = http.get(url, headers=headers)
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"] == "application/fhir+json"
        bundle = answer.json()
        yield bundle
        url = next((link["url"] for link in bundle.get("link", []) if link["relation"] == "next"), None)


def resources(http: httpx.Client, url: str, headers: dict[str, str]) -> list[dict]:
    return [entry["resource"] for bundle in follow(http, url, headers) for entry in bundle.get("entry", [])]


def fhir_class(type_name: str):
    return getattr(importlib.import_module(f"fhir.resources.R4B.{FHIR_MODULES[type_name]}"), type_name)


def is_outcome(answer: httpx.Response, status: int) -> dict:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/fhir+json"
    OperationOutcome.model_validate(answer.json())
    return answer.json()


def export(http: httpx.Client, base: str, headers: dict[str, str], path: str = "Group/all-patients/$export", **params) -> str:
    kicked = http.get(f"{base}/{path}", params=params, headers={**headers, "Prefer": "respond-async", "Accept": "application/fhir+json"})
    assert kicked.status_code == 202, kicked.text
    return kicked.headers["content-location"]


def finish(http: httpx.Client, status_url: str, headers: dict[str, str], polls: int = 20) -> dict:
    for _ in range(polls):
        answer = http.get(status_url, headers=headers)
        if answer.status_code == 200:
            return answer.json()
        assert answer.status_code == 202, answer.text
        time.sleep(0.02)
    raise AssertionError("the export never finished")


def ndjson(http: httpx.Client, url: str, headers: dict[str, str]) -> list[dict]:
    answer = http.get(url, headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/fhir+ndjson"
    assert answer.content.endswith(b"\n") or not answer.content
    return [json.loads(line) for line in answer.text.splitlines()]


def set_knobs(sandbox: Sandbox, **knobs) -> dict:
    answer = httpx.post(f"{sandbox.url}/_sandbox/mutate", json={"vendor": "eclinicalworks", **knobs})
    assert answer.status_code == 200, answer.text
    return answer.json()


# --- discovery and accounts ---------------------------------------------------------------------------------------
def test_accounts_carry_backend_clients_with_their_private_keys(shared_sandbox):
    clients = [a for a in httpx.get(f"{shared_sandbox.url}/_sandbox/accounts").json()["eclinicalworks"] if a.get("kind") == "fhir_backend"]
    assert len(clients) == 2 and len({c["client_id"] for c in clients}) == 2
    for client in clients:
        base = f"{shared_sandbox.url}/ecw/fhir/r4/{PRACTICE_CODE}"
        assert client["username"] == client["client_id"] and client["practice_code"] == PRACTICE_CODE
        assert (client["fhir_base_url"], client["token_url"], client["algorithm"]) == (base, f"{base}/token", "RS384")
        key = serialization.load_pem_private_key(client["private_key_pem"].encode(), password=None)
        assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048
        assert client["public_jwk"]["kid"] == client["kid"] and client["public_jwk"]["kty"] == "RSA"
    # The portal's accounts are still there, as they were.
    assert "riverbend.api" in {a["username"] for a in httpx.get(f"{shared_sandbox.url}/_sandbox/accounts").json()["eclinicalworks"]}


def test_smart_configuration_and_metadata_need_no_token(shared_sandbox, http):
    base = backend(shared_sandbox)["fhir_base_url"]
    smart = http.get(f"{base}/.well-known/smart-configuration")
    assert smart.status_code == 200
    assert smart.json()["token_endpoint"] == f"{base}/token"
    assert smart.json()["grant_types_supported"] == ["client_credentials"]
    assert smart.json()["token_endpoint_auth_methods_supported"] == ["private_key_jwt"]
    assert smart.json()["token_endpoint_auth_signing_alg_values_supported"] == ["RS384"]
    metadata = http.get(f"{base}/metadata")
    assert metadata.status_code == 200 and metadata.headers["content-type"] == "application/fhir+json"
    capability = CapabilityStatement.model_validate(metadata.json())
    assert {r.type for r in capability.rest[0].resource} == {*FHIR_MODULES, "Group"}
    assert capability.rest[0].security.extension[0].extension[0].valueUri == f"{base}/token"

    for wrong in ("/ecw/fhir/r4/another-practice/metadata", "/ecw/fhir/r4/", "/ecw/fhir/r5/ecw-demo-practice/metadata", "/ecw/fhir"):
        is_outcome(http.get(shared_sandbox.url + wrong), 404)


# --- tokens ---------------------------------------------------------------------------------------------------------
def test_rs384_assertion_gets_a_short_token(shared_sandbox, http):
    account = backend(shared_sandbox)
    answer = token_request(http, account, assertion(account), scope="system/*.read")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["token_type"], body["expires_in"], body["scope"]) == ("bearer", 300, "system/*.read")
    assert answer.headers["cache-control"] == "no-store"
    headers = {"Authorization": f"Bearer {body['access_token']}"}
    assert http.get(f"{account['fhir_base_url']}/Patient?_count=1", headers=headers).status_code == 200
    # A kid that names the client's key is fine; exp exactly five minutes ahead too.
    signed = assertion(account, headers={"kid": account["kid"]}, exp=int(time.time()) + 300)
    assert token_request(http, account, signed).status_code == 200


def test_assertions_are_refused_unless_rs384_signed_by_the_registered_key(shared_sandbox, http):
    account, other = backend(shared_sandbox, "sync"), backend(shared_sandbox, "bulk")
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    stranger_pem = stranger.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    unsigned = ".".join(base64.urlsafe_b64encode(json.dumps(part).encode()).decode().rstrip("=") for part in (
        {"alg": "none", "typ": "JWT"},
        {"iss": account["client_id"], "sub": account["client_id"], "aud": account["token_url"], "exp": int(time.time()) + 60, "jti": "x"},
    )) + "."
    now = time.time()
    refused = {
        "RS256": assertion(account, algorithm="RS256"),
        "HS256": assertion(account, algorithm="HS256", key="a-shared-secret-of-at-least-32-bytes!"),
        "none": unsigned,
        "another client's key": assertion(account, key=other["private_key_pem"]),
        "an unregistered key": assertion(account, key=stranger_pem),
        "wrong aud": assertion(account, aud=f"{shared_sandbox.url}/ecw/fhir/r4/{PRACTICE_CODE}/metadata"),
        "another practice's aud": assertion(account, aud=f"{shared_sandbox.url}/ecw/fhir/r4/other/token"),
        "sub is not iss": assertion(account, sub="someone-else"),
        "unknown client": assertion({**account, "client_id": "nobody"}),
        "exp an hour ahead": assertion(account, exp=int(now) + 3600),
        "expired": assertion(account, exp=int(now) - 60),
        "no exp": assertion(account, exp=None),
        "no jti": assertion(account, jti=None),
        "a kid of no key": assertion(account, headers={"kid": "other-key"}),
        "garbage": "not.a.jwt",
    }
    for why, signed in refused.items():
        answer = token_request(http, account, signed)
        assert (answer.status_code, answer.json().get("error")) == (401, "invalid_client"), why

    good = assertion(account)
    wrong_type = token_request(http, account, good, client_assertion_type="urn:ietf:params:oauth:client-assertion-type:saml2-bearer")
    assert wrong_type.json()["error"] == "invalid_client"
    assert token_request(http, account, good, grant_type="authorization_code").json()["error"] == "unsupported_grant_type"
    assert token_request(http, account, good, scope="system/*.write").json()["error"] == "invalid_scope"
    assert token_request(http, account, good, scope="patient/*.read").json()["error"] == "invalid_scope"
    as_json = http.post(account["token_url"], json={"grant_type": "client_credentials", "client_assertion": good})
    assert (as_json.status_code, as_json.json()["error"]) == (400, "invalid_request")
    assert http.get(account["token_url"]).status_code == 405
    # None of the refusals spent the good assertion's jti; once used, it is spent.
    assert token_request(http, account, good).status_code == 200
    replay = token_request(http, account, good)
    assert (replay.status_code, replay.json()["error"]) == (401, "invalid_client")
    assert "jti" in replay.json()["error_description"]


def test_tokens_expire_after_300_seconds_by_the_vendors_clock(sandbox, http):
    clock = FakeClock(time.time())
    vendor_of(sandbox).fhir_clock = clock
    account = backend(sandbox)
    base = account["fhir_base_url"]
    headers = token_headers(http, account, now=clock.now)
    assert http.get(f"{base}/Patient/PAT0000001", headers=headers).status_code == 200
    clock.now += 299
    assert http.get(f"{base}/Patient/PAT0000001", headers=headers).status_code == 200
    clock.now += 2
    expired = http.get(f"{base}/Patient/PAT0000001", headers=headers)
    assert "expired" in is_outcome(expired, 401)["issue"][0]["diagnostics"]
    assert expired.headers["www-authenticate"].startswith("Bearer")
    is_outcome(http.get(f"{base}/Patient/PAT0000001"), 401)
    is_outcome(http.get(f"{base}/Patient/PAT0000001", headers={"Authorization": "Bearer made-up"}), 401)
    # An assertion made by the vendor's clock is judged by it: one from the real clock has long expired.
    clock.now += 3600
    assert token_request(http, account, assertion(account)).json()["error"] == "invalid_client"
    assert token_request(http, account, assertion(account, now=clock.now)).status_code == 200

    httpx.post(f"{sandbox.url}/_sandbox/faults", json={"session_ttl_s": 45})
    answer = token_request(http, account, assertion(account, now=clock.now))
    assert answer.json()["expires_in"] == 45
    clock.now += 46
    is_outcome(http.get(f"{base}/Patient", headers={"Authorization": f"Bearer {answer.json()['access_token']}"}), 401)


def test_a_narrow_scope_reads_only_its_types(shared_sandbox, http):
    account = backend(shared_sandbox)
    answer = token_request(http, account, assertion(account), scope="system/Patient.read system/Coverage.read")
    assert answer.json()["scope"] == "system/Coverage.read system/Patient.read"
    headers = {"Authorization": f"Bearer {answer.json()['access_token']}"}
    base = account["fhir_base_url"]
    assert http.get(f"{base}/Patient?_count=1", headers=headers).status_code == 200
    is_outcome(http.get(f"{base}/Observation", headers=headers), 403)
    is_outcome(http.get(f"{base}/Group/all-patients/$export", headers={**headers, "Prefer": "respond-async"},
                        params={"_type": "Encounter"}), 403)


# --- search and read --------------------------------------------------------------------------------------------------
def test_paging_covers_every_patient_once_with_the_portals_ids(shared_sandbox, http):
    account = backend(shared_sandbox)
    headers = token_headers(http, account)
    pages = list(follow(http, f"{account['fhir_base_url']}/Patient?_count=17", headers))
    ids = [e["resource"]["id"] for page in pages for e in page["entry"]]
    assert len(pages) == -(-SCALE // 17) and all(len(page["entry"]) <= 17 for page in pages)
    assert len(ids) == len(set(ids)) == pages[0]["total"] == state(shared_sandbox)["patients"] == SCALE
    assert all(e["fullUrl"] == f"{account['fhir_base_url']}/Patient/{e['resource']['id']}" for page in pages for e in page["entry"])
    default = http.get(f"{account['fhir_base_url']}/Patient", headers=headers).json()
    assert len(default["entry"]) == 50
    assert len(http.get(f"{account['fhir_base_url']}/Appointment?_count=1000", headers=headers).json()["entry"]) == 200

    with httpx.Client(base_url=shared_sandbox.url + "/ecw", timeout=10) as portal:
        login = bearer(portal, shared_sandbox)
        for type_name, resource in PORTAL_RESOURCES.items():
            portal_items = walk(portal, f"/{resource}", login, page_size=500)
            found = resources(http, f"{account['fhir_base_url']}/{type_name}?_count=200", headers)
            assert [r["id"] for r in found] == [item["id"] for item in portal_items], type_name
            assert [r["meta"]["lastUpdated"] for r in found] == [item["modified"] for item in portal_items], type_name


def test_resources_follow_the_portals_records(shared_sandbox, http):
    vendor = vendor_of(shared_sandbox)
    practice = vendor.practice
    account = backend(shared_sandbox)
    headers = token_headers(http, account)
    base = account["fhir_base_url"]

    patient = practice.record("patients", 42)
    found = http.get(f"{base}/Patient/PAT0000042", headers=headers).json()
    assert {i["value"] for i in found["identifier"]} >= {patient["mrn"], patient["account_number"]}
    assert next(i for i in found["identifier"] if i["type"]["coding"][0]["code"] == "MR")["value"] == patient["mrn"]
    assert found["birthDate"] == patient["date_of_birth"] and found["name"][0]["family"] == patient["last_name"]
    assert found["gender"] == {"F": "female", "M": "male", "U": "unknown"}[patient["sex"]]
    assert found["communication"][0]["language"]["text"] == patient["language"]
    coverage = resources(http, f"{base}/Coverage?patient=PAT0000042", headers)
    assert [c["id"] for c in coverage] == [f"PAT0000042-cov-{c['priority']}" for c in patient["coverage"]]
    assert [c["subscriberId"] for c in coverage] == [c["member_id"] for c in patient["coverage"]]

    provider = practice.record("providers", 1)
    npi = http.get(f"{base}/Practitioner/PRV0000001", headers=headers).json()["identifier"][0]
    assert npi == {"system": "http://hl7.org/fhir/sid/us-npi", "value": provider["npi"]}

    statuses = {"scheduled": "booked", "confirmed": "booked", "checked_out": "fulfilled", "no_show": "noshow", "cancelled": "cancelled"}
    for appointment in (practice.record("appointments", i) for i in range(0, 3 * SCALE, 7)):
        fhir_appointment = http.get(f"{base}/Appointment/{appointment['id']}", headers=headers).json()
        assert fhir_appointment["status"] == statuses[appointment["status"]]
        assert fhir_appointment["serviceType"][0]["coding"][0]["code"] == appointment["visit_type"]
        actors = {p["actor"]["reference"] for p in fhir_appointment["participant"]}
        assert actors == {f"Patient/{appointment['patient_id']}", f"Practitioner/{appointment['provider_id']}",
                          f"Location/{appointment['facility_id']}"}
        mode = next(e["valueCode"] for e in fhir_appointment["extension"] if e["url"].endswith("/visit-mode"))
        assert mode == ("telehealth" if appointment["telehealth"] else "in-person")

    encounters = [practice.record("encounters", i) for i in range(practice.table("encounters").count)]
    telehealth = next(e for e in encounters if e["telehealth"] and e["edition"] == "primary_care")
    behavioral = next(e for e in encounters if e["edition"] == "behavioral_health")
    in_person = next(e for e in encounters if not e["telehealth"] and e["edition"] == "primary_care")
    assert http.get(f"{base}/Encounter/{telehealth['id']}", headers=headers).json()["class"]["code"] == "VR"
    visit = http.get(f"{base}/Encounter/{in_person['id']}", headers=headers).json()
    assert visit["class"]["code"] == "AMB" and visit["reasonCode"][0]["text"] == in_person["chief_complaint"]
    assert visit["period"] == {"start": in_person["start"], "end": in_person["end"]}
    assert [d["condition"]["reference"] for d in visit["diagnosis"]] == [f"Condition/{in_person['id']}-dx-{d['rank']}"
                                                                         for d in in_person["diagnoses"]]
    for diagnosis in in_person["diagnoses"]:
        condition = http.get(f"{base}/Condition/{in_person['id']}-dx-{diagnosis['rank']}", headers=headers).json()
        assert condition["code"]["coding"][0] == {"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": diagnosis["code"],
                                                  "display": diagnosis["description"]}
    vitals = {o["code"]["coding"][0]["code"]: o for o in resources(http, f"{base}/Observation?patient={in_person['patient_id']}", headers)
              if o["encounter"]["reference"] == f"Encounter/{in_person['id']}"}
    assert set(vitals) == {"8302-2", "29463-7", "39156-5", "85354-9", "8867-4", "9279-1", "8310-5", "59408-5"}
    assert [c["valueQuantity"]["value"] for c in vitals["85354-9"]["component"]] == [in_person["vitals"]["bp_systolic"],
                                                                                      in_person["vitals"]["bp_diastolic"]]
    assert vitals["8867-4"]["valueQuantity"]["value"] == in_person["vitals"]["pulse"]
    procedures = resources(http, f"{base}/Procedure?_id={in_person['id']}-px-1", headers)
    assert procedures[0]["code"]["coding"][0]["code"] == in_person["procedures"][0]["code"]
    surveys = {o["code"]["coding"][0]["code"]: o["valueQuantity"]["value"]
               for o in resources(http, f"{base}/Observation?_id={behavioral['id']}-obs-phq9,{behavioral['id']}-obs-gad7", headers)}
    assert surveys == {"44261-6": behavioral["assessments"]["phq9"]["score"], "70274-6": behavioral["assessments"]["gad7"]["score"]}
    assert resources(http, f"{base}/Procedure?_id={behavioral['id']}-px-1", headers)[0]["code"]["coding"][0]["code"] == \
        behavioral["psychotherapy_cpt"]
    assert not resources(http, f"{base}/Observation?_id={telehealth['id']}-obs-bp", headers)  # a video visit takes no vitals


def test_patient_searches_find_exactly_the_patients_records(shared_sandbox, http):
    practice = vendor_of(shared_sandbox).practice
    account = backend(shared_sandbox)
    headers = token_headers(http, account)
    base = account["fhir_base_url"]
    every = {type_name: resources(http, f"{base}/{type_name}?_count=200", headers)
             for type_name in ("Appointment", "Encounter", "Condition", "Procedure", "Observation", "Coverage")}
    subject = {"Appointment": lambda r: next(p["actor"]["reference"] for p in r["participant"] if p["actor"]["reference"].startswith("Patient/")),
               "Coverage": lambda r: r["beneficiary"]["reference"]}
    for patient in ("PAT0000000", "PAT0000007", f"PAT{SCALE - 1:07d}"):
        for type_name, found in every.items():
            of = subject.get(type_name, lambda r: r["subject"]["reference"])
            expected = [r["id"] for r in found if of(r) == f"Patient/{patient}"]
            for value in (patient, f"Patient/{patient}"):
                assert [r["id"] for r in resources(http, f"{base}/{type_name}?patient={value}&_count=3", headers)] == expected, type_name
    assert http.get(f"{base}/Encounter?patient=PAT9999999", headers=headers).json().get("entry") is None
    surveys = resources(http, f"{base}/Observation?category=survey", headers)
    assert surveys and {o["code"]["coding"][0]["code"] for o in surveys} == {"44261-6", "70274-6"}
    assert len(surveys) + len(resources(http, f"{base}/Observation?category=vital-signs", headers)) == len(every["Observation"])
    assert Counter(r["id"].split("-", 1)[0] for r in every["Condition"]) == Counter(
        {r["id"]: len(r["diagnoses"]) for r in practice.live_records("encounters")})
    posted = http.post(f"{base}/Encounter/_search", data={"patient": "PAT0000007"}, headers=headers)
    assert [e["resource"]["id"] for e in posted.json()["entry"]] == [r["id"] for r in every["Encounter"]
                                                                      if r["subject"]["reference"] == "Patient/PAT0000007"]
    by_ids = resources(http, f"{base}/Patient?_id=PAT0000003,PAT0000001,PAT9999999", headers)
    assert [r["id"] for r in by_ids] == ["PAT0000001", "PAT0000003"]
    assert http.get(f"{base}/Patient?_id=PAT1", headers=headers).json().get("entry") is None
    is_outcome(http.get(f"{base}/Patient/PAT1", headers=headers), 404)


@pytest.mark.parametrize("type_name", list(FHIR_MODULES))
def test_resources_are_valid_fhir_r4(shared_sandbox, http, type_name):
    account = backend(shared_sandbox)
    headers = token_headers(http, account)
    model = fhir_class(type_name)
    count = 0
    for bundle in follow(http, f"{account['fhir_base_url']}/{type_name}?_count=200", headers):
        Bundle.model_validate(bundle)
        for entry in bundle.get("entry", []):
            model.model_validate(entry["resource"])
            count += 1
    assert count > 0
    one = http.get(f"{account['fhir_base_url']}/{type_name}/{entry['resource']['id']}", headers=headers)
    assert one.status_code == 200 and one.headers["content-type"] == "application/fhir+json"
    assert model.model_validate(one.json()).id == entry["resource"]["id"] and one.json() == entry["resource"]
    is_outcome(http.get(f"{account['fhir_base_url']}/{type_name}/XX0000000", headers=headers), 404)


def test_the_group_lists_every_patient(shared_sandbox, http):
    account = backend(shared_sandbox)
    headers = token_headers(http, account)
    bundle = http.get(f"{account['fhir_base_url']}/Group", headers=headers).json()
    Bundle.model_validate(bundle)
    group = Group.model_validate(bundle["entry"][0]["resource"])
    assert (group.id, group.type, group.actual, group.quantity) == ("all-patients", "person", True, SCALE)
    assert http.get(f"{account['fhir_base_url']}/Group/all-patients", headers=headers).json()["id"] == "all-patients"
    is_outcome(http.get(f"{account['fhir_base_url']}/Group/some-group", headers=headers), 404)


def test_changes_show_in_last_updated_and_deleted_records_disappear(sandbox, http):
    account = backend(sandbox)
    headers = token_headers(http, account)
    base = account["fhir_base_url"]
    before = datetime.now(UTC)
    time.sleep(0.01)
    changed = set_knobs(sandbox, changes=4, resource="patients")["changed"]["patients"]
    since = before.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    recent = resources(http, f"{base}/Patient?_lastUpdated=gt{since}&_count=2", headers)
    assert sorted(r["id"] for r in recent) == sorted(set(changed))
    assert all(r["meta"]["lastUpdated"] > since for r in recent)

    deleted = set_knobs(sandbox, deletes=3, resource="appointments")["deleted"]["appointments"]
    gone_patient = set_knobs(sandbox, deletes=1, resource="patients")["deleted"]["patients"][0]
    for appointment in deleted:
        is_outcome(http.get(f"{base}/Appointment/{appointment}", headers=headers), 404)
    listed = {r["id"] for r in resources(http, f"{base}/Appointment?_count=200", headers)}
    assert not listed & set(deleted) and len(listed) == state(sandbox)["appointments"] == 3 * SCALE - 3
    is_outcome(http.get(f"{base}/Patient/{gone_patient}", headers=headers), 404)
    is_outcome(http.get(f"{base}/Coverage/{gone_patient}-cov-1", headers=headers), 404)
    assert gone_patient not in {r["id"] for r in resources(http, f"{base}/Patient?_count=200", headers)}
    created = set_knobs(sandbox, creates=2, resource="patients")["created"]["patients"]
    assert {r["id"] for r in resources(http, f"{base}/Patient?_lastUpdated=gt{since}", headers)} >= set(created)


# --- the rate limit -------------------------------------------------------------------------------------------------
def test_rate_limit_is_per_clock_minute_with_no_retry_after(sandbox, http):
    clock = FakeClock(next_minute_start() + 1)
    vendor = vendor_of(sandbox)
    vendor.fhir_clock = clock
    assert set_knobs(sandbox, fhir_rate_limit_per_minute=5)["fhir"] == {"fhir_rate_limit_per_minute": 5}
    account = backend(sandbox)
    base = account["fhir_base_url"]

    headers = token_headers(http, account, now=clock.now)  # 1: the token call counts
    assert http.get(f"{base}/metadata").status_code == 200  # 2: so does metadata
    for _ in range(3):  # 3 … 5
        assert http.get(f"{base}/Patient?_count=1", headers=headers).status_code == 200
    clock.now += 50
    for _ in range(2):  # the 6th and every request after it, until the minute ends
        refused = http.get(f"{base}/Patient?_count=1", headers=headers)
        assert "retry-after" not in refused.headers
        assert is_outcome(refused, 429)["issue"][0]["code"] == "throttled"
    is_outcome(http.post(account["token_url"], data={}), 429)  # the token endpoint too
    assert state(sandbox)["fhir_429s"] == 3
    # The portal has its own limits: its paths are not counted.
    with httpx.Client(base_url=sandbox.url + "/ecw", timeout=10) as portal:
        assert portal.get("/patients", headers=bearer(portal, sandbox)).status_code == 200

    clock.now += 9  # the next clock minute: a fresh window
    assert http.get(f"{base}/Patient?_count=1", headers=headers).status_code == 200
    vendor.fhir_rate_limit_per_minute = 250
    for _ in range(20):
        assert http.get(f"{base}/metadata").status_code == 200
    assert state(sandbox)["fhir_429s"] == 3

    bad = httpx.post(f"{sandbox.url}/_sandbox/mutate", json={"vendor": "eclinicalworks", "fhir_rate_limit_per_minute": -1})
    assert bad.status_code == 400 and vendor.fhir_rate_limit_per_minute == 250


# --- Bulk Data --------------------------------------------------------------------------------------------------------
def test_bulk_export_kick_off_progress_manifest_and_files(sandbox, http):
    account = backend(sandbox, "bulk")
    headers = token_headers(http, account)
    base = account["fhir_base_url"]
    url = f"{base}/Group/all-patients/$export"
    is_outcome(http.get(url, headers=headers), 400)  # no Prefer: respond-async
    is_outcome(http.get(url, headers={"Prefer": "respond-async"}), 401)

    kicked = http.get(url, headers={**headers, "Prefer": "respond-async", "Accept": "application/fhir+json"})
    assert kicked.status_code == 202 and kicked.headers["retry-after"] == "2"
    status_url = kicked.headers["content-location"]
    assert status_url.startswith(f"{base}/bulkstatus/")
    progress = []
    while True:
        answer = http.get(status_url, headers=headers)
        if answer.status_code == 200:
            break
        assert answer.status_code == 202 and answer.headers["retry-after"] == "2"
        progress.append(int(answer.headers["x-progress"].removesuffix("%")))
        assert len(progress) < 100
        time.sleep(0.02)
    assert len(progress) >= 2 and progress == sorted(progress) and 0 <= progress[0] <= 33 and progress[-1] < 100
    manifest = answer.json()
    assert manifest["requiresAccessToken"] is True and manifest["error"] == [] and manifest["request"] == url
    assert datetime.fromisoformat(manifest["transactionTime"]) <= datetime.now(UTC)
    assert http.get(status_url, headers=headers).json() == manifest  # polling again answers the same manifest

    practice = vendor_of(sandbox).practice
    counts = Counter()
    for output in manifest["output"]:
        lines = ndjson(http, output["url"], headers)
        assert len(lines) == output["count"] and {r["resourceType"] for r in lines} == {output["type"]}
        fhir_class(output["type"]).model_validate(lines[0])
        counts[output["type"]] += len(lines)
        is_outcome(http.get(output["url"]), 401)  # requiresAccessToken
    assert set(counts) == set(FHIR_MODULES)
    assert counts["Patient"] == SCALE and counts["Encounter"] == practice.table("encounters").live_count()
    assert counts["Condition"] == sum(len(e["diagnoses"]) for e in practice.live_records("encounters"))
    patients = ndjson(http, next(o["url"] for o in manifest["output"] if o["type"] == "Patient"), headers)
    assert [p["id"] for p in patients] == [practice.ref("patients", i) for i in range(SCALE)]

    # Another client can neither poll nor download this client's export.
    others = token_headers(http, backend(sandbox, "sync"))
    is_outcome(http.get(status_url, headers=others), 404)
    is_outcome(http.get(manifest["output"][0]["url"], headers=others), 404)
    assert state(sandbox)["fhir_exports"] == 1


def test_bulk_export_type_since_and_file_size(sandbox, http):
    set_knobs(sandbox, fhir_export_polls=0, fhir_export_file_size=60)
    account = backend(sandbox, "bulk")
    headers = token_headers(http, account)
    base = account["fhir_base_url"]

    manifest = finish(http, export(http, base, headers, _type="Patient,Observation"), headers)
    assert [o["type"] for o in manifest["output"]] == ["Patient"] * 4 + ["Observation"] * len(manifest["output"][4:])
    assert [o["count"] for o in manifest["output"][:4]] == [60, 60, 60, 20]
    patient_ids = [r["id"] for o in manifest["output"][:4] for r in ndjson(http, o["url"], headers)]
    assert len(patient_ids) == len(set(patient_ids)) == SCALE
    # Files cut inside an encounter's observations still give each observation once, in search order.
    observation_ids = [r["id"] for o in manifest["output"][4:] for r in ndjson(http, o["url"], headers)]
    assert all(o["count"] == 60 for o in manifest["output"][4:-1])
    assert observation_ids == [r["id"] for r in resources(http, f"{base}/Observation?_count=200", headers)]

    since = datetime.now(UTC)
    time.sleep(0.01)
    changed = set_knobs(sandbox, changes=5, resource="patients")["changed"]["patients"]
    encounters = set_knobs(sandbox, changes=3, resource="encounters")["changed"]["encounters"]
    manifest = finish(http, export(http, base, headers, _type="Patient,Coverage,Condition",
                                   _since=since.isoformat().replace("+00:00", "Z")), headers)
    found = {o["type"]: [r for r in ndjson(http, o["url"], headers)] for o in manifest["output"]}
    assert sorted(r["id"] for r in found["Patient"]) == sorted(set(changed))
    assert {r["beneficiary"]["reference"] for r in found.get("Coverage", [])} <= {f"Patient/{p}" for p in changed}
    assert {r["encounter"]["reference"] for r in found["Condition"]} == {f"Encounter/{e}" for e in encounters}
    assert all(r["meta"]["lastUpdated"] > since.strftime("%Y-%m-%dT%H:%M:%S.%fZ") for rows in found.values() for r in rows)
    assert manifest["request"].endswith("_type=Patient%2CCoverage%2CCondition&_since=" + since.isoformat().replace("+00:00", "Z")
                                        .replace(":", "%3A"))

    # A later _since than anything: an empty export.
    later = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert finish(http, export(http, base, headers, path="Patient/$export", _since=later), headers)["output"] == []


def test_one_export_at_a_time_and_delete_cancels(sandbox, http):
    set_knobs(sandbox, fhir_export_polls=1000)
    account = backend(sandbox, "bulk")
    headers = token_headers(http, account)
    base = account["fhir_base_url"]
    status_url = export(http, base, headers, _type="Patient")
    assert http.get(status_url, headers=headers).status_code == 202
    second = http.get(f"{base}/Patient/$export", headers={**headers, "Prefer": "respond-async"})
    assert "already in progress" in is_outcome(second, 429)["issue"][0]["diagnostics"]
    assert "retry-after" not in second.headers
    # Another client's export runs alongside.
    other = token_headers(http, backend(sandbox, "sync"))
    other_status = export(http, base, other, _type="Location")

    cancelled = http.delete(status_url, headers=headers)
    assert cancelled.status_code == 202
    is_outcome(http.get(status_url, headers=headers), 404)
    is_outcome(http.delete(status_url, headers=headers), 404)
    assert http.get(other_status, headers=other).status_code == 202

    set_knobs(sandbox, fhir_export_polls=0)
    manifest = finish(http, export(http, base, headers, _type="Location"), headers)
    assert [o["count"] for o in manifest["output"]] == [state(sandbox)["facilities"]]
    forget = http.delete(manifest["output"][0]["url"].split("/bulkfiles/")[0] + "/bulkstatus/"
                         + manifest["output"][0]["url"].split("/bulkfiles/")[1].split("/")[0], headers=headers)
    assert forget.status_code == 202
    is_outcome(http.get(manifest["output"][0]["url"], headers=headers), 404)
    counts = state(sandbox)
    assert (counts["fhir_exports"], counts["fhir_export_conflicts"]) == (3, 1)


def test_exports_finish_after_seconds_by_the_vendors_clock(sandbox, http):
    clock = FakeClock(time.time())
    vendor_of(sandbox).fhir_clock = clock
    set_knobs(sandbox, fhir_export_polls=0, fhir_export_seconds=30, fhir_export_retry_after_s=120)
    account = backend(sandbox, "bulk")
    headers = token_headers(http, account, now=clock.now)
    kicked = http.get(f"{account['fhir_base_url']}/Patient/$export", headers={**headers, "Prefer": "respond-async"},
                      params={"_type": "Location"})
    assert kicked.headers["retry-after"] == "120"
    clock.now += 15
    waiting = http.get(kicked.headers["content-location"], headers=headers)
    assert (waiting.status_code, waiting.headers["x-progress"], waiting.headers["retry-after"]) == (202, "50%", "120")
    clock.now += 15
    assert finish(http, kicked.headers["content-location"], headers)["output"][0]["type"] == "Location"


def test_a_large_practice_exports_in_files_made_on_download():
    """At scale 100,000 the plan holds cursors only; each file is generated when it is fetched."""
    with running_sandbox(scale=100_000) as sb:
        set_knobs(sb, fhir_export_polls=0)
        account = backend(sb, "bulk")
        with httpx.Client(timeout=60) as http:
            headers = token_headers(http, account)
            manifest = finish(http, export(http, account["fhir_base_url"], headers, _type="Patient"), headers, polls=200)
            assert [o["count"] for o in manifest["output"]] == [10_000] * 10
            exported = vendor_of(sb).__dict__["fhir_state"].exports
            assert all(len(vars(f)) == 5 for e in exported.values() for f in e.files)  # a file is two cursors, a type, a number, a count
            last = ndjson(http, manifest["output"][-1]["url"], headers)
            assert [r["id"] for r in last[:1] + last[-1:]] == ["PAT0090000", "PAT0099999"]
            # A search deep into the practice reads only its page.
            page = http.get(f"{account['fhir_base_url']}/Encounter", params={"patient": "PAT0099999"}, headers=headers)
            assert all(e["resource"]["subject"]["reference"] == "Patient/PAT0099999" for e in page.json().get("entry", []))


# --- hostile input -------------------------------------------------------------------------------------------------
def test_hostile_input_answers_4xx_operation_outcomes(shared_sandbox, http):
    account = backend(shared_sandbox)
    headers = token_headers(http, account)
    base = account["fhir_base_url"]
    export_headers = {**headers, "Prefer": "respond-async"}
    cases = [
        ("GET", "/Patient?_count=-1", headers, 400), ("GET", "/Patient?_count=abc", headers, 400),
        ("GET", "/Patient?_count=99999999999999999999", headers, 400), ("GET", "/Patient?_count=%C2%B2", headers, 400),
        ("GET", "/Patient?_page_token=!!!", headers, 400), ("GET", "/Patient?_page_token=OTk5OTk5OTk5OTk5OTk5OS4w", headers, 400),
        ("GET", "/Patient?_page_token=" + "A" * 5000, headers, 400), ("GET", "/Patient?name=smith", headers, 400),
        ("GET", "/Patient?_id=../../etc/passwd", headers, 400), ("GET", "/Patient?_id=" + ",".join(["PAT0000001"] * 101), headers, 400),
        ("GET", "/Encounter?patient=%00%01", headers, 400), ("GET", "/Patient?patient=PAT0000001", headers, 400),
        ("GET", "/Patient?_lastUpdated=yesterday", headers, 400), ("GET", "/Patient?_lastUpdated=gtnot-a-date", headers, 400),
        ("GET", "/Patient?_lastUpdated=gt2026-01-01T00:00:00", headers, 400), ("GET", "/Patient?_format=xml", headers, 400),
        ("GET", "/Patient/" + "A" * 500, headers, 400), ("GET", "/Patient/%E2%98%83", headers, 400),
        ("GET", "/Patient/PAT0000001/_history", headers, 404), ("GET", "/Condition/ENC0000000-dx-99", headers, 404),
        ("GET", "/Condition/-dx-1", headers, 404), ("GET", "/Coverage/PAT0000001", headers, 404),
        ("GET", "/Patient/PAT99999999999999999", headers, 404), ("GET", "/Unknown", headers, 404), ("GET", "/%ZZ", headers, 404),
        ("GET", "//Patient", headers, 404), ("GET", "", headers, 404),
        ("POST", "/Patient", headers, 405), ("DELETE", "/Patient/PAT0000001", headers, 405), ("PUT", "/metadata", headers, 405),
        ("GET", "/Patient/_search", headers, 405),
        ("GET", "/Group/all-patients/$export?_type=Banana", export_headers, 400),
        ("GET", "/Group/all-patients/$export?_type=,,", export_headers, 400),
        ("GET", "/Group/all-patients/$export?_since=last-week", export_headers, 400),
        ("GET", "/Group/all-patients/$export?_since=2026-01-01", export_headers, 400),
        ("GET", "/Group/all-patients/$export?_typeFilter=Patient%3Factive%3Dtrue", export_headers, 400),
        ("GET", "/Group/all-patients/$export?_outputFormat=text/csv", export_headers, 400),
        ("GET", "/Group/all-patients/$export", {**export_headers, "Accept": "application/xml"}, 400),
        ("POST", "/Group/all-patients/$export", export_headers, 405), ("GET", "/Group/nobody/$export", export_headers, 404),
        ("GET", "/$export", export_headers, 404), ("GET", "/Practitioner/$export", export_headers, 404),
        ("GET", "/bulkstatus/not-a-job", headers, 404), ("GET", "/bulkstatus/" + "a" * 32, headers, 404),
        ("GET", "/bulkstatus", headers, 404), ("GET", "/bulkfiles/" + "a" * 32 + "/Patient-1.ndjson", headers, 404),
        ("GET", "/bulkfiles/x/..%2F..%2Fmetadata", headers, 404),
        ("GET", "/Patient", {"Authorization": "Bearer " + "x" * 10_000}, 401), ("GET", "/Patient", {"Authorization": "Basic Zm9vOmJhcg=="}, 401),
    ]
    for method, path, sent, status in cases:
        answer = http.request(method, base + path, headers=sent)
        assert answer.status_code == status, (method, path, answer.text)
        is_outcome(answer, status)

    for body in (b"\xff\xfe\x00garbage", b"grant_type=client_credentials&client_assertion=" + b"A" * 9000,
                 b"grant_type=client_credentials&client_assertion_type=" + ASSERTION_TYPE.encode() + b"&client_assertion=e30.e30.e30",
                 b"grant_type=client_credentials&client_assertion_type=" + ASSERTION_TYPE.encode() + b"&client_assertion=%00%00"):
        answer = http.post(account["token_url"], content=body, headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert 400 <= answer.status_code < 500 and "error" in answer.json(), body[:40]
    # The server still serves.
    assert http.get(f"{base}/Patient/PAT0000001", headers=headers).status_code == 200


def test_page_tokens_parse_only_as_given():
    assert ecw_fhir._encode_page_token((12, 3)) == "MTIuMw"
    assert ecw_fhir._page_token({"_page_token": "MTIuMw"}) == (12, 3)
    with pytest.raises(ecw_fhir.HttpError):
        ecw_fhir._page_token({"_page_token": base64.urlsafe_b64encode(b"-1.0").decode()})
