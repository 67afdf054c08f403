from __future__ import annotations

from django.contrib import admin, messages
from django.db import models, transaction
from django.db.models import Count, Q
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.utils.html import format_html
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from import_export.admin import ImportExportModelAdmin
from import_export.formats.base_formats import CSV

from connectors.auth_flows import relay_token
from connectors.choices import Trigger
from connectors.registry import VENDORS, connector_class
from connectors.tasks import enqueue_runs, open_session
from hub.admin_audit import AuditedAdminMixin
from tenants.admin_forms import ApiKeyCreateForm, CredentialForm
from tenants.audit import client_ip, record_audit
from tenants.choices import AuditAction
from tenants.models import ApiKey, AuditEvent, CodeMapping, Connection, Credential, Entitlement, PartnerApp, Tenant
from tenants.resources import CodeMappingResource
from tenants.services import issue_api_key, revoke_api_keys


class EntitlementInline(admin.TabularInline):
    model = Entitlement
    extra = 0
    fields = ["capability", "connection", "valid_from", "valid_to", "note"]
    autocomplete_fields = ["connection"]


@admin.register(Tenant)
class TenantAdmin(AuditedAdminMixin, admin.ModelAdmin):
    list_display = ["slug", "name", "timezone", "active", "connection_count", "created_at"]
    list_filter = ["active"]
    search_fields = ["slug", "name"]
    inlines = [EntitlementInline]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_connections=Count("connections"))

    @admin.display(description="connections", ordering="_connections")
    def connection_count(self, obj) -> int:
        return obj._connections

    def get_readonly_fields(self, request, obj=None):
        return ["slug"] if obj else []  # the slug is used in commands and URLs: permanent


class CredentialInline(admin.StackedInline):
    model = Credential
    form = CredentialForm
    extra = 1
    max_num = 1
    can_delete = False
    readonly_fields = ["fields_this_vendor_uses"]
    verbose_name_plural = "credential (secrets are encrypted and never shown again)"

    @admin.display(description="this vendor uses")
    def fields_this_vendor_uses(self, obj) -> str:
        vendor = VENDORS.get(getattr(getattr(obj, "connection", None), "vendor", "") or "")
        if vendor is None:
            return "Save the connection first; the vendor decides which fields are needed."
        return ", ".join(vendor.credential_fields) or "no credential (inbound feed)"


