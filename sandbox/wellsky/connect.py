"""WellSky Connect: a FHIR R4 read surface over the agency's records, OAuth2 client credentials.

    POST /fhir/oauth/token        grant_type=client_credentials; the client by HTTP Basic auth or form fields
    GET  /fhir/metadata           the CapabilityStatement (no token needed)
    GET  /fhir/<Type>             search: _count (default 50, at most 200), _lastUpdated=gt…, patient=;
                                  further pages by Bundle.link[next] (an opaque _cursor)
    GET  /fhir/<Type>/<id>        one resource (410 when it was deleted)

Types: Patient, Practitioner, Location, Appointment, Encounter, Coverage (from the patients' coverage),
CarePlan, ServiceRequest (from referrals), Condition (from the encounters' diagnoses). Answers are
`application/fhir+json`; errors are OperationOutcome, except the token endpoint's, which are OAuth2's.
Searches list in the order the vendor indexes records (last update, then id); deletions are not listed.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from sandbox.server import HttpError, Request, Response
from sandbox.table import Record
from sandbox.wellsky.data import AGENCY
from sandbox.wellsky.pcc import (
    APPOINTMENT_STATUS,
    GENDER,
    NPI_SYSTEM,
    Where,
    address,
    authorize,
    churn,
    human_name,
    issue_token,
    maybe_malformed,
    person_of,
    service_concept,
    since_of,
    telecom,
)

if TYPE_CHECKING:
    from sandbox.wellsky.vendor import WellSky

FHIR_JSON = {"Content-Type": "application/fhir+json"}
DEFAULT_COUNT, MAX_COUNT = 50, 200
SCOPE = "system/*.read"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
IDENTIFIER_TYPES = {"MRN": ("MR", "Medical record number"), "MEDICAID": ("MA", "Patient Medicaid number")}
LANGUAGES = {"English": "en", "Spanish": "es", "Vietnamese": "vi", "Russian": "ru", "Somali": "so"}
REFERRAL_STATUS = {"Pending": "draft", "Accepted": "active", "Declined": "revoked"}
GOAL_STATUS = {"Not Started": ("planned", None), "In Progress": ("active", "in-progress"), "Achieved": ("completed", "achieved")}
OUTCOME_CODES = {400: "invalid", 401: "login", 403: "forbidden", 404: "not-found", 405: "not-supported", 410: "deleted"}
OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"


def handle(vendor: WellSky, request: Request) -> Response:
    try:
        return _route(vendor, request)
    except HttpError as exc:
        return outcome(exc.status, exc.detail, exc.headers)
    except ValueError as exc:  # a parameter the search helpers refused
        return outcome(400, str(exc))


def outcome(status: int, diagnostics: str, headers: dict[str, str] | None = None) -> Response:
    body = {"resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": OUTCOME_CODES.get(status, "exception"), "diagnostics": diagnostics}]}
    return Response(status, body, {**FHIR_JSON, **(headers or {})})


def _route(vendor: WellSky, request: Request) -> Response:
    path = request.path.rstrip("/")  # a FHIR base tolerates a trailing slash
    if path == "/fhir/oauth/token":
        if request.method != "POST":
            raise HttpError(405, "method_not_allowed", "POST the token request", headers={"Allow": "POST"})
        return issue_token(vendor, request, "connect", scope=SCOPE)
    if path == "/fhir/metadata":
        return Response(200, capability_statement(_base(vendor, request)), FHIR_JSON)
    authorize(vendor, request, "connect")
    parts = path.split("/")[2:]  # below /fhir
    kind = KINDS.get(parts[0]) if parts else None
    if kind is None or len(parts) > 2:
        raise HttpError(404, "not_found", f"no such path {request.path}; types served: " + ", ".join(KINDS))
    if request.method != "GET":
        raise HttpError(405, "method_not_allowed", "this FHIR server is read-only", headers={"Allow": "GET"})
    if len(parts) == 1:
        return Response(200, _search(vendor, request, parts[0], kind), FHIR_JSON)
    return Response(200, _read(vendor, parts[0], kind, parts[1]), FHIR_JSON)


def _base(vendor: WellSky, request: Request) -> str:
    host = request.headers.get("Host")
    return f"http://{host}/{vendor.prefix}/fhir" if host else f"/{vendor.prefix}/fhir"


# --- the types ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Kind:
    table: str
    render: Callable[[Record], list[dict[str, Any]]]  # one source record -> its resources
    patient: str | None  # how patient= filters: the source's "patient_id", its own "id", or None (not searchable)
    drop: str  # what a malformed resource loses
    date_path: tuple[str, ...] | None  # where a malformed resource's date breaks
    fanout: int = 1  # most resources one source record gives; a page reads _count // fanout records


def _prune(value: Any) -> Any:
    """FHIR JSON has no nulls, empty strings, lists or objects: leave them out, recursively."""
    if isinstance(value, dict):
        pruned = {k: _prune(v) for k, v in value.items()}
        return {k: v for k, v in pruned.items() if v not in (None, "", [], {})}
    if isinstance(value, list):
        return [v for v in (_prune(v) for v in value) if v not in (None, "", [], {})]
    return value


def _meta(record: Record) -> dict[str, Any]:
    return {"lastUpdated": record["updated_at"]}


def _ref(resource_type: str, record_id: str | None, display: str = "") -> dict[str, str] | None:
    return {"reference": f"{resource_type}/{record_id}", "display": display} if record_id else None


def _coding(system: str, code: str, display: str = "") -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}]}


def _identifier(ident: dict[str, str]) -> dict[str, Any]:
    code = IDENTIFIER_TYPES.get(ident.get("type", ""))
    kind = _coding(V2_0203, *code) if code else {"text": ident.get("type")}
    return {"use": "usual" if ident.get("type") == "MRN" else "secondary", "type": kind,
            "system": f"urn:wellsky:sunrise:{ident.get('type', 'id').lower()}", "value": ident.get("value")}


def render_patient(r: Record) -> list[dict[str, Any]]:
    language = r.get("language") or "English"
    return [{
        "resourceType": "Patient", "id": r["id"], "meta": _meta(r),
        "identifier": [_identifier(i) for i in r.get("identifiers") or []], "active": r.get("status") == "Active",
        "name": [human_name(r.get("first_name", ""), r.get("middle_name", ""), r.get("last_name", ""))],
        "telecom": telecom(r.get("phone", ""), r.get("email", "")), "gender": GENDER.get(r.get("gender"), "unknown"),
        "birthDate": r.get("date_of_birth"), "address": [address(r.get("address"))],
        "communication": [{"language": {**_coding("urn:ietf:bcp:47", LANGUAGES.get(language, ""), language), "text": language},
                           "preferred": True}] if language in LANGUAGES else [{"language": {"text": language}}],
    }]


def render_practitioner(r: Record) -> list[dict[str, Any]]:
    credentials = r.get("credentials") or ""
    return [{
        "resourceType": "Practitioner", "id": r["id"], "meta": _meta(r),
        "identifier": [{"system": NPI_SYSTEM, "value": r.get("npi")}], "active": r.get("status") == "Active",
        "name": [human_name(r.get("first_name", ""), "", r.get("last_name", ""), suffix=credentials)],
        "telecom": telecom(r.get("phone", ""), r.get("email", ""), use="work"),
        "qualification": [{"code": {"text": credentials}}] if credentials else [],
    }]


def render_location(r: Record) -> list[dict[str, Any]]:
    return [{
        "resourceType": "Location", "id": r["id"], "meta": _meta(r), "status": "active" if r.get("active", True) else "inactive",
        "name": r.get("name"), "mode": "instance", "telecom": telecom(r.get("phone", ""), use="work"),
        "address": address(r.get("address"), use="work"), "managingOrganization": {"display": AGENCY},
    }]


def _minutes(start: str | None, end: str | None) -> int | None:
    try:
        minutes = int((datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds() // 60)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return minutes if minutes > 0 else None


def render_appointment(r: Record) -> list[dict[str, Any]]:
    actors = (_ref("Patient", r.get("patient_id")), _ref("Practitioner", r.get("practitioner_id")), _ref("Location", r.get("location_id")))
    return [{
        "resourceType": "Appointment", "id": r["id"], "meta": _meta(r), "status": APPOINTMENT_STATUS.get(r.get("status"), "proposed"),
        "serviceType": [service_concept(r.get("service_code", ""))], "start": r.get("start"), "end": r.get("end"),
        "minutesDuration": _minutes(r.get("start"), r.get("end")), "comment": r.get("notes"),
        "participant": [{"actor": actor, "required": "required", "status": "accepted"} for actor in actors if actor],
    }]


def render_encounter(r: Record) -> list[dict[str, Any]]:
    procedures = r.get("procedures") or []
    return [{
        "resourceType": "Encounter", "id": r["id"], "meta": _meta(r), "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "HH", "display": "home health"},
        "type": [service_concept(p["code"]) for p in procedures[:1]],
        "subject": _ref("Patient", r.get("patient_id")),
        "participant": [{"individual": _ref("Practitioner", r.get("practitioner_id"))}] if r.get("practitioner_id") else [],
        "appointment": [_ref("Appointment", r.get("appointment_id"))],
        "period": {"start": r.get("visit_start"), "end": r.get("visit_end")},
        "diagnosis": [{"condition": _ref("Condition", f"{r['id']}-{d['rank']}"), "rank": d["rank"]} for d in r.get("diagnoses") or []],
        "location": [{"location": _ref("Location", r.get("location_id"))}] if r.get("location_id") else [],
    }]


def render_coverages(r: Record) -> list[dict[str, Any]]:
    """A patient's coverage entries, one Coverage each, with the id <patient id>-<priority>."""
    out = []
    for cover in r.get("coverage") or []:
        classes = [{"type": _coding("http://terminology.hl7.org/CodeSystem/coverage-class", "group"), "value": cover.get("group_number")},
                   {"type": _coding("http://terminology.hl7.org/CodeSystem/coverage-class", "plan"),
                    "value": cover.get("plan_name"), "name": cover.get("plan_name")}]
        out.append({
            "resourceType": "Coverage", "id": f"{r['id']}-{cover.get('priority', 1)}", "meta": _meta(r), "status": "active",
            "identifier": [{"type": _coding(V2_0203, "MB", "Member Number"), "value": cover.get("member_id")}],
            "subscriberId": cover.get("member_id"), "beneficiary": _ref("Patient", r["id"]),
            "relationship": _coding("http://terminology.hl7.org/CodeSystem/subscriber-relationship", "self"),
            "period": {"start": cover.get("effective_date"), "end": cover.get("termination_date")},
            "payor": [{"identifier": {"value": cover.get("payer_id")}, "display": cover.get("payer_name")}],
            "class": [c for c in classes if c.get("value")], "order": cover.get("priority"),
        })
    return out


