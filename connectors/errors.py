"""The two kinds of vendor errors (STYLE.md): retryable and final.

Retryable: 429, 5xx, timeouts, unreachable — back off and try again.
Final: 401/403 after one re-login, other 4xx, payloads that fail validation — go to triage with
the reason, never retried blindly. Messages never carry PHI or secrets.
"""

from __future__ import annotations


class VendorError(Exception):
    retryable = False

    def __init__(self, message: str, *, status: int | None = None, vendor_code: str = "", body: object = None):
        self.status = status
        self.vendor_code = vendor_code
        self.body = body  # the vendor's parsed error body (may hold PHI: never logged, never in the message)
        super().__init__(message)


class RetryableError(VendorError):
    retryable = True


class RateLimited(RetryableError):
    def __init__(self, message: str, *, retry_after: float | None = None, status: int | None = 429):
        self.retry_after = retry_after
        super().__init__(message, status=status)


class FinalError(VendorError):
    retryable = False


class AuthenticationFailed(FinalError):
    """The vendor refused our credentials (after one fresh login)."""


class MfaRequired(FinalError):
    """The login needs a code that did not arrive in time, or a method we cannot answer."""


class EntitlementRefused(FinalError):
    """The tenant has not licensed what the job wanted to do (the message names the capability)."""


class InvalidPayload(FinalError):
    """A vendor payload failed validation; `path` says where."""

    def __init__(self, message: str, *, path: str = ""):
        self.path = path
        super().__init__(message)


class WriteRefused(FinalError):
    """A write refused by a rule, before the vendor (local check) or by the vendor; `rule` names it."""

    def __init__(self, rule: str, message: str, *, details: dict | None = None, status: int | None = None):
        self.rule = rule
        self.details = details or {}
        super().__init__(message, status=status, vendor_code=rule)
