"""Every error a caller of the accounts service can cause, with its status and stable slug."""

from typing import ClassVar

from contracts.accounts import AccountsProblem
from contracts.problem import CommonProblem
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


class IdempotencyKeyMissing(ProblemError):
    status = 400
    slug = CommonProblem.idempotency_key_missing
    title = "Idempotency-Key header missing"


class InvalidCursor(ProblemError):
    status = 422
    slug = CommonProblem.invalid_cursor
    title = "Cursor is malformed"


class InvalidRequest(ProblemError):
    """Never raised here: kit answers a body or parameter that fails validation with this.
    Listed so that routes can declare it next to their own 422 problems in OpenAPI."""

    status = 422
    slug = CommonProblem.invalid_request
    title = "Invalid request"


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


# --- The token issuer: RFC 6749 section 5.2 codes, as problem+json with `error` ---------


class OAuthError(ProblemError):
    """An error of the token endpoint; `error` carries the RFC 6749 code."""

    error_code: ClassVar[str] = "invalid_request"

    def __init__(self, detail: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail, headers=headers, error=self.error_code)


class OAuthInvalidRequest(OAuthError):
    status = 400
    slug = AccountsProblem.oauth_invalid_request
    title = "Invalid token request"
    error_code = "invalid_request"


class OAuthInvalidClient(OAuthError):
    status = 401
    slug = AccountsProblem.oauth_invalid_client
    title = "Client authentication failed"
    error_code = "invalid_client"

    def __init__(self, detail: str) -> None:
        # RFC 6749 5.2: a 401 names the authentication scheme the client may use.
        super().__init__(detail, headers={"WWW-Authenticate": 'Basic realm="sagabank"'})


class OAuthInvalidGrant(OAuthError):
    status = 400
    slug = AccountsProblem.oauth_invalid_grant
    title = "Invalid grant"
    error_code = "invalid_grant"


class OAuthUnsupportedGrantType(OAuthError):
    status = 400
    slug = AccountsProblem.oauth_unsupported_grant_type
    title = "Unsupported grant type"
    error_code = "unsupported_grant_type"


class OAuthInvalidScope(OAuthError):
    status = 400
    slug = AccountsProblem.oauth_invalid_scope
    title = "Invalid scope"
    error_code = "invalid_scope"


class CustomerExists(ProblemError):
    status = 409
    slug = AccountsProblem.customer_exists
    title = "A customer with this email exists"


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
