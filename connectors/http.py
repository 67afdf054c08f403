"""The one HTTP client every vendor connector uses (STYLE.md, "Connectors").

Default timeouts; no redirects; the private-address filter; a per-connection rate limit shared
by all workers; retries with exponential backoff and full jitter on network errors and 5xx; a
429 waits what Retry-After says; a 401 re-authenticates once; one log line per call without PHI
(paths are logged with id-like segments masked, never query strings or bodies); every loop bounded.
"""

from __future__ import annotations

import email.utils
import functools
import logging
import os
import random
import re
import ssl
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

import certifi
import httpx
import orjson
from django.conf import settings

from connectors import ratelimit
from connectors.errors import AuthenticationFailed, FinalError, RateLimited, RetryableError
from hub.netguard import UnsafeUrl, check_url

logger = logging.getLogger("connectors.http")
# httpx logs every request's full URL, query string included, at INFO: ids and search terms are
# PHI. Our own line below is the one request log; httpx speaks only when something is wrong.
logging.getLogger("httpx").setLevel(logging.WARNING)

# Calls per (vendor, status class), for the admin and tests; a real deployment scrapes logs.
CALLS: Counter[tuple[str, str]] = Counter()

# A path segment with a digit in it, except API versions such as v1 or FHIR's r4.
_ID_SEGMENT = re.compile(r"/(?![vVrR]\d{1,2}(?:/|$))[^/]*\d[^/]*")


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One TLS context for every vendor client: building one loads the CA bundle (~30 ms), and a
    pull builds a client per record. Verification stays on; as httpx does, SSL_CERT_FILE or
    SSL_CERT_DIR (a private CA) win over the certifi bundle."""
    cafile, capath = os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")
    if cafile or capath:
        return ssl.create_default_context(cafile=cafile, capath=capath)
    return ssl.create_default_context(cafile=certifi.where())


def masked_path(url: str) -> str:
    """/v1/patients/12345/ → /v1/patients/:id/ — ids can be PHI (MRNs), so they never reach logs."""
    return _ID_SEGMENT.sub("/:id", urlsplit(url).path)


class AuthHook(Protocol):
    """How a vendor session signs requests. `refresh` logs in again (raises AuthenticationFailed)."""

    def apply(self, request: httpx.Request) -> None: ...

    def refresh(self) -> None: ...

    def observe(self, response: httpx.Response) -> None: ...


@dataclass
class RetryPolicy:
    max_attempts: int = 5
    backoff_base: float = 0.5  # seconds
    backoff_cap: float = 30.0
    max_retry_after: float = 120.0  # the longest Retry-After we honour inside one call
    # When a 429 carries no Retry-After: seconds to wait (None = exponential backoff). A vendor
    # whose limit is per minute (eClinicalWorks) waits for the next minute.
    default_retry_after: Callable[[], float] | None = None

    def backoff(self, attempt: int, rng: random.Random) -> float:
        return rng.uniform(0, min(self.backoff_cap, self.backoff_base * 2**attempt))


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


@dataclass
class VendorHttpClient:
    base_url: str
    vendor: str
    connection_key: str  # rate-limit key: one bucket per connection
    auth: AuthHook | None = None
    rate_limit: ratelimit.RateLimit | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeout: httpx.Timeout = field(default_factory=lambda: httpx.Timeout(30.0, connect=5.0))
    transport: httpx.BaseTransport | None = None
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)
    default_headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._client = httpx.Client(
            base_url=self.base_url, timeout=self.timeout, follow_redirects=False, transport=self.transport, verify=_tls_context(),
            headers={"User-Agent": "Switchboard/1.0", "Accept": "application/json", **self.default_headers},
        )
        self._checked_hosts: dict[str, float] = {}

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> VendorHttpClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- the call ---------------------------------------------------------------------------------
    def request(self, method: str, url: str, *, authenticated: bool = True, **kwargs: Any) -> httpx.Response:
        """Send with retries; return a 2xx response or raise RetryableError / FinalError."""
        refreshed = False
        last_error: Exception | None = None
        for attempt in range(self.retry.max_attempts):
            request = self._client.build_request(method, url, **kwargs)
            self._check_host(request.url)
            # Sign first: signing may log in (its own rate-limited calls), and a slot taken before
            # that would be spent seconds later, next to the next second's slots, at the vendor.
            if authenticated and self.auth is not None:
                self.auth.apply(request)
            if self.rate_limit is not None:
                ratelimit.acquire(self.connection_key, self.rate_limit, max_wait=self.retry.max_retry_after, sleep=self.sleep)
            started = time.monotonic()
            try:
                response = self._client.send(request)
            except httpx.TimeoutException as exc:
                last_error = RetryableError(f"{self.vendor}: timed out ({type(exc).__name__})")
                self._log(request, "timeout", started, attempt)
                self._pause(attempt, self.retry.backoff(attempt, self.rng))
                continue
            except httpx.TransportError as exc:
                last_error = RetryableError(f"{self.vendor}: unreachable ({type(exc).__name__})")
                self._log(request, "unreachable", started, attempt)
                self._pause(attempt, self.retry.backoff(attempt, self.rng))
                continue
            self._log(request, response.status_code, started, attempt)
            status = response.status_code
            if 200 <= status < 300:
                if self.auth is not None:
                    self.auth.observe(response)
                return response
            response.read()
            if status == 429:
                wait = parse_retry_after(response.headers.get("Retry-After"))
                if wait is None and self.retry.default_retry_after is not None:
                    wait = self.retry.default_retry_after()
                if wait is None:
                    wait = self.retry.backoff(attempt, self.rng)
                if wait > self.retry.max_retry_after:
                    raise RateLimited(f"{self.vendor}: rate limited for {wait:.0f}s", retry_after=wait)
                last_error = RateLimited(f"{self.vendor}: rate limited", retry_after=wait)
                self._pause(attempt, wait)
                continue
            if status >= 500:
                last_error = RetryableError(f"{self.vendor}: server error {status}", status=status)
                self._pause(attempt, self.retry.backoff(attempt, self.rng))
                continue
            if status == 401 and authenticated and self.auth is not None and not refreshed:
                refreshed = True  # one fresh login per call, then it is final
                # Raised only when the login used up the last attempt.
                last_error = AuthenticationFailed(f"{self.vendor}: refused with 401 and no attempt left after logging in again",
                                                  status=status)
                self.auth.refresh()
                continue
            code = vendor_code(response)
            refused = f"{self.vendor}: refused with {status}" + (f" ({code})" if code else "")
            if status in (401, 403):
                raise AuthenticationFailed(refused, status=status, vendor_code=code, body=_json_or_none(response))
            if 300 <= status < 400:
                raise FinalError(f"{self.vendor}: answered a redirect ({status}); redirects are not followed", status=status)
            raise FinalError(refused, status=status, vendor_code=code, body=_json_or_none(response))
        assert last_error is not None
        raise last_error

    def get_json(self, url: str, **kwargs: Any) -> Any:
        response = self.request("GET", url, **kwargs)
        try:
            return orjson.loads(response.content)  # 3x faster than the json module on a page of a thousand records
        except ValueError:
            pass
        try:
            return response.json()  # JSON in a charset other than UTF-8 (RFC 8259 asks for UTF-8; some send Latin-1)
        except ValueError:
            raise FinalError(f"{self.vendor}: answered non-JSON ({response.headers.get('Content-Type', '?')}) at {masked_path(str(response.url))}") from None

    # --- helpers ----------------------------------------------------------------------------------
    def _pause(self, attempt: int, seconds: float) -> None:
        """Wait before the next attempt; after the last one there is none, so give up at once."""
        if attempt + 1 < self.retry.max_attempts:
            self.sleep(seconds)

    def _check_host(self, url: httpx.URL) -> None:
        host = url.host
        now = time.monotonic()
        if self._checked_hosts.get(host, 0) > now:
            return
        try:
            check_url(str(url), require_https=settings.HUB_REQUIRE_HTTPS_VENDOR_URLS, allow_private=settings.HUB_ALLOW_PRIVATE_VENDOR_HOSTS)
        except UnsafeUrl as exc:
            raise FinalError(f"{self.vendor}: refused to call {host}: {exc}") from None
        self._checked_hosts[host] = now + 60  # DNS answers are re-checked every minute

    def _log(self, request: httpx.Request, outcome: int | str, started: float, attempt: int) -> None:
        CALLS[(self.vendor, str(outcome)[0] + "xx" if isinstance(outcome, int) else outcome)] += 1
        logger.info(
            "vendor=%s %s %s -> %s in %.0fms attempt=%d", self.vendor, request.method, masked_path(str(request.url)),
            outcome, (time.monotonic() - started) * 1000, attempt + 1,
        )


def vendor_code(response: httpx.Response) -> str:
    """A vendor error code from a JSON body ('code', 'errors[0].code', OperationOutcome), never free text; '' when none."""
    try:
        body = response.json()
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    for candidate in (body.get("code"), body.get("error"), (body.get("errors") or [{}])[0].get("code") if isinstance(body.get("errors"), list) and body.get("errors") and isinstance(body["errors"][0], dict) else None):
        if isinstance(candidate, str | int) and len(str(candidate)) <= 64:
            return str(candidate)
    if body.get("resourceType") == "OperationOutcome":
        issue = (body.get("issue") or [{}])[0]
        return str(issue.get("code", "")) if isinstance(issue, dict) else ""
    return ""


def _json_or_none(response: httpx.Response) -> object:
    try:
        return response.json()
    except ValueError:
        return None
