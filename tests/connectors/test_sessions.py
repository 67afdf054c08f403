"""Vendor sessions against the loopback vendor: password, TOTP and SMS logins, encrypted storage
and reuse, a session ending or rotating mid-sync, refused credentials; and the OAuth2 client
credentials and SMART Backend Services token calls against respx-mocked token endpoints."""

from __future__ import annotations

import base64
import threading
import time
from datetime import timedelta
from urllib.parse import parse_qs

import httpx
import jwt
import pytest
import respx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.db import connection as db
from django.db import connections
from django.test import Client
from django.utils import timezone

from canonical.models import Patient
from connectors.auth_flows import jwt_bearer_token, oauth2_client_credentials, relay_token, smart_backend_token
from connectors.choices import RunStatus, SessionState
from connectors.errors import AuthenticationFailed, MfaRequired
from connectors.http import RetryPolicy, VendorHttpClient
from connectors.models import MfaCode, SyncRun, VendorSession
from connectors.registry import connector_for
from connectors.sessions import SessionManager
from connectors.sync import create_runs, run_sync
from tenants.choices import ConnectionStatus
from tests.support.loopback import LoopbackConnector

TOTP_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"  # the credential's secret (conftest)


def sync(connection, resource="records"):
    (run,) = create_runs(connection, resources=[resource])
    return run_sync(run.pk)


def store_matches_source(connection, vendor) -> None:
    live = vendor.store.live()
    stored = {p.external_id: p for p in Patient.objects.filter(source_connection=connection, deleted_at__isnull=True)}
    assert set(stored) == set(live)
    for rid, raw in live.items():
        assert (stored[rid].family_name, stored[rid].birth_date.isoformat()) == (raw["family"], raw["birth_date"])
    assert Patient.objects.filter(source_connection=connection).count() == len(vendor.store.records)  # no duplicates


def raw_session_columns(connection) -> str:
    with db.cursor() as cursor:
        cursor.execute("SELECT access_token, refresh_token, cookies FROM connectors_vendorsession WHERE connection_id = %s",
                       [connection.pk])
        return " ".join(str(value) for value in cursor.fetchone())


# --- logins ----------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_a_password_login_stores_the_session_encrypted(loopback_connection, vendor):
    before = timezone.now()
    data = SessionManager(connector_for(loopback_connection)).login()

    (token,) = vendor.tokens
    assert (data.method, data.access_token) == ("password", token)
    row = VendorSession.objects.get(connection=loopback_connection)
    assert (row.state, row.method, row.access_token, row.logins, row.detail) == (SessionState.ACTIVE, "password", token, 1, "")
    assert before <= row.obtained_at <= timezone.now()
    assert timedelta(seconds=3590) < row.expires_at - before <= timedelta(seconds=3601)
    assert row.rotated_at is None
    raw = raw_session_columns(loopback_connection)
    assert token not in raw
    assert "tok-" not in raw


@pytest.mark.django_db
def test_a_stored_session_is_reused_by_a_new_connector_without_logging_in_again(loopback_connection, vendor):
    vendor.store.seed(3)
    first = connector_for(loopback_connection)
    assert first.fetch_one(first.resource("records"), "r000001")["id"] == "r000001"
    assert vendor.logins == 1

    second = connector_for(loopback_connection)  # another job, another process: only the row is shared
    assert second is not first
    assert second.fetch_one(second.resource("records"), "r000002")["id"] == "r000002"

    assert vendor.logins == 1
    assert VendorSession.objects.get(connection=loopback_connection).logins == 1
    assert [r for r in vendor.requests if r[0] == "POST"] == [("POST", "/login")]


@pytest.mark.django_db
def test_a_session_close_to_expiry_is_renewed_before_use(loopback_connection, vendor):
    vendor.store.seed(1)
    connector = connector_for(loopback_connection)
    SessionManager(connector).login()
    VendorSession.objects.filter(connection=loopback_connection).update(expires_at=timezone.now() + timedelta(seconds=10))

    fresh = connector_for(loopback_connection)
    fresh.fetch_one(fresh.resource("records"), "r000000")

    assert vendor.logins == 2
    assert VendorSession.objects.get(connection=loopback_connection).logins == 2


