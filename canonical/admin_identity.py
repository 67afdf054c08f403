"""Admin pages of patient identity: master patients and the review queue of candidate pairs.

A review is decided only through `canonical.identity.decide_review` (it links or keeps apart and
writes the audit row); the page itself is read-only.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Case, IntegerField, Value, When
from django.http import Http404, HttpResponseRedirect
from django.template.loader import render_to_string
from django.urls import path, reverse
from django.utils.decorators import method_decorator
from django.utils.html import format_html_join
from django.views.decorators.http import require_POST

from canonical.admin_base import ReadOnlyAdminMixin, ReadOnlyInline, parse_uuid
from canonical.choices import MatchStatus
from canonical.models import MasterPatient, MatchReview, Patient
from hub.admin_audit import AuditedAdminMixin


class LinkedPatientInline(ReadOnlyInline):
    model = Patient
    fk_name = "master"
    fields = ["external_id", "source_connection", "birth_date", "sex", "deleted_at"]
    show_change_link = True
    verbose_name = "linked patient"
    verbose_name_plural = "linked patients"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("source_connection")


@admin.register(MasterPatient)
class MasterPatientAdmin(ReadOnlyAdminMixin, AuditedAdminMixin, admin.ModelAdmin):
    audit_reads = True  # the page lists the linked patients
    list_display = ["public_id", "tenant", "created_at"]
    list_filter = ["tenant"]
    list_select_related = ["tenant"]
    search_fields = ["=public_id"]
    search_help_text = "A master patient's public id (UUID)."
    fields = ["public_id", "tenant", "created_at"]
    readonly_fields = fields
    inlines = [LinkedPatientInline]

    def get_search_results(self, request, queryset, search_term):
        if not search_term.strip():
            return queryset, False
        public_id = parse_uuid(search_term)
        return (queryset.filter(public_id=public_id) if public_id else queryset.none()), False


def _side(patient: Patient) -> dict:
    return {
        "patient": patient,
        "url": reverse("admin:canonical_patient_change", args=[patient.pk]),
        "identifiers": [str(identifier) for identifier in patient.identifiers.all()],
    }


@admin.register(MatchReview)
class MatchReviewAdmin(ReadOnlyAdminMixin, AuditedAdminMixin, admin.ModelAdmin):
    """Pending pairs first, best score first. "Link" and "Keep apart" (bulk or on the page) call
    `decide_review`; those need the change permission of match reviews."""

    audit_reads = True  # the comparison shows both patients' demographics
    list_display = ["status", "score", "patient", "candidate", "reason_list", "tenant", "created_at", "decided_by", "decided_at"]
    list_filter = ["status", "tenant"]
    list_select_related = ["tenant", "patient", "candidate", "decided_by"]
    search_fields = ["patient__family_name", "candidate__family_name", "=patient__external_id", "=candidate__external_id"]
    raw_id_fields = ["patient", "candidate"]
    actions = ["link_pairs", "keep_pairs_apart"]
    change_form_template = "admin/canonical/matchreview/change_form.html"
    fields = ["status", "score", "reason_list", "comparison", "tenant", "created_at", "decided_by", "decided_at"]
    readonly_fields = fields

    def get_ordering(self, request):
        pending_first = Case(When(status=MatchStatus.PENDING, then=Value(0)), default=Value(1), output_field=IntegerField())
        return [pending_first.asc(), "-score", "-pk"]

    def has_decide_permission(self, request) -> bool:
        # The page is view-only, but deciding a pair is a change, so it needs the change right.
        return request.user.has_perm(f"{self.opts.app_label}.change_{self.opts.model_name}")

    @admin.display(description="reasons")
    def reason_list(self, obj) -> str:
        return format_html_join(", ", "{}", ((_reason_text(reason),) for reason in obj.reasons or []))

    @admin.display(description="side by side")
    def comparison(self, obj) -> str:
        pair = Patient.objects.select_related("source_connection", "master").prefetch_related("identifiers").in_bulk([obj.patient_id, obj.candidate_id])
        return render_to_string(
            "admin/canonical/includes/match_comparison.html",
            {"left": _side(pair[obj.patient_id]), "right": _side(pair[obj.candidate_id])},
        )

    # --- decisions ---------------------------------------------------------------------------------

    @admin.action(description="Link the selected pairs (same person)", permissions=["decide"])
    def link_pairs(self, request, queryset):
        self._decide(request, queryset, link=True)

    @admin.action(description="Keep the selected pairs apart (different people)", permissions=["decide"])
    def keep_pairs_apart(self, request, queryset):
        self._decide(request, queryset, link=False)

    def _decide(self, request, reviews: Iterable[MatchReview], *, link: bool) -> int:
        # Imported here: the identity service is a separate module the admin must not need to load.
        from canonical.identity import decide_review

        decided = skipped = 0
        for review in reviews:
            if review.status != MatchStatus.PENDING:
                skipped += 1
                continue
            try:
                decide_review(review, link=link, user=request.user)
            except ValueError as refused:  # decided meanwhile, or would join a pair kept apart (ids only, no PHI)
                self.message_user(request, str(refused), messages.ERROR)
                continue
            decided += 1
        verb = "Linked" if link else "Kept apart"
        self.message_user(request, f"{verb} {decided} pair(s).", messages.SUCCESS if decided else messages.WARNING)
        if skipped:
            self.message_user(request, f"Skipped {skipped} pair(s) already decided.", messages.WARNING)
        return decided

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        return [
            path("<path:object_id>/decide/<str:decision>/", self.admin_site.admin_view(self.decide_view), name=f"{info[0]}_{info[1]}_decide"),
            *super().get_urls(),
        ]

    @method_decorator(require_POST)
    def decide_view(self, request, object_id: str, decision: str):
        """The "Link" / "Keep apart" buttons of one review's page (POST only)."""
        if decision not in ("link", "keep-apart"):
            raise Http404("unknown decision")
        if not self.has_decide_permission(request):
            raise PermissionDenied
        review = self.get_object(request, object_id)
        if review is None:
            raise Http404("no such review")
        self._decide(request, [review], link=decision == "link")
        return HttpResponseRedirect(reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_change", args=[review.pk]))

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {**(extra_context or {}), "can_decide": self.has_decide_permission(request)}
        return super().change_view(request, object_id, form_url, extra_context)


def _reason_text(reason) -> str:
    if isinstance(reason, dict):
        return "; ".join(f"{key}={value}" for key, value in reason.items())
    return str(reason)
