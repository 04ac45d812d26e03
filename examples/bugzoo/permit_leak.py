"""Bug zoo: a channel send permit leaked on an error path (``greenrt.channel``).

A producer reserves channel capacity (``tx.reserve()``, a ``send_permit``
obligation), then encodes the item with the current schema version. A concurrent
reload bumps the version; encoding an item made under the old version raises
``StaleSchema``, and the error path logs and ``continue``s without ``permit.abort()``.
The permit is leaked: the capacity is lost until the producer ends, and the runtime
reports the leak with the ``reserve`` site. Caught by the ``obligation`` oracle.
"""

from __future__ import annotations

import greenrt
import greenrt.lab as lab


class StaleSchema(Exception):
    pass


def main() -> list:
    config = lab.shared({"schema": 1}, "config")
    tx, rx = greenrt.channel(2)
    errors = []

    def encode(item: tuple) -> bytes:
        version, payload = item
        if version != config["schema"]:
            raise StaleSchema(f"item made for schema {version}, current {config['schema']}")
        return payload.encode()

    def producer() -> None:
        with tx:
            for item in [(1, "a"), (1, "b"), (1, "c")]:
                permit = tx.reserve()
                try:
                    data = encode(item)
                except StaleSchema as e:
                    errors.append(str(e))
                    continue  # BUG: the permit is neither sent nor aborted
                permit.send(data)
                greenrt.checkpoint()  # fetch the next item

    def reloader() -> None:
        for _ in range(4):
            greenrt.checkpoint()
        config["schema"] = 2

    def consumer() -> list:
        return list(rx)

    with greenrt.region(name="pipeline") as r:
        r.spawn(producer, name="producer")
        r.spawn(reloader, name="reloader")
        c = r.spawn(consumer, name="consumer")
    return c.join()
