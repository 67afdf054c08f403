"""Code mappings applied during normalization.

A connector's normalizer asks the tenant's mapper for each vendor code it meets. A code with a
mapping becomes the hub's code; a code without one is kept exactly as it came (never dropped)
and counted in UnmappedCode, which the admin lists per tenant and category.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from django.db import connection as db_connection
from django.utils import timezone

from canonical.models import UnmappedCode
from tenants.models import CodeMapping, Tenant


@dataclass(frozen=True)
class MappedCode:
    system: str
    code: str
    display: str
    mapped: bool


class CodeMapper:
    """One tenant's active mappings, loaded once per batch. Not thread-safe; make one per job."""

    def __init__(self, tenant: Tenant):
        self.tenant = tenant
        self._mappings = {
            (m.category, m.source_system, m.source_code): MappedCode(m.target_system, m.target_code, m.display, True)
            for m in CodeMapping.objects.filter(tenant=tenant, active=True)
        }
        self.misses: Counter[tuple[str, str, str]] = Counter()
        self._reverse = {(category, system, found.code): code for (category, system, code), found in self._mappings.items()}

    def map(self, category: str, source_system: str, code: str | None) -> MappedCode:
        if code is None or code == "":
            return MappedCode(source_system, "", "", False)
        found = self._mappings.get((category, source_system, code))
        if found is not None:
            return found
        self.misses[(category, source_system, code)] += 1
        return MappedCode(source_system, code, "", False)

    def code(self, category: str, source_system: str, code: str | None) -> str:
        """The mapped code, or the code as it came when there is no mapping."""
        return self.map(category, source_system, code).code

    def source_code(self, category: str, source_system: str, code: str) -> str:
        """The vendor's code for a hub code (a mapping read backwards, for writes); as given when unmapped."""
        return self._reverse.get((category, source_system, code), code)

    def flush(self, now: datetime | None = None) -> int:
        """Record this batch's misses in UnmappedCode (adding to the counts); returns distinct codes."""
        if not self.misses:
            return 0
        now = now or timezone.now()
        stamp = db_connection.ops.adapt_datetimefield_value(now)
        qn = db_connection.ops.quote_name
        table = qn(UnmappedCode._meta.db_table)
        rows = [(self.tenant.pk, c, s, code, n, stamp, stamp) for (c, s, code), n in self.misses.items()]
        with db_connection.cursor() as cursor:
            cursor.executemany(
                f"INSERT INTO {table} (tenant_id, category, source_system, source_code, occurrences, first_seen_at, last_seen_at) "  # noqa: S608
                "VALUES (%s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (tenant_id, category, source_system, source_code) DO UPDATE SET "
                f"occurrences = {table}.occurrences + excluded.occurrences, last_seen_at = excluded.last_seen_at",
                rows,
            )
        count = len(self.misses)
        self.misses.clear()
        return count
