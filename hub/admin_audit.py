"""Admin pages that write an AuditEvent for every change (and, where PHI is shown, every view)."""

from __future__ import annotations

from django.db import transaction

from tenants.audit import client_ip, object_type_of, record_audit
from tenants.choices import AuditAction


def tenant_of(obj):
    if hasattr(obj, "tenant_id") and obj.tenant_id:
        return obj.tenant
    if obj._meta.model_name == "tenant":
        return obj
    for path in ("connection", "partner_app"):
        related = getattr(obj, path, None)
        if related is not None and getattr(related, "tenant_id", None):
            return related.tenant
    return None


def object_id_of(obj) -> str:
    return str(getattr(obj, "public_id", None) or getattr(obj, "slug", None) or obj.pk)


class AuditedAdminMixin:
    """Records create/update/delete (field names only, never values); `audit_reads` records views."""

    audit_reads = False

    def _audit(self, request, action: str, obj, detail: dict | None = None) -> None:
        record_audit(
            action,
            object_type=object_type_of(obj),
            object_id=object_id_of(obj),
            tenant=tenant_of(obj),
            user=request.user,
            ip=client_ip(request),
            detail=detail,
        )

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        self._audit(request, AuditAction.UPDATE if change else AuditAction.CREATE, obj, {"fields": sorted(form.changed_data)})

    def save_formset(self, request, form, formset, change):
        super().save_formset(request, form, formset, change)
        for obj in formset.new_objects:
            self._audit(request, AuditAction.CREATE, obj)
        for obj, fields in formset.changed_objects:
            self._audit(request, AuditAction.UPDATE, obj, {"fields": sorted(fields)})
        for obj in formset.deleted_objects:
            self._audit(request, AuditAction.DELETE, obj)

    def delete_model(self, request, obj):
        with transaction.atomic():
            self._audit(request, AuditAction.DELETE, obj)
            super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        with transaction.atomic():
            for obj in queryset:
                self._audit(request, AuditAction.DELETE, obj)
            super().delete_queryset(request, queryset)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        if self.audit_reads and request.method == "GET":
            obj = self.get_object(request, object_id)
            if obj is not None:
                self._audit(request, AuditAction.READ, obj)
        return super().change_view(request, object_id, form_url, extra_context)
