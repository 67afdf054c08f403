"""Admin pages of the twelve canonical kinds: searchable, filterable by tenant and source, view-only."""

from __future__ import annotations

from decimal import Decimal

from django.contrib import admin
from django.utils.html import format_html, format_html_join

from canonical import models as m
from canonical.admin_base import CanonicalRecordAdmin, ReadOnlyInline
from canonical.selectors import authorization_usage, with_usage

_CENTS = Decimal("0.01")
_PERSON_SEARCH = ["family_name", "given_names", "=external_id"]
_PATIENT_REF_SEARCH = ["=external_id", "patient__family_name", "=patient__external_id"]


# --- children --------------------------------------------------------------------------------------

class PatientIdentifierInline(ReadOnlyInline):
    model = m.PatientIdentifier
    fields = ["position", "system", "value"]


class EncounterDiagnosisInline(ReadOnlyInline):
    model = m.EncounterDiagnosis
    fields = ["rank", "system", "code", "display"]


class EncounterProcedureInline(ReadOnlyInline):
    model = m.EncounterProcedure
    fields = ["system", "code", "modifiers", "units", "display"]


class EncounterVitalInline(ReadOnlyInline):
    model = m.EncounterVital
    fields = ["loinc", "display", "value", "unit", "effective_at"]


class EncounterNoteInline(ReadOnlyInline):
    """Notes with their sign/lock state; a signed note changes only through amendments."""

    model = m.EncounterNote
    fields = ["status", "sign_state", "author", "text", "amendment_list"]

    @admin.display(description="signed / locked")
    def sign_state(self, obj) -> str:
        if obj.signed_at is None:
            state = "not signed"
        else:
            state = format_html("signed by {} at {}", obj.signed_by or "?", obj.signed_at.isoformat(timespec="minutes"))
        return format_html("{}{}", state, " · locked" if obj.locked else " · unlocked")

    @admin.display(description="amendments")
    def amendment_list(self, obj) -> str:
        if not obj.amendments:
            return "none"
        return format_html(
            "<ol>{}</ol>",
            format_html_join(
                "", "<li><strong>{}</strong> by {} at {}{}: {}</li>",
                (
                    (
                        a.get("reason_code") or "?", a.get("amended_by") or "?", a.get("amended_at") or "?",
                        f", re-signed {a['resigned_at']}" if a.get("resigned_at") else "", a.get("text", ""),
                    )
                    for a in obj.amendments
                ),
            ),
        )


class ShiftOfferInline(ReadOnlyInline):
    model = m.ShiftOffer
    fields = ["caregiver", "response", "offered_at", "responded_at"]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("caregiver")


# --- people and places -----------------------------------------------------------------------------

@admin.register(m.Patient)
class PatientAdmin(CanonicalRecordAdmin):
    kind = "patient"
    extra_record_fields = ("master",)
    list_display = ["__str__", "birth_date", "sex", *CanonicalRecordAdmin.tail_columns]
    list_select_related = ["tenant", "source_connection"]
    list_filter_extra = ("sex",)
    search_fields = [*_PERSON_SEARCH, "=identifiers__value", "phone", "email"]
    inlines = [PatientIdentifierInline]


@admin.register(m.Practitioner)
class PractitionerAdmin(CanonicalRecordAdmin):
    kind = "practitioner"
    list_display = ["__str__", "npi", "active", *CanonicalRecordAdmin.tail_columns]
    list_select_related = ["tenant", "source_connection"]
    list_filter_extra = ("active",)
    search_fields = [*_PERSON_SEARCH, "=npi"]


@admin.register(m.Location)
class LocationAdmin(CanonicalRecordAdmin):
    kind = "location"
    list_display = ["name", "type", "city", "active", *CanonicalRecordAdmin.tail_columns]
    list_select_related = ["tenant", "source_connection"]
    list_filter_extra = ("active",)
    search_fields = ["name", "=external_id", "city"]


@admin.register(m.Caregiver)
class CaregiverAdmin(CanonicalRecordAdmin):
    kind = "caregiver"
    list_display = ["__str__", "discipline", "active", *CanonicalRecordAdmin.tail_columns]
    list_select_related = ["tenant", "source_connection"]
    list_filter_extra = ("active",)
    search_fields = [*_PERSON_SEARCH, "=discipline"]


# --- payer -----------------------------------------------------------------------------------------

@admin.register(m.Coverage)
class CoverageAdmin(CanonicalRecordAdmin):
    kind = "coverage"
    list_display = ["payer", "member_id", "patient", "priority", "status", *CanonicalRecordAdmin.tail_columns]
    list_select_related = ["tenant", "source_connection", "patient"]
    list_filter_extra = ("status",)
    search_fields = [*_PATIENT_REF_SEARCH, "=member_id", "payer"]


