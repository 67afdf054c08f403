"""Admin pages of what sits around the records: raw payloads, change events, unmapped codes."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.text import Truncator

from canonical.admin_base import ReadOnlyAdminMixin, parse_uuid
from canonical.admin_panels import render_body
from canonical.kinds import KIND_ORDER, KINDS
from canonical.models import ChangeEvent, SourceRecord, UnmappedCode
from hub.admin_audit import AuditedAdminMixin


def _record_link(obj) -> str:
    url = reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])
    return format_html('<a href="{}">{} {}</a>', url, obj._meta.verbose_name, obj.external_id)


@admin.register(SourceRecord)
class SourceRecordAdmin(ReadOnlyAdminMixin, AuditedAdminMixin, admin.ModelAdmin):
    """Inbound payloads as they arrived. The body is PHI: each page view is audited."""

    audit_reads = True
    list_display = ["received_at", "tenant", "connection", "resource_type", "external_id", "status", "short_error"]
    list_filter = ["status", "resource_type", "tenant", "connection"]
    list_select_related = ["tenant", "connection"]
    search_fields = ["=external_id"]
    date_hierarchy = "received_at"
    ordering = ["-received_at", "-pk"]
    fieldsets = [
        (None, {"fields": ["tenant", "connection", "resource_type", "external_id", "received_at", "status", "error", "error_path"]}),
        ("Payload", {"fields": ["content_type", "payload_hash", "pretty_body"]}),
        ("Canonical records with this external id", {"fields": ["canonical_records"]}),
    ]
    readonly_fields = [
        "tenant", "connection", "resource_type", "external_id", "received_at", "status", "error", "error_path",
        "content_type", "payload_hash", "pretty_body", "canonical_records",
    ]

    @admin.display(description="error")
    def short_error(self, obj) -> str:
        return Truncator(obj.error).chars(80)

    @admin.display(description="body")
    def pretty_body(self, obj) -> str:
        return render_body(obj)

    @admin.display(description="records")
    def canonical_records(self, obj) -> str:
        # One lookup per kind on its unique (tenant, connection, external id) index: vendor
        # resource type names differ from the hub's kinds, so every kind is asked.
        if not obj.external_id:
            return "-"
        found = [
            record
            for kind in KIND_ORDER
            for record in KINDS[kind].model.objects.filter(
                tenant_id=obj.tenant_id, source_connection_id=obj.connection_id, external_id=obj.external_id
            ).only("pk", "external_id")
        ]
        if not found:
            return "none (not normalized yet, or failed)"
        return format_html_join(", ", "{}", ((_record_link(record),) for record in found))


class KindFilter(admin.SimpleListFilter):
    """Change events by kind, from the kind registry (no DISTINCT over the event table)."""

    title = "resource type"
    parameter_name = "resource_type"

    def lookups(self, request, model_admin):
        return [(kind, kind.replace("_", " ")) for kind in KIND_ORDER]

    def queryset(self, request, queryset):
        return queryset.filter(resource_type=self.value()) if self.value() else queryset


@admin.register(ChangeEvent)
class ChangeEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The outbox, newest first. Ids and versions only, no PHI, so views are not audited."""

    list_display = ["cursor", "tenant", "resource_type", "record_id", "action", "version", "occurred_at"]
    list_filter = ["tenant", "action", KindFilter]
    list_select_related = ["tenant"]
    search_fields = ["=record_id"]
    search_help_text = "A record's public id (UUID)."
    ordering = ["-pk"]
    fields = ["tenant", "cursor", "resource_type", "record_id", "record", "action", "version", "occurred_at"]
    readonly_fields = fields

    def get_search_results(self, request, queryset, search_term):
        # Only a UUID can match record_id; anything else matches nothing (no text scan of the table).
        if not search_term.strip():
            return queryset, False
        record_id = parse_uuid(search_term)
        return (queryset.filter(record_id=record_id) if record_id else queryset.none()), False

    @admin.display(description="record")
    def record(self, obj) -> str:
        spec = KINDS.get(obj.resource_type)
        if spec is None:
            return "-"
        found = spec.model.objects.filter(public_id=obj.record_id).only("pk", "external_id").first()
        return _record_link(found) if found is not None else "-"


@admin.register(UnmappedCode)
class UnmappedCodeAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Vendor codes that arrived with no mapping, per tenant and category, most frequent first.
    Each row links to the code mapping form, pre-filled, so the fix is one click away."""

    list_display = ["source_code", "source_system", "category", "tenant", "occurrences", "first_seen_at", "last_seen_at", "add_mapping"]
    list_filter = ["tenant", "category"]
    list_select_related = ["tenant"]
    search_fields = ["source_code", "source_system"]
    ordering = ["tenant", "category", "-occurrences"]
    fields = ["tenant", "category", "source_system", "source_code", "occurrences", "first_seen_at", "last_seen_at", "add_mapping"]
    readonly_fields = fields

    @admin.display(description="")
    def add_mapping(self, obj) -> str:
        url = reverse("admin:tenants_codemapping_add")
        query = urlencode({"tenant": obj.tenant_id, "category": obj.category, "source_system": obj.source_system, "source_code": obj.source_code})
        return format_html('<a href="{}?{}">Add a mapping</a>', url, query)
