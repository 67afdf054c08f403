"""`python manage.py import_era FILE --tenant SLUG [--json]`: import an 835, match and post it."""

from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from formats.x12.errors import X12Error
from reconciliation.remittances import import_remittance_file
from tenants.models import Tenant


class Command(BaseCommand):
    help = "Import an 835 remittance file: store it once, match its claims and post them."

    def add_arguments(self, parser):
        parser.add_argument("file")
        parser.add_argument("--tenant", required=True, help="tenant slug")
        parser.add_argument("--json", action="store_true", help="print the summary as JSON")

    def handle(self, file: str, tenant: str, json: bool, **options):
        tenant_obj = Tenant.objects.filter(slug=tenant).first()
        if tenant_obj is None:
            raise CommandError(f"No tenant with slug '{tenant}'.")
        path = Path(file)
        try:
            body = path.read_bytes()
        except OSError as exc:
            raise CommandError(f"cannot read {file}: {exc.strerror}") from None
        try:
            summary = import_remittance_file(tenant=tenant_obj, body=body, name=path.name, actor_label="system:import_era")
        except X12Error as exc:
            raise CommandError(f"{path.name}: {exc} — nothing was imported") from None
        if json:
            self.stdout.write(_dumps({"remittances": summary.remittances, "problems": summary.problems}))
            return
        for era in summary.remittances:
            self.stdout.write(
                f"{era['payer']} {era['payment_method']} {era['trace_number']}: {era['payment_amount']} for {era['claims']} claim(s), "
                f"{era['matched']} matched, {era['unmatched']} to the worklist; "
                + ("balanced" if era["balanced"] else f"OUT OF BALANCE by {era['difference']}")
            )
        for problem in summary.problems:
            self.stderr.write(problem)
        if not summary.new_file:
            self.stdout.write("This file was imported before; nothing changed.")


def _dumps(value) -> str:
    return json.dumps(value, indent=2)
