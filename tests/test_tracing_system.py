"""One W3C trace per transfer: from `POST /v1/transfers` through the saga in Temporal, every
activity and every call into the services, on into the webhook delivery; exported by every
component over OTLP/HTTP to the session's receiver (tests/conftest.py)."""

import asyncio
import json
import time
from typing import Any

import httpx
import pytest

from notifications.tests.support import Receiver, running_receiver
from sagabank.localstack.otlp import OtlpReceiver, ReceivedSpan
from tests.bank import Bank
from tests.flows import funded_pair, register_webhook, request_transfer, wait_for_status

pytestmark = pytest.mark.system

SPANS_TIMEOUT_SECONDS = 30.0
COMPONENTS = {
    "sagabank-accounts",
    "sagabank-transactions",
    "sagabank-fraud",
    "sagabank-notifications",
    "sagabank-worker",
}
# The saga's steps of a completed transfer; validate and score run as local activities.
ACTIVITIES = {"validate_transfer", "place_hold", "score_transfer", "post_hold", "publish_event"}


async def _until(check: Any, what: str, timeout_seconds: float = SPANS_TIMEOUT_SECONDS) -> Any:
    """Poll `check` until it returns something truthy, at most `timeout_seconds`."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"{what}: not within {timeout_seconds} s"
        await asyncio.sleep(0.1)


def _trace_of_transfer(receiver: OtlpReceiver, transfer_id: str) -> str | None:
    for span in receiver.received():
        if span.attributes.get("temporalWorkflowID") == f"transfer-{transfer_id}":
            return span.trace_id
    return None


def _webhook_for(webhook: Receiver, transfer_id: str) -> Any:
    for request in webhook.requests:
        if json.loads(request.body)["data"]["transfer_id"] == transfer_id:
            return request
    return None


def _complete_trace(receiver: OtlpReceiver, trace_id: str) -> list[ReceivedSpan] | None:
    """The trace's spans once every component, activity and the delivery are in, and every
    parent too (a parent ends, hence is exported, after its children)."""
    spans = [span for span in receiver.received() if span.trace_id == trace_id]
    names = {span.name for span in spans}
    ids = {span.span_id for span in spans}
    complete = (
        {span.service_name for span in spans} >= COMPONENTS
        and {f"RunActivity:{name}" for name in ACTIVITIES} <= names
        and "webhook.deliver" in names
        and all(span.parent_span_id in ids for span in spans if span.parent_span_id)
    )
    return spans if complete else None


def _ancestors(span: ReceivedSpan, by_id: dict[str, ReceivedSpan]) -> list[ReceivedSpan]:
    chain: list[ReceivedSpan] = []
    parent = span.parent_span_id
    while parent is not None:
        assert parent in by_id, f"{span.name}'s ancestor {parent} is not in the trace"
        chain.append(by_id[parent])
        parent = by_id[parent].parent_span_id
    return chain


async def test_one_trace_from_the_rest_call_to_the_webhook(
    bank: Bank, otlp_receiver: OtlpReceiver, http: httpx.AsyncClient
) -> None:
    async with running_receiver() as webhook:
        payer, source, _payee, target = await funded_pair(http, bank, 10_000)
        await register_webhook(http, bank, payer, webhook.url())
        transfer_id = await request_transfer(http, bank, payer, source, target, 2_550)
        done = await wait_for_status(http, bank, payer, transfer_id, {"completed"})
        assert done["status"] == "completed", done
        delivered = await _until(lambda: _webhook_for(webhook, transfer_id), "the webhook")

    trace_id = await _until(lambda: _trace_of_transfer(otlp_receiver, transfer_id), "the trace")
    spans = await _until(
        lambda: _complete_trace(otlp_receiver, trace_id),
        "spans of every component, every activity and the delivery",
    )
    by_id = {span.span_id: span for span in spans}
    [root] = [span for span in spans if span.parent_span_id is None]
    assert root.name == "POST /v1/transfers"
    assert root.service_name == "sagabank-transactions"

    [start] = [span for span in spans if span.name.startswith("StartWorkflow:")]
    [run] = [span for span in spans if span.name.startswith("RunWorkflow:")]
    assert start.service_name == "sagabank-transactions"
    assert run.service_name == "sagabank-worker"
    assert root in _ancestors(run, by_id)
    # The interceptor's workflow spans are instants under the workflow's context (not
    # nested in RunWorkflow): each activity's run is the child of its scheduling.
    for name in ACTIVITIES:
        [*runs] = [span for span in spans if span.name == f"RunActivity:{name}"]
        assert runs, name
        for activity in runs:
            assert activity.service_name == "sagabank-worker"
            assert by_id[str(activity.parent_span_id)].name == f"StartActivity:{name}"
            assert root in _ancestors(activity, by_id), name
            # A timeline (benchmarks/transfer_timeline.py) reads the times: they are real.
            assert root.start_unix_nano <= activity.start_unix_nano <= activity.end_unix_nano
    assert root.start_unix_nano < root.end_unix_nano
    # Every server span but the root answers a call made inside the trace.
    for span in spans:
        assert root in _ancestors(span, by_id) or span is root, span

    [delivery, *redeliveries] = [span for span in spans if span.name == "webhook.deliver"]
    assert not redeliveries, "the endpoint answered 204 at once"
    assert delivery.service_name == "sagabank-notifications"
    _version, sent_trace_id, sent_parent_id, _flags = delivered.headers["traceparent"].split("-")
    assert sent_trace_id == trace_id
    assert sent_parent_id == delivery.span_id
