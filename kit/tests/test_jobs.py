"""Exclusive jobs: one replica at a time runs the rounds, another takes over when it goes.

Every test runs its jobs against a real PostgreSQL database of its own.
"""

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Protocol

import asyncpg
import pytest

from kit.jobs import ExclusiveJob, lock_key
from kit.settings import to_asyncpg_dsn

_WAIT_SECONDS_MAX = 10.0
_INTERVAL_SECONDS = 0.02
# Long enough that two overlapping rounds would both be seen inside one another.
_ROUND_SECONDS = 0.01
# How long a standby may take to lead once the leader is gone (measured: 10-40 ms).
_TAKEOVER_SECONDS_MAX = 5.0


class StartJob(Protocol):
    def __call__(
        self, run_once: Callable[[], Awaitable[object]], *, name: str = ..., **options: Any
    ) -> ExclusiveJob: ...


@pytest.fixture
def dsn(empty_database_url: str) -> str:
    return to_asyncpg_dsn(empty_database_url)


@pytest.fixture
async def start_job(dsn: str) -> AsyncIterator[StartJob]:
    """Start a job on the test's database (every 20 ms by default); all stop after the test."""
    started: list[ExclusiveJob] = []

    def start(
        run_once: Callable[[], Awaitable[object]], *, name: str = "test.job", **options: Any
    ) -> ExclusiveJob:
        options.setdefault("interval_seconds", _INTERVAL_SECONDS)
        options.setdefault("takeover_interval_seconds", _INTERVAL_SECONDS)
        job = ExclusiveJob(name=name, dsn=dsn, run_once=run_once, **options)
        job.start()
        started.append(job)
        return job

    yield start
    for job in started:
        await job.stop()


@asynccontextmanager
async def connection_to(dsn: str) -> AsyncIterator[Any]:
    connection = await asyncpg.connect(dsn, timeout=10)
    try:
        yield connection
    finally:
        await connection.close()


class Rounds:
    """The rounds of jobs sharing a name: who ran each, and whether two ever overlapped."""

    def __init__(self) -> None:
        self.entries_and_exits: list[tuple[str, str]] = []
        self.completed: Counter[str] = Counter()
        self.running = 0
        self.running_max = 0

    def of(self, label: str) -> Callable[[], Awaitable[None]]:
        async def run_once() -> None:
            self.running += 1
            self.running_max = max(self.running_max, self.running)
            self.entries_and_exits.append((label, "enter"))
            try:
                await asyncio.sleep(_ROUND_SECONDS)  # the round's work
            finally:
                self.running -= 1
                self.entries_and_exits.append((label, "exit"))
            self.completed[label] += 1

        return run_once

    def assert_never_overlapped(self) -> None:
        assert self.running_max == 1, f"{self.running_max} rounds ran at once"
        pairs = zip(self.entries_and_exits[::2], self.entries_and_exits[1::2], strict=False)
        for entry, exit_ in pairs:
            assert (entry[1], exit_[1], entry[0]) == ("enter", "exit", exit_[0]), (entry, exit_)


