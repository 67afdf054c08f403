"""WellSky Connect: the FHIR R4 read surface (ConnectEHR, US Core), OAuth2 client credentials.

The connection's base_url is the FHIR base (`…/fhir`); the token comes from `<base>/oauth/token`
(or the `token_url` option) and signs every call as a bearer token through the SessionManager.
Each resource is a type search in dependency order: the first run follows `Bundle.link[next]` to
the end, later runs ask only for `_lastUpdated=gt<high water>`, the newest `meta.lastUpdated` seen.

Mapping: the hub's FHIR ingest already maps each resource type to canonical
(`canonical.fhir.normalize.NORMALIZERS`), so this module reuses it per resource instead of keeping
a second mapping. What it adds at its edge:
- validation: each resource is checked with its R4B model (`canonical.fhir.validation`) and the
  few elements US Core requires that base FHIR leaves optional; a broken one fails alone with its
  element path (InvalidPayload), is kept and triaged;
- references: the normalizers return `Ref("patient", "PT0000001")` for `Patient/PT0000001`; in a
  vendor feed a FHIR id is the record's external id in this connection, so a Ref becomes its id
  (the ingest's other rule, public ids of hub exports, cannot occur here);
- what WellSky says where the hub's own export would use an extension: practitioner roles as
  `qualification`, the visit note as `Appointment.comment`; WellSky's local service codes go
  through the tenant's code mappings as in the portal connector.

Left out, on purpose:
- Condition (encounter diagnoses): Encounter only points at `Condition/<id>`; this surface has no
  `encounter=` search, no `_include`/`_revinclude`, so attaching diagnoses needs a read per
  diagnosis (2–3 calls per encounter) or a join of two paged searches by time that drifts when
  records change between the calls. Not simple: encounters from this connector carry no diagnoses.
- Deletions: a FHIR search lists no deleted resources, so a cursor run cannot see them; `fetch_one`
  answers None for a 404/410, so a ping or a pull (`connectors.sync.pull_record`) tombstones one.
- Appointment units and authorizations, encounter procedures, vitals and notes: not in the surface.
"""

from __future__ import annotations

from datetime import datetime
from functools import cached_property
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from canonical.codes import CodeMapper
from canonical.fhir.normalize import NORMALIZERS, Ref, References
from canonical.fhir.validation import ResourceRefused, model_class, validate_resource
from canonical.kinds import get_kind
from connectors.auth_flows import oauth2_client_credentials
from connectors.base import ConnectionOptions, Connector, Page, ResourceSpec
from connectors.choices import LoginMethod, SyncMode
from connectors.errors import AuthenticationFailed, FinalError, InvalidPayload
from connectors.http import RetryPolicy, VendorHttpClient
from connectors.ratelimit import RateLimit
from connectors.registry import register
from connectors.sessions import SessionManager
from connectors.wellsky.constants import SOURCE_SYSTEM
from tenants.choices import MappingCategory

PAGE_SIZE = 100  # resources asked per search page (_count); the server may answer fewer
TOKEN_PATH = "/oauth/token"  # below the FHIR base

# (resource name, FHIR type, canonical kind, capability) in dependency order: a sync runs them one
# after another, so references resolve. Names and capabilities are the portal connector's.
RESOURCES = (
    ("locations", "Location", "location", "patients.read"),
    ("practitioners", "Practitioner", "practitioner", "practitioners.read"),
    ("patients", "Patient", "patient", "patients.read"),
    ("coverage", "Coverage", "coverage", "patients.read"),
    ("appointments", "Appointment", "appointment", "appointments.read"),
    ("encounters", "Encounter", "encounter", "encounters.read"),
    ("care_plans", "CarePlan", "care_plan", "care_plans.read"),
    ("referrals", "ServiceRequest", "referral", "referrals.read"),
)
FHIR_TYPE = {name: fhir_type for name, fhir_type, _, _ in RESOURCES}

# Elements US Core (which ConnectEHR follows) requires where base FHIR R4 does not: without them
# the hub would keep a nameless patient, a practitioner without an NPI, a branch without a name.
US_CORE_REQUIRED = {
    "Patient": ("identifier", "name", "gender"),
    "Practitioner": ("identifier", "name"),
    "Location": ("name",),
    "Encounter": ("subject",),
}


class ConnectOptions(ConnectionOptions):
    token_url: str = Field(default="", max_length=500, description="the OAuth2 token endpoint, when it is not <FHIR base>/oauth/token")


class _SearchBundle(BaseModel):
    """The shell of a searchset page; its resources are validated one by one, so one broken
    resource fails alone instead of failing the page."""

    model_config = ConfigDict(extra="ignore")

    resourceType: str = Field(pattern="^Bundle$")  # noqa: N815 (FHIR's element name)
    type: str = Field(pattern="^searchset$")
    link: list[dict[str, Any]] = []
    entry: list[dict[str, Any]] = []


