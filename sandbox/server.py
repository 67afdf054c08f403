"""The sandbox's HTTP server: one loopback port, each vendor under its path prefix, faults in front.

    /_sandbox/faults   GET the faults in force; POST JSON to change them (the keys below)
    /_sandbox/mutate   POST {"vendor": "wellsky", "creates": n, "changes": n, "deletes": n}
    /_sandbox/state    GET live record counts per vendor key and resource
    /_sandbox/accounts GET the simulated tenants' login accounts (as a vendor's sandbox portal shows them);
                       POST {"vendor", "username", "relay_url"} to forward MFA codes to the hub's relay
    /_sandbox/outbox   GET the MFA codes "sent" by SMS or email (?channel=sms)

Faults apply to vendor paths only, never to the control paths above.
"""

from __future__ import annotations

import logging
import random
import socket
import threading
import time
from dataclasses import asdict, dataclass, fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

import orjson

MAX_BODY = 1 << 20  # 1 MiB; a vendor refuses larger bodies with 413
logger = logging.getLogger("sandbox")
# The largest value each whole-number fault takes: a fault must degrade the vendor, not wedge it.
FAULT_LIMITS = {"rate_limit": 100_000, "latency_ms": 60_000, "session_ttl_s": 30 * 86_400, "churn_per_page": 1_000}


@dataclass
class Faults:
    """What can go wrong, switchable per run (POST /_sandbox/faults, or CLI flags of the same names)."""

    error_rate: float = 0.0  # share of requests answered with a 5xx
    rate_limit: int = 0  # requests per second per vendor before 429 + Retry-After (0 = none)
    latency_ms: int = 0  # added to every vendor response
    session_ttl_s: int = 0  # lifetime of vendor sessions and tokens (0 = each vendor's default)
    malformed_rate: float = 0.0  # share of listed records served broken (bad date, missing field, wrong type)
    drop_rate: float = 0.0  # share of requests whose connection is closed without an answer (half before, half after acting)
    churn_per_page: int = 0  # records changed, created and deleted in the vendor after each listing page

    def update(self, values: dict[str, Any]) -> None:
        """Validate every key first, so a bad request changes nothing."""
        if not isinstance(values, dict):
            raise ValueError("the body must be a JSON object")
        known = {f.name: f for f in fields(self)}
        cleaned = {}
        for key, value in values.items():
            if key not in known:
                raise ValueError(f"unknown fault {key!r}; known: {', '.join(known)}")
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{key} must be a number")
            if key.endswith("_rate"):
                if not 0 <= value <= 1:
                    raise ValueError(f"{key} must be between 0 and 1")
                cleaned[key] = float(value)
            else:
                if value < 0 or value != int(value) or value > FAULT_LIMITS[key]:
                    raise ValueError(f"{key} must be a whole number from 0 to {FAULT_LIMITS[key]}")
                cleaned[key] = int(value)
        for key, value in cleaned.items():
            setattr(self, key, value)


@dataclass
class Request:
    method: str
    path: str  # below the vendor's prefix, e.g. "/patients"
    query: dict[str, str]
    headers: Any  # email.message.Message: case-insensitive get()
    body: bytes
    faults: Faults
    rng: random.Random

    def json(self) -> Any:
        try:
            return orjson.loads(self.body or b"{}")
        except orjson.JSONDecodeError as exc:
            raise HttpError(400, "invalid_json", f"the body is not JSON: {exc}") from None

    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode("utf-8", "replace")).items()}


@dataclass
class Response:
    status: int
    body: Any = None
    headers: dict[str, str] | None = None
    raw: bytes | None = None  # a body sent as is (e.g. a deliberately broken one)


