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
def enqueued(monkeypatch) -> list[dict]:
    """The apply jobs sent (their arguments), whatever the broker: the stub of `make test` or
    Redis under `make test-services`; nothing reaches the broker."""
    from connectors.hl7v2 import tasks

    sent: list[dict] = []
    monkeypatch.setattr(tasks.apply_hl7_message, "send", lambda *args, **kwargs: sent.append(kwargs))
    return sent
