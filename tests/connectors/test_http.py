"""The one vendor HTTP client: retries, Retry-After, final errors, re-login, redirects, the
private-address filter, logging without PHI, backoff bounds and the per-connection rate limit.

Mocked with respx where the exact response sequence matters, and run against the real loopback
vendor where the network matters (timeouts, refused connections, sessions, the rate limit).
A fake `sleep` records the waits instead of sleeping, so no test waits for real unless it
measures the clock on purpose.
"""

from __future__ import annotations

import email.utils
import random
import re
import socket
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import respx

from connectors.errors import AuthenticationFailed, FinalError, RateLimited, RetryableError
from connectors.http import CALLS, RetryPolicy, VendorHttpClient, masked_path, parse_retry_after
from connectors.registry import connector_for

BASE = "https://api.vendor.example/v1"
NOW = datetime(2026, 3, 2, 12, 0, 0, tzinfo=UTC)


class CountingAuth:
    """An AuthHook that hands out t1, then t2 after one refresh, … and counts what it was asked."""

    def __init__(self) -> None:
        self.refreshes = 0
        self.observed: list[int] = []

    @property
    def token(self) -> str:
        return f"t{self.refreshes + 1}"

    def apply(self, request: httpx.Request) -> None:
        request.headers["Authorization"] = f"Bearer {self.token}"

    def refresh(self) -> None:
        self.refreshes += 1

    def observe(self, response: httpx.Response) -> None:
        self.observed.append(response.status_code)


def make_client(*, base_url: str = BASE, seed: int = 7, **kwargs) -> tuple[VendorHttpClient, list[float]]:
    waits: list[float] = []
    kwargs.setdefault("retry", RetryPolicy(max_attempts=4, backoff_base=0.5, backoff_cap=8.0))
    client = VendorHttpClient(base_url=base_url, vendor="acme", connection_key="test-connection", sleep=waits.append,
                              rng=random.Random(seed), **kwargs)
    return client, waits


def expected_backoffs(policy: RetryPolicy, seed: int, attempts: int) -> list[float]:
    rng = random.Random(seed)
    return [rng.uniform(0, min(policy.backoff_cap, policy.backoff_base * 2**attempt)) for attempt in range(attempts)]


def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


# --- 429 and Retry-After ---------------------------------------------------------------------------

@respx.mock
def test_a_429_waits_the_retry_after_seconds_then_succeeds():
    route = respx.get(f"{BASE}/patients").mock(side_effect=[
        httpx.Response(429, headers={"Retry-After": "3"}, json={"code": "rate_limited"}),
        httpx.Response(200, json={"data": []}),
    ])
    client, waits = make_client()

    response = client.request("GET", "/patients")

    assert response.status_code == 200
    assert response.json() == {"data": []}
    assert waits == [3.0]
    assert route.call_count == 2


@respx.mock
def test_a_429_with_an_http_date_waits_until_that_time(monkeypatch):
    class FrozenDateTime(datetime):
        @classmethod
        def now(cls, tz=None):
            return NOW

    monkeypatch.setattr("connectors.http.datetime", FrozenDateTime)
    when = email.utils.format_datetime(NOW + timedelta(seconds=7), usegmt=True)
    route = respx.get(f"{BASE}/patients").mock(side_effect=[
        httpx.Response(429, headers={"Retry-After": when}),
        httpx.Response(200, json={}),
    ])
    client, waits = make_client()

    assert client.request("GET", "/patients").status_code == 200
    assert waits == [7.0]
    assert route.call_count == 2


def test_parse_retry_after_reads_seconds_and_dates_and_ignores_garbage():
    assert parse_retry_after(" 5 ") == 5.0
    assert parse_retry_after("0") == 0.0
    assert parse_retry_after(email.utils.format_datetime(NOW + timedelta(seconds=90), usegmt=True), now=NOW) == 90.0
    assert parse_retry_after(email.utils.format_datetime(NOW - timedelta(seconds=90), usegmt=True), now=NOW) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after("") is None
    assert parse_retry_after(None) is None


