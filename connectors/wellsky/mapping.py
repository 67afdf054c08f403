"""WellSky portal records → canonical dicts, and canonical writes → WellSky request bodies.

Payloads are parsed into typed models first (validation at the edge): a record that breaks the
portal's contract fails here with the path of the bad field, is kept, and goes to triage.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from canonical.codes import CodeMapper
from connectors.payloads import RawAddress, RawIdentifier, RawModel, one_of, parse
from connectors.wellsky import constants as c
from tenants.choices import MappingCategory


class CoverageItem(RawModel):
    priority: int
    payer_name: str
    payer_id: str = ""
    member_id: str = ""
    plan_name: str = ""
    group_number: str = ""
    effective_date: date | None = None
    termination_date: date | None = None


class RawPatient(RawModel):
    id: str
    first_name: str
    middle_name: str = ""
    last_name: str
    date_of_birth: date
    gender: str = "U"
    language: str = ""
    phone: str = ""
    email: str = ""
    address: RawAddress = RawAddress()
    identifiers: list[RawIdentifier] = []
    coverage: list[CoverageItem] = []


class RawPractitioner(RawModel):
    id: str
    npi: str = ""
    first_name: str = ""
    last_name: str
    credentials: str = ""
    specialties: list[str] = []
    phone: str = ""
    email: str = ""
    status: str = "Active"
    hire_date: date | None = None


class RawLocation(RawModel):
    id: str
    name: str
    type: str = "branch"
    phone: str = ""
    address: RawAddress = RawAddress()
    active: bool = True


class RawAuthorization(RawModel):
    id: str
    patient_id: str
    payer_name: str
    auth_number: str
    service_codes: list[str]
    units_allowed: Decimal
    unit_type: str
    start_date: date
    end_date: date
    status: str


class RawAppointment(RawModel):
    id: str
    patient_id: str
    practitioner_id: str | None = None
    location_id: str | None = None
    authorization_id: str | None = None
    service_code: str = ""
    start: datetime
    end: datetime
    units: Decimal = Decimal(1)
    status: str
    visit_type: str = "HOME"
    notes: str = ""


class Diagnosis(RawModel):
    rank: int = 1
    code: str
    description: str = ""


class Procedure(RawModel):
    code: str
    modifiers: list[str] = []
    units: Decimal = Decimal(1)
    description: str = ""


class Vital(RawModel):
    loinc: str
    description: str = ""
    value: Decimal
    unit: str
    taken_at: datetime | None = None


class Note(RawModel):
    author_id: str = ""
    summary: str
    status: str = "Draft"
    signed_at: datetime | None = None
    locked: bool = False
    amendments: list[dict[str, Any]] = []


class RawEncounter(RawModel):
    id: str
    appointment_id: str | None = None
    patient_id: str
    practitioner_id: str | None = None
    location_id: str | None = None
    status: str
    visit_type: str = "HOME"
    visit_start: datetime
    visit_end: datetime | None = None
    diagnoses: list[Diagnosis] = []
    procedures: list[Procedure] = []
    vitals: list[Vital] = []
    note: Note | None = None


class Goal(RawModel):
    description: str
    target: str = ""
    status: str = ""


class Intervention(RawModel):
    description: str
    frequency: str = ""
    status: str = ""


class RawCarePlan(RawModel):
    id: str
    patient_id: str
    title: str = ""
    status: str
    start_date: date | None = None
    end_date: date | None = None
    goals: list[Goal] = []
    interventions: list[Intervention] = []
    outcomes: list[dict[str, Any]] = []


class RawReferral(RawModel):
    id: str
    patient_id: str | None = None
    referral_source: str
    reason: str = ""
    priority: str = "Routine"
    service_code: str = ""
    status: str
    received_at: datetime | None = None


def _service(mapper: CodeMapper, code: str) -> str:
    return mapper.code(MappingCategory.SERVICE_CODE, c.SOURCE_SYSTEM, code)


# --- reading: raw → canonical ----------------------------------------------------------------------------
def patient(raw: Any, mapper: CodeMapper) -> dict[str, Any]:
    p = parse(RawPatient, raw)
    systems = {"MRN": c.MRN_SYSTEM, "MEDICAID": c.MEDICAID_SYSTEM}
    language = c.LANGUAGES.get(p.language) or mapper.code(MappingCategory.LANGUAGE, c.SOURCE_SYSTEM, p.language)
    return {
        "external_id": p.id, "family_name": p.last_name, "given_names": [n for n in (p.first_name, p.middle_name) if n],
        "birth_date": p.date_of_birth, "sex": one_of(c.SEX, p.gender, "gender"), "language": language, "phone": p.phone,
        "email": p.email, **p.address.canonical(),
        "identifiers": [{"system": systems.get(i.type, f"urn:wellsky:{i.type.lower()}"), "value": i.value} for i in p.identifiers],
    }


def coverage_record(raw: Any) -> dict[str, Any]:
    """One flattened coverage row (see WellSkyConnector.fetch_page for `coverage`)."""
    item = parse(CoverageItem, raw)
    return {"external_id": raw["id"], "patient": raw["patient_id"], "payer": item.payer_name, "payer_id": item.payer_id,
            "member_id": item.member_id, "plan": item.plan_name, "group_number": item.group_number, "priority": item.priority,
            "status": "active", "start_date": item.effective_date, "end_date": item.termination_date}


def practitioner(raw: Any, mapper: CodeMapper) -> dict[str, Any]:
    p = parse(RawPractitioner, raw)
    return {"external_id": p.id, "family_name": p.last_name, "given_names": [p.first_name] if p.first_name else [], "phone": p.phone,
            "email": p.email, "npi": p.npi, "roles": [p.credentials] if p.credentials else [], "specialties": list(p.specialties),
            "active": p.status == "Active"}


def location(raw: Any, mapper: CodeMapper) -> dict[str, Any]:
    p = parse(RawLocation, raw)
    return {"external_id": p.id, "name": p.name, "type": p.type, "phone": p.phone, "active": p.active, **p.address.canonical()}


def authorization(raw: Any, mapper: CodeMapper) -> dict[str, Any]:
    a = parse(RawAuthorization, raw)
    return {"external_id": a.id, "patient": a.patient_id, "payer": a.payer_name, "auth_number": a.auth_number,
            "service_codes": [_service(mapper, code) for code in a.service_codes], "units_allowed": a.units_allowed,
            "unit_type": one_of(c.UNIT_TYPE, a.unit_type, "unit_type"), "start_date": a.start_date, "end_date": a.end_date,
            "status": one_of(c.AUTHORIZATION_STATUS, a.status, "status")}


def _visit_type(mapper: CodeMapper, value: str) -> str:
    mapped = mapper.map(MappingCategory.VISIT_TYPE, c.SOURCE_SYSTEM, value)
    return mapped.code if mapped.mapped else c.VISIT_TYPES.get(value, "in-person")


def appointment(raw: Any, mapper: CodeMapper) -> dict[str, Any]:
    a = parse(RawAppointment, raw)
    return {"external_id": a.id, "patient": a.patient_id, "practitioner": a.practitioner_id, "location": a.location_id,
            "authorization": a.authorization_id, "start": a.start, "end": a.end, "status": one_of(c.APPOINTMENT_STATUS, a.status, "status"),
            "visit_type": _visit_type(mapper, a.visit_type), "service_code": _service(mapper, a.service_code), "units": a.units,
            "description": a.notes[:300]}


def encounter(raw: Any, mapper: CodeMapper) -> dict[str, Any]:
    e = parse(RawEncounter, raw)
    procedures = []
    for item in e.procedures:
        mapped = mapper.map(MappingCategory.SERVICE_CODE, c.SOURCE_SYSTEM, item.code)
        procedures.append({"system": c.HCPCS_SYSTEM if mapped.mapped else c.LOCAL_SERVICE_SYSTEM, "code": mapped.code,
                           "modifiers": list(item.modifiers), "units": item.units, "display": item.description})
    notes = []
    if e.note is not None:
        n = e.note
        notes.append({"author": n.author_id, "text": n.summary, "status": one_of(c.NOTE_STATUS, n.status, "note.status"),
                      "signed_at": n.signed_at, "signed_by": n.author_id if n.signed_at else "", "locked": n.locked,
                      "amendments": list(n.amendments)})
    return {
        "external_id": e.id, "patient": e.patient_id, "practitioner": e.practitioner_id, "location": e.location_id,
        "appointment": e.appointment_id, "status": one_of(c.ENCOUNTER_STATUS, e.status, "status"),
        "visit_type": _visit_type(mapper, e.visit_type), "period_start": e.visit_start, "period_end": e.visit_end,
        "diagnoses": [{"system": c.ICD10_SYSTEM, "code": d.code, "display": d.description, "rank": d.rank} for d in e.diagnoses],
        "procedures": procedures,
        "vitals": [{"loinc": v.loinc, "display": v.description, "value": v.value, "unit": v.unit, "effective_at": v.taken_at} for v in e.vitals],
        "notes": notes,
    }


def care_plan(raw: Any, mapper: CodeMapper) -> dict[str, Any]:
    p = parse(RawCarePlan, raw)
    return {"external_id": p.id, "patient": p.patient_id, "title": p.title, "status": one_of(c.CARE_PLAN_STATUS, p.status, "status"),
            "period_start": p.start_date, "period_end": p.end_date,
            "goals": [g.model_dump() for g in p.goals], "activities": [i.model_dump() for i in p.interventions], "outcomes": list(p.outcomes)}


def referral(raw: Any, mapper: CodeMapper) -> dict[str, Any]:
    r = parse(RawReferral, raw)
    return {"external_id": r.id, "patient": r.patient_id, "source": r.referral_source, "reason": r.reason,
            "priority": one_of(c.PRIORITY, r.priority, "priority"), "status": one_of(c.REFERRAL_STATUS, r.status, "status"),
            "service_code": _service(mapper, r.service_code), "received_at": r.received_at}


NORMALIZERS = {
    "patients": patient, "practitioners": practitioner, "locations": location, "authorizations": authorization,
    "appointments": appointment, "encounters": encounter, "care_plans": care_plan, "referrals": referral,
}


# --- writing: canonical → request bodies -------------------------------------------------------------------
def patient_body(data: dict[str, Any]) -> dict[str, Any]:
    """A canonical-style patient (family_name, given_names, birth_date, sex, …) as WellSky's POST /patients body."""
    given = list(data.get("given_names") or [])
    return {
        "first_name": given[0] if given else "", "middle_name": " ".join(given[1:]), "last_name": data.get("family_name", ""),
        "date_of_birth": str(data.get("birth_date") or ""), "gender": c.SEX_CODE.get(data.get("sex") or "unknown", "U"),
        "phone": data.get("phone", ""), "email": data.get("email", ""),
        "language": next((name for name, code in c.LANGUAGES.items() if code == data.get("language")), "English"),
        "address": {"line1": data.get("address_line1", ""), "line2": data.get("address_line2", ""), "city": data.get("city", ""),
                    "state": data.get("state", ""), "zip": data.get("postal_code", "")},
        "identifiers": [{"type": "EXTERNAL", "value": i["value"], "system": i.get("system", "")} for i in data.get("identifiers") or []],
    }
