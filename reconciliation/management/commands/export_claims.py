"""`python manage.py export_claims --tenant SLUG --out FILE [--kind P|I] [--control-number N]`: the ready
claims as an 837P (professional, the default) or an 837I (institutional).

The file is written next to FILE under a temporary name, which is opened before any claim is marked,
and renamed to FILE once the claims are marked SUBMITTED: a directory that cannot be written fails
before anything changes, and FILE is never left half-written. Exits non-zero (CommandError) when the
tenant has no usable billing profile or when no claim was exported.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from reconciliation.claims_export import ClaimExportError, export_ready_claims
from tenants.models import Tenant


class Command(BaseCommand):
    help = "Write the tenant's ready claims of one kind as an 837P or 837I file and mark them submitted."

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True, help="tenant slug")
        parser.add_argument("--out", required=True, help="the 837 file to write")
        parser.add_argument("--kind", choices=["P", "I"], default="P",
                            help="P: professional claims as an 837P (default); I: institutional claims as an 837I")
        parser.add_argument("--control-number", type=int, default=None,
                            help="interchange control number (ISA13/GS06); default: the next after the tenant's last export")

    def handle(self, tenant: str, out: str, kind: str, control_number: int | None, **options):
        tenant_obj = Tenant.objects.filter(slug=tenant).first()
        if tenant_obj is None:
            raise CommandError(f"No tenant with slug '{tenant}'.")
        path = Path(out)
        try:
            handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent.resolve())
        except OSError as exc:
            raise CommandError(f"cannot write {out}: {exc.strerror}") from None
        try:
            with os.fdopen(handle, "w", encoding="utf-8", newline="") as file:
                try:
                    result = export_ready_claims(tenant_obj, kind=kind, control_number=control_number)
                except (ClaimExportError, ValueError) as exc:
                    raise CommandError(str(exc)) from None
                for problem in result.problems:
                    self.stderr.write(f"skipped {problem}")
                if result.other_kind_ready:
                    other = "I" if kind == "P" else "P"
                    self.stderr.write(f"{result.other_kind_ready} ready claim(s) of the other kind are left for "
                                      f"`export_claims --kind {other}`")
                if result.ready == 0:
                    raise CommandError(f"No ready 837{kind} claims for tenant '{tenant}': nothing was exported.")
                if not result.claim_ids:
                    raise CommandError(f"None of the {result.ready} ready claim(s) could be exported (see above); nothing was written.")
                file.write(result.text)
            os.replace(temporary, path)
        finally:
            if os.path.exists(temporary):
                os.unlink(temporary)
        self.stdout.write(
            f"Exported {len(result.claim_ids)} claim(s) as an 837{kind} to {out} (control number {result.control_number}); "
            f"{len(result.problems)} skipped.")
