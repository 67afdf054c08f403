"""Canonical records as FHIR R4 resources (dicts that validate against fhir.resources' R4B models).

`to_fhir(obj)` is called once per row by the /fhir/r4/ facade, so it only reads attributes: load
rows with `for_fhir(queryset)` (or apply `FHIR_SELECT_RELATED` / `FHIR_PREFETCH_RELATED` yourself)
and it makes no further query. The dict holds JSON types only (str, int, float, bool, list, dict).

Ids: a resource's `id` is the record's public id (a child row's own public id for Conditions,
Procedures and Observations); references use public ids ("Patient/<uuid>"); `meta.versionId` and
`meta.lastUpdated` are the record's version and update time (a child row's parent's); every resource
carries the identifier `urn:switchboard:connection:<connection public id>` | external id, so its
origin is visible.

| canonical | FHIR |
| --- | --- |
| Patient | Patient |
| Practitioner | Practitioner (NPI identifier; roles, specialties in extensions) |
| Caregiver | Practitioner tagged kind=caregiver (discipline as qualification; skills, hire date in extensions) |
| Location | Location |
| Coverage | Coverage |
| Authorization | ClaimResponse (use preauthorization, preAuthRef, preAuthPeriod) |
| Appointment | Appointment (visit type, units, authorization in extensions) |
| Shift | Appointment tagged kind=shift (exact status and offers in extensions) |
| Encounter | Encounter (notes as contained DocumentReferences; diagnosis → Condition ids) |
| EncounterDiagnosis / Procedure / Vital | Condition / Procedure / Observation (vital-signs) |
| CarePlan | CarePlan (goals as contained Goals, activities, outcomes as notes) |
| Referral | ServiceRequest (intent order; accepted/declined in an extension) |
| Assessment | QuestionnaireResponse (score in an extension) |
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from django.db import models
from django.db.models import QuerySet

from canonical import models as m
from canonical.fhir import codes, items
from canonical.fhir import common as c
from canonical.fhir.common import iso, number

# What to_fhir reads beyond the row itself, per model. Rows loaded without these still export,
# at one query per related object.
FHIR_SELECT_RELATED: dict[type[models.Model], tuple[str, ...]] = {
    m.Patient: ("source_connection",),
    m.Practitioner: ("source_connection",),
    m.Caregiver: ("source_connection",),
    m.Location: ("source_connection",),
    m.Coverage: ("source_connection", "patient"),
    m.Authorization: ("source_connection", "patient"),
    m.Appointment: ("source_connection", "patient", "practitioner", "location", "authorization"),
    m.Shift: ("source_connection", "client", "caregiver"),
    m.Encounter: ("source_connection", "patient", "practitioner", "location", "appointment"),
    m.EncounterDiagnosis: ("encounter__source_connection", "encounter__patient"),
    m.EncounterProcedure: ("encounter__source_connection", "encounter__patient"),
    m.EncounterVital: ("encounter__source_connection", "encounter__patient"),
    m.CarePlan: ("source_connection", "patient"),
    m.Referral: ("source_connection", "patient"),
    m.Assessment: ("source_connection", "patient"),
}
FHIR_PREFETCH_RELATED: dict[type[models.Model], tuple[str, ...]] = {
    m.Patient: ("identifiers",),
    m.Shift: ("offers__caregiver",),
    m.Encounter: ("diagnoses", "procedures", "vitals", "notes"),
}
# Kept for callers that want one mapping: model -> (select_related, prefetch_related).
FHIR_PREFETCH: dict[type[models.Model], tuple[tuple[str, ...], tuple[str, ...]]] = {
    model: (select, FHIR_PREFETCH_RELATED.get(model, ())) for model, select in FHIR_SELECT_RELATED.items()
}


def for_fhir(queryset: QuerySet) -> QuerySet:
    """`queryset` with everything `to_fhir` reads loaded up front."""
    model = queryset.model
    queryset = queryset.select_related(*FHIR_SELECT_RELATED.get(model, ()))
    prefetch = FHIR_PREFETCH_RELATED.get(model, ())
    return queryset.prefetch_related(*prefetch) if prefetch else queryset


def fhir_type_of(model: type[models.Model]) -> str:
    """The FHIR resource type a model exports as."""
    return _EXPORTERS[model][0]


def to_fhir(obj: models.Model) -> dict[str, Any]:
    """The record as a FHIR R4 resource dict. Raises KeyError for a model that has no mapping."""
    try:
        _, exporter = _EXPORTERS[type(obj)]
    except KeyError:
        raise KeyError(f"no FHIR mapping for {type(obj).__name__}") from None
    return exporter(obj)


# --- shared parts --------------------------------------------------------------------------------

def ref(resource_type: str, obj: models.Model | None) -> dict | None:
    return {"reference": f"{resource_type}/{obj.public_id}"} if obj is not None else None


def _start(obj: Any, resource_type: str, *, tag: str | None = None, list_identifier: bool = True) -> dict:
    meta: dict[str, Any] = {"versionId": str(obj.version), "lastUpdated": iso(obj.updated_at)}
    if tag:
        meta["tag"] = [{"system": c.KIND_TAG_SYSTEM, "code": tag}]
    origin = {"system": c.origin_system(obj.source_connection.public_id), "value": obj.external_id}
    return {
        "resourceType": resource_type,
        "id": str(obj.public_id),
        "meta": meta,
        "identifier": [origin] if list_identifier else origin,
    }


def _finish(resource: dict, overlay: dict[str, Any] | None = None, extension: list[dict] | None = None) -> dict:
    extension = [*(extension or []), *c.canonical_fields_extension(overlay or {})]
    if extension:
        resource["extension"] = extension
    return {key: value for key, value in resource.items() if value not in (None, [], {}, "")}


def _put(target: dict, key: str, value: Any, overlay: dict, field: str) -> None:
    """A text field into `target[key]` when FHIR can hold it; a non-empty value it cannot goes to the overlay."""
    if c.is_string(value):
        target[key] = value
    elif value not in ("", None):
        overlay[field] = value


def _name(obj: Any, overlay: dict) -> list[dict]:
    name: dict[str, Any] = {}
    _put(name, "family", obj.family_name, overlay, "family_name")
    if c.all_strings(obj.given_names):
        if obj.given_names:
            name["given"] = list(obj.given_names)
    else:
        overlay["given_names"] = obj.given_names
    return [name] if name else []


def _telecom(obj: Any, overlay: dict) -> list[dict]:
    telecom = []
    for system, field in (("phone", "phone"), ("email", "email")):
        point: dict[str, Any] = {}
        _put(point, "value", getattr(obj, field, ""), overlay, field)
        if point:
            telecom.append({"system": system, **point})
    return telecom


def _geolocation(latitude: Any, longitude: Any) -> list[dict]:
    parts = [
        {"url": key, "valueDecimal": number(value)} for key, value in (("latitude", latitude), ("longitude", longitude)) if value is not None
    ]
    return [{"url": c.GEOLOCATION_EXTENSION, "extension": parts}] if parts else []


def _address(obj: Any, overlay: dict) -> list[dict]:
    address: dict[str, Any] = {}
    line1, line2 = obj.address_line1, obj.address_line2
    if line2 and not c.is_string(line1):
        overlay.update(address_line1=line1, address_line2=line2)  # FHIR cannot leave a gap before a second line
    lines = [line for line in (line1, line2) if c.is_string(line)]
    if lines:
        address["line"] = lines
    for key, field in (("city", "city"), ("state", "state"), ("postalCode", "postal_code"), ("country", "country")):
        _put(address, key, getattr(obj, field), overlay, field)
    return [address] if address else []


def _string_extensions(url: str, values: Any, overlay: dict, field: str) -> list[dict]:
    if not c.all_strings(values):
        overlay[field] = values
        return []
    return [{"url": url, "valueString": value} for value in values]


def _coding(system: str, code: str, display: str, overlay: dict, code_field: str = "code") -> dict:
    """A Coding of a child row; `code_field` is the row's name for the code (vitals call it loinc)."""
    coding: dict[str, Any] = {}
    _put(coding, "system", system, overlay, "system")
    if c.is_code(code):
        coding["code"] = code
    elif code not in ("", None):
        overlay[code_field] = code
    _put(coding, "display", display, overlay, "display")
    return coding


