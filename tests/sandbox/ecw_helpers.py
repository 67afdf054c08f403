"""Helpers for the eClinicalWorks sandbox tests: a running sandbox, logins by every MFA method, free slots."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta

import httpx
import pyotp

from sandbox.clearinghouse.vendor import Clearinghouse
from sandbox.ecw import scheduling
from sandbox.ecw.data import Practice
from sandbox.ecw.vendor import EClinicalWorks
from sandbox.server import Sandbox

SEED = 7
SCALE = 200
PASSWORD = f"sandbox-{SEED}"


@contextmanager
def running_sandbox(*, seed: int = SEED, scale: int = SCALE) -> Iterator[Sandbox]:
    """A clearinghouse and the practice behind one loopback server, polled often so that stopping is quick."""
    clearinghouse = Clearinghouse(seed=seed, era_delay_s=0.3)
    sandbox = Sandbox([clearinghouse, EClinicalWorks(clearinghouse=clearinghouse, seed=seed, scale=scale)], port=0, seed=seed)
    threading.Thread(target=sandbox.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    try:
        yield sandbox
    finally:
        sandbox.stop()


def vendor_of(sandbox: Sandbox) -> EClinicalWorks:
    return sandbox.vendor("eclinicalworks")  # type: ignore[return-value]


def account(sandbox: Sandbox, username: str) -> dict:
    return next(a for a in httpx.get(f"{sandbox.url}/_sandbox/accounts").json()["eclinicalworks"] if a["username"] == username)


def outbox(sandbox: Sandbox, channel: str) -> list[dict]:
    return httpx.get(f"{sandbox.url}/_sandbox/outbox", params={"channel": channel}).json()["messages"]


def login(client: httpx.Client, sandbox: Sandbox, username: str) -> dict:
    """Log in as an account, answering its MFA challenge (authenticator app, or the code sent by SMS or email)."""
    details = account(sandbox, username)
    first = client.post("/authenticate", json={"username": username, "password": details["password"]})
    assert first.status_code == 200, first.text
    if not first.json().get("mfa_required"):
        return first.json()
    challenge = first.json()
    if challenge["method"] == "totp":
        code = pyotp.TOTP(details["totp_secret"]).now()
    else:
        to = details["phone"] if challenge["method"] == "sms" else details["email"]
        code = [m for m in outbox(sandbox, challenge["method"]) if m["to"] == to][-1]["code"]
    second = client.post("/authenticate", json={"challenge_id": challenge["challenge_id"], "code": code})
    assert second.status_code == 200, second.text
    return second.json()


def bearer(client: httpx.Client, sandbox: Sandbox, username: str = "riverbend.api") -> dict[str, str]:
    return {"Authorization": f"Bearer {login(client, sandbox, username)['session_token']}"}


def state(sandbox: Sandbox) -> dict[str, int]:
    return httpx.get(f"{sandbox.url}/_sandbox/state").json()["eclinicalworks"]


def walk(client: httpx.Client, path: str, headers: dict[str, str], page_size: int = 50) -> list[dict]:
    """Every item of a paged list, page by page until has_more is false."""
    items, page = [], 1
    while True:
        answer = client.get(path, params={"page": page, "page_size": page_size}, headers=headers)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert (body["page"], body["page_size"]) == (page, page_size)
        items += body["items"]
        if not body["has_more"]:
            return items
        page += 1


def free_slot(practice: Practice, provider: int, *, after_days: int = 2, skip: int = 0) -> dict:
    """An open slot of a provider, at least `after_days` days from today."""
    day = practice.today + timedelta(days=after_days)
    for _ in range(60):
        slots = scheduling.free_slots(practice, provider, day)
        if len(slots) > skip:
            return slots[skip]
        day += timedelta(days=1)
    raise AssertionError(f"provider {provider} has no open slot")


def booking(practice: Practice, provider: int, slot: dict, **overrides) -> dict:
    body = {"patient_id": "PAT0000001", "provider_id": practice.ref("providers", provider), "facility_id": slot["facility_id"],
            "start": slot["start"], "duration_minutes": slot["slot_minutes"], "visit_type": slot["visit_types"][0], "telehealth": False}
    return {**body, **overrides}


def next_weekday(after: date, iso_weekday: int) -> date:
    days = (iso_weekday - after.isoweekday()) % 7 or 7
    return after + timedelta(days=days)


def local(day: date, hhmm: str) -> str:
    return datetime.combine(day, datetime.strptime(hhmm, "%H:%M").time()).isoformat()  # no offset: the practice's local time


def patient_of_kind(practice: Practice, kind: str) -> str:
    """A patient whose coverage is `kind` (active, inactive, unknown or none)."""
    index = next(i for i in range(practice.scale) if practice.coverage_kind(i) == kind)
    return practice.ref("patients", index)
