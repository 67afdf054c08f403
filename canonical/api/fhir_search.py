"""FHIR search over canonical records: parse the parameters, then fetch one keyset page.

Supported on every type: `_id` (comma list), `identifier` (token `value`, `system|value` or
`system|`), `_lastUpdated` (prefixes eq, gt, ge, lt, le; date or dateTime; repeat for a range),
`patient` where the type has one, plus `_count` (default 50, capped), `_cursor` (the next link's
continuation token) and `_format` (json only). A repeated filter narrows (AND); a comma list
inside one value widens (OR), as FHIR defines. Anything else is a 400 naming the parameter.
"""

from __future__ import annotations

import re
from calendar import monthrange
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q

from canonical.api.fhir_outcome import invalid_parameter
from canonical.api.fhir_paging import CURSOR_PARAM, damaged, filters_fingerprint, make_token, read_token
from canonical.api.fhir_selectors import live_queryset, parse_id
from canonical.api.fhir_types import IDENTIFIER_PATIENT, IDENTIFIER_PRACTITIONER, FhirType
from canonical.fhir.codes import NPI
from canonical.fhir.common import ORIGIN_SYSTEM_PREFIX
from canonical.models import PatientIdentifier
from tenants.models import Tenant

DEFAULT_COUNT = 50  # entries per page when the client does not say
COUNT_PARAM = "_count"
FORMAT_PARAM = "_format"
RESULT_PARAMS = (COUNT_PARAM, CURSOR_PARAM, FORMAT_PARAM)
JSON_FORMATS = frozenset({"json", "application/json", "application/fhir+json"})

_NOTHING = Q(pk__in=[])


def max_count() -> int:
    return settings.API_MAX_PAGE_SIZE


@dataclass
class SearchRequest:
    """A parsed search. `filters` are the raw (name, value) pairs, kept for links and the token."""

    fhir_type: FhirType
    filters: list[tuple[str, str]] = field(default_factory=list)
    conditions: list[Q] = field(default_factory=list)
    count: int = DEFAULT_COUNT
    after: dict[str, Any] | None = None  # bookmark of the previous page's last row

    @property
    def fingerprint(self) -> str:
        return filters_fingerprint(self.fhir_type.name, self.filters)

    @property
    def parameter_names(self) -> list[str]:
        return sorted({name for name, _ in self.filters})


@dataclass
class SearchPage:
    rows: list[models.Model]
    next_token: str | None  # continuation token of the next page; None on the last
    total: int | None = None  # only computed when asked for with `_count=0`


# --- value parsing -----------------------------------------------------------------------------

def _split(text: str, separator: str, *, unescape: bool) -> list[str]:
    r"""Split on `separator` except where escaped with a backslash (FHIR's `\,` `\|` `\\`)."""
    parts, buffer, index = [], [], 0
    while index < len(text):
        char = text[index]
        if char == "\\" and index + 1 < len(text):
            buffer.append(text[index + 1] if unescape else text[index : index + 2])
            index += 2
            continue
        if char == separator:
            parts.append("".join(buffer))
            buffer = []
        else:
            buffer.append(char)
        index += 1
    parts.append("".join(buffer))
    return parts


_DATE = re.compile(
    r"^(?P<year>[0-9]{4})(?:-(?P<month>[0-9]{2})(?:-(?P<day>[0-9]{2})"
    r"(?:T(?P<hour>[0-9]{2}):(?P<minute>[0-9]{2})(?::(?P<second>[0-9]{2})(?:\.(?P<fraction>[0-9]{1,9}))?)?"
    r"(?P<tz>Z|[+-][0-9]{2}:[0-9]{2})?)?)?)?$"
)
DATE_PREFIXES = ("eq", "gt", "ge", "lt", "le")
_UNSUPPORTED_PREFIXES = ("ne", "sa", "eb", "ap")


def parse_date_range(text: str) -> tuple[datetime, datetime]:
    """The instants [start, end) a FHIR date or dateTime search value covers, by its precision.

    `2024`, `2024-03`, `2024-03-05` cover the whole year, month or day (UTC); `…T10:15Z` the
    minute, `…T10:15:30Z` the second. A time without a zone is read as UTC.
    Raises ValueError (or OverflowError at the end of the calendar).
    """
    match = _DATE.match(text)
    if not match:
        raise ValueError("use YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm[:ss[.sss]][Z|±hh:mm]")
    parts = match.groupdict()
    zone = UTC
    if parts["tz"] and parts["tz"] != "Z":
        sign = 1 if parts["tz"][0] == "+" else -1
        hours, minutes = int(parts["tz"][1:3]), int(parts["tz"][4:6])
        zone = timezone(sign * timedelta(hours=hours, minutes=minutes))
    year = int(parts["year"])
    if parts["month"] is None:
        return datetime(year, 1, 1, tzinfo=zone), datetime(year + 1, 1, 1, tzinfo=zone)
    month = int(parts["month"])
    if parts["day"] is None:
        start = datetime(year, month, 1, tzinfo=zone)
        return start, start + timedelta(days=monthrange(year, month)[1])
    day = datetime(year, month, int(parts["day"]), tzinfo=zone)
    if parts["hour"] is None:
        return day, day + timedelta(days=1)
    start = day.replace(hour=int(parts["hour"]), minute=int(parts["minute"]))
    if parts["second"] is None:
        return start, start + timedelta(minutes=1)
    start = start.replace(second=int(parts["second"]))
    if parts["fraction"] is None:
        return start, start + timedelta(seconds=1)
    digits = parts["fraction"][:6]
    start = start.replace(microsecond=int(digits.ljust(6, "0")))
    return start, start + timedelta(microseconds=10 ** (6 - len(digits)))