def render_care_plan(r: Record) -> list[dict[str, Any]]:
    subject = _ref("Patient", r.get("patient_id"))
    goals = []
    for number, goal in enumerate(r.get("goals") or [], 1):
        lifecycle, achievement = GOAL_STATUS.get(goal.get("status"), ("active", None))
        goals.append({
            "resourceType": "Goal", "id": f"goal-{number}", "lifecycleStatus": lifecycle, "description": {"text": goal.get("description")},
            "achievementStatus": _coding("http://terminology.hl7.org/CodeSystem/goal-achievement", achievement) if achievement else None,
            "subject": subject, "note": [{"text": f"Target: {goal['target']}"}] if goal.get("target") else [],
        })
    activities = [{"detail": {"status": "in-progress" if i.get("status") == "Active" else "unknown",
                              "description": f"{i.get('description')} ({i.get('frequency')})" if i.get("frequency") else i.get("description")}}
                  for i in r.get("interventions") or []]
    return [{
        "resourceType": "CarePlan", "id": r["id"], "meta": _meta(r), "status": "active" if r.get("status") == "Active" else "unknown",
        "intent": "plan", "title": r.get("title"),
        "category": [_coding("http://hl7.org/fhir/us/core/CodeSystem/careplan-category", "assess-plan")],
        "subject": subject, "period": {"start": r.get("start_date"), "end": r.get("end_date")},
        "contained": goals, "goal": [{"reference": f"#{g['id']}"} for g in goals], "activity": activities,
    }]


