"""Building blocks for vendor logins: TOTP codes, waiting for relayed SMS/email codes, OAuth2
client credentials, SMART Backend Services assertions (RS384) and the JWT-bearer grant (HS256)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jwt
import pyotp
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from connectors.choices import SessionState
from connectors.errors import AuthenticationFailed, MfaRequired
from connectors.models import MfaCode, VendorSession
from tenants.models import Connection

CODE_PATTERN = re.compile(r"(?<!\d)(\d{4,8})(?!\d)")


def totp_code(secret: str, at: float | None = None) -> str:
    if not secret:
        raise MfaRequired("the vendor asked for a TOTP code but the connection's credential has no TOTP secret")
    try:
        return pyotp.TOTP(secret).at(at if at is not None else time.time())
    except ValueError:  # not base32, or shorter than the 112 bits pyotp demands
        raise AuthenticationFailed("the connection's TOTP secret is not a base32 secret of at least 112 bits; enter it again") from None


def extract_code(text: str) -> str | None:
    """The first 4–8 digit number in a relayed message ('Your WellSky code is 482913')."""
    match = CODE_PATTERN.search(text or "")
    return match.group(1) if match else None


def relay_token(connection: Connection) -> str:
    """The secret an SMS gateway or mailbox forwarder presents to /hooks/mfa/<connection>/."""
    return hmac.new(settings.SECRET_KEY.encode(), f"mfa-relay:{connection.public_id}".encode(), hashlib.sha256).hexdigest()[:40]


def wait_for_mfa_code(
    connection: Connection, channel: str, *, since: datetime, timeout: float, poll: float = 0.5, sleep=time.sleep
) -> str:
    """Wait up to `timeout` seconds for a code relayed after `since`, consume it and return it.

    Raises MfaRequired naming the channel when none came: the login fails clearly, never hangs.
    While it waits, the connection's VendorSession says so (state awaiting_mfa), for the admin and API.
    """
    VendorSession.objects.update_or_create(
        connection=connection, defaults={"state": SessionState.AWAITING_MFA, "detail": f"waiting for a {channel} code"},
    )
    deadline = time.monotonic() + timeout
    while True:
        with transaction.atomic():
            code = (
                MfaCode.objects.select_for_update()
                .filter(connection=connection, channel=channel, consumed_at__isnull=True, received_at__gte=since)
                .order_by("received_at")
                .first()
            )
            if code is not None:
                MfaCode.objects.filter(pk=code.pk).update(consumed_at=timezone.now())
                return code.code
        if time.monotonic() >= deadline:
            raise MfaRequired(f"no {channel} code arrived within {timeout:g}s; check the relay to /hooks/mfa/")
        sleep(poll)


@dataclass(frozen=True)
class PortalLogin:
    """How one vendor's portal logs in with a password and an MFA challenge.

    `post(path, body)` sends a JSON POST without a session and returns the JSON answer (raising
    AuthenticationFailed with the vendor's code on a refusal). The password answer either opens the
    session or sets a challenge (`mfa_required`, `challenge_id`, `method`: totp, sms or email).
    """

    vendor: str
    password_path: str
    mfa_path: str
    restart_codes: tuple[str, ...]  # the challenge is gone (expired, used up): start the login over
    wrong_code_codes: tuple[str, ...]  # this code was refused: try the next relayed one
    attempts: int = 3  # logins started over at most this many times
    codes_per_challenge: int = 3  # relayed codes tried against one challenge

    def login(self, post: Callable[[str, dict], dict[str, Any]], connection, *, mfa_timeout_s: float, mfa_poll_s: float,
              sleep=time.sleep) -> tuple[dict[str, Any], str]:
        """(the answer that opened the session, the method used: password, totp, sms or email).

        A challenge that cannot be answered (`restart_codes`, or a relayed code of another login)
        starts the login over, at most `attempts` times; a wrong TOTP secret fails all of them, loudly."""
        for attempt in range(1, self.attempts + 1):
            try:
                return self._login(post, connection, mfa_timeout_s=mfa_timeout_s, mfa_poll_s=mfa_poll_s, sleep=sleep)
            except AuthenticationFailed as exc:
                if exc.vendor_code not in self.restart_codes + self.wrong_code_codes or attempt == self.attempts:
                    raise
        raise AssertionError("unreachable")

    def _login(self, post, connection, *, mfa_timeout_s: float, mfa_poll_s: float, sleep) -> tuple[dict[str, Any], str]:
        credential = connection.credential
        if not credential.username or not credential.password:
            raise AuthenticationFailed(f"the {self.vendor} credential needs a username and a password")
        started = timezone.now()
        answer = post(self.password_path, {"username": credential.username, "password": credential.password})
        if not answer.get("mfa_required"):
            return answer, "password"
        method, challenge = answer.get("method", ""), answer.get("challenge_id", "")
        if method == "totp":
            return post(self.mfa_path, {"challenge_id": challenge, "code": totp_code(credential.totp_secret)}), method
        if method not in ("sms", "email"):
            raise MfaRequired(f"{self.vendor} asked for an MFA method the hub cannot answer: {method!r}")
        # Relayed codes in the order they came: when a resent login opened a second challenge, the
        # first code belongs to the first one.
        for attempt in range(1, self.codes_per_challenge + 1):
            code = wait_for_mfa_code(connection, method, since=started, timeout=mfa_timeout_s, poll=mfa_poll_s, sleep=sleep)
            try:
                return post(self.mfa_path, {"challenge_id": challenge, "code": code}), method
            except AuthenticationFailed as exc:
                if exc.vendor_code not in self.wrong_code_codes or attempt == self.codes_per_challenge:
                    raise
        raise AssertionError("unreachable")


def oauth2_client_credentials(client, token_url: str, client_id: str, client_secret: str, scope: str = "") -> dict:
    """RFC 6749 §4.4. Returns the token response (access_token, expires_in, …)."""
    if not client_id or not client_secret:
        raise AuthenticationFailed("the credential needs an OAuth client id and secret")
    data = {"grant_type": "client_credentials"}
    if scope:
        data["scope"] = scope
    # HTTP Basic, built here: the client's request() takes headers, not httpx's auth= argument.
    basic = base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()
    response = client.request("POST", token_url, data=data, headers={"Authorization": f"Basic {basic}"}, authenticated=False)
    return _token(response)


def smart_backend_token(client, token_url: str, client_id: str, private_key_pem: str, *, scope: str, kid: str = "", algorithm: str = "RS384") -> dict:
    """SMART Backend Services: a client_credentials grant with a signed JWT client assertion."""
    if not client_id or not private_key_pem:
        raise AuthenticationFailed("the credential needs a client id and a private key (PEM)")
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": token_url, "exp": now + 300, "iat": now, "jti": uuid.uuid4().hex}
    headers = {"kid": kid} if kid else None
    try:
        assertion = jwt.encode(claims, private_key_pem, algorithm=algorithm, headers=headers)
    except (ValueError, TypeError, jwt.PyJWTError) as exc:
        raise AuthenticationFailed(f"cannot sign the client assertion ({type(exc).__name__}); check the private key") from None
    response = client.request("POST", token_url, authenticated=False, data={
        "grant_type": "client_credentials", "scope": scope,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer", "client_assertion": assertion,
    })
    return _token(response)


def jwt_bearer_token(client, token_url: str, client_id: str, client_secret: str, *, scope: str = "all") -> dict:
    """RFC 7523 JWT-bearer grant with an HS256 assertion signed by the client secret (Welkin v1)."""
    now = int(time.time())
    assertion = jwt.encode({"iss": client_id, "aud": token_url, "exp": now + 300, "iat": now, "scope": scope}, client_secret, algorithm="HS256")
    response = client.request("POST", token_url, authenticated=False, data={
        "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion,
    })
    return _token(response)


def _token(response) -> dict:
    try:
        body = response.json()
    except ValueError:
        raise AuthenticationFailed("the token endpoint did not answer JSON") from None
    if not isinstance(body, dict) or not body.get("access_token"):
        raise AuthenticationFailed("the token endpoint answered without an access_token")
    return body
