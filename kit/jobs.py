"""Periodic jobs that run in one replica at a time, elected by a PostgreSQL advisory lock.

Every replica starts the same `ExclusiveJob`. The one whose dedicated connection holds the
session-level advisory lock derived from the job's name runs the rounds; the others stand
by and try to take the lock, so one of them takes over when the leader stops, crashes or
loses its connection. `pg_locks` joined with `pg_stat_activity` (application name
`job:<name>`) shows which replica leads.

The lock is for efficiency and observability, not correctness: every job run here must be
idempotent. A leader cut off by the network keeps working until its next check fails,
while PostgreSQL may already have ended its session and handed the lock to a standby; the
two overlap briefly, and that must be harmless.

Advisory locks are per database, and each service has its own: a job's name must be unique
within its service. Renaming a job renames its lock, so during a rolling deploy the old
name and the new one would both lead for a while.
"""

import asyncio
import contextlib
import hashlib
from collections.abc import Awaitable, Callable
from typing import Any, Final

import asyncpg
import structlog

log = structlog.get_logger()

CONNECT_TIMEOUT_SECONDS_DEFAULT: Final = 5.0
# A round that outlives this is cancelled and counts as failed; the next interval retries.
ROUND_TIMEOUT_SECONDS_DEFAULT: Final = 600.0
# A standby of a job with a long interval still takes over within this.
TAKEOVER_INTERVAL_SECONDS_MAX: Final = 10.0
# The lock attempt and the leader's liveness check on the lock connection.
_STATEMENT_TIMEOUT_SECONDS: Final = 5.0
_CLOSE_TIMEOUT_SECONDS: Final = 5.0
_STOP_TIMEOUT_SECONDS: Final = 10.0
# PostgreSQL keeps a vanished client's session, and so its lock, until TCP notices; with
# the kernel's keepalive defaults that is two hours without a leader. These make the
# server probe an idle lock connection after 10 s and drop it after 3 unanswered probes.
_KEEPALIVE_SERVER_SETTINGS: Final = {
    "tcp_keepalives_idle": "10",
    "tcp_keepalives_interval": "5",
    "tcp_keepalives_count": "3",
}
# application_name is cut at 63 bytes; the prefix "job:" takes 4 of them.
_NAME_LENGTH_MAX: Final = 59

# An asyncpg connection (asyncpg ships no type information).
Connection = Any