@respx.mock
def test_a_429_without_retry_after_waits_the_vendors_default():
    route = respx.get(f"{BASE}/patients").mock(side_effect=[httpx.Response(429), httpx.Response(200, json={})])
    client, waits = make_client(retry=RetryPolicy(max_attempts=3, default_retry_after=lambda: 42.0))

    assert client.request("GET", "/patients").status_code == 200
    assert waits == [42.0]
    assert route.call_count == 2


@respx.mock
def test_a_429_without_retry_after_or_default_backs_off():
    policy = RetryPolicy(max_attempts=4, backoff_base=0.5, backoff_cap=8.0)
    route = respx.get(f"{BASE}/patients").mock(side_effect=[httpx.Response(429), httpx.Response(429), httpx.Response(200, json={})])
    client, waits = make_client(retry=policy, seed=11)

    assert client.request("GET", "/patients").status_code == 200
    assert waits == expected_backoffs(policy, 11, 2)
    assert route.call_count == 3


@respx.mock
def test_a_retry_after_longer_than_the_bound_raises_rate_limited_without_sleeping():
    route = respx.get(f"{BASE}/patients").mock(return_value=httpx.Response(429, headers={"Retry-After": "600"}))
    client, waits = make_client(retry=RetryPolicy(max_attempts=4, max_retry_after=120.0))

    with pytest.raises(RateLimited) as caught:
        client.request("GET", "/patients")

    assert caught.value.retryable is True
    assert caught.value.retry_after == 600.0
    assert caught.value.status == 429
    assert str(caught.value) == "acme: rate limited for 600s"
    assert waits == []
    assert route.call_count == 1


@respx.mock
def test_429s_until_the_attempts_run_out_raise_rate_limited():
    route = respx.get(f"{BASE}/patients").mock(return_value=httpx.Response(429, headers={"Retry-After": "2"}))
    client, waits = make_client(retry=RetryPolicy(max_attempts=3))

    with pytest.raises(RateLimited) as caught:
        client.request("GET", "/patients")

    assert (caught.value.retryable, caught.value.retry_after) == (True, 2.0)
    assert waits == [2.0, 2.0]  # no wait after the last attempt: the job's own retry backs off
    assert route.call_count == 3


# --- retryable failures ----------------------------------------------------------------------------

@respx.mock
def test_a_5xx_storm_is_retried_max_attempts_times_then_raises_retryable():
    policy = RetryPolicy(max_attempts=4, backoff_base=0.5, backoff_cap=8.0)
    route = respx.get(f"{BASE}/patients").mock(return_value=httpx.Response(503, json={"code": "unavailable"}))
    client, waits = make_client(retry=policy, seed=3)
    before = CALLS[("acme", "5xx")]

    with pytest.raises(RetryableError) as caught:
        client.request("GET", "/patients")

    assert type(caught.value) is RetryableError
    assert (caught.value.retryable, caught.value.status, str(caught.value)) == (True, 503, "acme: server error 503")
    assert route.call_count == 4
    assert waits == expected_backoffs(policy, 3, 3)
    assert CALLS[("acme", "5xx")] - before == 4


@respx.mock
def test_a_5xx_then_success_returns_the_success():
    route = respx.get(f"{BASE}/patients").mock(side_effect=[httpx.Response(502), httpx.Response(500), httpx.Response(200, json={"n": 1})])
    client, waits = make_client()

    assert client.get_json("/patients") == {"n": 1}
    assert route.call_count == 3
    assert len(waits) == 2


@respx.mock
def test_a_timeout_is_retried_then_raises_retryable():
    route = respx.get(f"{BASE}/patients").mock(side_effect=httpx.ReadTimeout("slow"))
    client, waits = make_client(retry=RetryPolicy(max_attempts=3))

    with pytest.raises(RetryableError) as caught:
        client.request("GET", "/patients")

    assert str(caught.value) == "acme: timed out (ReadTimeout)"
    assert route.call_count == 3
    assert len(waits) == 2


