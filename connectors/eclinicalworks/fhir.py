"""eClinicalWorks' FHIR R4 surface (`eclinicalworks_fhir`): one base URL per practice
(`…/fhir/r4/<practice code>`), SMART Backend Services with an RS384 client assertion and 5-minute
tokens, 250 requests per minute per practice, Bulk Data `$export`.

Rate limit: the practice's budget is shared by every connection and worker that calls it (token
calls included), so the limiter's key is the practice's base URL, not the connection, and it holds
`rate_limit` requests per `rate_window_s` (240 a minute by default: a margin under 250 for clock
skew between us and the server). A 429 carries no Retry-After and blocks the rest of the server's
minute, so we wait for the next clock minute (`until_next_window`).

Reading: every resource is read whole and diffed (`full_diff`: the surface has no change feed and
no webhooks). With `bulk_export` (the default) each run is one `Group/<id>/$export` for its type:
a kick-off, a few status polls and one download per file of thousands of resources, where paging
a search would spend the practice's budget 200 resources at a time. Without it, type searches
follow `Bundle.link[next]`.
"""

from __future__ import annotations

import time
from dataclasses import replace
from functools import partial
from typing import Any

from pydantic import Field

from canonical.codes import CodeMapper
from connectors.auth_flows import smart_backend_token
from connectors.base import ConnectionOptions, Page, ResourceSpec
from connectors.choices import LoginMethod, SyncMode
from connectors.eclinicalworks.constants import SOURCE_SYSTEM
from connectors.errors import AuthenticationFailed, FinalError
from connectors.fhir.bulk import BulkExport
from connectors.fhir.search import FhirSearchConnector
from connectors.http import RetryPolicy
from connectors.ratelimit import RateLimit
from connectors.registry import register
from tenants.choices import Capability, MappingCategory

PRACTICE_LIMIT_PER_MINUTE = 250
SEARCH_PAGE_SIZE = 200
# (resource name, FHIR type, canonical kind, capability) in dependency order.
RESOURCES = (
    ("locations", "Location", "location", Capability.PATIENTS_READ),
    ("practitioners", "Practitioner", "practitioner", Capability.PRACTITIONERS_READ),
    ("patients", "Patient", "patient", Capability.PATIENTS_READ),
    ("coverage", "Coverage", "coverage", Capability.PATIENTS_READ),
    ("appointments", "Appointment", "appointment", Capability.APPOINTMENTS_READ),
    ("encounters", "Encounter", "encounter", Capability.ENCOUNTERS_READ),
)


def until_next_window(window_s: float = 60.0, clock=time.time) -> float:
    """Seconds to the start of the next window (the clock minute), and a little more: the server counts per window."""
    return window_s - clock() % window_s + min(1.0, window_s / 10)


class EClinicalWorksFhirOptions(ConnectionOptions):
    token_url: str = Field(default="", max_length=500, description="the token endpoint, when it is not <FHIR base>/token")
    scope: str = Field(default="system/*.read", max_length=500)
    key_id: str = Field(default="", max_length=200, description="the kid of the registered public key, when the JWKS holds several")
    rate_limit: int = Field(default=240, ge=1, le=PRACTICE_LIMIT_PER_MINUTE,
                            description="requests per window this hub may spend of the practice's 250 a minute")
    rate_window_s: int = Field(default=60, ge=1, le=3600, description="the practice's rate window: a clock minute")
    bulk_export: bool = Field(default=True, description="read each resource through Bulk Data $export instead of paging searches")
    group_id: str = Field(default="all-patients", max_length=200, description="the Group exported (Group/<id>/$export)")
    export_timeout_s: float = Field(default=900.0, gt=0, le=6 * 3600, description="how long one run waits for its export")


@register
class EClinicalWorksFhirConnector(FhirSearchConnector):
    key = "eclinicalworks_fhir"
    name = "eClinicalWorks FHIR R4"
    description = "eClinicalWorks' FHIR R4 surface per practice: SMART Backend Services (RS384), 250 requests/minute, Bulk $export."
    credential_fields = ("client_id", "private_key_pem")
    options_schema = EClinicalWorksFhirOptions
    resources = tuple(ResourceSpec(name, kind, SyncMode.FULL_DIFF, capability, page_size=SEARCH_PAGE_SIZE)
                      for name, _, kind, capability in RESOURCES)
    fhir_types = {name: fhir_type for name, fhir_type, _, _ in RESOURCES}

    @property
    def rate_limit_key(self) -> str:
        return f"ecw-fhir:{self.base_url}"  # the practice's budget, whoever spends it

    @property
    def rate_limit(self) -> RateLimit:
        return RateLimit(self.options.rate_limit, window_seconds=self.options.rate_window_s)

    def retry(self) -> RetryPolicy:
        return replace(self.retry_policy, default_retry_after=partial(until_next_window, float(self.options.rate_window_s)))

    # --- session ----------------------------------------------------------------------------------
    def login(self, session) -> None:
        credential = self.connection.credential
        answer = smart_backend_token(self.http, self.options.token_url or f"{self.base_url}/token", credential.client_id,
                                     credential.private_key_pem, scope=self.options.scope, kid=self.options.key_id, algorithm="RS384")
        if str(answer.get("token_type", "bearer")).lower() != "bearer":
            raise AuthenticationFailed(f"the token endpoint gave a {answer.get('token_type')!r} token; only bearer tokens are supported")
        session.method = LoginMethod.SMART
        session.access_token = answer["access_token"]
        try:
            session.expires_in(float(answer.get("expires_in") or 0))
        except (TypeError, ValueError):
            session.expires_in(None)

    # --- reading ----------------------------------------------------------------------------------
    def fetch_page(self, resource: ResourceSpec, state: dict[str, Any]) -> Page:
        if not self.options.bulk_export:
            records, next_url = self.search_page(resource, state)
            return Page(records, {"next": next_url}, done=False) if next_url else Page(records, {}, done=True)
        export = BulkExport(self.http, own_link=self._own_link, sleep=self.sleep)
        fhir_type = self.fhir_types[resource.name]
        files = state.get("files")
        if files is None:  # a new run: one export of this type
            status_url = export.kick_off(f"/Group/{self.options.group_id}/$export", types=[fhir_type])
            manifest = export.wait(status_url, timeout=self.options.export_timeout_s)
            files = export.files(manifest, fhir_type)
            return Page([], {"files": files, "file": 0, "token": bool(manifest.get("requiresAccessToken", True))}, done=not files)
        number = int(state.get("file", 0))
        try:
            records = list(export.read_file(files[number], authenticated=state.get("token", True)))
        except FinalError as exc:
            if exc.status in (404, 410):  # the export's files expired under a resumed run: export again
                return Page([], {}, done=False)
            raise
        if number + 1 < len(files):
            return Page(records, {**state, "file": number + 1}, done=False)
        return Page(records, {}, done=True)

    def adapt(self, fhir_type: str, raw: dict[str, Any], record: dict[str, Any], mapper: CodeMapper) -> None:
        """eClinicalWorks' visit types are its own codes: they go through the tenant's mappings, as in the portal connector."""
        if fhir_type == "Appointment":
            record["service_code"] = mapper.code(MappingCategory.VISIT_TYPE, SOURCE_SYSTEM, record.get("service_code"))
