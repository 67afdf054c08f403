"""Welkin v8 records (camelCase JSON) → canonical dicts, and canonical write requests → Welkin bodies.

Each record is parsed into a small typed model first: one that breaks the contract fails with the
path of the bad field, is kept, and goes to triage.

    patients         → patient (the MRN as an identifier)
    users (coaches)  → practitioner (role → roles)
    calendar/events  → appointment (patient, practitioner = the coach hosting it)
    care-plans       → care_plan (goals; interventions → activities)
    assessments      → assessment (formName → instrument, answers, score, completedAt)
    encounters       → encounter (comments and disposition kept in details)
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from canonical.codes import CodeMapper
from connectors.errors import InvalidPayload
from connectors.payloads import parse
from connectors.welkin import constants as c
from tenants.choices import MappingCategory


class _Raw(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class RawAddress(_Raw):
    addressLine1: str = ""  # noqa: N815  (Welkin's field names, here and below)
    addressLine2: str = ""  # noqa: N815
    city: str = ""
    state: str = ""
    zip: str = ""
    country: str = ""


class RawPatient(_Raw):
    id: str
    firstName: str = Field(min_length=1)  # noqa: N815
    lastName: str = Field(min_length=1)  # noqa: N815
    middleName: str = ""  # noqa: N815
    birthDate: date | None = None  # noqa: N815
    gender: str = "UNKNOWN"
    primaryLanguage: str = ""  # noqa: N815
    mrn: str = ""
    phone: str = ""
    email: str = ""
    address: RawAddress = RawAddress()


class RawUser(_Raw):
    id: str
    firstName: str = ""  # noqa: N815
    lastName: str = Field(min_length=1)  # noqa: N815
    email: str = ""
    phone: str = ""
    role: str = ""
    active: bool = True


class RawEvent(_Raw):
    id: str
    patientId: str = Field(min_length=1)  # noqa: N815
    userId: str | None = None  # noqa: N815
    eventType: str = "IN_PERSON"  # noqa: N815
    title: str = ""
    status: str
    start: AwareDatetime
    end: AwareDatetime


class RawGoal(_Raw):
    description: str = ""
    target: str = ""
    status: str = ""


class RawIntervention(_Raw):
    description: str = ""
    status: str = ""
    frequency: str = ""


class RawCarePlan(_Raw):
    id: str
    patientId: str = Field(min_length=1)  # noqa: N815
    title: str = ""
    status: str = "ACTIVE"
    startDate: date | None = None  # noqa: N815
    endDate: date | None = None  # noqa: N815
    goals: list[RawGoal] = []
    interventions: list[RawIntervention] = []


class RawAnswer(_Raw):
    question: str
    answer: Any = None


class RawAssessment(_Raw):
    id: str
    patientId: str = Field(min_length=1)  # noqa: N815
    formName: str = Field(min_length=1, max_length=100)  # noqa: N815
    status: str = "COMPLETED"
    answers: list[RawAnswer] = []
    score: Decimal | None = None
    completedAt: AwareDatetime | None = None  # noqa: N815


class RawComment(_Raw):
    text: str = ""
    authorId: str | None = None  # noqa: N815


class RawEncounter(_Raw):
    id: str
    patientId: str = Field(min_length=1)  # noqa: N815
    userId: str | None = None  # noqa: N815
    encounterType: str = ""  # noqa: N815
    title: str = ""
    status: str
    startTime: AwareDatetime  # noqa: N815
    endTime: AwareDatetime | None = None  # noqa: N815
    disposition: str | None = None
    comments: list[RawComment] = []


def _one_of(table: dict[str, str], value: str, field: str) -> str:
    if value not in table:
        raise InvalidPayload(f"{field}: {value!r} is not one of {', '.join(sorted(table))}", path=field)
    return table[value]


# --- raw → canonical ------------------------------------------------------------------------------------------
def patient(raw: Any, mapper: CodeMapper) -> dict[str, Any]:
    r = parse(RawPatient, raw)
    language = c.LANGUAGES.get(r.primaryLanguage) or (mapper.code(MappingCategory.LANGUAGE, c.SOURCE_SYSTEM, r.primaryLanguage)
                                                      if r.primaryLanguage else "")
    a = r.address
    return {
        "external_id": r.id, "family_name": r.lastName, "given_names": [n for n in (r.firstName, r.middleName) if n],
        "birth_date": r.birthDate, "sex": _one_of(c.SEX, r.gender, "gender"), "language": language, "phone": r.phone, "email": r.email,
        "address_line1": a.addressLine1, "address_line2": a.addressLine2, "city": a.city, "state": a.state, "postal_code": a.zip,
        "country": a.country, "identifiers": [{"system": c.MRN_SYSTEM, "value": r.mrn}] if r.mrn else [],
    }


def coach(raw: Any, mapper: CodeMapper) -> dict[str, Any]:
    r = parse(RawUser, raw)
    return {"external_id": r.id, "family_name": r.lastName, "given_names": [r.firstName] if r.firstName else [], "phone": r.phone,
            "email": r.email, "roles": [r.role] if r.role else [], "specialties": [], "active": r.active}


def calendar_event(raw: Any, mapper: CodeMapper) -> dict[str, Any]:
    r = parse(RawEvent, raw)
    if r.end < r.start:
        raise InvalidPayload("end: the visit ends before it starts", path="end")
    return {"external_id": r.id, "patient": r.patientId, "practitioner": r.userId or None, "start": r.start, "end": r.end,
            "status": _one_of(c.EVENT_STATUS, r.status, "status"), "visit_type": _one_of(c.EVENT_VISIT_TYPE, r.eventType, "eventType"),
            "description": r.title[:300]}


def care_plan(raw: Any, mapper: CodeMapper) -> dict[str, Any]:
    r = parse(RawCarePlan, raw)
    return {"external_id": r.id, "patient": r.patientId, "title": r.title[:200], "status": _one_of(c.CARE_PLAN_STATUS, r.status, "status"),
            "period_start": r.startDate, "period_end": r.endDate,
            "goals": [{"description": g.description, "target": g.target, "status": g.status.lower()} for g in r.goals],
            "activities": [{"description": i.description, "status": i.status.lower(), "frequency": i.frequency} for i in r.interventions],
            "outcomes": []}


def assessment(raw: Any, mapper: CodeMapper) -> dict[str, Any]:
    r = parse(RawAssessment, raw)
    return {"external_id": r.id, "patient": r.patientId, "instrument": r.formName, "status": _one_of(c.ASSESSMENT_STATUS, r.status, "status"),
            "answers": [{"question": a.question, "answer": a.answer} for a in r.answers], "score": r.score, "completed_at": r.completedAt}


def encounter(raw: Any, mapper: CodeMapper) -> dict[str, Any]:
    r = parse(RawEncounter, raw)
    details = {"edition": "welkin", "encounter_type": r.encounterType, "disposition": r.disposition,
               "comments": [comment.text for comment in r.comments if comment.text]}
    return {"external_id": r.id, "patient": r.patientId, "practitioner": r.userId or None,
            "status": _one_of(c.ENCOUNTER_STATUS, r.status, "status"), "period_start": r.startTime, "period_end": r.endTime,
            "reason": r.title[:300], "details": details}


NORMALIZERS = {"patients": patient, "coaches": coach, "calendar_events": calendar_event, "care_plans": care_plan,
               "assessments": assessment, "encounters": encounter}


# --- canonical write requests → Welkin bodies -----------------------------------------------------------------
def patient_body(payload: dict[str, Any]) -> dict[str, Any]:
    given = list(payload.get("given_names") or [])
    body: dict[str, Any] = {"firstName": given[0] if given else "", "middleName": " ".join(given[1:]),
                            "lastName": payload.get("family_name", ""), "birthDate": str(payload.get("birth_date", "")),
                            "gender": c.WELKIN_SEX.get(payload.get("sex") or "unknown", "UNKNOWN"),
                            "phone": payload.get("phone") or "", "email": payload.get("email") or ""}
    if payload.get("language"):
        body["primaryLanguage"] = c.WELKIN_LANGUAGES.get(payload["language"], payload["language"].upper())
    if payload.get("mrn"):
        body["mrn"] = payload["mrn"]
    if payload.get("address_line1"):
        body["address"] = {"addressLine1": payload["address_line1"], "addressLine2": payload.get("address_line2") or "",
                           "city": payload.get("city") or "", "state": payload.get("state") or "", "zip": payload.get("postal_code") or "",
                           "country": payload.get("country") or "US"}
    return body


def event_changes(payload: dict[str, Any]) -> dict[str, Any]:
    """The fields of a calendar event the write changes (start, end, status, the coach); others stay."""
    body: dict[str, Any] = {}
    for name in ("start", "end"):
        if payload.get(name) is not None:
            body[name] = payload[name].isoformat()
    if payload.get("status"):
        body["status"] = c.WELKIN_EVENT_STATUS.get(payload["status"])
        if body["status"] is None:
            raise ValueError(f"status {payload['status']!r} has no Welkin equivalent")
    if payload.get("practitioner") is not None:
        body["userId"] = payload["practitioner"].external_id
    return body


def assessment_body(payload: dict[str, Any]) -> dict[str, Any]:
    completed = payload.get("completed_at")
    answers = [{"question": str(a["question"]), "answer": a.get("answer")} for a in payload.get("answers") or []]
    body: dict[str, Any] = {"formName": payload["instrument"], "answers": answers,
                            "status": c.WELKIN_ASSESSMENT_STATUS.get(payload.get("status") or "completed", "COMPLETED"),
                            "completedAt": completed if isinstance(completed, str) or completed is None else completed.isoformat()}
    if payload.get("score") is not None:
        body["score"] = float(Decimal(str(payload["score"])))
    return body