# --- people and places -------------------------------------------------------------------------

def patient(obj: m.Patient) -> dict:
    resource = _start(obj, "Patient")
    overlay: dict[str, Any] = {}
    identifiers = sorted(obj.identifiers.all(), key=lambda row: row.position)
    resource["identifier"] += [{"system": row.system, "value": row.value} for row in identifiers]
    resource["name"] = _name(obj, overlay)
    resource["telecom"] = _telecom(obj, overlay)
    resource["gender"] = obj.sex
    resource["birthDate"] = iso(obj.birth_date)
    resource["address"] = _address(obj, overlay)
    if obj.language:
        if c.is_code(obj.language):
            resource["communication"] = [{"language": {"coding": [{"system": codes.BCP47, "code": obj.language}]}}]
        else:
            overlay["language"] = obj.language
    return _finish(resource, overlay)


def practitioner(obj: m.Practitioner) -> dict:
    resource = _start(obj, "Practitioner")
    overlay: dict[str, Any] = {}
    if obj.npi:
        resource["identifier"].append({"system": codes.NPI, "value": obj.npi})
    resource["active"] = obj.active
    resource["name"] = _name(obj, overlay)
    resource["telecom"] = _telecom(obj, overlay)
    extension = [
        *_string_extensions(c.PRACTITIONER_ROLE, obj.roles, overlay, "roles"),
        *_string_extensions(c.PRACTITIONER_SPECIALTY, obj.specialties, overlay, "specialties"),
    ]
    return _finish(resource, overlay, extension)


