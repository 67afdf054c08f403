"""eClinicalWorks' FHIR R4 surface: one base URL per practice, SMART Backend Services, read + search, Bulk Data.

Under the vendor's prefix (/ecw/), with {base} = /fhir/r4/{practice_code} (the sandbox's one practice
is "ecw-demo-practice"; any other code answers 404):

    GET    {base}/.well-known/smart-configuration    where and how to get a token (no token needed)
    GET    {base}/metadata                           the CapabilityStatement (no token needed)
    POST   {base}/token                              grant_type=client_credentials, client_assertion_type=
                                                     urn:ietf:params:oauth:client-assertion-type:jwt-bearer and a
                                                     client_assertion JWT signed RS384 (nothing else) with the
                                                     client's registered key; iss = sub = client id, aud = this
                                                     URL, exp at most 5 minutes ahead, a jti never used before
    GET    {base}/{Type}                             search: _count (default 50, at most 200), _id (comma list),
                                                     _lastUpdated (gt|ge an instant), patient= on the clinical
                                                     types, category= on Observation; further pages by
                                                     Bundle.link[next] (an opaque _page_token)
    POST   {base}/{Type}/_search                     the same search, parameters in a form body
    GET    {base}/{Type}/{id}                        one resource
    GET    {base}/Group, {base}/Group/all-patients   the one group: every patient of the practice
    GET    {base}/Group/all-patients/$export         Bulk Data (bulk.py): kick-off, Prefer: respond-async
    GET    {base}/Patient/$export
    GET    {base}/bulkstatus/{job}                   202 + X-Progress while it runs, then 200 with the manifest
    DELETE {base}/bulkstatus/{job}                   cancel (202)
    GET    {base}/bulkfiles/{job}/{Type}-{n}.ndjson  one output file (application/fhir+ndjson)

Types: Patient, Practitioner, Location (facilities), Appointment, Encounter, Condition (the encounters'
diagnoses, id <encounter>-dx-<rank>), Procedure (<encounter>-px-<n>), Observation (vitals and the PHQ-9 and
GAD-7 scores, <encounter>-obs-<what>), Coverage (the patients' coverage, <patient>-cov-<priority>). Record
ids are the portal's (PAT0000042, ENC0000001, …), so the two surfaces reconcile; meta.lastUpdated is the
record's `modified`. Searches list in id order; a record deleted in the vendor is gone from both.

Tokens last 300 s (the session_ttl_s fault overrides) and carry a scope such as system/*.read. Every
request under a practice's base, token calls and downloads included, counts against that practice's
limit (`EClinicalWorks.fhir_rate_limit_per_minute`, 250) in fixed clock-minute windows: past it, every
request until the minute ends answers 429 with an OperationOutcome and no Retry-After header. The
clock is `EClinicalWorks.fhir_clock` (tests inject one). Answers are application/fhir+json; errors are
OperationOutcome, except the token endpoint's, which are OAuth2's ({error, error_description}).

The backend clients (their ids and PRIVATE keys, as the sandbox's developer portal would let a
practice download them) are listed by the vendor's accounts() with kind "fhir_backend".
"""

from __future__ import annotations

import base64
import binascii
import bisect
import heapq
import logging
import re
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlencode

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sandbox.ecw.data import PRACTICE_CODE, PRACTICE_NAME, VISIT_TYPES, Practice
from sandbox.ecw.errors import refuse
from sandbox.server import HttpError, Request, Response
from sandbox.table import Record, Table, stamp_of

if TYPE_CHECKING:  # vendor.py imports this module when it dispatches
    from sandbox.ecw.vendor import EClinicalWorks

logger = logging.getLogger("sandbox.ecw.fhir")

PRACTICES = {PRACTICE_CODE: PRACTICE_NAME}  # practice code -> name: one tenant per base URL
FHIR_JSON = "application/fhir+json"
DEFAULT_COUNT, MAX_COUNT = 50, 200
MAX_IDS = 100  # ids one _id search may name
SCAN_BUDGET = 20_000  # source records one search page reads at most; a sparse filter answers a short page and a next link
TOKEN_TTL_S = 300
ASSERTION_MAX_AHEAD_S = 300  # a client assertion's exp may be at most this far ahead ...
CLOCK_SKEW_S = 10  # ... give or take this much disagreement between the clocks
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_ALGORITHM = "RS384"
MAX_ASSERTION_LENGTH = 8_192
SCOPE_ALL = "system/*.read"
GROUP_ID = "all-patients"
RSA_BITS = 2048

FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
HOST = re.compile(r"[A-Za-z0-9.\-]{1,253}(:\d{1,5})?|\[[0-9A-Fa-f:.]{2,45}\](:\d{1,5})?")
SCOPE = re.compile(r"system/(\*|[A-Z][A-Za-z]{1,40})\.(read|rs|r|s|\*)")
PAGE_TOKEN = re.compile(r"(\d{1,9})\.(\d{1,4})")

# code systems
NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
V2_0276 = "http://terminology.hl7.org/CodeSystem/v2-0276"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
CPT = "http://www.ama-assn.org/go/cpt"
TAXONOMY = "http://nucc.org/provider-taxonomy"
BCP47 = "urn:ietf:bcp:47"
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
COVERAGE_CLASS = "http://terminology.hl7.org/CodeSystem/coverage-class"
SUBSCRIBER_RELATIONSHIP = "http://terminology.hl7.org/CodeSystem/subscriber-relationship"
CLAIM_FILING_INDICATOR = "https://x12.org/codes/claim-filing-indicator-codes"
VISIT_TYPE_SYSTEM = "urn:eclinicalworks:visit-type"
LOCAL_ID_SYSTEM = f"urn:eclinicalworks:{PRACTICE_CODE}"  # + ":mrn", ":account", …
EXTENSION = "http://fhir.eclinicalworks.example/StructureDefinition"  # the sandbox's own extensions
OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"

GENDER = {"F": "female", "M": "male", "U": "unknown"}
LANGUAGES = {"English": "en", "Spanish": "es", "Portuguese": "pt", "Haitian Creole": "ht", "Vietnamese": "vi"}
IDENTIFIER_TYPES = {"MRN": ("MR", "Medical record number", "mrn"), "ACCOUNT": ("AN", "Account number", "account"),
                    "MEDICAID": ("MA", "Patient Medicaid number", "medicaid")}
APPOINTMENT_STATUS = {"scheduled": "booked", "confirmed": "booked", "checked_out": "fulfilled", "no_show": "noshow",
                      "cancelled": "cancelled"}
APPOINTMENT_TYPE = {  # visit type -> HL7 v2 table 0276
    "NP": ("ROUTINE", "Routine appointment - default if not valued"), "FU": ("FOLLOWUP", "A follow up visit from a previous appointment"),
    "PE": ("CHECKUP", "A routine check-up, such as an annual physical"), "SICK": ("WALKIN", "A previously unscheduled walk-in visit"),
    "BH-INT": ("ROUTINE", "Routine appointment - default if not valued"), "BH-IND": ("ROUTINE", "Routine appointment - default if not valued"),
    "BH-FU": ("FOLLOWUP", "A follow up visit from a previous appointment"),
}
FILING_INDICATORS = {"MB": "Medicare Part B", "MC": "Medicaid", "CI": "Commercial Insurance Co.", "BL": "Blue Cross/Blue Shield",
                     "HM": "Health Maintenance Organization"}
