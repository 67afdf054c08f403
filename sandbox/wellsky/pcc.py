"""WellSky Personal Care Connect (formerly ClearCare; home care): OAuth2 client credentials, FHIR-flavoured JSON.

    POST /oauth/accesstoken                 grant_type=client_credentials; the client by HTTP Basic auth or form fields
    GET  /v1/<resource>/                    search: _count (1–100, default 20), _page (1-based), _lastUpdated=gt…
    POST /v1/<resource>/_search/            the same search, parameters in a form body
    GET  /v1/<resource>/<id>/               one record
    GET  /v1/encounter/<id>/clock_in/       a care log's clock-in (and clock_out/)
    GET  /v1/subscriptions/                 the client's webhook subscriptions
    POST /v1/subscriptions/                 {"criteria", "endpoint"} -> 201
    DELETE /v1/subscriptions/<id>/

Resources: patients (clients), practitioners (caregivers; is_hired=, tag=), appointment (shifts, singular;
a search needs patient= or practitioner= plus start_date=YYYYMMDD and days=N), encounter (care logs;
patient=, practitioner=), locations. Every path under /v1/ ends with a slash: without it the answer is 404,
as the real API's router gives. Results come as a searchset Bundle with a total; the agency is a meta tag.

Webhooks are ping and pull: `notify()` posts only {resourceType, id} to each matching subscription.
Nothing in this surface writes, so the vendor's changes must call `notify()` (see `notify_mutation`).

The token helpers here (`issue_token`, `authorize`) and the search helpers (`since_of`, `malformed`,
`churn`, `person_of`) are shared with the FHIR Connect surface (connect.py).
"""

from __future__ import annotations

import base64
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlencode, urlsplit

import httpx

from sandbox.server import HttpError, Request, Response
from sandbox.table import Record, Table, stamp_of
from sandbox.wellsky.data import AGENCY, SERVICES, TIME_ZONE_OFFSET, Agency

if TYPE_CHECKING:  # vendor.py imports this module when it dispatches
    from sandbox.wellsky.vendor import Account, WellSky

Where = Callable[[int], bool]
TOKEN_TTL_S = 3600
DEFAULT_COUNT, MAX_COUNT = 20, 100
MAX_SHIFT_DAYS = 31
AGENCY_TAG = {"system": "agency", "code": AGENCY.split()[0].lower()}  # "sunrise"
GENDER = {"F": "female", "M": "male", "U": "unknown"}
APPOINTMENT_STATUS = {"Scheduled": "booked", "Completed": "fulfilled", "Cancelled": "cancelled", "Missed": "noshow",
                      "In Progress": "arrived"}
SERVICE_SYSTEM = "urn:wellsky:sunrise:service-code"
NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"
BROKEN_DATE = "31/02/1950"  # what a malformed record carries in a date field

# Webhook criteria, and the vendor table changes that raise them (for vendor.mutate's wiring).
CRITERIA = ("patient.created", "practitioner.created", "encounter.clockout.changed", "appointment.changed")
EVENTS = {
    ("patients", "created"): ("patient.created", "Patient"),
    ("practitioners", "created"): ("practitioner.created", "Practitioner"),
    ("encounters", "changed"): ("encounter.clockout.changed", "Encounter"),
    ("appointments", "created"): ("appointment.changed", "Appointment"),
    ("appointments", "changed"): ("appointment.changed", "Appointment"),
    ("appointments", "deleted"): ("appointment.changed", "Appointment"),
}
DELIVERY_TIMEOUT_S = 5
DELIVERY_RETRIES = 3  # after the first attempt, on a non-2xx answer or no answer
DELIVERY_PAUSE_S = 1.0


