"""Building blocks of the canonical admin: read-only pages, filters and a paginator for big tables.

Canonical records are written only by the upsert engine (it keeps hash, version and the change
event in step), so every page here is view-only: no add, no change, no delete.
"""

from __future__ import annotations

import uuid

from django.contrib import admin
from django.core.paginator import Paginator
from django.db import connections
from django.utils.functional import cached_property

from canonical.admin_panels import render_source_payloads, render_version_history
from canonical.kinds import get_kind
from hub.admin_audit import AuditedAdminMixin

# Below this many estimated rows the exact COUNT(*) is cheap enough to run.
ESTIMATE_COUNT_ABOVE_ROWS = 100_000


class EstimatedCountPaginator(Paginator):
    """Exact counts for filtered lists; for the unfiltered list of a big PostgreSQL table, the
    planner's row estimate (pg_class.reltuples), so opening a changelist never scans millions of rows."""

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        query = getattr(queryset, "query", None)
        if query is not None and not query.where and connections[queryset.db].vendor == "postgresql":
            with connections[queryset.db].cursor() as cursor:
                cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass", [queryset.model._meta.db_table])
                row = cursor.fetchone()
            if row is not None and row[0] > ESTIMATE_COUNT_ABOVE_ROWS:
                return int(row[0])
        return super().count


def parse_uuid(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text.strip())
    except ValueError:
        return None


class TombstoneFilter(admin.SimpleListFilter):
    """Live records or tombstones (deleted at the source, kept with `deleted_at`)."""

    title = "deleted at source"
    parameter_name = "deleted"

    def lookups(self, request, model_admin):
        return [("no", "Live"), ("yes", "Deleted (tombstone)")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(deleted_at__isnull=False)
        if self.value() == "no":
            return queryset.filter(deleted_at__isnull=True)
        return queryset


class ReadOnlyAdminMixin:
    """View-only: staff can look, never add, edit or delete. A POST to a change page is refused (403)."""

    show_full_result_count = False  # no second COUNT(*) over the whole table
    paginator = EstimatedCountPaginator

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class ReadOnlyInline(admin.TabularInline):
    """Child rows of a synced record, shown as they were synced."""

    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = False

    def get_readonly_fields(self, request, obj=None):
        return [*self.fields, *self.readonly_fields] if self.fields else super().get_readonly_fields(request, obj)

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


_IDENTITY_FIELDS = ["external_id", "tenant", "source_connection", "public_id", "version", "content_hash", "created_at", "updated_at", "deleted_at"]


class CanonicalRecordAdmin(ReadOnlyAdminMixin, AuditedAdminMixin, admin.ModelAdmin):
    """One canonical kind. Subclasses set `kind` (a key of `canonical.kinds.KINDS`), the list
    columns and the search fields; the page layout comes from the kind's spec.

    Every change-view GET writes a "read" AuditEvent: these pages show PHI."""

    kind: str = ""
    audit_reads = True
    extra_record_fields: tuple[str, ...] = ()  # model fields the kind spec does not upsert (e.g. Patient.master)
    list_filter_extra: tuple = ()
    tail_columns = ("external_id", "tenant", "source_connection", "version", "updated_at", "deleted")

    def __init__(self, model, admin_site):
        spec = get_kind(self.kind)
        self.record_fields = [*spec.refs, *spec.fields, *self.extra_record_fields]
        if not self.raw_id_fields:
            self.raw_id_fields = [*spec.refs, *[name for name in self.extra_record_fields if model._meta.get_field(name).is_relation]]
        if not self.list_filter:
            self.list_filter = ["tenant", "source_connection", *self.list_filter_extra, TombstoneFilter]
        super().__init__(model, admin_site)

    def get_fieldsets(self, request, obj=None):
        return [
            (None, {"fields": self.record_fields}),
            ("Source and version", {"fields": _IDENTITY_FIELDS}),
            ("History of versions", {"fields": ["version_history"]}),
            ("Source payloads", {"fields": ["source_payloads"]}),
        ]

    def get_readonly_fields(self, request, obj=None):
        return [*self.record_fields, *_IDENTITY_FIELDS, "version_history", "source_payloads", *self.readonly_fields]

    def get_search_results(self, request, queryset, search_term):
        # A pasted public id (UUID) is an exact lookup on its unique index, not a text scan.
        public_id = parse_uuid(search_term) if search_term else None
        if public_id is not None:
            return queryset.filter(public_id=public_id), False
        return super().get_search_results(request, queryset, search_term)

    @admin.display(boolean=True, description="deleted", ordering="deleted_at")
    def deleted(self, obj) -> bool:
        return obj.deleted_at is not None

    @admin.display(description="versions (change events)")
    def version_history(self, obj) -> str:
        return render_version_history(obj)

    @admin.display(description="payloads as received")
    def source_payloads(self, obj) -> str:
        return render_source_payloads(obj)
