"""WellSky Connect: the FHIR R4 read surface (ConnectEHR, US Core), OAuth2 client credentials.

The connection's base_url is the FHIR base (`…/fhir`); the token comes from `<base>/oauth/token`
(or the `token_url` option) and signs every call as a bearer token through the SessionManager.
Each resource is a type search in dependency order: the first run follows `Bundle.link[next]` to
the end, later runs ask only for `_lastUpdated=gt<high water>`, the newest `meta.lastUpdated` seen.

Mapping, validation and references are the shared FHIR surface's (`connectors.fhir.search`). What
WellSky adds: practitioner roles as `qualification`, the visit note as `Appointment.comment`;
WellSky's local service codes go through the tenant's code mappings as in the portal connector.

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

from typing import Any

from pydantic import Field

from canonical.codes import CodeMapper
from connectors.auth_flows import oauth2_client_credentials
from connectors.base import ConnectionOptions, Page, ResourceSpec
from connectors.choices import LoginMethod, SyncMode
from connectors.errors import AuthenticationFailed
from connectors.fhir.search import FhirSearchConnector, _concept_text, _last_updated, _latest
from connectors.registry import register
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


class ConnectOptions(ConnectionOptions):
    token_url: str = Field(default="", max_length=500, description="the OAuth2 token endpoint, when it is not <FHIR base>/oauth/token")


@register
class WellSkyConnectConnector(FhirSearchConnector):
    key = "wellsky_connect"
    name = "WellSky Connect (FHIR R4)"
    description = "WellSky's FHIR R4 read surface (ConnectEHR, US Core): OAuth2 client credentials, incremental by _lastUpdated."
    credential_fields = ("client_id", "client_secret")
    options_schema = ConnectOptions
    resources = tuple(ResourceSpec(name, kind, SyncMode.CURSOR, capability, page_size=PAGE_SIZE) for name, _, kind, capability in RESOURCES)
    fhir_types = FHIR_TYPE

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
        records, next_url = self.search_page(resource, state, {"_lastUpdated": f"gt{since}"} if since else None)
        high = _latest([state.get("high_water", ""), since, *(_last_updated(r) for r in records)])
        if next_url:
            return Page(records, {"next": next_url, "since": since, "high_water": high}, done=False)
        return Page(records, {"since": high} if high else {}, done=True)

    def adapt(self, fhir_type: str, raw: dict[str, Any], record: dict[str, Any], mapper: CodeMapper) -> None:
        """Where WellSky says in plain FHIR what the hub's own export puts in an extension."""
        if fhir_type == "Practitioner" and not record.get("roles"):
            record["roles"] = [text for q in raw.get("qualification") or [] if (text := _concept_text(q.get("code")))]
        if fhir_type == "Appointment":
            record["description"] = (record.get("description") or raw.get("comment") or "")[:300]
        if fhir_type in ("Appointment", "ServiceRequest"):
            record["service_code"] = mapper.code(MappingCategory.SERVICE_CODE, SOURCE_SYSTEM, record.get("service_code"))
