"""Welkin's signed pings: the hub's endpoint (signature, age, shape, duplicates) and the whole loop
over real HTTP — a change in the simulator, its ping to the live hub, the pull, the canonical record."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
from django.db import OperationalError

from canonical import models as m
from connectors.models import SyncRun
from connectors.tasks import pull_resource
from connectors.welkin import webhooks
from connectors.welkin.connector import webhook_path
from sandbox.welkin.vendor import sign
from tests.connectors.welkin.conftest import connect, sync_all
from tests.connectors.welkin.expect import differences, expected_patient, source, stored_patient
from tests.factories import ConnectionFactory, CredentialFactory

pytestmark = pytest.mark.django_db

SECRET = "whsec-test-0123456789"


@pytest.fixture
def hooked(tenant_a):
    """A Welkin connection for the webhook alone: no vendor is called, so no sandbox is started."""
    connection = ConnectionFactory(tenant=tenant_a, vendor="welkin", base_url="https://api.welkinhealth.example", display_name="Welkin",
                                   options={"tenant_name": "northwind", "instance_name": "live"})
    CredentialFactory(connection=connection, extra=json.dumps({"webhook_secret": SECRET}))
    return connection


def ping(entity="PATIENT", subtype="PATIENT_UPDATED", source_id="WPAT0000007", event_time="2026-11-22T04:00:00.000001Z") -> dict:
    return {"sourceId": source_id, "patientId": "WPAT0000007", "tenantName": "northwind", "instanceName": "live",
            "eventEntity": entity, "eventSubtype": subtype, "eventTime": event_time}


def post(client, connection, body: Any, *, secret: str = SECRET, timestamp: int | None = None, signature: str | None = None,
         path: str | None = None):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    headers = {"HTTP_X_WELKIN_TIMESTAMP": stamp, "HTTP_X_WELKIN_SIGNATURE": signature if signature is not None else sign(secret, stamp, raw)}
    return client.post(path or webhook_path(connection), raw, content_type="application/json", **headers)


@pytest.mark.parametrize(("entity", "resource"), [("PATIENT", "patients"), ("USER", "coaches"), ("CALENDAR", "calendar_events"),
                                                  ("CARE_PLAN", "care_plans"), ("ASSESSMENT", "assessments"), ("ENCOUNTER", "encounters")])
def test_a_signed_ping_is_accepted_and_its_pull_enqueued_after_commit(hooked, client, sent, django_capture_on_commit_callbacks,
                                                                       entity, resource):
    with django_capture_on_commit_callbacks(execute=True):
        response = post(client, hooked, ping(entity=entity, subtype=f"{entity}_UPDATED"))
        assert sent == []  # not before the commit

    assert (response.status_code, response.json()) == (202, {"status": "accepted"})
    assert sent == [("pull_resource", {"connection_id": hooked.pk, "resource": resource, "external_id": "WPAT0000007"})]


def test_the_webhook_is_routed_under_hooks_welkin(hooked):
    assert webhook_path(hooked) == f"/hooks/welkin/{hooked.public_id}/"


def test_the_same_delivery_twice_pulls_once(hooked, client, sent, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        answers = [post(client, hooked, ping()).json()["status"] for _ in range(2)]

    assert answers == ["accepted", "duplicate"]
    assert [kwargs["external_id"] for _, kwargs in sent] == ["WPAT0000007"]


def test_a_second_change_while_the_pull_is_queued_is_covered_by_it(hooked, client, sent, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        first = post(client, hooked, ping(event_time="2026-11-22T04:00:00.000001Z")).json()["status"]
        second = post(client, hooked, ping(event_time="2026-11-22T04:00:09.000001Z")).json()["status"]
        other = post(client, hooked, ping(source_id="WPAT0000008")).json()["status"]

    assert (first, second, other) == ("accepted", "covered", "accepted")
    assert [kwargs["external_id"] for _, kwargs in sent] == ["WPAT0000007", "WPAT0000008"]


@pytest.mark.parametrize(("case", "status", "detail"), [
    ("wrong-signature", 401, "The signature does not match."),
    ("other-secret", 401, "The signature does not match."),
    ("tampered-body", 401, "The signature does not match."),
    ("old-timestamp", 400, "The ping's timestamp is more than 5 minutes from now."),
    ("future-timestamp", 400, "The ping's timestamp is more than 5 minutes from now."),
    ("no-signature", 400, "X-Welkin-Timestamp (Unix seconds) and X-Welkin-Signature are required."),
    ("timestamp-not-a-number", 400, "X-Welkin-Timestamp (Unix seconds) and X-Welkin-Signature are required."),
    ("unknown-connection", 404, "Not found."),
    ("other-vendor", 404, "Not found."),
    ("no-secret-set", 404, "Not found."),
    ("not-json", 400, "The body is not JSON."),
    ("not-an-object", 400, "The body must be a JSON object."),
    ("no-source-id", 400, "sourceId: Field required"),
    ("id-not-a-segment", 400, "sourceId: String should match pattern"),
    ("unknown-entity", 422, "eventEntity must be one of PATIENT, USER, CALENDAR"),
    ("too-large", 413, "The ping is larger than 16 KiB."),
])
def test_a_refused_ping_says_why_and_enqueues_nothing(hooked, tenant_a, client, sent, django_capture_on_commit_callbacks, case, status,
                                                      detail):
    now = int(time.time())
    other = ConnectionFactory(tenant=tenant_a, vendor="wellsky_pcc", display_name="PCC")
    CredentialFactory(connection=other, extra=json.dumps({"webhook_secret": SECRET}))
    bare = ConnectionFactory(tenant=tenant_a, vendor="welkin", display_name="Welkin without secret")
    CredentialFactory(connection=bare, extra="")
    signed = json.dumps(ping()).encode()
    calls = {
        "wrong-signature": lambda: post(client, hooked, ping(), signature="0" * 64),
        "other-secret": lambda: post(client, hooked, ping(), secret="whsec-someone-else"),
        "tampered-body": lambda: post(client, hooked, json.dumps(ping(source_id="WPAT0000009")).encode(),
                                      signature=sign(SECRET, str(now), signed), timestamp=now),
        "old-timestamp": lambda: post(client, hooked, ping(), timestamp=now - 301),
        "future-timestamp": lambda: post(client, hooked, ping(), timestamp=now + 301),
        "no-signature": lambda: client.post(webhook_path(hooked), signed, content_type="application/json"),
        "timestamp-not-a-number": lambda: client.post(webhook_path(hooked), signed, content_type="application/json",
                                                      HTTP_X_WELKIN_TIMESTAMP="yesterday", HTTP_X_WELKIN_SIGNATURE="ab"),
        "unknown-connection": lambda: post(client, hooked, ping(), path=f"/hooks/welkin/{uuid.uuid4()}/"),
        "other-vendor": lambda: post(client, hooked, ping(), path=f"/hooks/welkin/{other.public_id}/"),
        "no-secret-set": lambda: post(client, hooked, ping(), path=f"/hooks/welkin/{bare.public_id}/"),
        "not-json": lambda: post(client, hooked, b"{not json"),
        "not-an-object": lambda: post(client, hooked, ["PATIENT", "WPAT0000007"]),
        "no-source-id": lambda: post(client, hooked, {k: v for k, v in ping().items() if k != "sourceId"}),
        "id-not-a-segment": lambda: post(client, hooked, ping(source_id="../admin")),
        "unknown-entity": lambda: post(client, hooked, ping(entity="INVOICE", subtype="INVOICE_CREATED")),
        "too-large": lambda: post(client, hooked, {**ping(), "pad": "x" * 17_000}),
    }
    with django_capture_on_commit_callbacks(execute=True):
        response = calls[case]()

    assert response.status_code == status
    assert response.json()["detail"].startswith(detail)
    assert sent == []


def test_a_ping_answers_only_to_post(hooked, client):
    assert client.get(webhook_path(hooked)).status_code == 405


@pytest.mark.parametrize("why", ["disabled", "program"])
def test_an_ignored_ping_is_acknowledged_and_pulls_nothing(hooked, client, sent, django_capture_on_commit_callbacks, why):
    if why == "disabled":
        hooked.enabled = False
        hooked.save(update_fields=["enabled"])
    body = ping(entity="PROGRAM", subtype="PROGRAM_UPDATED") if why == "program" else ping()
    with django_capture_on_commit_callbacks(execute=True):
        response = post(client, hooked, body)

    assert (response.status_code, response.json()) == (202, {"status": "ignored"})
    assert sent == []


# --- the whole loop, over real HTTP: the simulator pings the live hub -------------------------------------------------
def _wait_for(predicate, timeout_s: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


def _subscribe(control, connection, live_server) -> None:
    """What the tenant's admin does in Welkin's console: enter the hub's URL for this connection."""
    answer = control.post("/_sandbox/accounts", json={"vendor": "welkin", "username": "northwind",
                                                      "webhook_url": f"{live_server.url}{webhook_path(connection)}"})
    assert answer.status_code == 200


