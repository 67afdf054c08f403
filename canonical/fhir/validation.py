"""Validating one resource with its R4B model, with errors as FHIR element paths and plain reasons.

pydantic reports `('name', 0, 'given', 0)` and "Value error, Date value string does not match spec
regex."; a sender needs "name[0].given[0]" and "'1948-13-45' is not a valid date (YYYY-MM-DD)".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pydantic
from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.resource import Resource


@dataclass(frozen=True)
class Problem:
    path: str
    reason: str


class ResourceRefused(Exception):
    """A resource the hub will not keep, with the element that is wrong."""

    def __init__(self, path: str, reason: str):
        self.problem = Problem(path, reason)
        super().__init__(f"{path}: {reason}")


def model_class(resource_type: str) -> type[Resource] | None:
    """The R4B model of a resource type, or None when FHIR R4 has no such resource."""
    try:
        klass = get_fhir_model_class(resource_type)
    except ValueError:
        return None
    return klass if issubclass(klass, Resource) else None


def element_path(loc: tuple[Any, ...]) -> str:
    path = ""
    for part in loc:
        if part == "root":  # pydantic's name for a root model's value, not a FHIR element
            continue
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            name = {"resource_type": "resourceType", "class_fhir": "class"}.get(str(part), str(part))
            path += f".{name}" if path else name
    return path


_PRIMITIVE_FORMATS = {
    "Date": "a valid date (YYYY, YYYY-MM or YYYY-MM-DD)",
    "DateTime": "a valid dateTime (YYYY-MM-DD, or with a time and time zone: 2026-11-20T09:00:00Z)",
    "Instant": "a valid instant (a date, time and time zone: 2026-11-20T09:00:00Z)",
    "Time": "a valid time (hh:mm:ss)",
    "Decimal": "a decimal number",
}
_CHOICE = re.compile(r"Any of one field value is expected from this list \[([^\]]*)\]")
_PRIMITIVE = re.compile(r"(Date|DateTime|Instant|Time|Decimal) value string does not match spec regex")
_TYPE_REASONS = {
    "missing": "is required",
    "model_field_validation.missing": "is required",
    "extra_forbidden": "is not an element of this resource",
    "string_type": "must be text",
    "list_type": "must be a list",
    "dict_type": "must be an object",
    "model_type": "must be an object",
    "json_invalid": "must be an object",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "base64_decode": "is not valid base64",
}


def _reason(error: dict[str, Any], path: str) -> tuple[str, str]:
    kind, message, value = error["type"], error["msg"], error.get("input")
    choice = _CHOICE.search(message)
    if choice:
        names = [name.strip(" '") for name in choice.group(1).split(",")]
        prefix = re.match(r"[a-z]+", names[0]).group(0) if names else ""
        return f"{path}.{prefix}[x]" if path else f"{prefix}[x]", "has more than one type given; exactly one is allowed"
    primitive = _PRIMITIVE.search(message)
    if primitive:
        return path, f"{value!r} is not {_PRIMITIVE_FORMATS[primitive.group(1)]}"
    if "must be timezone aware" in message:
        return path, f"{value!r} has a time but no time zone"
    if kind == "string_pattern_mismatch":
        if value == "":
            return path, "must not be empty (FHIR has no empty strings; leave the element out)"
        if path == "id" or path.endswith(".id"):
            return path, f"{value!r} is not a valid id (letters, digits, '-' and '.')"
        return path, f"{value!r} is not a valid code (no leading, trailing or double spaces)"
    if kind == "model_validation_format":
        return path, "must be one object, not a list" if isinstance(value, list) else "must be an object"
    if kind in _TYPE_REASONS:
        return path, _TYPE_REASONS[kind]
    return path, message.removeprefix("Value error, ")


def validate_resource(resource: dict[str, Any], klass: type[Resource]) -> list[Problem]:
    """Every problem the R4B model finds in `resource` (empty when it validates)."""
    contained = resource.get("contained")
    for index, inner in enumerate(contained if isinstance(contained, list) else []):
        inner_type = inner.get("resourceType") if isinstance(inner, dict) else None
        if isinstance(inner_type, str) and model_class(inner_type) is None:
            return [Problem(f"contained[{index}].resourceType", f"{inner_type!r} is not a FHIR R4 resource type")]
    try:
        klass.model_validate(resource)
    except pydantic.ValidationError as exc:
        problems = []
        for error in exc.errors():
            path, reason = _reason(error, element_path(error["loc"]))
            problem = Problem(path, reason)
            if problem not in problems:
                problems.append(problem)
        return problems
    except KeyError as exc:
        # fhir.resources looks nested resource types up without a guard; the check above catches
        # contained ones, this any other place
        return [Problem("resourceType", f"names an unknown resource type ({exc.args[0]})")]
    return []
