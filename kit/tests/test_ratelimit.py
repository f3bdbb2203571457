"""Per-principal rate limits: one caller's burst gets 429 with Retry-After; others carry on."""

import pytest

from kit.errors import TooManyRequests
from kit.ratelimit import RateLimiter


async def test_over_the_rate_answers_429_with_retry_after_per_key() -> None:
    limiter = RateLimiter({"money": "3/minute"})
    for _ in range(3):
        await limiter.hit("money", "customer:alice")
    with pytest.raises(TooManyRequests) as raised:
        await limiter.hit("money", "customer:alice")
    retry_after = int(raised.value.headers["Retry-After"])
    assert 1 <= retry_after <= 60
    # Another caller, and another bucket, are unaffected.
    await limiter.hit("money", "customer:bob")
    await limiter.hit("other", "customer:alice")
