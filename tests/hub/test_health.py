import os

import pytest
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.redis import RedisBroker

from hub.health import check_broker


@pytest.mark.django_db
def test_healthz_reports_database_and_broker(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "broker": "ok"}
    assert "no-cache" in response["Cache-Control"]


@pytest.mark.django_db
def test_healthz_is_503_naming_the_broker_when_it_is_down(client, monkeypatch):
    dead = RedisBroker(url="redis://127.0.0.1:1/0", middleware=[])
    monkeypatch.setattr("dramatiq.get_broker", lambda: dead)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "database": "ok", "broker": "error: ConnectionError"}


def test_healthz_refuses_writes(client):
    assert client.post("/healthz").status_code == 405


@pytest.mark.services
def test_real_redis_broker_is_reachable():
    assert check_broker(RedisBroker(url=os.environ["DRAMATIQ_BROKER_URL"], middleware=[])) == "ok"


@pytest.mark.services
def test_real_rabbitmq_broker_is_reachable():
    broker = RabbitmqBroker(url=os.environ["HUB_TEST_AMQP_URL"], middleware=[])
    assert check_broker(broker) == "ok"


@pytest.mark.services
def test_unreachable_rabbitmq_raises():
    broker = RabbitmqBroker(url="amqp://guest:guest@127.0.0.1:1/%2F", middleware=[])
    with pytest.raises(Exception):  # noqa: B017  (pika raises its own connection error types)
        check_broker(broker, timeout=1)


@pytest.mark.services
@pytest.mark.django_db
def test_services_run_really_uses_postgres_and_redis():
    import dramatiq
    from django.db import connection

    assert connection.vendor == "postgresql"
    assert isinstance(dramatiq.get_broker(), RedisBroker)