def test_a_real_timeout_against_a_slow_vendor_is_retryable(vendor):
    vendor.faults.latency_ms = 500
    client, waits = make_client(base_url=vendor.url, retry=RetryPolicy(max_attempts=2), timeout=httpx.Timeout(0.1))

    started = time.monotonic()
    with pytest.raises(RetryableError) as caught:
        client.request("GET", "/records", authenticated=False)

    assert str(caught.value) == "acme: timed out (ReadTimeout)"
    assert len(vendor.requests) == 2
    assert len(waits) == 1
    assert time.monotonic() - started < 2.0


def test_a_refused_connection_is_retryable():
    client, waits = make_client(base_url=f"http://127.0.0.1:{closed_port()}", retry=RetryPolicy(max_attempts=3))

    with pytest.raises(RetryableError) as caught:
        client.request("GET", "/records", authenticated=False)

    assert str(caught.value) == "acme: unreachable (ConnectError)"
    assert len(waits) == 2


# --- final failures --------------------------------------------------------------------------------

@pytest.mark.parametrize(("status", "body", "code"), [
    (422, {"code": 100, "message": "invalid patient Jane Doe"}, "100"),
    (400, {"errors": [{"status": "400", "code": "INVALID_FIELD", "detail": "dob 1950-01-01"}]}, "INVALID_FIELD"),
    (404, {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "not-found"}]}, "not-found"),
    (409, {"message": "free text is never a code"}, ""),
])
@respx.mock
def test_a_4xx_is_final_with_status_and_vendor_code(status, body, code):
    route = respx.post(f"{BASE}/patients").mock(return_value=httpx.Response(status, json=body))
    client, waits = make_client()

    with pytest.raises(FinalError) as caught:
        client.request("POST", "/patients", json={"family": "Doe"})

    assert type(caught.value) is FinalError
    assert caught.value.retryable is False
    assert (caught.value.status, caught.value.vendor_code) == (status, code)
    assert str(caught.value) == f"acme: refused with {status}" + (f" ({code})" if code else "")
    assert "Jane" not in str(caught.value) and "1950" not in str(caught.value)
    assert route.call_count == 1
    assert waits == []


@respx.mock
def test_a_403_is_an_authentication_failure_without_relogin():
    respx.get(f"{BASE}/patients").mock(return_value=httpx.Response(403, json={"code": "forbidden"}))
    auth = CountingAuth()
    client, _ = make_client(auth=auth)

    with pytest.raises(AuthenticationFailed) as caught:
        client.request("GET", "/patients")

    assert (caught.value.status, caught.value.vendor_code, str(caught.value)) == (403, "forbidden", "acme: refused with 403 (forbidden)")
    assert auth.refreshes == 0


@respx.mock
def test_a_401_refreshes_the_session_once_then_succeeds():
    def answer(request: httpx.Request) -> httpx.Response:
        if request.headers["Authorization"] == "Bearer t2":
            return httpx.Response(200, json={"data": []})
        return httpx.Response(401, json={"code": "TOKEN_EXPIRED"})

    route = respx.get(f"{BASE}/patients").mock(side_effect=answer)
    auth = CountingAuth()
    client, waits = make_client(auth=auth)

    assert client.get_json("/patients") == {"data": []}
    assert auth.refreshes == 1
    assert [call.request.headers["Authorization"] for call in route.calls] == ["Bearer t1", "Bearer t2"]
    assert auth.observed == [200]
    assert waits == []


