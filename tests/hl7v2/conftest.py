"""HL7 v2 samples (tests/hl7v2/fixtures, written after the HL7 v2.5.1 chapters' examples) and helpers."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.hl7v2.services import feed_connection

FIXTURES = Path(__file__).parent / "fixtures"


def sample(name: str) -> str:
    return (FIXTURES / f"{name}.hl7").read_bytes().decode()


@pytest.fixture
def feed(tenant_a):
    return feed_connection(tenant_a)


@pytest.fixture
def broker():
    import dramatiq

    broker = dramatiq.get_broker()
    broker.flush_all()
    yield broker
    broker.flush_all()