def caregiver(obj: m.Caregiver) -> dict:
    resource = _start(obj, "Practitioner", tag="caregiver")
    overlay: dict[str, Any] = {}
    resource["active"] = obj.active
    resource["name"] = _name(obj, overlay)
    resource["telecom"] = _telecom(obj, overlay)
    address: dict[str, Any] = {}
    _put(address, "postalCode", obj.postal_code, overlay, "postal_code")
    geolocation = _geolocation(obj.latitude, obj.longitude)
    if geolocation:
        address["extension"] = geolocation
    resource["address"] = [address] if address else []
    qualification: dict[str, Any] = {}
    _put(qualification, "text", obj.discipline, overlay, "discipline")
    resource["qualification"] = [{"code": qualification}] if qualification else []
    extension = _string_extensions(c.CAREGIVER_SKILL, obj.skills, overlay, "skills")
    if obj.hire_date is not None:
        extension.append({"url": c.CAREGIVER_HIRE_DATE, "valueDate": iso(obj.hire_date)})
    return _finish(resource, overlay, extension)


def location(obj: m.Location) -> dict:
    resource = _start(obj, "Location")
    overlay: dict[str, Any] = {}
    resource["status"] = "active" if obj.active else "inactive"
    _put(resource, "name", obj.name, overlay, "name")
    location_type: dict[str, Any] = {}
    _put(location_type, "text", obj.type, overlay, "type")
    resource["type"] = [location_type] if location_type else []
    resource["telecom"] = _telecom(obj, overlay)
    addresses = _address(obj, overlay)
    resource["address"] = addresses[0] if addresses else None  # Location has one address
    if obj.latitude is not None and obj.longitude is not None:
        resource["position"] = {"longitude": number(obj.longitude), "latitude": number(obj.latitude)}
    elif obj.latitude is not None or obj.longitude is not None:
        overlay.update(latitude=obj.latitude, longitude=obj.longitude)  # position needs both
    return _finish(resource, overlay)


# --- coverage and authorizations ---------------------------------------------------------------

