import pytest
from django.db import connection as db_connection
from django.db import transaction

from tenants.audit import record_audit
from tenants.models import AuditEvent
from tests.factories import CodeMappingFactory


def events(**filters):
    return list(AuditEvent.objects.filter(**filters).order_by("id"))


@pytest.mark.django_db
def test_every_api_read_and_write_is_audited(partner_a):
    mapping = CodeMappingFactory(tenant=partner_a.tenant)
    client = partner_a.client
    client.get("/api/v1/code-mappings/", HTTP_X_REQUEST_ID="req-list-0001")
    client.get(f"/api/v1/code-mappings/{mapping.public_id}/")
    created = client.post("/api/v1/code-mappings/", {"category": "payer", "source_system": "w", "source_code": "1",
                                                     "target_system": "t", "target_code": "2"}, format="json").json()
    client.patch(f"/api/v1/code-mappings/{created['id']}/", {"display": "Medicaid"}, format="json")
    client.delete(f"/api/v1/code-mappings/{created['id']}/")

    rows = events(tenant=partner_a.tenant, object_type="tenants.codemapping")
    assert [(e.action, e.object_id) for e in rows] == [
        ("list", ""),
        ("read", str(mapping.public_id)),
        ("create", created["id"]),
        ("update", created["id"]),
        ("delete", created["id"]),
    ]
    for event in rows:
        assert event.actor_partner_app == partner_a.partner_app
        assert event.actor_label == f"partner:{partner_a.partner_app.name}"
        assert event.ip == "127.0.0.1"
        assert event.request_id
    assert rows[0].request_id == "req-list-0001"
    assert rows[0].detail == {"count": 1, "ids": [str(mapping.public_id)], "filters": []}
    assert rows[3].detail == {"fields": ["display"]}


@pytest.mark.django_db
def test_refused_requests_write_no_audit_and_change_nothing(partner_a, partner_b):
    mapping = CodeMappingFactory(tenant=partner_b.tenant)
    before = AuditEvent.objects.count()
    partner_a.client.delete(f"/api/v1/code-mappings/{mapping.public_id}/")
    assert AuditEvent.objects.count() == before
    assert type(mapping).objects.filter(pk=mapping.pk).exists()


@pytest.mark.django_db
def test_request_id_is_echoed_and_hostile_ids_replaced(partner_a):
    ok = partner_a.client.get("/api/v1/me", HTTP_X_REQUEST_ID="abc-123-def")
    assert ok["X-Request-ID"] == "abc-123-def"
    hostile = partner_a.client.get("/api/v1/me", HTTP_X_REQUEST_ID="x\nINFO forged log line")
    assert hostile["X-Request-ID"] != "x\nINFO forged log line"
    assert len(hostile["X-Request-ID"]) == 32


@pytest.mark.django_db
def test_audit_events_cannot_be_updated_or_deleted_through_the_orm(tenant_a):
    event = record_audit("read", object_type="x", tenant=tenant_a)
    event.action = "delete"
    with pytest.raises(PermissionError, match="append-only"):
        event.save()
    with pytest.raises(PermissionError, match="append-only"):
        event.delete()
    with pytest.raises(PermissionError, match="append-only"):
        AuditEvent.objects.filter(pk=event.pk).update(action="delete")
    with pytest.raises(PermissionError, match="append-only"):
        AuditEvent.objects.all().delete()
    assert AuditEvent.objects.get(pk=event.pk).action == "read"


@pytest.mark.django_db
def test_admin_offers_no_add_change_or_delete(admin_client, tenant_a):
    event = record_audit("read", object_type="x", tenant=tenant_a)
    assert admin_client.get("/admin/tenants/auditevent/").status_code == 200
    assert admin_client.get("/admin/tenants/auditevent/add/").status_code == 403
    assert admin_client.get(f"/admin/tenants/auditevent/{event.pk}/delete/").status_code == 403
    page = admin_client.get(f"/admin/tenants/auditevent/{event.pk}/change/")
    assert page.status_code == 200
    assert b'name="_save"' not in page.content
    response = admin_client.post(f"/admin/tenants/auditevent/{event.pk}/change/", {"action": "delete"})
    assert response.status_code == 403
    assert AuditEvent.objects.get(pk=event.pk).action == "read"


@pytest.mark.services
@pytest.mark.django_db
def test_postgres_refuses_raw_update_and_delete(tenant_a):
    event = record_audit("read", object_type="x", tenant=tenant_a)
    for sql in ("UPDATE tenants_auditevent SET action = 'delete' WHERE id = %s", "DELETE FROM tenants_auditevent WHERE id = %s"):
        with pytest.raises(Exception, match="append-only"), transaction.atomic(), db_connection.cursor() as cursor:
            cursor.execute(sql, [event.pk])
    assert AuditEvent.objects.get(pk=event.pk).action == "read"