def lock_key(name: str) -> int:
    """The advisory lock key of the job `name`: sha256's first 8 bytes as a signed bigint.

    Stable across releases and processes (unlike `hash()`): replicas of different versions
    must compete for the same lock.
    """
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class ExclusiveJob:
    """A periodic job that runs in exactly one replica at a time: the one holding the
    PostgreSQL advisory lock derived from the job's name; the others stand by and take over.

    The leader awaits `run_once()` every `interval_seconds`, the first time
    `first_round_delay_seconds` after it takes the lock. A round that raises is logged and
    retried at the next interval. Standbys try for the lock every
    `takeover_interval_seconds` (default: the interval, at most 10 s).
    """

    def __init__(
        self,
        *,
        name: str,
        dsn: str,
        interval_seconds: float,
        run_once: Callable[[], Awaitable[object]],
        first_round_delay_seconds: float = 0.0,
        takeover_interval_seconds: float | None = None,
        round_timeout_seconds: float = ROUND_TIMEOUT_SECONDS_DEFAULT,
        connect_timeout_seconds: float = CONNECT_TIMEOUT_SECONDS_DEFAULT,
    ) -> None:
        assert name, "a job needs a name: it names its lock"
        assert len(name.encode()) <= _NAME_LENGTH_MAX, f"job name too long: {name}"
        assert interval_seconds > 0, "a job that never sleeps would starve its service"
        assert first_round_delay_seconds >= 0
        assert round_timeout_seconds > 0
        assert connect_timeout_seconds > 0
        if takeover_interval_seconds is None:
            takeover_interval_seconds = min(interval_seconds, TAKEOVER_INTERVAL_SECONDS_MAX)
        assert takeover_interval_seconds > 0
        self.name = name
        self.lock_key = lock_key(name)
        self.application_name = f"job:{name}"
        self._dsn = dsn
        self._interval_seconds = interval_seconds
        self._run_once = run_once
        self._first_round_delay_seconds = first_round_delay_seconds
        self._takeover_interval_seconds = takeover_interval_seconds
        self._round_timeout_seconds = round_timeout_seconds
        self._connect_timeout_seconds = connect_timeout_seconds
        self._task: asyncio.Task[None] | None = None
        self._connection: Connection = None
        # Set when the current lock connection closes (replaced with each connection).
        self._connection_closed = asyncio.Event()
        self._is_leader = False

    @property
    def is_leader(self) -> bool:
        """Whether this replica holds the lock (and so runs the rounds) right now."""
        return self._is_leader

    def start(self) -> None:
        """Start competing for the lock in a task of the running event loop."""
        assert self._task is None, "start once"
        self._task = asyncio.create_task(self._run(), name=self.application_name)

    async def stop(self) -> None:
        """Cancel the task (and a round in progress); its connection closes, which releases
        the lock. Returns within about 15 s whatever the database does."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=_STOP_TIMEOUT_SECONDS)
        if not done:
            log.error("job.stop_timed_out", job=self.name)
        await self._disconnect()
        log.info("job.stopped", job=self.name)

    async def _run(self) -> None:
        try:
            while True:  # until stop() cancels it; each pass is one try for the lock
                connection_closed = await self._try_lock()
                if connection_closed is not None:
                    await self._lead(connection_closed)
                await asyncio.sleep(self._takeover_interval_seconds)
        finally:
            self._is_leader = False
            await self._disconnect()

    async def _try_lock(self) -> asyncio.Event | None:
        """Take the lock on this job's connection, opening one if needed. When taken, an
        event set if that connection closes; None if another replica holds the lock or the
        database did not answer."""
        try:
            if self._connection is None:
                await self._connect()
            acquired = await self._connection.fetchval(
                "SELECT pg_try_advisory_lock($1)", self.lock_key, timeout=_STATEMENT_TIMEOUT_SECONDS
            )
        except Exception as error:  # a standby must outlive any database outage
            log.warning("job.lock_attempt_failed", job=self.name, error=type(error).__name__)
            await self._disconnect()
            return None
        if not acquired:
            return None
        return self._connection_closed

    async def _connect(self) -> None:
        self._connection = await asyncpg.connect(
            self._dsn,
            timeout=self._connect_timeout_seconds,
            command_timeout=_STATEMENT_TIMEOUT_SECONDS,
            server_settings={
                "application_name": self.application_name,
                **_KEEPALIVE_SERVER_SETTINGS,
            },
        )
        closed = asyncio.Event()
        self._connection.add_termination_listener(lambda _connection: closed.set())
        self._connection_closed = closed

    async def _disconnect(self) -> None:
        """Close the lock connection: ending the session releases its advisory locks."""
        connection, self._connection = self._connection, None
        if connection is None:
            return
        with contextlib.suppress(Exception):
            try:
                await asyncio.wait_for(connection.close(), _CLOSE_TIMEOUT_SECONDS)
            finally:
                if not connection.is_closed():
                    connection.terminate()

    async def _lead(self, connection_closed: asyncio.Event) -> None:
        """Run rounds while the lock connection lives; return once leadership is lost."""
        self._is_leader = True
        log.info("job.leader_acquired", job=self.name, lock_key=self.lock_key)
        try:
            delay_seconds = self._first_round_delay_seconds
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(connection_closed.wait(), delay_seconds)
                if connection_closed.is_set():
                    reason = "connection_closed"
                    break
                if not await self._lock_connection_alive():
                    reason = "check_failed"
                    break
                if not await self._run_round(connection_closed):
                    reason = "connection_closed_during_round"
                    break
                delay_seconds = self._interval_seconds
        finally:
            self._is_leader = False
        log.warning("job.leader_lost", job=self.name, reason=reason)
        await self._disconnect()

    async def _lock_connection_alive(self) -> bool:
        try:
            await self._connection.fetchval("SELECT 1", timeout=_STATEMENT_TIMEOUT_SECONDS)
        except Exception as error:
            log.warning("job.check_failed", job=self.name, error=type(error).__name__)
            return False
        return True

    async def _run_round(self, connection_closed: asyncio.Event) -> bool:
        """One round, cancelled if the lock connection closes meanwhile (leadership is
        gone: stop working at once) or when it outlives its timeout. False if cancelled for
        the connection."""
        round_task = asyncio.create_task(self._round(), name=f"{self.application_name}:round")
        closed_task = asyncio.create_task(connection_closed.wait())
        try:
            await asyncio.wait(
                {round_task, closed_task},
                timeout=self._round_timeout_seconds,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            await _cancel(round_task, closed_task)
        if round_task.cancelled():
            if connection_closed.is_set():
                return False
            log.error("job.round_failed", job=self.name, error="TimeoutError")
            return True
        error = round_task.exception()
        if error is not None:
            log.error("job.round_failed", job=self.name, error=type(error).__name__, exc_info=error)
        return True

    async def _round(self) -> None:
        await self._run_once()


async def _cancel(*tasks: "asyncio.Task[Any]") -> None:
    """Cancel the tasks still running and wait (bounded) until they have finished."""
    for task in tasks:
        task.cancel()
    await asyncio.wait(tasks, timeout=_STOP_TIMEOUT_SECONDS)
