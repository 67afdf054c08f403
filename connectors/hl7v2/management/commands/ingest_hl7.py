"""`manage.py ingest_hl7 FILE --tenant SLUG [--json]`: a file of HL7 v2 messages (an SFTP drop:
MLLP frames, a batch, or messages one after another) kept, deduplicated and applied like the
listener's, in this process."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from connectors.hl7v2 import services
from formats.hl7v2 import split_messages
from formats.hl7v2.mllp import FrameTooLarge, Garbage, read_frames
from tenants.models import Tenant

CHUNK = 500  # messages kept per transaction


class Command(BaseCommand):
    help = "Ingest a file of HL7 v2 messages for a tenant: keep, deduplicate, map; prints what became of each."

    def add_arguments(self, parser):
        parser.add_argument("file")
        parser.add_argument("--tenant", required=True)
        parser.add_argument("--json", action="store_true", help="Print a JSON report instead of a summary.")

    def handle(self, *args, file: str, tenant: str, json: bool = False, **options):
        found = Tenant.objects.filter(slug=tenant, active=True).first()
        if found is None:
            raise CommandError(f"no active tenant with slug {tenant!r}")
        path = Path(file)
        if not path.is_file():
            raise CommandError(f"{file}: no such file")
        report = ingest_file(path.read_bytes(), tenant=found)
        if json:
            self.stdout.write(_json(report))
        else:
            counts = report["counts"]
            self.stdout.write(", ".join(f"{key} {value}" for key, value in counts.items()) or "no messages")


def _json(report: dict) -> str:
    return json.dumps(report, indent=2)


def ingest_file(data: bytes, *, tenant: Tenant) -> dict:
    """Keep every message of the file, then apply the new ones. Returns counts and one entry per message."""
    connection = services.feed_connection(tenant)
    texts: list[str] = []
    receipts: list[services.Receipt] = []
    if b"\x0b" in data:
        for item in read_frames(data):
            if isinstance(item, FrameTooLarge):
                receipts.append(services.reject_unreadable(f"a frame of {item.size} bytes is over the limit", item.head,
                                                           tenant=tenant, connection=connection))
            elif isinstance(item, Garbage):
                receipts.append(services.reject_unreadable("bytes outside an MLLP frame", item.data, tenant=tenant, connection=connection))
            else:
                texts.extend(split_messages(services.decode(item)))
    else:
        texts = split_messages(services.decode(data))
    for start in range(0, len(texts), CHUNK):
        receipts.extend(services.receive_messages(texts[start : start + CHUNK], tenant=tenant, connection=connection, enqueue=False))
    entries = []
    counts: Counter[str] = Counter()
    for receipt in receipts:
        entry = {"control_id": receipt.control_id, "type": receipt.message_type, "ack": receipt.code}
        if receipt.duplicate:
            entry["status"] = "duplicate"
        elif receipt.code != "AA":
            entry.update(status="rejected", error=receipt.reason)
        else:
            message = services.apply_message(receipt.message_id)
            entry["status"] = message.status
            if message.error:
                entry["error"] = message.error
        counts[entry["status"]] += 1
        entries.append(entry)
    return {"tenant": tenant.slug, "connection": connection.pk, "counts": dict(counts), "messages": entries}
