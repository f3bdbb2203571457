"""The ledger's metrics: money posted, holds placed and swept, the invariant check."""

from collections.abc import Iterable

from prometheus_client import Counter, Gauge

from accounts.ledger.rules import TransferRecord
from contracts.accounts import LedgerTransferKind

LEDGER_POSTINGS = Counter(
    "sagabank_ledger_postings_total",
    "Ledger transfers posted (money moved between accounts, a hold's posting included).",
    ["currency"],
)
LEDGER_HOLDS_PLACED = Counter(
    "sagabank_ledger_holds_placed_total",
    "Holds placed on an account's funds.",
    ["currency"],
)
LEDGER_HOLDS_EXPIRED = Counter(
    "sagabank_ledger_holds_expired_total",
    "Holds past their expiry released by the sweeper.",
)
LEDGER_OPEN_HOLDS = Gauge(
    "sagabank_ledger_open_holds",
    "Holds with a deadline neither posted, voided nor expired, as of the sweeper's last pass.",
)
LEDGER_OLDEST_OPEN_HOLD_AGE = Gauge(
    "sagabank_ledger_oldest_open_hold_age_seconds",
    "Age of the oldest open hold, as of the sweeper's last pass (0 when there is none).",
)
LEDGER_INVARIANTS_HOLD = Gauge(
    "sagabank_ledger_invariants_hold",
    "1 when the last ledger invariant check held (balances, journal chain), 0 when it failed.",
)
LEDGER_INVARIANT_CHECK_TIMESTAMP = Gauge(
    "sagabank_ledger_invariant_check_timestamp_seconds",
    "Unix time the last ledger invariant check finished.",
)


def count_created(transfers: Iterable[TransferRecord]) -> None:
    """Count transfers just committed (never a replay's): postings and holds placed."""
    for transfer in transfers:
        if transfer.kind in (LedgerTransferKind.single_phase, LedgerTransferKind.post_pending):
            LEDGER_POSTINGS.labels(currency=transfer.currency).inc()
        elif transfer.kind is LedgerTransferKind.pending:
            LEDGER_HOLDS_PLACED.labels(currency=transfer.currency).inc()
