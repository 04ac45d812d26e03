"""Kafka errors, on the protocol floor (``protocols/base/errors.py``).

Two families: faults of the *wire* (``KafkaProtocolError``: a frame that does not
parse, a CRC mismatch, a size over a limit — the connection is closed), and *error
codes* the broker returns inside a well-formed response (``BrokerError`` with the
code's name and whether it is retriable, from the table in ``ERROR_CODES``).
"""

from __future__ import annotations

from ..base import errors as base

__all__ = [
    "BrokerError", "CommitFailedError", "CommitOutcomeUnknown", "ERROR_CODES", "KafkaConnectionError", "KafkaError",
    "KafkaLimitError", "KafkaOutcomeUnknown", "KafkaProtocolError", "NoOffsetError", "RecordNotSent", "broker_error",
]


class KafkaError(base.Error):
    """Base of every Kafka error."""

    protocol = "kafka"


class KafkaProtocolError(KafkaError, base.ProtocolError):
    """The broker's bytes broke the Kafka protocol; the connection is closed."""


class KafkaLimitError(KafkaProtocolError, base.LimitError):
    """A response exceeded a configured limit (checked before allocating)."""


class KafkaConnectionError(KafkaError, base.ConnectionLost):
    """The connection to a broker failed or closed."""


class KafkaOutcomeUnknown(KafkaConnectionError, base.OutcomeUnknown):
    """A request was sent and its response is lost: it may or may not have taken effect."""


class RecordNotSent(KafkaConnectionError):
    """A produced record was never sent: no byte of it reached a broker, so it is not
    written (the producer closed before its batch left, or the flush that was to send
    it failed before taking it). Distinct from ``KafkaOutcomeUnknown``."""


class BrokerError(KafkaError):
    """An error code in a broker's response. ``error_code``, ``name``, ``retriable``."""

    code = "broker_error"
    error_code: int = -1
    name: str = "UNKNOWN_SERVER_ERROR"
    retriable: bool = False


class CommitFailedError(KafkaError):
    """An offset commit did not take effect: the group is rebalancing (checked before
    sending), it could not be sent, or the coordinator refused it. Never raised for a
    commit that the coordinator acknowledged, nor for one whose answer was lost (that
    is :class:`CommitOutcomeUnknown`)."""

    code = "commit_failed"


class CommitOutcomeUnknown(KafkaOutcomeUnknown):
    """An offset commit was sent and its answer was lost (the connection broke, or the
    commit was cancelled in flight): the offsets may or may not be stored. Not a
    failure; committing the same offsets again is harmless."""

    code = "commit_outcome_unknown"


class NoOffsetError(KafkaError):
    """A partition has no committed offset (or its position is out of range) and
    ``auto_offset_reset="none"`` forbids choosing one."""

    code = "no_offset"


