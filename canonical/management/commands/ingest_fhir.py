"""`manage.py ingest_fhir FILE --tenant SLUG [--connection PUBLIC_ID] [--json]`"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from canonical.fhir.ingest import IngestReport, ingest_fhir
from tenants.models import Connection, Tenant

FILE_IMPORT_CONNECTION = "FHIR file import"


class Command(BaseCommand):
    help = "Ingest a FHIR R4 resource or Bundle (JSON) from a file into a tenant's canonical records."

    def add_arguments(self, parser):
        parser.add_argument("file", help="path of a FHIR JSON file (one resource or a Bundle)")
        parser.add_argument("--tenant", required=True, help="tenant slug")
        parser.add_argument(
            "--connection",
            help=f"public id of the tenant's connection the records come from (default: the tenant's '{FILE_IMPORT_CONNECTION}' connection, created if needed)",
        )
        parser.add_argument("--json", action="store_true", dest="as_json", help='print {"created", "updated", "unchanged", "rejected"} as JSON')

    def handle(self, *args, file: str, tenant: str, connection: str | None, as_json: bool, **options):
        found = Tenant.objects.filter(slug=tenant).first()
        if found is None:
            raise CommandError(f"No tenant with slug '{tenant}'.")
        path = Path(file)
        if not path.is_file():
            raise CommandError(f"File not found: {file}")
        source = self._connection(found, connection)
        report = ingest_fhir(path.read_bytes(), tenant=found, connection=source, actor_label="command:ingest_fhir")
        if report.payload_error:
            raise CommandError(f"{file} is {report.payload_error}; it was kept as a failed source record.")
        if as_json:
            self.stdout.write(json.dumps(report.as_json(), ensure_ascii=False))
        else:
            self._summary(report, file, source)

    def _connection(self, tenant: Tenant, public_id: str | None) -> Connection:
        if public_id is None:
            connection, _ = Connection.objects.get_or_create(
                tenant=tenant, display_name=FILE_IMPORT_CONNECTION, defaults={"vendor": "fhir"}
            )
            return connection
        try:
            wanted = uuid.UUID(public_id)
        except ValueError:
            raise CommandError(f"'{public_id}' is not a connection public id (a UUID).") from None
        connection = Connection.objects.filter(tenant=tenant, public_id=wanted).first()
        if connection is None:
            raise CommandError(f"Tenant '{tenant.slug}' has no connection {public_id}.")
        return connection

    def _summary(self, report: IngestReport, file: str, connection: Connection) -> None:
        self.stdout.write(
            f"{file} → {connection.tenant.slug} / {connection.display_name}: "
            f"{report.created} created, {report.updated} updated, {report.unchanged} unchanged, {len(report.rejected)} rejected."
        )
        for rejection in report.rejected:
            where = f" {rejection['path']}" if rejection["path"] else ""
            self.stdout.write(f"  rejected {rejection['resource']}{where}: {rejection['reason']}")
