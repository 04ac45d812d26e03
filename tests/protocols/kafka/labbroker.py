"""A scripted Kafka broker that runs *inside* the lab (greenrt tasks on the simulated
network), for the lab tests: ApiVersions, Metadata, InitProducerId, Produce (with
the idempotent sequence and epoch rules of a real broker, per partition),
FindCoordinator and OffsetCommit.

It keeps a log of what it really did — every record appended (``appended``), every
offset commit stored (``committed``) — so a test can check each outcome the client
reported against the broker's truth. Faults it can inject, drawn from the lab's
seeded RNG: a random (virtual) think time before each answer (so answers straddle
cancellations), a retriable ``NOT_LEADER_OR_FOLLOWER`` refusal before anything is
written (``refuse``), and a connection closed *after* the request took effect and
before its answer (``drop``: the answer is lost without any cancellation).
"""

from __future__ import annotations

import struct

import greenrt
import greenrt.lab as lab
from greenrt.protocols.kafka import codec, records
from greenrt.protocols.kafka._messages import MESSAGES

PORT = 9092
HOST = "127.0.0.1"
_NOT_LEADER, _OUT_OF_ORDER, _DUPLICATE, _INVALID_EPOCH, _UNKNOWN_PID = 6, 45, 46, 47, 59


class LabBroker:
    """One broker (node 1) that leads every partition of every topic it is asked about."""

    def __init__(self, *, partitions: int = 2, refuse: float = 0.0, drop: float = 0.0,
                 think=(0, 0, 0.0001, 0.0005, 0.002), silent: tuple[str, ...] = (),
                 forget: float = 0.0, slow: dict | None = None):
        self.partitions = partitions
        self.refuse = refuse
        self.drop = drop
        self.forget = forget
        self.slow = slow or {}
        self.think = think
        #: APIs whose requests are read and never answered (a broker gone silent)
        self.silent = silent
        #: (topic, partition, offset, value) of every record appended, in order
        self.appended: list[tuple[str, int, int, bytes | None]] = []
        #: (group, topic, partition, offset) of every commit stored, in order
        self.committed: list[tuple[str, str, int, int]] = []
        self.logs: dict[tuple[str, int], int] = {}  # next offset per partition
        #: (producer id, topic, partition) -> [epoch, next sequence, [(base seq, count, base offset)]]
        self.seqs: dict[tuple[int, str, int], list] = {}
        #: producer id -> its current epoch (InitProducerId)
        self.epochs: dict[int, int] = {}
        #: (producer id, epoch, base sequence, [values], [timestamps]) of every batch
        #: appended, in order
        self.batches: list[tuple[int, int, int, list]] = []
        self.stats = {"requests": 0, "refused": 0, "dropped": 0, "duplicates": 0, "out_of_order": 0,
                      "forgotten": 0, "unknown_producer": 0, "stale_epoch": 0, "epoch_bumps": 0}
        self._next_pid = 1000

    # -- the connection loop ---------------------------------------------------------

    def serve(self, stream) -> None:
        rng = lab.rng()
        frames = codec.FrameDecoder(64 << 20)
        try:
            while True:
                ev = frames.next_event()
                if ev is codec.NEED_DATA:
                    data = stream.recv(65536)
                    if not data:
                        return
                    frames.receive_data(data)
                    continue
                api_key, version, cid = struct.unpack_from(">hhi", ev, 0)
                api = {k: n for n, k in codec.API_KEYS.items()}[api_key]
                r = codec.Reader(ev, 8)
                n = r.int16()
                if n > 0:
                    r.raw(n)
                if codec.request_header_version(api, version) == 2:
                    codec._read_struct(r, (), version, True)
                body = codec.decode_message(f"{api}Request", version, r.data[r.pos:r.end])
                self.stats["requests"] += 1
                if api in self.silent:
                    continue
                greenrt.sleep(self.slow.get(api) or rng.choice(self.think))
                resp = getattr(self, "_" + api)(body, rng)
                if resp is None:  # took effect; the answer is lost with the connection
                    self.stats["dropped"] += 1
                    return
                w = codec.Writer()
                w.int32(cid)
                if codec.response_header_version(api, version) == 1:
                    w.uvarint(0)
                w.raw(codec.encode_message(f"{api}Response", version, resp))
                stream.send_all(struct.pack(">i", len(w.buf)) + bytes(w.buf))
        finally:
            stream.close()

    def _drops(self, rng) -> bool:
        return bool(self.drop) and rng.random() < self.drop

    # -- the APIs --------------------------------------------------------------------

    def _ApiVersions(self, body, rng):  # noqa: N802 - named after the API
        return {"error_code": 0, "throttle_time_ms": 0, "api_keys": [
            {"api_key": m["api_key"], "min_version": m["versions"][0], "max_version": m["versions"][1]}
            for name, m in MESSAGES.items() if name.endswith("Request")]}

    def _Metadata(self, body, rng):  # noqa: N802
        topics = [t["name"] for t in body["topics"] or []]
        return {"throttle_time_ms": 0, "cluster_id": "lab", "controller_id": 1,
                "brokers": [{"node_id": 1, "host": HOST, "port": PORT, "rack": None}],
                "topics": [{"error_code": 0, "name": t, "is_internal": False, "partitions": [
                    {"error_code": 0, "partition_index": p, "leader_id": 1, "leader_epoch": 0,
                     "replica_nodes": [1], "isr_nodes": [1], "offline_replicas": []}
                    for p in range(self.partitions)]} for t in topics]}

    def _InitProducerId(self, body, rng):  # noqa: N802
        pid, epoch = body.get("producer_id", -1), body.get("producer_epoch", -1)
        if pid >= 0:  # KIP-360: bump the epoch of the producer's current id
            if self.epochs.get(pid) != epoch:
                return {"throttle_time_ms": 0, "error_code": _INVALID_EPOCH, "producer_id": -1,
                        "producer_epoch": -1}
            self.epochs[pid] = epoch + 1
            self.stats["epoch_bumps"] += 1
            return {"throttle_time_ms": 0, "error_code": 0, "producer_id": pid, "producer_epoch": epoch + 1}
        self._next_pid += 1
        self.epochs[self._next_pid] = 0
        return {"throttle_time_ms": 0, "error_code": 0, "producer_id": self._next_pid, "producer_epoch": 0}

    def _Produce(self, body, rng):  # noqa: N802
        out = []
        drop = False
        for t in body["topic_data"]:
            parts = []
            for pd in t["partition_data"]:
                code, base = self._append(t["name"], pd["index"], pd["records"], rng)
                if code == 0 and self._drops(rng):
                    drop = True
                parts.append({"index": pd["index"], "error_code": code, "base_offset": base,
                              "log_append_time_ms": -1, "log_start_offset": 0})
            out.append({"name": t["name"], "partition_responses": parts})
        if drop:
            return None
        return {"responses": out, "throttle_time_ms": 0}

    def _append(self, topic: str, partition: int, data, rng) -> tuple[int, int]:
        if self.refuse and rng.random() < self.refuse:
            self.stats["refused"] += 1
            return _NOT_LEADER, -1
        (batch,) = list(records.decode_batches(data))
        n = len(batch.records)
        if batch.producer_id >= 0:
            key = (batch.producer_id, topic, partition)
            # the state is forgotten only once its window holds no batch of sequence 0: a
            # copy of that one would be taken for a new producer's first batch (written
            # twice, as by a real broker after producer-state expiry: not the client's fault)
            if (key in self.seqs and all(b[0] > 0 for b in self.seqs[key][2])
                    and self.forget and rng.random() < self.forget):
                del self.seqs[key]  # the producer's state on this partition is gone
                self.stats["forgotten"] += 1
            st = self.seqs.get(key)
            if st is None:
                if batch.base_sequence != 0:
                    self.stats["unknown_producer"] += 1
                    return _UNKNOWN_PID, -1
                st = self.seqs[key] = [batch.producer_epoch, 0, []]
            if batch.producer_epoch < st[0]:
                self.stats["stale_epoch"] += 1
                return _INVALID_EPOCH, -1
            if batch.producer_epoch > st[0]:  # a new epoch starts at sequence 0
                if batch.base_sequence != 0:
                    self.stats["out_of_order"] += 1
                    return _OUT_OF_ORDER, -1
                st[:] = [batch.producer_epoch, 0, []]
            for seq, count, base in st[2]:
                if seq == batch.base_sequence and count == n:
                    self.stats["duplicates"] += 1
                    return _DUPLICATE, base
            if batch.base_sequence != st[1]:
                self.stats["out_of_order"] += 1
                return _OUT_OF_ORDER, -1
        base = self.logs.get((topic, partition), 0)
        for i, r in enumerate(batch.records):
            self.appended.append((topic, partition, base + i, r.value))
        self.logs[(topic, partition)] = base + n
        self.batches.append((batch.producer_id, batch.producer_epoch, batch.base_sequence,
                             [r.value for r in batch.records], [r.timestamp for r in batch.records]))
        if batch.producer_id >= 0:
            st[1] += n
            st[2] = (st[2] + [(batch.base_sequence, n, base)])[-5:]  # a broker keeps 5
        return 0, base

    def _FindCoordinator(self, body, rng):  # noqa: N802
        keys = body.get("coordinator_keys") or [body.get("key")]
        return {"throttle_time_ms": 0, "error_code": 0, "error_message": None, "node_id": 1,
                "host": HOST, "port": PORT,
                "coordinators": [{"key": k, "node_id": 1, "host": HOST, "port": PORT,
                                  "error_code": 0, "error_message": None} for k in keys]}

    def _OffsetCommit(self, body, rng):  # noqa: N802
        topics = []
        for t in body["topics"]:
            for p in t["partitions"]:
                self.committed.append((body["group_id"], t["name"], p["partition_index"],
                                       p["committed_offset"]))
            topics.append({"name": t["name"], "partitions": [
                {"partition_index": p["partition_index"], "error_code": 0} for p in t["partitions"]]})
        if self._drops(rng):
            return None
        return {"throttle_time_ms": 0, "topics": topics}
