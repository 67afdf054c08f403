"""What the hub must hold for a Welkin tenant, computed from the sandbox's own records (not from the mapping)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from canonical import models as m

SEX = {"FEMALE": "female", "MALE": "male", "OTHER": "other", "UNKNOWN": "unknown"}
LANGUAGE = {"ENGLISH": "en", "SPANISH": "es", "VIETNAMESE": "vi"}
EVENT_STATUS = {"SCHEDULED": "booked", "COMPLETED": "fulfilled", "CANCELLED": "cancelled", "NO_SHOW": "noshow"}
VISIT_TYPE = {"VIDEO_CALL": "telehealth", "PHONE_CALL": "telehealth", "IN_PERSON": "in-person"}
ENCOUNTER_STATUS = {"DRAFT": "planned", "OPEN": "arrived", "ACTIVE": "in-progress", "FINALIZED": "finished"}


def _when(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def expected_patient(src: dict) -> dict:
    a = src["address"]
    return {"family_name": src["lastName"], "given_names": [n for n in (src["firstName"], src["middleName"]) if n],
            "birth_date": date.fromisoformat(src["birthDate"]), "sex": SEX[src["gender"]], "language": LANGUAGE[src["primaryLanguage"]],
            "phone": src["phone"], "email": src["email"], "address_line1": a["addressLine1"], "city": a["city"], "state": a["state"],
            "postal_code": a["zip"], "country": a["country"], "identifiers": [("urn:welkin:mrn", src["mrn"])]}


def stored_patient(row: m.Patient) -> dict:
    return {"family_name": row.family_name, "given_names": row.given_names, "birth_date": row.birth_date, "sex": row.sex,
            "language": row.language, "phone": row.phone, "email": row.email, "address_line1": row.address_line1, "city": row.city,
            "state": row.state, "postal_code": row.postal_code, "country": row.country,
            "identifiers": sorted((i.system, i.value) for i in row.identifiers.all())}


def expected_coach(src: dict) -> dict:
    return {"family_name": src["lastName"], "given_names": [src["firstName"]], "phone": src["phone"], "email": src["email"],
            "roles": [src["role"]], "active": src["active"]}


def stored_coach(row: m.Practitioner) -> dict:
    return {"family_name": row.family_name, "given_names": row.given_names, "phone": row.phone, "email": row.email, "roles": row.roles,
            "active": row.active}


def expected_event(src: dict) -> dict:
    return {"patient": src["patientId"], "practitioner": src["userId"], "start": _when(src["start"]), "end": _when(src["end"]),
            "status": EVENT_STATUS[src["status"]], "visit_type": VISIT_TYPE[src["eventType"]], "description": src["title"]}


def stored_event(row: m.Appointment) -> dict:
    return {"patient": row.patient.external_id, "practitioner": row.practitioner.external_id if row.practitioner else None,
            "start": row.start, "end": row.end, "status": row.status, "visit_type": row.visit_type, "description": row.description}


def expected_care_plan(src: dict) -> dict:
    return {"patient": src["patientId"], "title": src["title"], "status": src["status"].lower(),
            "period_start": date.fromisoformat(src["startDate"]), "period_end": date.fromisoformat(src["endDate"]),
            "goals": [{"description": g["description"], "target": g["target"], "status": g["status"].lower()} for g in src["goals"]],
            "activities": [{"description": i["description"], "status": i["status"].lower(), "frequency": i["frequency"]}
                           for i in src["interventions"]]}


def stored_care_plan(row: m.CarePlan) -> dict:
    return {"patient": row.patient.external_id, "title": row.title, "status": row.status, "period_start": row.period_start,
            "period_end": row.period_end, "goals": row.goals, "activities": row.activities}


def expected_assessment(src: dict) -> dict:
    return {"patient": src["patientId"], "instrument": src["formName"], "status": src["status"].lower(), "answers": src["answers"],
            "score": None if src["score"] is None else Decimal(str(src["score"])), "completed_at": _when(src["completedAt"])}


def stored_assessment(row: m.Assessment) -> dict:
    return {"patient": row.patient.external_id, "instrument": row.instrument, "status": row.status, "answers": row.answers,
            "score": row.score, "completed_at": row.completed_at}


def expected_encounter(src: dict) -> dict:
    return {"patient": src["patientId"], "practitioner": src["userId"], "status": ENCOUNTER_STATUS[src["status"]],
            "period_start": _when(src["startTime"]), "period_end": _when(src["endTime"]), "reason": src["title"],
            "encounter_type": src["encounterType"], "disposition": src["disposition"]}


def stored_encounter(row: m.Encounter) -> dict:
    return {"patient": row.patient.external_id, "practitioner": row.practitioner.external_id if row.practitioner else None,
            "status": row.status, "period_start": row.period_start, "period_end": row.period_end, "reason": row.reason,
            "encounter_type": row.details.get("encounter_type"), "disposition": row.details.get("disposition")}


CHECKS = {  # connector resource -> (sandbox table, model, stored view, expected view)
    "coaches": ("coaches", m.Practitioner, stored_coach, expected_coach),
    "patients": ("patients", m.Patient, stored_patient, expected_patient),
    "calendar_events": ("calendar_events", m.Appointment, stored_event, expected_event),
    "care_plans": ("care_plans", m.CarePlan, stored_care_plan, expected_care_plan),
    "assessments": ("assessments", m.Assessment, stored_assessment, expected_assessment),
    "encounters": ("encounters", m.Encounter, stored_encounter, expected_encounter),
}


def source(sandbox, resource: str, tenant: str = "northwind") -> dict[str, dict]:
    table = sandbox.vendor("welkin").tenant(tenant).table(CHECKS[resource][0])
    return {record["id"]: record for record in (table.get(i) for i in table.live_indices())}


def differences(sandbox, connection, resources=None, tenant: str = "northwind") -> list[str]:
    problems: list[str] = []
    for resource in resources or CHECKS:
        _, model, view, expect = CHECKS[resource]
        want = {external_id: expect(src) for external_id, src in source(sandbox, resource, tenant).items()}
        stored = {r.external_id: view(r) for r in model.objects.filter(source_connection=connection, deleted_at__isnull=True)}
        if set(want) != set(stored):
            problems.append(f"{resource}: missing {sorted(set(want) - set(stored))[:5]}, extra {sorted(set(stored) - set(want))[:5]}")
        for external_id in set(want) & set(stored):
            for field, value in want[external_id].items():
                if stored[external_id][field] != value:
                    problems.append(f"{resource} {external_id}.{field}: hub has {stored[external_id][field]!r}, Welkin has {value!r}")
    return problems
