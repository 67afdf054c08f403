"""A key of tenant A gets 404 on every object of tenant B, and no list shows B's rows."""

import pytest

from tenants.models import CodeMapping
from tests.factories import CodeMappingFactory, ConnectionFactory, CredentialFactory


@pytest.fixture
def b_objects(tenant_b):
    connection = ConnectionFactory(tenant=tenant_b)
    CredentialFactory(connection=connection)
    mapping = CodeMappingFactory(tenant=tenant_b, source_code="B-ONLY")
    return {"connections": connection, "code-mappings": mapping}


@pytest.mark.django_db
@pytest.mark.parametrize("route", ["connections", "code-mappings"])
def test_other_tenants_objects_are_404_on_every_method(partner_a, partner_b, b_objects, route):
    obj = b_objects[route]
    url = f"/api/v1/{route}/{obj.public_id}/"
    assert partner_b.client.get(url).status_code == 200  # it exists, for its own tenant
    responses = [
        partner_a.client.get(url),
        partner_a.client.patch(url, {"display": "hijacked"}, format="json"),
        partner_a.client.put(url, {"display": "hijacked"}, format="json"),
        partner_a.client.delete(url),
    ]
    for response in responses:
        assert response.status_code in (404, 405), response.content
    assert [r.status_code for r in responses][0] == 404
    if route == "code-mappings":
        assert [r.status_code for r in responses] == [404, 404, 404, 404]
        obj.refresh_from_db()
        assert obj.display == "Personal care"


@pytest.mark.django_db
@pytest.mark.parametrize("route", ["connections", "code-mappings"])
def test_lists_never_show_other_tenants_rows(partner_a, b_objects, tenant_a, route):
    ConnectionFactory(tenant=tenant_a)
    CodeMappingFactory(tenant=tenant_a)
    rows = partner_a.client.get(f"/api/v1/{route}/").json()["results"]
    assert len(rows) == 1
    assert str(b_objects[route].public_id) not in {row["id"] for row in rows}


@pytest.mark.django_db
def test_unknown_and_malformed_ids_are_404(partner_a):
    assert partner_a.client.get("/api/v1/code-mappings/00000000-0000-0000-0000-000000000000/").status_code == 404
    assert partner_a.client.get("/api/v1/code-mappings/1/").status_code == 404


@pytest.mark.django_db
def test_tenant_and_read_only_fields_cannot_be_mass_assigned(partner_a, tenant_b):
    response = partner_a.client.post(
        "/api/v1/code-mappings/",
        {"tenant": tenant_b.pk, "id": "00000000-0000-0000-0000-000000000001", "created_at": "2001-01-01T00:00:00Z",
         "category": "payer", "source_system": "wellsky", "source_code": "MCD", "target_system": "payer-id",
         "target_code": "77027"},
        format="json",
    )
    assert response.status_code == 201
    created = CodeMapping.objects.get(public_id=response.json()["id"])
    assert created.tenant == partner_a.tenant
    assert str(created.public_id) != "00000000-0000-0000-0000-000000000001"
    assert created.created_at.year != 2001


@pytest.mark.django_db
def test_same_source_code_may_exist_in_two_tenants_but_not_twice_in_one(partner_a, partner_b):
    body = {"category": "payer", "source_system": "wellsky", "source_code": "MCD", "target_system": "payer-id",
            "target_code": "77027"}
    assert partner_a.client.post("/api/v1/code-mappings/", body, format="json").status_code == 201
    assert partner_b.client.post("/api/v1/code-mappings/", body, format="json").status_code == 201
    duplicate = partner_a.client.post("/api/v1/code-mappings/", body, format="json")
    assert duplicate.status_code == 400
    assert duplicate.json()["errors"] == [
        {"field": "source_code", "message": "A payer mapping for wellsky/MCD already exists."}
    ]
    assert CodeMapping.objects.filter(tenant=partner_a.tenant).count() == 1


@pytest.mark.django_db
def test_validation_errors_name_the_field(partner_a):
    response = partner_a.client.post("/api/v1/code-mappings/", {"category": "nonsense"}, format="json")
    assert response.status_code == 400
    body = response.json()
    fields = {error["field"] for error in body["errors"]}
    assert fields == {"category", "source_system", "source_code", "target_system", "target_code"}
    assert body["code"] == "invalid"
    assert "category: \"nonsense\" is not a valid choice." in body["detail"]


@pytest.mark.django_db
def test_connection_responses_never_carry_secrets(partner_a, tenant_a):
    connection = ConnectionFactory(tenant=tenant_a)
    CredentialFactory(connection=connection)
    text = partner_a.client.get(f"/api/v1/connections/{connection.public_id}/").content.decode()
    for secret in ("correct horse battery staple", "JBSWY3DPEHPK3PXP", "s3cr3t-client", "scheduler@agency.example"):
        assert secret not in text
    assert '"credential_configured":true' in text.replace(" ", "")


@pytest.mark.django_db
def test_cursor_pagination_walks_every_row_once(partner_a, tenant_a):
    for _ in range(7):
        CodeMappingFactory(tenant=tenant_a)
    seen, url = [], "/api/v1/code-mappings/?page_size=3"
    while url:
        body = partner_a.client.get(url).json()
        seen.extend(row["id"] for row in body["results"])
        url = body["next"]
    assert len(seen) == len(set(seen)) == 7


@pytest.mark.django_db
def test_page_size_is_capped(partner_a, tenant_a, settings):
    settings.API_MAX_PAGE_SIZE = 2
    for _ in range(3):
        CodeMappingFactory(tenant=tenant_a)
    assert len(partner_a.client.get("/api/v1/code-mappings/?page_size=1000").json()["results"]) == 2
