"""FHIR R4 resources into normalized canonical dicts: the inverse of `export`.

Each function takes a resource that its R4B model has already validated (as the parsed JSON, so
numbers and strings stay as the sender wrote them) and returns what the upsert engine needs, or
raises `ResourceRefused` naming the element that is wrong. References come back as `Ref`s; the
ingest resolves them to external ids once it knows the whole payload. Conditions, Procedures and
Observations come back as `MappedChild`ren of their encounter.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from django.utils.dateparse import parse_datetime

from canonical import choices
from canonical.fhir import codes, items
from canonical.fhir import common as c
from canonical.fhir.validation import ResourceRefused


@dataclass(frozen=True)
class Ref:
    """A reference to another record: its kind and the FHIR id it was given by."""

    kind: str
    id: str
    path: str


@dataclass
class Mapped:
    kind: str
    record: dict[str, Any]  # references as Ref
    paths: dict[str, str] = field(default_factory=dict)  # canonical field -> FHIR element, for engine rejections
    # Encounter only: "Condition/<id>" -> (order in Encounter.diagnosis, rank or None)
    diagnoses: dict[str, tuple[int, int | None]] = field(default_factory=dict)


@dataclass
class MappedChild:
    list_name: str  # diagnoses, procedures or vitals
    encounter: Ref
    item: dict[str, Any]
    position: int | None
    natural_key: tuple
    paths: dict[str, str] = field(default_factory=dict)


class References:
    """Reads Reference elements: "Type/id", absolute URLs, and urn:uuid fullUrls of the Bundle."""

    def __init__(self, full_urls: dict[str, tuple[str, str]]):
        self.full_urls = full_urls

    def parse(self, reference: Any, path: str) -> tuple[str, str] | None:
        if not isinstance(reference, str) or reference.startswith("#"):
            return None
        if reference in self.full_urls:
            return self.full_urls[reference]
        if reference.startswith("urn:"):
            raise ResourceRefused(path, f"{reference!r} is not the fullUrl of an entry in this Bundle")
        parts = reference.split("/_history/")[0].rstrip("/").split("/")
        if len(parts) < 2 or not parts[-1]:
            raise ResourceRefused(path, f"{reference!r} is not a reference of the form Type/id")
        return parts[-2], parts[-1]

    def read(self, element: Any, path: str, expected: dict[str, str]) -> Ref | None:
        """The Ref in `element` (a Reference), if it names a resource; `expected` maps allowed types to kinds."""
        if not isinstance(element, dict):
            return None
        parsed = self.parse(element.get("reference"), f"{path}.reference")
        if parsed is None:
            return None
        resource_type, resource_id = parsed
        if resource_type not in expected:
            raise ResourceRefused(f"{path}.reference", f"must reference a {' or '.join(expected)}, not a {resource_type}")
        return Ref(expected[resource_type], resource_id, f"{path}.reference")


PATIENT = {"Patient": "patient"}


# --- values ----------------------------------------------------------------------------------------

def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _date(value: Any, path: str) -> date | None:
    """A canonical date from a FHIR date or dateTime (whose date part is taken)."""
    if value is None:
        return None
    if isinstance(value, str) and len(value) >= 10:
        if len(value) == 10:
            return date.fromisoformat(value)
        parsed = parse_datetime(value)
        if parsed is not None:
            return parsed.date()
    raise ResourceRefused(path, f"{value!r} is a partial date; a full date (YYYY-MM-DD) is needed")


def _datetime(value: Any, path: str) -> datetime | None:
    if value is None:
        return None
    parsed = parse_datetime(value) if isinstance(value, str) and "T" in value else None
    if parsed is None or parsed.tzinfo is None:
        raise ResourceRefused(path, f"{value!r} has no time; a date and time with a time zone is needed")
    return parsed


def _decimal(value: Any, path: str) -> Decimal | None:
    if value is None:
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        raise ResourceRefused(path, f"{value!r} is not a number") from None


def _tags(resource: dict) -> set[str]:
    return {tag.get("code") for tag in (resource.get("meta") or {}).get("tag") or [] if tag.get("system") == c.KIND_TAG_SYSTEM}


def _strings(resource: dict, url: str) -> list[Any]:
    return [e.get("valueString", e.get("valueCode")) for e in c.extensions(resource, url)]


def _check(value: Any, allowed: tuple[str, ...], path: str) -> Any:
    reason = codes.check_status(value, allowed)
    if reason:
        raise ResourceRefused(path, reason)
    return value


def _codeable_text(concept: Any) -> str:
    if not isinstance(concept, dict):
        return ""
    if concept.get("text"):
        return concept["text"]
    for coding in concept.get("coding") or []:
        if coding.get("display") or coding.get("code"):
            return coding.get("display") or coding.get("code")
    return ""


def _finish(record: dict, resource: dict) -> dict:
    record.update(c.read_canonical_fields(resource))
    return record


# --- people and places -----------------------------------------------------------------------------

def _name(resource: dict, record: dict, paths: dict) -> None:
    names = resource.get("name") or []
    index = next((i for i, name in enumerate(names) if name.get("use") == "official"), 0)
    name = names[index] if names else {}
    record["family_name"] = _text(name.get("family"))
    record["given_names"] = [given for given in name.get("given") or [] if given is not None]
    paths.update(family_name=f"name[{index}].family", given_names=f"name[{index}].given")


def _telecom(resource: dict, record: dict, paths: dict, systems: tuple[str, ...] = ("phone", "email")) -> None:
    for system in systems:
        record[system] = ""
        for index, point in enumerate(resource.get("telecom") or []):
            if point.get("system") == system and point.get("value"):
                record[system] = point["value"]
                paths[system] = f"telecom[{index}].value"
                break


def _address(resource: dict, record: dict, paths: dict) -> None:
    addresses = resource.get("address") or []
    if isinstance(addresses, dict):  # Location has one address, Patient a list
        addresses = [addresses]
    address = addresses[0] if addresses else {}
    prefix = "address[0]" if isinstance(resource.get("address"), list) else "address"
    lines = [line for line in address.get("line") or [] if line]
    record["address_line1"] = lines[0] if lines else ""
    record["address_line2"] = ", ".join(lines[1:])
    paths.update(address_line1=f"{prefix}.line[0]", address_line2=f"{prefix}.line[1]")
    for key, name in (("city", "city"), ("state", "state"), ("postalCode", "postal_code"), ("country", "country")):
        record[name] = _text(address.get(key))
        paths[name] = f"{prefix}.{key}"


def patient(resource: dict, refs: References) -> Mapped:
    record: dict[str, Any] = {}
    paths: dict[str, str] = {}
    _name(resource, record, paths)
    _telecom(resource, record, paths)
    _address(resource, record, paths)
    record["sex"] = _check(resource.get("gender", "unknown"), codes.GENDERS, "gender")
    record["birth_date"] = _date(resource.get("birthDate"), "birthDate")
    paths.update(sex="gender", birth_date="birthDate")
    record["language"] = ""
    for index, communication in enumerate(resource.get("communication") or []):
        if index == 0 or communication.get("preferred"):
            language = communication.get("language") or {}
            codings = language.get("coding") or [{}]
            record["language"] = codings[0].get("code") or _text(language.get("text"))
            paths["language"] = f"communication[{index}].language"
    identifiers = []
    for index, identifier in enumerate(resource.get("identifier") or []):
        system = identifier.get("system")
        if isinstance(system, str) and system.startswith(c.ORIGIN_SYSTEM_PREFIX):
            continue  # where a record exported by a hub came from; not one of the patient's identifiers
        position = len(identifiers)
        identifiers.append({"system": system, "value": identifier.get("value")})
        paths.update({f"identifiers[{position}].system": f"identifier[{index}].system", f"identifiers[{position}].value": f"identifier[{index}].value"})
    record["identifiers"] = identifiers
    return Mapped("patient", _finish(record, resource), paths)


def practitioner(resource: dict, refs: References) -> Mapped:
    if "caregiver" in _tags(resource):
        return caregiver(resource, refs)
    record: dict[str, Any] = {"npi": ""}
    paths: dict[str, str] = {}
    for index, identifier in enumerate(resource.get("identifier") or []):
        if identifier.get("system") == codes.NPI:
            value = _text(identifier.get("value"))
            reason = codes.npi_reason(value)
            if reason:
                raise ResourceRefused(f"identifier[{index}].value", reason)
            record["npi"] = value
            paths["npi"] = f"identifier[{index}].value"
            break
    _name(resource, record, paths)
    _telecom(resource, record, paths)
    record["roles"] = _strings(resource, c.PRACTITIONER_ROLE)
    record["specialties"] = _strings(resource, c.PRACTITIONER_SPECIALTY)
    record["active"] = resource.get("active", True)
    paths.update(roles="extension", specialties="extension", active="active")
    return Mapped("practitioner", _finish(record, resource), paths)


def _geolocation(element: dict) -> dict[str, Any]:
    found = {}
    for geo in c.extensions(element, c.GEOLOCATION_EXTENSION):
        for part in geo.get("extension") or []:
            if part.get("url") in ("latitude", "longitude"):
                found[part["url"]] = _decimal(part.get("valueDecimal"), "extension")
    return found


def caregiver(resource: dict, refs: References) -> Mapped:
    record: dict[str, Any] = {}
    paths: dict[str, str] = {}
    _name(resource, record, paths)
    _telecom(resource, record, paths)
    qualifications = resource.get("qualification") or []
    record["discipline"] = _codeable_text(qualifications[0].get("code")) if qualifications else ""
    record["skills"] = _strings(resource, c.CAREGIVER_SKILL)
    record["active"] = resource.get("active", True)
    record["hire_date"] = _date(c.extension_value(resource, c.CAREGIVER_HIRE_DATE, "valueDate"), "extension")
    addresses = resource.get("address") or []
    address = addresses[0] if addresses else {}
    record["postal_code"] = _text(address.get("postalCode"))
    geolocation = _geolocation(address)
    record["latitude"], record["longitude"] = geolocation.get("latitude"), geolocation.get("longitude")
    paths.update(discipline="qualification[0].code", postal_code="address[0].postalCode", active="active", latitude="address[0].extension", longitude="address[0].extension")
    return Mapped("caregiver", _finish(record, resource), paths)


def location(resource: dict, refs: References) -> Mapped:
    record: dict[str, Any] = {"name": resource.get("name")}
    paths: dict[str, str] = {"name": "name", "type": "type[0]", "latitude": "position.latitude", "longitude": "position.longitude"}
    types = resource.get("type") or []
    record["type"] = _codeable_text(types[0]) if types else ""
    _telecom(resource, record, paths, ("phone",))
    record["active"] = resource.get("status") in (None, "active")
    position = resource.get("position") or {}
    record["latitude"] = _decimal(position.get("latitude"), "position.latitude")
    record["longitude"] = _decimal(position.get("longitude"), "position.longitude")
    _address(resource, record, paths)
    return Mapped("location", _finish(record, resource), paths)


# --- coverage and authorizations -------------------------------------------------------------------

def _period_dates(resource: dict, key: str, record: dict, paths: dict, names: tuple[str, str]) -> None:
    period = resource.get(key) or {}
    for end, name in zip(("start", "end"), names, strict=True):
        record[name] = _date(period.get(end), f"{key}.{end}")
        paths[name] = f"{key}.{end}"


def coverage(resource: dict, refs: References) -> Mapped:
    paths: dict[str, str] = {"patient": "beneficiary", "payer": "payor[0]", "member_id": "subscriberId", "priority": "order", "status": "status"}
    record: dict[str, Any] = {"status": _check(resource.get("status"), codes.COVERAGE_STATUSES, "status")}
    record["patient"] = refs.read(resource.get("beneficiary"), "beneficiary", PATIENT)
    payors = resource.get("payor") or [{}]
    payor = payors[0]
    record["payer"] = payor.get("display") or payor.get("reference")
    record["payer_id"] = _text((payor.get("identifier") or {}).get("value"))
    record["member_id"] = resource.get("subscriberId")
    record["plan"] = record["group_number"] = ""
    for index, coverage_class in enumerate(resource.get("class") or []):
        kind = ((coverage_class.get("type") or {}).get("coding") or [{}])[0].get("code")
        if kind == "plan":
            record["plan"] = coverage_class.get("name") or coverage_class.get("value") or ""
            paths["plan"] = f"class[{index}]"
        elif kind == "group":
            record["group_number"] = _text(coverage_class.get("value"))
            paths["group_number"] = f"class[{index}].value"
    record["priority"] = resource.get("order", 1)
    record["claim_filing_indicator"] = ""
    for coding in (resource.get("type") or {}).get("coding") or []:
        if isinstance(coding, dict) and coding.get("system") == codes.CLAIM_FILING_INDICATOR:
            record["claim_filing_indicator"] = _text(coding.get("code"))[:2]
            paths["claim_filing_indicator"] = "type"
    _period_dates(resource, "period", record, paths, ("start_date", "end_date"))
    return Mapped("coverage", _finish(record, resource), paths)


def claim_response(resource: dict, refs: References) -> Mapped:
    if resource.get("use") != "preauthorization":
        raise ResourceRefused("use", "only preauthorization ClaimResponses are kept (as authorizations)")
    paths: dict[str, str] = {"patient": "patient", "payer": "insurer", "auth_number": "preAuthRef", "units_allowed": "extension", "status": "extension"}
    status = c.extension_value(resource, c.AUTHORIZATION_STATUS, "valueCode")
    if status is None:
        status = "cancelled" if resource.get("status") == "cancelled" else "pending" if resource.get("outcome") == "queued" else "active"
    record: dict[str, Any] = {"status": _check(status, tuple(choices.AuthorizationStatus.values), "extension")}
    record["patient"] = refs.read(resource.get("patient"), "patient", PATIENT)
    insurer = resource.get("insurer") or {}
    record["payer"] = insurer.get("display") or insurer.get("reference")
    record["auth_number"] = resource.get("preAuthRef")
    added = resource.get("addItem") or []
    record["service_codes"] = [
        ((item.get("productOrService") or {}).get("coding") or [{}])[0].get("code") for item in added
    ]
    units = c.extension_value(resource, c.AUTHORIZED_UNITS, "valueQuantity")
    if units is None and added and isinstance(added[0].get("quantity"), dict):
        units = added[0]["quantity"]
    units = units or {}
    record["units_allowed"] = _decimal(units.get("value"), "extension")
    record["unit_type"] = units.get("unit")
    _period_dates(resource, "preAuthPeriod", record, paths, ("start_date", "end_date"))
    return Mapped("authorization", _finish(record, resource), paths)


# --- scheduling ------------------------------------------------------------------------------------

# Appointment participants by FHIR type: the kind referenced and the canonical field that holds it.
_APPOINTMENT_KINDS = {"Patient": "patient", "Practitioner": "practitioner", "Location": "location"}
_APPOINTMENT_FIELDS = _APPOINTMENT_KINDS  # same names: Appointment.patient is a patient, …
_SHIFT_KINDS = {"Patient": "patient", "Practitioner": "caregiver"}
_SHIFT_FIELDS = {"Patient": "client", "Practitioner": "caregiver"}


def _participants(resource: dict, refs: References, kinds: dict[str, str], fields: dict[str, str], paths: dict) -> dict[str, Ref | None]:
    """The first participant of each FHIR type, into the canonical field `fields[type]`."""
    found: dict[str, Ref | None] = dict.fromkeys(fields.values())
    for index, participant in enumerate(resource.get("participant") or []):
        path = f"participant[{index}].actor"
        parsed = refs.parse((participant.get("actor") or {}).get("reference"), f"{path}.reference")
        if parsed is None or parsed[0] not in fields:
            continue
        name = fields[parsed[0]]
        if found[name] is None:
            found[name] = Ref(kinds[parsed[0]], parsed[1], f"{path}.reference")
            paths[name] = path
    if found[fields["Patient"]] is None:
        raise ResourceRefused("participant", "needs a Patient participant (the hub keeps appointments of a patient)")
    return found


def _service_code(resource: dict) -> str:
    for concept in resource.get("serviceType") or []:
        for coding in concept.get("coding") or []:
            if coding.get("code"):
                return coding["code"]
    return ""


def appointment(resource: dict, refs: References) -> Mapped:
    if "shift" in _tags(resource):
        return shift(resource, refs)
    paths: dict[str, str] = {"start": "start", "end": "end", "status": "status", "units": "extension", "visit_type": "extension", "authorization": "extension"}
    record: dict[str, Any] = {"status": _check(resource.get("status"), codes.APPOINTMENT_STATUSES, "status")}
    record["start"] = _datetime(resource.get("start"), "start")
    record["end"] = _datetime(resource.get("end"), "end")
    visit_type = c.extension_value(resource, c.VISIT_TYPE, "valueCode")
    record["visit_type"] = _check(visit_type, tuple(choices.VisitType.values), "extension") if visit_type is not None else None
    record["service_code"] = _service_code(resource)
    record["units"] = _decimal(c.extension_value(resource, c.UNITS, "valueDecimal"), "extension")
    record["description"] = _text(resource.get("description"))
    record.update(_participants(resource, refs, _APPOINTMENT_KINDS, _APPOINTMENT_FIELDS, paths))
    authorization = c.extension_value(resource, c.AUTHORIZATION, "valueReference")
    record["authorization"] = refs.read(authorization, "extension", {"ClaimResponse": "authorization"})
    return Mapped("appointment", _finish(record, resource), paths)


_APPOINTMENT_TO_SHIFT_STATUS = {"proposed": "open", "pending": "open", "booked": "assigned", "fulfilled": "completed", "cancelled": "cancelled"}


def shift(resource: dict, refs: References) -> Mapped:
    paths: dict[str, str] = {"start": "start", "end": "end", "status": "extension"}
    status = c.extension_value(resource, c.SHIFT_STATUS, "valueCode") or _APPOINTMENT_TO_SHIFT_STATUS.get(resource.get("status"))
    record: dict[str, Any] = {"status": _check(status, tuple(choices.ShiftStatus.values), "extension")}
    record["start"] = _datetime(resource.get("start"), "start")
    record["end"] = _datetime(resource.get("end"), "end")
    record["service_code"] = _service_code(resource)
    record.update(_participants(resource, refs, _SHIFT_KINDS, _SHIFT_FIELDS, paths))
    offers = []
    for index, offer in enumerate(c.extensions(resource, c.SHIFT_OFFER)):
        parts = {part.get("url"): part for part in offer.get("extension") or []}
        path = f"extension[{index}]"
        offers.append({
            "caregiver": refs.read((parts.get("caregiver") or {}).get("valueReference"), path, {"Practitioner": "caregiver"}),
            "response": (parts.get("response") or {}).get("valueCode"),
            "offered_at": _datetime((parts.get("offeredAt") or {}).get("valueDateTime"), path),
            "responded_at": _datetime((parts.get("respondedAt") or {}).get("valueDateTime"), path),
        })
    record["offers"] = offers
    return Mapped("shift", _finish(record, resource), paths)


# --- encounters and their parts --------------------------------------------------------------------

def _note(document: dict, index: int) -> dict:
    path = f"contained[{index}]"
    doc_status = document.get("docStatus")
    if doc_status is not None and doc_status not in codes.DOC_TO_NOTE_STATUS:
        raise ResourceRefused(f"{path}.docStatus", codes.one_of(doc_status, tuple(codes.DOC_TO_NOTE_STATUS)))
    text = ""
    for content in document.get("content") or []:
        data = (content.get("attachment") or {}).get("data")
        if data:
            try:
                text = base64.b64decode(data, validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                raise ResourceRefused(f"{path}.content[0].attachment.data", "is not base64 of UTF-8 text") from None
            break
    authors = document.get("author") or [{}]
    note = {
        "author": _text(authors[0].get("display")),
        "text": text,
        "status": codes.DOC_TO_NOTE_STATUS.get(doc_status, "draft"),
        "signed_at": _datetime(c.extension_value(document, c.NOTE_SIGNED_AT, "valueDateTime"), f"{path}.extension"),
        "signed_by": _text((document.get("authenticator") or {}).get("display")),
        "locked": c.extension_value(document, c.NOTE_LOCKED, "valueBoolean") or False,
        "amendments": [c.decode_item(e, items.amendment_decode) for e in c.extensions(document, c.NOTE_AMENDMENT)],
    }
    return _finish(note, document)


def encounter(resource: dict, refs: References) -> Mapped:
    paths: dict[str, str] = {"status": "status", "period_start": "period.start", "period_end": "period.end", "patient": "subject"}
    record: dict[str, Any] = {"status": _check(resource.get("status"), codes.ENCOUNTER_STATUSES, "status")}
    record["visit_type"] = "telehealth" if (resource.get("class") or {}).get("code") == "VR" else "in-person"
    record["patient"] = refs.read(resource.get("subject"), "subject", PATIENT)
    record["practitioner"] = None
    for index, participant in enumerate(resource.get("participant") or []):
        path = f"participant[{index}].individual"
        parsed = refs.parse((participant.get("individual") or {}).get("reference"), f"{path}.reference")
        if parsed and parsed[0] == "Practitioner":
            record["practitioner"] = Ref("practitioner", parsed[1], f"{path}.reference")
            paths["practitioner"] = path
            break
    locations = resource.get("location") or [{}]
    record["location"] = refs.read(locations[0].get("location"), "location[0].location", {"Location": "location"})
    appointments = resource.get("appointment") or [None]
    record["appointment"] = refs.read(appointments[0], "appointment[0]", {"Appointment": "appointment"})
    paths.update(location="location[0].location", appointment="appointment[0]")
    period = resource.get("period") or {}
    record["period_start"] = _datetime(period.get("start"), "period.start")
    record["period_end"] = _datetime(period.get("end"), "period.end")
    reasons = resource.get("reasonCode") or [{}]
    record["reason"] = _text(reasons[0].get("text") if isinstance(reasons[0], dict) else "")
    notes = []
    for index, inner in enumerate(resource.get("contained") or []):
        if inner.get("resourceType") == "DocumentReference":
            paths[f"notes[{len(notes)}]"] = f"contained[{index}]"
            notes.append(_note(inner, index))
    record["notes"] = notes
    mapped = Mapped("encounter", _finish(record, resource), paths)
    for index, entry in enumerate(resource.get("diagnosis") or []):
        parsed = refs.parse((entry.get("condition") or {}).get("reference"), f"diagnosis[{index}].condition.reference")
        if parsed and parsed[0] == "Condition":
            rank = entry.get("rank", c.extension_value(entry, c.DIAGNOSIS_RANK, "valueInteger"))
            mapped.diagnoses[f"Condition/{parsed[1]}"] = (index, rank)
    return mapped


def _child_encounter(resource: dict, refs: References, resource_type: str) -> Ref:
    found = refs.read(resource.get("encounter"), "encounter", {"Encounter": "encounter"})
    if found is None:
        raise ResourceRefused("encounter", f"is required: the hub keeps a {resource_type} as part of its encounter")
    return found


def _position(resource: dict) -> int | None:
    position = c.extension_value(resource, c.POSITION, "valueInteger")
    return position if isinstance(position, int) and not isinstance(position, bool) else None


def _pick_coding(resource: dict, preferred: Callable[[dict], bool]) -> tuple[int, dict]:
    concept = resource.get("code")
    if not isinstance(concept, dict):
        raise ResourceRefused("code", "is required")
    codings = concept.get("coding") or []
    for index, coding in enumerate(codings):
        if coding.get("code") and preferred(coding):
            return index, coding
    for index, coding in enumerate(codings):
        if coding.get("code"):
            return index, coding
    raise ResourceRefused("code.coding", "has no coding with a code")


def condition(resource: dict, refs: References) -> MappedChild:
    found = _child_encounter(resource, refs, "Condition")
    index, coding = _pick_coding(resource, lambda coding: coding.get("system") == codes.ICD10CM)
    system, code = coding.get("system"), coding["code"]
    if system in (None, codes.ICD10CM):  # without a system it is kept as ICD-10-CM, so it must be one
        reason = codes.icd10cm_reason(code)
        if reason:
            raise ResourceRefused(f"code.coding[{index}].code", reason)
    item = {"system": system, "code": code, "display": coding.get("display") or _text(resource["code"].get("text"))}
    paths = {name: f"code.coding[{index}].{name}" for name in ("system", "code", "display")}
    item = _finish(item, resource)
    return MappedChild("diagnoses", found, item, _position(resource), (item.get("system") or codes.ICD10CM, item["code"]), paths)


def procedure(resource: dict, refs: References) -> MappedChild:
    found = _child_encounter(resource, refs, "Procedure")
    index, coding = _pick_coding(resource, lambda coding: coding.get("system") == codes.CPT or coding.get("system") in codes.HCPCS_SYSTEMS)
    system, code = coding.get("system"), coding["code"]
    reason = codes.procedure_code_reason(system, code)
    if reason:
        raise ResourceRefused(f"code.coding[{index}].code", reason)
    item = {
        "system": system,
        "code": code,
        "modifiers": _strings(resource, c.PROCEDURE_MODIFIER),
        "units": _decimal(c.extension_value(resource, c.UNITS, "valueDecimal"), "extension"),
        "display": coding.get("display") or _text(resource["code"].get("text")),
    }
    paths = {name: f"code.coding[{index}].{name}" for name in ("system", "code", "display")}
    paths.update(modifiers="extension", units="extension")
    item = _finish(item, resource)
    return MappedChild("procedures", found, item, _position(resource), (item["system"], item["code"]), paths)


def observation(resource: dict, refs: References) -> MappedChild:
    found = _child_encounter(resource, refs, "Observation")
    concept = resource.get("code") or {}
    codings = concept.get("coding") or []
    index = next((i for i, coding in enumerate(codings) if coding.get("system") == codes.LOINC), None)
    if index is None:
        raise ResourceRefused("code.coding", f"has no LOINC coding (system {codes.LOINC})")
    coding = codings[index]
    reason = codes.loinc_reason(_text(coding.get("code")))
    if reason:
        raise ResourceRefused(f"code.coding[{index}].code", reason)
    quantity = resource.get("valueQuantity")
    if not isinstance(quantity, dict) or quantity.get("value") is None:
        raise ResourceRefused("valueQuantity", "is required: the hub keeps vital signs as a number with a unit")
    effective = resource.get("effectiveDateTime") or resource.get("effectiveInstant") or (resource.get("effectivePeriod") or {}).get("start")
    item = {
        "loinc": coding["code"],
        "display": coding.get("display") or _text(concept.get("text")),
        "value": _decimal(quantity["value"], "valueQuantity.value"),
        "unit": (quantity.get("code") if quantity.get("system") == codes.UCUM else None) or _text(quantity.get("unit")) or _text(quantity.get("code")),
        "effective_at": _datetime(effective, "effectiveDateTime"),
    }
    paths = {"loinc": f"code.coding[{index}].code", "display": f"code.coding[{index}].display", "value": "valueQuantity.value", "unit": "valueQuantity.code", "effective_at": "effectiveDateTime"}
    item = _finish(item, resource)
    return MappedChild("vitals", found, item, _position(resource), (item["loinc"], item["effective_at"]), paths)


# --- plans, referrals, assessments -----------------------------------------------------------------

def care_plan(resource: dict, refs: References) -> Mapped:
    paths: dict[str, str] = {"status": "status", "patient": "subject", "title": "title", "goals": "goal", "activities": "activity", "outcomes": "note"}
    record: dict[str, Any] = {"status": _check(resource.get("status"), codes.CARE_PLAN_STATUSES, "status")}
    record["title"] = _text(resource.get("title"))
    record["patient"] = refs.read(resource.get("subject"), "subject", PATIENT)
    _period_dates(resource, "period", record, paths, ("period_start", "period_end"))
    contained = {inner.get("id"): inner for inner in resource.get("contained") or [] if inner.get("resourceType") == "Goal"}
    goals = []
    for goal_ref in resource.get("goal") or []:
        reference = goal_ref.get("reference") or ""
        if reference.startswith("#") and reference[1:] in contained:  # a Goal kept elsewhere has nothing for us to hold
            goals.append(c.decode_item(contained[reference[1:]], items.goal_decode))
    record["goals"] = goals
    record["activities"] = [c.decode_item(activity, items.activity_decode) for activity in resource.get("activity") or []]
    record["outcomes"] = [c.decode_item(note, items.outcome_decode) for note in resource.get("note") or []]
    return Mapped("care_plan", _finish(record, resource), paths)


def service_request(resource: dict, refs: References) -> Mapped:
    paths: dict[str, str] = {"status": "status", "priority": "priority", "patient": "subject", "source": "requester", "reason": "reasonCode[0]", "received_at": "authoredOn"}
    status = _check(resource.get("status"), codes.SERVICE_REQUEST_STATUSES, "status")
    exact = c.extension_value(resource, c.REFERRAL_STATUS, "valueCode")
    if exact is not None:
        status = _check(exact, tuple(choices.ReferralStatus.values), "extension")
    elif status not in codes.SERVICE_REQUEST_KEPT:
        raise ResourceRefused("status", f"{status!r} is a ServiceRequest status the hub does not keep (it keeps {', '.join(codes.SERVICE_REQUEST_KEPT)})")
    record: dict[str, Any] = {"status": status}
    record["priority"] = _check(resource.get("priority", "routine"), codes.SERVICE_REQUEST_PRIORITIES, "priority")
    record["patient"] = refs.read(resource.get("subject"), "subject", PATIENT)
    requester = resource.get("requester") or {}
    record["source"] = requester.get("display") or requester.get("reference")
    reasons = resource.get("reasonCode") or []
    record["reason"] = _codeable_text(reasons[0]) if reasons else ""
    codings = (resource.get("code") or {}).get("coding") or [{}]
    record["service_code"] = _text(codings[0].get("code"))
    record["received_at"] = _datetime(resource.get("authoredOn"), "authoredOn")
    return Mapped("referral", _finish(record, resource), paths)


def _answers(elements: list[dict]) -> list[Any]:
    """Answered items in document order, groups flattened (a sender's questionnaire may nest)."""
    found: list[Any] = []
    for element in elements:
        nested = element.get("item") or []
        if element.get("answer") or not nested or c.extensions(element, c.CANONICAL_ITEM):
            found.append(c.decode_item(element, items.answer_decode))
        for answer in element.get("answer") or []:
            found += _answers(answer.get("item") or [])
        found += _answers(nested)
    return found


def questionnaire_response(resource: dict, refs: References) -> Mapped:
    paths: dict[str, str] = {"status": "status", "patient": "subject", "instrument": "questionnaire", "completed_at": "authored", "score": "extension", "answers": "item"}
    record: dict[str, Any] = {"status": _check(resource.get("status"), codes.QUESTIONNAIRE_RESPONSE_STATUSES, "status")}
    record["instrument"] = c.extension_value(resource.get("_questionnaire"), c.DISPLAY_EXTENSION, "valueString") or resource.get("questionnaire")
    record["patient"] = refs.read(resource.get("subject"), "subject", PATIENT)
    record["answers"] = _answers(resource.get("item") or [])
    record["score"] = _decimal(c.extension_value(resource, c.ASSESSMENT_SCORE, "valueDecimal"), "extension")
    record["completed_at"] = _datetime(resource.get("authored"), "authored")
    return Mapped("assessment", _finish(record, resource), paths)


NORMALIZERS: dict[str, Callable[[dict, References], Mapped | MappedChild]] = {
    "Patient": patient,
    "Practitioner": practitioner,
    "Location": location,
    "Coverage": coverage,
    "ClaimResponse": claim_response,
    "Appointment": appointment,
    "Encounter": encounter,
    "Condition": condition,
    "Procedure": procedure,
    "Observation": observation,
    "CarePlan": care_plan,
    "ServiceRequest": service_request,
    "QuestionnaireResponse": questionnaire_response,
}
