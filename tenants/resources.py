"""CSV import/export of code mappings (django-import-export)."""

from __future__ import annotations

from import_export import fields, resources, widgets

from tenants.models import CodeMapping, Tenant


class CodeMappingResource(resources.ModelResource):
    """Columns: tenant (slug), category, source_system, source_code, target_system, target_code,
    display, active. A row is identified by tenant + category + source system + source code, so
    importing the same file twice changes nothing."""

    tenant = fields.Field(
        attribute="tenant", column_name="tenant", widget=widgets.ForeignKeyWidget(Tenant, field="slug")
    )
    active = fields.Field(attribute="active", column_name="active", widget=widgets.BooleanWidget(), default=True)

    class Meta:
        model = CodeMapping
        fields = (
            "tenant", "category", "source_system", "source_code", "target_system", "target_code", "display", "active",
        )
        export_order = fields
        import_id_fields = ("tenant", "category", "source_system", "source_code")
        clean_model_instances = True  # run model validation (choices, required fields) per row
        skip_unchanged = True
        report_skipped = True
        use_transactions = True
