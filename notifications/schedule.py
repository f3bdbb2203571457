"""The retry rules of webhook delivery, pure: what an answer means and when to try again."""

import enum
import random
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Final

# Standard Webhooks' schedule: the delay before attempt n+1 of a round (the first is
# immediate). Ten attempts over about 3 days 8 hours, then the delivery has failed.
RETRY_DELAYS_SECONDS: Final[tuple[int, ...]] = (
    0,
    5,
    5 * 60,
    30 * 60,
    2 * 3600,
    5 * 3600,
    10 * 3600,
    14 * 3600,
    20 * 3600,
    24 * 3600,
)
ATTEMPTS_MAX: Final = len(RETRY_DELAYS_SECONDS)
# ±10 %: endpoints that failed together do not all come back at the same second.
JITTER_FRACTION: Final = 0.1
# A Retry-After beyond a day is read as a day: the schedule's own longest wait.
RETRY_AFTER_MAX_SECONDS: Final = 24 * 3600
_RETRY_AFTER_STATUSES: Final = frozenset({429, 503})
_RETRY_AFTER_LENGTH_MAX: Final = 64


class Verdict(enum.StrEnum):
    succeeded = "succeeded"
    retry = "retry"
    # 410 Gone: the receiver asks us to stop; the endpoint is disabled.
    gone = "gone"


def verdict(status_code: int | None) -> Verdict:
    """What an attempt's answer means; None is no answer (network error, timeout, refusal)."""
    if status_code is not None and 200 <= status_code < 300:
        return Verdict.succeeded
    if status_code == 410:
        return Verdict.gone
    # Redirects are failures too: they are never followed (a redirect could point inside).
    return Verdict.retry


def parse_retry_after(status_code: int | None, value: str | None, *, now: datetime) -> float | None:
    """Seconds the receiver asked us to wait (429/503 only), bounded; None if not asked."""
    if status_code not in _RETRY_AFTER_STATUSES or not value:
        return None
    value = value.strip()[:_RETRY_AFTER_LENGTH_MAX]
    if value.isdigit():
        seconds = float(int(value))
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            return None
        seconds = (when - now).total_seconds()
    return min(max(seconds, 0.0), float(RETRY_AFTER_MAX_SECONDS))


def next_delay_seconds(
    failed_in_round: int, *, retry_after_seconds: float | None, rng: random.Random
) -> float | None:
    """Seconds until the next attempt after the `failed_in_round`-th failure of a round,
    or None when the round is over and the delivery has failed."""
    assert failed_in_round >= 1, "called after a failed attempt"
    if failed_in_round >= ATTEMPTS_MAX:
        return None
    delay = RETRY_DELAYS_SECONDS[failed_in_round] * rng.uniform(
        1 - JITTER_FRACTION, 1 + JITTER_FRACTION
    )
    if retry_after_seconds is not None:
        # Honoured as a floor: never earlier than asked, never earlier than the schedule.
        delay = max(delay, retry_after_seconds)
    return delay
