from django.db import models


class SyncMode(models.TextChoices):
    CURSOR = "cursor", "Since last updated"
    FULL_DIFF = "full_diff", "Poll everything and diff"
    PUSH = "push", "Vendor pings, hub pulls"


class RunStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    PARTIAL = "partial", "Succeeded with failed records"
    FAILED = "failed"


class SessionState(models.TextChoices):
    ACTIVE = "active"
    EXPIRED = "expired"
    FAILED = "failed"
    AWAITING_MFA = "awaiting_mfa", "Waiting for an MFA code"


class LoginMethod(models.TextChoices):
    PASSWORD = "password"
    TOTP = "totp", "Password + TOTP"
    SMS = "sms", "Password + SMS code"
    EMAIL = "email", "Password + email code"
    OAUTH2 = "oauth2", "OAuth2 client credentials"
    SMART = "smart", "SMART Backend Services (JWT assertion)"
    JWT_BEARER = "jwt_bearer", "JWT bearer grant"


class FailedJobStatus(models.TextChoices):
    OPEN = "open"
    RETRIED = "retried"
    RESOLVED = "resolved"
    DISMISSED = "dismissed"


class Trigger(models.TextChoices):
    MANUAL = "manual"
    SCHEDULE = "schedule"
    PING = "ping"
    REPLAY = "replay"


class WriteStatus(models.TextChoices):
    PENDING = "pending", "Waiting to be sent"
    SUCCEEDED = "succeeded"
    REFUSED = "refused", "Refused by a rule"
    FAILED = "failed"
