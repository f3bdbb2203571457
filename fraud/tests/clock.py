"""A clock the tests move by hand, so time-windowed rules need no sleeping."""

from datetime import datetime, timedelta


class SettableClock:
    """The scoring clock of a test: stands still until the test moves it."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta
