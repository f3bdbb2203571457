from kit.errors import ProblemError


class IdempotencyKeyMissing(ProblemError):
    status = 400
    slug = "idempotency-key-missing"
    title = "The Idempotency-Key header is required"


class IdempotencyKeyReused(ProblemError):
    status = 422
    slug = "idempotency-key-reused"
    title = "Idempotency key already used for a different request"


class IdempotencyKeyInFlight(ProblemError):
    status = 409
    slug = "idempotency-key-in-flight"
    title = "A request with this idempotency key is still being processed"


class SameAccount(ProblemError):
    status = 422
    slug = "same-account"
    title = "Source and target account are the same"


class InvalidCursor(ProblemError):
    status = 422
    slug = "invalid-cursor"
    title = "The pagination cursor is malformed"


class TransferNotFound(ProblemError):
    status = 404
    slug = "transfer-not-found"
    title = "Transfer not found"


class TransferNotCancellable(ProblemError):
    status = 409
    slug = "transfer-not-cancellable"
    title = "The transfer can no longer be cancelled"


class TransferNotInReview(ProblemError):
    status = 409
    slug = "transfer-not-in-review"
    title = "The transfer is not waiting for a review"


class WorkflowServiceUnavailable(ProblemError):
    status = 503
    slug = "workflow-service-unavailable"
    title = "The workflow service is unavailable"


class PreferWaitInvalid(ProblemError):
    status = 422
    slug = "invalid-prefer-wait"
    title = "The wait preference is malformed or too long"


class InvalidBatchItem(ProblemError):
    """One item of a batch failed validation: the same answer a single POST would get."""

    status = 422
    slug = "invalid-request"
    title = "Invalid request"


class BatchItemFailed(ProblemError):
    """An unexpected failure of one batch item; the other items are still answered."""

    status = 500
    slug = "internal-error"
    title = "Internal server error"


class CallbackSignatureInvalid(ProblemError):
    status = 401
    slug = "callback-signature-invalid"
    title = "The callback is not signed by a registered client"


class CallbackTimestampInvalid(ProblemError):
    status = 401
    slug = "callback-timestamp-invalid"
    title = "The callback's timestamp is missing, malformed or more than 5 minutes off"


class InvalidCallback(ProblemError):
    """A correctly signed callback whose body is not a confirmation."""

    status = 422
    slug = "invalid-request"
    title = "Invalid request"


class CallbackClientExists(ProblemError):
    status = 409
    slug = "callback-client-exists"
    title = "A callback client with this name is already registered"


class CallbacksNotConfigured(ProblemError):
    status = 503
    slug = "callbacks-not-configured"
    title = "Callbacks are not configured on this service (no secrets key)"


class AccountNotFound(ProblemError):
    """The source account does not exist or is not the caller's: the accounts service's own
    answer, passed on unchanged, so a foreign account and a missing one look alike."""

    status = 404
    slug = "account-not-found"
    title = "Account not found"


class AccountsUnavailable(ProblemError):
    status = 503
    slug = "accounts-unavailable"
    title = "The accounts service is unavailable"


class InvalidStepRecord(ProblemError):
    """A step report the contract admits but the audit trail cannot hold."""

    status = 422
    slug = "invalid-request"
    title = "Invalid request"
