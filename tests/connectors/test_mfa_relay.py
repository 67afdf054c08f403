"""POST /hooks/mfa/<connection public id>/: where an SMS gateway or mail forwarder relays the
vendor's one-time code to a login that waits for it."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.db import connection as db
from django.utils import timezone

from connectors.auth_flows import extract_code, relay_token, wait_for_mfa_code
from connectors.errors import MfaRequired
from connectors.models import MfaCode
from tests.factories import ConnectionFactory

pytestmark = pytest.mark.django_db

NOT_FOUND = {"detail": "Not found."}


@pytest.fixture
def connection(tenant_a):
    return ConnectionFactory(tenant=tenant_a, vendor="wellsky", display_name="WellSky portal")


def url(connection, **query) -> str:
    suffix = "&".join(f"{k}={v}" for k, v in query.items())
    return f"/hooks/mfa/{connection.public_id}/" + (f"?{suffix}" if suffix else "")


def post_json(client, connection, body, *, token=None, **query):
    return client.post(url(connection, **query), data=body, content_type="application/json",
                       HTTP_X_RELAY_TOKEN=relay_token(connection) if token is None else token)


def test_a_json_message_stores_its_code_for_the_waiting_login(client, connection):
    response = post_json(client, connection, {"text": "Your WellSky code is 482913. It expires in 10 minutes."})

    assert response.status_code == 202
    assert response.json() == {"status": "accepted"}
    code = MfaCode.objects.get()
    assert (code.connection_id, code.channel, code.code, code.consumed_at) == (connection.pk, "sms", "482913", None)


def test_a_twilio_style_form_post_is_accepted(client, connection):
    response = client.post(url(connection), {"From": "+15555550100", "Body": "482913 is your verification code"},
                           HTTP_X_RELAY_TOKEN=relay_token(connection))

    assert response.status_code == 202
    assert MfaCode.objects.get().code == "482913"


@pytest.mark.parametrize("how", ["query", "body"])
def test_an_email_forwarder_names_its_channel(client, connection, how):
    if how == "query":
        response = post_json(client, connection, {"text": "Code: 5521"}, channel="email")
    else:
        response = post_json(client, connection, {"text": "Code: 5521", "channel": "email"})

    assert response.status_code == 202
    assert (MfaCode.objects.get().channel, MfaCode.objects.get().code) == ("email", "5521")


def test_the_token_may_come_as_a_query_parameter(client, connection):
    response = client.post(url(connection, token=relay_token(connection)), {"Body": "code 771122"})

    assert response.status_code == 202
    assert MfaCode.objects.get().code == "771122"


def test_a_wrong_token_and_an_unknown_connection_both_answer_404(client, connection, tenant_b):
    other = ConnectionFactory(tenant=tenant_b, vendor="wellsky")
    wrong = post_json(client, connection, {"text": "482913"}, token="not-the-token")
    someone_elses = post_json(client, connection, {"text": "482913"}, token=relay_token(other))
    missing = client.post(f"/hooks/mfa/{uuid.uuid4()}/", data={"text": "482913"}, content_type="application/json",
                          HTTP_X_RELAY_TOKEN=relay_token(connection))
    no_token = client.post(url(connection), data={"text": "482913"}, content_type="application/json")

    for response in (wrong, someone_elses, missing, no_token):
        assert response.status_code == 404
        assert response.json() == NOT_FOUND
    assert MfaCode.objects.count() == 0


def test_a_message_without_a_code_is_422(client, connection):
    response = post_json(client, connection, {"text": "Your account was locked. Call 12 34."})

    assert response.status_code == 422
    assert response.json() == {"detail": "No 4–8 digit code found in the message."}
    assert MfaCode.objects.count() == 0


def test_an_oversized_message_is_413(client, connection):
    response = post_json(client, connection, {"text": "482913 " + "x" * 17_000})

    assert response.status_code == 413
    assert response.json() == {"detail": "The message is larger than 16 KiB."}
    assert MfaCode.objects.count() == 0


@pytest.mark.parametrize("body", ["text=482913", "[" * 5000 + "]" * 5000], ids=["form", "nested-past-the-parser"])
def test_a_body_that_is_not_json_is_400(client, connection, body):
    response = client.post(url(connection), data=body, content_type="application/json",
                           HTTP_X_RELAY_TOKEN=relay_token(connection))

    assert response.status_code == 400
    assert response.json() == {"detail": "The body is not JSON."}
    assert MfaCode.objects.count() == 0


def test_an_unknown_channel_is_400(client, connection):
    response = post_json(client, connection, {"text": "482913"}, channel="fax")

    assert response.status_code == 400
    assert response.json() == {"detail": "channel must be sms or email."}
    assert MfaCode.objects.count() == 0


def test_only_post_is_allowed(client, connection):
    assert client.get(url(connection, token=relay_token(connection))).status_code == 405


def test_the_code_is_stored_encrypted(client, connection):
    post_json(client, connection, {"text": "Your code is 482913"})

    with db.cursor() as cursor:
        cursor.execute("SELECT code FROM connectors_mfacode")
        (raw,) = cursor.fetchone()
    assert "482913" not in str(raw)
    assert MfaCode.objects.get().code == "482913"


def test_a_relayed_code_is_consumed_once(client, connection):
    since = timezone.now() - timedelta(seconds=1)
    post_json(client, connection, {"text": "Your code is 482913"})

    assert wait_for_mfa_code(connection, "sms", since=since, timeout=1, poll=0.01) == "482913"
    assert MfaCode.objects.get().consumed_at is not None
    with pytest.raises(MfaRequired, match=r"^no sms code arrived within 0s; check the relay to /hooks/mfa/$"):
        wait_for_mfa_code(connection, "sms", since=since, timeout=0, poll=0.01)


def test_a_code_from_before_the_login_or_another_channel_or_connection_is_not_used(client, connection, tenant_a):
    other = ConnectionFactory(tenant=tenant_a, vendor="wellsky")
    MfaCode.objects.create(connection=connection, channel="sms", code="111111", received_at=timezone.now() - timedelta(minutes=5))
    since = timezone.now() - timedelta(seconds=1)
    post_json(client, connection, {"text": "222222"}, channel="email")
    post_json(client, other, {"text": "333333"})

    with pytest.raises(MfaRequired):
        wait_for_mfa_code(connection, "sms", since=since, timeout=0, poll=0.01)
    assert MfaCode.objects.filter(consumed_at__isnull=False).count() == 0
    assert wait_for_mfa_code(connection, "email", since=since, timeout=0, poll=0.01) == "222222"


def test_the_relay_token_is_per_connection_and_stable(connection, tenant_a):
    other = ConnectionFactory(tenant=tenant_a, vendor="wellsky")
    assert relay_token(connection) == relay_token(connection)
    assert relay_token(connection) != relay_token(other)
    assert len(relay_token(connection)) == 40


@pytest.mark.parametrize(("text", "code"), [
    ("Your code is 482913", "482913"),
    ("1234", "1234"),
    ("G-55512345 is your code", "55512345"),
    ("code 123", None),  # too short
    ("123456789", None),  # too long: a phone number, not a code
    ("", None),
])
def test_extract_code(text, code):
    assert extract_code(text) == code