def handle(vendor: WellSky, request: Request) -> Response:
    path = request.path
    if path.startswith("/oauth/"):
        if path.rstrip("/") == "/oauth/accesstoken":
            if request.method != "POST":
                raise HttpError(405, "method_not_allowed", "POST the token request", headers={"Allow": "POST"})
            return issue_token(vendor, request, "pcc")
        raise HttpError(404, "not_found", f"no such path {path}")
    if not path.endswith("/"):
        raise HttpError(404, "trailing_slash_required", f"every /v1/ path ends with a slash: {path}/ (not {path})")
    account = authorize(vendor, request, "pcc")
    parts = path.strip("/").split("/")[1:]  # below /v1/
    if not parts or not parts[0]:
        raise HttpError(404, "not_found", "no resource named; try /v1/patients/")
    if parts[0] == "subscriptions":
        return _subscriptions(vendor, request, account, parts[1:])
    resource = RESOURCES.get(parts[0])
    if resource is None:
        raise HttpError(404, "not_found", f"no resource {parts[0]!r}; this sandbox serves " + ", ".join(f"/v1/{n}/" for n in RESOURCES))
    method = request.method
    if method == "POST" and parts[1:] == ["_search"]:
        return _search(vendor, request, parts[0], {**request.query, **request.form()})
    if method == "POST" and not account.write:
        raise HttpError(403, "write_not_permitted", f"the agency '{account.agency}' has not licensed API writes")
    if method != "GET":
        raise HttpError(405, "method_not_allowed", f"{method} is not allowed on {path}", headers={"Allow": "GET"})
    if len(parts) == 1:
        return _search(vendor, request, parts[0], request.query)
    if len(parts) == 2:
        return Response(200, resource.render(_record(vendor, resource, parts[1])))
    if len(parts) == 3 and parts[0] == "encounter" and parts[2] in ("clock_in", "clock_out"):
        care_log = render_care_log(_record(vendor, resource, parts[1]))
        return Response(200, {"encounter": {"reference": f"Encounter/{parts[1]}"}, **care_log[parts[2]]})
    raise HttpError(404, "not_found", f"no such path {path}")


# --- OAuth2 client credentials (shared with connect.py) -----------------------------------------------------
@dataclass
class Token:
    username: str
    expires_at: float  # monotonic


def _tokens(vendor: WellSky, surface: str) -> dict[str, Token]:
    # Tokens live on the vendor, one store per surface: a PCC token is no FHIR Connect token.
    return vendor.__dict__.setdefault(f"{surface}_tokens", {})


def _client_credentials(request: Request, form: dict[str, str]) -> tuple[str, str]:
    """The client id and secret, from HTTP Basic auth (RFC 6749 §2.3.1: form-encoded) or the form body."""
    header = request.headers.get("Authorization") or ""
    if header[:6].lower() == "basic ":
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            return "", ""
        client_id, _, secret = decoded.partition(":")
        return unquote(client_id), unquote(secret)
    return form.get("client_id", ""), form.get("client_secret", "")


def _oauth_error(status: int, error: str, description: str) -> Response:
    headers = {"Cache-Control": "no-store"}
    if status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="wellsky"'
    return Response(status, {"error": error, "error_description": description}, headers)


def issue_token(vendor: WellSky, request: Request, surface: str, **extra: Any) -> Response:
    """POST token: client credentials in, a bearer token out; OAuth2 error bodies (RFC 6749 §5.2)."""
    form = request.form()
    client_id, secret = _client_credentials(request, form)
    account = next((a for a in vendor.accounts_by_name.values() if a.client_id and a.client_id == client_id), None)
    if account is None or not secrets.compare_digest(secret.encode(), account.client_secret.encode()):
        return _oauth_error(401, "invalid_client", "the client id or secret is wrong")
    if form.get("grant_type") != "client_credentials":
        return _oauth_error(400, "unsupported_grant_type", "only grant_type=client_credentials is supported")
    ttl = vendor.session_ttl(request, TOKEN_TTL_S)
    token = secrets.token_urlsafe(32)
    now = time.monotonic()
    with vendor.lock:
        store = _tokens(vendor, surface)
        for old in [t for t, held in store.items() if held.expires_at <= now]:  # keep the store small
            del store[old]
        store[token] = Token(account.username, now + ttl)
    return Response(200, {"access_token": token, "token_type": "Bearer", "expires_in": ttl, **extra}, {"Cache-Control": "no-store"})


