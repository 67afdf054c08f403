"""The simulated Welkin Health vendor (v8, "Welkin Cloud"; the v1 JWT-bearer grant as an option), under /welkin/.

    POST /{tenant}/admin/api_clients/{clientName}   {"secret"} -> {"token": <JWT>}  (v8; no expiry in the answer)
    POST /v1/token                                   grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer,
                                                     assertion=<HS256 JWT by the client secret: iss, aud, exp> (v1)
    GET  /{tenant}/{instance}/<resource>             Spring paging: page (0-based), size (1–100, default 20),
                                                     updatedAfter=<ISO instant>; {content, totalPages, totalElements, last, number, size}
    GET  /{tenant}/{instance}/<resource>/{id}        one record; 404 when it is gone
    POST /{tenant}/{instance}/patients               create a patient -> 201 with Welkin's id
    PATCH /{tenant}/{instance}/calendar/events/{id}  change a visit (start, end, status, userId, eventType, title)
    POST /{tenant}/{instance}/patients/{id}/assessments   an assessment completed elsewhere -> 201
    GET  /{tenant}/{instance}/webhooks/deliveries    the notification audit: SENT, DELIVERED or FAILED per delivery

Resources: patients, users (care team: coaches), calendar/events, programs, care-plans, assessments, encounters.
Listing is in updatedAt order (then id). Writes take an `Idempotency-Key`: a retry gets the first answer.

Tokens: every authorized call needs `Authorization: Bearer <token>`; an expired token answers 401
with code TOKEN_EXPIRED (the client gets a new one). Lifetime: the account's `token_ttl_s`, or the
faults' `session_ttl_s` when set.

Notifications (ping and pull): every change (an API write, or POST /_sandbox/mutate) POSTs
{sourceId, patientId, tenantName, instanceName, eventEntity, eventSubtype, eventTime} — ids only,
no PHI — to the tenant's webhook URL (set by POST /_sandbox/accounts {"vendor": "welkin",
"username": <tenant>, "webhook_url"}), signed: `X-Welkin-Timestamp` (Unix seconds) and
`X-Welkin-Signature` = hex HMAC-SHA256(the tenant's webhook secret, "<timestamp>.<body>").
A non-2xx answer (or none) is retried with doubling pauses, `delivery_retries` times at most.
`mutate({"notify": false})` changes records without pinging (a lost ping, for reconciliation tests).
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import secrets
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt
import orjson

from sandbox.server import HttpError, Request, Response
from sandbox.table import Record, Table, stamp_of
from sandbox.welkin.data import FORMS, Tenant

DEFAULT_TOKEN_TTL_S = 3600
DEFAULT_SIZE, MAX_SIZE = 20, 100
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
DELIVERY_TIMEOUT_S = 5
BROKEN_DATE = "31/02/1950"
# API path -> table; event entity and subtype stem per table.
PATHS = {"patients": "patients", "users": "coaches", "calendar/events": "calendar_events", "programs": "programs",
         "care-plans": "care_plans", "assessments": "assessments", "encounters": "encounters"}
EVENTS = {"patients": ("PATIENT", "PATIENT"), "coaches": ("USER", "USER"), "calendar_events": ("CALENDAR", "CALENDAR_EVENT"),
          "programs": ("PROGRAM", "PROGRAM"), "care_plans": ("CARE_PLAN", "CARE_PLAN"), "assessments": ("ASSESSMENT", "ASSESSMENT"),
          "encounters": ("ENCOUNTER", "ENCOUNTER")}
ACTIONS = {"created": "CREATED", "changed": "UPDATED", "deleted": "DELETED"}
MALFORMED = {"patients": ("firstName", "birthDate"), "coaches": ("lastName", None), "calendar_events": ("patientId", "start"),
             "programs": ("name", None), "care_plans": ("patientId", "startDate"), "assessments": ("formName", "completedAt"),
             "encounters": ("patientId", "startTime")}
EVENT_FIELDS = ("start", "end", "status", "userId", "eventType", "title")
EVENT_STATUSES = ("SCHEDULED", "COMPLETED", "CANCELLED", "NO_SHOW")


@dataclass
class Account:
    """One Welkin tenant as its admin console shows it: the API client, the webhook settings."""

    username: str  # the tenant name
    instance: str
    client_id: str  # the API client's name
    client_secret: str
    webhook_secret: str
    webhook_url: str = ""
    token_ttl_s: int = DEFAULT_TOKEN_TTL_S


@dataclass
class Token:
    tenant: str
    expires_at: float  # monotonic


@dataclass
class Delivery:
    id: int
    url: str
    sourceId: str
    eventEntity: str
    eventSubtype: str
    status: str = "SENT"  # SENT (in flight or being retried), DELIVERED, FAILED
    attempts: int = 0
    responseStatus: int | None = None
    createdAt: str = ""


@dataclass
class Welkin:
    key: str = "welkin"
    prefix: str = "welkin"
    seed: int = 1
    scale: int = 60
    delivery_retries: int = 5  # after the first attempt
    retry_base_s: float = 0.5  # the first pause; each next pause doubles
    accounts_by_name: dict[str, Account] = field(default_factory=dict)
    tenants: dict[str, Tenant] = field(default_factory=dict)
    tokens: dict[str, Token] = field(default_factory=dict)
    deliveries: list[Delivery] = field(default_factory=list)
    expired_refusals: int = 0  # 401 TOKEN_EXPIRED answers, for tests
    idempotent: dict[tuple[str, str], Response] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)
    server: Any = None

    def __post_init__(self) -> None:
        self._ids = itertools.count(1)
        self._signing_key = f"welkin-sandbox-{self.seed}-{secrets.token_hex(8)}"
        for account in (Account("northwind", "live", "switchboard", f"welkin-secret-{self.seed}-{'n' * 24}", f"whsec-northwind-{self.seed}"),
                        Account("lakeside", "live", "lakeside-api", f"lakeside-secret-{self.seed}-{'l' * 24}", f"whsec-lakeside-{self.seed}")):
            self.accounts_by_name[account.username] = account
            self.tenants[account.username] = Tenant(seed=self.seed + len(self.tenants), scale=self.scale, name=account.username,
                                                    instance=account.instance)

    def attach(self, server) -> None:
        self.server = server

    # --- control plane ------------------------------------------------------------------------------
    def accounts(self) -> list[dict[str, Any]]:
        return [asdict(a) for a in self.accounts_by_name.values()]

    def configure_account(self, username: str, values: dict[str, Any]) -> dict[str, Any]:
        account = self.accounts_by_name.get(username)
        if account is None:
            raise HttpError(404, "not_found", f"no tenant {username!r}")
        checks = {"webhook_url": lambda v: isinstance(v, str) and (v == "" or urlsplit(v).scheme in ("http", "https")),
                  "webhook_secret": lambda v: isinstance(v, str) and len(v) >= 8,
                  "token_ttl_s": lambda v: isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 86_400}
        for key, valid in checks.items():
            if key in values and not valid(values[key]):
                raise HttpError(400, "invalid", f"{key} has a value this tenant cannot take")
        for key in checks:
            if key in values:
                setattr(account, key, values[key])
        return asdict(account)

    def state(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for tenant in self.tenants.values():
            for name, table in tenant.tables.items():
                counts[name] = counts.get(name, 0) + table.live_count()
        counts["deliveries"] = len(self.deliveries)
        return counts

    def tenant(self, name: str = "northwind") -> Tenant:
        return self.tenants[name]

    def mutate(self, spec: dict[str, Any]) -> dict[str, Any]:
        """{"creates", "changes", "deletes": n, "resource"?: table, "tenant"?: name, "notify"?: bool} — changes made in the UI."""
        counts = {}
        for key in ("creates", "changes", "deletes"):
            value = spec.get(key, 0)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10_000:
                raise HttpError(400, "invalid", f"{key} must be a whole number from 0 to 10000")
            counts[key] = value
        tenant = self.tenants.get(spec.get("tenant", "northwind"))
        if tenant is None:
            raise HttpError(400, "invalid", f"tenant must be one of {', '.join(self.tenants)}")
        only = spec.get("resource")
        if only is not None and only not in tenant.tables:
            raise HttpError(400, "invalid", f"resource must be one of {', '.join(tenant.tables)}")
        rng = self.server.rng if self.server is not None else __import__("random").Random(self.seed)
        names = [n for n in tenant.tables if n != "programs"]
        done: dict[str, dict[str, list[str]]] = {"created": {}, "changed": {}, "deleted": {}}
        with self.lock:
            for action, n in (("created", counts["creates"]), ("changed", counts["changes"]), ("deleted", counts["deletes"])):
                for _ in range(n):
                    resource = only or rng.choice(names if action != "deleted" else ["calendar_events", "assessments"])
                    table = tenant.table(resource)
                    if action == "created":
                        index = table.create(tenant.new_fields(rng, resource))
                    else:
                        index = self._random_live(rng, table)
                        if index is None:
                            continue
                        (table.change if action == "changed" else table.delete)(index)
                    done[action].setdefault(resource, []).append(table.id_of(index))
        if spec.get("notify", True):
            for action, by_table in done.items():
                for resource, ids in by_table.items():
                    for record_id in ids:
                        self.notify(tenant, resource, action, record_id)
        return done

    @staticmethod
    def _random_live(rng, table: Table) -> int | None:
        for _ in range(200):
            index = rng.randrange(table.count)
            if index not in table.deleted:
                return index
        return None

    # --- dispatch -------------------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        parts = [p for p in request.path.split("/") if p]
        if parts == ["v1", "token"]:
            self._allow(request, "POST")
            return self._v1_token(request)
        if len(parts) == 4 and parts[1:3] == ["admin", "api_clients"]:
            self._allow(request, "POST")
            return self._v8_token(request, parts[0], parts[3])
        if len(parts) < 3:
            raise HttpError(404, "NOT_FOUND", f"no such path {request.path}; paths are /{{tenant}}/{{instance}}/<resource>")
        tenant_name, instance, rest = parts[0], parts[1], parts[2:]
        self._authorize(request, tenant_name)
        tenant = self.tenants[tenant_name]
        if instance != tenant.instance:
            raise HttpError(404, "NOT_FOUND", f"tenant {tenant_name} has no instance {instance!r}")
        if rest == ["webhooks", "deliveries"]:
            self._allow(request, "GET")
            with self.lock:
                return Response(200, {"content": [asdict(d) for d in self.deliveries if d.url]})
        if len(rest) == 3 and rest[0] == "patients" and rest[2] == "assessments":
            self._allow(request, "POST")
            return self._idempotent(request, tenant_name, lambda: self._create_assessment(request, tenant, rest[1]))
        joined = "/".join(rest)
        for path, resource in sorted(PATHS.items(), key=lambda item: -len(item[0])):
            if joined == path:
                if request.method == "POST" and resource == "patients":
                    return self._idempotent(request, tenant_name, lambda: self._create_patient(request, tenant))
                self._allow(request, "GET")
                return self._list(request, tenant, resource)
            if joined.startswith(path + "/") and "/" not in joined[len(path) + 1:]:
                record_id = joined[len(path) + 1:]
                if request.method in ("PATCH", "PUT") and resource == "calendar_events":
                    return self._idempotent(request, tenant_name, lambda record_id=record_id: self._update_event(request, tenant, record_id))
                self._allow(request, "GET")
                return Response(200, self._render(tenant.table(resource), self._index(tenant, resource, record_id)))
        raise HttpError(404, "NOT_FOUND", f"no resource at {joined!r}; this sandbox serves " + ", ".join(PATHS))

    @staticmethod
    def _allow(request: Request, method: str) -> None:
        if request.method != method:
            raise HttpError(405, "METHOD_NOT_ALLOWED", f"{request.method} is not allowed here", headers={"Allow": method})

    # --- tokens -------------------------------------------------------------------------------------------
    def _ttl(self, request: Request, account: Account) -> int:
        return request.faults.session_ttl_s or account.token_ttl_s

    def _issue(self, request: Request, account: Account) -> tuple[str, int]:
        ttl = self._ttl(request, account)
        now = time.time()
        token = jwt.encode({"sub": account.client_id, "tenant": account.username, "iat": int(now), "exp": int(now) + ttl + 1,
                            "jti": secrets.token_hex(8)}, self._signing_key, algorithm="HS256")
        moment = time.monotonic()
        with self.lock:
            for old in [t for t, held in self.tokens.items() if held.expires_at <= moment]:
                del self.tokens[old]
            self.tokens[token] = Token(account.username, moment + ttl)
        return token, ttl

    def _v8_token(self, request: Request, tenant_name: str, client_name: str) -> Response:
        account = self.accounts_by_name.get(tenant_name)
        body = request.json()
        secret = body.get("secret") if isinstance(body, dict) else None
        if (account is None or client_name != account.client_id or not isinstance(secret, str)
                or not secrets.compare_digest(secret.encode(), account.client_secret.encode())):
            raise HttpError(401, "INVALID_CLIENT", "the API client name or secret is wrong")
        token, _ = self._issue(request, account)
        return Response(200, {"token": token})

    def _v1_token(self, request: Request) -> Response:
        form = request.form()
        if form.get("grant_type") != JWT_BEARER:
            return Response(400, {"error": "unsupported_grant_type", "error_description": f"grant_type must be {JWT_BEARER}"})
        assertion = form.get("assertion", "")
        try:
            claims = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError:
            return Response(400, {"error": "invalid_grant", "error_description": "the assertion is not a JWT"})
        account = next((a for a in self.accounts_by_name.values() if a.client_id == claims.get("iss")), None)
        if account is None:
            return Response(401, {"error": "invalid_client", "error_description": "unknown client (iss)"})
        try:
            jwt.decode(assertion, account.client_secret, algorithms=["HS256"], options={"verify_aud": False, "require": ["exp", "iss"]})
        except jwt.ExpiredSignatureError:
            return Response(400, {"error": "invalid_grant", "error_description": "the assertion expired"})
        except jwt.PyJWTError:
            return Response(401, {"error": "invalid_client", "error_description": "the assertion's signature is wrong"})
        if not str(claims.get("aud", "")).rstrip("/").endswith("/v1/token"):
            return Response(400, {"error": "invalid_grant", "error_description": "aud must be the token URL"})
        token, ttl = self._issue(request, account)
        return Response(200, {"access_token": token, "token_type": "Bearer", "expires_in": ttl, "scope": claims.get("scope", "all")},
                        {"Cache-Control": "no-store"})

    def _authorize(self, request: Request, tenant_name: str) -> None:
        header = request.headers.get("Authorization") or ""
        token = header[7:].strip() if header[:7].lower() == "bearer " else ""
        with self.lock:
            held = self.tokens.get(token)
            if held is not None and held.expires_at <= time.monotonic():
                self.tokens.pop(token, None)
                self.expired_refusals += 1
                raise HttpError(401, "TOKEN_EXPIRED", "the access token expired; request a new one")
        if held is None:
            raise HttpError(401, "UNAUTHORIZED", "no valid access token; POST /{tenant}/admin/api_clients/{clientName} first")
        if held.tenant != tenant_name:
            raise HttpError(403, "FORBIDDEN", "the token is for another tenant")

    # --- reading ---------------------------------------------------------------------------------------------
    @staticmethod
    def _render(table: Table, index: int | None) -> dict[str, Any]:
        record = table.get(index) if index is not None else None
        if record is None:
            raise HttpError(404, "NOT_FOUND", f"no {table.name} record")
        return _api(record)

    @staticmethod
    def _index(tenant: Tenant, resource: str, record_id: str) -> int | None:
        return tenant.table(resource).index_of(record_id)

    def _list(self, request: Request, tenant: Tenant, resource: str) -> Response:
        size = _whole(request.query, "size", DEFAULT_SIZE, 1, MAX_SIZE)
        page = _whole(request.query, "page", 0, 0, 10**6)
        since = ""
        if request.query.get("updatedAfter"):
            try:
                moment = datetime.fromisoformat(request.query["updatedAfter"])
            except ValueError:
                raise HttpError(400, "INVALID_PARAMETER", "updatedAfter must be an ISO 8601 instant") from None
            since = stamp_of(moment if moment.tzinfo else moment.replace(tzinfo=UTC))
        table = tenant.table(resource)
        records, total = _window(table, offset=page * size, count=size, since=since)
        content = [self._maybe_malformed(request, resource, _api(r)) for r in records]
        pages = (total + size - 1) // size
        churn = request.faults.churn_per_page
        if churn and self.server is not None:
            self.mutate({"changes": churn, "creates": max(1, churn // 4), "deletes": max(1, churn // 4), "tenant": tenant.name})
        return Response(200, {"content": content, "number": page, "size": size, "totalElements": total, "totalPages": pages,
                              "last": page + 1 >= pages})

    def _maybe_malformed(self, request: Request, resource: str, doc: dict[str, Any]) -> dict[str, Any]:
        rate = request.faults.malformed_rate
        if not rate or self.server is None or not self.server.roll(rate):
            return doc
        drop, date_field = MALFORMED[resource]
        if date_field and request.rng.random() < 0.5:
            return {**doc, date_field: BROKEN_DATE}
        return {k: v for k, v in doc.items() if k != drop}

    # --- writing -------------------------------------------------------------------------------------------------
    def _idempotent(self, request: Request, tenant_name: str, perform) -> Response:
        key = request.headers.get("Idempotency-Key") or ""
        if not key:
            return perform()
        with self.lock:
            stored = self.idempotent.get((tenant_name, key))
            if stored is not None:
                return stored
            response = perform()
            if response.status < 500:
                self.idempotent[(tenant_name, key)] = response
            return response

    def _create_patient(self, request: Request, tenant: Tenant) -> Response:
        body = _object(request)
        errors = [{"field": f, "message": "is required"} for f in ("firstName", "lastName", "birthDate") if not body.get(f)]
        if body.get("birthDate") and not _is_date(body["birthDate"]):
            errors.append({"field": "birthDate", "message": "must be a date as YYYY-MM-DD"})
        if errors:
            raise HttpError(422, "VALIDATION_FAILED", f"{errors[0]['field']}: {errors[0]['message']}", errors=errors)
        table = tenant.table("patients")
        fields = {"firstName": body["firstName"], "lastName": body["lastName"], "middleName": body.get("middleName") or "",
                  "birthDate": body["birthDate"], "gender": body.get("gender") or "UNKNOWN",
                  "primaryLanguage": body.get("primaryLanguage") or "ENGLISH", "mrn": body.get("mrn") or f"WK{100000 + table.count}",
                  "phone": body.get("phone") or "", "email": body.get("email") or "", "address": body.get("address") or {},
                  "programIds": [], "primaryCoachId": body.get("primaryCoachId"), "status": "ACTIVE"}
        with self.lock:
            index = table.create(fields)
        self.notify(tenant, "patients", "created", table.id_of(index))
        return Response(201, _api(table.get(index)))

    def _update_event(self, request: Request, tenant: Tenant, record_id: str) -> Response:
        body = _object(request)
        table = tenant.table("calendar_events")
        unknown = sorted(set(body) - set(EVENT_FIELDS))
        if unknown:
            raise HttpError(422, "VALIDATION_FAILED", f"{unknown[0]}: cannot be changed", errors=[{"field": f} for f in unknown])
        if "status" in body and body["status"] not in EVENT_STATUSES:
            raise HttpError(422, "VALIDATION_FAILED", "status: must be one of " + ", ".join(EVENT_STATUSES))
        if "userId" in body and tenant.table("coaches").get(tenant.table("coaches").index_of(body["userId"])) is None:
            raise HttpError(422, "VALIDATION_FAILED", "userId: no such user")
        for name in ("start", "end"):
            if name in body and not _is_instant(body[name]):
                raise HttpError(422, "VALIDATION_FAILED", f"{name}: must be an ISO 8601 instant with a zone")
        with self.lock:
            index = table.index_of(record_id)
            current = table.get(index) if index is not None else None
            if current is None:
                raise HttpError(404, "NOT_FOUND", "no calendar event")
            fields = {k: v for k, v in current.items() if k not in ("id", "updated_at")}
            fields.update(body)
            if datetime.fromisoformat(fields["end"]) <= datetime.fromisoformat(fields["start"]):
                raise HttpError(422, "VALIDATION_FAILED", "end: must be after start")
            table.replace(index, fields)
        self.notify(tenant, "calendar_events", "changed", record_id)
        return Response(200, _api(table.get(index)))

    def _create_assessment(self, request: Request, tenant: Tenant, patient_id: str) -> Response:
        patients = tenant.table("patients")
        if patients.get(patients.index_of(patient_id)) is None:
            raise HttpError(404, "NOT_FOUND", "no patient")
        body = _object(request)
        answers = body.get("answers")
        errors = []
        if not isinstance(body.get("formName"), str) or not body["formName"]:
            errors.append({"field": "formName", "message": "is required"})
        if not isinstance(answers, list) or not all(isinstance(a, dict) and isinstance(a.get("question"), str) for a in answers):
            errors.append({"field": "answers", "message": "must be a list of {question, answer}"})
        if body.get("completedAt") is not None and not _is_instant(body["completedAt"]):
            errors.append({"field": "completedAt", "message": "must be an ISO 8601 instant with a zone"})
        if errors:
            raise HttpError(422, "VALIDATION_FAILED", f"{errors[0]['field']}: {errors[0]['message']}", errors=errors)
        score = body.get("score")
        if score is None and body["formName"] in FORMS and all(isinstance(a.get("answer"), int) for a in answers):
            score = sum(a["answer"] for a in answers)  # Welkin scores the forms it knows
        fields = {"patientId": patient_id, "formName": body["formName"], "status": body.get("status") or "COMPLETED",
                  "answers": [{"question": a["question"], "answer": a.get("answer")} for a in answers], "score": score,
                  "completedAt": body.get("completedAt"), "source": "API"}
        table = tenant.table("assessments")
        with self.lock:
            index = table.create(fields)
        self.notify(tenant, "assessments", "created", table.id_of(index))
        return Response(201, _api(table.get(index)))

    # --- notifications ----------------------------------------------------------------------------------------------
    def notify(self, tenant: Tenant, resource: str, action: str, record_id: str) -> threading.Thread | None:
        """Ping the tenant's webhook URL (if any) about one change, on a daemon thread that retries."""
        account = self.accounts_by_name[tenant.name]
        if not account.webhook_url:
            return None
        table = tenant.table(resource)
        index = table.index_of(record_id)
        patient_id = None
        if index is not None:
            fields = table.fields(index)
            patient_id = record_id if resource == "patients" else fields.get("patientId")
        entity, stem = EVENTS[resource]
        payload = {"sourceId": record_id, "patientId": patient_id, "tenantName": tenant.name, "instanceName": tenant.instance,
                   "eventEntity": entity, "eventSubtype": f"{stem}_{ACTIONS[action]}",
                   "eventTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")}
        with self.lock:
            delivery = Delivery(next(self._ids), account.webhook_url, record_id, entity, payload["eventSubtype"],
                                createdAt=payload["eventTime"])
            self.deliveries.append(delivery)
        thread = threading.Thread(target=self._deliver, args=(delivery, account.webhook_secret, orjson.dumps(payload)),
                                  name=f"welkin-webhook-{delivery.id}", daemon=True)
        thread.start()
        return thread

    def _deliver(self, delivery: Delivery, secret: str, body: bytes) -> None:
        for attempt in range(1 + self.delivery_retries):
            if attempt:
                time.sleep(self.retry_base_s * 2 ** (attempt - 1))
            timestamp = str(int(time.time()))  # each attempt is signed afresh, so a retry is never stale
            headers = {"Content-Type": "application/json", "X-Welkin-Timestamp": timestamp,
                       "X-Welkin-Signature": sign(secret, timestamp, body), "X-Welkin-Delivery": str(delivery.id)}
            status = None
            try:
                status = httpx.post(delivery.url, content=body, headers=headers, timeout=DELIVERY_TIMEOUT_S).status_code
            except httpx.HTTPError:
                pass  # no answer: retried like a 5xx
            with self.lock:
                delivery.attempts, delivery.responseStatus = attempt + 1, status
                if status is not None and 200 <= status < 300:
                    delivery.status = "DELIVERED"
                    return
        with self.lock:
            delivery.status = "FAILED"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """Hex HMAC-SHA256 of "<timestamp>.<body>" under the tenant's webhook secret."""
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def _api(record: Record) -> dict[str, Any]:
    doc = {k: v for k, v in record.items() if k != "updated_at"}
    doc["updatedAt"] = record["updated_at"]
    return doc


