"""RFC 9457 problem details: the one error shape every service answers with.

A problem's slug (the end of its `type`) is contract: the kit's and the generic ones are
`CommonProblem`, each service's own are an enum in its contracts module (`AccountsProblem`,
`TransactionsProblem`, `FraudProblem`, `NotificationsProblem`), and every problem class
takes its slug from one of them (each service's tests check it).
"""

import enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_TYPE_PREFIX = "urn:sagabank:problem:"


class CommonProblem(enum.StrEnum):
    """Problems the kit raises or renders for every service, and the generic ones several
    services raise themselves (a malformed request, cursor or missing Idempotency-Key)."""

    bad_request = "bad-request"
    invalid_request = "invalid-request"
    invalid_cursor = "invalid-cursor"
    idempotency_key_missing = "idempotency-key-missing"
    invalid_deadline = "invalid-deadline"
    unauthorized = "unauthorized"
    # A token without the scope an operation needs (kit.auth); `forbidden` is a bare 403.
    insufficient_scope = "insufficient-scope"
    forbidden = "forbidden"
    not_found = "not-found"
    method_not_allowed = "method-not-allowed"
    not_acceptable = "not-acceptable"
    conflict = "conflict"
    payload_too_large = "payload-too-large"
    unsupported_media_type = "unsupported-media-type"
    too_many_requests = "too-many-requests"
    # Any other HTTP error status the framework raises.
    http_error = "http-error"
    internal_error = "internal-error"
    service_unavailable = "service-unavailable"
    deadline_exceeded = "deadline-exceeded"


def problem_type(slug: str) -> str:
    """The stable `type` URI of a problem, e.g. `urn:sagabank:problem:insufficient-funds`."""
    assert slug, "a problem type needs a slug"
    assert slug == slug.lower(), "problem slugs are lower-case"
    return f"{PROBLEM_TYPE_PREFIX}{slug}"


class Problem(BaseModel):
    """An RFC 9457 problem document; extension members are allowed."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "type": "urn:sagabank:problem:insufficient-funds",
                    "title": "Insufficient funds",
                    "status": 409,
                    "detail": "The account's available balance does not cover 25.00 EUR.",
                    "instance": "/v1/ledger/transfers",
                    "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
                    "request_id": "req-7c1e2f",
                }
            ]
        },
    )

    type: str = Field(default="about:blank", max_length=200)
    title: str = Field(max_length=200)
    status: int = Field(ge=400, le=599)
    detail: str | None = Field(default=None, max_length=2000)
    instance: str | None = Field(default=None, max_length=500)
    # The W3C trace id (32 hex) of the request's span: find the request in a trace backend.
    trace_id: str | None = Field(default=None, max_length=100)
    # The X-Request-ID the caller sent, or the one the service made up: find its log lines.
    request_id: str | None = Field(default=None, max_length=128)

    def extensions(self) -> dict[str, Any]:
        return dict(self.model_extra or {})
