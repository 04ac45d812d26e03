"""librdkafka's mock cluster with its control API (``rd_kafka_mock_*``), reached
through ctypes in the librdkafka that confluent-kafka bundles.

confluent-kafka's ``test.mock.num.brokers`` starts a mock cluster but exposes no way
to steer it; the C API does: move a partition's leader, take a broker down and up,
make the next N requests of an API fail with given error codes (or, per broker, be
answered late), cap an API's versions, create topics, and
shorten the group coordinator's initial rebalance delay (3 s by default). This is
the same broker implementation as the ``mock_cluster`` fixture, driven by its own
``rd_kafka_t`` handle; :meth:`MockCluster.close` destroys it.
"""

from __future__ import annotations

import ctypes
import glob
import os


def _lib() -> ctypes.CDLL:
    import confluent_kafka

    libdir = os.path.join(os.path.dirname(os.path.dirname(confluent_kafka.__file__)), "confluent_kafka.libs")
    found = glob.glob(os.path.join(libdir, "librdkafka*.so*"))
    if not found:
        raise RuntimeError(f"librdkafka not found in {libdir}: confluent-kafka is required")
    lib = ctypes.CDLL(found[0])
    vp, cp, i32 = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int32
    lib.rd_kafka_conf_new.restype = vp
    lib.rd_kafka_conf_set.argtypes = [vp, cp, cp, cp, ctypes.c_size_t]
    lib.rd_kafka_new.restype = vp
    lib.rd_kafka_new.argtypes = [ctypes.c_int, vp, cp, ctypes.c_size_t]
    lib.rd_kafka_destroy.argtypes = [vp]
    lib.rd_kafka_mock_cluster_new.restype = vp
    lib.rd_kafka_mock_cluster_new.argtypes = [vp, ctypes.c_int]
    lib.rd_kafka_mock_cluster_destroy.argtypes = [vp]
    lib.rd_kafka_mock_cluster_bootstraps.restype = cp
    lib.rd_kafka_mock_cluster_bootstraps.argtypes = [vp]
    lib.rd_kafka_mock_topic_create.argtypes = [vp, cp, ctypes.c_int, ctypes.c_int]
    lib.rd_kafka_mock_partition_set_leader.argtypes = [vp, cp, i32, i32]
    lib.rd_kafka_mock_broker_set_down.argtypes = [vp, i32]
    lib.rd_kafka_mock_broker_set_up.argtypes = [vp, i32]
    lib.rd_kafka_mock_group_initial_rebalance_delay_ms.argtypes = [vp, i32]
    lib.rd_kafka_mock_push_request_errors_array.argtypes = [vp, ctypes.c_int16, ctypes.c_size_t,
                                                           ctypes.POINTER(ctypes.c_int)]
    lib.rd_kafka_mock_set_apiversion.argtypes = [vp, ctypes.c_int16, ctypes.c_int16, ctypes.c_int16]
    # rd_kafka_mock_broker_push_request_error_rtts is variadic: argtypes are given per call
    lib.rd_kafka_mock_start_request_tracking.argtypes = [vp]
    lib.rd_kafka_mock_get_requests.restype = ctypes.POINTER(vp)
    lib.rd_kafka_mock_get_requests.argtypes = [vp, ctypes.POINTER(ctypes.c_size_t)]
    lib.rd_kafka_mock_request_api_key.restype = ctypes.c_int16
    lib.rd_kafka_mock_request_api_key.argtypes = [vp]
    lib.rd_kafka_mock_request_destroy_array.argtypes = [ctypes.POINTER(vp), ctypes.c_size_t]
    return lib


