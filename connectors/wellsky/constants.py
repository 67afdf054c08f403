"""WellSky's names and codes, and what they become in the hub."""

from __future__ import annotations

SESSION_COOKIE = "WSSID"
SOURCE_SYSTEM = "wellsky"  # CodeMapping.source_system for WellSky's local codes
MRN_SYSTEM = "urn:wellsky:mrn"
MEDICAID_SYSTEM = "urn:wellsky:medicaid"
ICD10_SYSTEM = "http://hl7.org/fhir/sid/icd-10-cm"
LOCAL_SERVICE_SYSTEM = "urn:wellsky:service-code"  # a procedure whose service code has no mapping
HCPCS_SYSTEM = "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
PAGE_LIMIT = 500  # the portal's largest page

SEX = {"F": "female", "M": "male", "U": "unknown"}
SEX_CODE = {value: key for key, value in SEX.items()} | {"other": "U"}
LANGUAGES = {"English": "en", "Spanish": "es", "Vietnamese": "vi", "Russian": "ru", "Somali": "so", "Arabic": "ar", "Chinese": "zh"}
APPOINTMENT_STATUS = {"Scheduled": "booked", "Completed": "fulfilled", "In Progress": "arrived", "Cancelled": "cancelled",
                      "Missed": "noshow"}
ENCOUNTER_STATUS = {"Finalized": "finished", "In Progress": "in-progress", "Cancelled": "cancelled"}
NOTE_STATUS = {"Signed": "signed", "Amended": "amended", "Draft": "draft"}
AUTHORIZATION_STATUS = {"Active": "active", "Expired": "expired", "Pending": "pending", "Denied": "denied", "Cancelled": "cancelled"}
UNIT_TYPE = {"15min": "15min", "hour": "hour", "visit": "visit"}
CARE_PLAN_STATUS = {"Active": "active", "Draft": "draft", "On Hold": "on-hold", "Completed": "completed", "Revoked": "revoked"}
REFERRAL_STATUS = {"Pending": "active", "Accepted": "accepted", "Declined": "declined", "Completed": "completed"}
PRIORITY = {"Routine": "routine", "Urgent": "urgent"}
VISIT_TYPES = {"HOME": "in-person", "TELEHEALTH": "telehealth"}  # used when the tenant maps none
