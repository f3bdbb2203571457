"""The transfers' own metrics, counted by the front door that accepts and ends them."""

from prometheus_client import Counter, Histogram

# A transfer ends in a second; one under review waits for a person (hours).
TRANSFER_DURATION_BUCKETS_SECONDS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)

TRANSFERS_STARTED = Counter(
    "sagabank_transfers_started_total",
    "Transfers accepted and handed to the saga (an idempotent replay is not counted).",
    ["currency"],
)
TRANSFERS_ENDED = Counter(
    "sagabank_transfers_ended_total",
    "Transfers that reached a terminal status, by that status.",
    ["status"],
)
TRANSFER_DURATION = Histogram(
    "sagabank_transfer_duration_seconds",
    "From a transfer's acceptance to its terminal status, by that status.",
    ["status"],
    buckets=TRANSFER_DURATION_BUCKETS_SECONDS,
)


def count_ended(status: str, since_created_seconds: float) -> None:
    """One transfer reached `status`, this long after its creation."""
    TRANSFERS_ENDED.labels(status=status).inc()
    TRANSFER_DURATION.labels(status=status).observe(since_created_seconds)