@respx.mock
def test_a_second_401_is_an_authentication_failure():
    route = respx.get(f"{BASE}/patients").mock(return_value=httpx.Response(401, json={"code": "TOKEN_EXPIRED"}))
    auth = CountingAuth()
    client, _ = make_client(auth=auth)

    with pytest.raises(AuthenticationFailed) as caught:
        client.request("GET", "/patients")

    assert (caught.value.status, caught.value.vendor_code) == (401, "TOKEN_EXPIRED")
    assert str(caught.value) == "acme: refused with 401 (TOKEN_EXPIRED)"
    assert auth.refreshes == 1
    assert route.call_count == 2


@respx.mock
def test_a_401_on_the_last_attempt_is_final_not_a_crash():
    respx.get(f"{BASE}/patients").mock(return_value=httpx.Response(401))
    auth = CountingAuth()
    client, _ = make_client(auth=auth, retry=RetryPolicy(max_attempts=1))

    with pytest.raises(AuthenticationFailed) as caught:
        client.request("GET", "/patients")

    assert str(caught.value) == "acme: refused with 401 and no attempt left after logging in again"
    assert auth.refreshes == 1


@respx.mock
def test_an_unauthenticated_call_never_signs_or_refreshes():
    route = respx.post(f"{BASE}/token").mock(return_value=httpx.Response(401, json={"error": "invalid_client"}))
    auth = CountingAuth()
    client, _ = make_client(auth=auth)

    with pytest.raises(AuthenticationFailed) as caught:
        client.request("POST", "/token", authenticated=False, data={"grant_type": "client_credentials"})

    assert caught.value.vendor_code == "invalid_client"
    assert "Authorization" not in route.calls.last.request.headers
    assert auth.refreshes == 0


@respx.mock
def test_redirects_are_not_followed():
    moved = respx.get(f"{BASE}/patients").mock(return_value=httpx.Response(302, headers={"Location": "https://evil.example/steal"}))
    elsewhere = respx.get("https://evil.example/steal").mock(return_value=httpx.Response(200, json={}))
    client, _ = make_client()

    with pytest.raises(FinalError) as caught:
        client.request("GET", "/patients")

    assert str(caught.value) == "acme: answered a redirect (302); redirects are not followed"
    assert caught.value.status == 302
    assert moved.call_count == 1
    assert elsewhere.call_count == 0


# --- the private-address filter --------------------------------------------------------------------

def test_private_addresses_are_refused_when_not_allowed(settings, vendor):
    settings.HUB_ALLOW_PRIVATE_VENDOR_HOSTS = False
    client, _ = make_client(base_url=vendor.url)

    with pytest.raises(FinalError) as caught:
        client.request("GET", "/records", authenticated=False)

    assert str(caught.value) == (
        "acme: refused to call 127.0.0.1: the host '127.0.0.1' is a private, loopback or link-local address (127.0.0.1)"
    )
    assert vendor.requests == []


@respx.mock
def test_a_private_network_host_is_refused_before_any_request(settings):
    settings.HUB_ALLOW_PRIVATE_VENDOR_HOSTS = False
    route = respx.get("http://10.1.2.3/v1/patients").mock(return_value=httpx.Response(200, json={}))
    client, _ = make_client(base_url="http://10.1.2.3/v1")

    with pytest.raises(FinalError, match=r"^acme: refused to call 10\.1\.2\.3: "):
        client.request("GET", "/patients")
    assert route.call_count == 0


def test_private_addresses_are_allowed_on_the_embedded_default(settings, vendor):
    settings.HUB_ALLOW_PRIVATE_VENDOR_HOSTS = True
    client, _ = make_client(base_url=vendor.url)

    with pytest.raises(AuthenticationFailed):  # it reached the vendor, which wants a token
        client.request("GET", "/records", authenticated=False)
    assert vendor.requests == [("GET", "/records")]


# --- logging without PHI or secrets ----------------------------------------------------------------

LOG_LINE = re.compile(r"vendor=acme (GET|POST) (\S+) -> (\S+) in \d+ms attempt=(\d+)")


