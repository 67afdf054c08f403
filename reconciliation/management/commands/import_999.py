"""`python manage.py import_999 FILE --tenant SLUG [--json]`: apply a 999 to the claims of the 837 it answers."""

from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from formats.x12.errors import X12Error
from reconciliation.acknowledgements import apply_999
from tenants.models import Tenant


class Command(BaseCommand):
    help = "Apply a 999 acknowledgment: claims of accepted transaction sets become accepted, of rejected ones rejected."

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
            result = apply_999(tenant_obj, body, actor_label="system:import_999")
        except X12Error as exc:
            raise CommandError(f"{path.name}: {exc} — nothing was applied") from None
        if json:
            self.stdout.write(_dumps({"batches": result.batches, "problems": result.problems}))
        else:
            for batch in result.batches:
                self.stdout.write(f"837 batch {batch['control_number']}: {batch['status']}; {batch['accepted']} claim(s) "
                                  f"accepted, {batch['rejected']} rejected")
            for problem in result.problems:
                self.stderr.write(problem)
        if not result.batches:
            raise CommandError("the 999 answers no 837 batch of this tenant; nothing was applied")


def _dumps(value) -> str:
    return json.dumps(value, indent=2)
