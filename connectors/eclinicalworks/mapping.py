"""eClinicalWorks portal records → canonical dicts, and canonical writes → portal request bodies.

Payloads are parsed into typed models first (validation at the edge): a record that breaks the
portal's contract fails with the path of the bad field, is kept, and goes to triage.

Encounters differ by specialty edition. What both share maps to the canonical columns (diagnoses,
procedures, the progress note with its sign/lock state and amendments); vitals (primary care) and
scored instruments (PHQ-9, GAD-7: behavioral health) become observations with their LOINC; what
only one edition has (session minutes, risk assessment, the note's AI-scribe provenance) is kept
in `details`, under the edition's name, so nothing the chart says is lost.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

from canonical.codes import CodeMapper
from connectors.eclinicalworks import constants as c
from connectors.errors import InvalidPayload
from connectors.payloads import RawAddress, RawIdentifier, RawModel, one_of, parse
from tenants.choices import MappingCategory


class CoverageItem(RawModel):
    priority: int
    payer_id: str = ""
    payer_name: str
    plan_name: str = ""
    member_id: str = ""
    group_number: str = ""
    relationship: str = "self"
    claim_filing_indicator: str = ""
    effective_date: date | None = None
    termination_date: date | None = None


class RawPatient(RawModel):
    id: str
    first_name: str
    middle_name: str = ""
    last_name: str
    date_of_birth: date
    sex: str = "U"
    language: str = ""
    phone: str = ""
    email: str = ""
    address: RawAddress = RawAddress()
    identifiers: list[RawIdentifier] = []
    coverage: list[CoverageItem] = []


class RawProvider(RawModel):
    id: str
    npi: str = ""
    first_name: str = ""
    last_name: str
    credentials: str = ""
    specialty: str = ""
    phone: str = ""
    email: str = ""
    status: str = "active"


class RawFacility(RawModel):
    id: str
    name: str
    phone: str = ""
    address: RawAddress = RawAddress()
    active: bool = True


class RawAppointment(RawModel):
    id: str
    patient_id: str
    provider_id: str | None = None
    facility_id: str | None = None
    start: datetime
    end: datetime
    visit_type: str = ""
    telehealth: bool = False
    status: str
    reason: str = ""


class Diagnosis(RawModel):
    rank: int = 1
    code: str
    description: str = ""


class Procedure(RawModel):
    code: str
    description: str = ""
    units: Decimal = Decimal(1)
    modifiers: list[str] = []


class Vitals(RawModel):
    height_in: Decimal | None = None
    weight_lb: Decimal | None = None
    bmi: Decimal | None = None
    bp_systolic: Decimal | None = None
    bp_diastolic: Decimal | None = None
    pulse: Decimal | None = None
    resp_rate: Decimal | None = None
    temp_f: Decimal | None = None
    spo2: Decimal | None = None
    taken_at: datetime | None = None


class Score(RawModel):
    score: int
    severity: str = ""


class Amendment(RawModel):
    amendment_id: str = ""
    reason_code: str
    reason: str = ""
    text: str = ""
    amended_at: datetime | None = None
    amended_by: str | None = None
    signed_at: datetime | None = None


class ProgressNote(RawModel):
    note_id: str = ""
    status: Literal["draft", "signed", "locked"]
    source: str = "provider"
    ai_generated: bool = False
    ai_vendor: str | None = None
    author_id: str = ""
    signed_at: datetime | None = None
    signed_by: str | None = None
    locked_at: datetime | None = None
    locked_by: str | None = None
    text: str = ""
    amendments: list[Amendment] = []


class RawEncounter(RawModel):
    id: str
    appointment_id: str | None = None
    patient_id: str
    provider_id: str | None = None
    facility_id: str | None = None
    edition: Literal["primary_care", "behavioral_health"]
    start: datetime
    end: datetime | None = None
    telehealth: bool = False
    place_of_service: str = ""
    diagnoses: list[Diagnosis] = []
    progress_note: ProgressNote | None = None
    # primary care
    chief_complaint: str = ""
    vitals: Vitals | None = None
    procedures: list[Procedure] = []
    # behavioral health
    session_minutes: int | None = None
    psychotherapy_cpt: str = ""
    assessments: dict[str, Score] = {}
    risk_assessment: dict[str, Any] | None = None


def _digits(phone: str) -> str:
    return "".join(ch for ch in phone if ch.isdigit())


# --- reading: raw → canonical ----------------------------------------------------------------------------
def patient(raw: Any, mapper: CodeMapper) -> dict[str, Any]:
    p = parse(RawPatient, raw)
    systems = {"MRN": c.MRN_SYSTEM, "ACCOUNT": c.ACCOUNT_SYSTEM, "MEDICAID": c.MEDICAID_SYSTEM}
    language = c.LANGUAGES.get(p.language) or mapper.code(MappingCategory.LANGUAGE, c.SOURCE_SYSTEM, p.language)
    return {
        "external_id": p.id, "family_name": p.last_name, "given_names": [n for n in (p.first_name, p.middle_name) if n],
        "birth_date": p.date_of_birth, "sex": one_of(c.SEX, p.sex, "sex"), "language": language, "phone": p.phone,
        "email": p.email, **p.address.canonical(),
        "identifiers": [{"system": systems.get(i.type, f"urn:eclinicalworks:{i.type.lower()}"), "value": i.value}
                        for i in p.identifiers],
    }


def coverage_rows(patients: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each patient's coverage list as rows of their own (id `<patient id>:<priority>`)."""
    rows = []
    for record in patients:
        for item in record.get("coverage") or []:
            if isinstance(item, dict):
                rows.append({**item, "id": f"{record.get('id')}:{item.get('priority')}", "patient_id": record.get("id")})
    return rows


