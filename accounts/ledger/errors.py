"""Every error a caller of the ledger can cause, with its status and stable slug."""

from contracts.accounts import AccountsProblem
from kit.errors import ProblemError


class AccountNotFound(ProblemError):
    """No account you may see has this id: it does not exist, or it is another customer's (answered
    alike)."""

    status = 404
    slug = AccountsProblem.account_not_found
    title = "Account not found"


class AccountNotActive(ProblemError):
    """An account of the transfer is frozen or closed (`account_status` says which), so it takes no
    new transfer: use another account, or have it unfrozen."""

    status = 409
    slug = AccountsProblem.account_not_active
    title = "Account is not active"


class CurrencyMismatch(ProblemError):
    """An account of the transfer holds another currency than the transfer's (`account_currency`
    names it): send the account's currency."""

    status = 422
    slug = AccountsProblem.currency_mismatch
    title = "Currency does not match the account"


class SameAccount(ProblemError):
    """The debit and the credit account are the same: a transfer moves money between two different
    accounts."""

    status = 422
    slug = AccountsProblem.same_account
    title = "Debit and credit account are the same"


class TransferLimitExceeded(ProblemError):
    """The amount is more than the source account may send in one transfer
    (`max_transfer_amount_minor`): send less, or in several transfers."""

    status = 422
    slug = AccountsProblem.transfer_limit_exceeded
    title = "Amount exceeds the account's transfer limit"


class InsufficientFunds(ProblemError):
    """The source account holds less than the transfer's amount plus its holds, overdraft included
    (`available_minor` says how much is available): pay money in or send less."""

    status = 409
    slug = AccountsProblem.insufficient_funds
    title = "Insufficient funds"


class AccountTotalsOverflow(ProblemError):
    """The transfer would take an account's debit or credit totals past what the ledger can record:
    nothing changed; the amount cannot be booked on this account."""

    status = 409
    slug = AccountsProblem.account_totals_overflow
    title = "The transfer would overflow an account's totals"


class InvalidLedgerTransfer(ProblemError):
    """A field is missing or does not belong to the transfer's kind (`field` names it): a hold or
    single-phase transfer names accounts, amount and currency; a post or void names only its
    `pending_id`."""

    status = 422
    slug = AccountsProblem.invalid_ledger_transfer
    title = "Ledger transfer has the wrong shape for its kind"


class LedgerTransferExists(ProblemError):
    """A ledger transfer with this id exists with another value in `field`: an id names one
    transfer, so a retry sends the same fields and a new transfer a new id."""

    status = 409
    slug = AccountsProblem.ledger_transfer_exists
    title = "Ledger transfer id already used with other fields"


class LedgerTransferNotFound(ProblemError):
    """No ledger transfer (nor a void recorded before its hold) has this id."""

    status = 404
    slug = AccountsProblem.ledger_transfer_not_found
    title = "Ledger transfer not found"


class PendingTransferNotFound(ProblemError):
    """The post or void names a pending transfer (`pending_id`) the ledger does not hold: check the
    id, or send the hold first."""

    status = 404
    slug = AccountsProblem.pending_transfer_not_found
    title = "Pending transfer not found"


class PendingTransferAlreadyPosted(ProblemError):
    """The pending transfer was already posted, so it can no longer be posted again or voided."""

    status = 409
    slug = AccountsProblem.pending_transfer_already_posted
    title = "Pending transfer already posted"


class PendingTransferAlreadyVoided(ProblemError):
    """The pending transfer was already voided (or its void came first), so it can no longer be
    posted or placed."""

    status = 409
    slug = AccountsProblem.pending_transfer_already_voided
    title = "Pending transfer already voided"


class PendingTransferExpired(ProblemError):
    """The pending transfer's timeout passed (`expires_at`): its expiry releases the hold, so it
    can no longer be posted or voided; place a new one."""

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
    """The post asks for more than the pending transfer holds (`pending_amount_minor`): post at most
    that amount."""

    status = 409
    slug = AccountsProblem.post_amount_exceeds_pending
    title = "Post amount exceeds the pending amount"


class DailyOutflowLimitExceeded(ProblemError):
    """The amount is more than the source account may still send today, holds included (the detail
    says how much): send less, or tomorrow."""

    status = 409
    slug = AccountsProblem.daily_outflow_limit_exceeded
    title = "Amount exceeds what the account may still send today"


class AccountClosed(ProblemError):
    """The account is closed: it takes no status change but closing again, and no new limits."""

    status = 409
    slug = AccountsProblem.account_closed
    title = "Account is closed"


class AccountNotEmpty(ProblemError):
    """The account still holds money or has open holds (`posted_minor`, `debits_pending_minor`,
    `credits_pending_minor`): move the money out and let its holds end before closing it."""

    status = 409
    slug = AccountsProblem.account_not_empty
    title = "Account still holds money or has open holds"


class SystemAccountImmutable(ProblemError):
    """The account is one of the bank's system accounts: it cannot be frozen, unfrozen or closed,
    and takes no limits."""

    status = 409
    slug = AccountsProblem.system_account_immutable
    title = "System accounts have no status changes and no limits"


class OverdraftNotAllowed(ProblemError):
    """An overdraft limit was given for an account whose debits may exceed its credits anyway: only
    a debits_must_not_exceed_credits account takes one."""

    status = 422
    slug = AccountsProblem.overdraft_not_allowed
    title = "Only an account whose debits must not exceed its credits has an overdraft"


class OverdraftInUse(ProblemError):
    """The account is already further below zero than the new overdraft limit allows
    (`overdraft_used_minor`, holds included): pay money in first, or keep a higher limit."""

    status = 409
    slug = AccountsProblem.overdraft_in_use
    title = "The account already uses more overdraft than the new limit"


class LinkedEventFailed(ProblemError):
    """Another event of this event's linked chain failed (`failed_event_index` names it), so none of
    the chain was applied: fix that event and send the chain again."""

    status = 424
    slug = AccountsProblem.linked_event_failed
    title = "Another event of the linked chain failed"


class LinkedEventChainOpen(ProblemError):
    """The batch's last event is linked to an event that is not in the batch: end each linked chain
    with an unlinked event."""

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
    """A customer's token opened the account with a `customer_id`: leave it out; the account belongs
    to the customer the token names."""

    status = 422
    slug = AccountsProblem.owner_set_by_token
    title = "A customer's accounts belong to the customer the token names"


class CustomerIdRequired(ProblemError):
    """An operator or service opened an account without a `customer_id`: name the registered
    customer who will own it."""

    status = 422
    slug = AccountsProblem.customer_id_required
    title = "Name the customer who will own the account"


class UnknownCustomer(ProblemError):
    """The `customer_id` names no registered customer: register the customer first, or check
    the id."""

    status = 422
    slug = AccountsProblem.unknown_customer
    title = "No registered customer has this id"
