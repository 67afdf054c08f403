from django.conf import settings
from django.core.management.base import BaseCommand

from hub.crypto import rotate_all
from tenants.audit import record_audit
from tenants.choices import AuditAction


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored secret with the first key of FERNET_KEYS. Put the new key first, "
        "keep the old ones after it, run this, then remove the old keys."
    )

    def handle(self, **options):
        counts = rotate_all()
        record_audit(
            AuditAction.KEYS_ROTATED, object_type="fernet", detail={"rows": counts, "keys_configured": len(settings.FERNET_KEYS)},
        )
        for label, count in counts.items():
            self.stdout.write(f"{label}: {count} row(s) re-encrypted")
        self.stdout.write(f"Done: {sum(counts.values())} row(s) now encrypted with the first key.")
