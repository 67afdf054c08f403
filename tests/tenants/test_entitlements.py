from datetime import timedelta

import pytest
from django.utils import timezone

from tenants.entitlements import EntitlementMissing, is_entitled, require_entitlement
from tests.factories import ConnectionFactory, EntitlementFactory


@pytest.fixture
def connections(tenant_a):
    return ConnectionFactory(tenant=tenant_a, display_name="North"), ConnectionFactory(tenant=tenant_a, display_name="South")


@pytest.mark.django_db
def test_tenant_wide_entitlement_covers_every_connection(tenant_a, connections):
    EntitlementFactory(tenant=tenant_a, capability="appointments.write")
    assert is_entitled(tenant_a, "appointments.write")
    assert all(is_entitled(tenant_a, "appointments.write", c) for c in connections)
    assert not is_entitled(tenant_a, "claims.submit", connections[0])


@pytest.mark.django_db
def test_connection_entitlement_covers_only_that_connection(tenant_a, connections):
    north, south = connections
    EntitlementFactory(tenant=tenant_a, connection=north, capability="claims.submit")
    assert is_entitled(tenant_a, "claims.submit", north)
    assert not is_entitled(tenant_a, "claims.submit", south)
    assert not is_entitled(tenant_a, "claims.submit")  # not tenant-wide


@pytest.mark.django_db
def test_validity_window_is_honoured(tenant_a):
    now = timezone.now()
    EntitlementFactory(tenant=tenant_a, capability="patients.write", valid_from=now - timedelta(days=30), valid_to=now - timedelta(days=1))
    EntitlementFactory(tenant=tenant_a, capability="eligibility.check", valid_from=now + timedelta(days=1))
    assert not is_entitled(tenant_a, "patients.write")
    assert is_entitled(tenant_a, "patients.write", at=now - timedelta(days=2))
    assert not is_entitled(tenant_a, "eligibility.check")
    assert is_entitled(tenant_a, "eligibility.check", at=now + timedelta(days=2))


@pytest.mark.django_db
def test_inactive_tenant_and_disabled_connection_get_nothing(tenant_a, connections):
    north, _ = connections
    EntitlementFactory(tenant=tenant_a, capability="patients.read")
    north.enabled = False
    north.save()
    with pytest.raises(EntitlementMissing, match="Connection 'North' is disabled"):
        require_entitlement(tenant_a, "patients.read", north)
    tenant_a.active = False
    tenant_a.save()
    assert not is_entitled(tenant_a, "patients.read")


@pytest.mark.django_db
def test_refusal_names_the_missing_capability(tenant_a, connections):
    with pytest.raises(EntitlementMissing) as info:
        require_entitlement(tenant_a, "claims.submit", connections[0])
    assert info.value.capability == "claims.submit"
    assert str(info.value) == (
        "Tenant 'tenant-a' is not entitled to 'claims.submit' on connection 'North' (no entitlement valid now)."
    )


@pytest.mark.django_db
def test_unknown_capability_and_foreign_connection_are_programming_errors(tenant_a, tenant_b):
    with pytest.raises(ValueError, match="unknown capability 'patients.delete'"):
        is_entitled(tenant_a, "patients.delete")
    with pytest.raises(ValueError, match="another tenant"):
        is_entitled(tenant_a, "patients.read", ConnectionFactory(tenant=tenant_b))


@pytest.mark.django_db
def test_entitlement_end_must_follow_start(tenant_a):
    from django.core.exceptions import ValidationError

    now = timezone.now()
    entitlement = EntitlementFactory.build(tenant=tenant_a, valid_from=now, valid_to=now - timedelta(hours=1))
    with pytest.raises(ValidationError, match="Must be after"):
        entitlement.full_clean()
