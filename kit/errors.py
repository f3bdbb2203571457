"""Domain errors carry their HTTP status and RFC 9457 type, with no web framework attached.

Pure domain modules (a service's rules, such as `accounts.ledger.rules` or fraud's
scoring) raise these; `kit.problems` renders them at the edge.
"""

import itertools
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Self

from pydantic import ValidationError

from contracts.problem import CommonProblem, Problem, problem_type


class ProblemError(Exception):
    """Base of every error a caller can cause. Subclasses set status, slug and title."""

    status: ClassVar[int] = 400
    slug: ClassVar[str] = CommonProblem.bad_request
    title: ClassVar[str] = "Bad request"

    def __init__(
        self,
        detail: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail
        self.headers = dict(headers or {})
        self.extensions = extensions
        if "retry_after_seconds" in extensions:
            self.headers.setdefault("Retry-After", str(extensions["retry_after_seconds"]))

    @classmethod
    def type_uri(cls) -> str:
        return problem_type(cls.slug)

    @classmethod
    def example_detail(cls) -> str:
        """The `detail` of this problem's documented example: the first paragraph of the
        class's own docstring, else its title."""
        own = cls.__dict__.get("__doc__")
        if not own:
            return f"{cls.title}."
        return " ".join(own.strip().split("\n\n")[0].split())

    def to_problem(
        self, *, instance: str | None, trace_id: str | None, request_id: str | None = None
    ) -> Problem:
        return Problem(
            type=self.type_uri(),
            title=self.title,
            status=self.status,
            detail=self.detail,
            instance=instance,
            trace_id=trace_id,
            request_id=request_id,
            **self.extensions,
        )


# Issues past this many are left out of a 422 problem's `errors`.
VALIDATION_ISSUES_MAX = 50


def validation_issues(issues: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The `errors` member of a 422 problem: each issue's location, message and kind, as
    pydantic and FastAPI report them, for the first VALIDATION_ISSUES_MAX."""
    return [
        {
            "location": [part for part in issue.get("loc", ()) if isinstance(part, str | int)],
            "message": str(issue.get("msg", ""))[:500],
            "kind": str(issue.get("type", ""))[:100],
        }
        for issue in itertools.islice(issues, VALIDATION_ISSUES_MAX)
    ]


class InvalidRequest(ProblemError):
    """Input the route or service itself finds invalid, beyond what the request's model
    checks: the same answer kit gives a body or parameter failing validation."""

    status = 422
    slug = CommonProblem.invalid_request
    title = "Invalid request"

    @classmethod
    def of_validation(cls, error: ValidationError, subject: str) -> Self:
        """`subject` (what failed, e.g. "the item is malformed") with each field's issue."""
        return cls(
            f"{subject}; see `errors` for each field",
            errors=validation_issues(error.errors()),
        )


class IdempotencyKeyMissing(ProblemError):
    """A change that must be idempotent came without a key (or with an empty one)."""

    status = 400
    slug = CommonProblem.idempotency_key_missing
    title = "The Idempotency-Key header is required"


class ServiceUnavailable(ProblemError):
    """The service cannot answer for now (for one, the token issuer's keys are not yet available to
    check a token): nothing changed; retry after Retry-After."""

    status = 503
    slug = CommonProblem.service_unavailable
    title = "Service unavailable"


class Unauthorized(ProblemError):
    """No credentials, or credentials that do not verify: the caller is not authenticated."""

    status = 401
    slug = CommonProblem.unauthorized
    title = "Unauthorized"

    def __init__(self, detail: str | None = None, **extensions: Any) -> None:
        # RFC 6750: a 401 names the scheme; the detail never says which check failed
        # beyond a coarse reason, so a forger learns nothing useful.
        super().__init__(
            detail, headers={"WWW-Authenticate": 'Bearer realm="sagabank"'}, **extensions
        )


class Forbidden(ProblemError):
    """Authenticated, but the token lacks a scope this operation needs."""

    status = 403
    slug = CommonProblem.insufficient_scope
    title = "Insufficient scope"


class PayloadTooLarge(ProblemError):
    """The request body is larger than the service accepts (kit.app caps every body)."""

    status = 413
    slug = CommonProblem.payload_too_large
    title = "Payload too large"


class InternalError(ProblemError):
    """An unexpected error; quote the trace id when reporting it."""

    status = 500
    slug = CommonProblem.internal_error
    title = "Internal server error"


class TooManyRequests(ProblemError):
    """More requests (or sign-in attempts) than the rate limit allows for now: this one changed
    nothing; retry after Retry-After."""

    status = 429
    slug = CommonProblem.too_many_requests
    title = "Too many requests"