#: error code -> (name, retriable): the codes a client meets (Kafka's Errors.java)
ERROR_CODES: dict[int, tuple[str, bool]] = {
    -1: ("UNKNOWN_SERVER_ERROR", False),
    0: ("NONE", False),
    1: ("OFFSET_OUT_OF_RANGE", False),
    2: ("CORRUPT_MESSAGE", True),
    3: ("UNKNOWN_TOPIC_OR_PARTITION", True),
    4: ("INVALID_FETCH_SIZE", False),
    5: ("LEADER_NOT_AVAILABLE", True),
    6: ("NOT_LEADER_OR_FOLLOWER", True),
    7: ("REQUEST_TIMED_OUT", True),
    8: ("BROKER_NOT_AVAILABLE", False),
    9: ("REPLICA_NOT_AVAILABLE", True),
    10: ("MESSAGE_TOO_LARGE", False),
    11: ("STALE_CONTROLLER_EPOCH", False),
    12: ("OFFSET_METADATA_TOO_LARGE", False),
    13: ("NETWORK_EXCEPTION", True),
    14: ("COORDINATOR_LOAD_IN_PROGRESS", True),
    15: ("COORDINATOR_NOT_AVAILABLE", True),
    16: ("NOT_COORDINATOR", True),
    17: ("INVALID_TOPIC_EXCEPTION", False),
    18: ("RECORD_LIST_TOO_LARGE", False),
    19: ("NOT_ENOUGH_REPLICAS", True),
    20: ("NOT_ENOUGH_REPLICAS_AFTER_APPEND", True),
    21: ("INVALID_REQUIRED_ACKS", False),
    22: ("ILLEGAL_GENERATION", False),
    23: ("INCONSISTENT_GROUP_PROTOCOL", False),
    24: ("INVALID_GROUP_ID", False),
    25: ("UNKNOWN_MEMBER_ID", False),
    26: ("INVALID_SESSION_TIMEOUT", False),
    27: ("REBALANCE_IN_PROGRESS", False),
    28: ("INVALID_COMMIT_OFFSET_SIZE", False),
    29: ("TOPIC_AUTHORIZATION_FAILED", False),
    30: ("GROUP_AUTHORIZATION_FAILED", False),
    31: ("CLUSTER_AUTHORIZATION_FAILED", False),
    32: ("INVALID_TIMESTAMP", False),
    33: ("UNSUPPORTED_SASL_MECHANISM", False),
    34: ("ILLEGAL_SASL_STATE", False),
    35: ("UNSUPPORTED_VERSION", False),
    36: ("TOPIC_ALREADY_EXISTS", False),
    37: ("INVALID_PARTITIONS", False),
    38: ("INVALID_REPLICATION_FACTOR", False),
    39: ("INVALID_REPLICA_ASSIGNMENT", False),
    40: ("INVALID_CONFIG", False),
    41: ("NOT_CONTROLLER", True),
    42: ("INVALID_REQUEST", False),
    43: ("UNSUPPORTED_FOR_MESSAGE_FORMAT", False),
    44: ("POLICY_VIOLATION", False),
    45: ("OUT_OF_ORDER_SEQUENCE_NUMBER", False),
    46: ("DUPLICATE_SEQUENCE_NUMBER", False),
    47: ("INVALID_PRODUCER_EPOCH", False),
    48: ("INVALID_TXN_STATE", False),
    49: ("INVALID_PRODUCER_ID_MAPPING", False),
    50: ("INVALID_TRANSACTION_TIMEOUT", False),
    51: ("CONCURRENT_TRANSACTIONS", True),
    53: ("TRANSACTIONAL_ID_AUTHORIZATION_FAILED", False),
    56: ("KAFKA_STORAGE_ERROR", True),
    58: ("SASL_AUTHENTICATION_FAILED", False),
    59: ("UNKNOWN_PRODUCER_ID", False),
    72: ("LISTENER_NOT_FOUND", True),
    74: ("FENCED_LEADER_EPOCH", True),
    75: ("UNKNOWN_LEADER_EPOCH", True),
    76: ("UNSUPPORTED_COMPRESSION_TYPE", False),
    78: ("OFFSET_NOT_AVAILABLE", True),
    79: ("MEMBER_ID_REQUIRED", False),
    80: ("PREFERRED_LEADER_NOT_AVAILABLE", True),
    82: ("FENCED_INSTANCE_ID", False),
    89: ("THROTTLING_QUOTA_EXCEEDED", True),
    90: ("PRODUCER_FENCED", False),
}


def broker_error(error_code: int, context: str = "") -> BrokerError:
    """The typed error for a non-zero error code (unknown codes keep their number)."""
    name, retriable = ERROR_CODES.get(error_code, (f"UNKNOWN_ERROR_{error_code}", False))
    msg = f"kafka: {name} ({error_code})" + (f" {context}" if context else "")
    return BrokerError(msg, code=name.lower(), error_code=error_code, name=name, retriable=retriable)
