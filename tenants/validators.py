from __future__ import annotations

import zoneinfo

from django.conf import settings
from django.core.exceptions import ValidationError

from hub.cron import cron_trigger
from hub.netguard import UnsafeUrl, check_url


def validate_vendor_base_url(value: str) -> None:
    """https only in production; no private or loopback hosts unless HUB_ALLOW_PRIVATE_VENDOR_HOSTS."""
    try:
        check_url(
            value,
            require_https=settings.HUB_REQUIRE_HTTPS_VENDOR_URLS,
            allow_private=settings.HUB_ALLOW_PRIVATE_VENDOR_HOSTS,
        )
    except UnsafeUrl as exc:
        raise ValidationError(f"Base URL refused: {exc}.", code="unsafe_url") from None


def validate_cron(value: str) -> None:
    if not value:
        return
    try:
        cron_trigger(value, "UTC")
    except ValueError as exc:
        raise ValidationError(
            f"{value!r} is not a cron schedule ({exc}). Five fields: minute hour day month weekday, "
            "e.g. '*/15 * * * *' for every 15 minutes.",
            code="bad_cron",
        ) from None


def validate_timezone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(f"{value!r} is not an IANA time zone such as 'America/Chicago'.", code="bad_tz")
