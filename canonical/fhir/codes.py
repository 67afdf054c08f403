"""Code systems, value sets and code checks that the R4B models accept but a careful receiver must not.

The models check structure and primitive formats; they let `gender: "banana"` or an ICD-10-CM code
"XYZ" through. These checks run after model validation and name the element that is wrong.
"""

from __future__ import annotations

import re

from canonical import choices
from canonical.validators import npi_is_valid

ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
NPI = "http://hl7.org/fhir/sid/us-npi"
CPT = "http://www.ama-assn.org/go/cpt"
# HCPCS Level II is published by CMS; systems in the wild use either scheme, or the OID.
HCPCS_SYSTEMS = frozenset({
    "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets",
    "http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets",
    "urn:oid:2.16.840.1.113883.6.285",
})
BCP47 = "urn:ietf:bcp:47"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
COVERAGE_CLASS = "http://terminology.hl7.org/CodeSystem/coverage-class"
CLAIM_FILING_INDICATOR = "https://x12.org/codes/claim-filing-indicator-codes"  # X12 SBR09 (code list 1032)
CLAIM_TYPE = "http://terminology.hl7.org/CodeSystem/claim-type"
ADJUDICATION = "http://terminology.hl7.org/CodeSystem/adjudication"

# ICD-10-CM: a letter, a digit, a digit or letter, then after the dot up to four more (E11.9,
# S72.001A). Some senders drop the dot (E119); both are the same code.
ICD10CM_CODE = re.compile(r"[A-Z][0-9][0-9A-Z](\.?[0-9A-Z]{1,4})?")
# LOINC: up to seven digits, a hyphen and a mod-10 check digit (8480-6).
LOINC_CODE = re.compile(r"([0-9]{1,7})-([0-9])")
# CPT: five digits (Category I) or four digits and F or T (Categories II and III).
CPT_CODE = re.compile(r"[0-9]{4}[0-9FT]")
# HCPCS Level II: a letter A–V and four digits (G0299, T1019). Level I is CPT.
HCPCS_CODE = re.compile(r"[A-V][0-9]{4}")

GENDERS = tuple(choices.Sex.values)  # FHIR administrative-gender

# Status value sets of the FHIR resources whose status the hub keeps as-is.
APPOINTMENT_STATUSES = tuple(choices.AppointmentStatus.values)
ENCOUNTER_STATUSES = tuple(choices.EncounterStatus.values)
CARE_PLAN_STATUSES = tuple(choices.CarePlanStatus.values)
COVERAGE_STATUSES = tuple(choices.CoverageStatus.values)
QUESTIONNAIRE_RESPONSE_STATUSES = tuple(choices.AssessmentStatus.values)
# FHIR request-status (ServiceRequest). Our referral adds accepted/declined, carried in an extension.
SERVICE_REQUEST_STATUSES = ("draft", "active", "on-hold", "revoked", "completed", "entered-in-error", "unknown")
SERVICE_REQUEST_KEPT = ("draft", "active", "revoked", "completed")
SERVICE_REQUEST_PRIORITIES = tuple(choices.Priority.values)

# Referral statuses that ServiceRequest cannot say: exported as the nearest FHIR status plus the exact
# one in an extension.
REFERRAL_TO_REQUEST_STATUS = {"accepted": "active", "declined": "revoked"}

# A shift's status on its Appointment; the exact status travels in an extension.
SHIFT_TO_APPOINTMENT_STATUS = {
    "open": "proposed",
    "assigned": "booked",
    "completed": "fulfilled",
    "called-off": "cancelled",
    "cancelled": "cancelled",
}

NOTE_TO_DOC_STATUS = {"draft": "preliminary", "signed": "final", "amended": "amended"}
DOC_TO_NOTE_STATUS = {value: key for key, value in NOTE_TO_DOC_STATUS.items()}

GOAL_LIFECYCLE = ("proposed", "planned", "accepted", "active", "on-hold", "completed", "cancelled", "entered-in-error", "rejected")
CARE_PLAN_ACTIVITY_STATUSES = (
    "not-started", "scheduled", "in-progress", "on-hold", "completed", "cancelled", "stopped", "unknown", "entered-in-error",
)

# Encounter.class for our visit types (v3 ActCode); anything but VR reads back as in person.
VISIT_TYPE_TO_CLASS = {"in-person": ("AMB", "ambulatory"), "telehealth": ("VR", "virtual")}


def one_of(value: str, allowed: tuple[str, ...]) -> str:
    return f"{value!r} is not one of {', '.join(allowed)}"


def check_status(value: object, allowed: tuple[str, ...]) -> str | None:
    """The reason a status is wrong, or None when it is in `allowed`."""
    if value not in allowed:
        return one_of(str(value), allowed)
    return None


def loinc_is_valid(code: str) -> bool:
    """LOINC's check digit is the Luhn (mod 10) digit of the number part."""
    match = LOINC_CODE.fullmatch(code)
    if not match:
        return False
    total = 0
    for index, char in enumerate(reversed(match.group(1))):
        digit = int(char)
        if index % 2 == 0:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return (10 - total % 10) % 10 == int(match.group(2))


def icd10cm_reason(code: str) -> str | None:
    if ICD10CM_CODE.fullmatch(code):
        return None
    return f"{code!r} is not an ICD-10-CM code (a letter, two digits or letters, then up to four after a dot, e.g. E11.9)"


def loinc_reason(code: str) -> str | None:
    if loinc_is_valid(code):
        return None
    if LOINC_CODE.fullmatch(code):
        return f"{code!r} has a wrong LOINC check digit"
    return f"{code!r} is not a LOINC code (digits, a hyphen and a check digit, e.g. 8480-6)"


def procedure_code_reason(system: str, code: str) -> str | None:
    """CPT and HCPCS codes by pattern; codes of other systems are taken as they come."""
    if system == CPT and not CPT_CODE.fullmatch(code):
        return f"{code!r} is not a CPT code (five characters: four digits and a digit, F or T, e.g. 99213)"
    if system in HCPCS_SYSTEMS and not (HCPCS_CODE.fullmatch(code) or CPT_CODE.fullmatch(code)):
        return f"{code!r} is not a HCPCS code (a letter A–V and four digits, e.g. G0299, or a CPT code)"
    return None


def npi_reason(value: str) -> str | None:
    if npi_is_valid(value):
        return None
    return f"{value!r} is not a valid NPI (10 digits with a Luhn check digit)"
