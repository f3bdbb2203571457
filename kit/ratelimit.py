"""Per-principal rate limits: a moving window per (bucket, caller), 429 with `Retry-After`.

Counters live where `<PREFIX>_RATE_LIMIT_STORAGE_URI` says (the `limits` library's
storage): `memory://` keeps them in the process, so N replicas would allow N times the
limit; production points every replica at one Redis so that a limit is a limit.
"""

import math
import time
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from limits import RateLimitItem, parse
from limits.aio.storage import Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from kit.auth import Principal, authenticate
from kit.errors import TooManyRequests
from kit.metrics import RATE_LIMIT_REJECTIONS

# Requests that move money (transfers, deposits, withdrawals, ledger postings by customers).
MONEY_BUCKET = "money"
# The token endpoint, counted per client id or username and per address.
TOKEN_BUCKET = "token"  # noqa: S105 - a bucket name, not a secret


_ASYNC_SCHEME_PREFIX = "async+"


def rate_limit_storage(uri: str) -> Storage:
    """The asyncio storage a `limits` URI names (`memory://`, `redis://host:6379`, ...);
    ConfigurationError for an unknown scheme or a client library the image lacks."""
    # `limits` names its asyncio storages `async+<scheme>`; operators write the plain URI.
    if not uri.startswith(_ASYNC_SCHEME_PREFIX):
        uri = _ASYNC_SCHEME_PREFIX + uri
    storage = storage_from_string(uri)
    if not isinstance(storage, Storage):
        raise ValueError(f"{uri!r} names no asyncio storage")
    return storage


class RateLimiter:
    """Named buckets, each with its own rate such as "60/minute", counted in `storage`;
    each refusal counts in sagabank_rate_limit_rejections_total{service, limit=bucket}."""

    def __init__(self, rates: dict[str, str], storage: Storage, *, service: str) -> None:
        self._items: dict[str, RateLimitItem] = {name: parse(rate) for name, rate in rates.items()}
        self._limiter = MovingWindowRateLimiter(storage)
        self._service = service

    async def hit(self, bucket: str, key: str) -> None:
        """Count one request by `key` in `bucket`; TooManyRequests once over the rate."""
        item = self._items.get(bucket)
        if item is None:
            return
        if await self._limiter.hit(item, bucket, key):
            return
        stats = await self._limiter.get_window_stats(item, bucket, key)
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        RATE_LIMIT_REJECTIONS.labels(service=self._service, limit=bucket).inc()
        raise TooManyRequests(
            f"Too many requests; try again in {retry_after} s.", retry_after_seconds=retry_after
        )


def limiter_of(request: Request) -> RateLimiter:
    limiter: RateLimiter | None = getattr(request.app.state, "rate_limiter", None)
    assert limiter is not None, "create_service_app installs the rate limiter"
    return limiter


class RateLimited:
    """A dependency: the authenticated principal, counted against `bucket` (a class, so
    kit.openapi can tell which routes may answer 429)."""

    def __init__(self, bucket: str) -> None:
        self.bucket = bucket

    async def __call__(
        self, request: Request, principal: Annotated[Principal, Depends(authenticate)]
    ) -> Principal:
        await limiter_of(request).hit(self.bucket, f"{principal.kind.value}:{principal.subject}")
        return principal


def rate_limited(bucket: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the authenticated principal, counted against `bucket`."""
    return RateLimited(bucket)
