from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from tenants.models import Tenant
from tenants.services import create_tenant


class Command(BaseCommand):
    help = "Create a tenant (a care organization)."

    def add_arguments(self, parser):
        parser.add_argument("slug", help="short permanent name, e.g. sunrise-home-care")
        parser.add_argument("--name", required=True, help="display name")
        parser.add_argument("--timezone", default="America/New_York", help="IANA time zone (default America/New_York)")

    def handle(self, slug, name, timezone, **options):
        if Tenant.objects.filter(slug=slug).exists():
            raise CommandError(f"A tenant with slug '{slug}' already exists.")
        try:
            tenant = create_tenant(slug=slug, name=name, timezone_name=timezone)
        except ValidationError as exc:
            raise CommandError("; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in exc.message_dict.items())) from None
        self.stdout.write(f"Created tenant {tenant.slug} ({tenant.name}).")