def coverage(obj: m.Coverage) -> dict:
    resource = _start(obj, "Coverage")
    overlay: dict[str, Any] = {}
    resource["status"] = obj.status
    _put(resource, "subscriberId", obj.member_id, overlay, "member_id")
    resource["beneficiary"] = ref("Patient", obj.patient)
    payor: dict[str, Any] = {}
    _put(payor, "display", obj.payer, overlay, "payer")
    if c.is_string(obj.payer_id):
        payor["identifier"] = {"value": obj.payer_id}
    elif obj.payer_id:
        overlay["payer_id"] = obj.payer_id
    if not payor:  # payor is required
        payor, overlay["payer"] = {"display": "unknown payer"}, obj.payer
    resource["payor"] = [payor]
    classes = []
    for kind, field in (("plan", "plan"), ("group", "group_number")):
        value = getattr(obj, field)
        if c.is_string(value):
            classes.append({"type": {"coding": [{"system": codes.COVERAGE_CLASS, "code": kind}]}, "value": value})
        elif value:
            overlay[field] = value
    resource["class"] = classes
    if obj.priority >= 1:
        resource["order"] = obj.priority
    else:
        overlay["priority"] = obj.priority  # order is a positiveInt
    resource["period"] = {key: iso(value) for key, value in (("start", obj.start_date), ("end", obj.end_date)) if value}
    if obj.claim_filing_indicator:
        resource["type"] = {"coding": [{"system": codes.CLAIM_FILING_INDICATOR, "code": obj.claim_filing_indicator}]}
    return _finish(resource, overlay)


def authorization(obj: m.Authorization) -> dict:
    resource = _start(obj, "ClaimResponse")
    overlay: dict[str, Any] = {}
    resource["status"] = "cancelled" if obj.status == "cancelled" else "active"
    resource["type"] = {"coding": [{"system": codes.CLAIM_TYPE, "code": "professional"}]}
    resource["use"] = "preauthorization"
    resource["patient"] = ref("Patient", obj.patient)
    resource["created"] = iso(obj.created_at)
    insurer: dict[str, Any] = {}
    _put(insurer, "display", obj.payer, overlay, "payer")
    if not insurer:  # insurer is required
        insurer, overlay["payer"] = {"display": "unknown payer"}, obj.payer
    resource["insurer"] = insurer
    resource["outcome"] = "queued" if obj.status == "pending" else "complete"
    resource["disposition"] = f"Authorization {obj.status}"
    _put(resource, "preAuthRef", obj.auth_number, overlay, "auth_number")
    resource["preAuthPeriod"] = {"start": iso(obj.start_date), "end": iso(obj.end_date)}
    if c.all_strings(obj.service_codes) and all(c.is_code(code) for code in obj.service_codes):
        resource["addItem"] = [
            {
                "productOrService": {"coding": [{"code": code}]},
                "adjudication": [{"category": {"coding": [{"system": codes.ADJUDICATION, "code": "eligible"}]}}],
            }
            for code in obj.service_codes
        ]
    else:
        overlay["service_codes"] = obj.service_codes
    units: dict[str, Any] = {"value": number(obj.units_allowed)}
    _put(units, "unit", obj.unit_type, overlay, "unit_type")
    if obj.unit_type == "":
        overlay["unit_type"] = ""  # absent would read back as the model default, "visit"
    extension = [
        {"url": c.AUTHORIZATION_STATUS, "valueCode": obj.status},
        {"url": c.AUTHORIZED_UNITS, "valueQuantity": units},
    ]
    return _finish(resource, overlay, extension)


# --- scheduling ---------------------------------------------------------------------------------

def _participant(resource_type: str, obj: Any) -> dict:
    return {"actor": ref(resource_type, obj), "status": "accepted"}


def _service_type(code: str, overlay: dict) -> list[dict]:
    if c.is_code(code):
        return [{"coding": [{"code": code}]}]
    if code:
        overlay["service_code"] = code
    return []


def appointment(obj: m.Appointment) -> dict:
    resource = _start(obj, "Appointment")
    overlay: dict[str, Any] = {}
    resource["status"] = obj.status
    resource["serviceType"] = _service_type(obj.service_code, overlay)
    _put(resource, "description", obj.description, overlay, "description")
    resource["start"] = iso(obj.start)
    resource["end"] = iso(obj.end)
    resource["participant"] = [
        _participant(resource_type, related)
        for resource_type, related in (("Patient", obj.patient), ("Practitioner", obj.practitioner), ("Location", obj.location))
        if related is not None
    ]
    extension = [
        {"url": c.VISIT_TYPE, "valueCode": obj.visit_type},
        {"url": c.UNITS, "valueDecimal": number(obj.units)},
    ]
    if obj.authorization is not None:
        extension.append({"url": c.AUTHORIZATION, "valueReference": ref("ClaimResponse", obj.authorization)})
    return _finish(resource, overlay, extension)


