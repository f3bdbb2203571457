"""Metrics on the whole bank: every metrics endpoint `sagabank status --json` names is
scraped and parsed as Prometheus text, and one transfer, with a webhook endpoint
registered for its payer, moves the transfer, saga step, ledger, fraud and webhook
metrics. Other system tests share the bank, so only increases are asserted (>=)."""

import asyncio
import json
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from notifications.tests.support import running_receiver, wait_until
from tests.bank import Bank
from tests.flows import TERMINAL, funded_pair, register_webhook, request_transfer, wait_for_status

pytestmark = pytest.mark.system

# (component, metric name, labels) -> value: one scrape of every metrics endpoint.
Samples = dict[tuple[str, str, frozenset[tuple[str, str]]], float]

SCRAPED_COMPONENTS = ("accounts", "transactions", "fraud", "notifications", "console", "worker")
# The steps a transfer that completes without review runs (workflows/activities.py).
COMPLETED_TRANSFER_STEPS = ("validate_transfer", "place_hold", "score_transfer", "post_hold")
METRICS_WAIT_SECONDS = 30.0
WEBHOOK_WAIT_SECONDS = 30.0


def _metrics_urls(bank: Bank) -> dict[str, str]:
    """Each component's metrics URL, as `sagabank status --json` reports it."""
    result = bank.sagabank("status", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    components = json.loads(result.stdout)["components"]
    urls = {item["name"]: item["metrics_url"] for item in components}
    assert urls["temporal"] is None  # Temporal's own metrics are not the bank's
    return {name: urls[name] for name in SCRAPED_COMPONENTS}


async def _scrape(http: httpx.AsyncClient, urls: dict[str, str]) -> Samples:
    samples: Samples = {}
    for component, url in urls.items():
        response = await http.get(url)
        assert response.status_code == 200, f"{component}: {response.status_code}"
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                key = (component, sample.name, frozenset(sample.labels.items()))
                samples[key] = sample.value
    return samples


def _total(samples: Samples, component: str, name: str, **labels: str) -> float:
    """The sum over the series of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(
        value
        for (owner, sample_name, sample_labels), value in samples.items()
        if owner == component and sample_name == name and wanted <= sample_labels
    )


def _increases(before: Samples, after: Samples) -> dict[str, float]:
    """What one completed transfer (and its delivered webhook) must have moved."""
    moved: dict[str, float] = {}

    def delta(component: str, name: str, **labels: str) -> float:
        return _total(after, component, name, **labels) - _total(before, component, name, **labels)

    moved["transfers started"] = delta("transactions", "sagabank_transfers_started_total")
    moved["transfers completed"] = delta(
        "transactions", "sagabank_transfers_ended_total", status="completed"
    )
    moved["transfer duration count"] = delta(
        "transactions", "sagabank_transfer_duration_seconds_count", status="completed"
    )
    for step in COMPLETED_TRANSFER_STEPS:
        moved[f"step {step}"] = delta(
            "worker", "sagabank_saga_step_duration_seconds_count", step=step, outcome="succeeded"
        )
    moved["webhook succeeded"] = delta(
        "notifications", "sagabank_webhook_delivery_attempts_total", outcome="succeeded"
    )
    moved["ledger postings"] = delta("accounts", "sagabank_ledger_postings_total", currency="EUR")
    moved["ledger holds"] = delta("accounts", "sagabank_ledger_holds_placed_total", currency="EUR")
    moved["fraud decisions"] = delta("fraud", "sagabank_fraud_decisions_total")
    return moved


async def test_one_transfer_moves_the_metrics_of_every_component(
    bank: Bank, http: httpx.AsyncClient
) -> None:
    urls = _metrics_urls(bank)
    payer, source, _payee, target = await funded_pair(http, bank, funded_minor=100_00)
    async with running_receiver() as receiver:
        await register_webhook(http, bank, payer, receiver.url())
        before = await _scrape(http, urls)
        transfer_id = await request_transfer(http, bank, payer, source, target, 25_50)
        transfer = await wait_for_status(http, bank, payer, transfer_id, TERMINAL)
        assert transfer["status"] == "completed", transfer
        await wait_until(
            lambda: any(transfer_id.encode() in request.body for request in receiver.requests),
            timeout_seconds=WEBHOOK_WAIT_SECONDS,
            what="the transfer's webhook",
        )

    # Counters move after their commit, a moment after the state a client sees: wait, bounded.
    after = before
    deadline = time.monotonic() + METRICS_WAIT_SECONDS
    while True:
        after = await _scrape(http, urls)
        moved = _increases(before, after)
        if all(value >= 1 for value in moved.values()) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert {name: value for name, value in moved.items() if value < 1} == {}, moved

    # The worker's one target carries the Temporal SDK's own metrics too.
    sdk_names = {
        name for owner, name, _ in after if owner == "worker" and name.startswith("temporal_")
    }
    assert sdk_names, "no temporal_* metric on the worker's endpoint"
    # Every service's shared metrics carry its name (one registry per process); the console
    # has answered the launcher's readiness probes.
    for service in ("accounts", "transactions", "fraud", "notifications", "console"):
        assert _total(
            after, service, "sagabank_http_request_duration_seconds_count", service=service
        )


def test_status_json_lists_every_component(bank: Bank) -> None:
    result = bank.sagabank("status", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    components = {item["name"]: item for item in json.loads(result.stdout)["components"]}
    assert set(components) == {
        "accounts", "transactions", "fraud", "notifications", "console",
        "worker", "temporal", "temporal-ui", "codec",
    }  # fmt: skip
    for service in ("accounts", "transactions", "fraud", "notifications", "console"):
        assert components[service]["url"] == bank.url(service)
        assert components[service]["ready"] is True
        assert components[service]["metrics_url"] == f"{bank.url(service)}/metrics"
    worker_port = bank.environment["SAGABANK_WORKER_METRICS_PORT"]
    assert components["worker"]["metrics_url"] == f"http://127.0.0.1:{worker_port}/metrics"
    assert components["temporal-ui"]["ready"] is True
    assert components["codec"]["ready"] is True
    assert components["temporal"]["url"] == bank.temporal_address
    for name in ("temporal", "temporal-ui", "codec"):
        assert components[name]["metrics_url"] is None
    # The human table gains the metrics column.
    table = bank.sagabank("status")
    assert table.returncode == 0, table.stdout + table.stderr
    assert f"{bank.url('fraud')}/metrics" in table.stdout
