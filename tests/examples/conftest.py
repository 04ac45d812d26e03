"""The tutorial's tests use the Redis suite's real redis-server fixtures."""

from ..protocols.redis.conftest import redis, redis_server  # noqa: F401 - fixtures