@register
class WellSkyConnectConnector(Connector):
    key = "wellsky_connect"
    name = "WellSky Connect (FHIR R4)"
    description = "WellSky's FHIR R4 read surface (ConnectEHR, US Core): OAuth2 client credentials, incremental by _lastUpdated."
    credential_fields = ("client_id", "client_secret")
    options_schema = ConnectOptions
    resources = tuple(ResourceSpec(name, kind, SyncMode.CURSOR, capability, page_size=PAGE_SIZE) for name, _, kind, capability in RESOURCES)
    retry_policy: ClassVar[RetryPolicy] = RetryPolicy()

    # --- plumbing ---------------------------------------------------------------------------------
    @cached_property
    def http(self) -> VendorHttpClient:
        rate = self.options.rate_limit_per_second
        return VendorHttpClient(
            base_url=self.base_url, vendor=self.key, connection_key=str(self.connection.public_id), auth=SessionManager(self),
            rate_limit=RateLimit(rate) if rate else None, retry=self.retry_policy,
            default_headers={"Accept": "application/fhir+json"},
        )

    @property
    def base_url(self) -> str:
        return self.connection.base_url.rstrip("/")

    # --- session ----------------------------------------------------------------------------------
    def login(self, session) -> None:
        """OAuth2 client credentials; raises AuthenticationFailed when WellSky refuses the client."""
        credential = self.connection.credential
        answer = oauth2_client_credentials(self.http, self.options.token_url or TOKEN_PATH, credential.client_id, credential.client_secret)
        if str(answer.get("token_type", "bearer")).lower() != "bearer":
            raise AuthenticationFailed(f"the token endpoint gave a {answer.get('token_type')!r} token; only bearer tokens are supported")
        session.method = LoginMethod.OAUTH2
        session.access_token = answer["access_token"]
        try:
            session.expires_in(float(answer.get("expires_in") or 0))
        except (TypeError, ValueError):
            session.expires_in(None)  # no usable lifetime: used until WellSky answers 401, then renewed

    # --- reading ----------------------------------------------------------------------------------
    def fetch_page(self, resource: ResourceSpec, state: dict[str, Any]) -> Page:
        """One searchset page. State while paging: {next, since, high_water}; between runs: {since}."""
        since = state.get("since", "")
        if state.get("next"):
            body = self.http.get_json(self._own_link(state["next"]))
        else:
            params: dict[str, Any] = {"_count": self.options.page_size or resource.page_size}
            if since:
                params["_lastUpdated"] = f"gt{since}"
            body = self.http.get_json(f"/{FHIR_TYPE[resource.name]}", params=params)
        try:
            bundle = _SearchBundle.model_validate(body)
        except ValidationError as exc:
            where = ".".join(str(part) for part in exc.errors()[0]["loc"])
            raise FinalError(f"{self.key}: {resource.name} search answered no searchset Bundle (at '{where}')") from None
        # Includes and OperationOutcome warnings (search.mode include/outcome) are no records of this type.
        records = [entry.get("resource") for entry in bundle.entry if (entry.get("search") or {}).get("mode", "match") == "match"]
        high = _latest([state.get("high_water", ""), since, *(_last_updated(r) for r in records)])
        next_url = next((link.get("url") for link in bundle.link if link.get("relation") == "next"), None)
        if next_url:
            return Page(records, {"next": next_url, "since": since, "high_water": high}, done=False)
        return Page(records, {"since": high} if high else {}, done=True)

    def _own_link(self, url: str) -> str:
        """A next link, only when it stays under the FHIR base (it is followed with our bearer token)."""
        link, base = urlsplit(url), urlsplit(self.base_url)
        if (link.scheme, link.netloc) != (base.scheme, base.netloc) or not link.path.startswith(base.path.rstrip("/") + "/"):
            raise FinalError(f"{self.key}: a next link points outside the FHIR base; it is not followed")
        return url

    def fetch_one(self, resource: ResourceSpec, external_id: str) -> dict[str, Any] | None:
        """`GET <Type>/<id>`; None when WellSky says it is gone (410) or unknown (404)."""
        try:
            return self.http.get_json(f"/{FHIR_TYPE[resource.name]}/{quote(external_id, safe='')}")
        except FinalError as exc:
            if exc.status in (404, 410):
                return None
            raise

    def normalize(self, resource: ResourceSpec, raw: dict[str, Any], mapper: CodeMapper) -> dict[str, Any]:
        """A FHIR resource → canonical dict, by the hub's FHIR normalizers. Raises InvalidPayload with the element path."""
        fhir_type = FHIR_TYPE[resource.name]
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
        _adapt(fhir_type, raw, record, mapper)
        return record


def _ids(value: Any) -> Any:
    """The normalizers' Refs as external ids: in a vendor feed, `Patient/x` is the record with external id x."""
    if isinstance(value, Ref):
        return value.id
    if isinstance(value, dict):
        return {key: _ids(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_ids(item) for item in value]
    return value


def _adapt(fhir_type: str, raw: dict[str, Any], record: dict[str, Any], mapper: CodeMapper) -> None:
    """Where WellSky says in plain FHIR what the hub's own export puts in an extension."""
    if fhir_type == "Practitioner" and not record.get("roles"):
        record["roles"] = [text for q in raw.get("qualification") or [] if (text := _concept_text(q.get("code")))]
    if fhir_type == "Appointment":
        record["description"] = (record.get("description") or raw.get("comment") or "")[:300]
    if fhir_type in ("Appointment", "ServiceRequest"):
        record["service_code"] = mapper.code(MappingCategory.SERVICE_CODE, SOURCE_SYSTEM, record.get("service_code"))


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
