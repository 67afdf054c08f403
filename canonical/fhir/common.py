"""What FHIR export and ingest share: our extension and identifier URLs, and the small helpers that
make the mapping lossless in both directions.

Lossless by construction: a canonical value goes to its natural FHIR element when FHIR can say it
exactly. When it cannot (an empty string, a second address line without a first, a rank of 0, a
free-form JSON item FHIR has no shape for), the exporter adds the exact canonical value as JSON in an
extension: `CANONICAL_FIELDS` on the resource for fields, `CANONICAL_ITEM` on an element for one
item of a JSON list. The ingest reads the natural elements first and lets these extensions win.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from fhir_core.types import Date as FhirDate
from fhir_core.types import DateTime as FhirDateTime

EXTENSION_BASE = "https://switchboard.local/fhir/StructureDefinition/"
KIND_TAG_SYSTEM = "https://switchboard.local/fhir/kind"
ORIGIN_SYSTEM_PREFIX = "urn:switchboard:connection:"
QUESTIONNAIRE_BASE = "https://switchboard.local/fhir/Questionnaire/"
DISPLAY_EXTENSION = "http://hl7.org/fhir/StructureDefinition/display"
GEOLOCATION_EXTENSION = "http://hl7.org/fhir/StructureDefinition/geolocation"


def extension_url(name: str) -> str:
    return EXTENSION_BASE + name


CANONICAL_FIELDS = extension_url("canonical-fields")
CANONICAL_ITEM = extension_url("canonical-item")
POSITION = extension_url("position")
VISIT_TYPE = extension_url("visit-type")
UNITS = extension_url("units")
AUTHORIZATION = extension_url("authorization")
SHIFT_STATUS = extension_url("shift-status")
SHIFT_OFFER = extension_url("shift-offer")
PROCEDURE_MODIFIER = extension_url("procedure-modifier")
NOTE_SIGNED_AT = extension_url("note-signed-at")
NOTE_LOCKED = extension_url("note-locked")
NOTE_AMENDMENT = extension_url("note-amendment")
PRACTITIONER_ROLE = extension_url("practitioner-role")
PRACTITIONER_SPECIALTY = extension_url("practitioner-specialty")
CAREGIVER_SKILL = extension_url("caregiver-skill")
CAREGIVER_HIRE_DATE = extension_url("caregiver-hire-date")
AUTHORIZATION_STATUS = extension_url("authorization-status")
AUTHORIZED_UNITS = extension_url("authorized-units")
REFERRAL_STATUS = extension_url("referral-status")
ASSESSMENT_SCORE = extension_url("assessment-score")
DIAGNOSIS_RANK = extension_url("diagnosis-rank")

_FHIR_STRING = re.compile(r"[ \r\n\t\S]+")
_FHIR_CODE = re.compile(r"[^\s]+(\s[^\s]+)*")


def origin_system(connection_public_id: Any) -> str:
    return f"{ORIGIN_SYSTEM_PREFIX}{connection_public_id}"


# --- values that FHIR can hold ----------------------------------------------------------------

def is_string(value: Any) -> bool:
    """A FHIR string: text with at least one character (FHIR has no empty strings)."""
    return isinstance(value, str) and bool(_FHIR_STRING.search(value))


def is_code(value: Any) -> bool:
    return isinstance(value, str) and bool(_FHIR_CODE.fullmatch(value))


def is_date(value: Any) -> bool:
    return isinstance(value, str) and bool(FhirDate.pattern.fullmatch(value))


def is_datetime(value: Any) -> bool:
    return isinstance(value, str) and bool(FhirDateTime.pattern.fullmatch(value))


def number(value: Decimal | int | float) -> int | float:
    """A decimal as a JSON number: whole values as int, others as the float with the same digits."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def iso(value: date | datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def canonical_json(value: Any) -> str:
    """JSON text that tells 1, 1.0 and true apart (Python's == does not)."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


# --- extensions -------------------------------------------------------------------------------

def extensions(element: dict | None, url: str) -> list[dict]:
    if not isinstance(element, dict):
        return []
    return [e for e in element.get("extension") or [] if isinstance(e, dict) and e.get("url") == url]


def extension_value(element: dict | None, url: str, key: str) -> Any:
    for found in extensions(element, url):
        if key in found:
            return found[key]
    return None


def canonical_fields_extension(overlay: dict[str, Any]) -> list[dict]:
    if not overlay:
        return []
    return [{"url": CANONICAL_FIELDS, "valueString": canonical_json(overlay)}]


def read_canonical_fields(resource: dict) -> dict[str, Any]:
    text = extension_value(resource, CANONICAL_FIELDS, "valueString")
    if not isinstance(text, str):
        return {}
    value = json.loads(text)
    return value if isinstance(value, dict) else {}


def encode_items(items: Iterable[Any], encode: Callable[[Any], dict], decode: Callable[[dict], Any]) -> list[dict]:
    """Each item of a JSON list as its natural FHIR element; when decoding that element would not
    give the item back exactly, the element also carries the item as JSON (`CANONICAL_ITEM`)."""
    elements = []
    for item in items:
        element = encode(item)
        if canonical_json(decode(element)) != canonical_json(item):
            element.setdefault("extension", []).append({"url": CANONICAL_ITEM, "valueString": canonical_json(item)})
        elements.append(element)
    return elements


def decode_item(element: dict, decode: Callable[[dict], Any]) -> Any:
    text = extension_value(element, CANONICAL_ITEM, "valueString")
    if isinstance(text, str):
        return json.loads(text)
    return decode(element)


def all_strings(values: Any) -> bool:
    """A list FHIR can hold as repeated strings (and that reads back the same)."""
    return isinstance(values, list) and all(is_string(v) for v in values)


def typed_value(value: Any) -> dict | None:
    """A JSON scalar as a FHIR value[x] (`{"valueString": …}`), or None when FHIR cannot hold it."""
    if isinstance(value, bool):
        return {"valueBoolean": value}
    if isinstance(value, int):
        return {"valueInteger": value} if -(2**31) <= value < 2**31 else None
    if isinstance(value, float):
        return {"valueDecimal": value}
    if is_string(value):
        return {"valueString": value}
    return None


def read_typed_value(element: dict) -> Any:
    """The inverse of `typed_value`, plus the other value[x] types a sender may use."""
    for key in ("valueBoolean", "valueInteger", "valueDecimal", "valueString", "valueCode", "valueDate", "valueDateTime", "valueTime", "valueUri"):
        if key in element:
            return element[key]
    if isinstance(element.get("valueCoding"), dict):
        coding = element["valueCoding"]
        return coding.get("display") or coding.get("code")
    if isinstance(element.get("valueQuantity"), dict):
        return element["valueQuantity"].get("value")
    return None
