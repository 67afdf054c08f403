"""The connection admin's connector actions: Sync now, Open vendor session, and the MFA relay
details staff copy into their SMS gateway."""

from __future__ import annotations

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME

from connectors.auth_flows import relay_token
from connectors.choices import SessionState, Trigger
from connectors.models import MfaCode, SyncRun, VendorSession
from connectors.registry import CONNECTORS
from tenants.choices import AuditAction
from tenants.models import AuditEvent
from tests.factories import ConnectionFactory

URL = "/admin/tenants/connection/"


@pytest.fixture
def others(tenant_a, vendor, monkeypatch):
    """A disabled loopback connection, and one whose vendor has no connector installed."""
    monkeypatch.delitem(CONNECTORS, "welkin", raising=False)
    disabled = ConnectionFactory(tenant=tenant_a, vendor="loopback", base_url=vendor.url, display_name="Loopback off", enabled=False)
    uninstalled = ConnectionFactory(tenant=tenant_a, vendor="welkin", display_name="Welkin")
    return disabled, uninstalled


def messages_of(response) -> list[tuple[str, str]]:
    return [(m.level_tag, str(m)) for m in response.context["messages"]]


@pytest.mark.django_db
def test_sync_now_queues_a_run_per_resource_after_commit_and_audits(admin_client, loopback_connection, others, sent,
                                                                      django_capture_on_commit_callbacks):
    disabled, uninstalled = others
    selected = [loopback_connection.pk, disabled.pk, uninstalled.pk]

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = admin_client.post(URL, {"action": "sync_now", ACTION_CHECKBOX_NAME: selected}, follow=True)

    runs = list(SyncRun.objects.order_by("pk"))
    assert [(r.connection_id, r.resource, r.trigger, r.status) for r in runs] == [
        (loopback_connection.pk, "records", Trigger.MANUAL, "queued"), (loopback_connection.pk, "records_all", Trigger.MANUAL, "queued"),
    ]
    assert len(callbacks) == 1  # sent only once the action's transaction committed: the first of a chain
    assert sent == [("sync_resource", {"run_id": runs[0].pk, "then": [runs[1].pk]})]
    assert messages_of(response) == [
        ("warning", "Did not sync: Loopback off (disabled); Welkin (no connector installed for welkin)."),
        ("success", "Queued 2 sync run(s) for 1 connection(s)."),
    ]
    audit = AuditEvent.objects.get(object_type="tenants.connection", detail__action="sync_now")
    assert (audit.action, audit.object_id, audit.tenant_id, audit.actor_label, audit.detail) == (
        AuditAction.UPDATE, str(loopback_connection.public_id), loopback_connection.tenant_id, "staff:root",
        {"action": "sync_now", "runs": [runs[0].pk, runs[1].pk]},
    )


@pytest.mark.django_db
def test_sync_now_with_nothing_startable_queues_nothing(admin_client, others, sent, django_capture_on_commit_callbacks):
    disabled, _ = others

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(URL, {"action": "sync_now", ACTION_CHECKBOX_NAME: [disabled.pk]}, follow=True)

    assert messages_of(response) == [("warning", "Did not sync: Loopback off (disabled).")]
    assert sent == []
    assert SyncRun.objects.count() == 0
    assert not AuditEvent.objects.filter(detail__action="sync_now").exists()


@pytest.mark.django_db
def test_open_vendor_session_enqueues_the_login_after_commit_and_audits(admin_client, loopback_connection, others, sent,
                                                                         django_capture_on_commit_callbacks):
    disabled, uninstalled = others

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = admin_client.post(URL, {"action": "open_vendor_session",
                                           ACTION_CHECKBOX_NAME: [loopback_connection.pk, disabled.pk, uninstalled.pk]}, follow=True)

    assert len(callbacks) == 1
    assert sent == [("open_session", {"connection_id": loopback_connection.pk})]
    assert messages_of(response) == [
        ("warning", "Did not open a session: Loopback off (disabled); Welkin (no connector installed for welkin)."),
        ("success", "Opening the vendor session of 1 connection(s); its state shows under Vendor sessions."),
    ]
    audit = AuditEvent.objects.get(object_type="connectors.vendorsession")
    assert (audit.action, audit.object_id, audit.tenant_id, audit.actor_label, audit.detail) == (
        AuditAction.CREATE, str(loopback_connection.public_id), loopback_connection.tenant_id, "staff:root", {"action": "open_session"},
    )


@pytest.mark.django_db(transaction=True)
def test_open_vendor_session_logs_in_through_the_worker(admin_client, loopback_connection, vendor, worker, drain):
    admin_client.post(URL, {"action": "open_vendor_session", ACTION_CHECKBOX_NAME: [loopback_connection.pk]})
    drain("default")

    row = VendorSession.objects.get(connection=loopback_connection)
    assert (row.state, row.method, row.logins) == (SessionState.ACTIVE, "password", 1)
    assert vendor.logins == 1


@pytest.mark.django_db
def test_the_change_page_shows_the_mfa_relay_that_works_and_no_secrets(admin_client, client, loopback_connection):
    page = admin_client.get(f"{URL}{loopback_connection.pk}/change/")

    html = page.content.decode()
    path = f"/hooks/mfa/{loopback_connection.public_id}/"
    token = relay_token(loopback_connection)
    assert page.status_code == 200
    assert f"<code>{path}</code>" in html
    assert f"<code>X-Relay-Token: {token}</code>" in html
    assert "pw-123" not in html  # the credential's password is never shown again

    relayed = client.post(path, {"Body": "Your code is 604211"}, HTTP_X_RELAY_TOKEN=token)  # what staff configure
    assert relayed.status_code == 202
    assert MfaCode.objects.get(connection=loopback_connection).code == "604211"


@pytest.mark.django_db
def test_the_add_page_explains_the_relay_comes_after_saving(admin_client):
    page = admin_client.get(f"{URL}add/")

    assert page.status_code == 200
    assert "Save the connection first." in page.content.decode()
