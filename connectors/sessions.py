"""Vendor sessions: log in once, keep the tokens encrypted, sign requests, re-login on 401,
follow rotation. The connector supplies the vendor's login; this module keeps the state."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import httpx
from django.db import transaction
from django.utils import timezone

from connectors.choices import SessionState
from connectors.errors import AuthenticationFailed, MfaRequired, VendorError
from connectors.models import VendorSession
from connectors.scrub import scrub

logger = logging.getLogger(__name__)

# A token this close to expiry is renewed before use rather than risked mid-page.
EXPIRY_MARGIN = timedelta(seconds=30)
MAX_SESSION_SECONDS = 30 * 24 * 3600  # longer claims are treated as 30 days


@dataclass
class SessionData:
    """What a login produces. Lives in memory during a job; persisted encrypted in VendorSession."""

    method: str = ""
    access_token: str = ""
    refresh_token: str = ""
    cookies: dict[str, str] = field(default_factory=dict)
    expires_at: datetime | None = None

    def expires_in(self, seconds: float | int | str | None) -> None:
        """Expiry from a vendor's `expires_in`; nonsense (not a number, negative, centuries) is clamped, not fatal."""
        try:
            value = float(seconds) if seconds else 0.0
        except (TypeError, ValueError):
            value = 0.0
        if value != value or value <= 0:  # NaN, zero, negative: no expiry known; a 401 will tell
            self.expires_at = None
            return
        self.expires_at = timezone.now() + timedelta(seconds=min(value, MAX_SESSION_SECONDS))


class SessionManager:
    """The AuthHook (see connectors.http) for one connection's connector."""

    def __init__(self, connector):
        self.connector = connector
        self.connection = connector.connection
        self._data: SessionData | None = None

    # --- state ----------------------------------------------------------------------------------
    def _load(self) -> SessionData | None:
        row = VendorSession.objects.filter(connection=self.connection).first()
        if row is None or row.state != SessionState.ACTIVE:
            return None
        if row.expires_at is not None and row.expires_at - EXPIRY_MARGIN <= timezone.now():
            return None
        return SessionData(
            method=row.method, access_token=row.access_token, refresh_token=row.refresh_token,
            cookies=json.loads(row.cookies) if row.cookies else {}, expires_at=row.expires_at,
        )

    def _save(self, data: SessionData, *, rotated: bool = False, logged_in: bool = False) -> None:
        now = timezone.now()
        fields = {
            "state": SessionState.ACTIVE, "method": data.method, "access_token": data.access_token,
            "refresh_token": data.refresh_token, "cookies": json.dumps(data.cookies, sort_keys=True),
            "expires_at": data.expires_at, "detail": "",
        }
        if logged_in:
            fields["obtained_at"] = now
        if rotated:
            fields["rotated_at"] = now
        with transaction.atomic():
            row, _ = VendorSession.objects.select_for_update().get_or_create(connection=self.connection)
            for name, value in fields.items():
                setattr(row, name, value)
            if logged_in:
                row.logins += 1
            row.save()

    def _fail(self, state: str, reason: str) -> None:
        VendorSession.objects.update_or_create(connection=self.connection, defaults={"state": state, "detail": scrub(reason, 300),
                                                                                      "access_token": "", "refresh_token": "", "cookies": ""})

    def current(self) -> SessionData:
        """A usable session, logging in when there is none (or it is about to expire)."""
        if self._data is not None and (self._data.expires_at is None or self._data.expires_at - EXPIRY_MARGIN > timezone.now()):
            return self._data
        self._data = self._load()
        if self._data is None:
            self.login()
        return self._data

    def login(self) -> SessionData:
        data = SessionData()
        try:
            self.connector.login(data)
        except MfaRequired as exc:
            self._fail(SessionState.AWAITING_MFA if "waiting" in str(exc) else SessionState.FAILED, str(exc))
            raise
        except VendorError as exc:
            self._fail(SessionState.FAILED, str(exc))
            raise
        self._save(data, logged_in=True)
        self._data = data
        logger.info("vendor=%s connection=%s logged in (%s)", self.connector.key, self.connection.pk, data.method)
        return data

    def expire(self) -> None:
        self._data = None
        VendorSession.objects.filter(connection=self.connection).update(state=SessionState.EXPIRED, access_token="", cookies="")

    # --- AuthHook -------------------------------------------------------------------------------
    def apply(self, request: httpx.Request) -> None:
        self.connector.apply_session(request, self.current())

    def refresh(self) -> None:
        """After a 401: log in again once. A second refusal is final (AuthenticationFailed)."""
        self._data = None
        try:
            self.login()
        except AuthenticationFailed:
            raise
        except VendorError as exc:
            raise AuthenticationFailed(f"re-login failed: {exc}") from exc

    def observe(self, response: httpx.Response) -> None:
        data = self._data
        if data is not None and self.connector.observe_session(response, data):
            self._save(data, rotated=True)
