"""A real Kafka-protocol broker for the tests: librdkafka's mock cluster, started
through confluent-kafka (``test.mock.num.brokers``) and kept alive for the session
by holding its AdminClient. Its brokers listen on loopback; any client can connect."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def mock_cluster():
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"test.mock.num.brokers": "3", "log_level": 0})
    md = admin.list_topics(timeout=15)
    brokers = {b.id: (b.host, b.port) for b in md.brokers.values()}
    assert len(brokers) == 3
    yield {"admin": admin, "brokers": brokers,
           "bootstrap": ",".join(f"{h}:{p}" for h, p in brokers.values())}


@pytest.fixture(scope="session")
def slow_mock_cluster():
    """A mock cluster whose brokers answer every request after 300 ms
    (``test.mock.broker.rtt``), so a test can cancel a request in flight."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"test.mock.num.brokers": "1", "test.mock.broker.rtt": "300",
                         "log_level": 0})
    md = admin.list_topics(timeout=15)
    brokers = {b.id: (b.host, b.port) for b in md.brokers.values()}
    yield {"admin": admin, "brokers": brokers,
           "bootstrap": ",".join(f"{h}:{p}" for h, p in brokers.values())}


@pytest.fixture
def mock():
    """A fresh librdkafka mock cluster (3 brokers) with its control API (``mockctl``):
    leaders can be moved, brokers taken down, request errors injected; the group
    coordinator's initial rebalance delay is 100 ms instead of 3 s."""
    from .mockctl import MockCluster

    mc = MockCluster(3, initial_rebalance_delay_ms=100)
    try:
        yield mc
    finally:
        mc.close()
