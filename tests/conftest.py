"""System-test fixtures: one whole bank, started by `sagabank up`, shared by the session."""

import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext
from temporalio.client import Client

from sagabank.localstack.otlp import OtlpReceiver, running_otlp_receiver
from tests.bank import Bank, start_bank
from tests.browser import DESKTOP_VIEWPORT, PAGE_TIMEOUT_MILLISECONDS, running_chromium

READY_TIMEOUT_SECONDS = 240.0
# Spans leave each process this soon (the standard default is 5 s): tests wait less.
SPAN_EXPORT_DELAY_MILLISECONDS = 200


@pytest.fixture(scope="session")
def otlp_receiver() -> Iterator[OtlpReceiver]:
    """Where the session's bank exports its spans (OTLP/HTTP), kept for the tests to read."""
    with running_otlp_receiver() as receiver:
        yield receiver


@pytest.fixture(scope="session")
def bank(otlp_receiver: OtlpReceiver) -> Iterator[Bank]:
    """The whole bank, configured as production would be for tracing: every component
    exports its spans over OTLP (to the session's receiver)."""
    settings = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": str(SPAN_EXPORT_DELAY_MILLISECONDS),
        # Standing orders every few seconds (production: a day at least), so that a test
        # sees several occurrences (tests/test_standing_orders_system.py).
        "TRANSACTIONS_STANDING_ORDER_MIN_INTERVAL_SECONDS": "1",
    }
    with tempfile.TemporaryDirectory(prefix="sagabank-system-") as directory:
        running = start_bank(Path(directory) / "state", settings=settings)
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


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    """One headless chromium for the session's browser tests (tests/browser.py)."""
    async with running_chromium() as running:
        yield running


@pytest.fixture
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    """A fresh browser profile (no cookies) per test, at the size of a laptop screen."""
    fresh = await browser.new_context(viewport=DESKTOP_VIEWPORT)  # type: ignore[arg-type]
    fresh.set_default_timeout(PAGE_TIMEOUT_MILLISECONDS)
    try:
        yield fresh
    finally:
        await fresh.close()
