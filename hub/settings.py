"""Switchboard settings: one module, driven by the environment.

Two profiles:
- **embedded** (the default when no `SECRET_KEY` is set): SQLite under `var/`, Dramatiq's
  StubBroker, console email, DEBUG on, loopback vendor hosts allowed (for the sandbox).
  `DATABASE_URL` and `DRAMATIQ_BROKER_URL` may still point it at other services (the services
  test run does this).
- **production** (`HUB_PROFILE=production`, or `SECRET_KEY` set): `DATABASE_URL`,
  `DRAMATIQ_BROKER_URL`, `SECRET_KEY`, `FERNET_KEYS` and `ALLOWED_HOSTS` are required, DEBUG is
  off, cookies are secure, the admin asks for a TOTP code.
"""

from __future__ import annotations

import os
import secrets
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from hub.env import env_bool, env_int, env_list, env_str, require

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("HUB_VAR_DIR", str(BASE_DIR / "var")))

PROFILE = env_str("HUB_PROFILE") or ("production" if os.environ.get("SECRET_KEY") else "embedded")
if PROFILE not in {"embedded", "production"}:
    raise ImproperlyConfigured(f"HUB_PROFILE={PROFILE!r}: use 'embedded' or 'production'")
EMBEDDED = PROFILE == "embedded"

_env = environ.Env()


def _local_secret(name: str, factory) -> str:
    """A secret generated once for this checkout and kept under var/ (embedded profile only)."""
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    path = VAR_DIR / name
    if not path.exists():
        path.write_text(factory())
        path.chmod(0o600)
    return path.read_text().strip()


if EMBEDDED:
    SECRET_KEY = env_str("SECRET_KEY") or _local_secret("secret_key", lambda: secrets.token_urlsafe(50))
    FERNET_KEYS = env_list("FERNET_KEYS") or [_local_secret("fernet_key", lambda: secrets.token_urlsafe(32))]
    DEBUG = env_bool("DEBUG", True)
    ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]", "testserver"])
else:
    require(["DATABASE_URL", "DRAMATIQ_BROKER_URL", "SECRET_KEY", "FERNET_KEYS", "ALLOWED_HOSTS"])
    SECRET_KEY = os.environ["SECRET_KEY"]
    # Several keys: the first encrypts, all decrypt (rotate with `manage.py rotate_fernet_keys`).
    FERNET_KEYS = env_list("FERNET_KEYS")
    DEBUG = env_bool("DEBUG", False)
    ALLOWED_HOSTS = env_list("ALLOWED_HOSTS")

# --- vendor hosts -------------------------------------------------------------------------------
# Vendor base URLs must be https and must not point into private networks in production. The
# embedded default talks to the sandbox on loopback, so both are relaxed there.
HUB_ALLOW_PRIVATE_VENDOR_HOSTS = env_bool("HUB_ALLOW_PRIVATE_VENDOR_HOSTS", EMBEDDED)
HUB_REQUIRE_HTTPS_VENDOR_URLS = env_bool("HUB_REQUIRE_HTTPS_VENDOR_URLS", not EMBEDDED)

INSTALLED_APPS = [
    "hub.apps.HubAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "axes",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "import_export",
    "django_dramatiq",
    "hub",
    "tenants",
    "canonical",
    "connectors",
    "connectors.hl7v2",
    "reconciliation",
    "sandbox",  # only for `manage.py sandbox`; the hub never imports it
]

MIDDLEWARE = [
    "hub.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as its documentation asks: it turns a locked-out login into a 429 page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "hub.urls"
WSGI_APPLICATION = "hub.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- database -----------------------------------------------------------------------------------
if os.environ.get("DATABASE_URL"):
    DATABASES = {"default": _env.db_url("DATABASE_URL")}
else:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(VAR_DIR / "switchboard.sqlite3")}}

_db = DATABASES["default"]
if _db["ENGINE"] == "django.db.backends.sqlite3":
    # WAL + IMMEDIATE transactions let the in-process worker and the web server share the file
    # without "database is locked" on upgrade from a read to a write transaction. Checkpoints every
    # 10,000 WAL pages (~40 MB) instead of 1,000: a sync page rewrites many of the same index
    # pages, and each checkpoint copies them to the file and syncs it (upsert 1.2x faster; bench/).
    _db.setdefault("OPTIONS", {}).update({
        "timeout": 30, "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA wal_autocheckpoint=10000; "
                        "PRAGMA journal_size_limit=67108864;",
    })
    _db.setdefault("TEST", {})["NAME"] = env_str("HUB_TEST_SQLITE_NAME") or None
else:
    _db.setdefault("CONN_MAX_AGE", env_int("DB_CONN_MAX_AGE", 60, minimum=0))
    _db.setdefault("CONN_HEALTH_CHECKS", True)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Dramatiq -----------------------------------------------------------------------------------
DRAMATIQ_BROKER_URL = env_str("DRAMATIQ_BROKER_URL")
_DRAMATIQ_MIDDLEWARE = [
    "dramatiq.middleware.AgeLimit",
    "dramatiq.middleware.TimeLimit",
    "dramatiq.middleware.Callbacks",
    # Before Retries on purpose: "after" hooks run in reverse, so it sees Retries' final verdict.
    "connectors.middleware.FailedJobMiddleware",
    "dramatiq.middleware.Retries",
    "django_dramatiq.middleware.DbConnectionsMiddleware",
    "connectors.middleware.FreezeHeapAfterBoot",
]
if not DRAMATIQ_BROKER_URL:
    DRAMATIQ_BROKER = {"BROKER": "dramatiq.brokers.stub.StubBroker", "OPTIONS": {}, "MIDDLEWARE": _DRAMATIQ_MIDDLEWARE}
