from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from tenants.models import ApiKey, AuditEvent, Tenant


def run(*args) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.mark.django_db
def test_create_tenant():
    out, _ = run("create_tenant", "sunrise", "--name", "Sunrise Home Care", "--timezone", "America/Denver")
    assert out.strip() == "Created tenant sunrise (Sunrise Home Care)."
    tenant = Tenant.objects.get(slug="sunrise")
    assert (tenant.name, tenant.timezone, tenant.active) == ("Sunrise Home Care", "America/Denver", True)
    assert AuditEvent.objects.filter(tenant=tenant, action="create", actor_label="system").count() == 1


@pytest.mark.django_db
def test_create_tenant_refuses_duplicates_and_bad_timezones():
    run("create_tenant", "sunrise", "--name", "Sunrise")
    with pytest.raises(CommandError, match="already exists"):
        run("create_tenant", "sunrise", "--name", "Again")
    with pytest.raises(CommandError, match="not an IANA time zone"):
        run("create_tenant", "other", "--name", "Other", "--timezone", "Mars/Olympus")
    assert Tenant.objects.count() == 1


@pytest.mark.django_db
def test_create_partner_key_prints_a_working_key_once(tenant_a):
    out, err = run("create_partner_key", "--tenant", "tenant-a", "--scopes", "code_mappings:read", "patients:read", "--name", "CRM",
                   "--expires-days", "30")
    key = out.strip()
    assert key.startswith("sb_live_")
    assert "shown once" in err
    stored = ApiKey.objects.get()
    assert stored.scopes == ["patients:read", "code_mappings:read"]
    assert stored.expires_at is not None
    assert key.rsplit("_", 1)[1] not in stored.secret_hash
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert client.get("/api/v1/code-mappings/").status_code == 200
    assert client.get("/api/v1/connections/").status_code == 403


@pytest.mark.django_db
def test_create_partner_key_refuses_unknown_scopes_and_tenants(tenant_a):
    with pytest.raises(CommandError, match="Unknown scopes: patients:delete"):
        run("create_partner_key", "--tenant", "tenant-a", "--scopes", "patients:delete")
    with pytest.raises(CommandError, match="No tenant with slug 'nope'"):
        run("create_partner_key", "--tenant", "nope", "--scopes", "*")
    assert ApiKey.objects.count() == 0


@pytest.mark.django_db
def test_add_totp_device_prints_an_otpauth_url(superuser):
    out, _ = run("add_totp_device", "root")
    assert out.startswith("otpauth://totp/")
    assert "issuer=Switchboard" in out
