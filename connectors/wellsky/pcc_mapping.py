"""WellSky Personal Care Connect records (FHIR-flavoured JSON) → canonical dicts.

PCC's JSON looks like FHIR but is not strict FHIR (extra elements such as `is_hired`, `tags`,
`clock_in`), so it is parsed here into small typed models rather than fhir.resources: a record
that breaks the contract fails with the path of the bad element, is kept, and goes to triage.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from canonical.choices import EncounterStatus
from canonical.codes import CodeMapper
from connectors.errors import InvalidPayload
from connectors.payloads import parse
from connectors.wellsky import constants as c
from tenants.choices import MappingCategory

# PCC appointment (shift) status → canonical shift status. A booked shift with no caregiver on it
# is still open. "noshow" is PCC's "Missed" visit: nobody worked it, so the shift was called off.
SHIFT_STATUS = {"proposed": "open", "pending": "open", "waitlist": "open", "booked": "assigned", "arrived": "assigned",
                "checked-in": "assigned", "fulfilled": "completed", "noshow": "called-off", "cancelled": "cancelled",
                "entered-in-error": "cancelled"}
ENCOUNTER_STATUS = frozenset(EncounterStatus.values)


class _Raw(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class Meta(_Raw):
    last_updated: str = Field(default="", alias="lastUpdated")


class HumanName(_Raw):
    family: str = ""
    given: list[str] = []


class ContactPoint(_Raw):
    system: str = ""
    value: str = ""


class Address(_Raw):
    line: list[str] = []
    city: str = ""
    state: str = ""
    postal_code: str = Field(default="", alias="postalCode")


class Text(_Raw):
    text: str = ""


class Coding(_Raw):
    system: str = ""
    code: str = ""


class Concept(_Raw):
    coding: list[Coding] = []
    text: str = ""


class Reference(_Raw):
    reference: str


class Identifier(_Raw):
    type: Text = Text()
    value: str


class Communication(_Raw):
    language: Text = Text()


class RawPatient(_Raw):
    id: str
    meta: Meta = Meta()
    name: list[HumanName] = Field(min_length=1)
    gender: str = "unknown"
    birth_date: date | None = Field(default=None, alias="birthDate")
    telecom: list[ContactPoint] = []
    address: list[Address] = []
    identifier: list[Identifier] = []
    communication: list[Communication] = []


class Qualification(_Raw):
    code: Text = Text()


class RawPractitioner(_Raw):
    id: str
    meta: Meta = Meta()
    name: list[HumanName] = Field(min_length=1)
    active: bool = True
    is_hired: bool | None = None
    telecom: list[ContactPoint] = []
    address: list[Address] = []
    qualification: list[Qualification] = []
    discipline: str | None = None
    tags: list[str] = []
    hire_date: date | None = None


class RawLocation(_Raw):
    id: str
    meta: Meta = Meta()
    name: str
    status: str = "active"
    type: list[Text] = []
    telecom: list[ContactPoint] = []
    address: Address = Address()


class Participant(_Raw):
    actor: Reference | None = None


class RawAppointment(_Raw):
    id: str
    meta: Meta = Meta()
    status: str
    service_type: list[Concept] = Field(default=[], alias="serviceType")
    start: AwareDatetime
    end: AwareDatetime
    participant: list[Participant] = Field(min_length=1)


class Period(_Raw):
    start: AwareDatetime | None = None
    end: AwareDatetime | None = None


class Clock(_Raw):
    time: AwareDatetime | None = None


class RawEncounter(_Raw):
    id: str
    meta: Meta = Meta()
    status: str
    subject: Reference
    period: Period = Period()
    clock_in: Clock = Clock()
    clock_out: Clock = Clock()


def referenced_id(reference: Reference | None, resource_type: str, path: str) -> str | None:
    """'Patient/PT0000001' → 'PT0000001'; None when absent; InvalidPayload when it names another type."""
    if reference is None:
        return None
    kind, _, identifier = reference.reference.partition("/")
    if kind != resource_type or not identifier:
        raise InvalidPayload(f"{path}: {reference.reference!r} is not a {resource_type} reference", path=path)
    return identifier


def _one_of(table: dict[str, str] | frozenset[str], value: str, field: str) -> str:
    if value not in table:
        raise InvalidPayload(f"{field}: {value!r} is not one of {', '.join(sorted(table))}", path=field)
    return table[value] if isinstance(table, dict) else value


def _contact(points: list[ContactPoint], system: str) -> str:
    return next((p.value for p in points if p.system == system and p.value), "")


def _address(addresses: list[Address] | Address) -> dict[str, str]:
    address = addresses if isinstance(addresses, Address) else (addresses[0] if addresses else Address())
    lines = [*address.line, "", ""]
    return {"address_line1": lines[0], "address_line2": lines[1], "city": address.city, "state": address.state,
            "postal_code": address.postal_code, "country": "US" if lines[0] else ""}


def _person(names: list[HumanName]) -> dict[str, Any]:
    name = names[0]
    return {"family_name": name.family, "given_names": [n for n in name.given if n]}


# --- raw → canonical ------------------------------------------------------------------------------------------
def location(raw: Any, mapper: CodeMapper) -> dict[str, Any]:
    r = parse(RawLocation, raw)
    return {"external_id": r.id, "name": r.name, "type": r.type[0].text if r.type else "", "phone": _contact(r.telecom, "phone"),
            "active": r.status == "active", **_address(r.address)}


def caregiver(raw: Any, mapper: CodeMapper) -> dict[str, Any]:
    r = parse(RawPractitioner, raw)
    # The credential (RN, LPN, HHA…) is what the hub calls a discipline; PCC's own `discipline`
    # ("Nursing", "Home health aide") is only the fallback when no qualification is given.
    credential = next((q.code.text for q in r.qualification if q.code.text), "")
    return {
        "external_id": r.id, **_person(r.name), "phone": _contact(r.telecom, "phone"), "email": _contact(r.telecom, "email"),
        "discipline": credential or r.discipline or "", "skills": list(r.tags),
        "active": r.is_hired if r.is_hired is not None else r.active, "hire_date": r.hire_date,
        "postal_code": r.address[0].postal_code if r.address else "",
    }


def patient(raw: Any, mapper: CodeMapper) -> dict[str, Any]:
    r = parse(RawPatient, raw)
    systems = {"MRN": c.MRN_SYSTEM, "MEDICAID": c.MEDICAID_SYSTEM}  # as the portal connector names them, for matching
    language_name = r.communication[0].language.text if r.communication else ""
    language = c.LANGUAGES.get(language_name) or mapper.code(MappingCategory.LANGUAGE, c.SOURCE_SYSTEM, language_name)
    return {
        "external_id": r.id, **_person(r.name), "birth_date": r.birth_date,
        "sex": _one_of({"male": "male", "female": "female", "other": "other", "unknown": "unknown"}, r.gender, "gender"),
        "language": language, "phone": _contact(r.telecom, "phone"), "email": _contact(r.telecom, "email"), **_address(r.address),
        "identifiers": [{"system": systems.get(i.type.text, f"urn:wellsky:{i.type.text.lower() or 'id'}"), "value": i.value}
                        for i in r.identifier],
    }


def shift(raw: Any, mapper: CodeMapper) -> dict[str, Any]:
    r = parse(RawAppointment, raw)
    people: dict[str, str] = {}
    for index, participant in enumerate(r.participant):
        if participant.actor is not None:
            kind, _, identifier = participant.actor.reference.partition("/")
            if kind in ("Patient", "Practitioner") and identifier:
                people.setdefault(kind, identifier)
            elif kind in ("Patient", "Practitioner"):
                raise InvalidPayload(f"participant.{index}.actor: the reference has no id", path=f"participant.{index}.actor")
    if "Patient" not in people:
        raise InvalidPayload("participant: no Patient among the participants", path="participant")
    status = _one_of(SHIFT_STATUS, r.status, "status")
    if status == "assigned" and "Practitioner" not in people:
        status = "open"
    code = next((coding.code for concept in r.service_type for coding in concept.coding if coding.code), "")
    return {"external_id": r.id, "client": people["Patient"], "caregiver": people.get("Practitioner"), "start": r.start, "end": r.end,
            "status": status, "service_code": mapper.code(MappingCategory.SERVICE_CODE, c.SOURCE_SYSTEM, code) if code else ""}


def care_log(raw: Any, mapper: CodeMapper) -> dict[str, Any]:
    r = parse(RawEncounter, raw)
    start = r.clock_in.time or r.period.start
    if start is None:
        raise InvalidPayload("clock_in.time: a care log needs a clock-in time", path="clock_in.time")
    # The caregiver is not referenced: the canonical encounter points at a practitioner, and PCC's
    # practitioners are synced as caregivers (shifts carry the caregiver).
    return {"external_id": r.id, "patient": referenced_id(r.subject, "Patient", "subject"), "status": _one_of(ENCOUNTER_STATUS, r.status, "status"),
            "period_start": start, "period_end": r.clock_out.time or r.period.end}


NORMALIZERS = {"locations": location, "practitioners": caregiver, "patients": patient, "shifts": shift, "care_logs": care_log}
