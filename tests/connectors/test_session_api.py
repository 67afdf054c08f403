"""POST /api/v1/connections/<id>/sessions and GET /api/v1/connections/<id>/session: a partner opens
a connection's vendor session (a job) and reads its state, never its token."""

from __future__ import annotations

import pytest

from connectors.choices import SessionState
from connectors.models import FailedJob, VendorSession
from connectors.registry import connector_for
from connectors.sessions import SessionManager
from tenants.choices import AuditAction
from tenants.models import AuditEvent

STATE_FIELDS = {"connection", "state", "method", "obtained_at", "expires_at", "rotated_at", "detail", "status_url"}


def open_url(connection) -> str:
    return f"/api/v1/connections/{connection.public_id}/sessions"


def state_url(connection) -> str:
    return f"/api/v1/connections/{connection.public_id}/session"


def session_audits(connection):
    return list(AuditEvent.objects.filter(object_type="connectors.vendorsession", object_id=str(connection.public_id))
                .order_by("id").values_list("action", "tenant__slug", "actor_label"))


@pytest.mark.django_db
def test_opening_a_session_answers_202_with_its_state_and_enqueues_the_login(
        make_persona, tenant_a, loopback_connection, sent, django_capture_on_commit_callbacks):
    writer = make_persona(tenant_a, scopes=["connections:write"])

    with django_capture_on_commit_callbacks(execute=True):
        response = writer.client.post(open_url(loopback_connection))

    assert response.status_code == 202
    body = response.json()
    assert set(body) == STATE_FIELDS
    assert body["connection"] == str(loopback_connection.public_id)
    assert (body["state"], body["method"], body["obtained_at"], body["detail"]) == ("none", "", None, "")
    assert body["status_url"] == f"http://testserver{state_url(loopback_connection)}"
    assert response["Location"] == body["status_url"]
    assert sent == [("open_session", {"connection_id": loopback_connection.pk})]
    assert session_audits(loopback_connection) == [(AuditAction.CREATE, "tenant-a", f"partner:{writer.partner_app.name}")]


@pytest.mark.django_db
def test_the_state_never_carries_the_token(make_persona, tenant_a, loopback_connection, vendor, sent,
                                           django_capture_on_commit_callbacks):
    SessionManager(connector_for(loopback_connection)).login()
    (token,) = vendor.tokens
    partner = make_persona(tenant_a, scopes=["connections:read", "connections:write"])

    with django_capture_on_commit_callbacks(execute=True):
        opened = partner.client.post(open_url(loopback_connection))
    state = partner.client.get(state_url(loopback_connection))

    assert (opened.status_code, state.status_code) == (202, 200)
    for response in (opened, state):
        assert response.json()["state"] == SessionState.ACTIVE
        assert response.json()["method"] == "password"
        assert token not in response.content.decode()
        assert "pw-123" not in response.content.decode()
    assert set(state.json()) == STATE_FIELDS
    assert state.json()["obtained_at"] is not None and state.json()["expires_at"] is not None
    assert [a for a, _, _ in session_audits(loopback_connection)] == [AuditAction.CREATE, AuditAction.READ]


@pytest.mark.django_db
def test_reading_a_connection_without_a_session(make_persona, tenant_a, loopback_connection):
    reader = make_persona(tenant_a, scopes=["connections:read"])

    response = reader.client.get(state_url(loopback_connection))

    assert response.status_code == 200
    assert response.json() == {
        "connection": str(loopback_connection.public_id), "state": "none", "method": "", "obtained_at": None,
        "expires_at": None, "rotated_at": None, "detail": "",
        "status_url": f"http://testserver{state_url(loopback_connection)}",
    }
    assert session_audits(loopback_connection) == [(AuditAction.READ, "tenant-a", f"partner:{reader.partner_app.name}")]


@pytest.mark.django_db
def test_another_tenants_connection_is_404(partner_b, loopback_connection, sent, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        opened = partner_b.client.post(open_url(loopback_connection))
    read = partner_b.client.get(state_url(loopback_connection))

    assert (opened.status_code, read.status_code) == (404, 404)
    assert sent == []
    assert session_audits(loopback_connection) == []
    assert VendorSession.objects.count() == 0


@pytest.mark.django_db
def test_an_unknown_connection_is_404(partner_a):
    assert partner_a.client.post("/api/v1/connections/00000000-0000-0000-0000-000000000000/sessions").status_code == 404
    assert partner_a.client.get("/api/v1/connections/not-a-uuid/session").status_code == 404


@pytest.mark.django_db
def test_missing_scopes_are_403_and_change_nothing(make_persona, tenant_a, loopback_connection, sent,
                                                   django_capture_on_commit_callbacks):
    reader = make_persona(tenant_a, scopes=["connections:read"])
    stranger = make_persona(tenant_a, scopes=["patients:read"])

    with django_capture_on_commit_callbacks(execute=True):
        opened = reader.client.post(open_url(loopback_connection))
    read = stranger.client.get(state_url(loopback_connection))

    assert (opened.status_code, opened.json()["missing_scope"]) == (403, "connections:write")
    assert (read.status_code, read.json()["missing_scope"]) == (403, "connections:read")
    assert sent == []
    assert session_audits(loopback_connection) == []


@pytest.mark.django_db
def test_anonymous_calls_are_401(client, loopback_connection):
    assert client.post(open_url(loopback_connection)).status_code == 401
    assert client.get(state_url(loopback_connection)).status_code == 401


@pytest.mark.django_db(transaction=True)
def test_the_job_logs_in_and_the_state_becomes_active(make_persona, tenant_a, loopback_connection, vendor, worker, drain):
    partner = make_persona(tenant_a, scopes=["connections:read", "connections:write"])

    assert partner.client.post(open_url(loopback_connection)).status_code == 202
    drain("default")

    state = partner.client.get(state_url(loopback_connection)).json()
    assert (state["state"], state["method"], state["detail"]) == (SessionState.ACTIVE, "password", "")
    assert state["obtained_at"] is not None
    assert vendor.logins == 1
    row = VendorSession.objects.get(connection=loopback_connection)
    assert (row.logins, row.access_token) == (1, next(iter(vendor.tokens)))
    assert FailedJob.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_a_refused_login_shows_as_failed_and_goes_to_triage(make_persona, tenant_a, loopback_connection, vendor, worker, drain):
    credential = loopback_connection.credential
    credential.password = "expired-password"
    credential.save()
    partner = make_persona(tenant_a, scopes=["connections:read", "connections:write"])

    assert partner.client.post(open_url(loopback_connection)).status_code == 202
    drain("default")

    state = partner.client.get(state_url(loopback_connection)).json()
    assert (state["state"], state["detail"]) == (SessionState.FAILED, "loopback: refused with # (bad_credentials)")
    job = FailedJob.objects.get()
    assert (job.actor, job.arguments, job.exception_type, job.attempts, job.connection_id, job.status) == (
        "open_session", {"args": [], "kwargs": {"connection_id": loopback_connection.pk}},
        "connectors.errors.AuthenticationFailed", 1, loopback_connection.pk, "open",
    )
    assert "expired-password" not in job.message + job.traceback
