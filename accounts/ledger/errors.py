"""Every error a caller of the ledger can cause, with its status and stable slug."""

from contracts.accounts import AccountsProblem
from kit.errors import ProblemError


class AccountNotFound(ProblemError):
    status = 404
    slug = AccountsProblem.account_not_found
    title = "Account not found"


class AccountNotActive(ProblemError):
    status = 409
    slug = AccountsProblem.account_not_active
    title = "Account is not active"


class CurrencyMismatch(ProblemError):
    status = 422
    slug = AccountsProblem.currency_mismatch
    title = "Currency does not match the account"


class SameAccount(ProblemError):
    status = 422
    slug = AccountsProblem.same_account
    title = "Debit and credit account are the same"


class TransferLimitExceeded(ProblemError):
    status = 422
    slug = AccountsProblem.transfer_limit_exceeded
    title = "Amount exceeds the account's transfer limit"


class InsufficientFunds(ProblemError):
    status = 409
    slug = AccountsProblem.insufficient_funds
    title = "Insufficient funds"


class AccountTotalsOverflow(ProblemError):
    status = 409
    slug = AccountsProblem.account_totals_overflow
    title = "The transfer would overflow an account's totals"


class InvalidLedgerTransfer(ProblemError):
    status = 422
    slug = AccountsProblem.invalid_ledger_transfer
    title = "Ledger transfer has the wrong shape for its kind"


class LedgerTransferExists(ProblemError):
    status = 409
    slug = AccountsProblem.ledger_transfer_exists
    title = "Ledger transfer id already used with other fields"


class LedgerTransferNotFound(ProblemError):
    status = 404
    slug = AccountsProblem.ledger_transfer_not_found
    title = "Ledger transfer not found"


class PendingTransferNotFound(ProblemError):
    status = 404
    slug = AccountsProblem.pending_transfer_not_found
    title = "Pending transfer not found"


class PendingTransferAlreadyPosted(ProblemError):
    status = 409
    slug = AccountsProblem.pending_transfer_already_posted
    title = "Pending transfer already posted"


class PendingTransferAlreadyVoided(ProblemError):
    status = 409
    slug = AccountsProblem.pending_transfer_already_voided
    title = "Pending transfer already voided"


class PendingTransferExpired(ProblemError):
    status = 409
    slug = AccountsProblem.pending_transfer_expired
    title = "Pending transfer expired"


class PendingTransferVoided(ProblemError):
    """A void of this id came first and left a tombstone: the pending transfer may not be
    created any more (its requester has already been told it failed)."""

    status = 409
    slug = AccountsProblem.pending_transfer_voided
    title = "Pending transfer voided before it was created"


class PostAmountExceedsPending(ProblemError):
    status = 409
    slug = AccountsProblem.post_amount_exceeds_pending
    title = "Post amount exceeds the pending amount"


class DailyOutflowLimitExceeded(ProblemError):
    status = 409
    slug = AccountsProblem.daily_outflow_limit_exceeded
    title = "Amount exceeds what the account may still send today"


class AccountClosed(ProblemError):
    status = 409
    slug = AccountsProblem.account_closed
    title = "Account is closed"


class AccountNotEmpty(ProblemError):
    status = 409
    slug = AccountsProblem.account_not_empty
    title = "Account still holds money or has open holds"


class SystemAccountImmutable(ProblemError):
    status = 409
    slug = AccountsProblem.system_account_immutable
    title = "System accounts have no status changes and no limits"


class OverdraftNotAllowed(ProblemError):
    status = 422
    slug = AccountsProblem.overdraft_not_allowed
    title = "Only an account whose debits must not exceed its credits has an overdraft"


class OverdraftInUse(ProblemError):
    status = 409
    slug = AccountsProblem.overdraft_in_use
    title = "The account already uses more overdraft than the new limit"


class LinkedEventFailed(ProblemError):
    status = 424
    slug = AccountsProblem.linked_event_failed
    title = "Another event of the linked chain failed"


class LinkedEventChainOpen(ProblemError):
    status = 422
    slug = AccountsProblem.linked_event_chain_open
    title = "The batch ends inside a linked chain"


class LedgerBusy(ProblemError):
    """The database kept aborting the transaction (deadlocks or serialization failures)
    after every bounded retry; the request changed nothing and may be sent again."""

    status = 503
    slug = AccountsProblem.ledger_busy
    title = "Ledger busy, try again"


class OwnerFromToken(ProblemError):
    status = 422
    slug = AccountsProblem.owner_set_by_token
    title = "A customer's accounts belong to the customer the token names"


class CustomerIdRequired(ProblemError):
    status = 422
    slug = AccountsProblem.customer_id_required
    title = "Name the customer who will own the account"


class UnknownCustomer(ProblemError):
    status = 422
    slug = AccountsProblem.unknown_customer
    title = "No registered customer has this id"