def render_service_request(r: Record) -> list[dict[str, Any]]:
    return [{
        "resourceType": "ServiceRequest", "id": r["id"], "meta": _meta(r), "status": REFERRAL_STATUS.get(r.get("status"), "unknown"),
        "intent": "order", "priority": "urgent" if r.get("priority") == "Urgent" else "routine",
        "code": service_concept(r.get("service_code", "")) if r.get("service_code") else None,
        "subject": _ref("Patient", r.get("patient_id")), "authoredOn": r.get("received_at"),
        "requester": {"display": r.get("referral_source")}, "performer": [{"display": AGENCY}],
        "reasonCode": [{"text": r.get("reason")}] if r.get("reason") else [],
    }]


def render_conditions(r: Record) -> list[dict[str, Any]]:
    """An encounter's diagnoses, one Condition each, with the id <encounter id>-<rank>."""
    return [{
        "resourceType": "Condition", "id": f"{r['id']}-{d['rank']}", "meta": _meta(r),
        "clinicalStatus": _coding("http://terminology.hl7.org/CodeSystem/condition-clinical", "active"),
        "verificationStatus": _coding("http://terminology.hl7.org/CodeSystem/condition-ver-status", "confirmed"),
        "category": [_coding("http://terminology.hl7.org/CodeSystem/condition-category", "encounter-diagnosis", "Encounter Diagnosis")],
        "code": {**_coding("http://hl7.org/fhir/sid/icd-10-cm", d.get("code"), d.get("description")), "text": d.get("description")},
        "subject": _ref("Patient", r.get("patient_id")), "encounter": _ref("Encounter", r["id"]), "recordedDate": r.get("visit_start"),
    } for d in r.get("diagnoses") or []]