def authorize(vendor: WellSky, request: Request, surface: str) -> Account:
    """The account whose bearer token the request carries; 401 when it is missing, unknown or expired."""
    header = request.headers.get("Authorization") or ""
    token = header[7:].strip() if header[:7].lower() == "bearer " else ""
    challenge = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
    with vendor.lock:
        held = _tokens(vendor, surface).get(token)
        if held is not None and held.expires_at <= time.monotonic():
            _tokens(vendor, surface).pop(token, None)
            raise HttpError(401, "token_expired", "the access token expired; request a new one", headers=challenge)
    if held is None:
        raise HttpError(401, "invalid_token", "no valid access token; POST the token endpoint first", headers=challenge)
    return vendor.accounts_by_name[held.username]


# --- search helpers (shared with connect.py) ---------------------------------------------------------------
def since_of(value: str) -> str:
    """`_lastUpdated=gt2024-05-01T00:00:00Z` (or ge…) as a Table stamp; ValueError when it is not one."""
    prefix, moment_text = value[:2], value[2:]
    if prefix not in ("gt", "ge"):
        raise ValueError("_lastUpdated must be gt or ge followed by a date-time, e.g. gt2024-05-01T00:00:00Z")
    try:
        moment = datetime.fromisoformat(moment_text)
    except ValueError:
        raise ValueError(f"_lastUpdated: {moment_text!r} is not an ISO 8601 date-time") from None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    if prefix == "ge":  # Table.page answers "strictly after"
        moment -= timedelta(microseconds=1)
    return stamp_of(moment)


def person_of(agency: Agency, resource: str, index: int, role: str) -> str | None:
    """The patient or practitioner id of a record, without generating it when it follows from the index."""
    table = agency.table(resource)
    if resource in ("appointments", "encounters") and index < table.base_count and index not in table.written:
        # Base appointment i (and encounter i, which documents it) is patient i % S's, seen by practitioner_of(i).
        person = index % agency.scale if role == "patient" else agency.practitioner_of(index)
        return agency.ref("patients" if role == "patient" else "practitioners", person)
    return table.fields(index).get(f"{role}_id")


def malformed(doc: dict[str, Any], rng, drop: str, date_path: tuple[str, ...] | None) -> dict[str, Any]:
    """A resource as a broken export serves it: a required element missing, or a date that is no date."""
    broken = dict(doc)
    if date_path is None or rng.random() < 0.5:
        broken.pop(drop, None)
        return broken
    holder = broken
    for key in date_path[:-1]:
        holder[key] = dict(holder.get(key) or {})
        holder = holder[key]
    holder[date_path[-1]] = BROKEN_DATE
    return broken


def maybe_malformed(vendor: WellSky, request: Request, doc: dict[str, Any], drop: str,
                    date_path: tuple[str, ...] | None) -> dict[str, Any]:
    rate = request.faults.malformed_rate
    if rate and vendor.server is not None and vendor.server.roll(rate):
        return malformed(doc, request.rng, drop, date_path)
    return doc


