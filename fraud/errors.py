from contracts.fraud import FraudProblem
from kit.errors import ProblemError


class ScoreRequestMismatch(ProblemError):
    status = 409
    slug = FraudProblem.score_request_mismatch
    title = "Transfer already scored with other details"


class ScoreNotFound(ProblemError):
    status = 404
    slug = FraudProblem.score_not_found
    title = "Score not found"


class OutcomeConflict(ProblemError):
    status = 409
    slug = FraudProblem.outcome_conflict
    title = "Transfer already has another outcome"


class OutcomeScoreMismatch(ProblemError):
    status = 409
    slug = FraudProblem.outcome_score_mismatch
    title = "Outcome does not match the scored transfer"


class TimezoneRequired(ProblemError):
    status = 422
    slug = FraudProblem.timezone_required
    title = "Timestamp without a timezone"


class InvalidPeriod(ProblemError):
    status = 422
    slug = FraudProblem.invalid_period
    title = "Period is empty or too long"


class DenyListEntryNotFound(ProblemError):
    status = 404
    slug = FraudProblem.deny_list_entry_not_found
    title = "Account is not on the deny-list"


class ListedByMismatch(ProblemError):
    status = 422
    slug = FraudProblem.listed_by_mismatch
    title = "listed_by must name the caller"