def _object(request: Request) -> dict[str, Any]:
    body = request.json()
    if not isinstance(body, dict):
        raise HttpError(400, "INVALID_JSON", "the body must be a JSON object")
    return body


def _is_date(value: Any) -> bool:
    try:
        date.fromisoformat(value)
    except (TypeError, ValueError):
        return False
    return True


def _is_instant(value: Any) -> bool:
    try:
        return isinstance(value, str) and datetime.fromisoformat(value).tzinfo is not None
    except ValueError:
        return False


def _whole(params: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = params.get(name)
    if raw in (None, ""):
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise HttpError(400, "INVALID_PARAMETER", f"{name} must be a whole number from {low} to {high}", errors=[{"field": name}])
    return int(raw)


def _window(table: Table, *, offset: int, count: int, since: str) -> tuple[list[Record], int]:
    """Records offset+1 … offset+count in listing order (updatedAt, id), and how many match."""
    if not since and not table.stamps:
        records, _ = table.page(cursor=f"b{offset}", limit=count)
        return records, table.live_count()
    seen = 0

    def window(index: int) -> bool:
        nonlocal seen
        if index in table.deleted:
            return False
        seen += 1
        return offset < seen <= offset + count

    records, _ = table.page(since=since, where=window, limit=count)
    return records, seen
