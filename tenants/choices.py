"""Catalogues that live in code: capabilities, partner scopes, mapping categories, statuses."""

from __future__ import annotations

from django.db import models


class Capability(models.TextChoices):
    """What a tenant may have licensed, per connection or tenant-wide (see `entitlements.py`)."""

    PATIENTS_READ = "patients.read", "Read patients"
    PATIENTS_WRITE = "patients.write", "Write patients"
    PRACTITIONERS_READ = "practitioners.read", "Read practitioners and caregivers"
    APPOINTMENTS_READ = "appointments.read", "Read appointments and shifts"
    APPOINTMENTS_WRITE = "appointments.write", "Book and change appointments"
    ENCOUNTERS_READ = "encounters.read", "Read encounters and visit notes"
    CARE_PLANS_READ = "care_plans.read", "Read care plans"
    REFERRALS_READ = "referrals.read", "Read referrals"
    REFERRALS_WRITE = "referrals.write", "Submit referrals"
    AUTHORIZATIONS_READ = "authorizations.read", "Read payer authorizations"
    ASSESSMENTS_READ = "assessments.read", "Read assessments"
    ASSESSMENTS_WRITE = "assessments.write", "Write assessments"
    ELIGIBILITY_CHECK = "eligibility.check", "Run eligibility checks"
    CLAIMS_SUBMIT = "claims.submit", "Submit claims"
    REMITTANCES_READ = "remittances.read", "Read remittances (835)"
    TELEHEALTH_WRITE = "telehealth.write", "Book telehealth visits"
    ALERTS_SEND = "alerts.send", "Send scheduling alerts"


class ConnectionStatus(models.TextChoices):
    NEW = "new", "New (never synced)"
    OK = "ok", "OK"
    AUTH_FAILED = "auth_failed", "Login failing"
    ERROR = "error", "Failing"
    PAUSED = "paused", "Paused"


class MappingCategory(models.TextChoices):
    SERVICE_CODE = "service_code", "Service code"
    VISIT_TYPE = "visit_type", "Visit type"
    PAYER = "payer", "Payer"
    DISCIPLINE = "discipline", "Discipline"
    APPOINTMENT_STATUS = "appointment_status", "Appointment status"
    DIAGNOSIS = "diagnosis", "Diagnosis"
    PROCEDURE = "procedure", "Procedure"
    LOCATION = "location", "Location"
    LANGUAGE = "language", "Language"


# Partner API scopes: "<resource>:read" / "<resource>:write"; "*" grants every scope.
SCOPE_RESOURCES: tuple[str, ...] = (
    "patients",
    "practitioners",
    "locations",
    "appointments",
    "encounters",
    "care_plans",
    "referrals",
    "coverage",
    "authorizations",
    "assessments",
    "shifts",
    "eligibility",
    "claims",
    "remittances",
    "alerts",
    "events",
    "webhooks",
    "connections",
    "code_mappings",
)
ALL_SCOPES = "*"
SCOPES: tuple[str, ...] = tuple(f"{resource}:{mode}" for resource in SCOPE_RESOURCES for mode in ("read", "write"))


class AuditAction(models.TextChoices):
    READ = "read", "Read"
    LIST = "list", "List"
    CREATE = "create", "Create"
    UPDATE = "update", "Update"
    DELETE = "delete", "Delete"
    EXPORT = "export", "Export"
    IMPORT = "import", "Import"
    LOGIN = "login", "Login"
    KEY_ISSUED = "key_issued", "API key issued"
    KEY_REVOKED = "key_revoked", "API key revoked"
    SECRET_SET = "secret_set", "Secret set"
    KEYS_ROTATED = "keys_rotated", "Encryption keys rotated"