def shift(obj: m.Shift) -> dict:
    resource = _start(obj, "Appointment", tag="shift")
    overlay: dict[str, Any] = {}
    resource["status"] = codes.SHIFT_TO_APPOINTMENT_STATUS.get(obj.status, "proposed")
    resource["serviceType"] = _service_type(obj.service_code, overlay)
    resource["start"] = iso(obj.start)
    resource["end"] = iso(obj.end)
    resource["participant"] = [_participant("Patient", obj.client)]
    if obj.caregiver is not None:
        resource["participant"].append(_participant("Practitioner", obj.caregiver))
    extension = [{"url": c.SHIFT_STATUS, "valueCode": obj.status}]
    for offer in sorted(obj.offers.all(), key=lambda row: row.position):
        parts = [
            {"url": "caregiver", "valueReference": ref("Practitioner", offer.caregiver)},
            {"url": "response", "valueCode": offer.response},
        ]
        parts += [{"url": key, "valueDateTime": iso(value)} for key, value in (("offeredAt", offer.offered_at), ("respondedAt", offer.responded_at)) if value]
        extension.append({"url": c.SHIFT_OFFER, "extension": parts})
    return _finish(resource, overlay, extension)


# --- encounters and their parts -----------------------------------------------------------------

def _note(note: m.EncounterNote, encounter: m.Encounter) -> dict:
    overlay: dict[str, Any] = {}
    document: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "id": f"note-{note.position}",
        "status": "current",
        "docStatus": codes.NOTE_TO_DOC_STATUS.get(note.status, "preliminary"),
        "type": {"coding": [{"system": codes.LOINC, "code": "11506-3", "display": "Progress note"}]},
        "subject": ref("Patient", encounter.patient),
        "context": {"encounter": [{"reference": "#"}]},  # the containing Encounter
    }
    if note.status not in codes.NOTE_TO_DOC_STATUS:
        overlay["status"] = note.status
    author: dict[str, Any] = {}
    _put(author, "display", note.author, overlay, "author")
    document["author"] = [author] if author else []
    signer: dict[str, Any] = {}
    _put(signer, "display", note.signed_by, overlay, "signed_by")
    document["authenticator"] = signer or None
    attachment: dict[str, Any] = {"contentType": "text/plain; charset=utf-8"}
    if note.text:
        attachment["data"] = base64.b64encode(note.text.encode()).decode()
    document["content"] = [{"attachment": attachment}]
    extension = [{"url": c.NOTE_LOCKED, "valueBoolean": note.locked}]
    if note.signed_at is not None:
        extension.append({"url": c.NOTE_SIGNED_AT, "valueDateTime": iso(note.signed_at)})
    amendments = note.amendments
    if isinstance(amendments, list):
        extension += c.encode_items(amendments, items.amendment_encode, items.amendment_decode)
    else:
        overlay["amendments"] = amendments
    return _finish(document, overlay, extension)


def encounter(obj: m.Encounter) -> dict:
    resource = _start(obj, "Encounter")
    overlay: dict[str, Any] = {}
    notes = sorted(obj.notes.all(), key=lambda row: row.position)
    if notes:
        resource["contained"] = [_note(note, obj) for note in notes]
    resource["status"] = obj.status
    class_code, class_display = codes.VISIT_TYPE_TO_CLASS.get(obj.visit_type, codes.VISIT_TYPE_TO_CLASS["in-person"])
    resource["class"] = {"system": codes.ACT_CODE, "code": class_code, "display": class_display}
    if obj.visit_type not in codes.VISIT_TYPE_TO_CLASS:
        overlay["visit_type"] = obj.visit_type
    resource["subject"] = ref("Patient", obj.patient)
    if obj.practitioner is not None:
        resource["participant"] = [{"individual": ref("Practitioner", obj.practitioner)}]
    if obj.appointment is not None:
        resource["appointment"] = [ref("Appointment", obj.appointment)]
    resource["period"] = {key: iso(value) for key, value in (("start", obj.period_start), ("end", obj.period_end)) if value}
    reason: dict[str, Any] = {}
    _put(reason, "text", obj.reason, overlay, "reason")
    if reason.get("text"):
        resource["reasonCode"] = [reason]
    if obj.details:
        overlay["details"] = obj.details
    diagnoses = []
    for row in sorted(obj.diagnoses.all(), key=lambda row: row.position):
        entry: dict[str, Any] = {"condition": ref("Condition", row)}
        if row.rank >= 1:
            entry["rank"] = row.rank
        else:  # rank is a positiveInt; 0 goes with the Condition
            entry["extension"] = [{"url": c.DIAGNOSIS_RANK, "valueInteger": row.rank}]
        diagnoses.append(entry)
    resource["diagnosis"] = diagnoses
    if obj.location is not None:
        resource["location"] = [{"location": ref("Location", obj.location)}]
    return _finish(resource, overlay)


