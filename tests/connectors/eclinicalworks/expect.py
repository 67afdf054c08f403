"""What the hub must hold for each sandbox record, written from eClinicalWorks' side (the portal's
record shapes in sandbox/ecw/data.py, and the standard codes for them), not from the connector's
mapping, and a check that the store equals the sandbox's live source field by field."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from canonical import models as m

SEX = {"F": "female", "M": "male", "U": "unknown"}
LANGUAGE = {"English": "en", "Spanish": "es", "Portuguese": "pt", "Haitian Creole": "ht", "Vietnamese": "vi"}
IDENTIFIER_SYSTEM = {"MRN": "urn:eclinicalworks:mrn", "ACCOUNT": "urn:eclinicalworks:account", "MEDICAID": "urn:eclinicalworks:medicaid"}
APPOINTMENT_STATUS = {"scheduled": "booked", "confirmed": "booked", "checked_out": "fulfilled", "no_show": "noshow",
                      "cancelled": "cancelled"}
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
CPT = "http://www.ama-assn.org/go/cpt"
# The primary-care vitals panel: eClinicalWorks field -> (LOINC, UCUM unit).
VITAL_LOINC = {
    "height_in": ("8302-2", "[in_i]"), "weight_lb": ("29463-7", "[lb_av]"), "bmi": ("39156-5", "kg/m2"),
    "bp_systolic": ("8480-6", "mm[Hg]"), "bp_diastolic": ("8462-4", "mm[Hg]"), "pulse": ("8867-4", "/min"),
    "resp_rate": ("9279-1", "/min"), "temp_f": ("8310-5", "[degF]"), "spo2": ("59408-5", "%"),
}
# The behavioral-health instruments: PHQ-9 and GAD-7 total scores.
SCORE_LOINC = {"phq9": "44261-6", "gad7": "70274-6"}
PSYCHOTHERAPY = {"90832", "90834", "90837"}


def when(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _external_id(row) -> str | None:
    return row.external_id if row is not None else None


# --- facilities, providers, patients, coverage --------------------------------------------------
def location(row: m.Location) -> dict:
    return {"name": row.name, "type": row.type, "phone": row.phone, "active": row.active, "address_line1": row.address_line1,
            "address_line2": row.address_line2, "city": row.city, "state": row.state, "postal_code": row.postal_code}


def expected_location(src: dict) -> dict:
    address = src["address"]
    return {"name": src["name"], "type": "facility", "phone": src["phone"], "active": src["active"], "address_line1": address["line1"],
            "address_line2": address["line2"], "city": address["city"], "state": address["state"], "postal_code": address["zip"]}


def practitioner(row: m.Practitioner) -> dict:
    return {"family_name": row.family_name, "given_names": row.given_names, "npi": row.npi, "roles": row.roles,
            "specialties": row.specialties, "active": row.active, "phone": row.phone, "email": row.email}


def expected_practitioner(src: dict) -> dict:
    return {"family_name": src["last_name"], "given_names": [src["first_name"]], "npi": src["npi"], "roles": [src["credentials"]],
            "specialties": [src["specialty"]], "active": src["status"] == "active", "phone": src["phone"], "email": src["email"]}


def patient(row: m.Patient) -> dict:
    return {
        "family_name": row.family_name, "given_names": row.given_names, "birth_date": row.birth_date, "sex": row.sex,
        "language": row.language, "phone": row.phone, "email": row.email, "address_line1": row.address_line1,
        "address_line2": row.address_line2, "city": row.city, "state": row.state, "postal_code": row.postal_code,
        "identifiers": sorted((i.system, i.value) for i in row.identifiers.all()),
    }


def expected_patient(src: dict) -> dict:
    address = src["address"]
    return {
        "family_name": src["last_name"], "given_names": [n for n in (src["first_name"], src["middle_name"]) if n],
        "birth_date": date.fromisoformat(src["date_of_birth"]), "sex": SEX[src["sex"]], "language": LANGUAGE[src["language"]],
        "phone": src["phone"], "email": src["email"], "address_line1": address["line1"], "address_line2": address["line2"],
        "city": address["city"], "state": address["state"], "postal_code": address["zip"],
        "identifiers": sorted((IDENTIFIER_SYSTEM[i["type"]], i["value"]) for i in src["identifiers"]),
    }


def coverage(row: m.Coverage) -> dict:
    return {"patient": row.patient.external_id, "payer": row.payer, "payer_id": row.payer_id, "member_id": row.member_id,
            "plan": row.plan, "group_number": row.group_number, "priority": row.priority,
            "claim_filing_indicator": row.claim_filing_indicator, "status": row.status, "start_date": row.start_date,
            "end_date": row.end_date}


def expected_coverages(src: dict) -> dict[str, dict]:
    """The patient's coverage list, one row per priority (`<patient id>:<priority>`)."""
    return {f"{src['id']}:{c['priority']}": {
        "patient": src["id"], "payer": c["payer_name"], "payer_id": c["payer_id"], "member_id": c["member_id"], "plan": c["plan_name"],
        "group_number": c["group_number"], "priority": c["priority"], "claim_filing_indicator": c["claim_filing_indicator"],
        "status": "active", "start_date": date.fromisoformat(c["effective_date"]),
        "end_date": date.fromisoformat(c["termination_date"]) if c["termination_date"] else None,
    } for c in src["coverage"]}


