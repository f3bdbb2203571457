"""The metrics every service process exports to Prometheus, whatever its domain.

Names follow Prometheus' conventions: the `sagabank_` prefix, the base unit in the name
(`_seconds`, `_connections`), counters ending in `_total`. The `service` label names the
process's service, because tests run several services in one interpreter (one registry).
The domain metrics live beside their code: accounts/ledger/metrics.py, transactions/
metrics.py, fraud/metrics.py, notifications/metrics.py, workflows/metrics.py.
"""

from prometheus_client import Counter, Gauge, Histogram

# From a local call (5 ms) to a slow saga step behind retries (30 s).
LATENCY_BUCKETS_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

HTTP_REQUEST_DURATION = Histogram(
    "sagabank_http_request_duration_seconds",
    "Time to answer an HTTP request, by route template (not the raw path), method and status.",
    ["service", "route", "method", "status"],
    buckets=LATENCY_BUCKETS_SECONDS,
)
DATABASE_POOL_IN_USE = Gauge(
    "sagabank_db_pool_in_use_connections",
    "Connections checked out of the service's database pools (the sum of its pools: "
    "accounts counts its ledger's asyncpg pool beside the SQLAlchemy one).",
    ["service"],
)
DATABASE_POOL_SIZE = Gauge(
    "sagabank_db_pool_size_connections",
    "Connections the service's database pools may hold at most (size plus overflow), summed "
    "over its pools.",
    ["service"],
)
AUDIT_APPEND_DURATION = Histogram(
    "sagabank_audit_append_duration_seconds",
    "Time to append one event to the service's audit chain, waiting for the chain lock included.",
    ["service"],
    buckets=LATENCY_BUCKETS_SECONDS,
)
RATE_LIMIT_REJECTIONS = Counter(
    "sagabank_rate_limit_rejections_total",
    "Requests refused with 429, by limit: a rate bucket (money, token) or the login throttle.",
    ["service", "limit"],
)