def _pulls(sent) -> list[dict]:
    return [kwargs for actor, kwargs in sent if actor == "pull_resource"]


@pytest.mark.django_db(transaction=True)
def test_a_change_in_welkin_is_pinged_pulled_and_upserted(tenant_a, sandbox, control, accounts, live_server, sent):
    connection = connect(tenant_a, sandbox, accounts["northwind"])
    sync_all(connection, resources=["coaches", "patients"])
    _subscribe(control, connection, live_server)

    done = control.post("/_sandbox/mutate", json={"vendor": "welkin", "changes": 1, "resource": "patients"}).json()
    (changed,) = done["changed"]["patients"]
    messages = _wait_for(lambda: _pulls(sent))
    assert messages == [{"connection_id": connection.pk, "resource": "patients", "external_id": changed}]
    before = stored_patient(m.Patient.objects.get(source_connection=connection, external_id=changed))
    assert before != expected_patient(source(sandbox, "patients")[changed])  # the hub does not know yet

    pull_resource.fn(**messages[0])  # what the worker runs for that message

    patient = m.Patient.objects.get(source_connection=connection, external_id=changed)
    assert stored_patient(patient) == expected_patient(source(sandbox, "patients")[changed])
    assert SyncRun.objects.filter(connection=connection).count() == 2  # the initial load's two runs: the pull made none
    (delivery,) = sandbox.vendor("welkin").deliveries
    assert (delivery.status, delivery.attempts, delivery.eventSubtype) == ("DELIVERED", 1, "PATIENT_UPDATED")


