import pytest
from django.core.exceptions import ValidationError

from hub.netguard import UnsafeUrl, check_url
from tenants.validators import validate_cron, validate_timezone, validate_vendor_base_url


@pytest.mark.parametrize(
    "url, reason",
    [
        ("http://api.vendor.example/v1", "the scheme must be https"),
        ("ftp://api.vendor.example/", "the scheme must be https, not 'ftp'"),
        ("https://127.0.0.1:8700/wellsky", "private, loopback or link-local"),
        ("https://10.1.2.3/", "private, loopback or link-local"),
        ("https://169.254.169.254/latest/meta-data", "private, loopback or link-local"),
        ("https://[::1]/", "private, loopback or link-local"),
        ("https://[::ffff:192.168.0.1]/", "private, loopback or link-local"),
        ("https://localhost/", "is a local name"),
        ("https://ehr.clinic.internal/", "is a local name"),
        ("https://user:pw@api.vendor.example/", "credentials in the URL"),
    ],
)
def test_production_rules_refuse_unsafe_urls(url, reason):
    with pytest.raises(UnsafeUrl, match=reason.replace("(", r"\(").replace(")", r"\)")):
        check_url(url, require_https=True, allow_private=False)


def test_public_https_url_is_accepted():
    check_url("https://8.8.8.8/fhir/r4", require_https=True, allow_private=False)
    check_url("https://api.wellsky.example/v1", require_https=True, allow_private=False)


def test_embedded_default_allows_the_loopback_sandbox(settings):
    settings.HUB_ALLOW_PRIVATE_VENDOR_HOSTS = True
    settings.HUB_REQUIRE_HTTPS_VENDOR_URLS = False
    validate_vendor_base_url("http://127.0.0.1:8700/wellsky/")


def test_production_settings_refuse_loopback_with_a_clear_message(settings):
    settings.HUB_ALLOW_PRIVATE_VENDOR_HOSTS = False
    settings.HUB_REQUIRE_HTTPS_VENDOR_URLS = True
    with pytest.raises(ValidationError) as info:
        validate_vendor_base_url("https://127.0.0.1:8700/wellsky/")
    assert info.value.messages == [
        "Base URL refused: the host '127.0.0.1' is a private, loopback or link-local address (127.0.0.1)."
    ]


def test_cron_schedule_is_validated():
    validate_cron("*/15 * * * *")
    validate_cron("")
    with pytest.raises(ValidationError, match="is not a cron schedule"):
        validate_cron("every 15 minutes")


def test_timezone_is_validated():
    validate_timezone("America/Chicago")
    with pytest.raises(ValidationError, match="not an IANA time zone"):
        validate_timezone("Central")