def coverage(raw: Any, mapper: CodeMapper) -> dict[str, Any]:
    item = parse(CoverageItem, raw)
    return {"external_id": raw["id"], "patient": raw["patient_id"], "payer": item.payer_name, "payer_id": item.payer_id,
            "member_id": item.member_id, "plan": item.plan_name, "group_number": item.group_number, "priority": item.priority,
            "claim_filing_indicator": item.claim_filing_indicator, "status": "active",
            "start_date": item.effective_date, "end_date": item.termination_date}


def practitioner(raw: Any, mapper: CodeMapper) -> dict[str, Any]:
    p = parse(RawProvider, raw)
    return {"external_id": p.id, "family_name": p.last_name, "given_names": [p.first_name] if p.first_name else [], "phone": p.phone,
            "email": p.email, "npi": p.npi, "roles": [p.credentials] if p.credentials else [],
            "specialties": [p.specialty] if p.specialty else [], "active": p.status == "active"}


def location(raw: Any, mapper: CodeMapper) -> dict[str, Any]:
    p = parse(RawFacility, raw)
    return {"external_id": p.id, "name": p.name, "type": "facility", "phone": p.phone, "active": p.active, **p.address.canonical()}


def _visit_type(telehealth: bool) -> str:
    return "telehealth" if telehealth else "in-person"


def appointment(raw: Any, mapper: CodeMapper) -> dict[str, Any]:
    a = parse(RawAppointment, raw)
    return {"external_id": a.id, "patient": a.patient_id, "practitioner": a.provider_id, "location": a.facility_id,
            "start": a.start, "end": a.end, "status": one_of(c.APPOINTMENT_STATUS, a.status, "status"),
            "visit_type": _visit_type(a.telehealth),
            "service_code": mapper.code(MappingCategory.VISIT_TYPE, c.SOURCE_SYSTEM, a.visit_type), "description": a.reason[:300]}