@admin.register(m.Authorization)
class AuthorizationAdmin(CanonicalRecordAdmin):
    """Units used and remaining are derived from the linked appointments (`canonical.selectors`)."""

    kind = "authorization"
    list_display = [
        "auth_number", "patient", "payer", "start_date", "end_date", "status",
        "units_allowed", "units_used", "units_remaining", *CanonicalRecordAdmin.tail_columns,
    ]
    list_select_related = ["tenant", "source_connection", "patient"]
    list_filter_extra = ("status",)
    search_fields = [*_PATIENT_REF_SEARCH, "=auth_number", "payer"]
    readonly_fields = ["units_used", "units_remaining"]

    def get_queryset(self, request):
        return with_usage(super().get_queryset(request))

    def get_fieldsets(self, request, obj=None):
        main, *rest = super().get_fieldsets(request, obj)
        return [main, ("Usage (from linked appointments)", {"fields": ["units_used", "units_remaining"]}), *rest]

    def _usage(self, obj) -> tuple[Decimal, Decimal]:
        used, remaining = (obj.units_used, obj.units_remaining) if hasattr(obj, "units_used") else authorization_usage(obj)
        # SQLite hands back computed decimals unscaled (6.5); show them like the stored ones (6.50).
        return used.quantize(_CENTS), remaining.quantize(_CENTS)

    @admin.display(description="units used", ordering="units_used")
    def units_used(self, obj):
        return self._usage(obj)[0]

    @admin.display(description="units remaining", ordering="units_remaining")
    def units_remaining(self, obj):
        return self._usage(obj)[1]


# --- care ------------------------------------------------------------------------------------------

@admin.register(m.Appointment)
class AppointmentAdmin(CanonicalRecordAdmin):
    kind = "appointment"
    list_display = ["start", "patient", "practitioner", "status", "service_code", "units", "authorization", *CanonicalRecordAdmin.tail_columns]
    list_select_related = ["tenant", "source_connection", "patient", "practitioner", "authorization"]
    list_filter_extra = ("status", "visit_type")
    search_fields = [*_PATIENT_REF_SEARCH, "=service_code", "=authorization__auth_number"]


@admin.register(m.Encounter)
class EncounterAdmin(CanonicalRecordAdmin):
    kind = "encounter"
    list_display = ["period_start", "patient", "practitioner", "status", "visit_type", *CanonicalRecordAdmin.tail_columns]
    list_select_related = ["tenant", "source_connection", "patient", "practitioner"]
    list_filter_extra = ("status", "visit_type")
    search_fields = _PATIENT_REF_SEARCH
    inlines = [EncounterDiagnosisInline, EncounterProcedureInline, EncounterVitalInline, EncounterNoteInline]


@admin.register(m.CarePlan)
class CarePlanAdmin(CanonicalRecordAdmin):
    kind = "care_plan"
    list_display = ["__str__", "patient", "status", "period_start", "period_end", *CanonicalRecordAdmin.tail_columns]
    list_select_related = ["tenant", "source_connection", "patient"]
    list_filter_extra = ("status",)
    search_fields = [*_PATIENT_REF_SEARCH, "title"]


@admin.register(m.Referral)
class ReferralAdmin(CanonicalRecordAdmin):
    kind = "referral"
    list_display = ["source", "patient", "priority", "status", "received_at", *CanonicalRecordAdmin.tail_columns]
    list_select_related = ["tenant", "source_connection", "patient"]
    list_filter_extra = ("status", "priority")
    search_fields = [*_PATIENT_REF_SEARCH, "source"]


@admin.register(m.Assessment)
class AssessmentAdmin(CanonicalRecordAdmin):
    kind = "assessment"
    list_display = ["instrument", "patient", "status", "score", "completed_at", *CanonicalRecordAdmin.tail_columns]
    list_select_related = ["tenant", "source_connection", "patient"]
    list_filter_extra = ("status",)
    search_fields = [*_PATIENT_REF_SEARCH, "instrument"]


# --- home care -------------------------------------------------------------------------------------

@admin.register(m.Shift)
class ShiftAdmin(CanonicalRecordAdmin):
    kind = "shift"
    list_display = ["start", "end", "client", "caregiver", "status", "service_code", *CanonicalRecordAdmin.tail_columns]
    list_select_related = ["tenant", "source_connection", "client", "caregiver"]
    list_filter_extra = ("status",)
    search_fields = ["=external_id", "client__family_name", "=client__external_id", "caregiver__family_name", "=service_code"]
    inlines = [ShiftOfferInline]
