"""eClinicalWorks' portal surface under /ecw/, as the product document lists it.

    POST /authenticate          {username, password} -> a session, or an MFA challenge (TOTP, SMS, email);
                                {challenge_id, code} (also at /authenticate/mfa) -> the session
    POST /logout                end the session
    GET  /<resource>            patients | providers | facilities | appointments | encounters, ?page= (from 1)
                                &page_size= (1–500, default 100) -> {items, page, page_size, total, has_more}
    GET  /<resource>/<id>
    POST /create_appointment    {patient_id, provider_id, facility_id, start, duration_minutes?, visit_type,
                                telehealth?, reference?, reason?} -> 201 with the appointment
    GET  /eligibility           ?patient_id=&date=&service_type=30 -> {x12_270, x12_271, summary, …}   (module rcm)
    POST /submit_claim          an 837 (application/edi-x12, or JSON {"x12": …}) -> {batch_id, accepted, ack_999, errors}
    GET  /claims, /claims/<batch_id>  -> {status, era_url, …}                                              (module rcm)
    GET  /healow/visits         telehealth visits, paged as above, ?provider_id=&patient_id=                (module healow)
    GET  /healow/slots          ?provider_id=&date=&facility_id= -> the provider's open slots that day       (module healow)
    POST /healow/book           as /create_appointment, always telehealth                                    (module healow)

Every call but /authenticate needs `Authorization: Bearer <session_token>`; sessions last 15 minutes
(the session_ttl_s fault overrides). Reads need the "ehr" module; writes need the account's write
contract. Lists are in id order with offset paging and carry no change cursor: a record changed
while a client pages keeps its place, a deleted one leaves the list and shifts the pages after it.
Errors: see errors.py.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import orjson

from sandbox.ecw import billing, scheduling
from sandbox.ecw.data import RESOURCES
from sandbox.ecw.errors import refuse
from sandbox.ecw.vendor import Account, EClinicalWorks
from sandbox.server import Request, Response
from sandbox.table import Record

MAX_PAGE_SIZE = 500
DEFAULT_PAGE_SIZE = 100
MAX_PAGE = 10_000_000
REQUIRED = {  # what a malformed record loses, per resource
    "patients": ("last_name", "date_of_birth"), "providers": ("npi",), "facilities": ("name",),
    "appointments": ("patient_id", "start"), "encounters": ("patient_id", "date"),
}
DATE_FIELDS = {"patients": "date_of_birth", "providers": "modified", "facilities": "modified", "appointments": "start",
               "encounters": "date"}
X12_TYPES = ("application/edi-x12", "application/x12", "text/plain")
SERVICE_TYPE_LENGTH = (1, 2)


def handle(vendor: EClinicalWorks, request: Request) -> Response:
    try:
        return _route(vendor, request)
    except (ValueError, OverflowError, UnicodeDecodeError) as exc:  # a hostile value that got past the checks below
        raise refuse(106, f"the request could not be processed: {str(exc)[:200]}") from None


def _route(vendor: EClinicalWorks, request: Request) -> Response:
    path, method = request.path.rstrip("/") or "/", request.method
    if path in ("/authenticate", "/authenticate/mfa"):
        _only(method, "POST", path)
        return _authenticate(vendor, request, mfa_step=path.endswith("/mfa"))
    token, account = vendor.session_account(request)
    parts = path.strip("/").split("/")
    head = parts[0]
    if path == "/logout":
        _only(method, "POST", path)
        with vendor.lock:
            vendor.sessions.pop(token, None)
        return Response(204)
    if head in RESOURCES and len(parts) <= 2:
        _only(method, "GET", path)
        vendor.require_module(account, "ehr")
        if len(parts) == 2:
            record = vendor.practice.get(head, parts[1])
            if record is None:
                raise refuse(104, f"no {head} record {parts[1]!r}", resource=head, id=parts[1])
            return Response(200, record)
        return _list(vendor, request, head)
    if path == "/create_appointment":
        _only(method, "POST", path)
        vendor.require_module(account, "ehr")
        vendor.require_write(account)
        return vendor.create_appointment(account, _body(request), via="api")
    if path == "/eligibility":
        _only(method, "GET", path)
        return _eligibility(vendor, request, account)
    if path == "/submit_claim":
        _only(method, "POST", path)
        vendor.require_module(account, "rcm")
        vendor.require_write(account)
        return Response(200, billing.submit_claim_file(vendor, account, _x12_body(request)))
    if head == "claims" and len(parts) <= 2:
        _only(method, "GET", path)
        vendor.require_module(account, "rcm")
        if len(parts) == 2:
            return Response(200, billing.claim_status(vendor, parts[1]))
        page, page_size = _paging(request)
        batches = sorted(vendor.claims)
        chosen = batches[(page - 1) * page_size: page * page_size]
        items = [billing.claim_status(vendor, batch) for batch in chosen]
        return Response(200, {"items": items, "page": page, "page_size": page_size, "total": len(batches),
                              "has_more": page * page_size < len(batches)})
    if head == "healow":
        return _healow(vendor, request, account, path, method)
    raise refuse(104, f"no such path {request.path}")


def _visit_matches(practice, index: int, wanted: dict[str, tuple[str, int]]) -> bool:
    """Whether an appointment is the provider's and the patient's asked for (generated ones by arithmetic, cheaply)."""
    if index < practice.sizes["appointments"]:
        if "provider_id" in wanted and practice.provider_of(index) != wanted["provider_id"][1]:
            return False
        return "patient_id" not in wanted or index % practice.scale == wanted["patient_id"][1]
    fields = practice.table("appointments").fields(index)
    return all(fields[name] == value for name, (value, _) in wanted.items())


def record_date(value: Any) -> date | None:
    """A YYYY-MM-DD query value, or None."""
    if not isinstance(value, str) or len(value) != 10:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


def _only(method: str, allowed: str, path: str) -> None:
    if method != allowed:
        raise refuse(108, f"{method} is not allowed on {path}; use {allowed}", allowed=allowed)


def _body(request: Request) -> Any:
    try:
        return orjson.loads(request.body or b"{}")
    except orjson.JSONDecodeError as exc:
        raise refuse(106, f"the body is not JSON: {exc}") from None


def _object(request: Request) -> dict[str, Any]:
    body = _body(request)
    if not isinstance(body, dict):
        raise refuse(106, "the body must be a JSON object")
    return body


# --- sessions -------------------------------------------------------------------------------------------
def _authenticate(vendor: EClinicalWorks, request: Request, *, mfa_step: bool) -> Response:
    body = _object(request)
    if mfa_step or "challenge_id" in body:
        account = vendor.answer_challenge(body.get("challenge_id"), body.get("code"))
        return _session_opened(vendor, request, account, f"{account.mfa} code")
    account = vendor.check_password(body.get("username"), body.get("password"))
    if account.mfa:
        challenge = vendor.start_challenge(account)
        destination = {"totp": "authenticator app", "sms": _mask(account.phone), "email": _mask(account.email)}[account.mfa]
        return Response(200, {"mfa_required": True, "challenge_id": challenge.id, "method": account.mfa, "destination": destination,
                              "expires_in": 300})
    return _session_opened(vendor, request, account, "password")


def _session_opened(vendor: EClinicalWorks, request: Request, account: Account, method: str) -> Response:
    ttl = vendor.session_ttl(request)
    token = vendor.open_session(account, ttl)
    return Response(200, {"session_token": token, "token_type": "Bearer", "expires_in": ttl, "authenticated_with": method,
                          "practice": {"code": account.practice_code, "name": account.practice_name}, "modules": list(account.modules),
                          "write_access": account.write})


def _mask(value: str) -> str:
    return value[:2] + "•" * max(0, len(value) - 4) + value[-2:] if value else ""


# --- reading --------------------------------------------------------------------------------------------
def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or len(raw) > 9 or not low <= int(raw) <= high:
        raise refuse(105, f"{name} must be a whole number from {low} to {high}", parameter=name)
    return int(raw)


def _paging(request: Request) -> tuple[int, int]:
    return (_int_param(request, "page", 1, 1, MAX_PAGE),
            _int_param(request, "page_size", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE))


def _list(vendor: EClinicalWorks, request: Request, resource: str) -> Response:
    page, page_size = _paging(request)
    items, total = vendor.practice.page(resource, page, page_size)
    return _answer_page(vendor, request, resource, items, page, page_size, total)


def _answer_page(vendor: EClinicalWorks, request: Request, resource: str, items: list[Record], page: int, page_size: int,
                 total: int) -> Response:
    faults = request.faults
    if faults.malformed_rate and vendor.server is not None:
        items = [_malformed(resource, r, request.rng) if vendor.server.roll(faults.malformed_rate) else r for r in items]
    if faults.churn_per_page and vendor.server is not None:
        n = faults.churn_per_page
        vendor.mutate({"changes": n, "creates": max(1, n // 4), "deletes": max(1, n // 4)})
    return Response(200, {"items": items, "page": page, "page_size": page_size, "total": total,
                          "has_more": (page - 1) * page_size + len(items) < total})


def _malformed(resource: str, record: Record, rng) -> Record:
    """A record as a broken screen serves it: a required field missing, or a date that is no date."""
    broken = dict(record)
    if rng.random() < 0.5:
        broken.pop(REQUIRED[resource][0], None)
    else:
        broken[DATE_FIELDS[resource]] = "31/02/1950"
    return broken


# --- billing --------------------------------------------------------------------------------------------
def _eligibility(vendor: EClinicalWorks, request: Request, account: Account) -> Response:
    vendor.require_module(account, "rcm")
    query = request.query
    patient = vendor.practice.index("patients", query.get("patient_id"))
    if patient is None:
        raise refuse(100, f"no patient {query.get('patient_id')!r}", patient_id=query.get("patient_id"))
    day = record_date(query.get("date")) if query.get("date") else scheduling.now_local().date()
    if day is None:
        raise refuse(105, "date must be YYYY-MM-DD", parameter="date")
    service_type = query.get("service_type") or "30"
    if not service_type.isalnum() or not SERVICE_TYPE_LENGTH[0] <= len(service_type) <= SERVICE_TYPE_LENGTH[1]:
        raise refuse(105, "service_type must be an X12 service type code (EQ01), e.g. 30", parameter="service_type")
    return Response(200, billing.check_eligibility(vendor, patient, day, service_type.upper()))


def _x12_body(request: Request) -> str:
    content_type = (request.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if content_type == "application/json":
        body = _object(request)
        text = body.get("x12")
        if not isinstance(text, str):
            raise refuse(106, "give the claim file as text in \"x12\"", field="x12")
    elif content_type in X12_TYPES:
        try:
            text = request.body.decode("utf-8")
        except UnicodeDecodeError:
            raise refuse(106, "the claim file must be UTF-8 (X12 basic or extended character set)") from None
    else:
        raise refuse(504, f"send the 837 as {X12_TYPES[0]} or as JSON {{\"x12\": …}}, not {content_type or 'no content type'}")
    if not text.strip():
        raise refuse(106, "the claim file is empty")
    return text


# --- healow ---------------------------------------------------------------------------------------------
def _healow(vendor: EClinicalWorks, request: Request, account: Account, path: str, method: str) -> Response:
    vendor.require_module(account, "healow")
    practice = vendor.practice
    if path == "/healow/visits":
        _only(method, "GET", path)
        page, page_size = _paging(request)
        wanted: dict[str, tuple[str, int]] = {}
        for name, resource in (("provider_id", "providers"), ("patient_id", "patients")):
            value = request.query.get(name)
            if value:
                index = practice.table(resource).index_of(value)
                if index is None:
                    raise refuse(105, f"{name} names no {resource} record", parameter=name)
                wanted[name] = (value, index)
        indices = vendor.telehealth_indices()
        if wanted:
            indices = [i for i in indices if _visit_matches(practice, i, wanted)]
        chosen = indices[(page - 1) * page_size: page * page_size]
        items = [r for r in (practice.record("appointments", i) for i in chosen) if r is not None]
        return _answer_page(vendor, request, "appointments", items, page, page_size, len(indices))
    if path == "/healow/slots":
        _only(method, "GET", path)
        provider = practice.index("providers", request.query.get("provider_id"))
        if provider is None:
            raise refuse(101, f"no provider {request.query.get('provider_id')!r}", provider_id=request.query.get("provider_id"))
        day = record_date(request.query.get("date"))
        if day is None:
            raise refuse(105, "date must be YYYY-MM-DD", parameter="date")
        facility = None
        if request.query.get("facility_id"):
            facility = practice.index("facilities", request.query["facility_id"])
            if facility is None:
                raise refuse(102, f"no facility {request.query['facility_id']!r}", facility_id=request.query["facility_id"])
        slots = scheduling.free_slots(practice, provider, day, facility)
        return Response(200, {"provider_id": practice.ref("providers", provider), "date": day.isoformat(), "slots": slots})
    if path == "/healow/book":
        _only(method, "POST", path)
        vendor.require_write(account)
        return vendor.create_appointment(account, _body(request), via="healow", telehealth=True)
    raise refuse(104, f"no such path {request.path}")


def _visit_matches(practice, index: int, wanted: dict[str, tuple[str, int]]) -> bool:
    """Whether an appointment is the provider's and the patient's asked for (generated ones by arithmetic, cheaply)."""
    if index < practice.sizes["appointments"]:
        if "provider_id" in wanted and practice.provider_of(index) != wanted["provider_id"][1]:
            return False
        return "patient_id" not in wanted or index % practice.scale == wanted["patient_id"][1]
    fields = practice.table("appointments").fields(index)
    return all(fields[name] == value for name, (value, _) in wanted.items())