@pytest.mark.vendor(totp_secret=TOTP_SECRET)
@pytest.mark.django_db
def test_a_totp_login_answers_the_challenge_from_the_stored_secret(loopback_connection, vendor):
    data = SessionManager(connector_for(loopback_connection)).login()

    assert data.method == "totp"
    assert vendor.logins == 1
    assert vendor.requests == [("POST", "/login"), ("POST", "/login/mfa")]
    assert VendorSession.objects.get(connection=loopback_connection).method == "totp"


@pytest.mark.vendor(totp_secret="GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ")
@pytest.mark.django_db
def test_a_totp_login_with_the_wrong_secret_is_refused(loopback_connection, vendor):
    with pytest.raises(AuthenticationFailed) as caught:
        SessionManager(connector_for(loopback_connection)).login()

    assert str(caught.value) == "loopback: refused with 401 (bad_mfa_code)"
    assert vendor.logins == 0
    row = VendorSession.objects.get(connection=loopback_connection)
    assert (row.state, row.access_token, row.detail) == (SessionState.FAILED, "", "loopback: refused with # (bad_mfa_code)")


@pytest.mark.vendor(totp_secret=TOTP_SECRET)
@pytest.mark.django_db
def test_a_totp_secret_too_short_to_use_is_a_clear_authentication_failure(loopback_connection, vendor):
    credential = loopback_connection.credential
    credential.totp_secret = "JBSWY3DPEHPK3PXP"  # 80 bits
    credential.save()

    with pytest.raises(AuthenticationFailed) as caught:
        SessionManager(connector_for(loopback_connection)).login()

    assert str(caught.value) == "the connection's TOTP secret is not a base32 secret of at least 112 bits; enter it again"
    assert vendor.requests == [("POST", "/login")]
    assert VendorSession.objects.get(connection=loopback_connection).state == SessionState.FAILED


def _post_relay(connection, code: str) -> int:
    """What the SMS gateway does, from its own thread and database connection."""
    try:
        response = Client().post(f"/hooks/mfa/{connection.public_id}/", {"Body": f"Your Loopback code is {code}"},
                                 HTTP_X_RELAY_TOKEN=relay_token(connection))
        return response.status_code
    finally:
        connections.close_all()


