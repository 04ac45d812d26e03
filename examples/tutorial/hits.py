"""The tutorial's service (docs/tutorial.md): a page-hit counter.

``POST /hit/<page>`` adds one to the page's counter in Redis and returns the new
count; ``GET /hits/<page>`` reads it. Every Redis call runs under a deadline, so a
slow or unreachable Redis turns into a quick ``503`` instead of a pile of stuck
requests.

    .venv/bin/python examples/tutorial/hits.py --port 8080 --redis-port 6379
    curl -X POST localhost:8080/hit/home      # -> 1
"""

from __future__ import annotations

import argparse

import greenrt
from greenrt.protocols import http
from greenrt.protocols.http import Response
from greenrt.protocols.redis import Redis, RedisError

#: how long one request may wait for Redis
REDIS_DEADLINE = 0.25


def make_handler(redis: Redis, *, deadline: float = REDIS_DEADLINE, naive: bool = False):
    """The HTTP handler. ``naive=True`` counts with GET then SET (a read-modify-write
    that loses updates under concurrency: the lab test finds it); the default uses
    Redis's atomic INCR."""

    def count(key: str) -> int:
        if naive:
            n = int(redis.get(key) or 0) + 1
            redis.set(key, n)
            return n
        return redis.incr(key)

    def handler(req):
        parts = req.path.strip("/").split("/")
        if len(parts) != 2 or parts[0] not in ("hit", "hits") or not parts[1]:
            return Response(404, body=b"not found\n")
        key = f"hits:{parts[1]}"
        try:
            with greenrt.fail_after(deadline):        # a deadline is a cancel scope
                if parts[0] == "hit" and req.method == "POST":
                    n = count(key)
                elif parts[0] == "hits" and req.method == "GET":
                    n = int(redis.get(key) or 0)
                else:
                    return Response(405, body=b"method not allowed\n")
        except greenrt.TooSlowError:
            return Response(503, body=b"redis is too slow\n")
        except RedisError as e:
            return Response(503, body=f"redis is unavailable ({type(e).__name__})\n".encode())
        return Response(200, [("content-type", "text/plain")], f"{n}\n")

    return handler


def main(port: int = 8080, redis_port: int = 6379, on_ready=None) -> None:
    with Redis(port=redis_port) as redis:
        http.serve(make_handler(redis), "127.0.0.1", port, on_ready=on_ready)


if __name__ == "__main__":  # pragma: no cover - the tests call main()
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--redis-port", type=int, default=6379)
    a = ap.parse_args()
    greenrt.run(main, a.port, a.redis_port)
