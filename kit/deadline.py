"""Request deadlines: the moment a caller stops waiting for the answer, sent with the request.

A caller that times out retries, and its first attempt may still be waiting inside the
service (for a pool connection, a lock) and commit later. If the retry is then refused, the
late commit is effect nobody knows of: a hold that nobody voids. A service that honours the
deadline bounds every wait by it and refuses to commit once too little of it is left, so by
the time the caller gives up, its attempt has committed or never will.

A deadline is a wall-clock instant (RFC 3339, UTC) in the `Request-Deadline` header: it
survives queues and proxies, which a relative budget does not. Caller and service clocks are
assumed synchronised (NTP) to well within COMMIT_MARGIN_SECONDS; a service clock behind the
caller's only narrows the guarantee, which is why the saga also voids the holds of refused
retries (the ledger's tombstones) instead of relying on deadlines alone.
"""

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Final

from fastapi import Depends, Header

from contracts.common import REQUEST_DEADLINE_HEADER
from contracts.problem import CommonProblem
from kit.errors import ProblemError, ServiceUnavailable

# What a commit needs after the last check (a round trip and an fsync): a request with less
# time left is refused rather than answered after its caller has gone.
COMMIT_MARGIN_SECONDS: Final = 0.25
_HEADER_LENGTH_MAX: Final = 40


class DeadlineExceeded(ServiceUnavailable):
    """The caller's deadline passed (or nearly) before the work could commit: nothing changed."""

    slug = CommonProblem.deadline_exceeded
    title = "Deadline exceeded"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, retry_after_seconds=1)


class InvalidDeadline(ProblemError):
    """The Request-Deadline header is not an RFC 3339 timestamp with a time zone offset (such as
    2026-12-06T03:11:25Z): send one, or leave the header out."""

    status = 400
    slug = CommonProblem.invalid_deadline
    title = "Invalid Request-Deadline header"


@dataclass(frozen=True, slots=True)
class Deadline:
    """An instant, in seconds since the epoch (wall clock, shared with the caller)."""

    at_epoch_seconds: float

    @classmethod
    def after(cls, seconds: float) -> "Deadline":
        assert seconds > 0, "a deadline lies ahead"
        return cls(time.time() + seconds)

    @classmethod
    def parse(cls, value: str) -> "Deadline":
        """From a header value such as `2026-12-06T03:11:25.123+00:00` (offset required)."""
        if len(value) > _HEADER_LENGTH_MAX:
            raise InvalidDeadline("Request-Deadline is an RFC 3339 timestamp with an offset")
        try:
            instant = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidDeadline(
                "Request-Deadline is an RFC 3339 timestamp with an offset"
            ) from None
        if instant.tzinfo is None:
            raise InvalidDeadline("Request-Deadline needs a time zone offset")
        return cls(instant.timestamp())

    def header_value(self) -> str:
        return datetime.fromtimestamp(self.at_epoch_seconds, UTC).isoformat(timespec="milliseconds")

    def remaining_seconds(self) -> float:
        return self.at_epoch_seconds - time.time()

    def bound(self, seconds: float) -> float:
        """`seconds`, or less if the deadline comes sooner (at least a millisecond)."""
        return max(min(seconds, self.remaining_seconds()), 0.001)

    def check_can_commit(self) -> None:
        """Raise DeadlineExceeded when too little time is left to commit and answer."""
        remaining_seconds = self.remaining_seconds()
        if remaining_seconds < COMMIT_MARGIN_SECONDS:
            raise DeadlineExceeded(
                f"the caller's deadline is {max(-remaining_seconds, 0):.3f} s past or too "
                "close to commit; nothing was changed"
            )


async def request_deadline(
    value: Annotated[
        str | None,
        Header(
            alias=REQUEST_DEADLINE_HEADER,
            description=(
                "When the caller stops waiting (RFC 3339 with an offset): nothing commits after "
                "it (503 `deadline-exceeded`, nothing changed)."
            ),
            examples=["2026-12-06T03:11:25.123+00:00"],
        ),
    ] = None,
) -> Deadline | None:
    """The request's deadline, if it sent one; a deadline already too close is refused here,
    before any work starts."""
    if value is None:
        return None
    deadline = Deadline.parse(value)
    deadline.check_can_commit()
    return deadline


RequestDeadline = Annotated[Deadline | None, Depends(request_deadline)]
