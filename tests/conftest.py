"""System-test fixtures: one whole bank, started by `sagabank up`, shared by the session."""

import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client

from tests.bank import Bank, start_bank

READY_TIMEOUT_SECONDS = 240.0


@pytest.fixture(scope="session")
def bank() -> Iterator[Bank]:
    with tempfile.TemporaryDirectory(prefix="sagabank-system-") as directory:
        running = start_bank(Path(directory) / "state")
        try:
            running.wait_until_ready(READY_TIMEOUT_SECONDS)
            yield running
        finally:
            running.stop()


@pytest.fixture
def short_tmp_path() -> Iterator[Path]:
    """A temporary directory with a short path, for a bank's state: PostgreSQL's socket path
    must fit in 107 bytes, which pytest-xdist's `tmp_path` (…/popen-gw0/<test name>0/) may
    not leave room for."""
    with tempfile.TemporaryDirectory(prefix="sagabank-") as directory:
        yield Path(directory)


@pytest.fixture(scope="session")
async def bank_temporal(bank: Bank) -> Client:
    return await Client.connect(bank.temporal_address, data_converter=bank.data_converter())


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=httpx.Timeout(10.0)) as client:
        yield client
