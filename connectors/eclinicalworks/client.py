"""The eClinicalWorks portal's HTTP calls: log in (with MFA), list pages, read one, book, check
eligibility, submit claims and fetch the 835 the clearinghouse makes available."""

from __future__ import annotations

from typing import Any

import httpx

from connectors.auth_flows import PortalLogin
from connectors.eclinicalworks import constants as c
from connectors.errors import AuthenticationFailed, FinalError, RateLimited, RetryableError, WriteRefused
from connectors.http import VendorHttpClient

LOGIN = PortalLogin(
    vendor="eClinicalWorks", password_path="/authenticate", mfa_path="/authenticate/mfa",
    restart_codes=("403",),  # mfa_challenge_expired (spent or timed out)
    wrong_code_codes=("402",),  # invalid_mfa_code
)
APPOINTMENT_EXISTS = "203"


class PortalClient:
    def __init__(self, http: VendorHttpClient, *, filing: VendorHttpClient | None = None):
        self.http = http
        self.filing = filing or http  # a client that never sends a request twice (see submit_claim)

    # --- session ----------------------------------------------------------------------------------
    def login(self, connection, *, mfa_timeout_s: float, mfa_poll_s: float, sleep) -> dict[str, Any]:
        answer, method = LOGIN.login(self._post_json, connection, mfa_timeout_s=mfa_timeout_s, mfa_poll_s=mfa_poll_s, sleep=sleep)
        token = answer.get("session_token")
        if not token:
            raise AuthenticationFailed("eClinicalWorks opened no session (no session_token in the answer)")
        return {"token": token, "expires_in": answer.get("expires_in"), "method": method, "modules": answer.get("modules") or []}

    def _post_json(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            answer = self.http.request("POST", path, authenticated=False, json=body)
        except AuthenticationFailed as exc:
            # The portal's login codes are numbers (401, 402, 403): say which rule refused, so that a
            # wrong password reads as one. The vendor code stays as it came, for LOGIN's restarts.
            rule = exc.body.get("rule") if isinstance(exc.body, dict) else None
            if isinstance(rule, str) and rule.replace("_", "").isalnum() and len(rule) <= 40:
                raise AuthenticationFailed(f"{exc}: {rule}", status=exc.status, vendor_code=exc.vendor_code, body=exc.body) from None
            raise
        return _object(answer, path)

    # --- reading ----------------------------------------------------------------------------------
    def page(self, path: str, *, page: int, page_size: int = c.PAGE_SIZE) -> dict[str, Any]:
        body = self.http.get_json(path, params={"page": page, "page_size": min(page_size, c.PAGE_SIZE)})
        if not isinstance(body, dict) or not isinstance(body.get("items"), list) or not isinstance(body.get("total"), int):
            raise FinalError(f"eclinicalworks: {path} answered a page without items and total")
        return body

    def one(self, path: str) -> dict[str, Any] | None:
        try:
            return self.http.get_json(path)
        except FinalError as exc:
            if exc.status == 404:
                return None
            raise

    # --- writing ----------------------------------------------------------------------------------
    def create_appointment(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST /create_appointment. eClinicalWorks has no idempotency keys: the body's `reference`
        is ours, and a repeat (a retry after a lost answer) is answered 203 with the appointment
        the first attempt made, which is then the answer."""
        path = "/healow/book" if body.get("telehealth") else "/create_appointment"
        try:
            response = self.http.request("POST", path, json=body)
        except FinalError as exc:
            if exc.vendor_code == APPOINTMENT_EXISTS and isinstance(exc.body, dict):
                existing = (exc.body.get("details") or {}).get("appointment") or {}
                if existing.get("id"):
                    return existing
                appointment_id = (exc.body.get("details") or {}).get("appointment_id")
                if appointment_id and (found := self.one(f"/appointments/{appointment_id}")):
                    return found
            if exc.status in (403, 409, 422) and isinstance(exc.body, dict):
                raise refusal(exc.vendor_code, exc.body, exc.status) from None
            raise
        answer = _object(response, path)
        if not answer.get("id"):
            raise FinalError(f"eclinicalworks: POST {path} answered without an id")
        return answer

    def eligibility(self, patient_id: str, day: str, service_type: str) -> dict[str, Any]:
        try:
            return self.http.get_json("/eligibility", params={"patient_id": patient_id, "date": day, "service_type": service_type})
        except FinalError as exc:
            if exc.status in (403, 422) and isinstance(exc.body, dict):
                raise refusal(exc.vendor_code, exc.body, exc.status) from None
            raise

    def submit_claim(self, x12: str, *, batch_label: str = "") -> dict[str, Any]:
        """POST /submit_claim, sent once. The portal takes no idempotency key and the clearinghouse
        files whatever arrives: a file sent again after a lost answer is filed twice, and the payer
        denies every claim of the second filing as a duplicate (CO-18). So `filing` never resends on
        its own: a call that got no answer (or a 5xx) may have filed the claims and ends the write,
        naming the batch, for a biller to check at the clearinghouse. A 401 (sent again once, on the
        renewed session) or a 429 filed nothing."""
        for attempt in (1, 2):
            try:
                response = self.filing.request("POST", "/submit_claim", content=x12.encode("ascii"),
                                               headers={"Content-Type": "application/edi-x12"})
                break
            except RateLimited:
                raise
            except RetryableError as exc:
                raise FinalError(f"eclinicalworks: the claim file {batch_label} may have reached the clearinghouse, but its "
                                 f"answer did not come ({exc}); check the clearinghouse before sending it again") from None
            except FinalError as exc:
                if exc.status == 401 and attempt == 1:
                    continue  # refused before the session was renewed: nothing was filed
                if exc.status in (403, 422) and isinstance(exc.body, dict):
                    raise refusal(exc.vendor_code, exc.body, exc.status) from None
                raise
        answer = _object(response, "/submit_claim")
        if not answer.get("batch_id") or not isinstance(answer.get("ack_999"), str):
            raise FinalError("eclinicalworks: /submit_claim answered without a batch id and a 999")
        return answer

    def claim_batch(self, batch_id: str) -> dict[str, Any]:
        return self.http.get_json(f"/claims/{batch_id}")

    def download(self, url: str) -> bytes:
        """A signed, expiring link the portal handed out (the clearinghouse's 835). A path is on the
        portal's host; the link is its own credential, so the session token is not sent with it."""
        absolute = str(httpx.URL(self.http.base_url).join(url))
        response = self.http.request("GET", absolute, authenticated=False, headers={"Accept": "application/edi-x12, text/plain"})
        return response.content


def _object(response, path: str) -> dict[str, Any]:
    try:
        answer = response.json()
    except ValueError:
        raise FinalError(f"eclinicalworks: {path} did not answer JSON") from None
    if not isinstance(answer, dict):
        raise FinalError(f"eclinicalworks: {path} answered an unexpected shape")
    return answer


def refusal(code: str, body: dict[str, Any], status: int | None) -> WriteRefused:
    """eClinicalWorks' numeric refusal as the hub states it: the rule and safe figures, not the vendor's text."""
    rule, meaning = c.REFUSALS.get(code, (body.get("rule") if isinstance(body.get("rule"), str) else "refused",
                                          "eClinicalWorks refused the request"))
    raw = body.get("details") if isinstance(body.get("details"), dict) else {}
    details = {k: raw[k] for k in c.REFUSAL_FIGURES if isinstance(raw.get(k), int | str) and len(str(raw[k])) <= 64}
    if isinstance(raw.get("allowed"), list):
        details["allowed"] = [str(v)[:16] for v in raw["allowed"][:10]]
    if isinstance(raw.get("module"), str):
        details["module"] = raw["module"][:16]
    figures = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in details.items())
    return WriteRefused(rule, f"eClinicalWorks refused: {meaning}" + (f" ({figures})" if figures else ""),
                        details={"vendor_code": code, **details}, status=status)
