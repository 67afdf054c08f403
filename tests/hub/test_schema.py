import pytest
from drf_spectacular.validation import validate_schema


@pytest.mark.django_db
def test_openapi_schema_is_valid_and_documents_the_key(client):
    response = client.get("/api/schema/?format=json")
    assert response.status_code == 200
    schema = response.json()
    validate_schema(schema)
    assert schema["openapi"].startswith("3.")
    assert schema["components"]["securitySchemes"]["partnerKey"] == {
        "type": "http", "scheme": "bearer", "bearerFormat": "sb_live_<prefix>_<secret>",
        "description": "A partner API key issued by the tenant's administrator.",
    }
    for path in ("/api/v1/code-mappings/", "/api/v1/code-mappings/{id}/", "/api/v1/connections/", "/api/v1/me"):
        assert path in schema["paths"], path


@pytest.mark.django_db
def test_docs_page_serves_its_own_assets(client):
    page = client.get("/api/docs/").content.decode()
    assert "swagger-ui" in page
    assert "cdn.jsdelivr" not in page and "unpkg" not in page  # works with no internet


def test_api_root_lists_routes_without_a_key(client):
    body = client.get("/api/v1/").json()
    assert body["code-mappings"] == "http://testserver/api/v1/code-mappings/"
    assert set(body) == {"me", "connections", "code-mappings", "schema", "docs"}
