from __future__ import annotations

import factory
from django.contrib.auth import get_user_model

from tenants.models import CodeMapping, Connection, Credential, Entitlement, PartnerApp, Tenant
from tenants.services import issue_api_key


class TenantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tenant
        django_get_or_create = ("slug",)

    slug = factory.Sequence(lambda n: f"agency-{n}")
    name = factory.LazyAttribute(lambda o: o.slug.replace("-", " ").title())
    timezone = "America/Chicago"


class ConnectionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Connection

    tenant = factory.SubFactory(TenantFactory)
    vendor = "wellsky"
    display_name = factory.Sequence(lambda n: f"WellSky {n}")
    base_url = "https://api.wellsky.example/v1"


class CredentialFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Credential

    connection = factory.SubFactory(ConnectionFactory)
    username = "scheduler@agency.example"
    password = "correct horse battery staple"
    totp_secret = "JBSWY3DPEHPK3PXP"
    client_id = "client-123"
    client_secret = "s3cr3t-client"


class EntitlementFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Entitlement

    tenant = factory.SubFactory(TenantFactory)
    capability = "patients.read"


class PartnerAppFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = PartnerApp

    tenant = factory.SubFactory(TenantFactory)
    name = factory.Sequence(lambda n: f"Partner {n}")


class CodeMappingFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = CodeMapping

    tenant = factory.SubFactory(TenantFactory)
    category = "service_code"
    source_system = "wellsky"
    source_code = factory.Sequence(lambda n: f"SVC{n}")
    target_system = "HCPCS"
    target_code = "T1019"
    display = "Personal care"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"staff{n}")
    email = factory.LazyAttribute(lambda o: f"{o.username}@hub.example")
    is_staff = True
    password = factory.PostGenerationMethodCall("set_password", "a-long-staff-password")

    @factory.post_generation
    def saved(obj, create, extracted, **kwargs):
        if create:
            obj.save()


def issue_key(partner_app: PartnerApp, scopes=("*",), **kwargs) -> str:
    return issue_api_key(partner_app=partner_app, scopes=list(scopes), **kwargs).plaintext
