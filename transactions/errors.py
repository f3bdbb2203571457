from contracts.problem import CommonProblem
from contracts.transfers import TransactionsProblem
from kit.errors import ProblemError


class IdempotencyKeyReused(ProblemError):
    """This Idempotency-Key was already used with another request body: a key names one request;
    send a retry with the same body, and a new request with a new key."""

    status = 422
    slug = TransactionsProblem.idempotency_key_reused
    title = "Idempotency key already used for a different request"


class IdempotencyKeyInFlight(ProblemError):
    """The first request with this Idempotency-Key is still being processed: retry the same request
    after Retry-After, and it gets that request's answer."""

    status = 409
    slug = TransactionsProblem.idempotency_key_in_flight
    title = "A request with this idempotency key is still being processed"


class SameAccount(ProblemError):
    """The source and the target account are the same: a transfer (or standing order) moves money
    between two different accounts."""

    status = 422
    slug = TransactionsProblem.same_account
    title = "Source and target account are the same"


class TransferNotFound(ProblemError):
    """No transfer you may see has this id: it does not exist, or it is another customer's (answered
    alike)."""

    status = 404
    slug = TransactionsProblem.transfer_not_found
    title = "Transfer not found"


class TransferNotCancellable(ProblemError):
    """The transfer can no longer be cancelled: it has ended, its posting has begun, or it is a
    reversal (the detail says which); reverse a completed transfer instead."""

    status = 409
    slug = TransactionsProblem.transfer_not_cancellable
    title = "The transfer can no longer be cancelled"


class TransferNotInReview(ProblemError):
    """The transfer is not waiting for a reviewer's verdict: it was never held for review, or its
    review was already decided."""

    status = 409
    slug = TransactionsProblem.transfer_not_in_review
    title = "The transfer is not waiting for a review"


class WorkflowServiceUnavailable(ProblemError):
    """The bank could not reach its workflow engine (Temporal): retry the same request, with the
    same Idempotency-Key, after Retry-After (a transfer recorded already may still go ahead)."""

    status = 503
    slug = TransactionsProblem.workflow_service_unavailable
    title = "The workflow service is unavailable"


class ExecuteAtTooFar(ProblemError):
    """`execute_at` is further ahead than the bank schedules transfers (the detail says how many
    days): pick an earlier date."""

    status = 422
    slug = TransactionsProblem.execute_at_too_far
    title = "execute_at is further ahead than allowed"


class PreferWaitInvalid(ProblemError):
    """The `Prefer: wait=N` header is not whole seconds, or asks to wait longer than allowed (the
    detail says how long): send a shorter wait, or none."""

    status = 422
    slug = TransactionsProblem.invalid_prefer_wait
    title = "The wait preference is malformed or too long"


class BatchItemFailed(ProblemError):
    """An unexpected failure of one batch item; the other items are still answered."""

    status = 500
    slug = CommonProblem.internal_error
    title = "Internal server error"


class CallbackSignatureInvalid(ProblemError):
    """The callback's Callback-Client-Id or Standard Webhooks headers are missing or malformed,
    or no registered client's secret signs it: send your client id and sign as the standard says."""

    status = 401
    slug = TransactionsProblem.callback_signature_invalid
    title = "The callback is not signed by a registered client"


class CallbackTimestampInvalid(ProblemError):
    """The callback's webhook-timestamp is not whole seconds since the epoch, or is more than 5
    minutes from the bank's clock: sign the message again when (re)sending it."""

    status = 401
    slug = TransactionsProblem.callback_timestamp_invalid
    title = "The callback's timestamp is missing, malformed or more than 5 minutes off"


class CallbackClientExists(ProblemError):
    """A callback client with this name is already registered: choose another name, or use the
    client that exists."""

    status = 409
    slug = TransactionsProblem.callback_client_exists
    title = "A callback client with this name is already registered"


class CallbacksNotConfigured(ProblemError):
    """This deployment has no key to seal callback secrets (TRANSACTIONS_SECRETS_KEYS), so it
    neither accepts callbacks nor re-seals their secrets: its operator must configure one."""

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
    """The accounts service did not answer, or answered something unusable, while this request
    checked an account: nothing was done; retry after Retry-After."""

    status = 503
    slug = TransactionsProblem.accounts_unavailable
    title = "The accounts service is unavailable"


class ReversalExceedsTransfer(ProblemError):
    """The reversal asks to move back more than is left of the transfer (earlier reversals count),
    or the transfer has as many reversals as one may have: reverse less."""

    status = 409
    slug = TransactionsProblem.reversal_exceeds_transfer
    title = "The reversal would move back more than the transfer moved"


class TransferNotReversible(ProblemError):
    """The transfer has not completed (it is still under way, or it ended another way, such as
    rejected or cancelled): only a completed transfer can be reversed."""

    status = 409
    slug = TransactionsProblem.transfer_not_reversible
    title = "Only a completed transfer can be reversed"


class ReversalNotFound(ProblemError):
    """No reversal you may see has this id: it does not exist, or it reverses another customer's
    transfer (answered alike)."""

    status = 404
    slug = TransactionsProblem.reversal_not_found
    title = "Reversal not found"