elif DRAMATIQ_BROKER_URL.startswith(("redis://", "rediss://")):
    # A Redis worker that sends no heartbeat for this long (ms) counts as dead, and the messages
    # it held unacknowledged go back on the queue; the check runs on this many broker commands in
    # a million. Dramatiq's defaults (60 s, 1,000) suit production; the services tests lower the
    # timeout and raise the chance so a SIGKILLed worker's job is picked up again in seconds.
    DRAMATIQ_REDIS_HEARTBEAT_TIMEOUT_MS = env_int("DRAMATIQ_REDIS_HEARTBEAT_TIMEOUT_MS", 60_000, minimum=1_000)
    DRAMATIQ_REDIS_MAINTENANCE_CHANCE = env_int("DRAMATIQ_REDIS_MAINTENANCE_CHANCE", 1_000, minimum=1)
    if DRAMATIQ_REDIS_MAINTENANCE_CHANCE > 1_000_000:
        raise ImproperlyConfigured(f"DRAMATIQ_REDIS_MAINTENANCE_CHANCE={DRAMATIQ_REDIS_MAINTENANCE_CHANCE} is above 1000000 (every command)")
    DRAMATIQ_BROKER = {
        "BROKER": "dramatiq.brokers.redis.RedisBroker",
        "OPTIONS": {
            "url": DRAMATIQ_BROKER_URL,
            "heartbeat_timeout": DRAMATIQ_REDIS_HEARTBEAT_TIMEOUT_MS,
            "maintenance_chance": DRAMATIQ_REDIS_MAINTENANCE_CHANCE,
        },
        "MIDDLEWARE": _DRAMATIQ_MIDDLEWARE,
    }
elif DRAMATIQ_BROKER_URL.startswith(("amqp://", "amqps://")):
    DRAMATIQ_BROKER = {
        "BROKER": "dramatiq.brokers.rabbitmq.RabbitmqBroker",
        "OPTIONS": {"url": DRAMATIQ_BROKER_URL},
        "MIDDLEWARE": _DRAMATIQ_MIDDLEWARE,
    }
else:
    raise ImproperlyConfigured("DRAMATIQ_BROKER_URL must start with redis://, rediss://, amqp:// or amqps://")
DRAMATIQ_AUTODISCOVER_MODULES = ["tasks"]
# Extra connector modules to register (dotted paths, comma-separated): private vendors, test doubles.
HUB_EXTRA_CONNECTORS = env_list("HUB_EXTRA_CONNECTORS")

# Per-connection vendor rate limits must hold across every worker: they live in Redis.
RATE_LIMIT_REDIS_URL = env_str("RATE_LIMIT_REDIS_URL") or (
    DRAMATIQ_BROKER_URL if DRAMATIQ_BROKER_URL.startswith(("redis://", "rediss://")) else ""
)

# --- cache (throttles, rate limits shared by every process in production) -----------------------
if os.environ.get("CACHE_URL"):
    CACHES = {"default": _env.cache_url("CACHE_URL")}
elif DRAMATIQ_BROKER_URL.startswith(("redis://", "rediss://")):
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": DRAMATIQ_BROKER_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "switchboard"}}

# --- auth ---------------------------------------------------------------------------------------
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # refuses logins while locked out
    "django.contrib.auth.backends.ModelBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Staff must give a TOTP code at the admin login in production (django-otp).
ADMIN_REQUIRE_OTP = env_bool("ADMIN_REQUIRE_OTP", not EMBEDDED)
OTP_TOTP_ISSUER = "Switchboard"

# Failed admin logins: after AXES_FAILURE_LIMIT failures for one username from one address, that
# pair is locked out for AXES_COOLOFF_TIME; a success resets the count.
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("AXES_COOLOFF_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False
AXES_IPWARE_META_PRECEDENCE_ORDER = ["REMOTE_ADDR"]

# --- internationalisation -----------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

# --- email --------------------------------------------------------------------------------------
if os.environ.get("EMAIL_URL"):
    vars().update(_env.email_url("EMAIL_URL"))
else:
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "switchboard@localhost")

# --- security -----------------------------------------------------------------------------------
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 5 * 1024 * 1024, minimum=1024)
DEFAULT_EXCEPTION_REPORTER_FILTER = "hub.logging.SecretSafeExceptionReporterFilter"
if not EMBEDDED:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_CONTENT_TYPE_NOSNIFF = True
    if env_bool("USE_X_FORWARDED_PROTO", False):
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

# CSV exports open in spreadsheets: neutralise cells that would run as formulas.
IMPORT_EXPORT_ESCAPE_FORMULAE_ON_EXPORT = True
IMPORT_EXPORT_USE_TRANSACTIONS = True

# --- REST API -----------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["hub.api.authentication.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["hub.api.permissions.HasScope"],
    "DEFAULT_THROTTLE_CLASSES": ["hub.api.throttling.ApiKeyRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"api_key": env_str("API_THROTTLE_RATE", "1200/min")},
    "DEFAULT_PAGINATION_CLASS": "hub.api.pagination.HubCursorPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "hub.api.errors.problem_exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "UNAUTHENTICATED_USER": None,
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
API_MAX_PAGE_SIZE = 100

SPECTACULAR_SETTINGS = {
    "TITLE": "Switchboard API",
    "DESCRIPTION": "Tenant-scoped access to canonical healthcare records. Authenticate with "
    "`Authorization: Bearer sb_live_<prefix>_<secret>`.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}

# --- logging: request ids on every line, never secrets ------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "hub.logging.RequestIdFilter"}},
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["request_id"]}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    # httpx logs full URLs (query strings can hold PHI) at INFO: our own client logs masked paths.
    "loggers": {name: {"level": "WARNING"} for name in ("django.db.backends", "httpx", "httpcore")},
}