def _child_start(row: Any, resource_type: str, list_name: str) -> dict:
    parent = row.encounter
    meta = {"versionId": str(parent.version), "lastUpdated": iso(parent.updated_at)}
    origin = {"system": c.origin_system(parent.source_connection.public_id), "value": f"{parent.external_id}/{list_name}/{row.position}"}
    return {"resourceType": resource_type, "id": str(row.public_id), "meta": meta, "identifier": [origin]}


def _child_links(resource: dict, row: Any) -> list[dict]:
    resource["subject"] = ref("Patient", row.encounter.patient)
    resource["encounter"] = ref("Encounter", row.encounter)
    return [{"url": c.POSITION, "valueInteger": row.position}]


def diagnosis(row: m.EncounterDiagnosis) -> dict:
    resource = _child_start(row, "Condition", "diagnoses")
    overlay: dict[str, Any] = {}
    resource["category"] = [{"coding": [{"system": codes.CONDITION_CATEGORY, "code": "encounter-diagnosis"}]}]
    resource["code"] = {"coding": [_coding(row.system, row.code, row.display, overlay)]}
    extension = _child_links(resource, row)
    return _finish(resource, overlay, extension)


def procedure(row: m.EncounterProcedure) -> dict:
    resource = _child_start(row, "Procedure", "procedures")
    overlay: dict[str, Any] = {}
    resource["status"] = "completed"
    resource["code"] = {"coding": [_coding(row.system, row.code, row.display, overlay)]}
    extension = _child_links(resource, row)
    if c.all_strings(row.modifiers) and all(c.is_code(value) for value in row.modifiers):
        extension += [{"url": c.PROCEDURE_MODIFIER, "valueCode": value} for value in row.modifiers]
    else:
        overlay["modifiers"] = row.modifiers
    extension.append({"url": c.UNITS, "valueDecimal": number(row.units)})
    return _finish(resource, overlay, extension)


def vital(row: m.EncounterVital) -> dict:
    resource = _child_start(row, "Observation", "vitals")
    overlay: dict[str, Any] = {}
    resource["status"] = "final"
    resource["category"] = [{"coding": [{"system": codes.OBSERVATION_CATEGORY, "code": "vital-signs", "display": "Vital Signs"}]}]
    resource["code"] = {"coding": [_coding(codes.LOINC, row.loinc, row.display, overlay, "loinc")]}
    extension = _child_links(resource, row)
    resource["effectiveDateTime"] = iso(row.effective_at)
    quantity: dict[str, Any] = {"value": number(row.value)}
    if c.is_code(row.unit):
        quantity.update(unit=row.unit, system=codes.UCUM, code=row.unit)
    elif row.unit:
        overlay["unit"] = row.unit
    resource["valueQuantity"] = quantity
    return _finish(resource, overlay, extension)


# --- plans, referrals, assessments --------------------------------------------------------------

