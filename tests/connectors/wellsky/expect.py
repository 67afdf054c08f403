"""What the hub must hold for each sandbox record, written from WellSky's side (not from the
connector's mapping), and a check that the store equals the sandbox's live source."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from canonical import models as m
from tests.connectors.wellsky.conftest import SERVICE_MAPPINGS

SEX = {"F": "female", "M": "male", "U": "unknown"}
LANGUAGE = {"English": "en", "Spanish": "es", "Vietnamese": "vi", "Russian": "ru", "Somali": "so"}
APPOINTMENT_STATUS = {"Scheduled": "booked", "Completed": "fulfilled", "Cancelled": "cancelled", "Missed": "noshow"}


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _external_id(row) -> str | None:
    return row.external_id if row is not None else None


def _service(code: str) -> str:
    return SERVICE_MAPPINGS.get(code, code)


def patient(row: m.Patient) -> dict:
    return {
        "family_name": row.family_name, "given_names": row.given_names, "birth_date": row.birth_date, "sex": row.sex,
        "language": row.language, "phone": row.phone, "email": row.email, "address_line1": row.address_line1, "city": row.city,
        "state": row.state, "postal_code": row.postal_code,
        "identifiers": sorted((i.system, i.value) for i in row.identifiers.all()),
    }


def expected_patient(src: dict) -> dict:
    systems = {"MRN": "urn:wellsky:mrn", "MEDICAID": "urn:wellsky:medicaid"}
    return {
        "family_name": src["last_name"], "given_names": [n for n in (src["first_name"], src["middle_name"]) if n],
        "birth_date": date.fromisoformat(src["date_of_birth"]), "sex": SEX[src["gender"]], "language": LANGUAGE[src["language"]],
        "phone": src["phone"], "email": src["email"], "address_line1": src["address"]["line1"], "city": src["address"]["city"],
        "state": src["address"]["state"], "postal_code": src["address"]["zip"],
        "identifiers": sorted((systems[i["type"]], i["value"]) for i in src["identifiers"]),
    }


def practitioner(row: m.Practitioner) -> dict:
    return {"family_name": row.family_name, "given_names": row.given_names, "npi": row.npi, "roles": row.roles,
            "specialties": row.specialties, "active": row.active, "phone": row.phone}


def expected_practitioner(src: dict) -> dict:
    return {"family_name": src["last_name"], "given_names": [src["first_name"]], "npi": src["npi"], "roles": [src["credentials"]],
            "specialties": src["specialties"], "active": src["status"] == "Active", "phone": src["phone"]}


def location(row: m.Location) -> dict:
    return {"name": row.name, "phone": row.phone, "address_line1": row.address_line1, "active": row.active}


def expected_location(src: dict) -> dict:
    return {"name": src["name"], "phone": src["phone"], "address_line1": src["address"]["line1"], "active": src["active"]}


def coverage(row: m.Coverage) -> dict:
    return {"patient": row.patient.external_id, "payer": row.payer, "payer_id": row.payer_id, "member_id": row.member_id,
            "plan": row.plan, "priority": row.priority}


def expected_coverages(src: dict) -> dict[str, dict]:
    return {f"{src['id']}:{c['priority']}": {"patient": src["id"], "payer": c["payer_name"], "payer_id": c["payer_id"],
                                             "member_id": c["member_id"], "plan": c["plan_name"], "priority": c["priority"]}
            for c in src["coverage"]}


def authorization(row: m.Authorization) -> dict:
    return {"patient": row.patient.external_id, "payer": row.payer, "auth_number": row.auth_number, "service_codes": row.service_codes,
            "units_allowed": row.units_allowed, "unit_type": row.unit_type, "start_date": row.start_date, "end_date": row.end_date,
            "status": row.status}


def expected_authorization(src: dict) -> dict:
    return {"patient": src["patient_id"], "payer": src["payer_name"], "auth_number": src["auth_number"],
            "service_codes": [_service(c) for c in src["service_codes"]], "units_allowed": Decimal(str(src["units_allowed"])),
            "unit_type": src["unit_type"], "start_date": date.fromisoformat(src["start_date"]), "end_date": date.fromisoformat(src["end_date"]),
            "status": src["status"].lower()}


def appointment(row: m.Appointment) -> dict:
    return {"patient": row.patient.external_id, "practitioner": _external_id(row.practitioner), "location": _external_id(row.location),
            "authorization": _external_id(row.authorization), "start": row.start, "end": row.end, "status": row.status,
            "service_code": row.service_code, "units": row.units, "visit_type": row.visit_type, "description": row.description}


def expected_appointment(src: dict) -> dict:
    return {"patient": src["patient_id"], "practitioner": src["practitioner_id"], "location": src["location_id"],
            "authorization": src["authorization_id"], "start": _when(src["start"]), "end": _when(src["end"]),
            "status": APPOINTMENT_STATUS[src["status"]], "service_code": _service(src["service_code"]),
            "units": Decimal(str(src["units"])), "visit_type": "in-person", "description": src["notes"]}


def encounter(row: m.Encounter) -> dict:
    return {
        "patient": row.patient.external_id, "practitioner": _external_id(row.practitioner), "appointment": _external_id(row.appointment),
        "status": row.status, "period_start": row.period_start, "period_end": row.period_end,
        "diagnoses": [(d.code, d.display, d.rank) for d in row.diagnoses.order_by("position")],
        "procedures": [(p.code, p.modifiers, p.units) for p in row.procedures.order_by("position")],
        "vitals": [(v.loinc, v.value, v.unit) for v in row.vitals.order_by("position")],
        "notes": [(n.status, n.text, n.locked, len(n.amendments)) for n in row.notes.order_by("position")],
    }


def expected_encounter(src: dict) -> dict:
    note = src["note"]
    return {
        "patient": src["patient_id"], "practitioner": src["practitioner_id"], "appointment": src["appointment_id"], "status": "finished",
        "period_start": _when(src["visit_start"]), "period_end": _when(src["visit_end"]),
        "diagnoses": [(d["code"], d["description"], d["rank"]) for d in src["diagnoses"]],
        "procedures": [(_service(p["code"]), p["modifiers"], Decimal(str(p["units"]))) for p in src["procedures"]],
        "vitals": [(v["loinc"], Decimal(v["value"]), v["unit"]) for v in src["vitals"]],
        "notes": [(note["status"].lower(), note["summary"], note["locked"], len(note["amendments"]))],
    }


def care_plan(row: m.CarePlan) -> dict:
    return {"patient": row.patient.external_id, "status": row.status, "goals": row.goals, "activities": row.activities}


def expected_care_plan(src: dict) -> dict:
    return {"patient": src["patient_id"], "status": src["status"].lower(), "goals": src["goals"], "activities": src["interventions"]}


def referral(row: m.Referral) -> dict:
    return {"patient": row.patient.external_id if row.patient else None, "source": row.source, "reason": row.reason,
            "priority": row.priority, "status": row.status, "service_code": row.service_code}


def expected_referral(src: dict) -> dict:
    status = {"Pending": "active", "Accepted": "accepted", "Declined": "declined"}[src["status"]]
    return {"patient": src["patient_id"], "source": src["referral_source"], "reason": src["reason"], "priority": src["priority"].lower(),
            "status": status, "service_code": _service(src["service_code"])}


CHECKS = {  # sandbox table -> (model, row view, expected view)
    "patients": (m.Patient, patient, expected_patient),
    "practitioners": (m.Practitioner, practitioner, expected_practitioner),
    "locations": (m.Location, location, expected_location),
    "authorizations": (m.Authorization, authorization, expected_authorization),
    "appointments": (m.Appointment, appointment, expected_appointment),
    "encounters": (m.Encounter, encounter, expected_encounter),
    "care-plans": (m.CarePlan, care_plan, expected_care_plan),
    "referrals": (m.Referral, referral, expected_referral),
}


def live_source(sandbox, table: str) -> dict[str, dict]:
    vendor = sandbox.vendor("wellsky")
    rows = vendor.agency.table(table)
    return {record["id"]: record for record in (rows.get(i) for i in rows.live_indices())}


def differences(sandbox, connection) -> list[str]:
    """Every way the hub's live records differ from the sandbox's live records, field by field."""
    problems: list[str] = []
    for table, (model, view, expected) in CHECKS.items():
        source = live_source(sandbox, table)
        stored = {r.external_id: r for r in model.objects.filter(source_connection=connection, deleted_at__isnull=True)}
        if set(source) != set(stored):
            problems.append(f"{table}: missing {sorted(set(source) - set(stored))[:5]}, extra {sorted(set(stored) - set(source))[:5]}")
        for external_id in set(source) & set(stored):
            want, have = expected(source[external_id]), view(stored[external_id])
            for field in want:
                if want[field] != have[field]:
                    problems.append(f"{table} {external_id}.{field}: hub has {have[field]!r}, WellSky has {want[field]!r}")
    patients = live_source(sandbox, "patients")
    want_coverage = {k: v for src in patients.values() for k, v in expected_coverages(src).items()}
    have_coverage = {r.external_id: coverage(r) for r in m.Coverage.objects.filter(source_connection=connection, deleted_at__isnull=True)
                     .select_related("patient")}
    if want_coverage != have_coverage:
        problems.append(f"coverage differs: {len(want_coverage)} in WellSky, {len(have_coverage)} in the hub")
    return problems