# --- appointments --------------------------------------------------------------------------------
def appointment(row: m.Appointment) -> dict:
    return {"patient": row.patient.external_id, "practitioner": _external_id(row.practitioner), "location": _external_id(row.location),
            "start": row.start, "end": row.end, "status": row.status, "visit_type": row.visit_type, "service_code": row.service_code,
            "description": row.description}


def expected_appointment(src: dict) -> dict:
    return {"patient": src["patient_id"], "practitioner": src["provider_id"], "location": src["facility_id"], "start": when(src["start"]),
            "end": when(src["end"]), "status": APPOINTMENT_STATUS[src["status"]],
            "visit_type": "telehealth" if src["telehealth"] else "in-person",
            "service_code": src["visit_type"],  # no visit-type mapping configured: kept as eClinicalWorks' code
            "description": src["reason"]}


# --- encounters, both editions -----------------------------------------------------------------------
def _amendments(items: list[dict]) -> list[tuple]:
    return [(a["reason_code"], a["reason"], a["text"], a["amended_by"], when(a["amended_at"]), when(a.get("resigned_at") or a.get("signed_at")))
            for a in items]


def encounter(row: m.Encounter) -> dict:
    return {
        "patient": row.patient.external_id, "practitioner": _external_id(row.practitioner), "location": _external_id(row.location),
        "appointment": _external_id(row.appointment), "status": row.status, "visit_type": row.visit_type,
        "period_start": row.period_start, "period_end": row.period_end, "reason": row.reason,
        "diagnoses": [(d.system, d.code, d.display, d.rank) for d in row.diagnoses.order_by("position")],
        "procedures": [(p.system, p.code, p.modifiers, p.units) for p in row.procedures.order_by("position")],
        "vitals": [(v.loinc, v.value, v.unit, v.effective_at) for v in row.vitals.order_by("position")],
        "notes": [(n.status, n.locked, n.text, n.author, n.signed_at, n.signed_by, _amendments(n.amendments))
                  for n in row.notes.order_by("position")],
        "details": row.details,
    }


def _expected_vitals(src: dict) -> list[tuple]:
    if src["edition"] == "primary_care":
        vitals = src.get("vitals")
        if not vitals:  # a video visit: nothing measured
            return []
        return [(loinc, Decimal(str(vitals[name])), unit, when(vitals["taken_at"]))
                for name, (loinc, unit) in VITAL_LOINC.items() if vitals.get(name) is not None]
    return [(SCORE_LOINC[name], Decimal(score["score"]), "{score}", when(src["start"])) for name, score in src["assessments"].items()]


def _expected_procedures(src: dict) -> list[tuple]:
    if src["edition"] == "primary_care":
        return [(CPT, p["code"], p["modifiers"], Decimal(str(p["units"]))) for p in src["procedures"]]
    # The session's psychotherapy code, billed once; a video session carries modifier 95 (synchronous telehealth).
    return [(CPT, src["psychotherapy_cpt"], ["95"] if src["telehealth"] else [], Decimal(1))]


def _expected_note(note: dict) -> tuple:
    status = "draft" if note["status"] == "draft" else "amended" if note["amendments"] else "signed"
    return (status, note["status"] == "locked", note["text"], note["author_id"], when(note["signed_at"]), note["signed_by"] or "",
            _amendments(note["amendments"]))


