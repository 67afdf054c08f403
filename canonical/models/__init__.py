from canonical.models.base import CanonicalRecord
from canonical.models.identity import MasterPatient, MatchReview
from canonical.models.infrastructure import ChangeCursor, ChangeEvent, SourceRecord, UnmappedCode
from canonical.models.records import (
    Appointment,
    Assessment,
    Authorization,
    Caregiver,
    CarePlan,
    Coverage,
    Encounter,
    EncounterDiagnosis,
    EncounterNote,
    EncounterProcedure,
    EncounterVital,
    Location,
    Patient,
    PatientIdentifier,
    Practitioner,
    Referral,
    Shift,
    ShiftOffer,
)

__all__ = [
    "Appointment", "Assessment", "Authorization", "CanonicalRecord", "Caregiver", "CarePlan", "ChangeCursor",
    "ChangeEvent", "Coverage", "Encounter", "EncounterDiagnosis", "EncounterNote", "EncounterProcedure",
    "EncounterVital", "Location", "MasterPatient", "MatchReview", "Patient", "PatientIdentifier", "Practitioner",
    "Referral", "Shift", "ShiftOffer", "SourceRecord", "UnmappedCode",
]
