"""The cluster view a Kafka client needs: brokers, partition leaders, one connection
per broker.

``Cluster.refresh(topics)`` asks any reachable broker for metadata (bootstrap
addresses first, then every broker it has learnt); ``leader(topic, partition)``
names the broker to send a partition's produce and fetch requests to, and
``connection(node_id)`` opens (or reuses) the connection to it. A connection that
became unusable — closed by a cancellation with a response in flight, a protocol
error, a lost socket — is replaced on the next call, never reused.
``invalidate(topic)`` forgets a topic's leaders; the producer calls it on
``NOT_LEADER_OR_FOLLOWER``/``UNKNOWN_TOPIC_OR_PARTITION`` and after a connection loss,
then refreshes (leader routing per partition, metadata refresh on change).

Every method that talks to a broker is a checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import greenrt

from .connection import BrokerConnection, KafkaLimits
from .errors import KafkaConnectionError, KafkaError, broker_error

__all__ = ["Cluster", "PartitionInfo"]


@dataclass
class PartitionInfo:
    topic: str
    partition: int
    leader: int
    leader_epoch: int = -1
    replicas: list[int] = field(default_factory=list)


class Cluster:
    """Brokers and partition leaders of one cluster; see the module docstring."""

    def __init__(self, bootstrap: list[tuple[str, int]] | str, *, client_id: str = "greenrt",
                 limits: KafkaLimits | None = None):
        if isinstance(bootstrap, str):
            bootstrap = [_hostport(x) for x in bootstrap.split(",") if x.strip()]
        if not bootstrap:
            raise ValueError("bootstrap needs at least one host:port")
        self.bootstrap = list(bootstrap)
        self.client_id = client_id
        self.limits = limits or KafkaLimits()
        self.brokers: dict[int, tuple[str, int]] = {}
        self.partitions: dict[str, dict[int, PartitionInfo]] = {}
        self._conns: dict[object, BrokerConnection] = {}
        self._lock = greenrt.Lock()
        self.statistics_counts = {"metadata_refreshes": 0, "connections_opened": 0,
                                  "connections_replaced": 0}

    def connection(self, node_id: int) -> BrokerConnection:
        """The connection to broker ``node_id`` (opened on first use; replaced when unusable)."""
        conn = self._conns.get(node_id)
        if conn is not None and conn.usable:
            return conn
        if conn is not None:
            conn.close()
            self.statistics_counts["connections_replaced"] += 1
        addr = self.brokers.get(node_id)
        if addr is None:
            raise KafkaConnectionError(f"kafka: broker {node_id} is not in the cluster metadata")
        conn = BrokerConnection.open(*addr, client_id=self.client_id, limits=self.limits)
        self.statistics_counts["connections_opened"] += 1
        self._conns[node_id] = conn
        return conn

    def _any_connection(self) -> BrokerConnection:
        last: Exception | None = None
        for key in list(self.brokers) + [("bootstrap", a) for a in self.bootstrap]:
            conn = self._conns.get(key)
            if conn is not None and conn.usable:
                return conn
            addr = self.brokers[key] if not isinstance(key, tuple) else key[1]
            try:
                conn = BrokerConnection.open(*addr, client_id=self.client_id, limits=self.limits)
            except (OSError, KafkaError) as e:
                last = e
                continue
            self.statistics_counts["connections_opened"] += 1
            self._conns[key] = conn
            return conn
        raise KafkaConnectionError(f"kafka: no broker reachable ({last})")

    def refresh(self, topics: list[str] | None = None, *, allow_create: bool = True) -> dict:
        """Fetch metadata for ``topics`` (all topics when None) and update the view.
        A connection that breaks under the request (another caller's request on it was
        cancelled, the broker went away) is replaced and the request sent again, up to
        3 times: Metadata changes nothing at the broker."""
        with self._lock:
            body = {"topics": None if topics is None else [{"name": t} for t in topics],
                    "allow_auto_topic_creation": allow_create}
            for attempt in range(3):
                conn = self._any_connection()
                try:
                    md = conn.request("Metadata", body)
                    break
                except KafkaConnectionError:
                    if attempt == 2:
                        raise
            self.statistics_counts["metadata_refreshes"] += 1
            self.brokers = {b["node_id"]: (b["host"], b["port"]) for b in md["brokers"]}
            for t in md["topics"]:
                if t["error_code"] or not t["partitions"]:
                    self.partitions.pop(t["name"], None)
                    continue
                self.partitions[t["name"]] = {
                    p["partition_index"]: PartitionInfo(t["name"], p["partition_index"], p["leader_id"],
                                                        p.get("leader_epoch", -1), list(p["replica_nodes"]))
                    for p in t["partitions"]}
            return md

    def topic_partitions(self, topic: str, *, attempts: int = 20) -> dict[int, PartitionInfo]:
        """The partitions of ``topic``, refreshing metadata (a new topic may take a moment
        to get leaders) up to ``attempts`` times, 50 ms apart."""
        for i in range(attempts):
            parts = self.partitions.get(topic)
            if parts and all(p.leader >= 0 for p in parts.values()):
                return parts
            self.refresh([topic])
            if i:
                greenrt.sleep(0.05)
        parts = self.partitions.get(topic)
        if not parts:
            raise broker_error(3, f"for topic {topic!r}")
        return parts

    def leader(self, topic: str, partition: int) -> int:
        p = self.topic_partitions(topic).get(partition)
        if p is None:
            raise broker_error(3, f"for {topic}[{partition}]")
        return p.leader

    def invalidate(self, topic: str) -> None:
        self.partitions.pop(topic, None)

    def close(self) -> None:
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()

    def statistics(self) -> dict:
        return {**self.statistics_counts, "brokers": len(self.brokers),
                "open_connections": sum(1 for c in self._conns.values() if c.usable)}


def _hostport(s: str) -> tuple[str, int]:
    host, _, port = s.strip().rpartition(":")
    return host.strip("[]"), int(port)