@pytest.mark.django_db(transaction=True)
def test_pings_for_one_record_pull_once_until_the_pull_starts(tenant_a, sandbox, control, accounts, live_server, sent):
    connection = connect(tenant_a, sandbox, accounts["northwind"])
    sync_all(connection, resources=["coaches", "patients", "calendar_events"])
    _subscribe(control, connection, live_server)
    vendor = sandbox.vendor("welkin")
    event_id = source(sandbox, "calendar_events").popitem()[0]
    table = vendor.tenant().table("calendar_events")

    for _ in range(3):  # three reschedules in Welkin's UI, three pings
        table.change(table.index_of(event_id))
        vendor.notify(vendor.tenant(), "calendar_events", "changed", event_id)
    _wait_for(lambda: all(d.status == "DELIVERED" for d in vendor.deliveries) and len(vendor.deliveries) == 3)

    assert _pulls(sent) == [{"connection_id": connection.pk, "resource": "calendar_events", "external_id": event_id}]
    pull_resource.fn(**_pulls(sent)[0])
    assert differences(sandbox, connection, ["calendar_events"]) == []  # the one pull read the latest state

    table.change(table.index_of(event_id))  # a change after the pull started gets a pull of its own
    vendor.notify(vendor.tenant(), "calendar_events", "changed", event_id)
    _wait_for(lambda: len(_pulls(sent)) == 2)