class HttpError(Exception):
    """A vendor error answer: `{"code": …, "detail": …, "errors": […]}` with the status."""

    def __init__(self, status: int, code: str, detail: str, *, errors: list[dict] | None = None, headers: dict[str, str] | None = None,
                 extra: dict[str, Any] | None = None):
        super().__init__(detail)
        self.status, self.code, self.detail, self.errors, self.headers, self.extra = status, code, detail, errors, headers, extra

    def response(self) -> Response:
        body = {"code": self.code, "detail": self.detail, **(self.extra or {})}
        if self.errors:
            body["errors"] = self.errors
        return Response(self.status, body, self.headers)


class Vendor(Protocol):
    key: str  # the vendor key, as in the hub's registry and /_sandbox/state
    prefix: str  # the path prefix, e.g. "wellsky"

    def handle(self, request: Request) -> Response: ...

    def state(self) -> dict[str, int]: ...

    def mutate(self, spec: dict[str, Any]) -> dict[str, Any]: ...

    def accounts(self) -> list[dict[str, Any]]: ...


class Sandbox(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, vendors: list[Vendor], *, host: str = "127.0.0.1", port: int = 8700, faults: Faults | None = None, seed: int = 1):
        super().__init__((host, port), _Handler)
        self.vendors = {v.prefix: v for v in vendors}
        self.faults = faults or Faults()
        self.rng = random.Random(seed ^ 0x5EED)
        self.outbox: list[dict[str, Any]] = []  # MFA messages "sent"
        self._window: dict[str, tuple[int, int]] = {}  # vendor prefix -> (second, requests in it)
        self._lock = threading.Lock()
        for vendor in vendors:
            if hasattr(vendor, "attach"):
                vendor.attach(self)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> Sandbox:
        """Serve on a daemon thread (tests); `serve_forever()` serves on the caller's."""
        self._thread = threading.Thread(target=self.serve_forever, name="sandbox", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def vendor(self, key: str) -> Vendor:
        for vendor in self.vendors.values():
            if vendor.key == key:
                return vendor
        raise KeyError(key)

    def send_message(self, *, channel: str, to: str, text: str, code: str) -> None:
        with self._lock:
            self.outbox.append({"channel": channel, "to": to, "text": text, "code": code, "sent_at": time.time()})

    # --- faults -----------------------------------------------------------------------------------
    def roll(self, rate: float) -> bool:
        if rate <= 0:
            return False
        with self._lock:
            return self.rng.random() < rate

    def over_rate_limit(self, prefix: str) -> bool:
        limit = self.faults.rate_limit
        if not limit:
            return False
        second = int(time.time())
        with self._lock:
            window, used = self._window.get(prefix, (second, 0))
            if window != second:
                window, used = second, 0
            self._window[prefix] = (window, used + 1)
            return used >= limit

    # --- control paths ----------------------------------------------------------------------------
    def control(self, request: Request) -> Response:
        path = request.path
        if path == "/_sandbox/faults":
            if request.method == "POST":
                self.faults.update(request.json())
            return Response(200, asdict(self.faults))
        if path == "/_sandbox/state" and request.method == "GET":
            return Response(200, {vendor.key: vendor.state() for vendor in self.vendors.values()})
        if path == "/_sandbox/accounts" and request.method == "GET":
            return Response(200, {vendor.key: vendor.accounts() for vendor in self.vendors.values()})
        if path == "/_sandbox/accounts" and request.method == "POST":  # {"vendor", "username", "relay_url"|"mfa"|"write"}
            spec = request.json()
            if not isinstance(spec, dict):
                raise HttpError(400, "invalid", "the body must be a JSON object")
            try:
                vendor = self.vendor(spec.get("vendor", ""))
            except KeyError:
                raise HttpError(404, "unknown_vendor", f"no vendor {spec.get('vendor')!r}") from None
            return Response(200, vendor.configure_account(spec.get("username", ""), spec))
        if path == "/_sandbox/outbox" and request.method == "GET":
            channel = request.query.get("channel")
            with self._lock:
                messages = [m for m in self.outbox if channel in (None, m["channel"])]
            return Response(200, {"messages": messages})
        if path == "/_sandbox/mutate" and request.method == "POST":
            spec = request.json()
            if not isinstance(spec, dict) or not isinstance(spec.get("vendor"), str):
                raise HttpError(400, "invalid", "the body must be an object naming a vendor")
            try:
                vendor = self.vendor(spec["vendor"])
            except KeyError:
                raise HttpError(404, "unknown_vendor", f"no vendor {spec['vendor']!r}; known: "
                                + ", ".join(v.key for v in self.vendors.values())) from None
            return Response(200, vendor.mutate(spec))
        raise HttpError(404, "not_found", f"no control path {request.method} {path}")


class _Handler(BaseHTTPRequestHandler):
    server: Sandbox
    protocol_version = "HTTP/1.1"  # keep-alive, as real vendors; every answer has a Content-Length
    disable_nagle_algorithm = True  # headers and body go out as two writes; with Nagle each answer waited ~40 ms

    def log_message(self, *args) -> None:  # quiet; a vendor's access log is not ours to print
        return

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        declared = (self.headers.get("Content-Length") or "0").strip()
        if not declared.isdigit():  # also refuses "-1", which would read until the client hangs up
            self.close_connection = True
            return self._write(HttpError(400, "invalid_length", "Content-Length must be a whole number of bytes").response())
        length = int(declared)
        if length > MAX_BODY:
            self.close_connection = True
            return self._write(HttpError(413, "too_large", "the body is larger than 1 MiB").response())
        body = self.rfile.read(length) if length else b""
        try:
            self._route(method, body)
        except Exception:  # a simulator bug answers 500 like a vendor would; it never takes the server down
            logger.exception("sandbox: %s %s failed", method, urlsplit(self.path).path)
            self._write(HttpError(500, "internal_error", "the simulator failed on this request").response())

    def _route(self, method: str, body: bytes) -> None:
        srv = self.server
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        segments = parts.path.split("/", 2)
        prefix = segments[1] if len(segments) > 1 else ""
        try:
            if prefix == "_sandbox":
                request = Request(method, parts.path, query, self.headers, body, srv.faults, srv.rng)
                return self._write(srv.control(request))
            vendor = srv.vendors.get(prefix)
            if vendor is None:
                raise HttpError(404, "not_found", f"no vendor at /{prefix}/; serving " + ", ".join(f"/{p}/" for p in srv.vendors))
            faults = srv.faults
            if faults.latency_ms:
                time.sleep(faults.latency_ms / 1000)
            dropped = srv.roll(faults.drop_rate)
            if dropped and srv.roll(0.5):  # half the drops come before the vendor acts on the request
                return self._drop()
            if srv.over_rate_limit(prefix):
                raise HttpError(429, "rate_limited", f"more than {faults.rate_limit} requests per second", headers={"Retry-After": "1"})
            if srv.roll(faults.error_rate):
                status = srv.rng.choice((500, 502, 503))
                raise HttpError(status, "unavailable", "the service is temporarily unavailable")
            request = Request(method, "/" + (segments[2] if len(segments) > 2 else ""), query, self.headers, body, faults, srv.rng)
            response = vendor.handle(request)
            if dropped:  # … and half after it acted: a write happened, but its answer never arrives
                return self._drop()
            self._write(response)
        except HttpError as exc:
            self._write(exc.response())
        except (ValueError, OverflowError) as exc:  # a malformed or out-of-range parameter the vendor code rejected
            self._write(HttpError(400, "invalid", str(exc)[:300]).response())

    def _drop(self) -> None:
        """Close the socket without answering, as a load balancer does when a backend dies."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _write(self, response: Response) -> None:
        if response.raw is not None:
            data = response.raw
        else:
            data = orjson.dumps(response.body) if response.body is not None else b""
        self.send_response(response.status)
        headers = {"Content-Type": "application/json", **(response.headers or {})}
        for key, value in headers.items():
            if key.lower() == "set-cookie" and isinstance(value, list):
                for one in value:
                    self.send_header("Set-Cookie", one)
            else:
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
