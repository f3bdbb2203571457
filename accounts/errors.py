"""Every error a caller of the accounts service can cause, with its status and stable slug."""

from kit.errors import ProblemError


class AccountNotFound(ProblemError):
    status = 404
    slug = "account-not-found"
    title = "Account not found"


class AccountNotActive(ProblemError):
    status = 409
    slug = "account-not-active"
    title = "Account is not active"


class CurrencyMismatch(ProblemError):
    status = 422
    slug = "currency-mismatch"
    title = "Currency does not match the account"


class SameAccount(ProblemError):
    status = 422
    slug = "same-account"
    title = "Debit and credit account are the same"


class TransferLimitExceeded(ProblemError):
    status = 422
    slug = "transfer-limit-exceeded"
    title = "Amount exceeds the account's transfer limit"


class InsufficientFunds(ProblemError):
    status = 409
    slug = "insufficient-funds"
    title = "Insufficient funds"


class AccountTotalsOverflow(ProblemError):
    status = 409
    slug = "account-totals-overflow"
    title = "The transfer would overflow an account's totals"


class InvalidLedgerTransfer(ProblemError):
    status = 422
    slug = "invalid-ledger-transfer"
    title = "Ledger transfer has the wrong shape for its kind"


class LedgerTransferExists(ProblemError):
    status = 409
    slug = "ledger-transfer-exists"
    title = "Ledger transfer id already used with other fields"


class LedgerTransferNotFound(ProblemError):
    status = 404
    slug = "ledger-transfer-not-found"
    title = "Ledger transfer not found"


class PendingTransferNotFound(ProblemError):
    status = 404
    slug = "pending-transfer-not-found"
    title = "Pending transfer not found"


class PendingTransferAlreadyPosted(ProblemError):
    status = 409
    slug = "pending-transfer-already-posted"
    title = "Pending transfer already posted"


class PendingTransferAlreadyVoided(ProblemError):
    status = 409
    slug = "pending-transfer-already-voided"
    title = "Pending transfer already voided"


class PendingTransferExpired(ProblemError):
    status = 409
    slug = "pending-transfer-expired"
    title = "Pending transfer expired"


class PostAmountExceedsPending(ProblemError):
    status = 409
    slug = "post-amount-exceeds-pending"
    title = "Post amount exceeds the pending amount"


class IdempotencyKeyMissing(ProblemError):
    status = 400
    slug = "idempotency-key-missing"
    title = "Idempotency-Key header missing"


class InvalidCursor(ProblemError):
    status = 422
    slug = "invalid-cursor"
    title = "Cursor is malformed"


class InvalidRequest(ProblemError):
    """Never raised here: kit answers a body or parameter that fails validation with this.
    Listed so that routes can declare it next to their own 422 problems in OpenAPI."""

    status = 422
    slug = "invalid-request"
    title = "Invalid request"
