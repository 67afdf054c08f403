"""The Welkin Health connector (v8, Welkin Cloud; the v1 JWT-bearer grant as an option).

Sessions: v8 exchanges the API client's name (the credential's client id) and secret for a JWT at
`POST /{tenant}/admin/api_clients/{clientName}`. The answer carries no lifetime, so the hub holds
the token until Welkin answers 401 TOKEN_EXPIRED; the shared HTTP client then logs in once more
and repeats the call. With `"auth": "v1"` the connection uses the v1 token endpoint (JWT-bearer
grant, HS256 assertion signed by the client secret), whose answer has `expires_in`.

Reading is ping and pull (webhooks.py): Welkin pings a change ({sourceId, eventEntity, …}, no PHI),
the hub pulls the record by id (`fetch_one`) and upserts it. A sync run is the initial full load
(empty state) and, on the connection's schedule, the reconciliation sweep: each page asks
`updatedAfter=<the newest updatedAt seen>` (keyset, so records changing while we page are read
again rather than skipped), which catches every change whose ping was lost. Deletions reach the
hub by their ping (the pull answers 404 and tombstones the record); a list never shows them.

Programs are not read: a program is a care pathway the tenant defines (not per patient), with no
canonical kind; a patient's care plan names it in its title.

Writes: create_patient (Welkin's id becomes the external id), update_calendar_event (reschedule,
status, coach), push_assessment (an assessment completed elsewhere, filed under the patient).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

from django.core.cache import cache
from django.core.exceptions import ObjectDoesNotExist
from django.urls import reverse
from pydantic import Field

from canonical.codes import CodeMapper
from connectors.base import ConnectionOptions, Connector, Page, ResourceSpec, WriteResult, WriteSpec
from connectors.choices import LoginMethod, SyncMode
from connectors.errors import AuthenticationFailed, FinalError
from connectors.http import RetryPolicy, VendorHttpClient
from connectors.ratelimit import RateLimit
from connectors.registry import register
from connectors.sessions import SessionManager
from connectors.welkin import constants as c
from connectors.welkin import mapping
from connectors.welkin.client import WelkinClient
from tenants.models import Connection


class WelkinOptions(ConnectionOptions):
    """Where the connection's data lives at Welkin, and how it logs in."""

    tenant_name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
    instance_name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
    auth: Literal["v8", "v1"] = "v8"
    scope: str = Field(default="all", max_length=200)  # v1 grant only


def pending_pull_key(connection: Connection, resource: str, external_id: str) -> str:
    """The cache key that says a pull of this record is queued (webhooks.py sets it, fetch_one clears it)."""
    return f"welkin:pull:{connection.public_id}:{resource}:{external_id}"


def webhook_path(connection: Connection) -> str:
    """The hub's path for this connection's pings (to enter as the webhook URL in Welkin's admin console)."""
    return reverse("welkin-webhook", kwargs={"connection_id": connection.public_id})


def _spec(name: str, kind: str, capability: str) -> ResourceSpec:
    return ResourceSpec(name, kind, SyncMode.CURSOR, capability, page_size=c.MAX_PAGE_SIZE)