class MockCluster:
    """A librdkafka mock cluster of ``brokers`` brokers (ids 1..n) on loopback."""

    def __init__(self, brokers: int = 3, *, initial_rebalance_delay_ms: int = 100):
        self._lib = lib = _lib()
        errstr = ctypes.create_string_buffer(512)
        conf = lib.rd_kafka_conf_new()
        lib.rd_kafka_conf_set(conf, b"log_level", b"0", errstr, 512)
        self._rk = lib.rd_kafka_new(0, conf, errstr, 512)  # RD_KAFKA_PRODUCER
        if not self._rk:
            raise RuntimeError(f"rd_kafka_new: {errstr.value.decode()}")
        self._mc = lib.rd_kafka_mock_cluster_new(self._rk, brokers)
        if not self._mc:
            lib.rd_kafka_destroy(self._rk)
            raise RuntimeError("rd_kafka_mock_cluster_new failed")
        lib.rd_kafka_mock_group_initial_rebalance_delay_ms(self._mc, initial_rebalance_delay_ms)
        self.bootstrap = lib.rd_kafka_mock_cluster_bootstraps(self._mc).decode()
        self.brokers = {}
        for i, hp in enumerate(self.bootstrap.split(","), start=1):
            host, _, port = hp.rpartition(":")
            self.brokers[i] = (host, int(port))

    def create_topic(self, topic: str, partitions: int, replication: int = 1) -> None:
        err = self._lib.rd_kafka_mock_topic_create(self._mc, topic.encode(), partitions, replication)
        assert err == 0, f"topic_create: {err}"

    def set_leader(self, topic: str, partition: int, broker_id: int) -> None:
        err = self._lib.rd_kafka_mock_partition_set_leader(self._mc, topic.encode(), partition, broker_id)
        assert err == 0, f"partition_set_leader: {err}"

    def broker_down(self, broker_id: int) -> None:
        assert self._lib.rd_kafka_mock_broker_set_down(self._mc, broker_id) == 0

    def broker_up(self, broker_id: int) -> None:
        assert self._lib.rd_kafka_mock_broker_set_up(self._mc, broker_id) == 0

    def push_errors(self, api_key: int, *codes: int) -> None:
        """The next ``len(codes)`` requests of ``api_key`` (to any broker) fail with these codes."""
        arr = (ctypes.c_int * len(codes))(*codes)
        self._lib.rd_kafka_mock_push_request_errors_array(self._mc, api_key, len(codes), arr)

    def push_broker_errors(self, broker_id: int, api_key: int, *pairs: tuple[int, int]) -> None:
        """The next ``len(pairs)`` requests of ``api_key`` to broker ``broker_id`` are
        answered with ``(error code, after rtt ms)`` each (code 0: handled normally,
        answered late)."""
        args = []
        for code, rtt in pairs:
            args += [ctypes.c_int(code), ctypes.c_int(rtt)]
        err = self._lib.rd_kafka_mock_broker_push_request_error_rtts(
            ctypes.c_void_p(self._mc), ctypes.c_int32(broker_id), ctypes.c_int16(api_key),
            ctypes.c_size_t(len(pairs)), *args)
        assert err == 0, f"push_request_error_rtts: {err}"

    def set_api_version(self, api_key: int, lo: int, hi: int) -> None:
        """The versions of ``api_key`` the brokers advertise (and accept)."""
        assert self._lib.rd_kafka_mock_set_apiversion(self._mc, api_key, lo, hi) == 0

    def track_requests(self) -> None:
        """Start recording the requests the brokers receive (see :meth:`request_keys`)."""
        self._lib.rd_kafka_mock_start_request_tracking(self._mc)

    def request_keys(self) -> list[int]:
        """The API key of every request received since :meth:`track_requests`, in order."""
        n = ctypes.c_size_t(0)
        reqs = self._lib.rd_kafka_mock_get_requests(self._mc, ctypes.byref(n))
        try:
            return [self._lib.rd_kafka_mock_request_api_key(reqs[i]) for i in range(n.value)]
        finally:
            if n.value:
                self._lib.rd_kafka_mock_request_destroy_array(reqs, n)

    def close(self) -> None:
        if self._mc:
            self._lib.rd_kafka_mock_cluster_destroy(self._mc)
            self._mc = None
        if self._rk:
            self._lib.rd_kafka_destroy(self._rk)
            self._rk = None