@respx.mock
def test_log_lines_mask_ids_and_never_carry_queries_tokens_or_bodies(caplog):
    respx.get(f"{BASE}/patients/MRN0012345/notes").mock(side_effect=[httpx.Response(503), httpx.Response(200, json={"ssn": "123-45-6789"})])
    client, _ = make_client(auth=CountingAuth(), default_headers={"X-Api-Key": "key-abcdef"})

    with caplog.at_level("INFO", logger="connectors.http"):
        client.request("GET", "/patients/MRN0012345/notes", params={"ssn": "123-45-6789", "name": "Jane Doe", "access_token": "qs-tok"})

    lines = [r.getMessage() for r in caplog.records if r.name == "connectors.http"]
    assert [LOG_LINE.fullmatch(line).groups() for line in lines] == [
        ("GET", "/v1/patients/:id/notes", "503", "1"),
        ("GET", "/v1/patients/:id/notes", "200", "2"),
    ]
    text = "\n".join(lines)
    for secret in ("MRN0012345", "?", "ssn", "123-45-6789", "Jane", "qs-tok", "t1", "Bearer", "key-abcdef"):
        assert secret not in text


def test_masked_path_hides_id_segments_but_keeps_versions():
    assert masked_path("https://x.example/v1/patients/12345/") == "/v1/patients/:id/"
    assert masked_path("https://x.example/fhir/r4/Patient/abc-9/_history/2?_count=5") == "/fhir/r4/Patient/:id/_history/:id"
    assert masked_path("https://x.example/records/r000003") == "/records/:id"


@pytest.mark.django_db
def test_a_real_session_logs_masked_paths_and_no_tokens(loopback_connection, vendor, caplog):
    vendor.store.seed(5)
    connector = connector_for(loopback_connection)

    with caplog.at_level("INFO"):
        record = connector.fetch_one(connector.resource("records"), "r000003")

    assert record["mrn"] == "MRN0000003"
    token = next(iter(vendor.tokens))
    lines = [r.getMessage() for r in caplog.records if r.name == "connectors.http"]
    assert [re.sub(r" in \d+ms attempt=1$", "", line) for line in lines] == [
        "vendor=loopback POST /login -> 200", "vendor=loopback GET /records/:id -> 200",
    ]
    everything = "\n".join(r.getMessage() for r in caplog.records)
    for secret in (token, "pw-123", "r000003", "MRN0000003", "limit="):
        assert secret not in everything


# --- backoff ---------------------------------------------------------------------------------------

def test_backoff_is_full_jitter_bounded_by_the_cap():
    policy = RetryPolicy(backoff_base=0.5, backoff_cap=4.0)
    rng = random.Random(2026)
    for attempt in range(12):
        ceiling = min(4.0, 0.5 * 2**attempt)
        samples = [policy.backoff(attempt, rng) for _ in range(200)]
        assert all(0 <= s <= ceiling for s in samples)
        assert len(set(samples)) == 200  # jittered: no two workers retry in lockstep
        assert max(samples) > ceiling * 0.9  # and it uses the whole range
    assert max(policy.backoff(60, rng) for _ in range(1000)) <= 4.0  # a huge attempt number stays capped


# --- the per-connection rate limit -----------------------------------------------------------------

@pytest.mark.django_db
def test_the_connection_rate_limit_spaces_calls_on_a_real_clock(loopback_connection, vendor):
    vendor.store.seed(3)
    loopback_connection.options = {"rate_limit_per_second": 5}
    loopback_connection.save()
    connector = connector_for(loopback_connection)
    client = connector.client()
    assert client.rate_limit.limit == 5

    started = time.monotonic()
    for _ in range(15):
        assert len(client.get_json("/records", params={"limit": 2})["data"]) == 2
    elapsed = time.monotonic() - started

    assert len(vendor.requests) == 16  # the login and fifteen reads, all through the limiter
    # 16 calls at 5 per one-second window need at least three windows: two full seconds waited.
    assert 2.0 <= elapsed < 4.5
