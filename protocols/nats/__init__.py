"""A NATS client for greenrt: a total sans-IO codec, reconnect with backoff and a
bounded pending-publish buffer, subscriptions as bounded iterators/channels,
request/reply with per-request budgets, headers, drain, and JetStream (streams,
consumers, pull fetch with acks as obligations, ordered consumers, key-value,
object store).

    from greenrt.protocols import nats

    with nats.connect("nats://127.0.0.1:4222") as nc:
        sub = nc.subscribe("updates")
        nc.publish("updates", b"hello")
        assert sub.next_msg(timeout=1).data == b"hello"

Layers: ``codec`` (sans-IO, with limits), ``client`` (connection, reconnect,
subscriptions, request/reply), ``nkeys`` (NKey seeds, credentials files),
``jetstream`` (JetStream and key-value), ``objectstore`` (object store). Errors are in ``errors``. See docs/nats.md.
"""

from .client import Client, EndOfSubscription, Message, Options, Server, Subscription, connect
from .codec import Limits
from .errors import (
    AuthorizationError,
    ClientClosed,
    JetStreamError,
    KeyNotFound,
    KeyWrongRevision,
    LimitError,
    NatsConnectionError,
    NatsError,
    NoResponders,
    ObjectCorrupt,
    ObjectNotFound,
    ObjectTooLarge,
    OutcomeUnknown,
    PendingBufferFull,
    ProtocolError,
    RequestTimeout,
    ServerError,
    SlowConsumer,
    UsageError,
)

__all__ = [
    "AuthorizationError", "Client", "ClientClosed", "EndOfSubscription", "JetStreamError",
    "KeyNotFound", "KeyWrongRevision", "LimitError", "Limits", "Message", "NatsConnectionError",
    "NatsError", "NoResponders", "ObjectCorrupt", "ObjectNotFound", "ObjectTooLarge", "Options", "OutcomeUnknown", "PendingBufferFull",
    "ProtocolError", "RequestTimeout", "ServerError", "Server", "SlowConsumer", "Subscription",
    "UsageError", "connect",
]