def _last_updated_condition(fhir_type: FhirType, value: str) -> Q:
    name = "_lastUpdated"
    value = value.replace(" ", "+")  # an unencoded `+` of a zone offset arrives as a space
    prefix = value[:2] if value[:2].isalpha() else "eq"
    if prefix in _UNSUPPORTED_PREFIXES:
        raise invalid_parameter(name, f"{name}: {value!r} uses the prefix '{prefix}', which is not supported here; use one of {', '.join(DATE_PREFIXES)}.")
    if prefix not in DATE_PREFIXES:
        raise invalid_parameter(name, f"{name}: {value!r} has an unknown prefix; use one of {', '.join(DATE_PREFIXES)}.")
    text = value[2:] if value[:2].isalpha() else value
    try:
        start, end = parse_date_range(text)
    except (ValueError, OverflowError) as exc:
        raise invalid_parameter(name, f"{name}: {value!r} is not a valid date or dateTime: {exc}.") from None
    column = fhir_type.on_record("updated_at")
    return {
        "eq": Q(**{f"{column}__gte": start, f"{column}__lt": end}),
        "gt": Q(**{f"{column}__gte": end}),
        "ge": Q(**{f"{column}__gte": start}),
        "lt": Q(**{f"{column}__lt": start}),
        "le": Q(**{f"{column}__lt": end}),
    }[prefix]


def _id_condition(fhir_type: FhirType, value: str) -> Q:
    ids = []
    for part in _split(value, ",", unescape=True):
        public_id = parse_id(part.strip())
        if public_id is None:
            raise invalid_parameter("_id", f"_id: {part!r} is not a valid id; ids on this server are UUIDs.")
        ids.append(public_id)
    return Q(public_id__in=ids)


def _patient_condition(fhir_type: FhirType, value: str) -> Q:
    ids = []
    for part in _split(value, ",", unescape=True):
        reference = part.strip()
        if "/" in reference:  # `Patient/<id>`, or the absolute URL of one
            head, _, reference = reference.rpartition("/")
            if head != "Patient" and not head.endswith("/Patient"):
                reference = ""
        public_id = parse_id(reference)
        if public_id is None:
            raise invalid_parameter("patient", f"patient: {part!r} is not a Patient reference; use '<id>' or 'Patient/<id>'.")
        ids.append(public_id)
    return Q(**{f"{fhir_type.patient_path}__in": ids})


def _origin_value(fhir_type: FhirType, value: str) -> Q:
    """The value of the origin identifier: the external id, or for a child row
    `<encounter external id>/<list>/<position>` (see `canonical.fhir.export`)."""
    if not fhir_type.parent:
        return Q(external_id=value)
    external_id, separator, position = value.rpartition(f"/{fhir_type.child_list}/")
    if not separator or not (position.isascii() and position.isdigit()) or len(position) > 5:
        return _NOTHING
    return Q(**{fhir_type.on_record("external_id"): external_id, "position": int(position)})


def _origin_condition(fhir_type: FhirType, system: str | None, value: str) -> Q:
    """The identifier every resource carries: `urn:switchboard:connection:<connection id>|<id at the source>`."""
    condition = Q()
    if system is not None:
        connection_id = parse_id(system.removeprefix(ORIGIN_SYSTEM_PREFIX)) if system.startswith(ORIGIN_SYSTEM_PREFIX) else None
        if connection_id is None:
            return _NOTHING
        condition = Q(**{fhir_type.on_record("source_connection__public_id"): connection_id})
    return condition & _origin_value(fhir_type, value) if value else condition


def _identifier_condition(fhir_type: FhirType, tenant: Tenant, system: str | None, value: str) -> Q:
    condition = _origin_condition(fhir_type, system, value)
    if fhir_type.identifier == IDENTIFIER_PATIENT:
        rows = PatientIdentifier.objects.filter(tenant=tenant)
        if system is not None:
            rows = rows.filter(system=system)
        if value:
            rows = rows.filter(value=value)
        condition |= Q(pk__in=rows.values("patient_id"))
    elif fhir_type.identifier == IDENTIFIER_PRACTITIONER and system in (None, NPI):
        condition |= Q(npi=value) if value else Q(npi__gt="")
    return condition


