"""The Welkin simulator on its own: tokens (v8 and the v1 JWT-bearer grant), Spring paging with
updatedAfter, writes, and signed notifications with retries and their audit."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import jwt
import pytest

from sandbox.server import Sandbox
from sandbox.welkin import Welkin

BASE = "/welkin/northwind/live"


@pytest.fixture
def vendor():
    return Welkin(seed=5, scale=30, retry_base_s=0.02, delivery_retries=3)


@pytest.fixture
def server(vendor):
    with Sandbox([vendor], port=0, seed=5) as sandbox:
        yield sandbox


@pytest.fixture
def http(server):
    with httpx.Client(base_url=server.url, timeout=10) as client:
        yield client


@pytest.fixture
def account(http) -> dict:
    return {a["username"]: a for a in http.get("/_sandbox/accounts").json()["welkin"]}["northwind"]


def token(http, account, tenant="northwind") -> str:
    answer = http.post(f"/welkin/{tenant}/admin/api_clients/{account['client_id']}", json={"secret": account["client_secret"]})
    assert answer.status_code == 200, answer.text
    return answer.json()["token"]


@pytest.fixture
def auth(http, account) -> dict:
    return {"Authorization": f"Bearer {token(http, account)}"}


class Receiver:
    """The hub's side of the webhook, as a tiny server: records each request, answers the next status."""

    def __init__(self, statuses: list[int]):
        self.statuses, self.requests = list(statuses), []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                return

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.requests.append((dict(self.headers), body))
                status = receiver.statuses.pop(0) if len(receiver.statuses) > 1 else receiver.statuses[0]
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/welkin/abc/"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _wait_for(predicate, timeout_s=10.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.02)
    raise AssertionError("timed out")


# --- tokens ---------------------------------------------------------------------------------------------------------
def test_the_api_client_gets_a_jwt_and_a_wrong_secret_gets_401(http, account):
    issued = token(http, account)
    claims = jwt.decode(issued, options={"verify_signature": False})
    assert (claims["sub"], claims["tenant"]) == ("switchboard", "northwind")
    assert 3590 <= claims["exp"] - claims["iat"] <= 3602

    wrong = http.post("/welkin/northwind/admin/api_clients/switchboard", json={"secret": "nope"})
    assert (wrong.status_code, wrong.json()["code"]) == (401, "INVALID_CLIENT")
    assert http.get("/welkin/northwind/admin/api_clients/switchboard").status_code == 405


def test_calls_need_a_live_token_and_an_expired_one_says_TOKEN_EXPIRED(http, account, vendor):  # noqa: N802
    assert http.get(f"{BASE}/patients").json()["code"] == "UNAUTHORIZED"
    http.post("/_sandbox/faults", json={"session_ttl_s": 1})
    headers = {"Authorization": f"Bearer {token(http, account)}"}
    assert http.get(f"{BASE}/patients", headers=headers).status_code == 200

    time.sleep(1.1)
    expired = http.get(f"{BASE}/patients", headers=headers)

    assert (expired.status_code, expired.json()["code"]) == (401, "TOKEN_EXPIRED")
    assert vendor.expired_refusals == 1


def test_a_token_works_only_for_its_own_tenant(http):
    lakeside = {a["username"]: a for a in http.get("/_sandbox/accounts").json()["welkin"]}["lakeside"]
    headers = {"Authorization": f"Bearer {token(http, lakeside, tenant='lakeside')}"}

    assert http.get("/welkin/lakeside/live/patients", headers=headers).status_code == 200
    assert http.get(f"{BASE}/patients", headers=headers).status_code == 403


def _assertion(account, server, **overrides) -> str:
    now = int(time.time())
    claims = {"iss": account["client_id"], "aud": f"{server.url}/welkin/v1/token", "exp": now + 300, "iat": now, "scope": "all", **overrides}
    return jwt.encode(claims, account["client_secret"], algorithm="HS256")


def test_the_v1_jwt_bearer_grant(http, server, account):
    grant = "urn:ietf:params:oauth:grant-type:jwt-bearer"
    ok = http.post("/welkin/v1/token", data={"grant_type": grant, "assertion": _assertion(account, server)})
    assert ok.status_code == 200 and ok.json()["token_type"] == "Bearer" and ok.json()["expires_in"] == 3600
    assert http.get(f"{BASE}/users", headers={"Authorization": f"Bearer {ok.json()['access_token']}"}).status_code == 200

    refusals = {
        "wrong-key": (jwt.encode({"iss": account["client_id"], "aud": f"{server.url}/welkin/v1/token", "exp": int(time.time()) + 60},
                                 "another-secret-of-thirty-two-bytes!", algorithm="HS256"), 401, "invalid_client"),
        "expired": (_assertion(account, server, exp=int(time.time()) - 10), 400, "invalid_grant"),
        "wrong-aud": (_assertion(account, server, aud="https://elsewhere.example/"), 400, "invalid_grant"),
        "unknown-client": (_assertion(account, server, iss="nobody"), 401, "invalid_client"),
        "not-a-jwt": ("abc", 400, "invalid_grant"),
    }
    for case, (assertion, status, error) in refusals.items():
        answer = http.post("/welkin/v1/token", data={"grant_type": grant, "assertion": assertion})
        assert (case, answer.status_code, answer.json()["error"]) == (case, status, error)
    wrong_grant = http.post("/welkin/v1/token", data={"grant_type": "client_credentials"})
    assert (wrong_grant.status_code, wrong_grant.json()["error"]) == (400, "unsupported_grant_type")