KINDS = {
    "Patient": Kind("patients", render_patient, None, "name", ("birthDate",)),
    "Practitioner": Kind("practitioners", render_practitioner, None, "identifier", None),
    "Location": Kind("locations", render_location, None, "name", None),
    "Appointment": Kind("appointments", render_appointment, "patient_id", "participant", ("start",)),
    "Encounter": Kind("encounters", render_encounter, "patient_id", "subject", ("period", "start")),
    "Coverage": Kind("patients", render_coverages, "id", "beneficiary", ("period", "start"), fanout=2),
    "CarePlan": Kind("care-plans", render_care_plan, "patient_id", "subject", ("period", "start")),
    "ServiceRequest": Kind("referrals", render_service_request, "patient_id", "subject", ("authoredOn",)),
    "Condition": Kind("encounters", render_conditions, "patient_id", "subject", ("recordedDate",), fanout=3),
}


def resources_of(kind: Kind, record: Record) -> list[dict[str, Any]]:
    return [_prune(resource) for resource in kind.render(record)]


# --- reading ----------------------------------------------------------------------------------------------------
def _read(vendor: WellSky, type_name: str, kind: Kind, resource_id: str) -> dict[str, Any]:
    # A fanned-out resource's id is its source record's id, a dash, and a number.
    source_id = resource_id.rpartition("-")[0] if kind.fanout > 1 else resource_id
    table = vendor.agency.table(kind.table)
    index = table.index_of(source_id)
    if index is not None and index in table.deleted:
        raise HttpError(410, "gone", f"{type_name}/{resource_id} was deleted")
    record = table.get(index)
    found = [r for r in resources_of(kind, record) if r["id"] == resource_id] if record is not None else []
    if not found:
        raise HttpError(404, "not_found", f"no {type_name}/{resource_id}")
    return found[0]


def _count(query: dict[str, str]) -> int:
    raw = query.get("_count", "")
    if not raw:
        return DEFAULT_COUNT
    if not raw.isdigit() or int(raw) < 1:
        raise HttpError(400, "invalid_parameter", "_count must be a whole number ≥ 1")
    return min(int(raw), MAX_COUNT)  # FHIR: a server may return fewer than asked


