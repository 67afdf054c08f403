"""Billers' screens: claims, remittances, the matches to decide, and the worklist."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import path

from hub.admin_audit import AuditedAdminMixin
from reconciliation import worklist
from reconciliation.choices import MatchStatus
from reconciliation.models import (
    BillingProfile,
    Claim,
    ClaimBatch,
    ClaimLine,
    EligibilityCheck,
    FeeScheduleEntry,
    Match,
    Posting,
    Remittance,
    RemittanceClaim,
)
from tenants.models import Tenant


class ClaimLineInline(admin.TabularInline):
    model = ClaimLine
    extra = 0
    raw_id_fields = ["authorization"]


class PostingInline(admin.TabularInline):
    model = Posting
    fk_name = "claim"
    extra = 0
    fields = ["kind", "group", "reason", "amount", "remittance_claim", "reverses", "posted_at"]
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Claim)
class ClaimAdmin(AuditedAdminMixin, admin.ModelAdmin):
    audit_reads = True  # names the patient and the services
    list_display = ["patient_control_number", "tenant", "payer_name", "total_charge", "status", "submitted_at"]
    list_filter = ["status", "kind", "tenant", "payer_name"]
    search_fields = ["=patient_control_number", "=payer_claim_control_number"]
    raw_id_fields = ["patient", "coverage", "encounters", "attending_practitioner"]
    readonly_fields = ["batch", "transaction_control_number", "rejection_reason"]
    inlines = [ClaimLineInline, PostingInline]
    show_full_result_count = False


@admin.register(ClaimBatch)
class ClaimBatchAdmin(AuditedAdminMixin, admin.ModelAdmin):
    """Each 837 as sent and the 999 that answered it; a record of what left, so nothing here is edited."""

    audit_reads = True  # the bodies carry PHI
    list_display = ["control_number", "kind", "tenant", "status", "created_at", "acknowledged_at"]
    list_filter = ["status", "kind", "tenant"]
    search_fields = ["=control_number", "=clearinghouse_reference"]
    readonly_fields = ["tenant", "public_id", "kind", "control_number", "body", "status", "ack_body", "acknowledged_at",
                       "clearinghouse_reference", "created_at"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class RemittanceClaimInline(admin.TabularInline):
    model = RemittanceClaim
    extra = 0
    fields = ["position", "patient_control_number", "status_code", "charge", "paid", "patient_responsibility", "payer_claim_control_number"]
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Remittance)
class RemittanceAdmin(AuditedAdminMixin, admin.ModelAdmin):
    audit_reads = True
    list_display = ["trace_number", "tenant", "payer_name", "payment_amount", "payment_method", "payment_date", "balanced", "difference"]
    list_filter = ["balanced", "payment_method", "tenant", "payer_name"]
    search_fields = ["=trace_number"]
    inlines = [RemittanceClaimInline]
    show_full_result_count = False

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in Remittance._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False


class HandMatchForm(forms.Form):
    claim = forms.ModelChoiceField(queryset=Claim.objects.none(), help_text="The claim this remittance claim pays.")


@admin.register(Match)
class MatchAdmin(admin.ModelAdmin):
    """The matches to decide: confirm or reject a proposal, or match by hand."""

    list_display = ["remittance_claim", "tenant", "claim", "method", "confidence", "status", "decided_by", "decided_at"]
    list_filter = ["status", "method", "tenant"]
    list_select_related = ["remittance_claim", "claim", "tenant", "decided_by"]
    search_fields = ["=remittance_claim__patient_control_number", "=claim__patient_control_number"]
    actions = ["confirm_selected", "reject_selected"]
    show_full_result_count = False

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in Match._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.action(description="Confirm the proposed match (and post it)")
    def confirm_selected(self, request, queryset):
        done = sum(worklist.confirm(m, user=request.user) for m in queryset.filter(status=MatchStatus.PROPOSED))
        self.message_user(request, f"Confirmed and posted {done} match(es).", messages.SUCCESS if done else messages.WARNING)

    @admin.action(description="Reject the proposed match")
    def reject_selected(self, request, queryset):
        done = sum(worklist.reject(m, user=request.user) for m in queryset.filter(status=MatchStatus.PROPOSED))
        self.message_user(request, f"Rejected {done} match(es).", messages.SUCCESS if done else messages.WARNING)

    def get_urls(self):
        return [
            path("worklist/", self.admin_site.admin_view(self.worklist_view), name="reconciliation_worklist"),
            path("<int:match_id>/by-hand/", self.admin_site.admin_view(self.by_hand_view), name="reconciliation_match_by_hand"),
            *super().get_urls(),
        ]

    def worklist_view(self, request):
        tenants = Tenant.objects.all()
        if request.GET.get("tenant"):
            tenants = tenants.filter(slug=request.GET["tenant"])
        sections = worklist.build_worklist(tenants)
        if request.GET.get("format") == "csv":
            response = HttpResponse(worklist.worklist_csv(sections), content_type="text/csv")
            response["Content-Disposition"] = 'attachment; filename="worklist.csv"'
            return response
        return render(request, "admin/reconciliation/worklist.html", {
            **self.admin_site.each_context(request), "title": "Billing worklist", "sections": sections, "opts": self.model._meta,
            "tenants": Tenant.objects.order_by("slug"), "selected": request.GET.get("tenant", ""),
        })

    def by_hand_view(self, request, match_id: int):
        match = Match.objects.select_related("remittance_claim__remittance").filter(pk=match_id).first()
        if match is None:
            return HttpResponse(status=404)
        form = HandMatchForm(request.POST or None)
        form.fields["claim"].queryset = Claim.objects.filter(tenant_id=match.tenant_id).order_by("patient_control_number")
        if request.method == "POST" and form.is_valid():
            if worklist.match_by_hand(match, form.cleaned_data["claim"], user=request.user):
                self.message_user(request, "Matched by hand and posted.", messages.SUCCESS)
            else:
                self.message_user(request, "This remittance claim was decided meanwhile; nothing changed.", messages.WARNING)
            return redirect("admin:reconciliation_match_changelist")
        return render(request, "admin/reconciliation/match_by_hand.html", {
            **self.admin_site.each_context(request), "title": "Match by hand", "form": form, "match": match, "opts": self.model._meta,
        })


@admin.register(BillingProfile)
class BillingProfileAdmin(AuditedAdminMixin, admin.ModelAdmin):
    list_display = ["tenant", "organization_name", "npi", "receiver_name", "unpaid_after_days"]


@admin.register(EligibilityCheck)
class EligibilityCheckAdmin(AuditedAdminMixin, admin.ModelAdmin):
    """Each eligibility question and the payer's answer, as asked; nothing here is edited."""

    audit_reads = True
    list_display = ["service_date", "tenant", "payer_name", "status", "plan_name", "copay", "requested_at"]
    list_filter = ["status", "tenant"]
    search_fields = ["=member_id", "=trace_number"]
    readonly_fields = [field.name for field in EligibilityCheck._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(FeeScheduleEntry)
class FeeScheduleEntryAdmin(admin.ModelAdmin):
    list_display = ["procedure_code", "modifier", "charge", "revenue_code", "tenant"]
    list_filter = ["tenant"]
    search_fields = ["=procedure_code"]