def _note(note: ProgressNote) -> dict[str, Any]:
    status = "draft" if note.status == "draft" else ("amended" if note.amendments else "signed")
    return {
        "author": note.author_id, "text": note.text, "status": status, "signed_at": note.signed_at,
        "signed_by": note.signed_by or "", "locked": note.status == "locked",
        "amendments": [{"reason_code": a.reason_code, "reason": a.reason, "text": a.text, "amended_by": a.amended_by,
                        "amended_at": a.amended_at.isoformat() if a.amended_at else None,
                        "resigned_at": a.signed_at.isoformat() if a.signed_at else None} for a in note.amendments],
    }


def encounter(raw: Any, mapper: CodeMapper) -> dict[str, Any]:
    e = parse(RawEncounter, raw)
    procedures = [{"system": c.CPT_SYSTEM, "code": p.code, "modifiers": list(p.modifiers), "units": p.units, "display": p.description}
                  for p in e.procedures]
    vitals = []
    details: dict[str, Any] = {"edition": e.edition, "place_of_service": e.place_of_service}
    if e.vitals is not None:
        for name, (loinc, display, unit) in c.VITALS.items():
            value = getattr(e.vitals, name)
            if value is not None:
                vitals.append({"loinc": loinc, "display": display, "value": value, "unit": unit, "effective_at": e.vitals.taken_at})
    if e.edition == "behavioral_health":
        if e.psychotherapy_cpt:
            procedures.append({"system": c.CPT_SYSTEM, "code": e.psychotherapy_cpt, "modifiers": ["95"] if e.telehealth else [],
                               "units": Decimal(1), "display": f"Psychotherapy, {e.session_minutes} minutes"})
        for name, score in e.assessments.items():
            loinc, display = c.SCORES.get(name, ("", name))
            if loinc:
                vitals.append({"loinc": loinc, "display": display, "value": Decimal(score.score), "unit": "{score}", "effective_at": e.start})
        details["session_minutes"] = e.session_minutes
        details["assessments"] = {name: score.model_dump() for name, score in e.assessments.items()}
        details["risk_assessment"] = e.risk_assessment
    notes = []
    if e.progress_note is not None:
        n = e.progress_note
        notes.append(_note(n))
        details["progress_note"] = {"note_id": n.note_id, "source": n.source, "ai_generated": n.ai_generated, "ai_vendor": n.ai_vendor,
                                    "status": n.status, "locked_at": n.locked_at.isoformat() if n.locked_at else None,
                                    "locked_by": n.locked_by or ""}
    return {
        "external_id": e.id, "patient": e.patient_id, "practitioner": e.provider_id, "location": e.facility_id,
        "appointment": e.appointment_id, "status": "finished", "visit_type": _visit_type(e.telehealth),
        "period_start": e.start, "period_end": e.end, "reason": e.chief_complaint[:300],
        "diagnoses": [{"system": c.ICD10_SYSTEM, "code": d.code, "display": d.description, "rank": d.rank} for d in e.diagnoses],
        "procedures": procedures, "vitals": vitals, "notes": notes, "details": details,
    }


NORMALIZERS = {
    "facilities": location, "providers": practitioner, "patients": patient, "coverage": coverage,
    "appointments": appointment, "encounters": encounter,
}


# --- writing: canonical → request bodies -------------------------------------------------------------------
def appointment_body(payload: dict[str, Any], *, visit_type: str, reference: str) -> dict[str, Any]:
    start, end = payload["start"], payload["end"]
    minutes = int((end - start).total_seconds() // 60)
    if minutes <= 0:
        raise InvalidPayload("end: must be after start", path="end")
    return {
        "patient_id": payload["patient"].external_id, "provider_id": payload["practitioner"].external_id,
        "facility_id": payload["location"].external_id, "start": start.isoformat(), "duration_minutes": minutes,
        "visit_type": visit_type, "telehealth": payload.get("visit_type") == "telehealth", "reference": reference,
        "reason": str(payload.get("description") or "")[:200],
    }
