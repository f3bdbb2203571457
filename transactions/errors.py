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
