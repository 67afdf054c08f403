"""What the upsert engine needs to know about each canonical kind.

A normalized record is a plain dict: `external_id`, the kind's scalar fields by name, references
to other records of the same connection by their external id (`"patient": "c-1001"`), and child
lists (`"identifiers": [{"system": …, "value": …}]`). Connectors produce these dicts; the engine
writes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db import models

from canonical import models as m


@dataclass(frozen=True)
class ChildSpec:
    name: str  # key in the normalized record
    model: type[models.Model]
    parent_field: str
    fields: tuple[str, ...]
    refs: dict[str, str] = field(default_factory=dict)  # child FK field -> kind
    tenant_column: bool = False  # the child table carries tenant_id (for tenant-scoped lookups)


@dataclass(frozen=True)
class KindSpec:
    kind: str
    model: type[models.Model]
    fields: tuple[str, ...]
    refs: dict[str, str] = field(default_factory=dict)  # FK field -> kind
    required_refs: tuple[str, ...] = ()
    children: tuple[ChildSpec, ...] = ()

    @property
    def table(self) -> str:
        return self.model._meta.db_table


_PERSON = ("family_name", "given_names", "phone", "email")
_ADDRESS = ("address_line1", "address_line2", "city", "state", "postal_code", "country")

KINDS: dict[str, KindSpec] = {
    spec.kind: spec
    for spec in (
        KindSpec(
            "patient", m.Patient, (*_PERSON, *_ADDRESS, "birth_date", "sex", "language"),
            children=(ChildSpec("identifiers", m.PatientIdentifier, "patient", ("system", "value"), tenant_column=True),),
        ),
        KindSpec("practitioner", m.Practitioner, (*_PERSON, "npi", "roles", "specialties", "active")),
        KindSpec("location", m.Location, ("name", "type", "phone", "active", "latitude", "longitude", *_ADDRESS)),
        KindSpec(
            "caregiver", m.Caregiver,
            (*_PERSON, "discipline", "skills", "active", "hire_date", "postal_code", "latitude", "longitude"),
        ),
        KindSpec(
            "coverage", m.Coverage,
            ("payer", "payer_id", "member_id", "plan", "group_number", "priority", "claim_filing_indicator", "status", "start_date", "end_date"),
            refs={"patient": "patient"}, required_refs=("patient",),
        ),
        KindSpec(
            "authorization", m.Authorization,
            ("payer", "auth_number", "service_codes", "units_allowed", "unit_type", "start_date", "end_date", "status"),
            refs={"patient": "patient"}, required_refs=("patient",),
        ),
        KindSpec(
            "appointment", m.Appointment,
            ("start", "end", "status", "visit_type", "service_code", "units", "description"),
            refs={"patient": "patient", "practitioner": "practitioner", "location": "location", "authorization": "authorization"},
            required_refs=("patient",),
        ),
        KindSpec(
            "encounter", m.Encounter, ("status", "visit_type", "period_start", "period_end", "reason", "details"),
            refs={"patient": "patient", "practitioner": "practitioner", "location": "location", "appointment": "appointment"},
            required_refs=("patient",),
            children=(
                ChildSpec("diagnoses", m.EncounterDiagnosis, "encounter", ("system", "code", "display", "rank")),
                ChildSpec("procedures", m.EncounterProcedure, "encounter", ("system", "code", "modifiers", "units", "display")),
                ChildSpec("vitals", m.EncounterVital, "encounter", ("loinc", "display", "value", "unit", "effective_at")),
                ChildSpec(
                    "notes", m.EncounterNote, "encounter",
                    ("author", "text", "status", "signed_at", "signed_by", "locked", "amendments"),
                ),
            ),
        ),
        KindSpec(
            "care_plan", m.CarePlan, ("title", "status", "period_start", "period_end", "goals", "activities", "outcomes"),
            refs={"patient": "patient"}, required_refs=("patient",),
        ),
        KindSpec(
            "referral", m.Referral, ("source", "reason", "priority", "status", "service_code", "received_at"),
            refs={"patient": "patient"},
        ),
        KindSpec(
            "assessment", m.Assessment, ("instrument", "status", "answers", "score", "completed_at"),
            refs={"patient": "patient"}, required_refs=("patient",),
        ),
        KindSpec(
            "shift", m.Shift, ("start", "end", "status", "service_code"),
            refs={"client": "patient", "caregiver": "caregiver"}, required_refs=("client",),
            children=(
                ChildSpec("offers", m.ShiftOffer, "shift", ("response", "offered_at", "responded_at"), refs={"caregiver": "caregiver"}),
            ),
        ),
    )
}

# Referenced kinds first, so one pass over a mixed batch resolves every reference.
KIND_ORDER: tuple[str, ...] = tuple(KINDS)


def get_kind(kind: str) -> KindSpec:
    try:
        return KINDS[kind]
    except KeyError:
        raise KeyError(f"unknown canonical kind {kind!r}; known: {', '.join(KINDS)}") from None


def kind_of_model(model: type[models.Model]) -> KindSpec:
    for spec in KINDS.values():
        if spec.model is model:
            return spec
    raise KeyError(model)
