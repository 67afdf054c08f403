"""The simulated WellSky vendor: accounts, sessions, idempotent writes, mutations, and the surfaces.

Surfaces (one agency's data behind all three, as WellSky products differ by tenant):
- the portal surface (`portal.py`): `POST /sessions` with MFA, rotating cookie, JSON lists;
- Personal Care Connect (`pcc.py`): OAuth2 client credentials under `/oauth/` and `/v1/`;
- FHIR R4 "Connect" (`connect.py`): OAuth2 under `/fhir/`.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from sandbox.server import HttpError, Request, Response
from sandbox.table import Record
from sandbox.wellsky.data import SERVICES, Agency, totp_secret_for

DEFAULT_SESSION_TTL_S = 900  # portal sessions: 15 minutes
DEFAULT_TOKEN_TTL_S = 3600  # OAuth2 tokens (Personal Care Connect, FHIR Connect)
COOKIE_ROTATE_EVERY = 20  # authorized requests between cookie rotations
COOKIE_GRACE_S = 30  # the previous cookie still works this long after a rotation (requests in flight)
REFERRAL_DECISION_S = 3.0  # the agency decides a referral made through the API after this long
CHALLENGE_TTL_S = 300


@dataclass
class Account:
    username: str
    password: str
    agency: str
    mfa: str  # "", "totp", "sms" or "email"
    write: bool  # the agency licensed API writes
    totp_secret: str = ""
    phone: str = ""
    email: str = ""
    relay_url: str = ""  # where the SMS gateway / mailbox forwards codes (the hub's MFA relay), if set
    client_id: str = ""  # OAuth2 client for Personal Care Connect and FHIR Connect
    client_secret: str = ""


@dataclass
class Session:
    username: str
    expires_at: float  # monotonic
    cookie: str = ""
    previous_cookie: str = ""
    previous_until: float = 0.0
    requests: int = 0


@dataclass
class Challenge:
    username: str
    method: str
    code: str
    expires_at: float
    id: str = ""


@dataclass
class Stored:
    fingerprint: str
    response: Response


@dataclass
class WellSky:
    key: str = "wellsky"
    prefix: str = "wellsky"
    seed: int = 1
    scale: int = 120
    agency: Agency = None  # type: ignore[assignment]
    accounts_by_name: dict[str, Account] = field(default_factory=dict)
    sessions: dict[str, Session] = field(default_factory=dict)
    challenges: dict[str, Challenge] = field(default_factory=dict)
    idempotent: dict[tuple[str, str, str], Stored] = field(default_factory=dict)
    pending_referrals: dict[int, float] = field(default_factory=dict)  # referral index -> monotonic time made
    lock: threading.RLock = field(default_factory=threading.RLock)
    server: Any = None

    def __post_init__(self) -> None:
        if self.agency is None:
            self.agency = Agency(seed=self.seed, scale=self.scale)
        password = f"sandbox-{self.seed}"
        for account in (
            Account("sunrise.admin", password, "Sunrise Home Care", "totp", True),
            Account("sunrise.sms", password, "Sunrise Home Care", "sms", True, phone="+15555550101"),
            Account("sunrise.email", password, "Sunrise Home Care", "email", True, email="scheduling@sunrise.example"),
            Account("sunrise.api", password, "Sunrise Home Care", "", True, client_id="sunrise-client", client_secret=f"secret-{self.seed}"),
            Account("lakeside.viewer", password, "Lakeside Care (read-only licence)", "totp", False, client_id="lakeside-client",
                    client_secret=f"lakeside-{self.seed}"),
        ):
            account.totp_secret = totp_secret_for(self.seed, account.username)
            self.accounts_by_name[account.username] = account

    def attach(self, server) -> None:
        self.server = server

    # --- the control plane ----------------------------------------------------------------------
    def accounts(self) -> list[dict[str, Any]]:
        return [asdict(a) for a in self.accounts_by_name.values()]

    def configure_account(self, username: str, values: dict[str, Any]) -> dict[str, Any]:
        account = self.accounts_by_name.get(username)
        if account is None:
            raise HttpError(404, "not_found", f"no account {username!r}")
        checks = {"relay_url": lambda v: isinstance(v, str) and (v == "" or v.startswith(("http://", "https://"))),
                  "mfa": lambda v: v in ("", "totp", "sms", "email"), "write": lambda v: isinstance(v, bool)}
        for key, valid in checks.items():
            if key in values and not valid(values[key]):
                raise HttpError(400, "invalid", f"{key} has a value this account cannot take")
        for key in checks:
            if key in values:
                setattr(account, key, values[key])
        return asdict(account)

    def state(self) -> dict[str, int]:
        self.decide_due_referrals()
        return {name.replace("-", "_"): table.live_count() for name, table in self.agency.tables.items()}

    # --- dispatch ---------------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        from sandbox.wellsky import connect, pcc, portal  # surfaces import this module

        if request.path.startswith(("/oauth/", "/v1/")):
            return pcc.handle(self, request)
        if request.path.startswith("/fhir/"):
            return connect.handle(self, request)
        return portal.handle(self, request)

    # --- portal sessions ---------------------------------------------------------------------------
    def session_ttl(self, request: Request, default: int = DEFAULT_SESSION_TTL_S) -> int:
        return request.faults.session_ttl_s or default

    def check_password(self, username: Any, password: Any) -> Account:
        account = self.accounts_by_name.get(username) if isinstance(username, str) else None
        if account is None or not isinstance(password, str) or not secrets.compare_digest(password, account.password):
            raise HttpError(401, "invalid_credentials", "the username or password is wrong")
        return account

    def start_challenge(self, account: Account) -> Challenge:
        code = "" if account.mfa == "totp" else f"{secrets.randbelow(10**6):06d}"
        challenge = Challenge(account.username, account.mfa, code, time.monotonic() + CHALLENGE_TTL_S, id=secrets.token_urlsafe(12))
        with self.lock:
            self.challenges[challenge.id] = challenge
        if code:
            text = f"Your WellSky verification code is {code}. It expires in 5 minutes."
            to = account.phone if account.mfa == "sms" else account.email
            if self.server is not None:
                self.server.send_message(channel=account.mfa, to=to, text=text, code=code)
            if account.relay_url:
                threading.Thread(target=_forward, args=(account.relay_url, text, account.mfa), daemon=True).start()
        return challenge

    def answer_challenge(self, challenge_id: Any, code: Any) -> Account:
        import pyotp

        with self.lock:
            challenge = self.challenges.get(challenge_id) if isinstance(challenge_id, str) else None
            if challenge is None or challenge.expires_at < time.monotonic():
                raise HttpError(401, "challenge_expired", "the MFA challenge is unknown or expired; log in again")
        account = self.accounts_by_name[challenge.username]
        if not isinstance(code, str):
            raise HttpError(401, "invalid_mfa_code", "the verification code is wrong")
        ok = pyotp.TOTP(account.totp_secret).verify(code, valid_window=1) if challenge.method == "totp" else secrets.compare_digest(code, challenge.code)
        if not ok:
            raise HttpError(401, "invalid_mfa_code", "the verification code is wrong")
        with self.lock:
            self.challenges.pop(challenge_id, None)
        return account

    def open_session(self, account: Account, ttl: int) -> tuple[str, Session]:
        token = secrets.token_urlsafe(24)
        session = Session(account.username, time.monotonic() + ttl, cookie=secrets.token_urlsafe(16))
        with self.lock:
            self.sessions[token] = session
        return token, session

    def bearer(self, request: Request) -> tuple[str, Session]:
        header = request.headers.get("Authorization") or ""
        token = header[7:] if header.startswith("Bearer ") else ""
        with self.lock:
            session = self.sessions.get(token)
        if session is None:
            raise HttpError(401, "invalid_token", "no valid session; POST /sessions to log in")
        if session.expires_at < time.monotonic():
            with self.lock:
                self.sessions.pop(token, None)
            raise HttpError(401, "session_expired", "the session expired; log in again")
        return token, session

    def account_of(self, session: Session) -> Account:
        return self.accounts_by_name[session.username]

    # --- idempotent writes --------------------------------------------------------------------------
    def idempotent_write(self, request: Request, account: Account, perform) -> Response:
        """Run `perform()` once per Idempotency-Key; a retry with the same key gets the first answer."""
        key = request.headers.get("Idempotency-Key") or ""
        if not key:
            return perform()
        if len(key) > 200:
            raise HttpError(400, "invalid_idempotency_key", "the Idempotency-Key is longer than 200 characters")
        fingerprint = hashlib.sha256(request.method.encode() + request.path.encode() + request.body).hexdigest()
        slot = (account.agency, request.path, key)
        with self.lock:
            stored = self.idempotent.get(slot)
            if stored is not None:
                if stored.fingerprint != fingerprint:
                    raise HttpError(422, "idempotency_key_reused", "this Idempotency-Key was used with a different request")
                return stored.response
            response = perform()
            if response.status < 500:
                self.idempotent[slot] = Stored(fingerprint, response)
            return response

    # --- referrals the agency decides later ------------------------------------------------------------
    def decide_due_referrals(self) -> None:
        if not self.pending_referrals:
            return
        now = time.monotonic()
        referrals = self.agency.table("referrals")
        with self.lock:
            for index, made in list(self.pending_referrals.items()):
                if now - made < REFERRAL_DECISION_S:
                    continue
                self.pending_referrals.pop(index)
                fields = referrals.fields(index)
                # The agency declines services it does not provide; it accepts the rest.
                fields["status"] = "Accepted" if fields.get("service_code") in SERVICES else "Declined"
                fields["decided_at"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                referrals.replace(index, fields)

    # --- changes made in the vendor (POST /_sandbox/mutate) ------------------------------------------
    def mutate(self, spec: dict[str, Any]) -> dict[str, Any]:
        counts = {}
        for key in ("creates", "changes", "deletes"):
            value = spec.get(key, 0)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise HttpError(400, "invalid", f"{key} must be a whole number ≥ 0")
            counts[key] = value
        only = spec.get("resource")
        if only is not None and (not isinstance(only, str) or only not in self.agency.tables):
            raise HttpError(400, "invalid", f"resource must be one of {', '.join(self.agency.tables)}")
        rng = self.server.rng if self.server is not None else __import__("random").Random(self.seed)
        done: dict[str, dict[str, list[str]]] = {"created": {}, "changed": {}, "deleted": {}}
        with self.lock:
            for _ in range(counts["creates"]):
                resource, record_id = self._create_one(rng, only)
                done["created"].setdefault(resource, []).append(record_id)
            for _ in range(counts["changes"]):
                found = self._change_one(rng, only)
                if found:
                    done["changed"].setdefault(found[0], []).append(found[1])
            for _ in range(counts["deletes"]):
                found = self._delete_one(rng, only)
                if found:
                    done["deleted"].setdefault(found[0], []).append(found[1])
            if spec.get("decide_referrals"):
                for index in self.pending_referrals:
                    self.pending_referrals[index] = 0.0
        self.decide_due_referrals()
        from sandbox.wellsky import pcc

        pcc.notify_mutation(self, done)  # Personal Care Connect subscribers get their thin pings
        return done

    def _random_live(self, rng, resource: str, where=None) -> int | None:
        table = self.agency.table(resource)
        for _ in range(200):
            index = rng.randrange(table.count)
            if index not in table.deleted and (where is None or where(index)):
                return index
        return None

    def _create_one(self, rng, only: str | None) -> tuple[str, str]:
        agency = self.agency
        resource = only or ("patients" if rng.random() < 0.25 else "appointments")
        if resource == "appointments":
            patient = self._random_live(rng, "patients", lambda i: i < agency.scale)
            last_visit = patient + (agency.sizes["appointments"] - 1 - patient) // agency.scale * agency.scale
            fields = agency.table("appointments").fields(last_visit)
            start = datetime.fromisoformat(fields["start"]) + timedelta(days=2)
            end = datetime.fromisoformat(fields["end"]) + timedelta(days=2)
            fields.update(start=agency._iso(start), end=agency._iso(end), status="Scheduled", notes="Booked by the office")
            index = agency.table("appointments").create(fields)
            agency.booked.setdefault(patient, []).append(index)
            agency.forget_units(patient)
            return resource, agency.table("appointments").id_of(index)
        if resource == "patients":
            template = agency.table("patients").fields(rng.randrange(agency.scale))
            index = agency.table("patients").count
            template.update(mrn=f"WS{100000 + index}", last_name=f"{template['last_name']}-{index}")
            template["identifiers"] = [{"type": "MRN", "value": template["mrn"]}]
            return resource, agency.table("patients").id_of(agency.table("patients").create(template))
        table = agency.table(resource)
        fields = table.fields(rng.randrange(table.base_count))
        return resource, table.id_of(table.create(fields))

    def _change_one(self, rng, only: str | None) -> tuple[str, str] | None:
        agency = self.agency
        if only:
            resource = only
        else:
            names = [n for n in agency.tables if n != "referrals"]
            resource = rng.choices(names, weights=[agency.tables[n].live_count() for n in names])[0]
        index = self._random_live(rng, resource)
        if index is None:
            return None
        table = agency.table(resource)
        table.change(index)
        if resource == "appointments":
            agency.forget_units(agency.table("authorizations").index_of(table.fields(index)["authorization_id"]))
        return resource, table.id_of(index)

    def _delete_one(self, rng, only: str | None) -> tuple[str, str] | None:
        agency = self.agency
        resource = only or "appointments"
        table = agency.table(resource)
        where = None
        if resource == "appointments":  # the office deletes future visits, which nothing else refers to
            where = lambda i: table.fields(i)["status"] == "Scheduled"  # noqa: E731
        index = self._random_live(rng, resource, where)
        if index is None:
            return None
        authorization = table.fields(index).get("authorization_id") if resource == "appointments" else None
        table.delete(index)
        if authorization:
            agency.forget_units(agency.table("authorizations").index_of(authorization))
        return resource, table.id_of(index)

    # --- the records as surfaces serve them ------------------------------------------------------------
    def with_live_fields(self, resource: str, record: Record) -> Record:
        """Fill fields computed at read time (units used on an authorization)."""
        if resource == "authorizations" and not record.get("deleted"):
            index = self.agency.table("authorizations").index_of(record["id"])
            used = self.agency.units_used(index)
            record["units_used"] = used
            record["units_remaining"] = max(0.0, float(record["units_allowed"]) - used)
        return record


def _forward(url: str, text: str, channel: str) -> None:
    """The SMS gateway / mail forwarder: post the message to the relay the account names."""
    try:
        httpx.post(url, json={"text": text, "channel": channel}, timeout=5)
    except httpx.HTTPError:
        pass  # a forwarder that cannot reach the hub drops the message; the login times out clearly
