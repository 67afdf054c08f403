from django.db import models


class MessageStatus(models.TextChoices):
    RECEIVED = "received"  # kept and acknowledged (AA); not yet mapped
    APPLIED = "applied"  # mapped into canonical records
    IGNORED = "ignored"  # accepted, but nothing in it maps (e.g. an ORU without LOINC vitals)
    FAILED = "failed"  # accepted (AA) but mapping failed: in triage, replayable after a fix
    REJECTED = "rejected"  # answered AR/AE: could not be read or is not supported; in triage
