from __future__ import annotations

from datetime import timedelta

from django import forms
from django.contrib import admin, messages
from django.db.models import Count, OuterRef, Subquery
from django.shortcuts import render
from django.utils import timezone

from connectors.choices import FailedJobStatus
from connectors.models import FailedJob, SyncRun, VendorSession, VendorWrite
from connectors.triage import dismiss_failed_jobs, retry_failed_jobs
from hub.admin_audit import AuditedAdminMixin


@admin.register(VendorSession)
class VendorSessionAdmin(admin.ModelAdmin):
    """Session state only: tokens and cookies are never shown."""

    list_display = ["connection", "state", "method", "obtained_at", "expires_at", "rotated_at", "logins"]
    list_filter = ["state", "method"]
    list_select_related = ["connection__tenant"]
    fields = ["connection", "state", "method", "obtained_at", "expires_at", "rotated_at", "logins", "detail"]
    readonly_fields = fields

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(SyncRun)
class SyncRunAdmin(admin.ModelAdmin):
    list_display = ["pk", "connection", "resource", "mode", "trigger", "status", "fetched", "created", "updated",
                    "unchanged", "deleted", "failed", "queued_at", "duration"]
    list_filter = ["status", "mode", "trigger", "tenant", "resource"]
    list_select_related = ["connection"]
    search_fields = ["connection__display_name", "resource"]
    date_hierarchy = "queued_at"
    show_full_result_count = False

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in SyncRun._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(VendorWrite)
class VendorWriteAdmin(AuditedAdminMixin, admin.ModelAdmin):
    """Writes to vendors and how they ended. The request can hold PHI (a new patient), so views are audited."""

    audit_reads = True
    list_display = ["public_id", "connection", "operation", "status", "rule", "external_id", "actor_label", "created_at", "finished_at"]
    list_filter = ["status", "operation", "tenant"]
    list_select_related = ["connection"]
    search_fields = ["=idempotency_key", "=external_id", "=public_id"]
    date_hierarchy = "created_at"
    show_full_result_count = False

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in VendorWrite._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class AgeFilter(admin.SimpleListFilter):
    title = "age"
    parameter_name = "age"
    CHOICES = {"1h": timedelta(hours=1), "1d": timedelta(days=1), "7d": timedelta(days=7)}

    def lookups(self, request, model_admin):
        return [("1h", "last hour"), ("1d", "last day"), ("7d", "last 7 days"), ("old", "older than 7 days")]

    def queryset(self, request, queryset):
        if self.value() in self.CHOICES:
            return queryset.filter(last_failed_at__gte=timezone.now() - self.CHOICES[self.value()])
        if self.value() == "old":
            return queryset.filter(last_failed_at__lt=timezone.now() - timedelta(days=7))
        return queryset


class DismissForm(forms.Form):
    reason = forms.CharField(max_length=300, help_text="Why no retry is needed (kept in the audit trail).")


@admin.register(FailedJob)
class FailedJobAdmin(admin.ModelAdmin):
    """Triage: group by signature, retry or dismiss with a reason; every action is audited."""

    list_display = ["last_failed_at", "tenant", "connection", "actor", "exception_type", "message_short", "same_cause_open",
                    "attempts", "status"]
    list_filter = ["status", AgeFilter, "exception_type", "actor", "tenant", "connection"]
    list_select_related = ["tenant", "connection"]
    search_fields = ["message", "signature", "exception_type"]
    actions = ["retry", "dismiss"]
    show_full_result_count = False
    readonly_fields = ["tenant", "connection", "actor", "arguments", "exception_type", "message", "signature", "traceback",
                       "attempts", "first_failed_at", "last_failed_at", "sync_run", "source_record", "status", "resolution",
                       "resolved_by"]

    def get_queryset(self, request):
        same = (
            FailedJob.objects.filter(signature=OuterRef("signature"), status=FailedJobStatus.OPEN)
            .order_by().values("signature").annotate(n=Count("pk")).values("n")
        )
        return super().get_queryset(request).annotate(_same=Subquery(same))

    @admin.display(description="open with same cause", ordering="_same")
    def same_cause_open(self, obj) -> int:
        return obj._same or 0

    @admin.display(description="message")
    def message_short(self, obj) -> str:
        return obj.message[:120]

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.action(description="Retry selected jobs (re-enqueue)")
    def retry(self, request, queryset):
        count = retry_failed_jobs(queryset, user=request.user)
        self.message_user(request, f"Re-enqueued {count} job(s).", messages.SUCCESS)

    @admin.action(description="Dismiss selected jobs…")
    def dismiss(self, request, queryset):
        if "reason" in request.POST:
            form = DismissForm(request.POST)
            if form.is_valid():
                count = dismiss_failed_jobs(queryset, user=request.user, reason=form.cleaned_data["reason"])
                self.message_user(request, f"Dismissed {count} job(s).", messages.SUCCESS)
                return None
        else:
            form = DismissForm()
        return render(request, "admin/connectors/failedjob/dismiss.html", {
            **self.admin_site.each_context(request), "form": form, "jobs": queryset, "opts": self.model._meta,
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME, "title": "Dismiss failed jobs",
        })
