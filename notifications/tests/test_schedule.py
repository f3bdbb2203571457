"""The retry rules: the spec's schedule with jitter, Retry-After, what each answer means."""

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from notifications.schedule import (
    ATTEMPTS_MAX,
    RETRY_AFTER_MAX_SECONDS,
    RETRY_DELAYS_SECONDS,
    Verdict,
    next_delay_seconds,
    parse_retry_after,
    verdict,
)

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


class TestSchedule:
    def test_is_the_standard_webhooks_schedule(self) -> None:
        assert RETRY_DELAYS_SECONDS == (
            0,
            5,
            300,
            1800,
            7200,
            18000,
            36000,
            50400,
            72000,
            86400,
        )
        assert ATTEMPTS_MAX == 10

    @given(failed=st.integers(min_value=1, max_value=ATTEMPTS_MAX - 1), seed=st.integers())
    def test_jitter_stays_within_ten_percent(self, failed: int, seed: int) -> None:
        delay = next_delay_seconds(failed, retry_after_seconds=None, rng=random.Random(seed))
        assert delay is not None
        nominal = RETRY_DELAYS_SECONDS[failed]
        assert nominal * 0.9 <= delay <= nominal * 1.1

    def test_jitter_spreads_retries(self) -> None:
        rng = random.Random(1)
        delays = {next_delay_seconds(3, retry_after_seconds=None, rng=rng) for _ in range(20)}
        assert len(delays) > 10

    def test_the_tenth_failure_ends_the_round(self) -> None:
        assert next_delay_seconds(10, retry_after_seconds=None, rng=random.Random()) is None

    def test_retry_after_is_a_floor(self) -> None:
        rng = random.Random(1)
        assert next_delay_seconds(1, retry_after_seconds=120, rng=rng) == 120
        longer = next_delay_seconds(3, retry_after_seconds=1, rng=rng)
        assert longer is not None
        assert longer > 1000, "a short Retry-After never brings a retry before the schedule"


class TestRetryAfter:
    def test_seconds(self) -> None:
        assert parse_retry_after(429, "120", now=NOW) == 120
        assert parse_retry_after(503, " 7 ", now=NOW) == 7

    def test_http_date(self) -> None:
        later = format_datetime(NOW + timedelta(minutes=10), usegmt=True)
        assert parse_retry_after(503, later, now=NOW) == 600

    def test_date_in_the_past_is_now(self) -> None:
        earlier = format_datetime(NOW - timedelta(minutes=10), usegmt=True)
        assert parse_retry_after(429, earlier, now=NOW) == 0

    def test_capped_at_a_day(self) -> None:
        assert parse_retry_after(429, "99999999999", now=NOW) == RETRY_AFTER_MAX_SECONDS

    @pytest.mark.parametrize("value", ["soon", "-5", "1.5", "", None, "9" * 1000])
    def test_malformed_ignored_or_bounded(self, value: str | None) -> None:
        seconds = parse_retry_after(429, value, now=NOW)
        assert seconds is None or 0 <= seconds <= RETRY_AFTER_MAX_SECONDS

    @pytest.mark.parametrize("status_code", [500, 502, 200, 410, None])
    def test_only_on_429_and_503(self, status_code: int | None) -> None:
        assert parse_retry_after(status_code, "60", now=NOW) is None


class TestVerdict:
    @pytest.mark.parametrize("status_code", [200, 201, 202, 204, 299])
    def test_2xx_succeeds(self, status_code: int) -> None:
        assert verdict(status_code) is Verdict.succeeded

    def test_410_is_gone(self) -> None:
        assert verdict(410) is Verdict.gone

    @pytest.mark.parametrize("status_code", [None, 301, 302, 307, 308, 400, 404, 429, 500, 503])
    def test_anything_else_is_retried(self, status_code: int | None) -> None:
        assert verdict(status_code) is Verdict.retry
