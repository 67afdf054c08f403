"""Which canonical model stands behind each FHIR resource type of the facade, and how to query it.

Child rows (diagnoses, procedures, vitals of an encounter) have no tenant, tombstone or update
time of their own: they take them from their encounter (`parent`), which is also how they are
scoped to a tenant.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import models

from canonical import models as m

# How `identifier` is matched for a type (see `fhir_search`).
IDENTIFIER_PATIENT = "patient"  # PatientIdentifier rows and the record's own external id
IDENTIFIER_PRACTITIONER = "practitioner"  # NPI and the record's own external id
IDENTIFIER_RECORD = "record"  # the record's own external id
IDENTIFIER_CHILD = "child"  # child rows: `<encounter external id>/<list>/<position>`, as the exporter writes it

_R = "http://hl7.org/fhir/SearchParameter/"


@dataclass(frozen=True)
class SearchParamSpec:
    name: str
    type: str  # token, date, reference (FHIR search parameter types)
    definition: str
    documentation: str


@dataclass(frozen=True)
class FhirType:
    name: str  # the FHIR resource type
    model: type[models.Model]
    scope_resource: str  # partner scope `<scope_resource>:read`
    identifier: str
    identifier_definition: str
    parent: str | None = None  # FK to the canonical record that owns a child row
    patient_path: str | None = None  # lookup from the model to its Patient
    patient_definition: str = _R + "clinical-patient"
    child_list: str = ""  # for child rows: the encounter's list they come from (diagnoses, …)

    @property
    def scope(self) -> str:
        return f"{self.scope_resource}:read"

    def on_record(self, lookup: str) -> str:
        """`lookup` on the canonical record: the row itself, or the record that owns a child row."""
        return f"{self.parent}__{lookup}" if self.parent else lookup

    def search_params(self) -> tuple[SearchParamSpec, ...]:
        params = [
            SearchParamSpec("_id", "token", _R + "Resource-id", "Logical id (comma-separated for any of several)."),
            SearchParamSpec(
                "_lastUpdated", "date", _R + "Resource-lastUpdated",
                "When the record last changed; prefixes eq, gt, ge, lt, le; repeat for a range.",
            ),
            SearchParamSpec("identifier", "token", self.identifier_definition, _IDENTIFIER_DOCS[self.identifier]),
        ]
        if self.patient_path:
            params.append(SearchParamSpec("patient", "reference", self.patient_definition, "The Patient: `<id>` or `Patient/<id>`."))
        return tuple(params)


_EXTERNAL = "`urn:switchboard:connection:<connection id>|<id in the source system>` or just the value"
_IDENTIFIER_DOCS = {
    IDENTIFIER_PATIENT: f"`system|value` or `value`: the patient's identifiers (MRN, MBI, …) and {_EXTERNAL}.",
    IDENTIFIER_PRACTITIONER: f"`http://hl7.org/fhir/sid/us-npi|<NPI>`, {_EXTERNAL}.",
    IDENTIFIER_RECORD: f"{_EXTERNAL}.",
    IDENTIFIER_CHILD: "`urn:switchboard:connection:<connection id>|<encounter id in the source system>/<list>/<position>`.",
}

_CHILD = {"parent": "encounter", "patient_path": "encounter__patient__public_id"}
_ON_PATIENT = {"patient_path": "patient__public_id"}

FHIR_TYPES: dict[str, FhirType] = {
    spec.name: spec
    for spec in (
        FhirType("Patient", m.Patient, "patients", IDENTIFIER_PATIENT, _R + "Patient-identifier"),
        FhirType("Practitioner", m.Practitioner, "practitioners", IDENTIFIER_PRACTITIONER, _R + "Practitioner-identifier"),
        FhirType("Location", m.Location, "locations", IDENTIFIER_RECORD, _R + "Location-identifier"),
        FhirType(
            "Appointment", m.Appointment, "appointments", IDENTIFIER_RECORD, _R + "Appointment-identifier",
            **_ON_PATIENT, patient_definition=_R + "Appointment-patient",
        ),
        FhirType("Encounter", m.Encounter, "encounters", IDENTIFIER_RECORD, _R + "clinical-identifier", **_ON_PATIENT),
        FhirType("Condition", m.EncounterDiagnosis, "encounters", IDENTIFIER_CHILD, _R + "clinical-identifier", **_CHILD, child_list="diagnoses"),
        FhirType("Procedure", m.EncounterProcedure, "encounters", IDENTIFIER_CHILD, _R + "clinical-identifier", **_CHILD, child_list="procedures"),
        FhirType("Observation", m.EncounterVital, "encounters", IDENTIFIER_CHILD, _R + "clinical-identifier", **_CHILD, child_list="vitals"),
        FhirType("CarePlan", m.CarePlan, "care_plans", IDENTIFIER_RECORD, _R + "clinical-identifier", **_ON_PATIENT),
        FhirType("ServiceRequest", m.Referral, "referrals", IDENTIFIER_RECORD, _R + "clinical-identifier", **_ON_PATIENT),
        FhirType(
            "Coverage", m.Coverage, "coverage", IDENTIFIER_RECORD, _R + "Coverage-identifier",
            **_ON_PATIENT, patient_definition=_R + "Coverage-patient",
        ),
        FhirType(
            "QuestionnaireResponse", m.Assessment, "assessments", IDENTIFIER_RECORD, _R + "QuestionnaireResponse-identifier",
            **_ON_PATIENT, patient_definition=_R + "QuestionnaireResponse-patient",
        ),
    )
}


def get_fhir_type(name: str) -> FhirType | None:
    return FHIR_TYPES.get(name)
