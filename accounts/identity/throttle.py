"""Failed password logins, counted per username and client address together.

Only failures count, so a customer who signs in often is never locked out, while a
guesser is stopped before the next guess is checked (not after: a 429 that answered only
wrong guesses would tell a right one apart). The pair is the key: failures from one
address lock out no other name, and a victim's name stays open from the victim's own
address. Counters live in the storage the kit's rate limits use (kit.ratelimit).
"""

import math
import time

from limits import parse
from limits.aio.storage import Storage
from limits.aio.strategies import MovingWindowRateLimiter

from kit.errors import TooManyRequests
from kit.metrics import RATE_LIMIT_REJECTIONS

_NAMESPACE = "login-failures"
# The throttle is the token issuer's, which only accounts runs.
_SERVICE = "accounts"
_LIMIT = "login"


class LoginThrottle:
    def __init__(self, rate: str, storage: Storage) -> None:
        self._item = parse(rate)
        self._limiter = MovingWindowRateLimiter(storage)

    async def check(self, *keys: str) -> None:
        """TooManyRequests if any key has used up its failures; counts nothing."""
        for key in keys:
            if not await self._limiter.test(self._item, _NAMESPACE, key):
                stats = await self._limiter.get_window_stats(self._item, _NAMESPACE, key)
                retry_after = max(1, math.ceil(stats.reset_time - time.time()))
                RATE_LIMIT_REJECTIONS.labels(service=_SERVICE, limit=_LIMIT).inc()
                raise TooManyRequests(
                    f"Too many failed sign-ins; try again in {retry_after} s.",
                    retry_after_seconds=retry_after,
                )

    async def failed(self, *keys: str) -> None:
        for key in keys:
            await self._limiter.hit(self._item, _NAMESPACE, key)
