"""The LISTEN connection behind every wait: woken by NOTIFY, safe without it."""

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from sagabank.localstack.postgres import free_port
from transactions.changes import (
    LISTENER_APPLICATION_NAME,
    TRANSFER_FINISHED_CHANNEL,
    ChangeListener,
)
from transactions.config import Settings
from transactions.tests.support import eventually


@pytest.fixture
async def listener(settings: Settings) -> AsyncIterator[ChangeListener]:
    # Re-reads far apart: a wait that ends early was woken by a notification.
    changes = ChangeListener(settings.asyncpg_dsn(), poll_interval_seconds=30)
    await changes.start()
    try:
        await _until_listening(changes)
        yield changes
    finally:
        await changes.stop()


async def _until_listening(changes: ChangeListener) -> None:
    await eventually(lambda: changes.listening, "the listener connects")


async def _notify(settings: Settings, channel: str, payload: str) -> None:
    engine = create_async_engine(settings.async_database_url())
    try:
        async with engine.begin() as connection:
            await connection.execute(
                text("SELECT pg_notify(:channel, :payload)"),
                {"channel": channel, "payload": payload},
            )
    finally:
        await engine.dispose()


class _Flag:
    """A condition another task makes true; `check` counts how often it was read."""

    def __init__(self) -> None:
        self.value: str | None = None
        self.checks = 0

    async def check(self) -> str | None:
        self.checks += 1
        return self.value


class TestChangeListener:
    async def test_a_notification_wakes_the_waiter(
        self, listener: ChangeListener, settings: Settings
    ) -> None:
        flag = _Flag()
        payload = str(uuid.uuid4())
        waiting = asyncio.create_task(
            listener.wait_for(
                flag.check, channel=TRANSFER_FINISHED_CHANNEL, payload=payload, timeout_seconds=25
            )
        )
        await eventually(
            lambda: listener.waiting(TRANSFER_FINISHED_CHANNEL, payload) > 0, "a waiter"
        )
        flag.value = "done"
        await _notify(settings, TRANSFER_FINISHED_CHANNEL, payload)
        assert await asyncio.wait_for(waiting, timeout=10) == "done"
        assert listener.waiting(TRANSFER_FINISHED_CHANNEL, payload) == 0

    async def test_other_payloads_do_not_wake_it(
        self, listener: ChangeListener, settings: Settings
    ) -> None:
        flag = _Flag()
        payload = str(uuid.uuid4())
        waiting = asyncio.create_task(
            listener.wait_for(
                flag.check, channel=TRANSFER_FINISHED_CHANNEL, payload=payload, timeout_seconds=1
            )
        )
        await eventually(
            lambda: listener.waiting(TRANSFER_FINISHED_CHANNEL, payload) > 0, "a waiter"
        )
        await _notify(settings, TRANSFER_FINISHED_CHANNEL, str(uuid.uuid4()))
        assert await waiting is None
        # Read at once, then only when the bound ran out.
        assert flag.checks == 2

    async def test_zero_timeout_checks_once(self, listener: ChangeListener) -> None:
        flag = _Flag()
        assert (
            await listener.wait_for(
                flag.check, channel=TRANSFER_FINISHED_CHANNEL, payload="x", timeout_seconds=0
            )
            is None
        )
        assert flag.checks == 1

    async def test_reconnects_after_losing_its_connection(
        self, listener: ChangeListener, settings: Settings
    ) -> None:
        engine = create_async_engine(settings.async_database_url())
        try:
            async with engine.begin() as connection:
                terminated = await connection.execute(
                    text(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                        " WHERE datname = current_database()"
                        " AND application_name = :listener"
                    ),
                    {"listener": LISTENER_APPLICATION_NAME},
                )
                assert terminated.scalar_one() == 1
        finally:
            await engine.dispose()
        await eventually(lambda: not listener.listening, "the lost connection is noticed")
        await _until_listening(listener)

        await self.test_a_notification_wakes_the_waiter(listener, settings)

    async def test_without_a_connection_waiters_poll(self) -> None:
        unreachable = f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere"
        changes = ChangeListener(unreachable, poll_interval_seconds=30)
        await changes.start()
        try:
            flag = _Flag()
            waiting = asyncio.create_task(
                changes.wait_for(
                    flag.check, channel=TRANSFER_FINISHED_CHANNEL, payload="p", timeout_seconds=25
                )
            )
            await eventually(lambda: flag.checks > 0, "a first check")
            flag.value = "seen"
            assert await asyncio.wait_for(waiting, timeout=10) == "seen"
            assert not changes.listening
        finally:
            await changes.stop()
