"""Kafka on the native wire protocol.

* :mod:`.codec` — primitives, schema-driven message bodies, headers, framing
  (sans-IO, bounded, total);
* :mod:`.records` — record batches v2 (CRC-32C, varint records, headers, gzip);
* :mod:`.group` — the consumer group's embedded protocol and the assignors (sans-IO);
* :mod:`.connection`, :mod:`.cluster` — one broker, the cluster view and leader routing;
* :mod:`.producer` — the idempotent producer;
* :mod:`.consumer` — assign or subscribe, fetch, commits, at-least-once batches;
* :mod:`.errors` — the error types, on the protocol floor.

See ``docs/kafka.md``.
"""
