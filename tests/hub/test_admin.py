"""The admin as staff and implementation leads use it."""

import re

import pyotp
import pytest
from django.contrib.auth import get_user_model
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework.test import APIClient

from tenants.models import ApiKey, AuditEvent, Entitlement, PartnerApp, Tenant
from tests.factories import UserFactory

PASSWORD = "a-long-staff-password"


@pytest.fixture
def staff(db):
    return UserFactory(username="lead", is_superuser=True)


def login(client, username="lead", password=PASSWORD, **extra):
    return client.post("/admin/login/?next=/admin/", {"username": username, "password": password, **extra}, REMOTE_ADDR="10.0.0.9")


@pytest.mark.django_db
def test_embedded_admin_login_with_password(client, staff, settings):
    settings.ADMIN_REQUIRE_OTP = False
    response = login(client)
    assert response.status_code == 302
    assert client.get("/admin/").status_code == 200


@pytest.mark.django_db
def test_production_admin_needs_a_totp_code(client, staff, settings):
    settings.ADMIN_REQUIRE_OTP = True
    device = TOTPDevice.objects.create(user=staff, name="phone", confirmed=True)
    page = client.get("/admin/login/")
    assert b'name="otp_token"' in page.content

    without_code = login(client)
    assert without_code.status_code == 200  # the form again, with an error
    assert client.get("/admin/").status_code == 302  # still not in

    code = f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits):0{device.digits}d}"
    assert pyotp.TOTP(__import__("base64").b32encode(device.bin_key).decode()).now() == code  # any authenticator agrees
    with_code = login(client, otp_device=device.persistent_id, otp_token=code)
    assert with_code.status_code == 302
    assert client.get("/admin/").status_code == 200


@pytest.mark.django_db
def test_password_only_session_is_refused_when_otp_is_required(client, staff, settings):
    settings.ADMIN_REQUIRE_OTP = True
    client.force_login(staff)  # logged in, but never verified a second factor
    assert client.get("/admin/").status_code == 302


@pytest.mark.django_db
def test_failed_logins_are_rate_limited(client, staff, settings):
    settings.ADMIN_REQUIRE_OTP = False
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert login(client, password="wrong-password").status_code == 200
    locked = login(client, password="wrong-password")
    assert locked.status_code == 429
    # Even the right password is refused while the lockout lasts.
    assert login(client).status_code == 429
    assert client.get("/admin/").status_code == 302
    # Another user from the same address is not locked out.
    UserFactory(username="other", is_superuser=True)
    assert login(client, username="other").status_code == 302


@pytest.mark.django_db
def test_every_admin_page_loads_for_staff(admin_client, partner_a):
    for model in ("tenant", "connection", "entitlement", "partnerapp", "apikey", "codemapping", "auditevent"):
        assert admin_client.get(f"/admin/tenants/{model}/").status_code == 200, model
        if model != "auditevent":
            assert admin_client.get(f"/admin/tenants/{model}/add/").status_code == 200, model
    assert admin_client.get("/admin/tenants/codemapping/import/").status_code == 200
    assert admin_client.get("/admin/otp_totp/totpdevice/add/").status_code == 200


@pytest.mark.django_db
def test_anonymous_users_are_sent_to_login(client):
    response = client.get("/admin/tenants/tenant/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


@pytest.mark.django_db
def test_newcomer_onboards_a_tenant_end_to_end(admin_client):
    """Tenant with an entitlement → partner app → key shown once → the key works on the API."""
    response = admin_client.post("/admin/tenants/tenant/add/", {
        "slug": "sunrise", "name": "Sunrise Home Care", "timezone": "America/Chicago", "active": "on",
        "entitlements-TOTAL_FORMS": "1", "entitlements-INITIAL_FORMS": "0", "entitlements-MIN_NUM_FORMS": "0",
        "entitlements-MAX_NUM_FORMS": "1000", "entitlements-0-capability": "patients.read",
        "entitlements-0-valid_from_0": "2026-01-01", "entitlements-0-valid_from_1": "00:00:00",
    })
    assert response.status_code == 302, response.content.decode()[:2000]
    tenant = Tenant.objects.get(slug="sunrise")
    assert list(Entitlement.objects.filter(tenant=tenant).values_list("capability", flat=True)) == ["patients.read"]

    response = admin_client.post("/admin/tenants/partnerapp/add/", {
        "tenant": tenant.pk, "name": "CRM", "contact_email": "dev@crm.example", "active": "on",
        "api_keys-TOTAL_FORMS": "0", "api_keys-INITIAL_FORMS": "0", "api_keys-MIN_NUM_FORMS": "0", "api_keys-MAX_NUM_FORMS": "0",
    })
    assert response.status_code == 302, response.content.decode()[:2000]
    app = PartnerApp.objects.get(tenant=tenant, name="CRM")

    issued = admin_client.post("/admin/tenants/apikey/add/", {"partner_app": app.pk, "name": "prod", "scopes": ["code_mappings:read", "connections:read"]})
    assert issued.status_code == 200
    assert "no-store" in issued["Cache-Control"]
    key = re.search(r'<code id="api-key"[^>]*>(sb_live_[a-z0-9]{10}_[A-Za-z0-9_-]{43})</code>', issued.content.decode()).group(1)
    api_key = ApiKey.objects.get(partner_app=app)
    assert api_key.scopes == ["connections:read", "code_mappings:read"]
    assert key.split("_")[-1] not in admin_client.get(f"/admin/tenants/apikey/{api_key.pk}/change/").content.decode()

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert client.get("/api/v1/me").json()["tenant"] == "sunrise"

    revoked = admin_client.post("/admin/tenants/apikey/", {"action": "revoke", "_selected_action": [api_key.pk]})
    assert revoked.status_code == 302
    assert client.get("/api/v1/me").json()["code"] == "key_revoked"

    actions = list(AuditEvent.objects.filter(tenant=tenant).order_by("id").values_list("action", "object_type"))
    assert actions == [
        ("create", "tenants.tenant"),
        ("create", "tenants.entitlement"),
        ("create", "tenants.partnerapp"),
        ("key_issued", "tenants.apikey"),
        ("key_revoked", "tenants.apikey"),
    ]
    assert get_user_model().objects.get(username="root").pk == AuditEvent.objects.filter(tenant=tenant).first().actor_user_id


@pytest.mark.django_db
def test_admin_refuses_an_unsafe_base_url_in_production(admin_client, tenant_a, settings):
    settings.HUB_ALLOW_PRIVATE_VENDOR_HOSTS = False
    settings.HUB_REQUIRE_HTTPS_VENDOR_URLS = True
    response = admin_client.post("/admin/tenants/connection/add/", {
        "tenant": tenant_a.pk, "vendor": "wellsky", "display_name": "Bad", "base_url": "http://169.254.169.254/", "enabled": "on",
        "credential-TOTAL_FORMS": "0", "credential-INITIAL_FORMS": "0", "credential-MIN_NUM_FORMS": "0", "credential-MAX_NUM_FORMS": "1",
    })
    assert response.status_code == 200
    assert "Base URL refused: the scheme must be https." in response.content.decode()
