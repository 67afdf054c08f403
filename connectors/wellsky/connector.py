"""The WellSky connector (portal surface): every resource incrementally by `updated_since`, with
deletions as tombstones; writes for referral intake and authorization-checked booking."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, ClassVar

from pydantic import Field

from canonical.authorizations import BookingRefused, check_booking
from canonical.codes import CodeMapper
from connectors.base import ConnectionOptions, Connector, Page, ResourceSpec, WriteResult, WriteSpec
from connectors.choices import SyncMode
from connectors.errors import FinalError, WriteRefused
from connectors.http import RetryPolicy, VendorHttpClient
from connectors.ratelimit import RateLimit
from connectors.registry import register
from connectors.sessions import SessionManager
from connectors.wellsky import mapping
from connectors.wellsky.client import PortalClient, session_cookie
from connectors.wellsky.constants import PAGE_LIMIT, SESSION_COOKIE, SOURCE_SYSTEM
from tenants.choices import MappingCategory

COVERAGE_PRIORITIES = (1, 2, 3)  # primary, secondary, tertiary payer


class WellSkyOptions(ConnectionOptions):
    mfa_timeout_s: float = Field(default=120.0, gt=0, le=900, description="how long a login waits for a relayed SMS/email code")


def _spec(name: str, kind: str, capability: str) -> ResourceSpec:
    return ResourceSpec(name, kind, SyncMode.CURSOR, capability, page_size=PAGE_LIMIT)


@register
class WellSkyConnector(Connector):
    key = "wellsky"
    name = "WellSky"
    description = "WellSky portal: password with TOTP, SMS or email MFA; rotating session cookie."
    credential_fields = ("username", "password", "totp_secret")
    options_schema = WellSkyOptions
    # In dependency order: a sync runs them one after another, so references resolve.
    resources = (
        _spec("locations", "location", "patients.read"),
        _spec("practitioners", "practitioner", "practitioners.read"),
        _spec("patients", "patient", "patients.read"),
        _spec("coverage", "coverage", "patients.read"),  # the coverage list inside each patient record
        _spec("authorizations", "authorization", "authorizations.read"),
        _spec("appointments", "appointment", "appointments.read"),
        _spec("encounters", "encounter", "encounters.read"),
        _spec("care_plans", "care_plan", "care_plans.read"),
        _spec("referrals", "referral", "referrals.read"),
    )
    writes = (
        WriteSpec("create_patient", "patient", "patients.write", required=("family_name", "given_names", "birth_date")),
        WriteSpec("submit_referral", "referral", "referrals.write", required=("source",)),
        WriteSpec("book_appointment", "appointment", "appointments.write",
                  required=("patient", "practitioner", "start", "end", "service_code")),
    )
    retry_policy: ClassVar[RetryPolicy] = RetryPolicy()
    mfa_poll_s: ClassVar[float] = 1.0
    mfa_sleep: Callable[[float], None] = staticmethod(time.sleep)

    # --- plumbing ---------------------------------------------------------------------------------
    def portal(self) -> PortalClient:
        if not hasattr(self, "_portal"):
            rate = self.options.rate_limit_per_second
            http = VendorHttpClient(
                base_url=self.connection.base_url.rstrip("/"), vendor=self.key, connection_key=str(self.connection.public_id),
                auth=SessionManager(self), rate_limit=RateLimit(rate) if rate else None, retry=self.retry_policy,
            )
            self._portal = PortalClient(http)
        return self._portal

    @staticmethod
    def path_of(spec: ResourceSpec) -> str:
        return "/patients" if spec.name == "coverage" else "/" + spec.name.replace("_", "-")

    # --- session ----------------------------------------------------------------------------------
    def login(self, session) -> None:
        opened = self.portal().login(self.connection, mfa_timeout_s=self.options.mfa_timeout_s, mfa_poll_s=self.mfa_poll_s,
                                     sleep=self.mfa_sleep)
        session.method = opened["method"]
        session.access_token = opened["token"]
        session.cookies = {SESSION_COOKIE: opened["cookie"]}
        session.expires_in(opened["expires_in"])

    def apply_session(self, request, session) -> None:
        request.headers["Authorization"] = f"Bearer {session.access_token}"
        request.headers["Cookie"] = f"{SESSION_COOKIE}={session.cookies.get(SESSION_COOKIE, '')}"

    def observe_session(self, response, session) -> bool:
        """WellSky rotates the session cookie every so often; the next calls must present the new one."""
        rotated = session_cookie(response)
        if not rotated or rotated == session.cookies.get(SESSION_COOKIE):
            return False
        session.cookies = {**session.cookies, SESSION_COOKIE: rotated}
        return True

    # --- reading ----------------------------------------------------------------------------------
    def fetch_page(self, resource: ResourceSpec, state: dict[str, Any]) -> Page:
        size = self.options.page_size or resource.page_size
        body = self.portal().page(self.path_of(resource), since=state.get("since", ""), cursor=state.get("cursor", ""), limit=size)
        data = [r for r in body["data"] if isinstance(r, dict)]
        live = [r for r in data if not r.get("deleted")]
        deleted = [str(r["id"]) for r in data if r.get("deleted") and r.get("id")]
        stamps = [r["updated_at"] for r in data if isinstance(r.get("updated_at"), str)]
        high = max([*stamps, state.get("high_water", ""), state.get("since", "")])
        if resource.name == "coverage":
            live, deleted = _flatten_coverage(live), _dropped_coverage(live, deleted)
        next_cursor = body["paging"].get("next_cursor")
        if next_cursor:
            return Page(live, {**state, "cursor": next_cursor, "high_water": high}, done=False, deleted_ids=deleted)
        return Page(live, {"since": high} if high else {}, done=True, deleted_ids=deleted)

    def fetch_one(self, resource: ResourceSpec, external_id: str) -> dict[str, Any] | None:
        if resource.name == "coverage":
            patient_id, _, priority = external_id.partition(":")
            record = self.portal().one(f"/patients/{patient_id}")
            rows = [r for r in _flatten_coverage([record] if record else []) if r["id"] == external_id]
            return rows[0] if rows else None
        return self.portal().one(f"{self.path_of(resource)}/{external_id}")

    def normalize(self, resource: ResourceSpec, raw: dict[str, Any], mapper: CodeMapper) -> dict[str, Any]:
        if resource.name == "coverage":
            return mapping.coverage_record(raw)
        return mapping.NORMALIZERS[resource.name](raw, mapper)

    # --- writing ----------------------------------------------------------------------------------
    def check_write(self, name: str, payload: dict[str, Any]) -> None:
        """Refuse locally what WellSky would refuse, before calling it (partners learn first)."""
        if name == "book_appointment":
            try:
                check_booking(
                    tenant=self.tenant, connection=self.connection, patient=payload["patient"], service_code=payload["service_code"],
                    start=payload["start"], end=payload["end"], replacing=payload.get("appointment"),
                )
            except BookingRefused as exc:
                raise WriteRefused(exc.rule, str(exc), details=exc.details) from None

    def write(self, name: str, payload: dict[str, Any], *, idempotency_key: str) -> WriteResult:
        portal = self.portal()
        if name == "create_patient":
            answer = portal.post("/patients", mapping.patient_body(payload), idempotency_key=idempotency_key)
            return WriteResult(answer["id"], answer)
        if name == "submit_referral":
            body = {"referral_source": payload.get("source", ""), "reason": payload.get("reason", ""),
                    "priority": "Urgent" if payload.get("priority") in ("urgent", "asap", "stat") else "Routine",
                    "service_code": self.vendor_code(MappingCategory.SERVICE_CODE, payload.get("service_code", ""))}
            if payload.get("patient") is not None:
                body["patient_id"] = payload["patient"].external_id
            else:
                body["patient"] = mapping.patient_body(payload.get("new_patient") or {})
            answer = portal.post("/referrals", body, idempotency_key=idempotency_key)
            related = []
            if "patient" in body and answer.get("patient_id"):  # WellSky made the patient: bring it in before the referral
                patient = portal.one(f"/patients/{answer['patient_id']}")
                related = [("patients", patient)] if patient else []
            return WriteResult(answer["id"], answer, related=related)
        if name == "book_appointment":
            body = {
                "patient_id": payload["patient"].external_id, "practitioner_id": payload["practitioner"].external_id,
                "start": payload["start"].isoformat(), "end": payload["end"].isoformat(),
                "service_code": self.vendor_code(MappingCategory.SERVICE_CODE, payload["service_code"]),
                "notes": payload.get("description", ""),
            }
            if payload.get("location") is not None:
                body["location_id"] = payload["location"].external_id
            if payload.get("appointment") is not None:
                body["id"] = payload["appointment"].external_id
            answer = portal.post("/appointments", body, idempotency_key=idempotency_key)
            return WriteResult(answer["id"], answer, created="id" not in body)
        raise FinalError(f"wellsky cannot {name!r}")

    def vendor_code(self, category: str, hub_code: str) -> str:
        """The tenant's WellSky code for a hub code (the code mapping read backwards); as given when unmapped."""
        return CodeMapper(self.tenant).source_code(category, SOURCE_SYSTEM, hub_code)


def _dropped_coverage(patients: list[dict[str, Any]], deleted_patients: list[str]) -> list[str]:
    """Coverage rows to tombstone: every priority of a deleted patient, and the priorities a live
    patient no longer lists (a secondary payer that ended). Deleting ids never stored is a no-op."""
    gone = [f"{pid}:{n}" for pid in deleted_patients for n in COVERAGE_PRIORITIES]
    for record in patients:
        listed = {item.get("priority") for item in record.get("coverage") or [] if isinstance(item, dict)}
        gone += [f"{record.get('id')}:{n}" for n in COVERAGE_PRIORITIES if n not in listed]
    return gone


def _flatten_coverage(patients: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for record in patients:
        coverage = record.get("coverage")
        for item in coverage if isinstance(coverage, list) else []:
            if isinstance(item, dict):
                rows.append({**item, "id": f"{record.get('id')}:{item.get('priority')}", "patient_id": record.get("id"),
                             "updated_at": record.get("updated_at")})
    return rows
