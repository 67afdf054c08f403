"""Reads of canonical data that need care.

Authorization usage is derived, never stored: units used are the units of the appointments linked
to the authorization that are live (not tombstoned) and in a unit-consuming status. Storing a
counter would drift as appointments are cancelled, re-synced or deleted at the source.
"""

from __future__ import annotations

from decimal import Decimal

from django.db.models import DecimalField, ExpressionWrapper, F, OuterRef, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce

from canonical.choices import UNIT_CONSUMING_STATUSES
from canonical.models import Appointment, Authorization

# Wide enough for any sum of Appointment.units (max_digits=8) against units_allowed (max_digits=10).
_UNITS = DecimalField(max_digits=14, decimal_places=2)


def _consuming_appointments() -> QuerySet[Appointment]:
    return Appointment.objects.filter(deleted_at__isnull=True, status__in=UNIT_CONSUMING_STATUSES)


def authorization_usage(authorization: Authorization) -> tuple[Decimal, Decimal]:
    """(units used, units remaining) of one authorization. Remaining is negative when overbooked."""
    used = _consuming_appointments().filter(authorization=authorization).aggregate(
        total=Coalesce(Sum("units"), Value(Decimal("0")), output_field=_UNITS)
    )["total"]
    used = Decimal(used).quantize(Decimal("0.01"))
    return used, authorization.units_allowed - used


def with_usage(queryset: QuerySet[Authorization]) -> QuerySet[Authorization]:
    """Annotate `units_used` and `units_remaining` in the same query (a correlated subquery per row,
    so a changelist page costs one statement and no GROUP BY over the authorization columns)."""
    used = (
        _consuming_appointments()
        .filter(authorization=OuterRef("pk"))
        .order_by()
        .values("authorization")
        .annotate(total=Sum("units"))
        .values("total")
    )
    return queryset.annotate(
        units_used=Coalesce(Subquery(used, output_field=_UNITS), Value(Decimal("0")), output_field=_UNITS),
    ).annotate(
        units_remaining=ExpressionWrapper(F("units_allowed") - F("units_used"), output_field=_UNITS),
    )
