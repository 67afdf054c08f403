"""The WellSky portal's HTTP calls: log in (with MFA), list pages, read one, write with a key."""

from __future__ import annotations

from http.cookies import CookieError, SimpleCookie
from typing import Any

import httpx

from connectors.auth_flows import PortalLogin
from connectors.errors import AuthenticationFailed, FinalError, WriteRefused
from connectors.http import VendorHttpClient
from connectors.wellsky.constants import PAGE_LIMIT, SESSION_COOKIE

LOGIN = PortalLogin(
    vendor="WellSky", password_path="/sessions", mfa_path="/sessions/mfa",
    # The challenge was used up by an answer that got lost, or (SMS/email) a resent POST /sessions
    # opened a second challenge and the code that came first belongs to the other.
    restart_codes=("challenge_expired",), wrong_code_codes=("invalid_mfa_code",),
)


class PortalClient:
    def __init__(self, http: VendorHttpClient):
        self.http = http

    # --- session ----------------------------------------------------------------------------------
    def login(self, connection, *, mfa_timeout_s: float, mfa_poll_s: float, sleep) -> dict[str, Any]:
        """POST /sessions, then answer the MFA challenge it sets (`LOGIN`). Returns {token, expires_in, cookie, method}."""
        answer, method = LOGIN.login(self._post_json, connection, mfa_timeout_s=mfa_timeout_s, mfa_poll_s=mfa_poll_s, sleep=sleep)
        token = answer.get("token")
        cookie = answer.get("_cookie")
        if not token or not cookie:
            raise AuthenticationFailed("WellSky opened no session (no token or no session cookie in the answer)")
        return {"token": token, "expires_in": answer.get("expires_in"), "cookie": cookie, "method": method}

    def _post_json(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self.http.request("POST", path, authenticated=False, json=body)
        try:
            answer = response.json()
        except ValueError:
            raise FinalError(f"wellsky: {path} did not answer JSON") from None
        if not isinstance(answer, dict):
            raise FinalError(f"wellsky: {path} answered an unexpected shape")
        answer["_cookie"] = session_cookie(response)
        return answer

    # --- reading ----------------------------------------------------------------------------------
    def page(self, path: str, *, since: str = "", cursor: str = "", limit: int = PAGE_LIMIT) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": min(limit, PAGE_LIMIT)}
        if since:
            params["updated_since"] = since
        if cursor:
            params["cursor"] = cursor
        body = self.http.get_json(path, params=params)
        if not isinstance(body, dict) or not isinstance(body.get("data"), list) or not isinstance(body.get("paging"), dict):
            raise FinalError(f"wellsky: {path} answered a page without data and paging")
        return body

    def one(self, path: str) -> dict[str, Any] | None:
        try:
            return self.http.get_json(path)
        except FinalError as exc:
            if exc.status == 404:
                return None
            raise

    # --- writing ----------------------------------------------------------------------------------
    def post(self, path: str, body: dict[str, Any], *, idempotency_key: str) -> dict[str, Any]:
        """A write, retried safely on 5xx and timeouts because WellSky keys it by Idempotency-Key."""
        try:
            response = self.http.request("POST", path, json=body, headers={"Idempotency-Key": idempotency_key})
        except FinalError as exc:
            if exc.status in (403, 409, 422) and isinstance(exc.body, dict):  # a rule refused it, not the session
                raise refusal(exc.vendor_code, exc.body, exc.status) from None
            raise
        try:
            answer = response.json()
        except ValueError:
            raise FinalError(f"wellsky: POST {path} answered non-JSON") from None
        if not isinstance(answer, dict) or not answer.get("id"):
            raise FinalError(f"wellsky: POST {path} answered without an id")
        return answer


def refusal(code: str, body: dict[str, Any], status: int | None) -> WriteRefused:
    """WellSky's refusal as the hub states it: the rule, what it means, and the figures behind it.
    WellSky's own free text is not copied (it may quote the patient)."""
    code = code or "refused"
    details = {k: body[k] for k in REFUSAL_FIGURES if isinstance(body.get(k), int | float | str) and len(str(body[k])) <= 64}
    fields = [e["field"] for e in body.get("errors") or [] if isinstance(e, dict) and isinstance(e.get("field"), str)]
    if fields:
        details["fields"] = fields[:10]
    figures = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in details.items() if k != "fields")
    meaning = REFUSALS.get(code, "WellSky refused the request")
    return WriteRefused(code, f"WellSky refused: {meaning}" + (f" ({figures})" if figures else ""), details=details, status=status)


# What WellSky's refusal codes mean, and the figures its refusals carry that are safe to keep.
REFUSALS = {
    "authorization_units_exceeded": "the visit needs more units than the payer authorization has left",
    "outside_authorization_dates": "the visit falls outside the payer authorization's dates",
    "no_authorization": "no payer authorization covers this service",
    "write_not_permitted": "this WellSky account's licence has no API write access",
    "validation_failed": "WellSky found the request invalid",
    "idempotency_key_reused": "the idempotency key was used with a different request",
}
REFUSAL_FIGURES = ("authorization_id", "units_requested", "units_remaining")


def session_cookie(response: httpx.Response) -> str:
    """The WSSID value a response sets, or ''."""
    for header in response.headers.get_list("set-cookie"):
        jar = SimpleCookie()
        try:
            jar.load(header)
        except CookieError:  # an unparsable Set-Cookie is one we ignore
            continue
        if SESSION_COOKIE in jar:
            return jar[SESSION_COOKIE].value
    return ""
