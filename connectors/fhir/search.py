"""A FHIR R4 read surface as a connector: type searches following `Bundle.link[next]`, one
resource read by id, and each resource normalized by the hub's FHIR ingest mappings.

Vendor connectors subclass `FhirSearchConnector` with their login, their resources (`fhir_types`:
resource name → FHIR type) and, in `adapt`, what their server says in plain FHIR where the hub's
own export would use an extension. What it does at its edge:
- validation: each resource is checked with its R4B model (`canonical.fhir.validation`) and the
  few elements US Core requires that base FHIR leaves optional; a broken one fails alone with its
  element path (InvalidPayload), is kept and triaged;
- references: the normalizers return `Ref("patient", "PT0000001")` for `Patient/PT0000001`; in a
  vendor feed a FHIR id is the record's external id in this connection, so a Ref becomes its id;
- next links are followed only while they stay under the FHIR base (they carry our bearer token).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from functools import cached_property
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from canonical.codes import CodeMapper
from canonical.fhir.normalize import NORMALIZERS, Ref, References
from canonical.fhir.validation import ResourceRefused, model_class, validate_resource
from canonical.kinds import get_kind
from connectors.base import Connector, ResourceSpec
from connectors.errors import FinalError, InvalidPayload
from connectors.http import RetryPolicy, VendorHttpClient
from connectors.ratelimit import RateLimit
from connectors.sessions import SessionManager

# Elements US Core requires where base FHIR R4 does not: without them the hub would keep a
# nameless patient, a practitioner without an NPI, a branch without a name.
US_CORE_REQUIRED = {
    "Patient": ("identifier", "name", "gender"),
    "Practitioner": ("identifier", "name"),
    "Location": ("name",),
    "Encounter": ("subject",),
}


class _SearchBundle(BaseModel):
    """The shell of a searchset page; its resources are validated one by one, so one broken
    resource fails alone instead of failing the page."""

    model_config = ConfigDict(extra="ignore")

    resourceType: str = Field(pattern="^Bundle$")  # noqa: N815 (FHIR's element name)
    type: str = Field(pattern="^searchset$")
    link: list[dict[str, Any]] = []
    entry: list[dict[str, Any]] = []


class FhirSearchConnector(Connector):
    fhir_types: ClassVar[dict[str, str]] = {}  # resource name -> FHIR resource type
    retry_policy: ClassVar[RetryPolicy] = RetryPolicy()
    sleep: ClassVar[Callable[[float], None]] = staticmethod(time.sleep)  # every wait of this connector (tests replace it)

    # --- plumbing ---------------------------------------------------------------------------------
    @cached_property
    def http(self) -> VendorHttpClient:
        return VendorHttpClient(
            base_url=self.base_url, vendor=self.key, connection_key=self.rate_limit_key, auth=SessionManager(self),
            rate_limit=self.rate_limit, retry=self.retry(), default_headers={"Accept": "application/fhir+json"}, sleep=self.sleep,
        )

    def retry(self) -> RetryPolicy:
        return self.retry_policy

    @property
    def base_url(self) -> str:
        return self.connection.base_url.rstrip("/")

    @property
    def rate_limit_key(self) -> str:
        """Whose budget a call spends: the connection's by default."""
        return str(self.connection.public_id)

    @property
    def rate_limit(self) -> RateLimit | None:
        rate = self.options.rate_limit_per_second
        return RateLimit(rate) if rate else None

    # --- reading ----------------------------------------------------------------------------------
    def search_page(self, resource: ResourceSpec, state: dict[str, Any], params: dict[str, Any] | None = None) -> tuple[list, str | None]:
        """One searchset page: (resources of this type, the next link or None)."""
        if state.get("next"):
            body = self.http.get_json(self._own_link(state["next"]))
        else:
            body = self.http.get_json(f"/{self.fhir_types[resource.name]}",
                                      params={"_count": self.options.page_size or resource.page_size, **(params or {})})
        try:
            bundle = _SearchBundle.model_validate(body)
        except ValidationError as exc:
            where = ".".join(str(part) for part in exc.errors()[0]["loc"])
            raise FinalError(f"{self.key}: {resource.name} search answered no searchset Bundle (at '{where}')") from None
        # Includes and OperationOutcome warnings (search.mode include/outcome) are no records of this type.
        records = [entry.get("resource") for entry in bundle.entry if (entry.get("search") or {}).get("mode", "match") == "match"]
        next_url = next((link.get("url") for link in bundle.link if link.get("relation") == "next"), None)
        return records, next_url

    def _own_link(self, url: str) -> str:
        """A next link, only when it stays under the FHIR base (it is followed with our bearer token)."""
        link, base = urlsplit(url), urlsplit(self.base_url)
        if (link.scheme, link.netloc) != (base.scheme, base.netloc) or not link.path.startswith(base.path.rstrip("/") + "/"):
            raise FinalError(f"{self.key}: a link points outside the FHIR base; it is not followed")
        return url

    def fetch_one(self, resource: ResourceSpec, external_id: str) -> dict[str, Any] | None:
        """`GET <Type>/<id>`; None when the server says it is gone (410) or unknown (404)."""
        try:
            return self.http.get_json(f"/{self.fhir_types[resource.name]}/{quote(external_id, safe='')}")
        except FinalError as exc:
            if exc.status in (404, 410):
                return None
            raise

    def normalize(self, resource: ResourceSpec, raw: dict[str, Any], mapper: CodeMapper) -> dict[str, Any]:
        """A FHIR resource → canonical dict, by the hub's FHIR normalizers. Raises InvalidPayload with the element path."""
        fhir_type = self.fhir_types[resource.name]
        if not isinstance(raw, dict) or raw.get("resourceType") != fhir_type:
            found = raw.get("resourceType") if isinstance(raw, dict) else type(raw).__name__
            raise InvalidPayload(f"resourceType: a {fhir_type} search answered {found!r}", path="resourceType")
        problems = validate_resource(raw, model_class(fhir_type))
        if problems:
            raise InvalidPayload("; ".join(f"{p.path}: {p.reason}" for p in problems[:3]), path=problems[0].path)
        for element in US_CORE_REQUIRED.get(fhir_type, ()):
            if not raw.get(element):
                raise InvalidPayload(f"{element}: is required (US Core {fhir_type})", path=element)
        try:
            mapped = NORMALIZERS[fhir_type](raw, References({}))
        except ResourceRefused as exc:
            raise InvalidPayload(str(exc), path=exc.problem.path) from None
        if mapped.kind != resource.kind:  # a tag the hub's own export sets (caregiver, shift) would make it another kind
            raise InvalidPayload(f"meta.tag: makes this {fhir_type} a {mapped.kind}, not a {resource.kind}", path="meta.tag")
        record = _ids(mapped.record)
        for name in get_kind(resource.kind).required_refs:
            if record.get(name) in (None, ""):
                path = mapped.paths.get(name, name)
                raise InvalidPayload(f"{path}: is required (the hub keeps a {resource.kind} of a patient)", path=path)
        record["external_id"] = raw["id"]
        self.adapt(fhir_type, raw, record, mapper)
        return record

    def adapt(self, fhir_type: str, raw: dict[str, Any], record: dict[str, Any], mapper: CodeMapper) -> None:
        """Where the vendor says in plain FHIR what the hub's own export puts in an extension (default: nothing)."""


