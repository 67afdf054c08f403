from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from tenants.models import ApiKey
from tests.factories import CodeMappingFactory, PartnerAppFactory, issue_key

URL = "/api/v1/code-mappings/"


def call(key: str | None, url: str = URL, header: str | None = None):
    client = APIClient()
    if header is not None:
        client.credentials(HTTP_AUTHORIZATION=header)
    elif key is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client.get(url)


@pytest.mark.django_db
def test_missing_key_is_401_with_bearer_challenge():
    response = call(None)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="switchboard"'
    body = response.json()
    assert body["code"] == "not_authenticated"
    assert body["detail"] == "Authentication credentials were not provided."
    assert response["Content-Type"] == "application/problem+json"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "header, message",
    [
        ("Basic dXNlcjpwYXNz", "Use 'Authorization: Bearer <api key>'"),
        ("Bearer", "Use 'Authorization: Bearer <api key>'"),
        ("Bearer not-a-key", "The API key is malformed: expected sb_live_<prefix>_<secret>."),
        ("Bearer sb_live_short_x", "The API key is malformed"),
    ],
)
def test_malformed_header_is_401_naming_the_problem(header, message):
    response = call(None, header=header)
    assert response.status_code == 401
    assert response.json()["code"] == "key_malformed"
    assert message in response.json()["detail"]


@pytest.mark.django_db
def test_unknown_and_wrong_secret_keys_are_401(partner_a):
    prefix = ApiKey.objects.get(partner_app=partner_a.partner_app).prefix
    wrong_secret = f"sb_live_{prefix}_{'A' * 43}"
    unknown = f"sb_live_zzzzzzzzzz_{'A' * 43}"
    for key in (wrong_secret, unknown):
        response = call(key)
        assert response.status_code == 401
        assert response.json() == {
            "type": "/problems/key_invalid",
            "title": "Unauthorized",
            "status": 401,
            "detail": "The API key is not valid.",
            "code": "key_invalid",
        }


@pytest.mark.django_db
def test_expired_key_is_401_saying_when(tenant_a):
    app = PartnerAppFactory(tenant=tenant_a)
    key = issue_key(app, expires_at=timezone.now() + timedelta(seconds=30))
    ApiKey.objects.filter(partner_app=app).update(expires_at=timezone.now() - timedelta(days=1))
    response = call(key)
    assert response.status_code == 401
    assert response.json()["code"] == "key_expired"
    assert response.json()["detail"].startswith("This API key expired on ")


@pytest.mark.django_db
def test_revoked_key_is_401(partner_a):
    from tenants.services import revoke_api_keys

    assert call(partner_a.key).status_code == 200
    assert revoke_api_keys(ApiKey.objects.filter(partner_app=partner_a.partner_app)) == 1
    response = call(partner_a.key)
    assert response.status_code == 401
    assert response.json()["code"] == "key_revoked"
    assert "revoked on" in response.json()["detail"]


@pytest.mark.django_db
def test_disabled_app_and_inactive_tenant_are_401(partner_a):
    partner_a.partner_app.active = False
    partner_a.partner_app.save()
    assert call(partner_a.key).json()["code"] == "app_disabled"
    partner_a.partner_app.active = True
    partner_a.partner_app.save()
    partner_a.tenant.active = False
    partner_a.tenant.save()
    response = call(partner_a.key)
    assert response.status_code == 401
    assert response.json()["code"] == "tenant_inactive"


@pytest.mark.django_db
def test_scope_is_enforced_and_the_403_names_it(make_persona, tenant_a):
    reader = make_persona(tenant_a, scopes=["code_mappings:read"])
    assert reader.client.get(URL).status_code == 200
    response = reader.client.post(URL, {"category": "payer", "source_system": "x", "source_code": "1",
                                        "target_system": "y", "target_code": "2"}, format="json")
    assert response.status_code == 403
    assert response.json()["missing_scope"] == "code_mappings:write"
    assert response.json()["detail"] == "This API key lacks the scope 'code_mappings:write'."
    other = make_persona(tenant_a, scopes=["patients:read"])
    response = other.client.get("/api/v1/connections/")
    assert response.status_code == 403
    assert response.json()["missing_scope"] == "connections:read"


@pytest.mark.django_db
def test_star_scope_grants_everything(partner_a):
    CodeMappingFactory(tenant=partner_a.tenant)
    assert partner_a.client.get(URL).status_code == 200
    assert partner_a.client.get("/api/v1/connections/").status_code == 200


@pytest.mark.django_db
def test_me_describes_the_key_never_the_secret(make_persona, tenant_a):
    persona = make_persona(tenant_a, scopes=["patients:read", "appointments:write"])
    response = persona.client.get("/api/v1/me")
    assert response.status_code == 200
    body = response.json()
    assert body["tenant"] == "tenant-a"
    assert body["scopes"] == ["appointments:write", "patients:read"]
    assert persona.key.split("_")[-1] not in response.content.decode()


@pytest.mark.django_db
def test_last_used_is_recorded_once_per_minute(partner_a):
    api_key = ApiKey.objects.get(partner_app=partner_a.partner_app)
    assert api_key.last_used_at is None
    call(partner_a.key)
    api_key.refresh_from_db()
    first = api_key.last_used_at
    assert first is not None
    call(partner_a.key)
    api_key.refresh_from_db()
    assert api_key.last_used_at == first


@pytest.mark.django_db
def test_only_the_hash_is_stored(partner_a):
    api_key = ApiKey.objects.get(partner_app=partner_a.partner_app)
    secret = partner_a.key.rsplit("_", 1)[1]
    assert secret not in api_key.secret_hash
    assert len(api_key.secret_hash) == 64
    assert partner_a.key.startswith(f"sb_live_{api_key.prefix}_")


@pytest.mark.django_db
def test_throttle_is_per_key(monkeypatch, partner_a, partner_a2):
    from django.core.cache import cache

    from hub.api.throttling import ApiKeyRateThrottle

    cache.clear()
    monkeypatch.setattr(ApiKeyRateThrottle, "THROTTLE_RATES", {"api_key": "3/min"})
    statuses = [partner_a.client.get(URL).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    throttled = partner_a.client.get(URL)
    assert throttled.json()["code"] == "throttled"
    assert int(throttled["Retry-After"]) > 0
    assert partner_a2.client.get(URL).status_code == 200  # another key has its own budget