def _encode_cursor(cursor: str) -> str:
    return base64.urlsafe_b64encode(cursor.encode()).decode().rstrip("=")


def _decode_cursor(token: str) -> str:
    if not token:
        return ""
    try:
        return base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise HttpError(400, "invalid_parameter", "_cursor is not one this server gave out") from None


def _patient_filter(vendor: WellSky, kind: Kind, value: str | None) -> Where | None:
    if not value:
        return None
    wanted = value.removeprefix("Patient/")
    agency = vendor.agency
    if kind.patient == "id":
        index = agency.table("patients").index_of(wanted)
        return lambda i: i == index
    return lambda i: person_of(agency, kind.table, i, "patient") == wanted


def _search(vendor: WellSky, request: Request, type_name: str, kind: Kind) -> dict[str, Any]:
    query = request.query
    known = {"_count", "_lastUpdated", "_cursor", "_format"} | ({"patient"} if kind.patient else set())
    unknown = sorted(set(query) - known)
    if unknown:
        raise HttpError(400, "invalid_parameter", f"{type_name} does not support the search parameter(s) {', '.join(unknown)}; "
                        f"supported: {', '.join(sorted(known - {'_cursor', '_format'}))}")
    count = _count(query)
    since = since_of(query["_lastUpdated"]) if query.get("_lastUpdated") else ""
    where = _patient_filter(vendor, kind, query.get("patient"))
    table = vendor.agency.table(kind.table)
    records, next_cursor = table.page(since=since, cursor=_decode_cursor(query.get("_cursor", "")),
                                      limit=max(1, count // kind.fanout), where=where)
    base = _base(vendor, request)
    entries = []
    for record in records:
        for resource in resources_of(kind, record):
            resource = maybe_malformed(vendor, request, resource, kind.drop, kind.date_path)
            entries.append({"fullUrl": f"{base}/{type_name}/{resource['id']}", "resource": resource, "search": {"mode": "match"}})
    params = {k: v for k, v in query.items() if k != "_cursor"} | {"_count": count}
    links = [{"relation": "self", "url": f"{base}/{type_name}?{urlencode(query)}"}]
    if next_cursor is not None:
        links.append({"relation": "next", "url": f"{base}/{type_name}?{urlencode({**params, '_cursor': _encode_cursor(next_cursor)})}"})
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "link": links}
    if where is None and not since and kind.fanout == 1:
        bundle["total"] = table.live_count()  # cheap only when nothing filters; otherwise left out, as FHIR allows
    if entries:
        bundle["entry"] = entries
    churn(vendor, request)
    return bundle


# --- the capability statement -------------------------------------------------------------------------------
def capability_statement(base: str) -> dict[str, Any]:
    def params(kind: Kind) -> list[dict[str, str]]:
        out = [{"name": "_lastUpdated", "type": "date", "documentation": "gt or ge a date-time"}]
        return out + ([{"name": "patient", "type": "reference"}] if kind.patient else [])

    return {
        "resourceType": "CapabilityStatement", "status": "active", "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "publisher": "WellSky (sandbox)", "kind": "instance", "software": {"name": "WellSky Connect sandbox"},
        "implementation": {"description": f"{AGENCY}: FHIR R4 read access", "url": base},
        "fhirVersion": "4.0.1", "format": ["application/fhir+json", "json"],
        "rest": [{
            "mode": "server",
            "security": {
                "extension": [{"url": OAUTH_URIS, "extension": [{"url": "token", "valueUri": f"{base}/oauth/token"}]}],
                "service": [_coding("http://terminology.hl7.org/CodeSystem/restful-security-service", "OAuth", "OAuth")],
                "description": "OAuth2 client credentials: POST grant_type=client_credentials to the token URL; "
                               f"bearer tokens carry the scope {SCOPE}",
            },
            "resource": [{"type": name, "interaction": [{"code": "read"}, {"code": "search-type"}], "searchParam": params(kind)}
                         for name, kind in KINDS.items()],
        }],
    }