def _ids(value: Any) -> Any:
    """The normalizers' Refs as external ids: in a vendor feed, `Patient/x` is the record with external id x."""
    if isinstance(value, Ref):
        return value.id
    if isinstance(value, dict):
        return {key: _ids(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_ids(item) for item in value]
    return value


def _concept_text(concept: Any) -> str:
    if not isinstance(concept, dict):
        return ""
    codings = [c for c in concept.get("coding") or [] if isinstance(c, dict)]
    return concept.get("text") or next((c.get("display") or c.get("code") for c in codings if c.get("display") or c.get("code")), "")


def _last_updated(resource: Any) -> str:
    meta = resource.get("meta") if isinstance(resource, dict) else None
    value = meta.get("lastUpdated") if isinstance(meta, dict) else None
    return value if isinstance(value, str) else ""


def _latest(stamps: list[str]) -> str:
    """The latest of FHIR instants, as WellSky wrote it (it goes back as `_lastUpdated=gt…`); '' when none parses."""
    best, best_at = "", None
    for stamp in stamps:
        try:
            at = datetime.fromisoformat(stamp)
        except ValueError:
            continue  # a broken stamp moves nothing; its resource fails validation on its own
        if at.tzinfo is not None and (best_at is None or at > best_at):
            best, best_at = stamp, at
    return best
