"""Where one transfer's latency goes: the spans of transfers made one at a time, as a timeline.

Starts a whole bank (as saga.py does) whose every component exports its spans over
OTLP/HTTP to a receiver this process runs, makes `--transfers` transfers one at a time,
each `POST /v1/transfers` with `Prefer: wait` (answered once the transfer completed), and
prints:

- the median transfer's trace as a tree, each span with its start (milliseconds after the
  request arrived) and its duration: where the time between the request and the answer
  goes, and what runs at once;
- over all transfers but the warm-up, the median duration of each span by component and
  name, with the share of the answer's time it spans.

    .venv/bin/python benchmarks/transfer_timeline.py                  # 30 transfers
    .venv/bin/python benchmarks/transfer_timeline.py --transfers 100

Spans come from five processes' clocks, one machine: offsets are comparable to a
fraction of a millisecond. Everything it starts is stopped at the end, also on error.
"""

import argparse
import asyncio
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import httpx
from saga import (
    PREFER_WAIT_SECONDS,
    Bank,
    Saga,
    payload_converter,
    running_bank,
    use_payload_keys,
)
from temporalio.client import Client

from kit.process import exit_without_finalising
from sagabank.localstack.otlp import ReceivedSpan, running_otlp_receiver

WARMUP_TRANSFERS = 5
ROOT_SPAN = "POST /v1/transfers"
# Spans arrive in batches after the answer: how long to wait for a trace to be whole.
EXPORT_WAIT_SECONDS = 15.0
# A trace is whole once its worker's RunWorkflow span and the root have arrived.
WHOLE_TRACE_SPANS = ("RunWorkflow:TransferWorkflow", ROOT_SPAN)


async def transfers_one_at_a_time(bank: Bank, count: int) -> list[str]:
    """Open the accounts, then make `count` transfers one after the other; their ids."""
    temporal = await Client.connect(bank.temporal_address, data_converter=payload_converter())
    async with httpx.AsyncClient(timeout=httpx.Timeout(PREFER_WAIT_SECONDS + 5.0)) as http:
        saga = Saga(bank, http, temporal)
        await saga.open_accounts(deposit_minor=10_000_000)
        for index in range(count):
            await saga.transfer_waited(index)
    return saga.transfer_ids


def traces_by_transfer(spans: list[ReceivedSpan]) -> dict[str, list[ReceivedSpan]]:
    """The spans of each trace whose root is a transfer's POST, by trace id."""
    by_trace: dict[str, list[ReceivedSpan]] = defaultdict(list)
    for span in spans:
        by_trace[span.trace_id].append(span)
    return {
        trace_id: trace
        for trace_id, trace in by_trace.items()
        if any(span.name == ROOT_SPAN and span.parent_span_id is None for span in trace)
    }


def root_of(trace: list[ReceivedSpan]) -> ReceivedSpan:
    return next(span for span in trace if span.name == ROOT_SPAN and span.parent_span_id is None)


def duration_ms(span: ReceivedSpan) -> float:
    return (span.end_unix_nano - span.start_unix_nano) / 1e6


def print_tree(trace: list[ReceivedSpan]) -> None:
    root = root_of(trace)
    children: dict[str | None, list[ReceivedSpan]] = defaultdict(list)
    for span in trace:
        children[span.parent_span_id].append(span)

    def show(span: ReceivedSpan, depth: int) -> None:
        offset_ms = (span.start_unix_nano - root.start_unix_nano) / 1e6
        service = span.service_name.removeprefix("sagabank-")
        print(f"{offset_ms:>8.1f} {duration_ms(span):>8.1f}  {'  ' * depth}{service}: {span.name}")
        for child in sorted(children[span.span_id], key=lambda s: s.start_unix_nano):
            show(child, depth + 1)

    print(f"{'start ms':>8} {'took ms':>8}  span (indented under its parent)")
    show(root, 0)


def print_medians(traces: list[list[ReceivedSpan]]) -> None:
    answers_ms = [duration_ms(root_of(trace)) for trace in traces]
    answer_ms = statistics.median(answers_ms)
    durations: dict[tuple[str, str], list[float]] = defaultdict(list)
    for trace in traces:
        for span in trace:
            service = span.service_name.removeprefix("sagabank-")
            durations[(service, span.name)].append(duration_ms(span))
    print(f"\nmedian of {len(traces)} transfers: the answer took {answer_ms:.1f} ms")
    print(f"{'component':<14} {'span':<52} {'per transfer':>12} {'median ms':>10} {'share':>6}")
    rows = sorted(durations.items(), key=lambda item: -statistics.median(item[1]))
    for (service, name), values in rows:
        median_ms = statistics.median(values)
        per_transfer = len(values) / len(traces)
        print(
            f"{service:<14} {name[:52]:<52} {per_transfer:>12.1f} {median_ms:>10.1f} "
            f"{median_ms / answer_ms:>6.0%}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--transfers", type=int, default=30, help="transfers after a warm-up")
    arguments = parser.parse_args()
    if not 1 <= arguments.transfers <= 1_000:
        parser.error("--transfers must be between 1 and 1000")
    use_payload_keys()
    with (
        tempfile.TemporaryDirectory(prefix="sagabank-timeline-") as state_dir,
        running_otlp_receiver() as receiver,
        running_bank(Path(state_dir), {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint}) as bank,
    ):
        transfer_ids = asyncio.run(
            transfers_one_at_a_time(bank, WARMUP_TRANSFERS + arguments.transfers)
        )
        deadline = time.monotonic() + EXPORT_WAIT_SECONDS
        while True:
            traces = traces_by_transfer(receiver.received())
            whole = [
                trace
                for trace in traces.values()
                if all(any(span.name == name for span in trace) for name in WHOLE_TRACE_SPANS)
            ]
            if len(whole) >= len(transfer_ids) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    ordered = sorted(whole, key=lambda trace: root_of(trace).start_unix_nano)
    measured = ordered[WARMUP_TRANSFERS:] or ordered
    if not measured:
        raise RuntimeError("no transfer's trace arrived whole")
    by_answer = sorted(measured, key=lambda trace: duration_ms(root_of(trace)))
    print_tree(by_answer[len(by_answer) // 2])
    print_medians(measured)
    return 0


if __name__ == "__main__":
    # The Temporal client's native threads can crash the interpreter's finalisation.
    exit_without_finalising(main)
