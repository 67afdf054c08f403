"""Any FHIR R4 server (`fhir`): SMART Backend Services or OAuth2 client credentials (or an open
server), each resource type read incrementally by `_lastUpdated`, the first load through Bulk Data
`$export` where the server offers it.

- Login (`auth` option): `smart_backend` signs a JWT client assertion with the credential's private
  key (RS384 by default, `signing_algorithm`); `client_credentials` sends the client id and secret;
  `none` for an open server (a test server, a server behind the hub's own network controls).
- First load: with `bulk_export` on, a run that has never completed asks `<base>/$export` (or
  `Group/<group_id>/$export`) for its type and reads the NDJSON files; a server without Bulk Data
  (400, 404, 405, 406, 501, or a kick-off without a status URL) is searched instead. The next run
  starts from the export's `transactionTime`.
- Later runs: `GET <Type>?_lastUpdated=gt<high water>&_count=…`, following `Bundle.link[next]`. A
  server that ignores `_lastUpdated` answers everything again; the upsert engine finds it unchanged.
- Deletions: a FHIR search lists no deleted resources; a pull of one (`fetch_one`) that answers
  404/410 tombstones it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from canonical.codes import CodeMapper
from connectors.auth_flows import oauth2_client_credentials, smart_backend_token
from connectors.base import ConnectionOptions, Page, ResourceSpec
from connectors.choices import LoginMethod, SyncMode
from connectors.errors import AuthenticationFailed, FinalError
from connectors.fhir.bulk import BulkExport
from connectors.fhir.search import FhirSearchConnector, _last_updated, _latest
from connectors.registry import register
from tenants.choices import Capability

# (resource name, FHIR type, canonical kind, capability) in dependency order.
RESOURCES = (
    ("locations", "Location", "location", Capability.PATIENTS_READ),
    ("practitioners", "Practitioner", "practitioner", Capability.PRACTITIONERS_READ),
    ("patients", "Patient", "patient", Capability.PATIENTS_READ),
    ("coverage", "Coverage", "coverage", Capability.PATIENTS_READ),
    ("appointments", "Appointment", "appointment", Capability.APPOINTMENTS_READ),
    ("encounters", "Encounter", "encounter", Capability.ENCOUNTERS_READ),
    ("care_plans", "CarePlan", "care_plan", Capability.CARE_PLANS_READ),
    ("referrals", "ServiceRequest", "referral", Capability.REFERRALS_READ),
)
NO_BULK = (400, 404, 405, 406, 501)  # a kick-off answered so: the server has no Bulk Data for us


class FhirOptions(ConnectionOptions):
    auth: Literal["smart_backend", "client_credentials", "none"] = "client_credentials"
    token_url: str = Field(default="", max_length=500, description="the token endpoint (default: <base>/token, or the SMART configuration's)")
    scope: str = Field(default="system/*.read", max_length=500)
    signing_algorithm: Literal["RS384", "ES384"] = "RS384"
    key_id: str = Field(default="", max_length=200)
    bulk_export: bool = Field(default=True, description="first load through Bulk Data $export when the server has it")
    group_id: str = Field(default="", max_length=200, description="export Group/<id>/$export instead of the system-level $export")
    export_timeout_s: float = Field(default=900.0, gt=0, le=6 * 3600)


@register
class FhirConnector(FhirSearchConnector):
    key = "fhir"
    name = "FHIR R4 server"
    description = "Any FHIR R4 server: SMART Backend Services or client credentials; _lastUpdated searches; Bulk $export first load."
    credential_fields = ("client_id", "client_secret", "private_key_pem")
    options_schema = FhirOptions
    resources = tuple(ResourceSpec(name, kind, SyncMode.CURSOR, capability, page_size=100) for name, _, kind, capability in RESOURCES)
    fhir_types = {name: fhir_type for name, fhir_type, _, _ in RESOURCES}

    # --- session ----------------------------------------------------------------------------------
    def login(self, session) -> None:
        options, credential = self.options, self.connection.credential
        if options.auth == "none":
            session.method, session.access_token = LoginMethod.OAUTH2, ""
            session.expires_in(None)
            return
        token_url = options.token_url or self._token_url()
        if options.auth == "smart_backend":
            answer = smart_backend_token(self.http, token_url, credential.client_id, credential.private_key_pem, scope=options.scope,
                                         kid=options.key_id, algorithm=options.signing_algorithm)
            session.method = LoginMethod.SMART
        else:
            answer = oauth2_client_credentials(self.http, token_url, credential.client_id, credential.client_secret, options.scope)
            session.method = LoginMethod.OAUTH2
        if str(answer.get("token_type", "bearer")).lower() != "bearer":
            raise AuthenticationFailed(f"the token endpoint gave a {answer.get('token_type')!r} token; only bearer tokens are supported")
        session.access_token = answer["access_token"]
        try:
            session.expires_in(float(answer.get("expires_in") or 0))
        except (TypeError, ValueError):
            session.expires_in(None)

    def apply_session(self, request, session) -> None:
        if session.access_token:
            request.headers["Authorization"] = f"Bearer {session.access_token}"

    def _token_url(self) -> str:
        """The SMART configuration's token endpoint, else <base>/token."""
        try:
            config = self.http.get_json("/.well-known/smart-configuration", authenticated=False)
        except FinalError:
            config = None
        endpoint = config.get("token_endpoint") if isinstance(config, dict) else None
        return endpoint if isinstance(endpoint, str) and endpoint else f"{self.base_url}/token"

    # --- reading ----------------------------------------------------------------------------------
    def fetch_page(self, resource: ResourceSpec, state: dict[str, Any]) -> Page:
        if state.get("files") is not None:
            return self._bulk_file(resource, state)
        first_load = not state.get("since") and not state.get("next") and not state.get("searched")
        if first_load and self.options.bulk_export:
            started = self._bulk_start(resource)
            if started is not None:
                return started
        since = state.get("since", "")
        records, next_url = self.search_page(resource, state, {"_lastUpdated": f"gt{since}"} if since else None)
        high = _latest([state.get("high_water", ""), since, *(_last_updated(r) for r in records)])
        if next_url:
            return Page(records, {"next": next_url, "since": since, "high_water": high, "searched": True}, done=False)
        return Page(records, {"since": high} if high else {"searched": True}, done=True)

    def _bulk_start(self, resource: ResourceSpec) -> Page | None:
        export = BulkExport(self.http, own_link=self._own_link, sleep=self.sleep)
        path = f"/Group/{self.options.group_id}/$export" if self.options.group_id else "/$export"
        fhir_type = self.fhir_types[resource.name]
        try:
            status_url = export.kick_off(path, types=[fhir_type])
        except FinalError as exc:
            if exc.status in NO_BULK or exc.status is None:
                return None  # no Bulk Data here: search instead
            raise
        manifest = export.wait(status_url, timeout=self.options.export_timeout_s)
        files = export.files(manifest, fhir_type)
        since = manifest.get("transactionTime") if isinstance(manifest.get("transactionTime"), str) else ""
        state = {"files": files, "file": 0, "since": since, "token": bool(manifest.get("requiresAccessToken", True))}
        return Page([], state, done=False) if files else Page([], {"since": since} if since else {"searched": True}, done=True)

    def _bulk_file(self, resource: ResourceSpec, state: dict[str, Any]) -> Page:
        export = BulkExport(self.http, own_link=self._own_link, sleep=self.sleep)
        files, number = state["files"], int(state.get("file", 0))
        try:
            records = list(export.read_file(files[number], authenticated=state.get("token", True)))
        except FinalError as exc:
            if exc.status in (404, 410):  # the files expired under a resumed run: export again
                return Page([], {}, done=False)
            raise
        if number + 1 < len(files):
            return Page(records, {**state, "file": number + 1}, done=False)
        since = state.get("since", "")
        return Page(records, {"since": since} if since else {"searched": True}, done=True)

    def adapt(self, fhir_type: str, raw: dict[str, Any], record: dict[str, Any], mapper: CodeMapper) -> None:
        if fhir_type == "Appointment":
            record["description"] = (record.get("description") or raw.get("comment") or "")[:300]