# vitals key -> (id suffix, LOINC, display, UCUM unit, unit text)
VITALS = (
    ("height_in", "height", "8302-2", "Body height", "[in_i]", "in"),
    ("weight_lb", "weight", "29463-7", "Body weight", "[lb_av]", "lb"),
    ("bmi", "bmi", "39156-5", "Body mass index (BMI) [Ratio]", "kg/m2", "kg/m2"),
    (None, "bp", "85354-9", "Blood pressure panel with all children optional", "mm[Hg]", "mmHg"),
    ("pulse", "pulse", "8867-4", "Heart rate", "/min", "beats/minute"),
    ("resp_rate", "resp", "9279-1", "Respiratory rate", "/min", "breaths/minute"),
    ("temp_f", "temp", "8310-5", "Body temperature", "[degF]", "degF"),
    ("spo2", "spo2", "59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry", "%", "%"),
)
SCREENINGS = (("phq9", "44261-6", "Patient Health Questionnaire 9 item (PHQ-9) total score [Reported]"),
              ("gad7", "70274-6", "Generalized anxiety disorder 7 item (GAD-7) total score [Reported.PHQ]"))
OUTCOME_CODES = {400: "invalid", 401: "login", 403: "forbidden", 404: "not-found", 405: "not-supported", 406: "not-supported",
                 410: "deleted", 415: "not-supported", 429: "throttled", 500: "exception"}