# --- reading ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["patients", "users", "calendar/events", "programs", "care-plans", "assessments", "encounters"])
def test_every_resource_pages_spring_style_to_the_end(http, auth, vendor, path):
    seen, number = [], 0
    while True:
        page = http.get(f"{BASE}/{path}", params={"page": number, "size": 7}, headers=auth).json()
        seen += [r["id"] for r in page["content"]]
        assert (page["number"], page["size"]) == (number, 7)
        if page["last"]:
            break
        number += 1
    assert number + 1 == page["totalPages"]
    assert len(seen) == len(set(seen)) == page["totalElements"]
    assert http.get(f"{BASE}/{path}/{seen[-1]}", headers=auth).json()["id"] == seen[-1]


def test_updated_after_lists_only_what_changed_in_updated_order(http, auth):
    everything = http.get(f"{BASE}/patients", params={"size": 100}, headers=auth).json()["content"]
    high = everything[-1]["updatedAt"]
    done = http.post("/_sandbox/mutate", json={"vendor": "welkin", "changes": 3, "creates": 1, "resource": "patients"}).json()

    changed = http.get(f"{BASE}/patients", params={"size": 100, "updatedAfter": high}, headers=auth).json()

    ids = [r["id"] for r in changed["content"]]
    assert set(ids) == set(done["changed"]["patients"]) | set(done["created"]["patients"])
    stamps = [r["updatedAt"] for r in changed["content"]]
    assert stamps == sorted(stamps) and stamps[0] > high


@pytest.mark.parametrize(("params", "field"), [({"size": 0}, "size"), ({"size": 101}, "size"), ({"page": -1}, "page"),
                                               ({"updatedAfter": "yesterday"}, "updatedAfter")])
def test_bad_paging_parameters_are_refused(http, auth, params, field):
    answer = http.get(f"{BASE}/patients", params=params, headers=auth)
    assert answer.status_code == 400 and field in answer.json()["detail"]


def test_a_deleted_record_answers_404(http, auth):
    done = http.post("/_sandbox/mutate", json={"vendor": "welkin", "deletes": 1, "resource": "assessments"}).json()
    (gone,) = done["deleted"]["assessments"]
    assert http.get(f"{BASE}/assessments/{gone}", headers=auth).json()["code"] == "NOT_FOUND"


# --- writing ----------------------------------------------------------------------------------------------------------
def test_create_patient_validates_and_honours_idempotency_keys(http, auth, vendor):
    before = vendor.tenant().table("patients").live_count()
    refused = http.post(f"{BASE}/patients", json={"firstName": "Ada"}, headers=auth)
    assert (refused.status_code, [e["field"] for e in refused.json()["errors"]]) == (422, ["lastName", "birthDate"])

    body = {"firstName": "Ada", "lastName": "Lovelace", "birthDate": "1950-12-10"}
    first = http.post(f"{BASE}/patients", json=body, headers={**auth, "Idempotency-Key": "k1"})
    again = http.post(f"{BASE}/patients", json=body, headers={**auth, "Idempotency-Key": "k1"})

    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    assert vendor.tenant().table("patients").live_count() == before + 1


def test_a_calendar_event_is_patched_and_a_bad_change_refused(http, auth):
    event = http.get(f"{BASE}/calendar/events", params={"size": 1}, headers=auth).json()["content"][0]
    moved = http.patch(f"{BASE}/calendar/events/{event['id']}", json={"start": "2026-12-01T15:00:00Z", "end": "2026-12-01T15:30:00Z"},
                       headers=auth)
    assert moved.status_code == 200 and (moved.json()["start"], moved.json()["end"]) == ("2026-12-01T15:00:00Z", "2026-12-01T15:30:00Z")
    for change in ({"start": "2026-12-01T16:00:00Z"}, {"status": "MAYBE"}, {"patientId": "WPAT0000001"}, {"userId": "WUSR9999999"}):
        assert http.patch(f"{BASE}/calendar/events/{event['id']}", json=change, headers=auth).status_code == 422, change
    assert http.get(f"{BASE}/calendar/events/{event['id']}", headers=auth).json()["start"] == "2026-12-01T15:00:00Z"


def test_an_assessment_is_filed_under_a_patient_and_scored(http, auth):
    answers = [{"question": f"q{i}", "answer": 2} for i in range(9)]
    made = http.post(f"{BASE}/patients/WPAT0000003/assessments", json={"formName": "PHQ-9", "answers": answers}, headers=auth)
    assert made.status_code == 201
    assert (made.json()["patientId"], made.json()["score"], made.json()["status"]) == ("WPAT0000003", 18, "COMPLETED")
    assert http.post(f"{BASE}/patients/WPAT9999999/assessments", json={"formName": "PHQ-9", "answers": []}, headers=auth).status_code == 404


