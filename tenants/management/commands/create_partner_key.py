from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from tenants.models import PartnerApp, Tenant
from tenants.services import InvalidScopes, issue_api_key


class Command(BaseCommand):
    help = "Issue a partner API key for a tenant and print it once (only its hash is stored)."

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True, help="tenant slug")
        parser.add_argument("--scopes", nargs="+", required=True, help="e.g. patients:read appointments:write, or '*'")
        parser.add_argument("--name", default="default", help="partner app name (created if missing)")
        parser.add_argument("--expires-days", type=int, default=None, help="days until the key expires (default: never)")

    def handle(self, tenant, scopes, name, expires_days, **options):
        try:
            tenant_obj = Tenant.objects.get(slug=tenant)
        except Tenant.DoesNotExist:
            raise CommandError(f"No tenant with slug '{tenant}'.") from None
        if expires_days is not None and expires_days < 1:
            raise CommandError("--expires-days must be at least 1.")
        expires_at = timezone.now() + timedelta(days=expires_days) if expires_days else None
        scope_list = [s for item in scopes for s in item.replace(",", " ").split()]
        try:
            with transaction.atomic():
                app, _ = PartnerApp.objects.get_or_create(tenant=tenant_obj, name=name)
                issued = issue_api_key(partner_app=app, scopes=scope_list, expires_at=expires_at, name=name)
        except InvalidScopes as exc:
            raise CommandError(str(exc)) from None
        self.stderr.write(f"Issued a key for partner app '{app.name}' of tenant '{tenant_obj.slug}' "
                          f"with scopes {', '.join(issued.api_key.scopes)}. It is shown once:")
        self.stdout.write(issued.plaintext)