@admin.register(Connection)
class ConnectionAdmin(AuditedAdminMixin, admin.ModelAdmin):
    list_display = ["display_name", "tenant", "vendor", "enabled", "status", "last_synced_at"]
    list_filter = ["vendor", "status", "enabled", "tenant"]
    list_select_related = ["tenant"]
    search_fields = ["display_name", "tenant__slug", "tenant__name"]
    readonly_fields = ["public_id", "status", "status_detail", "last_synced_at", "created_at", "updated_at", "mfa_relay"]
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    fieldsets = [
        (None, {"fields": ["tenant", "vendor", "display_name", "base_url", "enabled", "sync_schedule"]}),
        ("Health", {"fields": ["status", "status_detail", "last_synced_at"]}),
        ("MFA code relay", {"fields": ["mfa_relay"], "classes": ["collapse"],
                            "description": "Where an SMS gateway or mailbox forwarder posts the vendor's login codes."}),
        ("Identity", {"fields": ["public_id", "created_at", "updated_at"], "classes": ["collapse"]}),
    ]
    inlines = [CredentialInline]
    actions = ["sync_now", "open_vendor_session"]

    @method_decorator(sensitive_post_parameters())
    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        return super().changeform_view(request, object_id, form_url, extra_context)

    @admin.display(description="relay")
    def mfa_relay(self, obj) -> str:
        if obj is None or obj.pk is None:
            return "Save the connection first."
        path = reverse("mfa-relay", kwargs={"connection_id": obj.public_id})
        return format_html(
            "POST the message to <code>{}</code> with the header <code>X-Relay-Token: {}</code> "
            "(JSON <code>{{\"text\": …}}</code> or a form field <code>Body</code>; add <code>?channel=email</code> for email codes).",
            path, relay_token(obj),
        )

    def _startable(self, request, queryset, verb: str) -> list[Connection]:
        """The selected connections a job can run for; the others are named in a warning."""
        startable, refused = [], []
        for connection in queryset.select_related("tenant").order_by("pk"):
            try:
                connector_class(connection.vendor)
            except KeyError:
                refused.append(f"{connection.display_name} (no connector installed for {connection.vendor})")
                continue
            if not connection.enabled:
                refused.append(f"{connection.display_name} (disabled)")
                continue
            startable.append(connection)
        if refused:
            self.message_user(request, f"Did not {verb}: {'; '.join(refused)}.", messages.WARNING)
        return startable

    @admin.action(description="Sync now")
    def sync_now(self, request, queryset):
        total = 0
        with transaction.atomic():  # the runs' messages go out when this commits
            connections = self._startable(request, queryset, "sync")
            for connection in connections:
                runs = enqueue_runs(connection, trigger=Trigger.MANUAL)
                total += len(runs)
                record_audit(AuditAction.UPDATE, object_type="tenants.connection", object_id=connection.public_id,
                             tenant=connection.tenant, user=request.user, ip=client_ip(request),
                             detail={"action": "sync_now", "runs": [run.pk for run in runs]})
        if connections:
            self.message_user(request, f"Queued {total} sync run(s) for {len(connections)} connection(s).", messages.SUCCESS)

    @admin.action(description="Open vendor session")
    def open_vendor_session(self, request, queryset):
        with transaction.atomic():
            connections = self._startable(request, queryset, "open a session")
            for connection in connections:
                record_audit(AuditAction.CREATE, object_type="connectors.vendorsession", object_id=connection.public_id,
                             tenant=connection.tenant, user=request.user, ip=client_ip(request),
                             detail={"action": "open_session"})
                transaction.on_commit(lambda pk=connection.pk: open_session.send(connection_id=pk))
        if connections:
            self.message_user(request, f"Opening the vendor session of {len(connections)} connection(s); "
                                       "its state shows under Vendor sessions.", messages.SUCCESS)


@admin.register(Entitlement)
class EntitlementAdmin(AuditedAdminMixin, admin.ModelAdmin):
    list_display = ["tenant", "capability", "connection", "valid_from", "valid_to", "current"]
    list_filter = ["capability", "tenant"]
    list_select_related = ["tenant", "connection"]
    search_fields = ["tenant__slug", "capability", "note"]
    autocomplete_fields = ["tenant", "connection"]

    @admin.display(boolean=True, description="valid now")
    def current(self, obj) -> bool:
        now = timezone.now()
        return obj.valid_from <= now and (obj.valid_to is None or obj.valid_to > now)


class ApiKeyInline(admin.TabularInline):
    model = ApiKey
    extra = 0
    can_delete = False
    fields = ["prefix", "name", "scopes", "expires_at", "revoked_at", "last_used_at"]
    readonly_fields = fields
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False  # keys are issued from the API key page, which shows the key once


