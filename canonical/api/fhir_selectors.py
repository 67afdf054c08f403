"""Tenant-scoped reads behind the FHIR facade.

Every query starts from `scoped_queryset`, so an id of another tenant is simply not found (404,
never 403). Child rows are scoped through their encounter's tenant.
"""

from __future__ import annotations

import uuid

from django.db import models

from canonical.api.fhir_outcome import gone, not_found
from canonical.api.fhir_types import FhirType
from canonical.fhir.export import for_fhir
from tenants.models import Tenant


def scoped_queryset(fhir_type: FhirType, tenant: Tenant) -> models.QuerySet:
    """All rows of the type in the tenant, tombstones included, loaded with what `to_fhir` reads
    (so a page costs the same few queries whatever its size)."""
    return for_fhir(fhir_type.model.objects.filter(**{fhir_type.on_record("tenant"): tenant}))


def live_queryset(fhir_type: FhirType, tenant: Tenant) -> models.QuerySet:
    """What search sees: tombstoned records (and the children of tombstoned encounters) never appear."""
    return scoped_queryset(fhir_type, tenant).filter(**{fhir_type.on_record("deleted_at__isnull"): True})


def parse_id(resource_id: str) -> uuid.UUID | None:
    """A resource id as a UUID; None when it cannot be one of ours."""
    try:
        return uuid.UUID(resource_id)
    except (TypeError, ValueError):
        return None


def owning_record(fhir_type: FhirType, obj: models.Model) -> models.Model:
    """The canonical record that carries version, update time and tombstone: the row, or its encounter."""
    return getattr(obj, fhir_type.parent) if fhir_type.parent else obj


def read_resource(fhir_type: FhirType, tenant: Tenant, resource_id: str) -> models.Model:
    """The row behind `<Type>/<id>` in the tenant.

    Raises FhirError: 404 when the id is malformed, unknown or another tenant's; 410 when the
    record (or, for a child row, its encounter) is a tombstone.
    """
    public_id = parse_id(resource_id)
    obj = scoped_queryset(fhir_type, tenant).filter(public_id=public_id).first() if public_id else None
    if obj is None:
        raise not_found(f"{fhir_type.name}/{resource_id} is not known on this server.", expression=fhir_type.name)
    record = owning_record(fhir_type, obj)
    if record.deleted_at is not None:
        raise gone(f"{fhir_type.name}/{resource_id} was deleted at its source on {record.deleted_at:%Y-%m-%d}.")
    return obj
