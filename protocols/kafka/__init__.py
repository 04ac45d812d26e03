"""Kafka on the native wire protocol (work in progress: the codec layer).

* :mod:`.codec` — primitives, schema-driven message bodies, headers, framing
  (sans-IO, bounded, total);
* :mod:`.records` — record batches v2 (CRC-32C, varint records, headers, gzip);
* :mod:`.errors` — the error types, on the protocol floor.

The producer, consumer and group client come next (see ``docs/kafka.md``).
"""