# --- the surface's state, held on the vendor -----------------------------------------------------------------
@dataclass
class BackendClient:
    """A SMART Backend Services client registered with a practice, and its key pair."""

    client_id: str
    label: str
    practice_code: str
    kid: str
    private_key: rsa.RSAPrivateKey
    scope: str = SCOPE_ALL

    @property
    def private_key_pem(self) -> str:
        return self.private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()).decode()

    @property
    def public_key(self) -> rsa.RSAPublicKey:
        return self.private_key.public_key()

    def public_jwk(self) -> dict[str, str]:
        numbers = self.public_key.public_numbers()

        def b64(value: int) -> str:
            return base64.urlsafe_b64encode(value.to_bytes((value.bit_length() + 7) // 8, "big")).decode().rstrip("=")

        return {"kty": "RSA", "alg": ASSERTION_ALGORITHM, "use": "sig", "kid": self.kid, "n": b64(numbers.n), "e": b64(numbers.e)}


@dataclass
class Token:
    client_id: str
    practice_code: str
    scope: str
    types: frozenset[str] | None  # the resource types the scope reads (None: every type)
    expires_at: float  # by the vendor's fhir_clock


@dataclass
class FhirState:
    clients: dict[str, BackendClient]
    tokens: dict[str, Token] = field(default_factory=dict)
    used_jtis: dict[tuple[str, str], float] = field(default_factory=dict)  # (client, jti) -> when it may be forgotten
    windows: dict[str, tuple[int, int]] = field(default_factory=dict)  # practice -> (clock minute, requests in it)
    throttled: int = 0  # 429s given for the rate limit
    export_conflicts: int = 0  # kick-offs refused because the client's export was still running
    exports: dict[str, Any] = field(default_factory=dict)  # job id -> bulk.Export
    exports_started: int = 0
    lock: threading.RLock = field(default_factory=threading.RLock)


# Client registrations of the demo practice: (client name, what the practice registered it for).
CLIENTS = (("sync", "Switchboard hub: incremental sync"), ("bulk", "Switchboard hub: nightly bulk export"))
_KEYS: dict[tuple[int, str], rsa.RSAPrivateKey] = {}  # one key pair per (seed, client) for the process: sandboxes reuse them
_KEYS_LOCK = threading.Lock()
_STATE_LOCK = threading.Lock()


def _key_for(seed: int, client_id: str) -> rsa.RSAPrivateKey:
    with _KEYS_LOCK:
        key = _KEYS.get((seed, client_id))
        if key is None:
            key = _KEYS[(seed, client_id)] = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
        return key


def state_of(vendor: EClinicalWorks) -> FhirState:
    """The FHIR surface's state, made on first use (the key pairs with it)."""
    found = vendor.__dict__.get("fhir_state")
    if found is None:
        with _STATE_LOCK:
            found = vendor.__dict__.get("fhir_state")
            if found is None:
                clients = {}
                for name, label in CLIENTS:
                    client_id = f"riverbend-backend-{name}"
                    clients[client_id] = BackendClient(client_id, label, PRACTICE_CODE, f"{client_id}-key-1", _key_for(vendor.seed, client_id))
                found = vendor.__dict__["fhir_state"] = FhirState(clients)
    return found


def root_url(vendor: EClinicalWorks) -> str:
    return vendor.server.url if vendor.server is not None else ""


def backend_accounts(vendor: EClinicalWorks) -> list[dict[str, Any]]:
    """The backend clients as accounts: what a hub needs to configure a FHIR connection."""
    base = f"{root_url(vendor)}/{vendor.prefix}/fhir/r4"
    return [{"username": c.client_id, "kind": "fhir_backend", "label": c.label, "client_id": c.client_id, "kid": c.kid,
             "private_key_pem": c.private_key_pem, "public_jwk": c.public_jwk(), "algorithm": ASSERTION_ALGORITHM,
             "practice_code": c.practice_code, "practice_name": PRACTICES[c.practice_code], "scope": c.scope,
             "fhir_base_url": f"{base}/{c.practice_code}", "token_url": f"{base}/{c.practice_code}/token"}
            for c in state_of(vendor).clients.values()]


def counters(vendor: EClinicalWorks) -> dict[str, int]:
    """What /_sandbox/state adds for this surface."""
    state = vendor.__dict__.get("fhir_state")  # not made (nor its keys generated) just to count nothing
    if state is None:
        return {"fhir_429s": 0, "fhir_exports": 0, "fhir_export_conflicts": 0}
    with state.lock:
        return {"fhir_429s": state.throttled, "fhir_exports": state.exports_started, "fhir_export_conflicts": state.export_conflicts}


# knob -> (kind, low, high); set through the vendor's mutate
KNOBS = {"fhir_rate_limit_per_minute": (int, 0, 1_000_000), "fhir_rate_window_s": (int, 1, 3600), "fhir_export_polls": (int, 0, 1_000),
         "fhir_export_seconds": (float, 0, 3_600), "fhir_export_retry_after_s": (int, 0, 86_400),
         "fhir_export_file_size": (int, 1, 1_000_000)}


def configure(vendor: EClinicalWorks, spec: dict[str, Any]) -> dict[str, Any]:
    """Apply the fhir_* knobs a mutate spec carries (all checked before any is set); what was set."""
    chosen = {}
    for key, (kind, low, high) in KNOBS.items():
        if key not in spec:
            continue
        value = spec[key]
        number_ok = isinstance(value, int | float) and not isinstance(value, bool) and (kind is float or value == int(value))
        if not number_ok or not low <= value <= high:
            raise refuse(106, f"{key} must be a {'number' if kind is float else 'whole number'} from {low} to {high}", field=key)
        chosen[key] = kind(value)
    for key, value in chosen.items():
        setattr(vendor, key, value)
    return chosen


# --- answers --------------------------------------------------------------------------------------------------
def outcome(status: int, diagnostics: str, headers: dict[str, str] | None = None, *, severity: str = "error",
            code: str | None = None) -> Response:
    body = {"resourceType": "OperationOutcome",
            "issue": [{"severity": severity, "code": code or OUTCOME_CODES.get(status, "processing"), "diagnostics": diagnostics}]}
    return Response(status, body, {"Content-Type": FHIR_JSON, **(headers or {})})


def fhir(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(status, body, {"Content-Type": FHIR_JSON, **(headers or {})})


def _oauth_error(status: int, error: str, description: str, headers: dict[str, str] | None = None) -> Response:
    return Response(status, {"error": error, "error_description": description}, {"Cache-Control": "no-store", **(headers or {})})


class OAuthError(Exception):
    def __init__(self, status: int, error: str, description: str):
        super().__init__(description)
        self.status, self.error, self.description = status, error, description


def handle(vendor: EClinicalWorks, request: Request) -> Response:
    """Every path under /fhir: a FHIR answer, never an exception (a simulator bug answers a 500 OperationOutcome)."""
    try:
        return _route(vendor, request)
    except OAuthError as exc:
        return _oauth_error(exc.status, exc.error, exc.description)
    except HttpError as exc:
        return outcome(exc.status, exc.detail, exc.headers)
    except (ValueError, OverflowError) as exc:  # a hostile value that got past the checks
        return outcome(400, f"the request could not be processed: {str(exc)[:200]}")
    except Exception:
        logger.exception("ecw fhir: %s %s failed", request.method, request.path[:200])
        return outcome(500, "the FHIR server failed on this request")


def _route(vendor: EClinicalWorks, request: Request) -> Response:
    parts = request.path.strip("/").split("/")  # ["fhir", "r4", practice, …]
    if len(parts) < 3 or parts[1] != "r4" or not parts[2]:
        raise HttpError(404, "not_found", f"the FHIR R4 base is /{vendor.prefix}/fhir/r4/{{practice_code}}/")
    practice_code = unquote(parts[2])
    if practice_code not in PRACTICES:
        raise HttpError(404, "not_found", f"no practice {practice_code[:64]!r} is served here")
    state = state_of(vendor)
    if _over_rate_limit(vendor, state, practice_code):
        return outcome(429, f"more than {vendor.fhir_rate_limit_per_minute} requests this minute to the {practice_code} base URL; "
                       "wait for the next minute")
    rest = [unquote(p) for p in parts[3:]]
    method = request.method
    base = base_url(vendor, request, practice_code)
    if rest == [".well-known", "smart-configuration"]:
        _only(method, "GET")
        return Response(200, smart_configuration(base), {"Content-Type": "application/json"})
    if rest == ["metadata"]:
        _only(method, "GET")
        return fhir(prune(capability_statement(base)))
    if rest == ["token"]:
        if method != "POST":
            return _oauth_error(405, "invalid_request", "POST the token request", {"Allow": "POST"})
        return issue_token(vendor, state, request, practice_code, base)
    token = authorize(vendor, state, request, practice_code)
    if rest and rest[0] in ("bulkstatus", "bulkfiles") or rest[-1:] == ["$export"]:
        from sandbox.ecw import bulk  # bulk.py imports this module

        return bulk.route(vendor, state, request, token, base, rest)
    if not rest or not rest[0]:
        raise HttpError(404, "not_found", "name a resource type, e.g. " + base + "/Patient")
    type_name = rest[0]
    if type_name == "Group":
        _only(method, "GET")
        return _group(vendor, request, token, base, rest[1:])
    kind = KINDS.get(type_name)
    if kind is None or len(rest) > 2:
        raise HttpError(404, "not_found", f"no such path {request.path[:200]}; types served: {', '.join(KINDS)}, Group")
    _allowed(token, type_name)
    if len(rest) == 2 and rest[1] == "_search":
        _only(method, "POST")
        params = {**request.query, **request.form()}
        return fhir(search(vendor, request, base, kind, params))
    _only(method, "GET")
    if len(rest) == 1:
        return fhir(search(vendor, request, base, kind, request.query))
    return fhir(read(vendor.practice, kind, rest[1]))


def _only(method: str, allowed: str) -> None:
    if method != allowed:
        raise HttpError(405, "method_not_allowed", f"{method} is not supported here; use {allowed}", headers={"Allow": allowed})


def base_url(vendor: EClinicalWorks, request: Request, practice_code: str) -> str:
    """The practice's base URL as the client reached it (the Host header, when it is a host name)."""
    host = (request.headers.get("Host") or "").strip()
    root = f"http://{host}" if HOST.fullmatch(host) else root_url(vendor)
    return f"{root}/{vendor.prefix}/fhir/r4/{practice_code}"


# --- the rate limit ----------------------------------------------------------------------------------------------
def _over_rate_limit(vendor: EClinicalWorks, state: FhirState, practice_code: str) -> bool:
    """Count the request in its practice's clock minute; True past the limit (0: no limit)."""
    limit = vendor.fhir_rate_limit_per_minute
    minute = int(vendor.fhir_clock() // max(1, vendor.fhir_rate_window_s))
    with state.lock:
        window, used = state.windows.get(practice_code, (minute, 0))
        if window != minute:
            window, used = minute, 0
        state.windows[practice_code] = (window, used + 1)
        if limit and used >= limit:
            state.throttled += 1
            return True
    return False


# --- SMART Backend Services ----------------------------------------------------------------------------------------
def smart_configuration(base: str) -> dict[str, Any]:
    return {
        "issuer": base, "token_endpoint": f"{base}/token", "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": [ASSERTION_ALGORITHM],
        "scopes_supported": [SCOPE_ALL, *(f"system/{name}.read" for name in [*KINDS, "Group"])],
        "capabilities": ["client-confidential-asymmetric", "permission-v1"],
    }


def issue_token(vendor: EClinicalWorks, state: FhirState, request: Request, practice_code: str, base: str) -> Response:
    """POST {base}/token: a bearer token for a valid RS384 client assertion, or an OAuth2 error."""
    content_type = (request.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise OAuthError(400, "invalid_request", "send the token request as application/x-www-form-urlencoded")
    form = request.form()
    if form.get("grant_type") != "client_credentials":
        raise OAuthError(400, "unsupported_grant_type", "only grant_type=client_credentials is supported")
    if form.get("client_assertion_type") != ASSERTION_TYPE:
        raise OAuthError(401, "invalid_client", f"client_assertion_type must be {ASSERTION_TYPE}")
    client, jti, expires = _check_assertion(vendor, state, request, form, practice_code, base)
    scope, types = _granted_scope(form.get("scope", ""))
    now = vendor.fhir_clock()
    ttl = request.faults.session_ttl_s or TOKEN_TTL_S
    access_token = secrets.token_urlsafe(32)
    with state.lock:
        if (client.client_id, jti) in state.used_jtis:  # checked again under the lock: two racing replays, one wins
            raise OAuthError(401, "invalid_client", "this client assertion's jti was used before")
        state.used_jtis[(client.client_id, jti)] = expires + CLOCK_SKEW_S
        for key in [k for k, until in state.used_jtis.items() if until < now]:
            del state.used_jtis[key]
        for old in [t for t, held in state.tokens.items() if held.expires_at <= now]:
            del state.tokens[old]
        state.tokens[access_token] = Token(client.client_id, practice_code, scope, types, now + ttl)
    return Response(200, {"access_token": access_token, "token_type": "bearer", "expires_in": ttl, "scope": scope},
                    {"Cache-Control": "no-store", "Pragma": "no-cache"})


def _check_assertion(vendor: EClinicalWorks, state: FhirState, request: Request, form: dict[str, str], practice_code: str,
                     base: str) -> tuple[BackendClient, str, float]:
    assertion = form.get("client_assertion", "")
    if not assertion or len(assertion) > MAX_ASSERTION_LENGTH:
        raise OAuthError(401, "invalid_client", "client_assertion is missing or too long")
    try:
        header = jwt.get_unverified_header(assertion)
        unverified = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise OAuthError(401, "invalid_client", "client_assertion is not a JWT") from None
    if header.get("alg") != ASSERTION_ALGORITHM:
        raise OAuthError(401, "invalid_client", f"client assertions must be signed {ASSERTION_ALGORITHM}, not {str(header.get('alg'))[:20]}")
    issuer = unverified.get("iss")
    client = state.clients.get(issuer) if isinstance(issuer, str) else None
    if client is None or client.practice_code != practice_code:
        raise OAuthError(401, "invalid_client", "the assertion's iss is no client registered with this practice")
    if form.get("client_id") not in (None, client.client_id):
        raise OAuthError(401, "invalid_client", "client_id and the assertion's iss differ")
    if "kid" in header and header["kid"] != client.kid:
        raise OAuthError(401, "invalid_client", "the assertion's kid names no key registered for this client")
    try:
        claims = jwt.decode(assertion, client.public_key, algorithms=[ASSERTION_ALGORITHM],
                            options={"verify_exp": False, "verify_nbf": False, "verify_iat": False, "verify_aud": False,
                                     "verify_iss": False})
    except jwt.PyJWTError:
        raise OAuthError(401, "invalid_client", "the assertion's signature does not verify with the client's registered key") from None
    if claims.get("sub") != client.client_id:
        raise OAuthError(401, "invalid_client", "the assertion's sub must be the client id (as its iss)")
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    accepted = {f"{base}/token", f"{root_url(vendor)}/{vendor.prefix}/fhir/r4/{practice_code}/token"}
    if not any(isinstance(a, str) and a in accepted for a in audiences):
        raise OAuthError(401, "invalid_client", f"the assertion's aud must be the token URL {base}/token")
    now = vendor.fhir_clock()
    expires = claims.get("exp")
    if isinstance(expires, bool) or not isinstance(expires, int | float):
        raise OAuthError(401, "invalid_client", "the assertion needs a numeric exp")
    if expires <= now - CLOCK_SKEW_S:
        raise OAuthError(401, "invalid_client", "the assertion expired")
    if expires > now + ASSERTION_MAX_AHEAD_S + CLOCK_SKEW_S:
        raise OAuthError(401, "invalid_client", f"the assertion's exp is more than {ASSERTION_MAX_AHEAD_S} s ahead")
    not_before = claims.get("nbf")
    if isinstance(not_before, int | float) and not isinstance(not_before, bool) and not_before > now + CLOCK_SKEW_S:
        raise OAuthError(401, "invalid_client", "the assertion is not valid yet (nbf)")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not 0 < len(jti) <= 256:
        raise OAuthError(401, "invalid_client", "the assertion needs a jti")
    with state.lock:
        if (client.client_id, jti) in state.used_jtis:
            raise OAuthError(401, "invalid_client", "this client assertion's jti was used before")
    return client, jti, float(expires)


def _granted_scope(requested: str) -> tuple[str, frozenset[str] | None]:
    """The scope granted (read-only system scopes) and the types it reads; invalid_scope for anything else."""
    wanted = requested.split()
    if not wanted:
        return SCOPE_ALL, None
    types: set[str] = set()
    every = False
    for item in wanted[:50]:
        match = SCOPE.fullmatch(item)
        if match is None:
            raise OAuthError(400, "invalid_scope", f"{item[:80]!r} is not a scope this server grants; ask for {SCOPE_ALL}")
        if match[2] == "*":
            raise OAuthError(400, "invalid_scope", "this server grants read access only (system/*.read)")
        if match[1] == "*":
            every = True
        elif match[1] in KINDS or match[1] == "Group":
            types.add(match[1])
        else:
            raise OAuthError(400, "invalid_scope", f"{match[1]} is not a resource type this server serves")
    if every:
        return SCOPE_ALL, None
    return " ".join(f"system/{t}.read" for t in sorted(types)), frozenset(types)


def authorize(vendor: EClinicalWorks, state: FhirState, request: Request, practice_code: str) -> Token:
    """The bearer token a request carries; 401 OperationOutcome when it is missing, unknown, expired or another practice's."""
    header = request.headers.get("Authorization") or ""
    value = header[7:].strip() if header[:7].lower() == "bearer " else ""
    challenge = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
    with state.lock:
        token = state.tokens.get(value) if value else None
        if token is not None and token.expires_at <= vendor.fhir_clock():
            state.tokens.pop(value, None)
            raise HttpError(401, "token_expired", "the access token expired; request a new one", headers=challenge)
    if token is None or token.practice_code != practice_code:
        raise HttpError(401, "invalid_token", f"no valid access token; POST {base_url(vendor, request, practice_code)}/token first",
                        headers=challenge)
    return token


def _allowed(token: Token, type_name: str) -> None:
    if token.types is not None and type_name not in token.types:
        raise HttpError(403, "forbidden", f"the token's scope ({token.scope}) does not read {type_name}")


# --- rendering ------------------------------------------------------------------------------------------------------
def prune(value: Any) -> Any:
    """FHIR JSON has no nulls, empty strings, lists or objects: leave them out, recursively."""
    if isinstance(value, dict):
        pruned = {k: prune(v) for k, v in value.items()}
        return {k: v for k, v in pruned.items() if v not in (None, "", [], {})}
    if isinstance(value, list):
        return [v for v in (prune(v) for v in value) if v not in (None, "", [], {})]
    return value


def _meta(record: Record) -> dict[str, Any]:
    return {"lastUpdated": record["modified"]}


def _ref(resource_type: str, record_id: str | None, display: str = "") -> dict[str, str] | None:
    return {"reference": f"{resource_type}/{record_id}", "display": display} if record_id else None


def _coding(system: str, code: str, display: str = "", text: str = "") -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}], "text": text}


def _human_name(first: str, middle: str, last: str, suffix: str = "") -> dict[str, Any]:
    return {"use": "official", "family": last, "given": [n for n in (first, middle) if n], "suffix": [suffix] if suffix else []}


def _telecom(phone: str, email: str = "", use: str = "home") -> list[dict[str, str]]:
    return [{"system": "phone", "value": phone, "use": use}, {"system": "email", "value": email, "use": use}]


def _address(fields: dict[str, str] | None, use: str = "home") -> dict[str, Any]:
    fields = fields or {}
    return {"use": use, "line": [fields.get("line1"), fields.get("line2")], "city": fields.get("city"), "state": fields.get("state"),
            "postalCode": fields.get("zip"), "country": "US"}


def _quantity(value: Any, code: str, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": code}


def render_patient(r: Record) -> list[dict[str, Any]]:
    language = r.get("language") or "English"
    identifiers = []
    for ident in r.get("identifiers") or []:
        code, display, local = IDENTIFIER_TYPES.get(ident.get("type"), ("", "", str(ident.get("type", "id")).lower()))
        identifiers.append({"use": "usual" if ident.get("type") == "MRN" else "secondary",
                            "type": _coding(V2_0203, code, display) if code else {"text": ident.get("type")},
                            "system": f"{LOCAL_ID_SYSTEM}:{local}", "value": ident.get("value")})
    return [{
        "resourceType": "Patient", "id": r["id"], "meta": _meta(r), "identifier": identifiers, "active": r.get("status") == "active",
        "name": [_human_name(r.get("first_name", ""), r.get("middle_name", ""), r.get("last_name", ""))],
        "telecom": _telecom(r.get("phone", ""), r.get("email", "")), "gender": GENDER.get(r.get("sex"), "unknown"),
        "birthDate": r.get("date_of_birth"), "address": [_address(r.get("address"))],
        "communication": [{"language": _coding(BCP47, LANGUAGES.get(language, ""), language, language) if language in LANGUAGES
                           else {"text": language}, "preferred": True}],
        "generalPractitioner": [_ref("Practitioner", r.get("primary_provider_id"))],
        "managingOrganization": {"display": PRACTICE_NAME},
    }]


def render_practitioner(r: Record) -> list[dict[str, Any]]:
    credentials = r.get("credentials") or ""
    return [{
        "resourceType": "Practitioner", "id": r["id"], "meta": _meta(r), "identifier": [{"system": NPI_SYSTEM, "value": r.get("npi")}],
        "active": r.get("status") == "active",
        "name": [_human_name(r.get("first_name", ""), "", r.get("last_name", ""), suffix=credentials)],
        "telecom": _telecom(r.get("phone", ""), r.get("email", ""), use="work"),
        "qualification": [{"code": _coding(TAXONOMY, r.get("taxonomy_code", ""), r.get("specialty", ""), credentials)}]
        if r.get("taxonomy_code") else [],
    }]


def render_location(r: Record) -> list[dict[str, Any]]:
    return [{
        "resourceType": "Location", "id": r["id"], "meta": _meta(r),
        "identifier": [{"system": NPI_SYSTEM, "value": r.get("npi")}, {"system": f"{LOCAL_ID_SYSTEM}:facility", "value": r.get("code")}],
        "status": "active" if r.get("active", True) else "inactive", "name": r.get("name"), "mode": "instance",
        "type": [_coding("https://www.cms.gov/Medicare/Coding/place-of-service-codes/Place_of_Service_Code_Set",
                         r.get("place_of_service", ""), "Office" if r.get("place_of_service") == "11" else "")],
        "telecom": _telecom(r.get("phone", ""), use="work")[:1], "address": _address(r.get("address"), use="work"),
        "managingOrganization": {"display": PRACTICE_NAME},
    }]


def render_appointment(r: Record) -> list[dict[str, Any]]:
    visit_type = r.get("visit_type") or ""
    kind = APPOINTMENT_TYPE.get(visit_type)
    telehealth = bool(r.get("telehealth"))
    healow = r.get("healow") or {}
    actors = (_ref("Patient", r.get("patient_id")), _ref("Practitioner", r.get("provider_id")), _ref("Location", r.get("facility_id")))
    extensions = [{"url": f"{EXTENSION}/visit-mode", "valueCode": "telehealth" if telehealth else "in-person"}]
    if healow.get("join_url"):
        extensions.append({"url": f"{EXTENSION}/healow-join-url", "valueUrl": healow["join_url"]})
    return [{
        "resourceType": "Appointment", "id": r["id"], "meta": _meta(r), "extension": extensions,
        "identifier": [{"system": f"{LOCAL_ID_SYSTEM}:appointment-reference", "value": r.get("reference")},
                       {"system": "urn:healow:meeting-id", "value": healow.get("meeting_id")}],
        "status": APPOINTMENT_STATUS.get(r.get("status"), "proposed"),
        "serviceType": [_coding(VISIT_TYPE_SYSTEM, visit_type, VISIT_TYPES.get(visit_type, ("",))[0], r.get("visit_type_name", ""))],
        "appointmentType": _coding(V2_0276, kind[0], kind[1], "Telehealth visit" if telehealth else "Office visit") if kind else None,
        "description": r.get("reason"), "start": r.get("start"), "end": r.get("end"), "minutesDuration": r.get("duration_minutes"),
        "comment": r.get("comment"),
        "participant": [{"actor": actor, "required": "required", "status": "accepted"} for actor in actors if actor],
    }]


def render_encounter(r: Record) -> list[dict[str, Any]]:
    telehealth = bool(r.get("telehealth"))
    visit_type = r.get("visit_type") or ""
    minutes = r.get("session_minutes")
    return [{
        "resourceType": "Encounter", "id": r["id"], "meta": _meta(r), "status": "finished",
        "class": {"system": ACT_CODE, "code": "VR", "display": "virtual"} if telehealth
        else {"system": ACT_CODE, "code": "AMB", "display": "ambulatory"},
        "type": [_coding(VISIT_TYPE_SYSTEM, visit_type, VISIT_TYPES.get(visit_type, ("",))[0])],
        "subject": _ref("Patient", r.get("patient_id")),
        "participant": [{"type": [_coding(PARTICIPATION, "PPRF", "primary performer")], "individual": _ref("Practitioner", r.get("provider_id"))}]
        if r.get("provider_id") else [],
        "appointment": [_ref("Appointment", r.get("appointment_id"))],
        "period": {"start": r.get("start"), "end": r.get("end")},
        "length": _quantity(minutes, "min", "min") if minutes else None,
        "reasonCode": [{"text": r.get("chief_complaint")}],
        "diagnosis": [{"condition": _ref("Condition", f"{r['id']}-dx-{d['rank']}", d.get("description", "")), "rank": d["rank"]}
                      for d in r.get("diagnoses") or []],
        "location": [{"location": _ref("Location", r.get("facility_id"))}] if r.get("facility_id") else [],
        "serviceProvider": {"display": PRACTICE_NAME},
    }]


def render_conditions(r: Record) -> list[dict[str, Any]]:
    """An encounter's diagnoses, one Condition each: <encounter id>-dx-<rank>."""
    return [{
        "resourceType": "Condition", "id": f"{r['id']}-dx-{d['rank']}", "meta": _meta(r),
        "clinicalStatus": _coding(CONDITION_CLINICAL, "active", "Active"),
        "verificationStatus": _coding(CONDITION_VERIFICATION, "confirmed", "Confirmed"),
        "category": [_coding(CONDITION_CATEGORY, "encounter-diagnosis", "Encounter Diagnosis")],
        "code": _coding(ICD10CM, d.get("code", ""), d.get("description", ""), d.get("description", "")),
        "subject": _ref("Patient", r.get("patient_id")), "encounter": _ref("Encounter", r["id"]),
        "recordedDate": r.get("start"), "recorder": _ref("Practitioner", r.get("provider_id")),
    } for d in r.get("diagnoses") or []]


def render_procedures(r: Record) -> list[dict[str, Any]]:
    """An encounter's billed procedures (primary care) or its psychotherapy code (behavioral health): <encounter id>-px-<n>."""
    lines = r.get("procedures")
    if lines is None and r.get("psychotherapy_cpt"):
        code = r["psychotherapy_cpt"]
        lines = [{"code": code, "description": f"Psychotherapy, {r.get('session_minutes')} minutes", "diagnosis_pointers": [1]}]
    out = []
    for n, line in enumerate(lines or [], 1):
        out.append({
            "resourceType": "Procedure", "id": f"{r['id']}-px-{n}", "meta": _meta(r), "status": "completed",
            "code": _coding(CPT, line.get("code", ""), line.get("description", ""), line.get("description", "")),
            "subject": _ref("Patient", r.get("patient_id")), "encounter": _ref("Encounter", r["id"]),
            "performedPeriod": {"start": r.get("start"), "end": r.get("end")},
            "performer": [{"actor": _ref("Practitioner", r.get("provider_id"))}] if r.get("provider_id") else [],
            "location": _ref("Location", r.get("facility_id")),
            "reasonReference": [_ref("Condition", f"{r['id']}-dx-{p}") for p in line.get("diagnosis_pointers") or []
                                if any(d.get("rank") == p for d in r.get("diagnoses") or [])],
        })
    return out


def render_observations(r: Record) -> list[dict[str, Any]]:
    """Primary care vitals (LOINC, vital-signs) and behavioral health PHQ-9 / GAD-7 totals (survey): <encounter id>-obs-<what>."""
    common = {"subject": _ref("Patient", r.get("patient_id")), "encounter": _ref("Encounter", r["id"]),
              "performer": [_ref("Practitioner", r.get("provider_id"))]}
    out = []
    vitals = r.get("vitals") or {}
    category = [_coding(OBSERVATION_CATEGORY, "vital-signs", "Vital Signs")]
    for key, suffix, loinc, display, unit, unit_text in VITALS if vitals else ():
        resource: dict[str, Any] = {
            "resourceType": "Observation", "id": f"{r['id']}-obs-{suffix}", "meta": _meta(r), "status": "final", "category": category,
            "code": _coding(LOINC, loinc, display, display), **common, "effectiveDateTime": vitals.get("taken_at") or r.get("start"),
        }
        if key is None:  # the blood pressure panel: systolic and diastolic as components
            if vitals.get("bp_systolic") is None:
                continue
            resource["component"] = [
                {"code": _coding(LOINC, "8480-6", "Systolic blood pressure"), "valueQuantity": _quantity(vitals["bp_systolic"], unit, unit_text)},
                {"code": _coding(LOINC, "8462-4", "Diastolic blood pressure"), "valueQuantity": _quantity(vitals.get("bp_diastolic"), unit, unit_text)},
            ]
        else:
            if vitals.get(key) is None:
                continue
            resource["valueQuantity"] = _quantity(vitals[key], unit, unit_text)
            if suffix == "spo2":  # US Core's pulse oximetry profile carries both codes
                resource["code"]["coding"].append({"system": LOINC, "code": "2708-6", "display": "Oxygen saturation in Arterial blood"})
        out.append(resource)
    assessments = r.get("assessments") or {}
    for key, loinc, display in SCREENINGS:
        found = assessments.get(key)
        if not found:
            continue
        out.append({
            "resourceType": "Observation", "id": f"{r['id']}-obs-{key}", "meta": _meta(r), "status": "final",
            "category": [_coding(OBSERVATION_CATEGORY, "survey", "Survey")], "code": _coding(LOINC, loinc, display, display), **common,
            "effectiveDateTime": r.get("start"), "valueQuantity": _quantity(found.get("score"), "{score}", "{score}"),
            "interpretation": [{"text": found.get("severity")}],
        })
    return out


def render_coverages(r: Record) -> list[dict[str, Any]]:
    """A patient's coverage entries, one Coverage each: <patient id>-cov-<priority>."""
    out = []
    for cover in r.get("coverage") or []:
        ended = cover.get("termination_date")
        filing = cover.get("claim_filing_indicator") or ""
        out.append({
            "resourceType": "Coverage", "id": f"{r['id']}-cov-{cover.get('priority', 1)}", "meta": _meta(r),
            "status": "cancelled" if ended and ended < datetime.now(UTC).date().isoformat() else "active",
            "identifier": [{"type": _coding(V2_0203, "MB", "Member Number"), "system": f"urn:payer:{cover.get('payer_id')}:member",
                            "value": cover.get("member_id")}],
            "type": _coding(CLAIM_FILING_INDICATOR, filing, FILING_INDICATORS.get(filing, "")) if filing else None,
            "subscriberId": cover.get("member_id"), "beneficiary": _ref("Patient", r["id"]),
            "relationship": _coding(SUBSCRIBER_RELATIONSHIP, cover.get("relationship") or "self"),
            "period": {"start": cover.get("effective_date"), "end": ended},
            "payor": [{"identifier": {"value": cover.get("payer_id")}, "display": cover.get("payer_name")}],
            "class": [c for c in ({"type": _coding(COVERAGE_CLASS, "group", "Group"), "value": cover.get("group_number")},
                                  {"type": _coding(COVERAGE_CLASS, "plan", "Plan"), "value": cover.get("plan_name"),
                                   "name": cover.get("plan_name")}) if c["value"]],  # a class needs a value: Medicare has no group
            "order": cover.get("priority"),
        })
    return out


@dataclass(frozen=True)
class Kind:
    """One FHIR type: the practice table it comes from and how a record becomes its resources."""

    name: str
    table: str
    render: Callable[[Record], list[dict[str, Any]]]
    patient: bool  # searchable by patient=
    fanout: bool  # a record gives any number of these (ids <record id>-…)
    drop: str  # what a malformed resource loses
    date_path: tuple[str, ...] | None  # where a malformed resource's date breaks
    extra: frozenset[str] = frozenset()  # search parameters of this type alone

    def resources(self, record: Record) -> list[dict[str, Any]]:
        return [prune(resource) for resource in self.render(record)]


KINDS = {
    "Patient": Kind("Patient", "patients", render_patient, False, False, "name", ("birthDate",)),
    "Practitioner": Kind("Practitioner", "providers", render_practitioner, False, False, "identifier", None),
    "Location": Kind("Location", "facilities", render_location, False, False, "name", None),
    "Appointment": Kind("Appointment", "appointments", render_appointment, True, False, "participant", ("start",)),
    "Encounter": Kind("Encounter", "encounters", render_encounter, True, False, "subject", ("period", "start")),
    "Condition": Kind("Condition", "encounters", render_conditions, True, True, "subject", ("recordedDate",)),
    "Procedure": Kind("Procedure", "encounters", render_procedures, True, True, "subject", ("performedPeriod", "start")),
    "Observation": Kind("Observation", "encounters", render_observations, True, True, "subject", ("effectiveDateTime",),
                        frozenset({"category"})),
    "Coverage": Kind("Coverage", "patients", render_coverages, True, True, "beneficiary", ("period", "start")),
}


# --- which records a search or an export reads ----------------------------------------------------------------
Cursor = tuple[int, int]  # (source record index, position among the resources it gives)


def stamp(table: Table, index: int) -> str:
    """A record's `modified`, without generating it."""
    return table.stamps.get(index) or table.base_stamp(index)


def patient_sources(practice: Practice, table_name: str, patient: int) -> list[int]:
    """The indices of a patient's records in a table, mostly by arithmetic: a generated appointment i is patient
    i % S's, and its encounter follows from it; records written since start are read."""
    table = practice.table(table_name)
    if table_name == "patients":
        return [patient]
    base: list[int] = []
    if patient < practice.scale:
        appointments = [a for a in (patient, patient + practice.scale, patient + 2 * practice.scale)
                        if a < practice.table("appointments").base_count]
        if table_name == "appointments":
            base = appointments
        elif table_name == "encounters":
            base = [e for e in map(practice.encounter_of, appointments) if e is not None and e < table.base_count]
    with table.lock:
        written = set(table.written) | set(range(table.base_count, table.count))
    wanted = practice.ref("patients", patient)
    found = {i for i in base if i not in written}
    found |= {i for i in written if table.fields(i).get("patient_id") == wanted}
    return sorted(found)


def _changed_since(table: Table, since: str, start: int) -> Iterable[int]:
    """Indices of records modified after `since`, ascending: the generated ones stamped later, and those touched since."""
    base_from = bisect.bisect_right(range(table.base_count), since, key=table.base_stamp)
    with table.lock:
        touched = sorted(i for i, s in table.stamps.items() if s > since and i >= start)
    if base_from >= table.base_count:
        return touched
    untouched = (i for i in range(max(start, base_from), table.base_count) if i not in table.stamps)
    return heapq.merge(untouched, touched)


def source_indices(practice: Practice, kind: Kind, *, start: int = 0, ids: set[int] | None = None, patient: int | None = None,
                   since: str = "") -> Iterator[int]:
    """Live source records of a type, ascending from `start`, that the filters admit (cheap: nothing is generated)."""
    table = practice.table(kind.table)
    pool: Iterable[int]
    if patient is not None:
        pool = patient_sources(practice, kind.table, patient) if patient >= 0 else []
    elif ids is not None:
        pool = sorted(ids)
    elif since:
        pool = _changed_since(table, since, start)
    else:
        pool = range(start, table.count)
    for index in pool:
        if index < start or index in table.deleted:
            continue
        if ids is not None and index not in ids:
            continue
        if since and stamp(table, index) <= since:
            continue
        yield index


def collect(practice: Practice, kind: Kind, indices: Iterable[int], *, first: Cursor = (0, 0), end: Cursor | None = None,
            limit: int | None = None, keep: Callable[[dict[str, Any]], bool] | None = None,
            budget: int | None = None) -> tuple[list[dict[str, Any]], Cursor | None]:
    """Resources from cursor `first` (up to `end`, exclusive), at most `limit`: (resources, where the next ones start)."""
    out: list[dict[str, Any]] = []
    scanned = 0
    for index in indices:
        if end is not None and (index, 0) >= end:
            return out, None
        record = practice.record(kind.table, index)
        if record is None:
            continue
        resources = kind.resources(record)
        for k in range(first[1] if index == first[0] else 0, len(resources)):
            if end is not None and (index, k) >= end:
                return out, None
            resource = resources[k]
            if keep is not None and not keep(resource):
                continue
            if limit is not None and len(out) >= limit:
                return out, (index, k)
            out.append(resource)
        scanned += 1
        if budget is not None and scanned >= budget:
            return out, (index + 1, 0)
    return out, None


# --- search and read -----------------------------------------------------------------------------------------------
COMMON_PARAMS = frozenset({"_count", "_id", "_lastUpdated", "_page_token", "_format"})
FORMATS = ("json", "application/json", "application/fhir+json")


def parse_instant(text: str, name: str, *, date_only: bool = False) -> datetime:
    """An ISO 8601 instant with a time zone (a date alone, as UTC midnight, when `date_only` allows); ValueError otherwise."""
    text = text.strip().replace(" ", "+")  # a '+' offset sent unencoded arrives as a space
    if len(text) > 40:
        raise HttpError(400, "invalid", f"{name} is too long to be an instant")
    try:
        if date_only and len(text) == 10:
            return datetime.combine(date.fromisoformat(text), datetime.min.time(), tzinfo=UTC)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise HttpError(400, "invalid", f"{name}: {text[:40]!r} is not an ISO 8601 instant, e.g. 2026-03-01T00:00:00Z") from None
    if moment.tzinfo is None:
        raise HttpError(400, "invalid", f"{name} must carry a time zone (Z or an offset)")
    return moment


def since_stamp(moment: datetime, *, inclusive: bool = False) -> str:
    """A moment as a table stamp that `stamp > since` compares with (one microsecond earlier when inclusive)."""
    return stamp_of(moment - timedelta(microseconds=1) if inclusive else moment)


def _fhir_id(value: str, name: str) -> str:
    if not FHIR_ID.fullmatch(value):
        raise HttpError(400, "invalid", f"{name}: {value[:70]!r} is not a FHIR id ([A-Za-z0-9-.], at most 64)")
    return value


def _source_index(practice: Practice, kind: Kind, resource_id: str) -> int | None:
    source_id = resource_id.split("-", 1)[0] if kind.fanout else resource_id
    return practice.table(kind.table).index_of(source_id)


def read(practice: Practice, kind: Kind, resource_id: str) -> dict[str, Any]:
    _fhir_id(resource_id, "the id")
    index = _source_index(practice, kind, resource_id)
    record = practice.record(kind.table, index) if index is not None else None
    found = [r for r in kind.resources(record) if r["id"] == resource_id] if record is not None else []
    if not found:
        raise HttpError(404, "not_found", f"no {kind.name}/{resource_id}")
    return found[0]


def _count(params: dict[str, str]) -> int:
    raw = params.get("_count", "").strip()
    if not raw:
        return DEFAULT_COUNT
    if not raw.isascii() or not raw.isdigit() or len(raw) > 9 or int(raw) < 1:
        raise HttpError(400, "invalid", "_count must be a whole number from 1")
    return min(int(raw), MAX_COUNT)  # FHIR: a server may return fewer than asked


def _page_token(params: dict[str, str]) -> Cursor:
    token = params.get("_page_token", "")
    if not token:
        return (0, 0)
    try:
        decoded = base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        decoded = ""
    match = PAGE_TOKEN.fullmatch(decoded)
    if match is None or len(token) > 40:
        raise HttpError(400, "invalid", "_page_token is not one this server gave out")
    return int(match[1]), int(match[2])


def _encode_page_token(cursor: Cursor) -> str:
    return base64.urlsafe_b64encode(f"{cursor[0]}.{cursor[1]}".encode()).decode().rstrip("=")


def _last_updated(params: dict[str, str]) -> str:
    raw = params.get("_lastUpdated", "")
    if not raw:
        return ""
    prefix, text = raw[:2], raw[2:]
    if prefix not in ("gt", "ge"):
        raise HttpError(400, "invalid", "_lastUpdated takes gt or ge and an instant, e.g. gt2026-03-01T00:00:00Z")
    return since_stamp(parse_instant(text, "_lastUpdated", date_only=True), inclusive=prefix == "ge")


def _patient_param(practice: Practice, params: dict[str, str]) -> int | None:
    """The patient index a patient= search names; -1 when it names none (an empty result, as FHIR answers)."""
    raw = params.get("patient")
    if raw is None:
        return None
    value = _fhir_id(raw.strip().removeprefix("Patient/"), "patient")
    index = practice.index("patients", value)
    return -1 if index is None else index


def _ids_param(practice: Practice, kind: Kind, params: dict[str, str]) -> tuple[set[int] | None, set[str] | None]:
    raw = params.get("_id")
    if raw is None:
        return None, None
    wanted = [v.strip() for v in raw.split(",") if v.strip()]
    if not wanted or len(wanted) > MAX_IDS:
        raise HttpError(400, "invalid", f"_id takes 1 to {MAX_IDS} ids, comma-separated")
    for value in wanted:
        _fhir_id(value, "_id")
    indices = {i for i in (_source_index(practice, kind, v) for v in wanted) if i is not None}
    return indices, set(wanted)


def search(vendor: EClinicalWorks, request: Request, base: str, kind: Kind, params: dict[str, str]) -> dict[str, Any]:
    known = COMMON_PARAMS | ({"patient"} if kind.patient else set()) | kind.extra
    unknown = sorted(set(params) - known)
    if unknown:
        raise HttpError(400, "invalid", f"{kind.name} does not support the search parameter(s) {', '.join(u[:40] for u in unknown[:5])}; "
                        f"supported: {', '.join(sorted(known - {'_page_token', '_format'}))}")
    if params.get("_format") and params["_format"] not in FORMATS:
        raise HttpError(400, "invalid", "this server answers JSON only (_format=json)")
    practice = vendor.practice
    count = _count(params)
    first = _page_token(params)
    since = _last_updated(params)
    patient = _patient_param(practice, params)
    ids, wanted_ids = _ids_param(practice, kind, params)
    checks: list[Callable[[dict[str, Any]], bool]] = []
    if wanted_ids is not None:  # by id exactly: PAT1 names no patient, though its digits index one
        checks.append(lambda r: r["id"] in wanted_ids)
    if "category" in params:
        category = params["category"].rpartition("|")[2]
        checks.append(lambda r: any(c.get("code") == category for cat in r.get("category") or [] for c in cat.get("coding") or []))
    keep = (lambda r: all(check(r) for check in checks)) if checks else None
    indices = source_indices(practice, kind, start=first[0], ids=ids, patient=patient, since=since)
    resources, next_cursor = collect(practice, kind, indices, first=first, limit=count, keep=keep, budget=SCAN_BUDGET)
    entries = []
    for resource in resources:
        resource = _maybe_malformed(vendor, request, kind, resource)
        entries.append({"fullUrl": f"{base}/{kind.name}/{resource['id']}", "resource": resource, "search": {"mode": "match"}})
    params = {k: v for k, v in params.items() if k != "_page_token"}
    links = [{"relation": "self", "url": f"{base}/{kind.name}?{urlencode({**params, **_token_param(first)})}"}]
    if next_cursor is not None:
        links.append({"relation": "next", "url": f"{base}/{kind.name}?{urlencode({**params, '_count': count, **_token_param(next_cursor)})}"})
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "link": links}
    if not kind.fanout and patient is None and ids is None and not since:
        bundle["total"] = practice.table(kind.table).live_count()  # cheap only when nothing filters; otherwise left out
    if entries:
        bundle["entry"] = entries
    _churn(vendor, request)
    return bundle


def _token_param(cursor: Cursor) -> dict[str, str]:
    return {"_page_token": _encode_page_token(cursor)} if cursor != (0, 0) else {}


def _maybe_malformed(vendor: EClinicalWorks, request: Request, kind: Kind, resource: dict[str, Any]) -> dict[str, Any]:
    """The malformed_rate fault: a resource served without a required element, or with a date that is no date."""
    rate = request.faults.malformed_rate
    if not rate or vendor.server is None or not vendor.server.roll(rate):
        return resource
    broken = dict(resource)
    if kind.date_path is None or request.rng.random() < 0.5:
        broken.pop(kind.drop, None)
        return broken
    holder = broken
    for key in kind.date_path[:-1]:
        holder[key] = dict(holder.get(key) or {})
        holder = holder[key]
    holder[kind.date_path[-1]] = "31/02/1950"
    return broken


def _churn(vendor: EClinicalWorks, request: Request) -> None:
    """The churn_per_page fault: the practice keeps working while a client pages."""
    n = request.faults.churn_per_page
    if n and vendor.server is not None:
        vendor.mutate({"changes": n, "creates": max(1, n // 4), "deletes": max(1, n // 4)})


# --- the group ------------------------------------------------------------------------------------------------------
def group_resource(practice: Practice) -> dict[str, Any]:
    return {"resourceType": "Group", "id": GROUP_ID, "meta": {"lastUpdated": stamp_of(datetime.now(UTC))},
            "identifier": [{"system": f"{LOCAL_ID_SYSTEM}:group", "value": GROUP_ID}], "active": True, "type": "person", "actual": True,
            "name": f"All patients of {PRACTICE_NAME}", "quantity": practice.table("patients").live_count(),
            "managingEntity": {"display": PRACTICE_NAME}}


def _group(vendor: EClinicalWorks, request: Request, token: Token, base: str, rest: list[str]) -> Response:
    _allowed(token, "Group")
    if len(rest) == 1:
        if rest[0] != GROUP_ID:
            raise HttpError(404, "not_found", f"no Group/{rest[0][:64]}; the practice's group is {GROUP_ID}")
        return fhir(group_resource(vendor.practice))
    if rest:
        raise HttpError(404, "not_found", f"no such path {request.path[:200]}")
    unknown = sorted(set(request.query) - {"_count", "_id", "_format"})
    if unknown:
        raise HttpError(400, "invalid", f"Group does not support the search parameter(s) {', '.join(u[:40] for u in unknown[:5])}")
    _count(request.query)
    ids = {v.strip() for v in request.query.get("_id", GROUP_ID).split(",")}
    entries = [{"fullUrl": f"{base}/Group/{GROUP_ID}", "resource": group_resource(vendor.practice), "search": {"mode": "match"}}]
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "link": [{"relation": "self", "url": f"{base}/Group"}],
                              "total": int(GROUP_ID in ids)}
    if GROUP_ID in ids:
        bundle["entry"] = entries
    return fhir(bundle)


# --- the capability statement ----------------------------------------------------------------------------------------
def capability_statement(base: str) -> dict[str, Any]:
    def params(kind: Kind) -> list[dict[str, str]]:
        out = [{"name": "_id", "type": "token"}, {"name": "_lastUpdated", "type": "date", "documentation": "gt or ge an instant"}]
        if kind.patient:
            out.append({"name": "patient", "type": "reference"})
        if "category" in kind.extra:
            out.append({"name": "category", "type": "token", "documentation": "vital-signs or survey"})
        return out

    export = {"name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export"}
    resources = [{"type": name, "interaction": [{"code": "read"}, {"code": "search-type"}], "searchParam": params(kind),
                  **({"operation": [{"name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export"}]}
                     if name == "Patient" else {})}
                 for name, kind in KINDS.items()]
    resources.append({"type": "Group", "interaction": [{"code": "read"}, {"code": "search-type"}], "operation": [export]})
    return {
        "resourceType": "CapabilityStatement", "status": "active", "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "publisher": "eClinicalWorks (sandbox)", "kind": "instance", "software": {"name": "eClinicalWorks FHIR R4 sandbox"},
        "implementation": {"description": f"{PRACTICE_NAME}: FHIR R4 read access and Bulk Data", "url": base},
        "instantiates": ["http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"],
        "fhirVersion": "4.0.1", "format": [FHIR_JSON, "json"],
        "rest": [{
            "mode": "server",
            "security": {
                "extension": [{"url": OAUTH_URIS, "extension": [{"url": "token", "valueUri": f"{base}/token"}]}],
                "service": [_coding("http://terminology.hl7.org/CodeSystem/restful-security-service", "SMART-on-FHIR", "SMART-on-FHIR")],
                "description": "SMART Backend Services: client_credentials with an RS384-signed client assertion; "
                               f"bearer tokens last {TOKEN_TTL_S} s and carry system scopes such as {SCOPE_ALL}",
            },
            "resource": resources,
        }],
    }