def _expected_details(src: dict) -> dict:
    note = src["progress_note"]
    details = {"edition": src["edition"], "place_of_service": src["place_of_service"],
               "progress_note": {"note_id": note["note_id"], "source": note["source"], "ai_generated": note["ai_generated"],
                                 "ai_vendor": note["ai_vendor"], "status": note["status"], "locked_by": note["locked_by"] or "",
                                 "locked_at": note["locked_at"]}}
    if src["edition"] == "behavioral_health":
        details.update(session_minutes=src["session_minutes"], assessments=src["assessments"], risk_assessment=src["risk_assessment"])
    return details


def _comparable_details(details: dict) -> dict:
    """Details with the note's lock time as a moment (the hub keeps ISO text with an offset, eClinicalWorks 'Z')."""
    note = dict(details.get("progress_note") or {})
    if note:
        note["locked_at"] = when(note.get("locked_at"))
    return {**details, "progress_note": note} if note else details


def expected_encounter(src: dict) -> dict:
    return {
        "patient": src["patient_id"], "practitioner": src["provider_id"], "location": src["facility_id"],
        "appointment": src["appointment_id"], "status": "finished", "visit_type": "telehealth" if src["telehealth"] else "in-person",
        "period_start": when(src["start"]), "period_end": when(src["end"]),
        "reason": src.get("chief_complaint", ""),  # the behavioral-health edition records no chief complaint
        "diagnoses": [(ICD10, d["code"], d["description"], d["rank"]) for d in src["diagnoses"]],
        "procedures": _expected_procedures(src), "vitals": _expected_vitals(src),
        "notes": [_expected_note(src["progress_note"])], "details": _expected_details(src),
    }


CHECKS = {  # portal resource -> (model, row view, expected view)
    "facilities": (m.Location, location, expected_location),
    "providers": (m.Practitioner, practitioner, expected_practitioner),
    "patients": (m.Patient, patient, expected_patient),
    "appointments": (m.Appointment, appointment, expected_appointment),
    "encounters": (m.Encounter, encounter, expected_encounter),
}


def live_source(sandbox, resource: str) -> dict[str, dict]:
    practice = sandbox.vendor("eclinicalworks").practice
    return {record["id"]: record for record in practice.live_records(resource)}


def stored(model, connection) -> dict:
    return {r.external_id: r for r in model.objects.filter(source_connection=connection, deleted_at__isnull=True)}


def differences(sandbox, connection, resources=tuple(CHECKS)) -> list[str]:
    """Every way the hub's live records differ from the sandbox's live records, field by field."""
    problems: list[str] = []
    for resource in resources:
        model, view, expected = CHECKS[resource]
        source, have = live_source(sandbox, resource), stored(model, connection)
        if set(source) != set(have):
            problems.append(f"{resource}: missing {sorted(set(source) - set(have))[:5]}, extra {sorted(set(have) - set(source))[:5]}")
        for external_id in sorted(set(source) & set(have)):
            want, got = expected(source[external_id]), view(have[external_id])
            if resource == "encounters":
                got = {**got, "details": _comparable_details(got["details"])}
                want = {**want, "details": _comparable_details(want["details"])}
            for field in want:
                if want[field] != got[field]:
                    problems.append(f"{resource} {external_id}.{field}: hub has {got[field]!r}, eClinicalWorks has {want[field]!r}")
    if "patients" in resources:
        want_coverage = {k: v for src in live_source(sandbox, "patients").values() for k, v in expected_coverages(src).items()}
        have_coverage = {r.external_id: coverage(r) for r in m.Coverage.objects.filter(source_connection=connection, deleted_at__isnull=True)
                         .select_related("patient")}
        if set(want_coverage) != set(have_coverage):
            problems.append(f"coverage: missing {sorted(set(want_coverage) - set(have_coverage))[:5]}, "
                            f"extra {sorted(set(have_coverage) - set(want_coverage))[:5]}")
        for external_id in sorted(set(want_coverage) & set(have_coverage)):
            for field, value in want_coverage[external_id].items():
                if have_coverage[external_id][field] != value:
                    problems.append(f"coverage {external_id}.{field}: hub has {have_coverage[external_id][field]!r}, "
                                    f"eClinicalWorks has {value!r}")
    return problems