def care_plan(obj: m.CarePlan) -> dict:
    resource = _start(obj, "CarePlan")
    overlay: dict[str, Any] = {}
    patient_ref = ref("Patient", obj.patient)
    goals = obj.goals if isinstance(obj.goals, list) else []
    if not isinstance(obj.goals, list):
        overlay["goals"] = obj.goals
    contained = []
    for index, item in enumerate(goals):
        goal = items.goal_encode(item, patient_ref, index)
        if c.canonical_json(items.goal_decode(goal)) != c.canonical_json(item):
            goal["extension"] = [{"url": c.CANONICAL_ITEM, "valueString": c.canonical_json(item)}]
        contained.append(goal)
    resource["contained"] = contained
    resource["status"] = obj.status
    resource["intent"] = "plan"
    _put(resource, "title", obj.title, overlay, "title")
    resource["subject"] = patient_ref
    resource["period"] = {key: iso(value) for key, value in (("start", obj.period_start), ("end", obj.period_end)) if value}
    resource["goal"] = [{"reference": f"#{goal['id']}"} for goal in contained]
    for field, encode, decode, key in (
        ("activities", items.activity_encode, items.activity_decode, "activity"),
        ("outcomes", items.outcome_encode, items.outcome_decode, "note"),
    ):
        value = getattr(obj, field)
        if isinstance(value, list):
            resource[key] = c.encode_items(value, encode, decode)
        else:
            overlay[field] = value
    return _finish(resource, overlay)


def referral(obj: m.Referral) -> dict:
    resource = _start(obj, "ServiceRequest")
    overlay: dict[str, Any] = {}
    extension = []
    resource["status"] = codes.REFERRAL_TO_REQUEST_STATUS.get(obj.status, obj.status)
    if obj.status in codes.REFERRAL_TO_REQUEST_STATUS:
        extension.append({"url": c.REFERRAL_STATUS, "valueCode": obj.status})
    resource["intent"] = "order"
    resource["priority"] = obj.priority
    if c.is_code(obj.service_code):
        resource["code"] = {"coding": [{"code": obj.service_code}]}
    elif obj.service_code:
        overlay["service_code"] = obj.service_code
    # subject is required; a referral can arrive before the patient is known
    resource["subject"] = ref("Patient", obj.patient) or {"display": "patient not yet identified"}
    resource["authoredOn"] = iso(obj.received_at)
    requester: dict[str, Any] = {}
    _put(requester, "display", obj.source, overlay, "source")
    resource["requester"] = requester or None
    reason: dict[str, Any] = {}
    _put(reason, "text", obj.reason, overlay, "reason")
    resource["reasonCode"] = [reason] if reason else []
    return _finish(resource, overlay, extension)


def assessment(obj: m.Assessment) -> dict:
    resource = _start(obj, "QuestionnaireResponse", list_identifier=False)
    overlay: dict[str, Any] = {}
    if obj.instrument:
        resource["questionnaire"] = c.QUESTIONNAIRE_BASE + quote(obj.instrument, safe="")
        resource["_questionnaire"] = {"extension": [{"url": c.DISPLAY_EXTENSION, "valueString": obj.instrument}]}
    resource["status"] = obj.status
    resource["subject"] = ref("Patient", obj.patient)
    resource["authored"] = iso(obj.completed_at)
    if isinstance(obj.answers, list):
        resource["item"] = [
            c.encode_items([answer], lambda item, link_id=str(index): items.answer_encode(item, link_id), items.answer_decode)[0]
            for index, answer in enumerate(obj.answers, start=1)
        ]
    else:
        overlay["answers"] = obj.answers
    extension = [{"url": c.ASSESSMENT_SCORE, "valueDecimal": number(obj.score)}] if obj.score is not None else []
    return _finish(resource, overlay, extension)


_EXPORTERS: dict[type[models.Model], tuple[str, Callable[[Any], dict]]] = {
    m.Patient: ("Patient", patient),
    m.Practitioner: ("Practitioner", practitioner),
    m.Caregiver: ("Practitioner", caregiver),
    m.Location: ("Location", location),
    m.Coverage: ("Coverage", coverage),
    m.Authorization: ("ClaimResponse", authorization),
    m.Appointment: ("Appointment", appointment),
    m.Shift: ("Appointment", shift),
    m.Encounter: ("Encounter", encounter),
    m.EncounterDiagnosis: ("Condition", diagnosis),
    m.EncounterProcedure: ("Procedure", procedure),
    m.EncounterVital: ("Observation", vital),
    m.CarePlan: ("CarePlan", care_plan),
    m.Referral: ("ServiceRequest", referral),
    m.Assessment: ("QuestionnaireResponse", assessment),
}
