"""Wake-ups from PostgreSQL: one LISTEN connection per process, shared by every waiter.

A request that waits (`Prefer: wait`, a duplicate Idempotency-Key) subscribes to a
(channel, payload) pair and re-reads the database when woken. The writers NOTIFY inside
the transaction that makes the change, so the notification fires only on commit. A
notification is a hint, never the answer: waiters also re-read on a short interval, and
faster while the listener is disconnected, so a lost notification costs latency only.
"""

import asyncio
import contextlib
import hashlib
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Final, TypeVar

import asyncpg
import structlog

log = structlog.get_logger()

# Channels the repository NOTIFYs on; the payload names what changed.
TRANSFER_FINISHED_CHANNEL: Final = "sagabank_transfer_finished"
IDEMPOTENCY_KEY_SETTLED_CHANNEL: Final = "sagabank_idempotency_key_settled"
CHANNELS: Final = (TRANSFER_FINISHED_CHANNEL, IDEMPOTENCY_KEY_SETTLED_CHANNEL)
# Names the connection in pg_stat_activity.
LISTENER_APPLICATION_NAME: Final = "transactions-listener"

_CONNECT_TIMEOUT_SECONDS: Final = 5.0
_KEEPALIVE_SECONDS: Final = 30.0
_RECONNECT_DELAY_MIN_SECONDS: Final = 0.5
_RECONNECT_DELAY_MAX_SECONDS: Final = 10.0
# While nobody listens, waiters re-read at least this often.
_UNLISTENED_POLL_SECONDS: Final = 0.1

ResultT = TypeVar("ResultT")


def _setter(event: asyncio.Event) -> Callable[[Any], None]:
    return lambda _connection: event.set()


def idempotency_key_payload(caller: str, key: str) -> str:
    """The NOTIFY payload naming one caller's key: short, fixed-length, any key spelling."""
    return hashlib.sha256(f"{caller}\x00{key}".encode()).hexdigest()[:32]


class ChangeListener:
    """Keeps one LISTEN connection open (reconnecting with backoff) and wakes subscribers."""

    def __init__(self, dsn: str, *, poll_interval_seconds: float) -> None:
        assert poll_interval_seconds > 0
        self._dsn = dsn
        self._poll_interval_seconds = poll_interval_seconds
        self._waiters: dict[tuple[str, str], set[asyncio.Event]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None
        self.listening = False

    async def start(self) -> None:
        assert self._task is None, "start once"
        self._task = asyncio.create_task(self._run(), name="change-listener")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    @contextlib.contextmanager
    def subscribe(self, channel: str, payload: str) -> Iterator[asyncio.Event]:
        """An event set whenever `payload` is notified on `channel` (and on reconnects)."""
        assert channel in CHANNELS, f"unknown channel {channel}"
        event = asyncio.Event()
        waiters = self._waiters[(channel, payload)]
        waiters.add(event)
        try:
            yield event
        finally:
            waiters.discard(event)
            if not waiters:
                self._waiters.pop((channel, payload), None)

    def waiting(self, channel: str, payload: str) -> int:
        """How many subscribers wait on (channel, payload) right now."""
        return len(self._waiters.get((channel, payload), ()))

    async def wait_for(
        self,
        check: Callable[[], Awaitable[ResultT | None]],
        *,
        channel: str,
        payload: str,
        timeout_seconds: float,
    ) -> ResultT | None:
        """Run `check` until it returns a value or `timeout_seconds` pass (then None).

        `check` runs first at once, then on each notification and each poll interval.
        """
        assert timeout_seconds >= 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_seconds
        with self.subscribe(channel, payload) as event:
            while True:
                # Cleared before the read: a commit that lands during it still wakes us.
                event.clear()
                result = await check()
                if result is not None:
                    return result
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return None
                interval = (
                    self._poll_interval_seconds
                    if self.listening
                    else min(self._poll_interval_seconds, _UNLISTENED_POLL_SECONDS)
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), timeout=min(remaining, interval))

    def _notify(self, _connection: Any, _pid: int, channel: str, payload: str) -> None:
        for event in self._waiters.get((channel, payload), ()):
            event.set()

    def _wake_everyone(self) -> None:
        for waiters in self._waiters.values():
            for event in waiters:
                event.set()

    async def _run(self) -> None:
        delay_seconds = _RECONNECT_DELAY_MIN_SECONDS
        while True:  # until stop() cancels it; each pass is one connection
            connection: Any = None
            try:
                connection = await asyncpg.connect(
                    self._dsn,
                    timeout=_CONNECT_TIMEOUT_SECONDS,
                    server_settings={"application_name": LISTENER_APPLICATION_NAME},
                )
                closed = asyncio.Event()
                connection.add_termination_listener(_setter(closed))
                for channel in CHANNELS:
                    await connection.add_listener(channel, self._notify)
                self.listening = True
                delay_seconds = _RECONNECT_DELAY_MIN_SECONDS
                log.info("changes.listening", channels=list(CHANNELS))
                # Whatever was notified while we were away is lost: everyone re-reads.
                self._wake_everyone()
                while not closed.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(closed.wait(), timeout=_KEEPALIVE_SECONDS)
                    if not closed.is_set():
                        # A half-open connection would otherwise go unnoticed forever.
                        await connection.fetchval("SELECT 1", timeout=_CONNECT_TIMEOUT_SECONDS)
                log.warning("changes.connection_lost")
            except Exception as error:
                # Whatever went wrong, waiters keep polling and we try again shortly.
                log.warning("changes.listen_failed", error=f"{type(error).__name__}: {error}"[:500])
            finally:
                self.listening = False
                if connection is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(connection.close(), timeout=_CONNECT_TIMEOUT_SECONDS)
            await asyncio.sleep(delay_seconds)
            delay_seconds = min(delay_seconds * 2, _RECONNECT_DELAY_MAX_SECONDS)
