"""WellSky's portal surface, as the product document lists it and says it behaves.

    POST /sessions            {username, password} -> a token, or an MFA challenge (TOTP, SMS, email)
    POST /sessions/mfa        {challenge_id, code} -> {token, expires_in} and a WSSID cookie
    DELETE /sessions          log out
    GET  /<resource>          ?updated_since=&cursor=&limit= (1–500) -> {data, paging: {next_cursor, has_more}}
    GET  /<resource>/<id>
    POST /patients            create a patient (referral intake); Idempotency-Key honoured
    POST /referrals           a referral, Pending until the agency accepts or declines it
    POST /appointments        create, or update with "id"; refused when it exceeds the authorization

Every authorized call needs the bearer token and the current WSSID cookie; the cookie rotates
every 20 calls (Set-Cookie), and the previous one keeps working for 30 s. Lists include records
deleted since the vendor started as `{id, deleted: true, updated_at}`, in updated_at order.
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime
from http.cookies import CookieError, SimpleCookie
from typing import Any

from sandbox.server import HttpError, Request, Response
from sandbox.table import Record, stamp_of
from sandbox.wellsky.data import SERVICES, TIME_ZONE_OFFSET, UNIT_CONSUMING, Agency

RESOURCES = ("patients", "practitioners", "locations", "appointments", "encounters", "authorizations", "care-plans", "referrals")
MAX_LIMIT = 500
REQUIRED = {  # what a malformed record loses, per resource
    "patients": ("last_name", "date_of_birth"), "practitioners": ("last_name",), "locations": ("name",),
    "appointments": ("patient_id", "start"), "encounters": ("patient_id", "visit_start"), "authorizations": ("patient_id", "start_date"),
    "care-plans": ("patient_id",), "referrals": ("referral_source",),
}
DATE_FIELDS = {"patients": "date_of_birth", "appointments": "start", "encounters": "visit_start", "authorizations": "end_date",
               "care-plans": "start_date", "referrals": "received_at", "practitioners": "hire_date", "locations": "name"}
COOKIE = "WSSID"


def handle(vendor, request: Request) -> Response:
    path, method = request.path.rstrip("/") or "/", request.method
    if path == "/sessions":
        if method == "POST":
            return _login(vendor, request)
        if method == "DELETE":
            token, _ = vendor.bearer(request)
            vendor.sessions.pop(token, None)
            return Response(204)
    if path == "/sessions/mfa" and method == "POST":
        body = _object(request)
        account = vendor.answer_challenge(body.get("challenge_id"), body.get("code"))
        return _session_opened(vendor, request, account, f"{account.mfa} code")
    parts = path.strip("/").split("/")
    if parts[0] not in RESOURCES or len(parts) > 2:
        raise HttpError(404, "not_found", f"no such path {request.path}")
    session, headers = _authorize(vendor, request)
    resource = parts[0]
    if method == "GET":
        if resource == "referrals":
            vendor.decide_due_referrals()
        if len(parts) == 2:
            return _one(vendor, resource, parts[1], headers)
        return _list(vendor, request, resource, headers)
    if method == "POST" and len(parts) == 1 and resource in ("patients", "referrals", "appointments"):
        account = vendor.account_of(session)
        if not account.write:
            raise HttpError(403, "write_not_permitted", f"the agency '{account.agency}' has not licensed API writes")
        writer = {"patients": create_patient, "referrals": create_referral, "appointments": save_appointment}[resource]
        response = vendor.idempotent_write(request, account, lambda: writer(vendor, _object(request)))
        response.headers = {**(response.headers or {}), **headers}
        return response
    raise HttpError(405, "method_not_allowed", f"{method} is not allowed on {request.path}")


# --- sessions -------------------------------------------------------------------------------------------
def _login(vendor, request: Request) -> Response:
    body = _object(request)
    account = vendor.check_password(body.get("username"), body.get("password"))
    if account.mfa:
        challenge = vendor.start_challenge(account)
        destination = {"totp": "authenticator app", "sms": _mask(account.phone), "email": _mask(account.email)}[account.mfa]
        return Response(200, {"mfa_required": True, "challenge_id": challenge.id, "method": account.mfa, "destination": destination})
    return _session_opened(vendor, request, account, "password")


def _session_opened(vendor, request: Request, account, method: str) -> Response:
    ttl = vendor.session_ttl(request)
    token, session = vendor.open_session(account, ttl)
    body = {"token": token, "token_type": "Bearer", "expires_in": ttl, "agency": account.agency, "authenticated_with": method,
            "write_access": account.write}
    return Response(200, body, {"Set-Cookie": _cookie(session.cookie)})


def _authorize(vendor, request: Request):
    """The session for the bearer token, after checking its WSSID cookie; headers to answer with."""
    _, session = vendor.bearer(request)
    jar = SimpleCookie()
    try:
        jar.load(request.headers.get("Cookie") or "")
    except CookieError:  # a garbled Cookie header is the same as none
        jar = SimpleCookie()
    presented = jar[COOKIE].value if COOKIE in jar else ""
    now = time.monotonic()
    with vendor.lock:
        valid = presented and (presented == session.cookie or (presented == session.previous_cookie and now < session.previous_until))
        if not valid:
            raise HttpError(401, "invalid_session", f"the {COOKIE} cookie is missing or stale; log in again")
        session.requests += 1
        if session.requests % 20 == 0:  # rotate: the next calls must present the new cookie
            import secrets

            session.previous_cookie, session.previous_until = session.cookie, now + 30
            session.cookie = secrets.token_urlsafe(16)
            return session, {"Set-Cookie": _cookie(session.cookie)}
    return session, {}


def _cookie(value: str) -> str:
    return f"{COOKIE}={value}; Path=/wellsky; HttpOnly; SameSite=Lax"


def _mask(value: str) -> str:
    return value[:2] + "•" * max(0, len(value) - 4) + value[-2:] if value else ""


# --- reading --------------------------------------------------------------------------------------------
def _list(vendor, request: Request, resource: str, headers: dict[str, str]) -> Response:
    query = request.query
    try:
        limit = int(query.get("limit", 100))
    except ValueError:
        raise HttpError(400, "invalid_parameter", "limit must be a whole number", errors=[{"field": "limit"}]) from None
    if not 1 <= limit <= MAX_LIMIT:
        raise HttpError(400, "invalid_parameter", f"limit must be between 1 and {MAX_LIMIT}", errors=[{"field": "limit"}])
    since = ""
    if query.get("updated_since"):
        try:
            moment = datetime.fromisoformat(query["updated_since"])
        except ValueError:
            raise HttpError(400, "invalid_parameter", "updated_since must be an ISO 8601 date-time",
                            errors=[{"field": "updated_since"}]) from None
        since = stamp_of(moment if moment.tzinfo else moment.replace(tzinfo=UTC))
    table = vendor.agency.table(resource)
    try:
        # Deletions travel in the feed as tombstones, also in a first full listing: a record deleted
        # while a client pages is reported at the end, not lost behind the client's high-water mark.
        records, next_cursor = table.page(since=since, cursor=query.get("cursor", ""), limit=limit, include_deleted=True)
    except ValueError as exc:
        raise HttpError(400, "invalid_parameter", str(exc), errors=[{"field": "cursor"}]) from None
    faults = request.faults
    data = []
    for record in records:
        record = vendor.with_live_fields(resource, record)
        if faults.malformed_rate and not record.get("deleted") and vendor.server.roll(faults.malformed_rate):
            record = _malformed(resource, record, request.rng)
        data.append(record)
    if faults.churn_per_page and vendor.server is not None:
        n = faults.churn_per_page
        vendor.mutate({"changes": n, "creates": max(1, n // 4), "deletes": max(1, n // 4)})
    return Response(200, {"data": data, "paging": {"next_cursor": next_cursor, "has_more": next_cursor is not None}}, headers)


def _one(vendor, resource: str, record_id: str, headers: dict[str, str]) -> Response:
    table = vendor.agency.table(resource)
    record = table.get(table.index_of(record_id))
    if record is None:
        raise HttpError(404, "not_found", f"no {resource} record {record_id}")
    return Response(200, vendor.with_live_fields(resource, record), headers)


def _malformed(resource: str, record: Record, rng) -> Record:
    """A record as a broken export serves it: a required field missing, or a date that is no date."""
    broken = dict(record)
    if rng.random() < 0.5:
        broken.pop(REQUIRED[resource][0], None)
    else:
        broken[DATE_FIELDS[resource]] = "31/02/1950"
    return broken


# --- writing --------------------------------------------------------------------------------------------
def _object(request: Request) -> dict[str, Any]:
    body = request.json()
    if not isinstance(body, dict):
        raise HttpError(400, "invalid_json", "the body must be a JSON object")
    return body


def _invalid(errors: list[dict[str, str]]) -> HttpError:
    first = errors[0]
    return HttpError(422, "validation_failed", f"{first['field']}: {first['message']}", errors=errors)


def _text(body: dict, name: str, errors: list, *, required: bool = True, limit: int = 200) -> str:
    value = body.get(name)
    if value in (None, ""):
        if required:
            errors.append({"field": name, "message": "is required"})
        return ""
    if not isinstance(value, str) or len(value) > limit:
        errors.append({"field": name, "message": f"must be text of at most {limit} characters"})
        return ""
    return value


def _ref(vendor, body: dict, name: str, resource: str, errors: list, *, required: bool = True) -> int | None:
    value = body.get(name)
    if value in (None, ""):
        if required:
            errors.append({"field": name, "message": "is required"})
        return None
    table = vendor.agency.table(resource)
    index = table.index_of(value) if isinstance(value, str) else None
    if index is None or index in table.deleted:
        errors.append({"field": name, "message": f"no {resource} record {value!r}"})
        return None
    return index


def patient_fields(body: dict, errors: list, prefix: str = "") -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for name, required in (("first_name", True), ("last_name", True), ("middle_name", False), ("phone", False), ("email", False),
                           ("language", False)):
        before = len(errors)
        fields[name] = _text(body, name, errors, required=required)
        for error in errors[before:]:
            error["field"] = prefix + error["field"]
    born = body.get("date_of_birth")
    try:
        parsed = date.fromisoformat(born) if isinstance(born, str) and len(born) == 10 else None
    except ValueError:
        parsed = None
    if parsed is None or parsed > datetime.now(UTC).date():
        errors.append({"field": f"{prefix}date_of_birth", "message": "must be a past date as YYYY-MM-DD"})
    fields["date_of_birth"] = born
    gender = body.get("gender", "U")
    if gender not in ("F", "M", "U"):
        errors.append({"field": f"{prefix}gender", "message": "must be F, M or U"})
    fields["gender"] = gender
    address = body.get("address") or {"line1": "", "line2": "", "city": "", "state": "", "zip": ""}
    if not isinstance(address, dict):
        errors.append({"field": f"{prefix}address", "message": "must be an object"})
    fields["address"] = address
    for name in ("identifiers", "coverage"):
        value = body.get(name) or []
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            errors.append({"field": f"{prefix}{name}", "message": "must be a list of objects"})
        fields[name] = value
    fields["language"] = fields["language"] or "English"
    fields["status"] = "Active"
    return fields


def _new_patient(vendor, fields: dict[str, Any]) -> int:
    table = vendor.agency.table("patients")
    index = table.count
    mrn = f"WS{100000 + index}"
    identifiers = [{"type": "MRN", "value": mrn}] + [i for i in fields["identifiers"] if i.get("type") != "MRN"]
    return table.create({**fields, "mrn": mrn, "identifiers": identifiers, "branch_id": vendor.agency.ref("locations", 0)})


def create_patient(vendor, body: dict[str, Any]) -> Response:
    errors: list[dict[str, str]] = []
    fields = patient_fields(body, errors)
    if errors:
        raise _invalid(errors)
    table = vendor.agency.table("patients")
    return Response(201, table.get(_new_patient(vendor, fields)))


def create_referral(vendor, body: dict[str, Any]) -> Response:
    errors: list[dict[str, str]] = []
    patient = _ref(vendor, body, "patient_id", "patients", errors, required=False)
    inline = body.get("patient")
    patient_data = None
    if patient is None and not any(e["field"] == "patient_id" for e in errors):
        if not isinstance(inline, dict):
            errors.append({"field": "patient", "message": "give patient_id or a patient object"})
        else:
            patient_data = patient_fields(inline, errors, prefix="patient.")
    fields = {
        "referral_source": _text(body, "referral_source", errors), "reason": _text(body, "reason", errors, required=False, limit=500),
        "priority": body.get("priority") or "Routine", "service_code": _text(body, "service_code", errors, limit=20),
    }
    if fields["priority"] not in ("Routine", "Urgent"):
        errors.append({"field": "priority", "message": "must be Routine or Urgent"})
    if errors:
        raise _invalid(errors)
    if patient_data is not None:
        patient = _new_patient(vendor, patient_data)
    referrals = vendor.agency.table("referrals")
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    index = referrals.create({**fields, "patient_id": vendor.agency.ref("patients", patient), "status": "Pending", "received_at": now,
                              "decided_at": None})
    vendor.pending_referrals[index] = time.monotonic()
    return Response(201, referrals.get(index))


def _moment(body: dict, name: str, errors: list) -> datetime | None:
    value = body.get(name)
    try:
        moment = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        errors.append({"field": name, "message": "must be an ISO 8601 date-time with a time zone"})
        return None
    return moment


def save_appointment(vendor, body: dict[str, Any]) -> Response:
    """Create (no "id") or update an appointment, refusing what the payer's authorization does not cover."""
    agency: Agency = vendor.agency
    appointments = agency.table("appointments")
    errors: list[dict[str, str]] = []
    existing = _ref(vendor, body, "id", "appointments", errors, required=False)
    patient = _ref(vendor, body, "patient_id", "patients", errors)
    practitioner = _ref(vendor, body, "practitioner_id", "practitioners", errors)
    location = _ref(vendor, body, "location_id", "locations", errors, required=False)
    start, end = _moment(body, "start", errors), _moment(body, "end", errors)
    service = _text(body, "service_code", errors, limit=20)
    if service and service not in SERVICES:
        errors.append({"field": "service_code", "message": f"{service!r} is not a service this agency provides"})
    if start and end and end <= start:
        errors.append({"field": "end", "message": "must be after start"})
    if existing is not None and patient is not None:
        if appointments.fields(existing)["patient_id"] != agency.ref("patients", patient):
            errors.append({"field": "patient_id", "message": "an appointment cannot move to another patient"})
    if errors:
        raise _invalid(errors)
    authorization = _authorization_for(vendor, body, patient, service, start)
    units = agency.units_for(service, start, end)
    used = agency.units_used(authorization)
    if existing is not None and appointments.fields(existing)["status"] in UNIT_CONSUMING:
        used -= float(appointments.fields(existing)["units"])
    allowed = float(agency.table("authorizations").fields(authorization)["units_allowed"])
    if used + units > allowed:
        raise HttpError(422, "authorization_units_exceeded",
                        f"the visit needs {units:g} units; authorization {agency.ref('authorizations', authorization)} has {max(0.0, allowed - used):g} left",
                        errors=[{"field": "start", "message": "exceeds the authorization's remaining units"}],
                        extra={"authorization_id": agency.ref("authorizations", authorization), "units_requested": units,
                               "units_remaining": max(0.0, allowed - used)})
    fields = {
        "patient_id": agency.ref("patients", patient), "practitioner_id": agency.ref("practitioners", practitioner),
        "location_id": agency.ref("locations", location), "authorization_id": agency.ref("authorizations", authorization),
        "service_code": service, "start": agency._iso(start), "end": agency._iso(end), "units": units,
        "status": body.get("status") if body.get("status") in ("Scheduled", "Cancelled") else "Scheduled",
        "visit_type": "HOME", "notes": body.get("notes") if isinstance(body.get("notes"), str) else "",
    }
    with vendor.lock:
        if existing is None:
            index = appointments.create(fields)
            agency.booked.setdefault(authorization, []).append(index)
            status = 201
        else:
            index = existing
            appointments.replace(index, fields)
            status = 200
        agency.forget_units(authorization)
    return Response(status, appointments.get(index))


def _authorization_for(vendor, body: dict, patient: int, service: str, start: datetime) -> int:
    agency: Agency = vendor.agency
    table = agency.table("authorizations")
    patient_id = agency.ref("patients", patient)
    candidates = [patient, patient + agency.scale] if patient < agency.scale else []
    candidates += [i for i in range(agency.sizes["authorizations"], table.count)]  # added since start
    day = (start.astimezone(UTC) + TIME_ZONE_OFFSET).date().isoformat()  # the agency's local day
    covering = []
    for index in candidates:
        auth = table.get(index) if index < table.count else None
        if auth is None or auth["patient_id"] != patient_id or service not in auth["service_codes"]:
            continue
        covering.append(auth)
        if auth["status"] == "Active" and auth["start_date"] <= day <= auth["end_date"]:
            return index
    if covering:
        auth = covering[0]
        raise HttpError(422, "outside_authorization_dates",
                        f"authorization {auth['id']} covers {service} from {auth['start_date']} to {auth['end_date']} only",
                        errors=[{"field": "start", "message": "is outside the authorization's dates"}],
                        extra={"authorization_id": auth["id"]})
    raise HttpError(422, "no_authorization", f"the patient has no authorization for {service}",
                    errors=[{"field": "service_code", "message": "no payer authorization covers this service"}])