@pytest.mark.django_db(transaction=True)
def test_when_the_hub_is_down_welkin_retries_and_the_record_still_arrives(tenant_a, sandbox, control, accounts, live_server, sent,
                                                                          monkeypatch):
    connection = connect(tenant_a, sandbox, accounts["northwind"])
    _subscribe(control, connection, live_server)
    accept = webhooks.accept_ping
    answered: list[str] = []

    def down_twice(connection, ping):
        answered.append(ping.sourceId)
        if len(answered) <= 2:
            raise OperationalError("the database is restarting")  # the hub answers 500
        return accept(connection, ping)

    monkeypatch.setattr(webhooks, "accept_ping", down_twice)

    done = control.post("/_sandbox/mutate", json={"vendor": "welkin", "creates": 1, "resource": "coaches"}).json()
    (new_id,) = done["created"]["coaches"]
    messages = _wait_for(lambda: _pulls(sent))
    delivery = _wait_for(lambda: next((d for d in sandbox.vendor("welkin").deliveries if d.status != "SENT"), None))

    assert (delivery.status, delivery.attempts, delivery.responseStatus) == ("DELIVERED", 3, 202)
    assert answered == [new_id] * 3
    assert messages == [{"connection_id": connection.pk, "resource": "coaches", "external_id": new_id}]
    pull_resource.fn(**messages[0])
    assert differences(sandbox, connection, ["coaches"]) == [
        f"coaches: missing {sorted(set(source(sandbox, 'coaches')) - {new_id})[:5]}, extra []"]  # only the pinged one is here


@pytest.mark.django_db(transaction=True)
def test_a_ping_that_never_arrives_is_caught_by_the_reconciliation_sweep(tenant_a, sandbox, control, accounts, live_server, sent,
                                                                         monkeypatch):
    connection = connect(tenant_a, sandbox, accounts["northwind"])
    sync_all(connection, resources=["coaches", "patients"])
    _subscribe(control, connection, live_server)
    sandbox.vendor("welkin").delivery_retries = 1
    monkeypatch.setattr(webhooks, "accept_ping", lambda connection, ping: (_ for _ in ()).throw(OperationalError("down")))

    done = control.post("/_sandbox/mutate", json={"vendor": "welkin", "changes": 1, "resource": "patients"}).json()
    (changed,) = done["changed"]["patients"]
    delivery = _wait_for(lambda: next((d for d in sandbox.vendor("welkin").deliveries if d.status != "SENT"), None))
    assert (delivery.status, delivery.attempts) == ("FAILED", 2)
    assert _pulls(sent) == []

    (run,) = sync_all(connection, resources=["patients"])  # the scheduled sweep

    assert (run.fetched, run.updated) == (1, 1)
    assert differences(sandbox, connection, ["patients"]) == []


@pytest.mark.django_db(transaction=True)  # autocommit, as in production: the pull is queued inside the request
def test_a_ping_whose_pull_cannot_be_queued_is_not_remembered(hooked, client, sent, monkeypatch):
    # The broker is down: the hub answers 500, and Welkin's retry of the same delivery is queued then.
    client.raise_request_exception = False
    with monkeypatch.context() as broker_down:
        broker_down.setattr(pull_resource, "send", lambda **kwargs: (_ for _ in ()).throw(ConnectionError("broker down")))
        assert post(client, hooked, ping()).status_code == 500

    retried = post(client, hooked, ping())

    assert (retried.status_code, retried.json()) == (202, {"status": "accepted"})
    assert [kwargs["external_id"] for _, kwargs in sent] == ["WPAT0000007"]


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_pulls_what_welkin_pings(tenant_a, sandbox, control, accounts, live_server, sent, drain):
    connection = connect(tenant_a, sandbox, accounts["northwind"])
    sync_all(connection, resources=["coaches", "patients"])
    _subscribe(control, connection, live_server)

    done = control.post("/_sandbox/mutate", json={"vendor": "welkin", "creates": 1, "changes": 1, "resource": "patients"}).json()
    vendor = sandbox.vendor("welkin")
    _wait_for(lambda: len(vendor.deliveries) == 2 and all(d.status == "DELIVERED" for d in vendor.deliveries))
    drain("pull")

    assert {p["external_id"] for p in _pulls(sent)} == {*done["created"]["patients"], *done["changed"]["patients"]}
    assert differences(sandbox, connection, ["patients"]) == []
