"""Logging helpers: request ids on every line; secrets scrubbed from error reports."""

from __future__ import annotations

import logging
import re

from django.views.debug import SafeExceptionReporterFilter

from hub.request_context import get_request_id


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = get_request_id()
        return True


class SecretSafeExceptionReporterFilter(SafeExceptionReporterFilter):
    """Also hides vendor secrets (TOTP seeds, private keys, client secrets) in error pages."""

    hidden_settings = re.compile(
        "API|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE|TOTP|PEM|PRIVATE|CREDENTIAL|OTP", flags=re.IGNORECASE
    )