@register
class WelkinConnector(Connector):
    key = "welkin"
    name = "Welkin Health"
    description = "Welkin v8 API client (id and secret → JWT); changes pinged to the hub, pulled by id; reconciliation sweeps."
    credential_fields = ("client_id", "client_secret", "extra")  # extra: {"webhook_secret": "…"} from Welkin's webhook settings
    options_schema = WelkinOptions
    # In dependency order: a sync runs them one after another, so references resolve.
    resources = (
        _spec("coaches", "practitioner", "practitioners.read"),
        _spec("patients", "patient", "patients.read"),
        _spec("calendar_events", "appointment", "appointments.read"),
        _spec("care_plans", "care_plan", "care_plans.read"),
        _spec("assessments", "assessment", "assessments.read"),
        _spec("encounters", "encounter", "encounters.read"),
    )
    writes = (
        WriteSpec("create_patient", "patient", "patients.write", required=("family_name", "given_names", "birth_date")),
        WriteSpec("update_calendar_event", "appointment", "appointments.write", required=("appointment",)),
        WriteSpec("push_assessment", "assessment", "assessments.write", required=("patient", "instrument", "answers")),
    )
    retry_policy: ClassVar[RetryPolicy] = RetryPolicy()

    # --- plumbing ---------------------------------------------------------------------------------
    def client(self) -> WelkinClient:
        if not hasattr(self, "_client"):
            rate = self.options.rate_limit_per_second
            http = VendorHttpClient(
                base_url=self.connection.base_url.rstrip("/"), vendor=self.key, connection_key=str(self.connection.public_id),
                auth=SessionManager(self), rate_limit=RateLimit(rate) if rate else None, retry=self.retry_policy,
            )
            options: WelkinOptions = self.options  # type: ignore[assignment]
            self._client = WelkinClient(http, tenant=options.tenant_name, instance=options.instance_name)
        return self._client

    def page_size(self, resource: ResourceSpec) -> int:
        return min(self.options.page_size or resource.page_size, c.MAX_PAGE_SIZE)

    # --- session ----------------------------------------------------------------------------------
    def login(self, session) -> None:
        """A fresh token. Raises AuthenticationFailed when Welkin refuses the client."""
        try:
            credential = self.connection.credential
        except ObjectDoesNotExist:
            raise AuthenticationFailed("the connection has no credential; enter the Welkin API client name and secret") from None
        options: WelkinOptions = self.options  # type: ignore[assignment]
        if options.auth == "v1":
            answer = self.client().token_v1(credential.client_id, credential.client_secret, scope=options.scope)
            session.method = LoginMethod.JWT_BEARER
            session.access_token = answer["access_token"]
            session.expires_in(answer.get("expires_in"))
            return
        session.method = LoginMethod.OAUTH2
        session.access_token = self.client().token_v8(credential.client_id, credential.client_secret)
        session.expires_in(None)  # unknown: Welkin says TOKEN_EXPIRED when it is time

    # --- reading ----------------------------------------------------------------------------------
    def fetch_page(self, resource: ResourceSpec, state: dict[str, Any]) -> Page:
        """The records updated after state["since"] (all of them when empty), oldest first."""
        since = state.get("since", "")
        params: dict[str, Any] = {"page": 0, "size": self.page_size(resource)}
        if since:
            params["updatedAfter"] = since
        page = self.client().page(c.PATHS[resource.name], params)
        stamps = [_updated_at(r) for r in page.content]
        if page.content and not all(stamps):
            raise FinalError(f"welkin: {resource.name} answered a record without updatedAt; cannot page by updatedAfter")
        if stamps != sorted(stamps):
            raise FinalError(f"welkin: {resource.name} did not come in updatedAt order; cannot page by updatedAfter")
        high = stamps[-1].isoformat().replace("+00:00", "Z") if stamps else since
        if stamps and high == since:
            raise FinalError(f"welkin: {resource.name} answered records not after updatedAfter; the sweep would not advance")
        return Page(page.content, {"since": high} if high else {}, done=page.last)

    def fetch_one(self, resource: ResourceSpec, external_id: str) -> dict[str, Any] | None:
        """GET one record (raw); None when Welkin says it is gone. A ping arriving from now on
        queues a new pull, since this one may read the record before that change."""
        cache.delete(pending_pull_key(self.connection, resource.name, external_id))
        return self.client().one(c.PATHS[resource.name], external_id)

    def normalize(self, resource: ResourceSpec, raw: dict[str, Any], mapper: CodeMapper) -> dict[str, Any]:
        return mapping.NORMALIZERS[resource.name](raw, mapper)

    # --- writing ----------------------------------------------------------------------------------
    def write(self, name: str, payload: dict[str, Any], *, idempotency_key: str) -> WriteResult:
        client = self.client()
        if name == "create_patient":
            answer = client.send("POST", "patients", mapping.patient_body(payload), idempotency_key=idempotency_key)
            return WriteResult(str(answer["id"]), answer)
        if name == "update_calendar_event":
            event = payload["appointment"]
            answer = client.send("PATCH", f"{c.PATHS['calendar_events']}/{event.external_id}", mapping.event_changes(payload),
                                 idempotency_key=idempotency_key)
            return WriteResult(str(answer["id"]), answer, created=False)
        if name == "push_assessment":
            patient = payload["patient"]
            answer = client.send("POST", f"patients/{patient.external_id}/assessments", mapping.assessment_body(payload),
                                 idempotency_key=idempotency_key)
            return WriteResult(str(answer["id"]), answer)
        raise KeyError(name)


def _updated_at(raw: Any) -> datetime | None:
    value = raw.get("updatedAt") if isinstance(raw, dict) else None
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
