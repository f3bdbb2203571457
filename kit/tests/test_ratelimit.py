"""Per-principal rate limits: one caller's burst gets 429 with Retry-After; others carry on."""

import pytest
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.errors import ConfigurationError

from kit.errors import TooManyRequests
from kit.ratelimit import RateLimiter, rate_limit_storage


async def test_over_the_rate_answers_429_with_retry_after_per_key() -> None:
    limiter = RateLimiter({"money": "3/minute"}, rate_limit_storage("memory://"), service="test")
    for _ in range(3):
        await limiter.hit("money", "customer:alice")
    with pytest.raises(TooManyRequests) as raised:
        await limiter.hit("money", "customer:alice")
    retry_after = int(raised.value.headers["Retry-After"])
    assert 1 <= retry_after <= 60
    # Another caller, and another bucket, are unaffected.
    await limiter.hit("money", "customer:bob")
    await limiter.hit("other", "customer:alice")


class TestStorage:
    def test_plain_uri_names_the_asyncio_storage(self) -> None:
        assert isinstance(rate_limit_storage("memory://"), MemoryStorage)
        assert isinstance(rate_limit_storage("async+memory://"), MemoryStorage)

    def test_unknown_scheme_fails_at_start(self) -> None:
        with pytest.raises(ConfigurationError):
            rate_limit_storage("carrier-pigeon://loft")

    def test_the_shared_production_storage_is_installed(self) -> None:
        # deploy/README.md points replicas at Redis: its client (coredis, the `async-redis`
        # extra of limits) must ship with the service, or `redis://` fails at start.
        # Building the storage opens no connection, so no Redis server is needed here.
        assert isinstance(rate_limit_storage("redis://127.0.0.1:6379"), RedisStorage)