@admin.register(PartnerApp)
class PartnerAppAdmin(AuditedAdminMixin, admin.ModelAdmin):
    list_display = ["name", "tenant", "active", "active_keys", "issue_key_link"]
    list_filter = ["active", "tenant"]
    list_select_related = ["tenant"]
    search_fields = ["name", "tenant__slug"]
    autocomplete_fields = ["tenant"]
    inlines = [ApiKeyInline]

    def get_queryset(self, request):
        live = Q(api_keys__revoked_at__isnull=True)
        return super().get_queryset(request).annotate(_keys=Count("api_keys", filter=live))

    @admin.display(description="unrevoked keys", ordering="_keys")
    def active_keys(self, obj) -> int:
        return obj._keys

    @admin.display(description="")
    def issue_key_link(self, obj) -> str:
        return format_html('<a href="../apikey/add/?partner_app={}">Issue a key</a>', obj.pk)


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["prefix", "name", "partner_app", "scope_list", "expires_at", "revoked_at", "last_used_at"]
    list_filter = ["partner_app__tenant", ("revoked_at", admin.EmptyFieldListFilter)]
    list_select_related = ["partner_app__tenant"]
    search_fields = ["prefix", "name", "partner_app__name"]
    readonly_fields = ["prefix", "partner_app", "scopes", "expires_at", "revoked_at", "last_used_at", "created_by", "created_at"]
    fields = ["partner_app", "name", "prefix", "scopes", "expires_at", "revoked_at", "last_used_at", "created_by", "created_at"]
    actions = ["revoke"]
    autocomplete_fields = ["partner_app"]

    @admin.display(description="scopes")
    def scope_list(self, obj) -> str:
        return ", ".join(obj.scopes)

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = ApiKeyCreateForm
        return super().get_form(request, obj, **kwargs)

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields if obj else []

    def get_fields(self, request, obj=None):
        return self.fields if obj else ["partner_app", "name", "scopes", "expires_at"]

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # revoke instead: the key's history stays attached to its audit trail

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        issued = issue_api_key(
            partner_app=form.cleaned_data["partner_app"],
            scopes=form.cleaned_data["scopes"],
            name=form.cleaned_data.get("name", ""),
            expires_at=form.cleaned_data.get("expires_at"),
            user=request.user,
        )
        obj.pk = issued.api_key.pk
        obj._state.adding = False
        obj._state.db = issued.api_key._state.db
        request._issued_key = issued

    @method_decorator(never_cache)
    def add_view(self, request, form_url="", extra_context=None):
        return super().add_view(request, form_url, extra_context)

    def response_add(self, request, obj, post_url_continue=None):
        issued = getattr(request, "_issued_key", None)
        if issued is None:
            return super().response_add(request, obj, post_url_continue)
        context = {**self.admin_site.each_context(request), "api_key": issued.api_key, "plaintext": issued.plaintext,
                   "title": "API key issued", "opts": self.model._meta}
        response = TemplateResponse(request, "admin/tenants/apikey/issued.html", context)
        response["Cache-Control"] = "no-store"
        return response

    @admin.action(description="Revoke selected keys")
    def revoke(self, request, queryset):
        count = revoke_api_keys(queryset, user=request.user)
        self.message_user(request, f"Revoked {count} key(s).", messages.SUCCESS)


@admin.register(CodeMapping)
class CodeMappingAdmin(AuditedAdminMixin, ImportExportModelAdmin):
    resource_classes = [CodeMappingResource]
    import_formats = [CSV]
    export_formats = [CSV]
    list_display = ["tenant", "category", "source_system", "source_code", "target_system", "target_code", "display", "active"]
    list_filter = ["category", "active", "source_system", "tenant"]
    list_select_related = ["tenant"]
    search_fields = ["source_code", "target_code", "display"]
    autocomplete_fields = ["tenant"]

    def get_import_data_kwargs(self, **kwargs):
        # One bad row (including a failed model validation) rolls back the whole file.
        return {**super().get_import_data_kwargs(**kwargs), "rollback_on_validation_errors": True}

    def process_result(self, result, request):
        with transaction.atomic():
            record_audit(
                AuditAction.IMPORT,
                object_type="tenants.codemapping",
                user=request.user,
                ip=client_ip(request),
                detail={"totals": {k: v for k, v in result.totals.items() if v}, "rows": result.total_rows},
            )
        return super().process_result(result, request)


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ["occurred_at", "tenant", "actor_label", "action", "object_type", "object_id", "request_id", "ip"]
    list_filter = ["action", "object_type", "tenant"]
    list_select_related = ["tenant"]
    search_fields = ["actor_label", "object_id", "request_id"]
    date_hierarchy = "occurred_at"
    show_full_result_count = False  # no COUNT(*) over millions of rows on every page

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
