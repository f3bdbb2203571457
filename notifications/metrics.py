"""Notifications' metrics: the outbox's backlog, webhook deliveries and emails."""

from prometheus_client import Counter, Gauge, Histogram

from kit.metrics import LATENCY_BUCKETS_SECONDS

OUTBOX_PENDING_EVENTS = Gauge(
    "sagabank_outbox_pending_events",
    "Outbox events not yet delivered to every destination, as of the dispatcher's last pass.",
)
OUTBOX_OLDEST_PENDING_AGE = Gauge(
    "sagabank_outbox_oldest_pending_age_seconds",
    "Age of the oldest undelivered outbox event, as of the dispatcher's last pass (0 if none).",
)
WEBHOOK_DELIVERY_ATTEMPTS = Counter(
    "sagabank_webhook_delivery_attempts_total",
    "Webhook delivery attempts recorded, by outcome: succeeded (2xx), failed (to be retried "
    "or the schedule used up), gone (410, the endpoint disabled), abandoned (its lease "
    "expired before it recorded a result).",
    ["outcome"],
)
WEBHOOK_DELIVERY_DURATION = Histogram(
    "sagabank_webhook_delivery_duration_seconds",
    "Time a webhook delivery attempt took, until the endpoint answered or the attempt failed.",
    buckets=LATENCY_BUCKETS_SECONDS,
)
EMAILS = Counter(
    "sagabank_emails_total",
    "Emails handed to the mail server, by outcome (sent, failed).",
    ["outcome"],
)
