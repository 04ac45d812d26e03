"""A Redis client for greenrt: RESP2/RESP3, pool, pipelines, transactions, pub/sub,
cluster — cancel-safe by construction.

    from greenrt.protocols.redis import Redis

    r = Redis.from_url("redis://localhost:6379/0")
    r.set("greeting", "hello")
    assert r.get("greeting") == b"hello"

Layers: ``resp`` (the sans-IO codec, with limits), ``connection`` (one connection and
its owed-reply count), ``pool`` (bounded pool, checkouts are ``lease`` obligations),
``client`` (commands, pipelines, transactions; the cancel-safety contract is in its
docstring), ``pubsub``, ``cluster``. Errors are in ``errors``.
"""

from .client import Pipeline, Redis, Script, Transaction, parse_url
from .cluster import RedisCluster, key_slot
from .connection import Connection, ConnectionConfig
from .errors import (
    AskError,
    AuthenticationError,
    BusyError,
    ClusterDownError,
    ClusterError,
    CrossSlotError,
    DataError,
    ExecAbortError,
    FrameTooLarge,
    LimitError,
    LoadingError,
    MalformedFrame,
    MovedError,
    NoPermissionError,
    NoScriptError,
    OutcomeUnknown,
    PoolClosed,
    PoolTimeout,
    ProtocolError,
    PubSubLagged,
    ReadOnlyError,
    RedisConnectionError,
    RedisError,
    ReplyError,
    SlotNotCovered,
    TooManyRedirects,
    TryAgainError,
    WatchError,
    WrongTypeError,
)
from .pool import ConnectionPool, Lease
from .pubsub import Message, PubSub
from .resp import Limits

__all__ = [
    "AskError", "AuthenticationError", "BusyError", "ClusterDownError", "ClusterError",
    "Connection", "ConnectionConfig", "ConnectionPool", "CrossSlotError", "DataError",
    "ExecAbortError", "FrameTooLarge", "Lease", "LimitError", "Limits", "LoadingError",
    "MalformedFrame", "Message", "MovedError", "NoPermissionError", "NoScriptError",
    "OutcomeUnknown", "Pipeline", "PoolClosed", "PoolTimeout", "ProtocolError", "PubSub",
    "PubSubLagged", "ReadOnlyError", "Redis", "RedisCluster", "RedisConnectionError",
    "RedisError", "ReplyError", "Script", "SlotNotCovered", "TooManyRedirects",
    "Transaction", "TryAgainError", "WatchError", "WrongTypeError", "key_slot", "parse_url",
]
