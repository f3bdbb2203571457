"""The saga worker's metrics: each step (activity) attempt, its latency and its outcome.

The Temporal SDK's own metrics (temporal_*: task slots, poll latency, workflow completions)
are exported beside these on the worker's metrics port."""

from prometheus_client import Counter, Histogram

from kit.metrics import LATENCY_BUCKETS_SECONDS

SAGA_STEP_DURATION = Histogram(
    "sagabank_saga_step_duration_seconds",
    "Time one attempt of a saga step (an activity) took, by step and outcome.",
    ["step", "outcome"],
    buckets=LATENCY_BUCKETS_SECONDS,
)
ACTIVITY_ATTEMPTS = Counter(
    "sagabank_activity_attempts_total",
    "Activity attempts started, first tries and retries alike, by activity.",
    ["activity"],
)
ACTIVITY_RETRIES = Counter(
    "sagabank_activity_retries_total",
    "Activity attempts that were retries (attempt 2 or later), by activity.",
    ["activity"],
)