async def wait_until(
    condition: Callable[[], bool], *, failure: str, timeout_seconds: float = _WAIT_SECONDS_MAX
) -> float:
    """Wait (bounded) until `condition()` holds; the seconds it took."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout_seconds, failure
        await asyncio.sleep(0.005)
    return time.monotonic() - started


async def terminate_lock_holders(dsn: str) -> int:
    """pg_terminate_backend every session holding an advisory lock in this database."""
    async with connection_to(dsn) as connection:
        terminated: int = await connection.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_locks"
            " WHERE locktype = 'advisory' AND granted"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
        return terminated


async def job_sessions(dsn: str, job: ExclusiveJob) -> int:
    async with connection_to(dsn) as connection:
        count: int = await connection.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
            job.application_name,
        )
        return count


class TestOneLeader:
    async def test_exactly_one_leads_and_only_it_runs_rounds(self, start_job: StartJob) -> None:
        rounds = Rounds()
        first = start_job(rounds.of("first"))
        second = start_job(rounds.of("second"))

        deadline = time.monotonic() + _WAIT_SECONDS_MAX
        while rounds.completed.total() < 20:
            assert time.monotonic() < deadline, f"too few rounds: {rounds.completed}"
            leaders = [first.is_leader, second.is_leader].count(True)
            if rounds.entries_and_exits:
                assert leaders == 1, "a round ran, so exactly one job leads"
            else:
                assert leaders <= 1
            await asyncio.sleep(0.005)

        leader = "first" if first.is_leader else "second"
        await first.stop()
        await second.stop()
        assert set(rounds.completed) == {leader}, rounds.completed
        rounds.assert_never_overlapped()

    async def test_different_jobs_lead_at_once(self, start_job: StartJob) -> None:
        rounds = Rounds()
        jobs = [start_job(rounds.of(name), name=name) for name in ("test.one", "test.two")]
        await wait_until(
            lambda: all(job.is_leader for job in jobs) and len(rounds.completed) == 2,
            failure=f"not both lead: {rounds.completed}",
        )

    def test_lock_key_is_a_stable_bigint_per_name(self) -> None:
        # Replicas of different releases must compute the same key for a name.
        assert lock_key("accounts.hold_sweeper") == 2_567_675_272_624_094_006
        keys = {lock_key(f"job-{number}") for number in range(1000)}
        assert len(keys) == 1000
        assert all(-(2**63) <= key < 2**63 for key in keys)


class TestTakeover:
    async def test_standby_takes_over_when_the_leader_stops(self, start_job: StartJob) -> None:
        rounds = Rounds()
        jobs = {label: start_job(rounds.of(label)) for label in ("first", "second")}
        await wait_until(lambda: rounds.completed.total() > 0, failure="no job ever ran")
        leader_label = "first" if jobs["first"].is_leader else "second"
        standby_label = "second" if leader_label == "first" else "first"
        standby = jobs[standby_label]
        assert not standby.is_leader

        await jobs[leader_label].stop()
        rounds_of_leader = rounds.completed[leader_label]
        assert not jobs[leader_label].is_leader
        await wait_until(
            lambda: standby.is_leader and rounds.completed[standby_label] > 0,
            failure="the standby never took over",
            timeout_seconds=_TAKEOVER_SECONDS_MAX,
        )
        assert rounds.completed[leader_label] == rounds_of_leader, "a stopped job ran a round"
        await standby.stop()
        rounds.assert_never_overlapped()

    async def test_standby_takes_over_when_the_lock_connection_dies(
        self, start_job: StartJob, dsn: str
    ) -> None:
        rounds = Rounds()
        # After losing the lock the first job stands by for a minute: the standby takes over.
        first = start_job(rounds.of("first"), takeover_interval_seconds=60)
        await wait_until(lambda: first.is_leader, failure="the only job never led")
        second = start_job(rounds.of("second"))

        assert await terminate_lock_holders(dsn) == 1
        await wait_until(
            lambda: not first.is_leader, failure="the leader never noticed its lost connection"
        )
        await wait_until(
            lambda: second.is_leader and rounds.completed["second"] > 0,
            failure="the standby never took over",
            timeout_seconds=_TAKEOVER_SECONDS_MAX,
        )
        assert not first.is_leader

    async def test_a_leader_that_lost_its_connection_competes_again(
        self, start_job: StartJob, dsn: str
    ) -> None:
        rounds = Rounds()
        job = start_job(rounds.of("only"))
        await wait_until(lambda: rounds.completed["only"] > 0, failure="the job never ran")
        assert await terminate_lock_holders(dsn) == 1
        await wait_until(lambda: not job.is_leader, failure="the job never noticed")
        rounds_before = rounds.completed["only"]
        await wait_until(
            lambda: job.is_leader and rounds.completed["only"] > rounds_before,
            failure="the job never led again",
        )


class TestRounds:
    async def test_a_failing_round_is_retried(self, start_job: StartJob) -> None:
        calls: list[int] = []

        async def failing_twice() -> None:
            calls.append(len(calls))
            if len(calls) <= 2:
                raise RuntimeError("the database said no")

        job = start_job(failing_twice)
        await wait_until(lambda: len(calls) >= 4, failure="the job stopped after a failure")
        assert job.is_leader

    async def test_a_hung_round_is_cancelled(self, start_job: StartJob) -> None:
        calls: list[int] = []
        cancelled = asyncio.Event()

        async def hanging_once() -> None:
            calls.append(len(calls))
            if len(calls) == 1:
                try:
                    await asyncio.Event().wait()  # never set: the round hangs
                except asyncio.CancelledError:
                    cancelled.set()
                    raise

        start_job(hanging_once, round_timeout_seconds=0.2)
        await wait_until(lambda: len(calls) >= 2, failure="the job hung with its round")
        assert cancelled.is_set()

    async def test_first_round_waits_its_delay(self, start_job: StartJob) -> None:
        rounds = Rounds()
        started = time.monotonic()
        start_job(rounds.of("only"), first_round_delay_seconds=0.3, interval_seconds=10)
        await wait_until(lambda: bool(rounds.entries_and_exits), failure="the job never ran")
        assert time.monotonic() - started >= 0.3


class TestStop:
    async def test_prompt_mid_round_and_leaves_no_connection(
        self, start_job: StartJob, dsn: str
    ) -> None:
        entered = asyncio.Event()

        async def endless() -> None:
            entered.set()
            await asyncio.Event().wait()

        leader = start_job(endless)
        await asyncio.wait_for(entered.wait(), _WAIT_SECONDS_MAX)
        standby = start_job(endless)
        deadline = time.monotonic() + _WAIT_SECONDS_MAX
        while await job_sessions(dsn, standby) < 2:  # the leader's and the standby's
            assert time.monotonic() < deadline, "the standby never connected"
            await asyncio.sleep(0.01)

        started = time.monotonic()
        await leader.stop()
        await standby.stop()
        assert time.monotonic() - started < 1.0
        assert not leader.is_leader
        assert await job_sessions(dsn, leader) == 0
        async with connection_to(dsn) as connection:
            assert await connection.fetchval("SELECT pg_try_advisory_lock($1)", leader.lock_key)

    async def test_unreachable_database(self, start_job: StartJob) -> None:
        """A database that hangs up: the job keeps trying, never leads, stops at once."""
        attempts: list[int] = []

        async def hang_up(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            attempts.append(len(attempts))
            writer.close()

        server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            job = ExclusiveJob(
                name="test.job",
                dsn=f"postgresql://nobody@127.0.0.1:{port}/nothing",
                interval_seconds=_INTERVAL_SECONDS,
                run_once=Rounds().of("never"),
                connect_timeout_seconds=1,
            )
            job.start()
            try:
                await wait_until(lambda: len(attempts) >= 3, failure="the job gave up")
                assert not job.is_leader
            finally:
                started = time.monotonic()
                await job.stop()
                assert time.monotonic() - started < 1.0
        finally:
            server.close()
            await server.wait_closed()


@pytest.fixture(autouse=True)
async def _no_task_left() -> AsyncIterator[None]:
    yield
    # Each test stops its jobs: no task of a job may outlive its test.
    leftovers = [
        task
        for task in asyncio.all_tasks()
        if task.get_name().startswith("job:") and not task.done()
    ]
    assert not leftovers, leftovers
