from contracts.problem import CommonProblem
from contracts.transfers import TransactionsProblem
from kit.errors import ProblemError


class IdempotencyKeyReused(ProblemError):
    status = 422
    slug = TransactionsProblem.idempotency_key_reused
    title = "Idempotency key already used for a different request"


class IdempotencyKeyInFlight(ProblemError):
    status = 409
    slug = TransactionsProblem.idempotency_key_in_flight
    title = "A request with this idempotency key is still being processed"


class SameAccount(ProblemError):
    status = 422
    slug = TransactionsProblem.same_account
    title = "Source and target account are the same"


class TransferNotFound(ProblemError):
    status = 404
    slug = TransactionsProblem.transfer_not_found
    title = "Transfer not found"


class TransferNotCancellable(ProblemError):
    status = 409
    slug = TransactionsProblem.transfer_not_cancellable
    title = "The transfer can no longer be cancelled"


class TransferNotInReview(ProblemError):
    status = 409
    slug = TransactionsProblem.transfer_not_in_review
    title = "The transfer is not waiting for a review"


class WorkflowServiceUnavailable(ProblemError):
    status = 503
    slug = TransactionsProblem.workflow_service_unavailable
    title = "The workflow service is unavailable"


class ExecuteAtTooFar(ProblemError):
    status = 422
    slug = TransactionsProblem.execute_at_too_far
    title = "execute_at is further ahead than allowed"


class PreferWaitInvalid(ProblemError):
    status = 422
    slug = TransactionsProblem.invalid_prefer_wait
    title = "The wait preference is malformed or too long"


class BatchItemFailed(ProblemError):
    """An unexpected failure of one batch item; the other items are still answered."""

    status = 500
    slug = CommonProblem.internal_error
    title = "Internal server error"


class CallbackSignatureInvalid(ProblemError):
    status = 401
    slug = TransactionsProblem.callback_signature_invalid
    title = "The callback is not signed by a registered client"


class CallbackTimestampInvalid(ProblemError):
    status = 401
    slug = TransactionsProblem.callback_timestamp_invalid
    title = "The callback's timestamp is missing, malformed or more than 5 minutes off"


class CallbackClientExists(ProblemError):
    status = 409
    slug = TransactionsProblem.callback_client_exists
    title = "A callback client with this name is already registered"


class CallbacksNotConfigured(ProblemError):
    status = 503
    slug = TransactionsProblem.callbacks_not_configured
    title = "Callbacks are not configured on this service (no secrets key)"


class AccountNotFound(ProblemError):
    """The source account does not exist or is not the caller's: the accounts service's own
    answer, passed on unchanged, so a foreign account and a missing one look alike."""

    status = 404
    slug = TransactionsProblem.account_not_found
    title = "Account not found"


class AccountsUnavailable(ProblemError):
    status = 503
    slug = TransactionsProblem.accounts_unavailable
    title = "The accounts service is unavailable"


class ReversalExceedsTransfer(ProblemError):
    status = 409
    slug = TransactionsProblem.reversal_exceeds_transfer
    title = "The reversal would move back more than the transfer moved"


class TransferNotReversible(ProblemError):
    status = 409
    slug = TransactionsProblem.transfer_not_reversible
    title = "Only a completed transfer can be reversed"


class ReversalNotFound(ProblemError):
    status = 404
    slug = TransactionsProblem.reversal_not_found
    title = "Reversal not found"
