"""The service's problems whose slugs every service shares (`CommonProblem`), for both contexts.

The ledger's own problems are in accounts.ledger.errors, the token issuer's in
accounts.identity.errors.
"""

from contracts.problem import CommonProblem
from kit.errors import ProblemError


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
