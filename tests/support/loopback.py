"""A small vendor on loopback for testing the connector framework over real HTTP, and its connector.

The server: `POST /login` (password, then a TOTP or SMS code when MFA is on) → bearer token with a
TTL; `GET /records?updated_since=&cursor=&limit=` pages ordered by (updated_at, id); faults
(5xx rate, 429 with or without Retry-After, latency, session expiry, tokens revoked mid-sync,
token rotation through an `X-Rotated-Token` response header) set on `server.faults`.
The connector (vendor key "loopback") reads `records` incrementally (cursor mode) and
`records_all` by full diff. Worker processes load it with HUB_EXTRA_CONNECTORS=tests.support.loopback.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import pyotp

from canonical.codes import CodeMapper
from connectors.auth_flows import totp_code, wait_for_mfa_code
from connectors.base import Connector, Page, ResourceSpec
from connectors.choices import SyncMode
from connectors.errors import AuthenticationFailed, InvalidPayload
from connectors.http import RetryPolicy, VendorHttpClient
from connectors.ratelimit import RateLimit
from connectors.registry import register
from connectors.sessions import SessionManager

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class Faults:
    error_rate: float = 0.0  # share of requests answered 503
    fail_next: int = 0  # the next N requests answer 503
    rate_limit_next: int = 0  # the next N requests answer 429
    retry_after: str | None = "1"  # the 429's Retry-After header (None: absent)
    latency_ms: int = 0
    token_ttl_s: float = 3600
    malformed_ids: set[str] = field(default_factory=set)  # records served with a broken birth date
    revoke_tokens_after: int = 0  # after N authorized GETs, every token is revoked once (a session ending mid-sync)
    rotate_every: int = 0  # every Nth authorized GET hands out a new token in X-Rotated-Token and revokes the old


@dataclass
class Store:
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    clock: int = 0  # seconds after EPOCH; each change moves it forward

    def stamp(self) -> str:
        self.clock += 1
        return (EPOCH + timedelta(seconds=self.clock)).isoformat()

    def seed(self, n: int, seed: int = 7) -> None:
        rng = random.Random(seed)
        families = ["Rivera", "Nguyen", "Okafor", "Smith", "Kowalski", "Haddad", "Johansson", "Tanaka"]
        givens = ["Ana", "Luis", "Mei", "Chinedu", "Sarah", "Piotr", "Layla", "Erik", "Yuki", "Grace"]
        for i in range(n):
            rid = f"r{i:06d}"
            self.records[rid] = {
                "id": rid, "family": rng.choice(families), "given": rng.choice(givens),
                "birth_date": f"{rng.randint(1930, 2005)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
                "gender": rng.choice(["male", "female"]), "mrn": f"MRN{i:07d}", "updated_at": self.stamp(), "deleted": False,
            }

    def change(self, rid: str, **fields: Any) -> None:
        self.records[rid].update(fields, updated_at=self.stamp())

    def delete(self, rid: str) -> None:
        self.records[rid].update(deleted=True, updated_at=self.stamp())

    def live(self) -> dict[str, dict[str, Any]]:
        return {rid: r for rid, r in self.records.items() if not r["deleted"]}


class LoopbackVendor(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, *, username="ops", password="pw-123", totp_secret: str | None = None, sms: bool = False):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.store = Store()
        self.faults = Faults()
        self.username, self.password, self.totp_secret, self.sms = username, password, totp_secret, sms
        self.tokens: dict[str, float] = {}  # token -> expiry (monotonic)
        self.challenges: dict[str, str] = {}  # challenge -> expected code
        self.sms_outbox: list[str] = []  # codes "sent" by SMS, for the test to relay
        self.requests: list[tuple[str, str]] = []
        self.arrivals: list[float] = []  # time.time() of each request's arrival (rate-limit tests)
        self.logins = 0
        self.authorized_gets = 0
        self.rotations = 0
        self.lock = threading.Lock()
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> LoopbackVendor:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
        self.server_close()

    def issue_token(self) -> dict:
        token = f"tok-{random.getrandbits(64):x}"
        with self.lock:
            self.tokens[token] = time.monotonic() + self.faults.token_ttl_s
            self.logins += 1
        return {"access_token": token, "expires_in": 3600}

    def revoke_tokens(self) -> None:
        """End every session now, as a vendor does on a password change or a server restart."""
        with self.lock:
            self.tokens.clear()

    def _after_authorized_get(self, token: str) -> dict[str, str]:
        """Apply the session faults after an authorized GET; return headers for its response."""
        faults = self.faults
        with self.lock:
            self.authorized_gets += 1
            count = self.authorized_gets
            if faults.revoke_tokens_after and count == faults.revoke_tokens_after:
                self.tokens.clear()  # this response still succeeds; the next call meets a 401
            if faults.rotate_every and count % faults.rotate_every == 0:
                fresh = f"tok-{random.getrandbits(64):x}"
                self.tokens[fresh] = self.tokens.pop(token, time.monotonic() + faults.token_ttl_s)
                self.rotations += 1
                return {"X-Rotated-Token": fresh}
        return {}


class _Handler(BaseHTTPRequestHandler):
    server: LoopbackVendor

    def log_message(self, *args) -> None:  # quiet
        return

    def _send(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        data = orjson.dumps(body) if body is not None else b""  # a vendor that answers fast: the bench times our side
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _faulted(self) -> bool:
        faults = self.server.faults
        if faults.latency_ms:
            time.sleep(faults.latency_ms / 1000)
        with self.server.lock:
            if faults.rate_limit_next > 0:
                faults.rate_limit_next -= 1
                self._send(429, {"code": "rate_limited"}, {"Retry-After": faults.retry_after} if faults.retry_after else {})
                return True
            if faults.fail_next > 0 or (faults.error_rate and random.random() < faults.error_rate):
                faults.fail_next = max(0, faults.fail_next - 1)
                self._send(503, {"code": "unavailable"})
                return True
        return False

    def do_POST(self) -> None:
        self.server.requests.append(("POST", self.path))
        self.server.arrivals.append(time.time())
        if self._faulted():
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        srv = self.server
        if self.path == "/login":
            if body.get("username") != srv.username or body.get("password") != srv.password:
                return self._send(401, {"code": "bad_credentials"})
            if srv.totp_secret or srv.sms:
                challenge = f"ch-{random.getrandbits(32):x}"
                if srv.sms:
                    code = f"{random.randint(0, 999999):06d}"
                    srv.challenges[challenge] = code
                    srv.sms_outbox.append(code)
                    return self._send(200, {"mfa": "sms", "challenge": challenge})
                srv.challenges[challenge] = "totp"
                return self._send(200, {"mfa": "totp", "challenge": challenge})
            return self._send(200, srv.issue_token())
        if self.path == "/login/mfa":
            expected = srv.challenges.pop(body.get("challenge", ""), None)
            ok = expected is not None and (
                pyotp.TOTP(srv.totp_secret).verify(body.get("code", ""), valid_window=1) if expected == "totp" else body.get("code") == expected
            )
            return self._send(200, srv.issue_token()) if ok else self._send(401, {"code": "bad_mfa_code"})
        return self._send(404, {"code": "not_found"})

    def do_GET(self) -> None:
        self.server.requests.append(("GET", self.path))
        self.server.arrivals.append(time.time())
        if self._faulted():
            return
        srv = self.server
        token = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
        with srv.lock:
            expiry = srv.tokens.get(token)
        if expiry is None or expiry < time.monotonic():
            return self._send(401, {"code": "token_expired"})
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        if parts.path == "/records":
            limit = min(int(query.get("limit", 100)), 1000)
            since = query.get("updated_since", "")
            after = query.get("cursor", "")
            include_deleted = bool(since)  # an incremental feed reports deletions; a full listing shows live records
            rows = sorted(
                (r for r in srv.store.records.values() if (include_deleted or not r["deleted"]) and r["updated_at"] > since),
                key=lambda r: (r["updated_at"], r["id"]),
            )
            if after:
                rows = [r for r in rows if (r["updated_at"], r["id"]) > tuple(after.split("|", 1))]
            page = rows[:limit]
            data = []
            for r in page:
                item = dict(r)
                if r["id"] in srv.faults.malformed_ids:
                    item["birth_date"] = "not-a-date"
                data.append(item)
            next_cursor = f"{page[-1]['updated_at']}|{page[-1]['id']}" if len(rows) > limit else None
            return self._send(200, {"data": data, "next": next_cursor}, srv._after_authorized_get(token))
        if parts.path.startswith("/records/"):
            record = srv.store.records.get(parts.path.rsplit("/", 1)[1])
            if record is None or record["deleted"]:
                return self._send(404, {"code": "not_found"})
            return self._send(200, record, srv._after_authorized_get(token))
        return self._send(404, {"code": "not_found"})


@register
class LoopbackConnector(Connector):
    key = "loopback"
    name = "Loopback test vendor"
    description = "A vendor on loopback, for tests and benchmarks."
    credential_fields = ("username", "password", "totp_secret")
    resources = (
        ResourceSpec("records", "patient", SyncMode.CURSOR, "patients.read", page_size=100),
        ResourceSpec("records_all", "patient", SyncMode.FULL_DIFF, "patients.read", page_size=100),
    )
    mfa_timeout_s = 10.0
    mfa_poll_s = 0.1
    # Tests replace these (monkeypatch) to make retries fast or to act while a login waits for a code.
    mfa_sleep: Callable[[float], None] = staticmethod(time.sleep)
    retry_policy = RetryPolicy(backoff_base=0.05, backoff_cap=0.5)

    def client(self) -> VendorHttpClient:
        if not hasattr(self, "_client"):
            rate = self.options.rate_limit_per_second
            self._client = VendorHttpClient(
                base_url=self.connection.base_url, vendor=self.key, connection_key=str(self.connection.public_id),
                auth=SessionManager(self), rate_limit=RateLimit(rate) if rate else None,
                retry=self.retry_policy,
            )
        return self._client

    def login(self, session) -> None:
        credential = self.connection.credential
        client = self.client()
        started = datetime.now(UTC)
        answer = client.request("POST", "/login", authenticated=False,
                                json={"username": credential.username, "password": credential.password}).json()
        if "mfa" in answer:
            if answer["mfa"] == "totp":
                code, method = totp_code(credential.totp_secret), "totp"
            else:
                code = wait_for_mfa_code(self.connection, "sms", since=started, timeout=self.mfa_timeout_s, poll=self.mfa_poll_s,
                                         sleep=self.mfa_sleep)
                method = "sms"
            answer = client.request("POST", "/login/mfa", authenticated=False, json={"challenge": answer["challenge"], "code": code}).json()
        else:
            method = "password"
        if "access_token" not in answer:
            raise AuthenticationFailed("the vendor gave no token")
        session.method = method
        session.access_token = answer["access_token"]
        session.expires_in(answer.get("expires_in"))

    def observe_session(self, response, session) -> bool:
        """The vendor rotates tokens by answering with X-Rotated-Token; the old one stops working."""
        rotated = response.headers.get("X-Rotated-Token", "")
        if not rotated or rotated == session.access_token:
            return False
        session.access_token = rotated
        return True

    def fetch_page(self, resource: ResourceSpec, state: dict[str, Any]) -> Page:
        size = self.options.page_size or resource.page_size
        params = {"limit": size}
        if resource.mode == SyncMode.CURSOR and state.get("updated_since"):
            params["updated_since"] = state["updated_since"]
        if state.get("cursor"):
            params["cursor"] = state["cursor"]
        body = self.client().get_json("/records", params=params)
        data = body["data"]
        live = [r for r in data if not r.get("deleted")]
        deleted = [r["id"] for r in data if r.get("deleted")]
        high = max([r["updated_at"] for r in data] + [state.get("high_water", state.get("updated_since", ""))])
        if body.get("next"):
            return Page(live, {**state, "cursor": body["next"], "high_water": high}, done=False, deleted_ids=deleted)
        final = {"updated_since": high} if resource.mode == SyncMode.CURSOR and high else {}
        return Page(live, final, done=True, deleted_ids=deleted)

    def fetch_one(self, resource: ResourceSpec, external_id: str) -> dict[str, Any] | None:
        from connectors.errors import FinalError

        try:
            return self.client().get_json(f"/records/{external_id}")
        except FinalError as exc:
            if exc.status == 404:
                return None
            raise

    def normalize(self, resource: ResourceSpec, raw: dict[str, Any], mapper: CodeMapper) -> dict[str, Any]:
        birth = raw.get("birth_date")
        try:
            if len(birth) != 10 or birth[4] != "-" or birth[7] != "-":  # fromisoformat also takes 20260101, 2026-W01-1
                raise ValueError(birth)
            date.fromisoformat(birth)
        except (TypeError, ValueError):
            raise InvalidPayload(f"birth_date {birth!r} is not YYYY-MM-DD", path="birth_date") from None
        return {
            "external_id": raw["id"], "family_name": raw["family"], "given_names": [raw["given"]], "birth_date": birth,
            "sex": raw["gender"], "identifiers": [{"system": "urn:loopback:mrn", "value": raw["mrn"]}],
        }
