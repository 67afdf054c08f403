"""The facade's CapabilityStatement (`GET /fhir/r4/metadata`): what a client may ask of it.

Built from the same registry the views use, so it cannot promise a type or parameter the search
does not take.
"""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from canonical.api.fhir_types import FHIR_TYPES

FHIR_VERSION = "4.0.1"


def capability_statement(base_url: str) -> dict[str, Any]:
    """A CapabilityStatement (kind instance) of this server at `base_url`; valid against R4B."""
    resources = []
    for fhir_type in FHIR_TYPES.values():
        resources.append(
            {
                "type": fhir_type.name,
                "interaction": [{"code": "read"}, {"code": "search-type"}],
                "readHistory": False,
                "updateCreate": False,
                "searchParam": [
                    {"name": p.name, "definition": p.definition, "type": p.type, "documentation": p.documentation}
                    for p in fhir_type.search_params()
                ],
            }
        )
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": timezone.now().date().isoformat(),
        "publisher": "Switchboard",
        "kind": "instance",
        "software": {"name": "Switchboard"},
        "implementation": {"description": "Switchboard read-only FHIR R4 facade", "url": base_url},
        "fhirVersion": FHIR_VERSION,
        "format": ["json"],
        "rest": [
            {
                "mode": "server",
                "documentation": (
                    "Read-only. Searches return searchset Bundles of at most 100 entries (`_count`, default 50) "
                    "with a `next` link carrying an opaque continuation token. Errors are OperationOutcome resources."
                ),
                "security": {
                    "description": "Send a partner API key as `Authorization: Bearer <key>`; each resource type needs "
                    "its read scope (patients:read, encounters:read, …)."
                },
                "resource": resources,
            }
        ],
    }
