"""Value sets of canonical records. Where FHIR R4 has a value set, these are its codes."""

from __future__ import annotations

from django.db import models


class Sex(models.TextChoices):
    MALE = "male"
    FEMALE = "female"
    OTHER = "other"
    UNKNOWN = "unknown"


class AppointmentStatus(models.TextChoices):
    PROPOSED = "proposed"
    PENDING = "pending"
    BOOKED = "booked"
    ARRIVED = "arrived"
    FULFILLED = "fulfilled"
    CANCELLED = "cancelled"
    NOSHOW = "noshow"
    ENTERED_IN_ERROR = "entered-in-error"
    CHECKED_IN = "checked-in"
    WAITLIST = "waitlist"


# Appointments in these states consume authorization units.
UNIT_CONSUMING_STATUSES = ("booked", "arrived", "fulfilled", "checked-in")


class VisitType(models.TextChoices):
    IN_PERSON = "in-person"
    TELEHEALTH = "telehealth"


class EncounterStatus(models.TextChoices):
    PLANNED = "planned"
    ARRIVED = "arrived"
    TRIAGED = "triaged"
    IN_PROGRESS = "in-progress"
    ONLEAVE = "onleave"
    FINISHED = "finished"
    CANCELLED = "cancelled"
    ENTERED_IN_ERROR = "entered-in-error"
    UNKNOWN = "unknown"


class NoteStatus(models.TextChoices):
    DRAFT = "draft"
    SIGNED = "signed"
    AMENDED = "amended"


class CarePlanStatus(models.TextChoices):
    DRAFT = "draft"
    ACTIVE = "active"
    ON_HOLD = "on-hold"
    REVOKED = "revoked"
    COMPLETED = "completed"
    ENTERED_IN_ERROR = "entered-in-error"
    UNKNOWN = "unknown"


class ReferralStatus(models.TextChoices):
    DRAFT = "draft"
    ACTIVE = "active"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    COMPLETED = "completed"
    REVOKED = "revoked"


class Priority(models.TextChoices):
    ROUTINE = "routine"
    URGENT = "urgent"
    ASAP = "asap"
    STAT = "stat"


class CoverageStatus(models.TextChoices):
    ACTIVE = "active"
    CANCELLED = "cancelled"
    DRAFT = "draft"
    ENTERED_IN_ERROR = "entered-in-error"


class AuthorizationStatus(models.TextChoices):
    ACTIVE = "active"
    PENDING = "pending"
    EXPIRED = "expired"
    DENIED = "denied"
    CANCELLED = "cancelled"


class AssessmentStatus(models.TextChoices):
    IN_PROGRESS = "in-progress"
    COMPLETED = "completed"
    AMENDED = "amended"
    ENTERED_IN_ERROR = "entered-in-error"
    STOPPED = "stopped"


class ShiftStatus(models.TextChoices):
    OPEN = "open"
    ASSIGNED = "assigned"
    COMPLETED = "completed"
    CALLED_OFF = "called-off"
    CANCELLED = "cancelled"


class OfferResponse(models.TextChoices):
    PENDING = "pending"
    ACCEPTED = "accepted"
    DECLINED = "declined"


class ChangeAction(models.TextChoices):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"


class SourceStatus(models.TextChoices):
    RECEIVED = "received"
    NORMALIZED = "normalized"
    FAILED = "failed"


class MatchStatus(models.TextChoices):
    PENDING = "pending", "Waiting for review"
    LINKED = "linked", "Linked"
    KEPT_APART = "kept_apart", "Kept apart"