def churn(vendor: WellSky, request: Request) -> None:
    """The agency keeps working while a client pages: changes, creations and deletions after each page."""
    n = request.faults.churn_per_page
    if n and vendor.server is not None:
        vendor.mutate({"changes": n, "creates": max(1, n // 4), "deletes": max(1, n // 4)})


def page_window(table: Table, *, offset: int, count: int, since: str = "", where: Where | None = None) -> tuple[list[Record], int]:
    """Records offset+1 … offset+count of a search, in the table's listing order, and the search's total.

    Only the page's records are rendered: one pass counts the matches with a cheap predicate. When no
    record was touched since start and nothing filters, the page is a cursor into the base, and the
    total the live count, so a large table is not walked at all.
    """
    if not since and where is None and not table.stamps:
        records, _ = table.page(cursor=f"b{offset}", limit=count)
        return records, table.live_count()
    seen = 0

    def window(index: int) -> bool:
        nonlocal seen
        if index in table.deleted or (where is not None and not where(index)):
            return False
        seen += 1
        return offset < seen <= offset + count

    records, _ = table.page(since=since, where=window, limit=count)  # window admits ≤ count: one full pass
    return records, seen


# --- rendering: FHIR-flavoured, as PCC's JSON is (not strict FHIR) -------------------------------------------
def human_name(first: str, middle: str, last: str, suffix: str = "") -> dict[str, Any]:
    """A FHIR HumanName; FHIR has no empty strings or lists, so parts that are blank are left out."""
    name: dict[str, Any] = {"use": "official", "family": last, "given": [n for n in (first, (middle or "").rstrip(".")) if n],
                            "suffix": [suffix] if suffix else []}
    return {k: v for k, v in name.items() if v}


def telecom(phone: str, email: str = "", use: str = "home") -> list[dict[str, str]]:
    points = [{"system": "phone", "value": phone, "use": use}] if phone else []
    return points + ([{"system": "email", "value": email, "use": use}] if email else [])


def address(fields: dict[str, str] | None, use: str = "home") -> dict[str, Any]:
    """A FHIR Address from the agency's {line1, line2, city, state, zip}; FHIR strings are never empty."""
    fields = fields or {}
    out: dict[str, Any] = {"use": use, "line": [line for line in (fields.get("line1"), fields.get("line2")) if line]}
    for key, source in (("city", "city"), ("state", "state"), ("postalCode", "zip")):
        if fields.get(source):
            out[key] = fields[source]
    return {k: v for k, v in out.items() if v}


def _meta(record: Record) -> dict[str, Any]:
    return {"lastUpdated": record["updated_at"], "tag": [AGENCY_TAG]}


def _ref(resource_type: str, record_id: str | None) -> dict[str, str] | None:
    return {"reference": f"{resource_type}/{record_id}"} if record_id else None


def render_client(r: Record) -> dict[str, Any]:
    return {
        "resourceType": "Patient", "id": r["id"], "meta": _meta(r),
        "identifier": [{"type": {"text": i["type"]}, "value": i["value"]} for i in r.get("identifiers") or []],
        "active": r.get("status") == "Active",
        "name": [human_name(r.get("first_name", ""), r.get("middle_name", ""), r.get("last_name", ""))],
        "gender": GENDER.get(r.get("gender"), "unknown"), "birthDate": r.get("date_of_birth"),
        "telecom": telecom(r.get("phone", ""), r.get("email", "")), "address": [address(r.get("address"))],
        "communication": [{"language": {"text": r.get("language") or "English"}, "preferred": True}],
        "branch": _ref("Location", r.get("branch_id")),
    }


def render_caregiver(r: Record) -> dict[str, Any]:
    hired = r.get("status") == "Active"
    return {
        "resourceType": "Practitioner", "id": r["id"], "meta": _meta(r),
        "identifier": [{"system": NPI_SYSTEM, "value": r["npi"]}], "active": hired, "is_hired": hired,
        "name": [human_name(r.get("first_name", ""), "", r.get("last_name", ""), suffix=r.get("credentials") or "")],
        "telecom": telecom(r.get("phone", ""), r.get("email", ""), use="work"),
        "qualification": [{"code": {"text": r.get("credentials")}}], "discipline": r.get("discipline"),
        "tags": list(r.get("specialties") or []), "hire_date": r.get("hire_date"),
    }


def render_branch(r: Record) -> dict[str, Any]:
    return {
        "resourceType": "Location", "id": r["id"], "meta": _meta(r), "status": "active" if r.get("active", True) else "inactive",
        "name": r.get("name"), "type": [{"text": r.get("type", "branch")}], "telecom": telecom(r.get("phone", ""), use="work"),
        "address": address(r.get("address"), use="work"),
    }


def service_concept(code: str) -> dict[str, Any]:
    coding = {"system": SERVICE_SYSTEM, "code": code}
    if code in SERVICES:
        coding["display"] = SERVICES[code]["name"]
    return {"coding": [coding], "text": coding.get("display", code)}


def render_shift(r: Record) -> dict[str, Any]:
    participants = [{"actor": ref, "status": "accepted"}
                    for ref in (_ref("Patient", r.get("patient_id")), _ref("Practitioner", r.get("practitioner_id"))) if ref]
    status = APPOINTMENT_STATUS.get(r.get("status"), "proposed")
    if status == "booked" and not r.get("practitioner_id"):
        status = "proposed"  # an open shift: scheduled, but no caregiver has it yet
    doc = {
        "resourceType": "Appointment", "id": r["id"], "meta": _meta(r), "status": status,
        "serviceType": [service_concept(r.get("service_code", ""))], "start": r.get("start"), "end": r.get("end"),
        "participant": participants, "location": _ref("Location", r.get("location_id")),
        "authorization": _ref("Authorization", r.get("authorization_id")), "units": r.get("units"),
    }
    if r.get("notes"):
        doc["comment"] = r["notes"]
    return doc


def render_care_log(r: Record) -> dict[str, Any]:
    # Clock events as the caregiver's app records them: the visit's start and end, verified by GPS.
    def clock(moment: str | None) -> dict[str, Any]:
        return {"time": moment, "method": "mobile_gps", "status": "verified"}

    note = r.get("note") or {}
    return {
        "resourceType": "Encounter", "id": r["id"], "meta": _meta(r), "status": "finished",
        "subject": _ref("Patient", r.get("patient_id")),
        "participant": [{"individual": _ref("Practitioner", r.get("practitioner_id"))}],
        "appointment": [_ref("Appointment", r.get("appointment_id"))],
        "period": {"start": r.get("visit_start"), "end": r.get("visit_end")},
        "clock_in": clock(r.get("visit_start")), "clock_out": clock(r.get("visit_end")),
        "tasks": [{"code": p["code"], "description": p.get("description"), "units": p.get("units")} for p in r.get("procedures") or []],
        "note": [{"text": note["summary"]}] if note.get("summary") else [],
    }


@dataclass(frozen=True)
class Resource:
    table: str
    render: Callable[[Record], dict[str, Any]]
    drop: str  # what a malformed record loses
    date_path: tuple[str, ...] | None  # where a malformed record's date breaks


RESOURCES = {
    "patients": Resource("patients", render_client, "name", ("birthDate",)),
    "practitioners": Resource("practitioners", render_caregiver, "name", ("hire_date",)),
    "appointment": Resource("appointments", render_shift, "participant", ("start",)),
    "encounter": Resource("encounters", render_care_log, "subject", ("clock_out", "time")),
    "locations": Resource("locations", render_branch, "name", None),
}


# --- reading ---------------------------------------------------------------------------------------------
def _record(vendor: WellSky, resource: Resource, record_id: str) -> Record:
    table = vendor.agency.table(resource.table)
    record = table.get(table.index_of(record_id))
    if record is None:
        raise HttpError(404, "not_found", f"no {resource.table} record {record_id}")
    return record


def _whole(params: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = params.get(name)
    if raw in (None, ""):
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise HttpError(400, "invalid_parameter", f"{name} must be a whole number from {low} to {high}", errors=[{"field": name}])
    return int(raw)


def _search(vendor: WellSky, request: Request, name: str, params: dict[str, str]) -> Response:
    resource = RESOURCES[name]
    count = _whole(params, "_count", DEFAULT_COUNT, 1, MAX_COUNT)
    page = _whole(params, "_page", 1, 1, 10**6)
    offset = (page - 1) * count
    if name == "appointment":
        shifts = _shifts(vendor, params)
        records, total = shifts[offset:offset + count], len(shifts)
    else:
        since = ""
        if params.get("_lastUpdated"):
            try:
                since = since_of(params["_lastUpdated"])
            except ValueError as exc:
                raise HttpError(400, "invalid_parameter", str(exc), errors=[{"field": "_lastUpdated"}]) from None
        table = vendor.agency.table(resource.table)
        records, total = page_window(table, offset=offset, count=count, since=since, where=_filter(vendor, name, params))
    entries = [{"resource": maybe_malformed(vendor, request, resource.render(r), resource.drop, resource.date_path)} for r in records]
    links = [{"relation": "self", "url": _url(vendor, request, name, {**params, "_count": count, "_page": page})}]
    if offset + count < total:
        links.append({"relation": "next", "url": _url(vendor, request, name, {**params, "_count": count, "_page": page + 1})})
    churn(vendor, request)
    return Response(200, {"resourceType": "Bundle", "type": "searchset", "total": total, "link": links, "entry": entries})


def _url(vendor: WellSky, request: Request, name: str, params: dict[str, Any]) -> str:
    host = request.headers.get("Host")
    path = f"/{vendor.prefix}/v1/{name}/"
    return (f"http://{host}{path}" if host else path) + "?" + urlencode(params)


def _flag(params: dict[str, str], name: str) -> bool | None:
    value = params.get(name, "").lower()
    if value in ("", "any"):
        return None
    if value not in ("true", "false"):
        raise HttpError(400, "invalid_parameter", f"{name} must be true or false", errors=[{"field": name}])
    return value == "true"


def _filter(vendor: WellSky, name: str, params: dict[str, str]) -> Where | None:
    """The search's filter as a predicate on table indices (None: everything)."""
    agency: Agency = vendor.agency
    checks: list[Where] = []
    if name == "practitioners":
        table = agency.table("practitioners")
        hired, tag = _flag(params, "is_hired"), params.get("tag", "").lower()
        if hired is not None:
            checks.append(lambda i: (table.fields(i).get("status") == "Active") == hired)
        if tag:
            checks.append(lambda i: tag in (s.lower() for s in table.fields(i).get("specialties") or []))
    if name == "encounter":
        for role in ("patient", "practitioner"):
            wanted = params.get(role)
            if wanted:
                checks.append(lambda i, role=role, wanted=wanted: person_of(agency, "encounters", i, role) == wanted)
    if not checks:
        return None
    return lambda i: all(check(i) for check in checks)


def _shifts(vendor: WellSky, params: dict[str, str]) -> list[Record]:
    """A shift search: one client's or caregiver's appointments starting within N days of a local date."""
    agency: Agency = vendor.agency
    patient_id, practitioner_id = params.get("patient", ""), params.get("practitioner", "")
    start_text, days_text = params.get("start_date", ""), params.get("days", "")
    need = ("a shift search needs patient=<client id> or practitioner=<caregiver id>, "
            f"plus start_date=YYYYMMDD and days=N (1–{MAX_SHIFT_DAYS})")
    if not (patient_id or practitioner_id) or not start_text or not days_text:
        raise HttpError(400, "search_parameters_required", need)
    try:
        day = date(int(start_text[:4]), int(start_text[4:6]), int(start_text[6:])) if len(start_text) == 8 and start_text.isdigit() else None
    except ValueError:
        day = None
    if day is None:
        raise HttpError(400, "invalid_parameter", f"start_date {start_text!r} is not a date as YYYYMMDD; " + need, errors=[{"field": "start_date"}])
    days = _whole(params, "days", 0, 1, MAX_SHIFT_DAYS)
    window_start = datetime.combine(day, datetime.min.time(), tzinfo=UTC) - TIME_ZONE_OFFSET  # the agency's local midnight
    window = (agency._iso(window_start), agency._iso(window_start + timedelta(days=days)))
    table = agency.table("appointments")
    shifts = []
    for index in _shift_candidates(agency, patient_id, practitioner_id):
        record = table.get(index)
        if (record is not None and (not patient_id or record.get("patient_id") == patient_id)
                and (not practitioner_id or record.get("practitioner_id") == practitioner_id)
                and window[0] <= (record.get("start") or "") < window[1]):
            shifts.append(record)
    return sorted(shifts, key=lambda r: (r["start"], r["id"]))


def _shift_candidates(agency: Agency, patient_id: str, practitioner_id: str) -> Iterator[int]:
    """Appointment indices that may be the person's: their base visits (by arithmetic), then every record written since."""
    table = agency.table("appointments")
    if patient_id:
        patient = agency.table("patients").index_of(patient_id)
        base = range(patient, table.base_count, agency.scale) if patient is not None and patient < agency.scale else range(0)
    else:
        base = range(table.base_count)
    practitioner = agency.table("practitioners").index_of(practitioner_id) if practitioner_id else None
    for index in base:
        if index in table.written or not practitioner_id or agency.practitioner_of(index) == practitioner:
            yield index
    yield from range(table.base_count, table.count)


# --- webhook subscriptions -----------------------------------------------------------------------------------
def _subscription_store(vendor: WellSky) -> dict[str, dict[str, Any]]:
    return vendor.__dict__.setdefault("pcc_subscriptions", {})


def _render_subscription(sub: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Subscription", "id": sub["id"], "status": "active", "criteria": sub["criteria"],
            "channel": {"type": "rest-hook", "endpoint": sub["endpoint"], "payload": "application/json"},
            "meta": {"lastUpdated": sub["created_at"], "tag": [AGENCY_TAG]}}


def _subscriptions(vendor: WellSky, request: Request, account: Account, rest: list[str]) -> Response:
    store = _subscription_store(vendor)
    if not rest and request.method == "GET":
        with vendor.lock:
            mine = [s for s in store.values() if s["client_id"] == account.client_id]
        return Response(200, {"resourceType": "Bundle", "type": "searchset", "total": len(mine),
                              "entry": [{"resource": _render_subscription(s)} for s in mine]})
    if not rest and request.method == "POST":
        return _subscribe(vendor, request, account)
    if len(rest) == 1 and request.method == "DELETE":
        with vendor.lock:
            sub = store.get(rest[0])
            if sub is None or sub["client_id"] != account.client_id:
                raise HttpError(404, "not_found", f"no subscription {rest[0]}")
            del store[rest[0]]
        return Response(204)
    raise HttpError(405, "method_not_allowed", f"{request.method} is not allowed on {request.path}")


def _subscribe(vendor: WellSky, request: Request, account: Account) -> Response:
    body = request.json()
    if not isinstance(body, dict):
        raise HttpError(400, "invalid_json", "the body must be a JSON object")
    criteria = body.get("criteria")
    endpoint = body.get("endpoint") or (body.get("channel") or {}).get("endpoint")  # FHIR's channel.endpoint too
    errors = []
    if criteria not in CRITERIA:
        errors.append({"field": "criteria", "message": "must be one of " + ", ".join(CRITERIA)})
    if not isinstance(endpoint, str) or urlsplit(endpoint).scheme not in ("http", "https") or not urlsplit(endpoint).netloc:
        errors.append({"field": "endpoint", "message": "must be an http(s) URL"})
    if errors:
        raise HttpError(422, "validation_failed", f"{errors[0]['field']}: {errors[0]['message']}", errors=errors)
    sub = {"id": secrets.token_hex(8), "criteria": criteria, "endpoint": endpoint, "client_id": account.client_id,
           "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
    with vendor.lock:
        _subscription_store(vendor)[sub["id"]] = sub
    return Response(201, _render_subscription(sub))


def notify(vendor: WellSky, criteria: str, resource_type: str, record_id: str) -> list[threading.Thread]:
    """Ping each subscription to `criteria` with {resourceType, id}, each on a daemon thread; returns the threads."""
    with vendor.lock:
        endpoints = [s["endpoint"] for s in _subscription_store(vendor).values() if s["criteria"] == criteria]
    payload = {"resourceType": resource_type, "id": record_id}
    threads = [threading.Thread(target=_deliver, args=(endpoint, payload, criteria), name=f"pcc-webhook-{criteria}", daemon=True)
               for endpoint in endpoints]
    for thread in threads:
        thread.start()
    return threads


def notify_mutation(vendor: WellSky, done: dict[str, dict[str, list[str]]]) -> list[threading.Thread]:
    """Notify for what vendor.mutate() returns ({"created"|"changed"|"deleted": {table: [ids]}})."""
    threads: list[threading.Thread] = []
    for action, by_table in done.items():
        for table, ids in by_table.items():
            event = EVENTS.get((table, action))
            if event is not None:
                for record_id in ids:
                    threads += notify(vendor, event[0], event[1], record_id)
    return threads


def _deliver(endpoint: str, payload: dict[str, str], criteria: str) -> None:
    for attempt in range(1 + DELIVERY_RETRIES):
        if attempt:
            time.sleep(DELIVERY_PAUSE_S)
        try:
            answer = httpx.post(endpoint, json=payload, timeout=DELIVERY_TIMEOUT_S, headers={"X-PCC-Event": criteria})
        except httpx.HTTPError:
            continue  # no answer: try again, as for a 5xx
        if answer.is_success:
            return
