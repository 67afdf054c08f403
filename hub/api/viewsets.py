"""The base for every partner endpoint: tenant-scoped queries and an audit row per read and write.

An object of another tenant is simply not in the queryset, so it answers 404 (never 403, which
would confirm it exists). Lookups use the public UUID, never the database key.
"""

from __future__ import annotations

from django.db import IntegrityError, transaction
from rest_framework import mixins, serializers, viewsets

from tenants.audit import client_ip, record_audit
from tenants.choices import AuditAction

UUID_PATTERN = r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"


class TenantScopedViewSet(viewsets.GenericViewSet):
    """Subclasses set `queryset` (all tenants), `scope_resource`, and `tenant_lookup` if the path
    from the model to its tenant is not `tenant`. `audited = False` only for data that is not PHI
    and not security-relevant."""

    lookup_field = "public_id"
    lookup_url_kwarg = "id"
    lookup_value_regex = UUID_PATTERN
    tenant_lookup = "tenant"
    audited = True
    scope_resource: str | None = None

    def get_queryset(self):
        return super().get_queryset().filter(**{self.tenant_lookup: self.request.tenant})

    # --- audit ---------------------------------------------------------------------------------
    def audit(self, action: str, object_id: str = "", detail: dict | None = None) -> None:
        if not self.audited:
            return
        principal = self.request.user
        record_audit(
            action,
            object_type=self.get_queryset().model._meta.label_lower,
            object_id=object_id,
            tenant=self.request.tenant,
            partner_app=getattr(principal, "partner_app", None),
            ip=client_ip(self.request),
            detail=detail,
        )


class AuditedListMixin(mixins.ListModelMixin):
    def list(self, request, *args, **kwargs):
        response = super().list(request, *args, **kwargs)
        rows = response.data.get("results", response.data) if isinstance(response.data, dict) else response.data
        ids = [str(row.get("id")) for row in rows if isinstance(row, dict)]
        self.audit(AuditAction.LIST, detail={"count": len(ids), "ids": ids, "filters": sorted(request.query_params.keys())})
        return response


class AuditedRetrieveMixin(mixins.RetrieveModelMixin):
    def retrieve(self, request, *args, **kwargs):
        response = super().retrieve(request, *args, **kwargs)
        self.audit(AuditAction.READ, object_id=str(kwargs.get(self.lookup_url_kwarg, "")))
        return response


def _conflict(exc: IntegrityError) -> serializers.ValidationError:
    return serializers.ValidationError({"non_field_errors": ["This record conflicts with an existing one."]})


class AuditedCreateMixin(mixins.CreateModelMixin):
    def perform_create(self, serializer):
        try:
            with transaction.atomic():
                instance = serializer.save(**{self.tenant_lookup: self.request.tenant})
                self.audit(AuditAction.CREATE, object_id=str(instance.public_id))
        except IntegrityError as exc:
            raise _conflict(exc) from None


class AuditedUpdateMixin(mixins.UpdateModelMixin):
    def perform_update(self, serializer):
        try:
            with transaction.atomic():
                instance = serializer.save()
                self.audit(AuditAction.UPDATE, object_id=str(instance.public_id), detail={"fields": sorted(serializer.validated_data)})
        except IntegrityError as exc:
            raise _conflict(exc) from None


class AuditedDestroyMixin(mixins.DestroyModelMixin):
    def perform_destroy(self, instance):
        with transaction.atomic():
            public_id = str(instance.public_id)
            instance.delete()
            self.audit(AuditAction.DELETE, object_id=public_id)


class ReadOnlyTenantViewSet(AuditedListMixin, AuditedRetrieveMixin, TenantScopedViewSet):
    pass


class TenantModelViewSet(
    AuditedListMixin,
    AuditedRetrieveMixin,
    AuditedCreateMixin,
    AuditedUpdateMixin,
    AuditedDestroyMixin,
    TenantScopedViewSet,
):
    pass
