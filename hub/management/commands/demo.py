"""`make demo`: set up the embedded default and serve the admin.

Creates (or refreshes) the `demo` tenant, a superuser with a fresh password and a fresh partner
key, both printed once, then serves the admin and API on 127.0.0.1.
"""

from __future__ import annotations

import secrets
import time

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from tenants.choices import Capability, MappingCategory
from tenants.models import ApiKey, CodeMapping, Entitlement, PartnerApp, Tenant
from tenants.services import create_tenant, issue_api_key, revoke_api_keys

DEMO_SLUG = "demo"
DEMO_MAPPINGS = [
    (MappingCategory.SERVICE_CODE, "wellsky", "PCS", "HCPCS", "T1019", "Personal care services, per 15 minutes"),
    (MappingCategory.SERVICE_CODE, "wellsky", "SN", "HCPCS", "G0299", "Skilled nursing visit, RN"),
    (MappingCategory.VISIT_TYPE, "wellsky", "HOME", "hub", "in-person", "Home visit"),
]


class Command(BaseCommand):
    help = "Set up the demo tenant on the embedded default, print how to log in, and serve the admin."

    def add_arguments(self, parser):
        parser.add_argument("--no-serve", action="store_true", help="set up and exit without serving")
        parser.add_argument("--port", type=int, default=8000)

    def handle(self, no_serve: bool, port: int, **options):
        if not settings.EMBEDDED:
            raise CommandError("The demo runs on the embedded default only (unset HUB_PROFILE/SECRET_KEY).")
        started = time.monotonic()
        call_command("migrate", interactive=False, verbosity=0)
        password = secrets.token_urlsafe(12)
        with transaction.atomic():
            tenant = Tenant.objects.filter(slug=DEMO_SLUG).first() or create_tenant(slug=DEMO_SLUG, name="Demo Home Care")
            for capability in Capability.values:
                Entitlement.objects.get_or_create(tenant=tenant, connection=None, capability=capability)
            for category, system, code, target_system, target_code, display in DEMO_MAPPINGS:
                CodeMapping.objects.get_or_create(
                    tenant=tenant, category=category, source_system=system, source_code=code,
                    defaults={"target_system": target_system, "target_code": target_code, "display": display},
                )
            user, _ = get_user_model().objects.get_or_create(username="admin", defaults={"email": "admin@localhost"})
            user.is_staff = user.is_superuser = True
            user.set_password(password)
            user.save()
            app, _ = PartnerApp.objects.get_or_create(tenant=tenant, name="Demo partner")
            revoke_api_keys(ApiKey.objects.filter(partner_app=app))  # one live demo key at a time
            issued = issue_api_key(partner_app=app, scopes=["*"], name="demo")
        elapsed = time.monotonic() - started
        self.stdout.write(
            f"\nSwitchboard demo ready in {elapsed:.1f}s (tenant '{tenant.slug}').\n"
            f"  Admin:        http://127.0.0.1:{port}/admin/   user: admin   password: {password}\n"
            f"  API:          http://127.0.0.1:{port}/api/v1/  docs: http://127.0.0.1:{port}/api/docs/\n"
            f"  FHIR R4:      http://127.0.0.1:{port}/fhir/r4/metadata (same key)\n"
            f"  Partner key:  {issued.plaintext}\n"
            f"  Try:          curl -H 'Authorization: Bearer {issued.plaintext}' http://127.0.0.1:{port}/api/v1/code-mappings/\n"
            "The password and key are shown once; run `make demo` again for new ones.\n"
        )
        if not no_serve:
            call_command("runserver", f"127.0.0.1:{port}", use_reloader=False)
