"""Payer authorizations: units a visit needs, units used, and whether a booking fits.

The hub checks a booking against the canonical copy before asking the vendor, so a partner learns
at once which rule refuses it. The vendor checks again with its own live numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_CEILING, Decimal
from zoneinfo import ZoneInfo

from django.db.models import Sum

from canonical.choices import UNIT_CONSUMING_STATUSES, AuthorizationStatus
from canonical.models import Appointment, Authorization, Patient

MINUTES_PER_UNIT = {"15min": 15, "hour": 60}  # other unit types count one unit per visit


class BookingRefused(Exception):
    """A booking the authorization rules refuse. `rule` is a stable code; `details` has the numbers."""

    def __init__(self, rule: str, message: str, **details):
        self.rule = rule
        self.details = details
        super().__init__(message)


@dataclass(frozen=True)
class UnitsCheck:
    authorization: Authorization
    units_requested: Decimal
    units_used: Decimal
    units_remaining: Decimal  # before this booking


def units_for(unit_type: str, start: datetime, end: datetime) -> Decimal:
    """Units a visit from start to end uses, in the authorization's unit (partial units round up)."""
    minutes = Decimal((end - start).total_seconds()) / 60
    per_unit = MINUTES_PER_UNIT.get(unit_type)
    if per_unit is None:
        return Decimal(1)
    return (minutes / per_unit).quantize(Decimal("0.01"), rounding=ROUND_CEILING)


def units_used(authorization: Authorization, *, excluding: Appointment | None = None) -> Decimal:
    booked = Appointment.objects.filter(authorization=authorization, deleted_at__isnull=True, status__in=UNIT_CONSUMING_STATUSES)
    if excluding is not None:
        booked = booked.exclude(pk=excluding.pk)
    return booked.aggregate(total=Sum("units"))["total"] or Decimal(0)


def check_booking(*, tenant, connection, patient: Patient, service_code: str, start: datetime, end: datetime,
                  replacing: Appointment | None = None) -> UnitsCheck:
    """The authorization that covers this visit, with room for it; raises BookingRefused naming the rule."""
    if end <= start:
        raise BookingRefused("invalid_time", "the visit must end after it starts")
    candidates = [
        a for a in Authorization.objects.filter(tenant=tenant, source_connection=connection, patient=patient, deleted_at__isnull=True)
        if service_code in (a.service_codes or [])
    ]
    if not candidates:
        raise BookingRefused("no_authorization", f"the patient has no payer authorization for service {service_code}",
                             service_code=service_code)
    day = start.astimezone(ZoneInfo(tenant.timezone)).date()  # authorizations run in the agency's local days
    covering = [a for a in candidates if a.status == AuthorizationStatus.ACTIVE and a.start_date <= day <= a.end_date]
    if not covering:
        nearest = max(candidates, key=lambda a: a.end_date)
        raise BookingRefused(
            "outside_authorization_dates",
            f"authorization {nearest.auth_number} covers {service_code} from {nearest.start_date} to {nearest.end_date} "
            f"({nearest.status}); the visit is on {day}",
            authorization=str(nearest.public_id),
        )
    authorization = covering[0]
    requested = units_for(authorization.unit_type, start, end)
    used = units_used(authorization, excluding=replacing)
    remaining = max(Decimal(0), authorization.units_allowed - used)
    if requested > remaining:
        raise BookingRefused(
            "authorization_units_exceeded",
            f"the visit needs {requested.normalize():f} {authorization.unit_type} units; authorization {authorization.auth_number} "
            f"has {remaining.normalize():f} of {authorization.units_allowed.normalize():f} left",
            authorization=str(authorization.public_id), units_requested=str(requested), units_remaining=str(remaining),
        )
    return UnitsCheck(authorization, requested, used, remaining)