def _identifier_any(fhir_type: FhirType, tenant: Tenant, value: str) -> Q:
    combined = _NOTHING
    for token in _split(value, ",", unescape=False):
        pieces = _split(token, "|", unescape=True)
        if len(pieces) > 2:
            raise invalid_parameter("identifier", f"identifier: {token!r} has more than one '|'; use 'system|value' or 'value'.")
        system, ident = (pieces[0], pieces[1]) if len(pieces) == 2 else (None, pieces[0])
        if not ident and not system:
            raise invalid_parameter("identifier", f"identifier: {token!r} names neither a system nor a value.")
        combined |= _identifier_condition(fhir_type, tenant, system, ident)
    return combined


# --- the search ----------------------------------------------------------------------------------

def supported_parameters(fhir_type: FhirType) -> list[str]:
    return [param.name for param in fhir_type.search_params()] + list(RESULT_PARAMS)


def _single(name: str, values: list[str]) -> str:
    if len(values) > 1:
        raise invalid_parameter(name, f"{name}: given {len(values)} times; give it once.")
    return values[0]


def parse_search(fhir_type: FhirType, items: Iterable[tuple[str, str]], *, tenant: Tenant) -> SearchRequest:
    """Read the (name, value) pairs of a search. Raises FhirError (400) naming the parameter."""
    known = {param.name for param in fhir_type.search_params()}
    request = SearchRequest(fhir_type=fhir_type)
    result_values: dict[str, list[str]] = {}
    for name, value in items:
        if name in RESULT_PARAMS:
            result_values.setdefault(name, []).append(value)
            continue
        if name not in known:
            raise invalid_parameter(
                name,
                f"Unknown search parameter '{name}' for {fhir_type.name}; supported: {', '.join(supported_parameters(fhir_type))}.",
            )
        if value == "":
            continue  # FHIR: a parameter without a value is ignored
        request.filters.append((name, value))
        if name == "_id":
            request.conditions.append(_id_condition(fhir_type, value))
        elif name == "_lastUpdated":
            request.conditions.append(_last_updated_condition(fhir_type, value))
        elif name == "patient":
            request.conditions.append(_patient_condition(fhir_type, value))
        elif name == "identifier":
            request.conditions.append(_identifier_any(fhir_type, tenant, value))

    if FORMAT_PARAM in result_values:
        wanted = _single(FORMAT_PARAM, result_values[FORMAT_PARAM])
        if wanted not in JSON_FORMATS:
            raise invalid_parameter(FORMAT_PARAM, f"{FORMAT_PARAM}: {wanted!r} is not supported; this server speaks JSON only.")
    if COUNT_PARAM in result_values:
        raw = _single(COUNT_PARAM, result_values[COUNT_PARAM])
        if not (raw.isascii() and raw.isdigit()):
            raise invalid_parameter(COUNT_PARAM, f"{COUNT_PARAM}: {raw!r} is not a whole number (0 to {max_count()}).")
        request.count = min(int(raw), max_count())
    if CURSOR_PARAM in result_values:
        request.after = read_token(_single(CURSOR_PARAM, result_values[CURSOR_PARAM]), request.fingerprint)
    return request


def _keyset(fhir_type: FhirType) -> tuple[str, ...]:
    """The order of a search: stable, unique, and unchanged by updates (see `fhir_paging`)."""
    return (f"{fhir_type.parent}_id", "position") if fhir_type.parent else ("id",)


def bookmark(fhir_type: FhirType, row: models.Model) -> dict[str, Any]:
    """Where a page ended, by public id: the record, or a child row's encounter and position."""
    if fhir_type.parent:
        return {"record": str(getattr(row, fhir_type.parent).public_id), "position": row.position}
    return {"record": str(row.public_id)}


def _after(fhir_type: FhirType, tenant: Tenant, mark: dict[str, Any]) -> Q:
    record_model = fhir_type.model._meta.get_field(fhir_type.parent).related_model if fhir_type.parent else fhir_type.model
    public_id = parse_id(mark.get("record"))
    pk = record_model.objects.filter(tenant=tenant, public_id=public_id).values_list("pk", flat=True).first() if public_id else None
    if pk is None:
        raise damaged()
    if not fhir_type.parent:
        return Q(pk__gt=pk)
    position = mark.get("position")
    if not isinstance(position, int):
        raise damaged()
    parent_id = f"{fhir_type.parent}_id"
    return Q(**{f"{parent_id}__gt": pk}) | Q(**{parent_id: pk, "position__gt": position})


def run_search(request: SearchRequest, *, tenant: Tenant) -> SearchPage:
    """One page in keyset order, starting after the continuation token. `_count=0` counts only."""
    fhir_type = request.fhir_type
    queryset = live_queryset(fhir_type, tenant)
    for condition in request.conditions:
        queryset = queryset.filter(condition)
    if request.count == 0:
        return SearchPage(rows=[], next_token=None, total=queryset.count())
    if request.after is not None:
        queryset = queryset.filter(_after(fhir_type, tenant, request.after))
    rows = list(queryset.order_by(*_keyset(fhir_type))[: request.count + 1])
    next_token = None
    if len(rows) > request.count:
        rows = rows[: request.count]
        next_token = make_token(bookmark(fhir_type, rows[-1]), request.fingerprint)
    return SearchPage(rows=rows, next_token=next_token)