@pytest.mark.vendor(sms=True)
@pytest.mark.django_db(transaction=True)
def test_an_sms_code_that_arrives_late_still_logs_in(loopback_connection, vendor, monkeypatch):
    """The login polls; on its third wait the gateway posts the code from another thread (and DB
    connection). Posting while the login sleeps keeps SQLite's in-memory test database, which
    takes one writer at a time, out of the race; on PostgreSQL it is the same real concurrency."""
    waits: list[float] = []
    statuses: list[int] = []
    seen_states: list[str] = []

    def gateway_posts_on_third_wait(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 3:
            seen_states.append(VendorSession.objects.get(connection=loopback_connection).state)
            poster = threading.Thread(target=lambda: statuses.append(_post_relay(loopback_connection, vendor.sms_outbox[-1])))
            poster.start()
            poster.join(timeout=5)
        time.sleep(seconds)

    monkeypatch.setattr(LoopbackConnector, "mfa_timeout_s", 5.0)
    monkeypatch.setattr(LoopbackConnector, "mfa_poll_s", 0.05)
    monkeypatch.setattr(LoopbackConnector, "mfa_sleep", staticmethod(gateway_posts_on_third_wait))

    started = time.monotonic()
    data = SessionManager(connector_for(loopback_connection)).login()

    assert statuses == [202]
    assert seen_states == [SessionState.AWAITING_MFA]
    assert data.method == "sms"
    assert len(waits) == 3  # found on the poll right after the third wait
    assert time.monotonic() - started < 5.0
    assert vendor.logins == 1
    code = MfaCode.objects.get(connection=loopback_connection)
    assert code.code == vendor.sms_outbox[-1]
    assert code.consumed_at is not None
    row = VendorSession.objects.get(connection=loopback_connection)
    assert (row.state, row.method, row.detail) == (SessionState.ACTIVE, "sms", "")


@pytest.mark.vendor(sms=True)
@pytest.mark.django_db
def test_no_sms_code_fails_clearly_within_the_timeout(loopback_connection, vendor, monkeypatch):
    monkeypatch.setattr(LoopbackConnector, "mfa_timeout_s", 0.3)
    monkeypatch.setattr(LoopbackConnector, "mfa_poll_s", 0.05)

    started = time.monotonic()
    with pytest.raises(MfaRequired) as caught:
        SessionManager(connector_for(loopback_connection)).login()
    elapsed = time.monotonic() - started

    assert str(caught.value) == "no sms code arrived within 0.3s; check the relay to /hooks/mfa/"
    assert 0.3 <= elapsed < 2.0
    assert vendor.logins == 0
    assert vendor.requests == [("POST", "/login")]  # the challenge was never answered
    row = VendorSession.objects.get(connection=loopback_connection)
    assert (row.state, row.access_token, row.detail) == (SessionState.FAILED, "", str(caught.value))


@pytest.mark.vendor(sms=True)
@pytest.mark.django_db
def test_a_sync_whose_login_gets_no_sms_code_fails_the_run_and_flags_the_connection(loopback_connection, vendor, monkeypatch):
    monkeypatch.setattr(LoopbackConnector, "mfa_timeout_s", 0.2)
    monkeypatch.setattr(LoopbackConnector, "mfa_poll_s", 0.05)

    with pytest.raises(MfaRequired):
        sync(loopback_connection)

    run = SyncRun.objects.get()
    assert (run.status, run.error) == (RunStatus.FAILED, "no sms code arrived within 0.2s; check the relay to /hooks/mfa/")
    loopback_connection.refresh_from_db()
    assert loopback_connection.status == ConnectionStatus.AUTH_FAILED
    assert Patient.objects.count() == 0


@pytest.mark.django_db
def test_a_wrong_password_is_refused_and_recorded(loopback_connection, vendor):
    credential = loopback_connection.credential
    credential.password = "not-the-password"
    credential.save()
    vendor.store.seed(5)

    with pytest.raises(AuthenticationFailed) as caught:
        sync(loopback_connection)

    assert (caught.value.status, caught.value.vendor_code) == (401, "bad_credentials")
    assert vendor.logins == 0
    assert vendor.requests == [("POST", "/login")]  # a refused login is not retried
    run = SyncRun.objects.get()
    assert (run.status, run.error, run.fetched) == (RunStatus.FAILED, "loopback: refused with # (bad_credentials)", 0)
    loopback_connection.refresh_from_db()
    assert (loopback_connection.status, loopback_connection.status_detail) == (
        ConnectionStatus.AUTH_FAILED, "loopback: refused with # (bad_credentials)")
    row = VendorSession.objects.get(connection=loopback_connection)
    assert (row.state, row.access_token, row.logins, row.detail) == (
        SessionState.FAILED, "", 0, "loopback: refused with # (bad_credentials)")
    assert "not-the-password" not in raw_session_columns(loopback_connection) + run.error + loopback_connection.status_detail


# --- sessions ending and rotating mid-sync ---------------------------------------------------------

@pytest.mark.django_db
def test_a_session_revoked_mid_sync_is_renewed_once_and_the_sync_finishes(loopback_connection, vendor):
    vendor.store.seed(250)
    vendor.faults.revoke_tokens_after = 1  # page 1 succeeds, then the vendor forgets every session

    run = sync(loopback_connection)

    assert (run.status, run.pages, run.fetched, run.created, run.failed) == (RunStatus.SUCCEEDED, 3, 250, 250, 0)
    assert vendor.logins == 2
    assert [path.split("?")[0] for _, path in vendor.requests] == ["/login", "/records", "/records", "/login", "/records", "/records"]
    assert VendorSession.objects.get(connection=loopback_connection).logins == 2
    store_matches_source(loopback_connection, vendor)


@pytest.mark.django_db
def test_a_vendor_that_refuses_every_fresh_token_fails_after_one_relogin(loopback_connection, vendor):
    vendor.store.seed(10)
    vendor.faults.token_ttl_s = 0  # every token is dead on arrival

    with pytest.raises(AuthenticationFailed) as caught:
        sync(loopback_connection)

    assert str(caught.value) == "loopback: refused with 401 (token_expired)"
    assert vendor.logins == 2  # the first login, and one more after the first 401
    run = SyncRun.objects.get()
    assert run.status == RunStatus.FAILED
    loopback_connection.refresh_from_db()
    assert loopback_connection.status == ConnectionStatus.AUTH_FAILED


@pytest.mark.django_db
def test_a_rotated_token_is_picked_up_and_stored(loopback_connection, vendor):
    vendor.store.seed(350)
    vendor.faults.rotate_every = 2  # pages 2 and 4 hand out a new token and revoke the old one

    run = sync(loopback_connection)

    assert (run.status, run.pages, run.created) == (RunStatus.SUCCEEDED, 4, 350)
    assert vendor.rotations == 2
    assert vendor.logins == 1  # had the rotation been missed, the next page would have met a 401
    (live_token,) = vendor.tokens
    row = VendorSession.objects.get(connection=loopback_connection)
    assert row.access_token == live_token
    assert row.rotated_at is not None and row.rotated_at >= row.obtained_at
    assert row.logins == 1
    assert live_token not in raw_session_columns(loopback_connection)
    store_matches_source(loopback_connection, vendor)

    again = connector_for(loopback_connection)  # the next job starts from the rotated token
    again.fetch_one(again.resource("records"), "r000001")
    assert vendor.logins == 1


# --- token endpoints -------------------------------------------------------------------------------

TOKEN_URL = "https://auth.vendor.example/oauth/token"


def token_client() -> VendorHttpClient:
    return VendorHttpClient(base_url="https://auth.vendor.example", vendor="acme", connection_key="tokens",
                            retry=RetryPolicy(max_attempts=2), sleep=lambda s: None)


def form_of(request: httpx.Request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(request.content.decode()).items()}


@respx.mock
def test_oauth2_client_credentials_posts_the_grant_with_basic_auth():
    route = respx.post(TOKEN_URL).mock(return_value=httpx.Response(200, json={"access_token": "at-1", "expires_in": 3600}))

    body = oauth2_client_credentials(token_client(), TOKEN_URL, "client-123", "s3cr3t", scope="patients.read")

    assert body == {"access_token": "at-1", "expires_in": 3600}
    request = route.calls.last.request
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert request.headers["Authorization"] == "Basic " + base64.b64encode(b"client-123:s3cr3t").decode()
    assert form_of(request) == {"grant_type": "client_credentials", "scope": "patients.read"}


@respx.mock
def test_oauth2_refusals_are_authentication_failures():
    respx.post(TOKEN_URL).mock(side_effect=[httpx.Response(401, json={"error": "invalid_client"}),
                                            httpx.Response(200, json={"token_type": "bearer"})])

    with pytest.raises(AuthenticationFailed) as refused:
        oauth2_client_credentials(token_client(), TOKEN_URL, "client-123", "wrong")
    with pytest.raises(AuthenticationFailed) as tokenless:
        oauth2_client_credentials(token_client(), TOKEN_URL, "client-123", "s3cr3t")
    with pytest.raises(AuthenticationFailed) as incomplete:
        oauth2_client_credentials(token_client(), TOKEN_URL, "client-123", "")

    assert (str(refused.value), refused.value.vendor_code) == ("acme: refused with 401 (invalid_client)", "invalid_client")
    assert str(tokenless.value) == "the token endpoint answered without an access_token"
    assert str(incomplete.value) == "the credential needs an OAuth client id and secret"
    assert respx.calls.call_count == 2  # the incomplete credential never reached the network


@pytest.fixture(scope="module")
def rsa_key():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    return pem, key.public_key()


@respx.mock
def test_smart_backend_services_signs_an_rs384_assertion_for_the_token_url(rsa_key):
    pem, public_key = rsa_key
    route = respx.post(TOKEN_URL).mock(return_value=httpx.Response(200, json={"access_token": "at-2", "expires_in": 300}))
    before = int(time.time())

    body = smart_backend_token(token_client(), TOKEN_URL, "my-client", pem, scope="system/Patient.read", kid="key-1")

    assert body == {"access_token": "at-2", "expires_in": 300}
    request = route.calls.last.request
    assert "Authorization" not in request.headers  # the assertion is the client's proof
    form = form_of(request)
    assertion = form.pop("client_assertion")
    assert form == {
        "grant_type": "client_credentials",
        "scope": "system/Patient.read",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
    }
    assert jwt.get_unverified_header(assertion) == {"alg": "RS384", "typ": "JWT", "kid": "key-1"}
    claims = jwt.decode(assertion, public_key, algorithms=["RS384"], audience=TOKEN_URL)
    assert (claims["iss"], claims["sub"], claims["aud"]) == ("my-client", "my-client", TOKEN_URL)
    assert before <= claims["iat"] <= int(time.time())
    assert claims["exp"] - claims["iat"] == 300  # SMART allows at most five minutes
    assert len(claims["jti"]) == 32
    with pytest.raises(jwt.InvalidAlgorithmError):
        jwt.decode(assertion, public_key, algorithms=["RS256"], audience=TOKEN_URL)


@respx.mock
def test_smart_backend_services_refuses_a_bad_private_key_before_calling():
    route = respx.post(TOKEN_URL).mock(return_value=httpx.Response(200, json={"access_token": "x"}))

    with pytest.raises(AuthenticationFailed) as caught:
        smart_backend_token(token_client(), TOKEN_URL, "my-client", "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----",
                            scope="system/*.read")

    assert str(caught.value).startswith("cannot sign the client assertion (")
    assert str(caught.value).endswith("); check the private key")
    assert "nope" not in str(caught.value)
    assert route.call_count == 0


@respx.mock
def test_the_jwt_bearer_grant_signs_hs256_with_the_client_secret():
    route = respx.post(TOKEN_URL).mock(return_value=httpx.Response(200, json={"access_token": "at-3"}))

    secret = "welkin-client-secret-of-32-bytes"
    assert jwt_bearer_token(token_client(), TOKEN_URL, "welkin-client", secret, scope="all") == {"access_token": "at-3"}

    form = form_of(route.calls.last.request)
    assert form["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    claims = jwt.decode(form["assertion"], secret, algorithms=["HS256"], audience=TOKEN_URL)
    assert (claims["iss"], claims["scope"], claims["exp"] - claims["iat"]) == ("welkin-client", "all", 300)


@pytest.mark.parametrize(("claimed", "expect_days"), [(10**12, 30), (3600, 0), ("7200", 0), ("soon", None), (-5, None), (float("nan"), None)])
def test_a_vendor_expires_in_is_clamped_never_fatal(claimed, expect_days):
    from connectors.sessions import SessionData

    data = SessionData()
    data.expires_in(claimed)

    if expect_days is None:
        assert data.expires_at is None
    else:
        assert data.expires_at is not None
        assert abs((data.expires_at - timezone.now()) - timedelta(days=expect_days, seconds=0 if expect_days else float(claimed))) < timedelta(seconds=5)
