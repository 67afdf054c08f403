"""Shared fixtures. Personas: two partner apps of tenant A, one of tenant B (isolation tests)."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest
from rest_framework.test import APIClient

from tests.factories import PartnerAppFactory, TenantFactory, UserFactory, issue_key

SERVICES = os.environ.get("HUB_TEST_SERVICES") == "1"


def _require_reachable(name: str, url: str) -> None:
    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname, parts.port), timeout=3).close()
    except OSError as exc:
        pytest.exit(f"{name} at {parts.hostname}:{parts.port} is unreachable ({exc}); the services run needs it.", returncode=3)


def pytest_configure(config):
    if SERVICES:
        # The services run fails, never skips, when a service is down.
        _require_reachable("PostgreSQL", os.environ["DATABASE_URL"])
        _require_reachable("Redis", os.environ["DRAMATIQ_BROKER_URL"])
        _require_reachable("RabbitMQ", os.environ.get("HUB_TEST_AMQP_URL", "amqp://127.0.0.1:5672"))


def pytest_collection_modifyitems(config, items):
    if SERVICES:
        return
    skip = pytest.mark.skip(reason="needs real services: run `make test-services`")
    for item in items:
        if "services" in item.keywords:
            item.add_marker(skip)


@dataclass
class Persona:
    tenant: object
    partner_app: object
    key: str
    client: APIClient


def _persona(tenant, scopes=("*",)) -> Persona:
    app = PartnerAppFactory(tenant=tenant)
    key = issue_key(app, scopes)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return Persona(tenant=tenant, partner_app=app, key=key, client=client)


@pytest.fixture
def tenant_a(db):
    return TenantFactory(slug="tenant-a")


@pytest.fixture
def tenant_b(db):
    return TenantFactory(slug="tenant-b")


@pytest.fixture
def partner_a(tenant_a) -> Persona:
    return _persona(tenant_a)


@pytest.fixture
def partner_a2(tenant_a) -> Persona:
    return _persona(tenant_a)


@pytest.fixture
def partner_b(tenant_b) -> Persona:
    return _persona(tenant_b)


@pytest.fixture
def make_persona(db):
    return _persona


@pytest.fixture
def superuser(db):
    user = UserFactory(username="root", is_superuser=True)
    return user


@pytest.fixture
def admin_client(client, superuser):
    client.force_login(superuser)
    return client
