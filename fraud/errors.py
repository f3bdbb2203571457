from contracts.fraud import FraudProblem
from kit.errors import ProblemError


class ScoreRequestMismatch(ProblemError):
    """The transfer was already scored with another source, target, amount or currency (`fields`
    names them): a transfer's details never change, so score a new transfer under its own id."""

    status = 409
    slug = FraudProblem.score_request_mismatch
    title = "Transfer already scored with other details"


class ScoreNotFound(ProblemError):
    """No score was recorded for this transfer id: the transfer was never scored here, or the id is
    wrong."""

    status = 404
    slug = FraudProblem.score_not_found
    title = "Score not found"


class OutcomeConflict(ProblemError):
    """The transfer's outcome was already reported with another result (`fields` names what
    differs): an outcome is reported once; repeat that one or none."""

    status = 409
    slug = FraudProblem.outcome_conflict
    title = "Transfer already has another outcome"


class OutcomeScoreMismatch(ProblemError):
    """The reported outcome names another source, target, amount or currency than the transfer was
    scored with (`fields` names them): report the transfer's own details."""

    status = 409
    slug = FraudProblem.outcome_score_mismatch
    title = "Outcome does not match the scored transfer"


class TimezoneRequired(ProblemError):
    """A timestamp (`occurred_at`, or a period's `since` and `until`) came without a timezone: send
    RFC 3339 with an offset, e.g. 2026-11-28T09:00:00Z."""

    status = 422
    slug = FraudProblem.timezone_required
    title = "Timestamp without a timezone"


class InvalidPeriod(ProblemError):
    """The period's `since` is after its `until`, or it spans more days than allowed: ask for a
    shorter period, in order."""

    status = 422
    slug = FraudProblem.invalid_period
    title = "Period is empty or too long"


class DenyListEntryNotFound(ProblemError):
    """The account is not on the deny-list, so there is nothing to take off it (it may have been
    allowed already)."""

    status = 404
    slug = FraudProblem.deny_list_entry_not_found
    title = "Account is not on the deny-list"


class ListedByMismatch(ProblemError):
    """A deny-list entry's `listed_by` names someone other than the caller: an entry is signed by
    whoever makes it, so send your own id."""

    status = 422
    slug = FraudProblem.listed_by_mismatch
    title = "listed_by must name the caller"
