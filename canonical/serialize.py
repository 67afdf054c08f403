"""A canonical record back into the normalized dict the upsert engine takes (its inverse).

Used to merge partial updates (a FHIR Condition for an encounter already stored), to compare a
round trip, and by exports. References come back as the referenced record's external id.
"""

from __future__ import annotations

from typing import Any

from django.db import models

from canonical.kinds import KindSpec, kind_of_model


def _value(obj: models.Model, name: str) -> Any:
    return getattr(obj, name)


def record_to_dict(obj: models.Model, spec: KindSpec | None = None) -> dict[str, Any]:
    spec = spec or kind_of_model(type(obj))
    record: dict[str, Any] = {"external_id": obj.external_id}
    for name in spec.fields:
        record[name] = _value(obj, name)
    for name in spec.refs:
        related = getattr(obj, name)
        record[name] = related.external_id if related is not None else None
    for child in spec.children:
        items = []
        for row in getattr(obj, child.name).all().order_by("position"):
            item = {name: _value(row, name) for name in child.fields}
            for ref in child.refs:
                item[ref] = getattr(row, ref).external_id
            items.append(item)
        record[child.name] = items
    return record
