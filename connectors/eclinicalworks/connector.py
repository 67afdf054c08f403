"""The eClinicalWorks connector (portal surface).

Reading: the portal has no change cursor and no webhooks, so every resource is polled whole and
diffed (`full_diff`): the upsert engine compares each record's content hash, so a record that
changed produces exactly one update event, an unchanged one none, and one no page listed is
tombstoned at the end of the run. The portal pages by offset; a deletion while we page shifts the
later pages, which would hide a live record from this poll. So the walk watches `total`, and checks
that the record just before each page is still the last one of the page before (a deletion offset
by a booking leaves the total unchanged): on a shift the walk starts again from page 1 (what it
already saw stays seen), and if the practice keeps deleting faster than we can page, the run ends
without tombstones (`complete=False`) and the next poll settles them.

Writing: `book_appointment` (POST /create_appointment, or healow's /healow/book for telehealth,
with our write id as the portal's `reference`, which makes a retry idempotent), `check_eligibility`
(the portal's 270/271 exchange, kept as an `EligibilityCheck`) and `submit_claims` (an 837 of the
tenant's ready claims through the practice's clearinghouse: the 999 applied at once, the 835
fetched later by `follow_up`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from datetime import date
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

from django.db import transaction
from django.utils import timezone
from pydantic import Field

from canonical.codes import CodeMapper
from connectors.base import ConnectionOptions, Connector, Page, ResourceSpec, WriteResult, WriteSpec
from connectors.choices import SyncMode
from connectors.eclinicalworks import constants as c
from connectors.eclinicalworks import mapping
from connectors.eclinicalworks.client import PortalClient
from connectors.errors import FinalError, WriteRefused
from connectors.http import RetryPolicy, VendorHttpClient
from connectors.ratelimit import RateLimit
from connectors.registry import register
from connectors.sessions import SessionManager
from formats.x12.errors import X12Error
from reconciliation.choices import EligibilityStatus
from reconciliation.eligibility import apply_271
from reconciliation.models import ClaimBatch, EligibilityCheck
from reconciliation.submission import import_batch_era, prepare_batch, record_acknowledgement
from tenants.choices import Capability, MappingCategory
from tenants.entitlements import is_entitled

MAX_RESTARTS = 3  # walks started over in one run because the list shrank under us


class EClinicalWorksOptions(ConnectionOptions):
    mfa_timeout_s: float = Field(default=120.0, gt=0, le=900, description="how long a login waits for a relayed SMS/email code")
    era_poll_s: float = Field(default=60.0, ge=0.05, le=86_400, description="seconds between looks for a batch's 835")
    era_poll_limit: int = Field(default=2880, ge=1, le=100_000, description="looks for an 835 before giving up on a batch")


def _spec(name: str, kind: str, capability: str) -> ResourceSpec:
    return ResourceSpec(name, kind, SyncMode.FULL_DIFF, capability, page_size=c.PAGE_SIZE)


@register
class EClinicalWorksConnector(Connector):
    key = "eclinicalworks"
    name = "eClinicalWorks / healow"
    description = "eClinicalWorks portal: password with TOTP, SMS or email MFA; polled and diffed (no change feed, no webhooks)."
    credential_fields = ("username", "password", "totp_secret")
    options_schema = EClinicalWorksOptions
    # In dependency order: a sync runs them one after another, so references resolve.
    resources = (
        _spec("facilities", "location", Capability.PATIENTS_READ),
        _spec("providers", "practitioner", Capability.PRACTITIONERS_READ),
        _spec("patients", "patient", Capability.PATIENTS_READ),
        _spec("coverage", "coverage", Capability.PATIENTS_READ),  # the coverage list inside each patient record
        _spec("appointments", "appointment", Capability.APPOINTMENTS_READ),
        _spec("encounters", "encounter", Capability.ENCOUNTERS_READ),
    )
    writes = (
        WriteSpec("book_appointment", "appointment", Capability.APPOINTMENTS_WRITE,
                  required=("patient", "practitioner", "location", "start", "end", "service_code")),
        WriteSpec("check_eligibility", "eligibility_check", Capability.ELIGIBILITY_CHECK, required=("patient",)),
        WriteSpec("submit_claims", "claim_batch", Capability.CLAIMS_SUBMIT, follow_up=True),
    )
    retry_policy: ClassVar[RetryPolicy] = RetryPolicy()
    mfa_poll_s: ClassVar[float] = 1.0
    mfa_sleep: Callable[[float], None] = staticmethod(time.sleep)

    # --- plumbing ---------------------------------------------------------------------------------
    def portal(self) -> PortalClient:
        if not hasattr(self, "_portal"):
            rate = self.options.rate_limit_per_second
            common = {"base_url": self.connection.base_url.rstrip("/"), "vendor": self.key, "connection_key": str(self.connection.public_id),
                      "auth": SessionManager(self), "rate_limit": RateLimit(rate) if rate else None}
            http = VendorHttpClient(**common, retry=self.retry_policy)
            # Claim files are sent once (PortalClient.submit_claim): no automatic resend.
            filing = VendorHttpClient(**common, retry=replace(self.retry_policy, max_attempts=1))
            self._portal = PortalClient(http, filing=filing)
        return self._portal

    @staticmethod
    def path_of(spec: ResourceSpec) -> str:
        return "/patients" if spec.name == "coverage" else f"/{spec.name}"

    # --- session ----------------------------------------------------------------------------------
    def login(self, session) -> None:
        opened = self.portal().login(self.connection, mfa_timeout_s=self.options.mfa_timeout_s, mfa_poll_s=self.mfa_poll_s,
                                     sleep=self.mfa_sleep)
        session.method = opened["method"]
        session.access_token = opened["token"]
        session.expires_in(opened["expires_in"])

    # --- reading ----------------------------------------------------------------------------------
    def fetch_page(self, resource: ResourceSpec, state: dict[str, Any]) -> Page:
        size = min(self.options.page_size or resource.page_size, c.PAGE_SIZE)
        number = int(state.get("page", 1))
        path = self.path_of(resource)
        body = self.portal().page(path, page=number, page_size=size)
        items = [r for r in body["items"] if isinstance(r, dict)]
        # Coverage rows come from the patients list: a page of self-pay patients holds none, yet the list goes on.
        records = mapping.coverage_rows(items) if resource.name == "coverage" else items
        total, first_total = body["total"], state.get("total", body["total"])
        restarts = int(state.get("restarts", 0))
        # Records were deleted while we paged: later pages shifted back. Once seen, a shift stays seen
        # (a walk that could not start again settles nothing).
        shifted = bool(state.get("shifted")) or total < first_total or (
            number > 1 and not self._still_before(path, number, size, state.get("last_id")))
        if shifted and restarts < MAX_RESTARTS:
            # Walk again from the start.
            return Page(records, {"page": 1, "total": total, "restarts": restarts + 1}, done=False)
        if body.get("has_more") and items:
            return Page(records, {"page": number + 1, "total": min(total, first_total), "restarts": restarts,
                                  "last_id": str(items[-1].get("id")), "shifted": shifted}, done=False)
        # A full_diff run starts from page 1 every time: the next run's state is empty.
        return Page(records, {}, done=True, complete=not shifted)

    def _still_before(self, path: str, number: int, size: int, last_id: Any) -> bool:
        """Whether the record just before page `number` is still the last one the page before listed.

        A deletion offset by a booking (added at the end of the list) leaves `total` as it was, yet
        shifts every later page back by one: this one-record look at the boundary sees it."""
        if not last_id:
            return False
        items = self.portal().page(path, page=(number - 1) * size, page_size=1)["items"]
        return bool(items) and isinstance(items[0], dict) and str(items[0].get("id")) == last_id

    def fetch_one(self, resource: ResourceSpec, external_id: str) -> dict[str, Any] | None:
        if resource.name == "coverage":
            patient_id, _, _ = external_id.partition(":")
            record = self.portal().one(f"/patients/{patient_id}")
            rows = [r for r in mapping.coverage_rows([record] if record else []) if r["id"] == external_id]
            return rows[0] if rows else None
        return self.portal().one(f"{self.path_of(resource)}/{external_id}")

    def normalize(self, resource: ResourceSpec, raw: dict[str, Any], mapper: CodeMapper) -> dict[str, Any]:
        return mapping.NORMALIZERS[resource.name](raw, mapper)

    # --- writing ----------------------------------------------------------------------------------
    def check_write(self, name: str, payload: dict[str, Any]) -> None:
        if name == "book_appointment" and payload.get("visit_type") == "telehealth" and not is_entitled(
                self.tenant, Capability.TELEHEALTH_WRITE, self.connection):
            raise WriteRefused("entitlement_missing", f"booking a telehealth visit needs the {Capability.TELEHEALTH_WRITE} "
                               "entitlement (healow)", details={"capability": Capability.TELEHEALTH_WRITE})

    def write(self, name: str, payload: dict[str, Any], *, idempotency_key: str) -> WriteResult:
        portal = self.portal()
        if name == "book_appointment":
            visit_type = CodeMapper(self.tenant).source_code(MappingCategory.VISIT_TYPE, c.SOURCE_SYSTEM, payload["service_code"])
            try:
                body = mapping.appointment_body(payload, visit_type=visit_type, reference=idempotency_key)
            except ValueError as exc:
                raise WriteRefused("invalid_request", str(exc)) from None
            answer = portal.create_appointment(body)
            return WriteResult(str(answer["id"]), answer)
        if name == "check_eligibility":
            day = self.service_date(payload)
            answer = portal.eligibility(payload["patient"].external_id, day.isoformat(), str(payload.get("service_type") or "30"))
            return WriteResult(str(answer.get("trace_number") or ""), answer)
        if name == "submit_claims":
            return self._submit_claims(payload, idempotency_key)
        raise FinalError(f"eclinicalworks cannot {name!r}")

    def service_date(self, payload: dict[str, Any]) -> date:
        """The day asked about: the request's `service_date`, else today in the tenant's zone."""
        value = payload.get("service_date")
        if not value:
            return timezone.localdate(timezone=ZoneInfo(self.tenant.timezone))
        try:
            return date.fromisoformat(str(value))
        except ValueError:
            raise WriteRefused("invalid_request", f"service_date: {value!r} is not a date (YYYY-MM-DD)") from None

    def _submit_claims(self, payload: dict[str, Any], idempotency_key: str) -> WriteResult:
        kind = str(payload.get("kind") or "P").upper()
        if kind not in ("P", "I"):
            raise WriteRefused("invalid_request", f"kind: {kind!r} is not P (837P) or I (837I)")
        batch, export = prepare_batch(self.tenant, kind, idempotency_key, actor_label=f"connection:{self.connection.public_id}")
        if batch is None:
            problems = "; ".join((export.problems if export else [])[:5]) or "no claim is ready"
            raise WriteRefused("nothing_to_submit", f"no ready 837{kind} claim could be exported: {problems}",
                               details={"ready": export.ready if export else 0})
        answer = self.portal().submit_claim(batch.body, batch_label=f"(batch control number {batch.control_number})")
        return WriteResult(str(answer["batch_id"]), {**answer, "claim_batch_id": batch.pk})

    def keep_write_result(self, name: str, payload: dict[str, Any], result: WriteResult) -> Any:
        if name == "check_eligibility":
            return self._keep_eligibility(payload, result)
        if name == "submit_claims":
            batch = ClaimBatch.objects.get(pk=result.record["claim_batch_id"], tenant=self.tenant)
            record_acknowledgement(batch, result.record["ack_999"], result.external_id,
                                   actor_label=f"connection:{self.connection.public_id}")
            return batch
        raise FinalError(f"eclinicalworks keeps no result of {name!r}")

    def _keep_eligibility(self, payload: dict[str, Any], result: WriteResult) -> EligibilityCheck:
        answer, patient = result.record, payload["patient"]
        coverage = patient.coverages.filter(deleted_at__isnull=True).order_by("priority").first()
        check = EligibilityCheck(
            tenant=self.tenant, patient=patient, coverage=coverage, connection=self.connection,
            service_date=self.service_date(payload), service_types=[str(payload.get("service_type") or "30")],
            payer_name=coverage.payer if coverage else "", payer_id=coverage.payer_id if coverage else "",
            member_id=coverage.member_id if coverage else "", trace_number=result.external_id,
            request_x12=str(answer.get("x12_270") or ""),
        )
        text = answer.get("x12_271")
        if not isinstance(text, str) or not text:
            check.status, check.reason = EligibilityStatus.ERROR, "eClinicalWorks answered without a 271"
            check.save()
            return check
        return apply_271(check, text)

    def follow_up(self, name: str, record: Any) -> float | None:
        """submit_claims: look for the batch's 835; import it when the clearinghouse has it. Returns
        the seconds to wait before looking again, or None when done."""
        if name != "submit_claims":
            return None
        batch = ClaimBatch.objects.filter(pk=getattr(record, "pk", None), tenant=self.tenant).first()
        if batch is None or batch.era_file_id is not None or not batch.clearinghouse_reference:
            return None
        status = self.portal().claim_batch(batch.clearinghouse_reference)
        url = status.get("era_url") if isinstance(status, dict) else None
        if status.get("status") == "rejected" or not isinstance(url, str) or not url:
            return None if status.get("status") == "rejected" else self.options.era_poll_s
        era = self.portal().download(url)
        try:
            with transaction.atomic():
                import_batch_era(batch, era, actor_label=f"connection:{self.connection.public_id}")
        except X12Error as exc:
            raise FinalError(f"the 835 for claim batch {batch.control_number} does not read: {exc}") from None
        return None