# --- notifications ----------------------------------------------------------------------------------------------------
@pytest.fixture
def receivers():
    """Receiver(statuses) factory: each answers its statuses in turn, then the last one for ever."""
    made: list[Receiver] = []

    def make(statuses=(202,)) -> Receiver:
        made.append(Receiver(list(statuses)))
        return made[-1]

    yield make
    for hub in made:
        hub.close()


@pytest.fixture
def receiver(receivers):
    return receivers()


def _configure(http, url: str) -> None:
    assert http.post("/_sandbox/accounts", json={"vendor": "welkin", "username": "northwind", "webhook_url": url}).status_code == 200


def test_a_change_is_pinged_signed_and_without_phi(http, account, receiver, vendor):
    _configure(http, receiver.url)

    done = http.post("/_sandbox/mutate", json={"vendor": "welkin", "changes": 1, "resource": "calendar_events"}).json()
    (event_id,) = done["changed"]["calendar_events"]
    headers, body = _wait_for(lambda: receiver.requests and receiver.requests[0])

    stamp = headers["X-Welkin-Timestamp"]
    expected = hmac.new(account["webhook_secret"].encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    assert headers["X-Welkin-Signature"] == expected
    assert abs(int(stamp) - time.time()) < 5
    ping = json.loads(body)
    assert set(ping) == {"sourceId", "patientId", "tenantName", "instanceName", "eventEntity", "eventSubtype", "eventTime"}
    assert (ping["sourceId"], ping["eventEntity"], ping["eventSubtype"], ping["tenantName"], ping["instanceName"]) == (
        event_id, "CALENDAR", "CALENDAR_EVENT_UPDATED", "northwind", "live")
    assert ping["patientId"].startswith("WPAT")
    _wait_for(lambda: vendor.deliveries[0].status == "DELIVERED")


def test_a_failed_delivery_is_retried_until_the_hub_answers(http, auth, receivers, vendor):
    receiver = receivers([500, 503, 202])
    _configure(http, receiver.url)

    http.post("/_sandbox/mutate", json={"vendor": "welkin", "creates": 1, "resource": "patients"})

    delivery = _wait_for(lambda: vendor.deliveries and vendor.deliveries[0].status != "SENT" and vendor.deliveries[0])
    assert (delivery.status, delivery.attempts, delivery.responseStatus) == ("DELIVERED", 3, 202)
    bodies = {body for _, body in receiver.requests}
    assert len(receiver.requests) == 3 and len(bodies) == 1  # the same ping each time, signed afresh
    audit = http.get(f"{BASE}/webhooks/deliveries", headers=auth).json()["content"]
    assert [(d["status"], d["attempts"], d["eventSubtype"]) for d in audit] == [("DELIVERED", 3, "PATIENT_CREATED")]


def test_retries_are_bounded_and_the_delivery_ends_failed(http, receivers, vendor):
    receiver = receivers([500])
    _configure(http, receiver.url)

    http.post("/_sandbox/mutate", json={"vendor": "welkin", "deletes": 1, "resource": "assessments"})

    delivery = _wait_for(lambda: vendor.deliveries and vendor.deliveries[0].status != "SENT" and vendor.deliveries[0])
    assert (delivery.status, delivery.attempts, delivery.eventSubtype) == ("FAILED", 4, "ASSESSMENT_DELETED")  # 1 + 3 retries
    assert len(receiver.requests) == 4


def test_no_webhook_url_or_notify_false_sends_nothing(http, receiver, vendor):
    http.post("/_sandbox/mutate", json={"vendor": "welkin", "changes": 2})
    _configure(http, receiver.url)
    http.post("/_sandbox/mutate", json={"vendor": "welkin", "changes": 2, "notify": False})
    time.sleep(0.2)
    assert (vendor.deliveries, receiver.requests) == ([], [])


@pytest.mark.parametrize("values", [{"webhook_url": "ftp://hub.example/"}, {"webhook_secret": "short"}, {"token_ttl_s": 0}])
def test_tenant_settings_are_validated(http, values):
    answer = http.post("/_sandbox/accounts", json={"vendor": "welkin", "username": "northwind", **values})
    assert answer.status_code == 400


@pytest.mark.parametrize("spec", [{"changes": -1}, {"creates": True}, {"resource": "invoices"}, {"tenant": "nobody"}])
def test_a_bad_mutation_is_refused(http, spec):
    assert http.post("/_sandbox/mutate", json={"vendor": "welkin", **spec}).status_code == 400


def test_state_counts_live_records_of_every_tenant(http):
    state = http.get("/_sandbox/state").json()["welkin"]
    assert state["patients"] == 60 and state["coaches"] == 6 and state["programs"] == 6 and state["deliveries"] == 0
