"""Liveness of what the hub depends on: the database and the Dramatiq broker."""

from __future__ import annotations

import dramatiq
from django.db import connection
from dramatiq.brokers.stub import StubBroker


def check_database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return "ok"


def check_broker(broker: dramatiq.Broker | None = None, timeout: float = 2.0) -> str:
    """'ok' when the broker answers; raises when it does not. The stub broker is in-process."""
    broker = broker or dramatiq.get_broker()
    if isinstance(broker, StubBroker):
        return "ok"
    from dramatiq.brokers.redis import RedisBroker

    if isinstance(broker, RedisBroker):
        broker.client.ping()
        return "ok"
    from dramatiq.brokers.rabbitmq import RabbitmqBroker

    if isinstance(broker, RabbitmqBroker):
        import copy

        import pika

        # A copy: the short timeouts are for this probe, not for the broker's own connections.
        params = copy.deepcopy(broker.parameters[0] if isinstance(broker.parameters, list) else broker.parameters)
        params.socket_timeout = timeout
        params.blocked_connection_timeout = timeout
        params.connection_attempts = 1
        pika.BlockingConnection(params).close()
        return "ok"
    raise RuntimeError(f"unknown broker {type(broker).__name__}")


def health() -> tuple[bool, dict[str, str]]:
    report: dict[str, str] = {}
    healthy = True
    for name, check in (("database", check_database), ("broker", check_broker)):
        try:
            report[name] = check()
        except Exception as exc:  # a health check reports every failure; it never raises
            report[name] = f"error: {type(exc).__name__}"
            healthy = False
    return healthy, report
