"""The settings module under each profile, each run in a fresh interpreter as a deployment would."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = {
    "DATABASE_URL": "postgres://switchboard@db.internal:5432/switchboard",
    "DRAMATIQ_BROKER_URL": "redis://cache.internal:6379/0",
    "SECRET_KEY": "q7Zr-9wXk2VnB4tLm8sHd3JfYp6cQa1eUo5iRg0TbWzNvKxCyMjPlDhSuEaFnGt",
    "FERNET_KEYS": "first-key-material,older-key-material",
    "ALLOWED_HOSTS": "hub.agency.example",
}
STRIPPED = {"DATABASE_URL", "DRAMATIQ_BROKER_URL", "SECRET_KEY", "FERNET_KEYS", "ALLOWED_HOSTS", "HUB_PROFILE",
            "HUB_TEST_SERVICES", "DEBUG", "ADMIN_REQUIRE_OTP", "HUB_ALLOW_PRIVATE_VENDOR_HOSTS"}


def run(args: list[str], env: dict[str, str], tmp_path) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in STRIPPED}
    base["HUB_VAR_DIR"] = str(tmp_path)
    return subprocess.run([sys.executable, *args], cwd=ROOT, env={**base, **env}, capture_output=True, text=True, timeout=120)


def show(setting_expr: str, env: dict[str, str], tmp_path) -> subprocess.CompletedProcess:
    code = f"import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'hub.settings'); django.setup(); from django.conf import settings; print(repr(({setting_expr},)))"
    return run(["-c", code], env, tmp_path)


def test_check_deploy_is_clean_in_production(tmp_path):
    result = run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], PRODUCTION, tmp_path)
    assert result.returncode == 0, result.stderr + result.stdout
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_production_names_every_missing_variable(tmp_path):
    result = show("1", {"SECRET_KEY": PRODUCTION["SECRET_KEY"]}, tmp_path)
    assert result.returncode != 0
    assert "The production profile needs these environment variables: DATABASE_URL, DRAMATIQ_BROKER_URL, FERNET_KEYS, ALLOWED_HOSTS" in result.stderr


def test_production_profile_values(tmp_path):
    result = show("settings.DEBUG, settings.ADMIN_REQUIRE_OTP, settings.HUB_ALLOW_PRIVATE_VENDOR_HOSTS, "
                  "settings.DATABASES['default']['ENGINE'], settings.DRAMATIQ_BROKER['BROKER'], settings.FERNET_KEYS", PRODUCTION, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ("(False, True, False, 'django.db.backends.postgresql', 'dramatiq.brokers.redis.RedisBroker', "
                                     "['first-key-material', 'older-key-material'])")


def test_rabbitmq_broker_url_selects_rabbitmq(tmp_path):
    result = show("settings.DRAMATIQ_BROKER['BROKER']", {**PRODUCTION, "DRAMATIQ_BROKER_URL": "amqp://guest:guest@mq.internal:5672/%2F"}, tmp_path)
    assert result.stdout.strip() == "('dramatiq.brokers.rabbitmq.RabbitmqBroker',)", result.stderr


def test_embedded_default_uses_var_sqlite_and_stub_broker(tmp_path):
    result = show("settings.PROFILE, settings.DEBUG, settings.DATABASES['default']['NAME'], settings.DRAMATIQ_BROKER['BROKER'], "
                  "settings.HUB_ALLOW_PRIVATE_VENDOR_HOSTS, settings.EMAIL_BACKEND", {}, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (f"('embedded', True, '{tmp_path}/switchboard.sqlite3', 'dramatiq.brokers.stub.StubBroker', True, "
                                     "'django.core.mail.backends.console.EmailBackend')")
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600


def test_embedded_default_accepts_another_sqlite_file(tmp_path):
    result = show("settings.PROFILE, settings.DATABASES['default']['NAME']", {"DATABASE_URL": f"sqlite:///{tmp_path}/other.db"}, tmp_path)
    assert result.stdout.strip() == f"('embedded', '{tmp_path}/other.db')", result.stderr


@pytest.mark.parametrize("value", ["maybe", "yes please", "2"])
def test_a_malformed_boolean_is_an_error_not_false(tmp_path, value):
    result = show("settings.HUB_ALLOW_PRIVATE_VENDOR_HOSTS", {"HUB_ALLOW_PRIVATE_VENDOR_HOSTS": value}, tmp_path)
    assert result.returncode != 0
    assert f"HUB_ALLOW_PRIVATE_VENDOR_HOSTS={value!r} is not a boolean" in result.stderr


def test_unknown_broker_scheme_is_an_error(tmp_path):
    result = show("1", {"DRAMATIQ_BROKER_URL": "kafka://x:9092"}, tmp_path)
    assert result.returncode != 0
    assert "DRAMATIQ_BROKER_URL must start with redis://" in result.stderr
